//! Hostile input: clear errors, never a panic.

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message as _;
use wshub_protocol::{
    decode_commands, decode_replies, encode_push_reply, encode_replies, ClientInfo, Command,
    DecodeError, DisconnectCode, EncodeError, Encoding, FilterNode, Publication, Push, Reply,
    ReplyEncoder, SubscribeRequest,
};

#[test]
fn bad_json_is_an_error() {
    for bad in [
        &b"{\"id\":1"[..],
        b"not json",
        b"[]",
        b"[5,{\"token\":\"x\"}]",
        b"42",
        b"null",
        b"{\"id\":\"one\"}",
        b"{\"id\":-1}",
        b"{\"id\":4294967296}",
        b"{\"id\":1.5}",
        b"{\"connect\":{\"token\":5}}",
        b"{\"subscribe\":{\"offset\":-1}}",
        b"{\"publish\":{\"data\":}}",
        b"{\"publish\":{\"data\":{\"a\":1}}",
        b"{\"id\":1} trailing",
        // Not UTF-8 (the WebSocket layer already refuses such text frames;
        // serde_json checks strings it reads, not ones it skips).
        b"{\"connect\":{\"token\":\"\xff\xfe\"}}",
        b"\xef\xbb\xbf{}",
    ] {
        let Err(err) = decode_commands(Encoding::Json, bad) else {
            panic!("decoded: {:?}", String::from_utf8_lossy(bad));
        };
        assert!(
            matches!(err, DecodeError::Json { index: 0, .. }),
            "{:?}: {err}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(err.disconnect_code(), DisconnectCode::BAD_REQUEST);
    }
}

#[test]
fn deep_json_nesting_is_an_error_not_a_stack_overflow() {
    // Nesting in typed fields hits serde_json's recursion limit.
    let mut json = String::from(r#"{"id":1,"subscribe":{"channel":"a","tf":"#);
    for _ in 0..100_000 {
        json.push_str(r#"{"nodes":["#);
    }
    assert!(decode_commands(Encoding::Json, json.as_bytes()).is_err());
}

#[test]
fn broken_length_prefixes_are_errors() {
    // The frame ends inside the varint.
    assert!(matches!(
        decode_commands(Encoding::Protobuf, &[0x80]),
        Err(DecodeError::TruncatedLength { index: 0 })
    ));
    // A second message whose prefix is cut off.
    assert!(matches!(
        decode_commands(Encoding::Protobuf, &[0x00, 0xff, 0xff]),
        Err(DecodeError::TruncatedLength { index: 1 })
    ));
    // Eleven continuation bytes: not a varint.
    assert!(matches!(
        decode_commands(Encoding::Protobuf, &[0x80; 11]),
        Err(DecodeError::InvalidLength { index: 0 })
    ));
    // The prefix promises more than the frame holds.
    assert!(matches!(
        decode_commands(Encoding::Protobuf, &[0x05, 0x08, 0x01]),
        Err(DecodeError::Truncated {
            index: 0,
            declared: 5,
            available: 2
        })
    ));
}

#[test]
fn broken_protobuf_bodies_are_errors() {
    for body in [
        &[0x08][..],                     // id: key without value
        &[0x0a, 0x00],                   // id (a varint) sent as length-delimited
        &[0x22, 0x05, 0x0a],             // connect's length runs past the message
        &[0x22, 0x03, 0x0a, 0x01, 0xff], // token is not UTF-8
        &[0x07],                         // wire type 7 does not exist
        &[0x00],                         // field number 0
    ] {
        let mut frame = vec![body.len() as u8];
        frame.extend_from_slice(body);
        let err = decode_commands(Encoding::Protobuf, &frame).unwrap_err();
        assert!(
            matches!(err, DecodeError::Protobuf { index: 0, .. }),
            "{body:?}: {err}"
        );
    }
}

#[test]
fn deep_protobuf_nesting_is_an_error_not_a_stack_overflow() {
    // A FilterNode nested 10 000 deep through its `nodes` field (6).
    let mut node: Vec<u8> = Vec::new();
    for _ in 0..10_000 {
        let mut outer = vec![0x32];
        prost::encoding::encode_varint(node.len() as u64, &mut outer);
        outer.extend_from_slice(&node);
        node = outer;
    }
    assert!(FilterNode::decode(&node[..]).is_err());
    let mut subscribe = vec![0x6a]; // tf (13)
    prost::encoding::encode_varint(node.len() as u64, &mut subscribe);
    subscribe.extend_from_slice(&node);
    assert!(SubscribeRequest::decode(&subscribe[..]).is_err());
}

#[test]
fn binary_payload_cannot_be_encoded_for_json() {
    let push = Push::publication(
        "bin",
        Publication {
            data: Bytes::from_static(b"\x00\x01binary"),
            ..Default::default()
        },
    );
    let err = encode_push_reply(Encoding::Json, &push).unwrap_err();
    assert!(matches!(err, EncodeError::NotJson(_)));
    assert_eq!(
        err.disconnect_code(),
        DisconnectCode::INAPPROPRIATE_PROTOCOL
    );
    // Bytes that are UTF-8 but not one JSON value fail as well.
    let info = ClientInfo {
        user: "u".into(),
        client: "c".into(),
        conn_info: Bytes::from_static(b"{\"a\":1} {\"b\":2}"),
        ..Default::default()
    };
    assert!(encode_push_reply(Encoding::Json, &Push::join("c", info)).is_err());

    // A failed push leaves the frame as it was.
    let mut frame = ReplyEncoder::new(Encoding::Json);
    frame.push(&Reply::ping()).unwrap();
    assert!(frame.push(&Reply::from_push(push.clone())).is_err());
    assert_eq!((frame.len(), frame.as_bytes()), (1, &b"{}"[..]));
    let mut out = b"{}".to_vec();
    let replies = [Reply::ping(), Reply::from_push(push)];
    assert!(encode_replies(Encoding::Json, &replies, &mut out).is_err());
    assert_eq!(out, b"{}");
}

fn arbitrary_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Raw noise.
        proptest::collection::vec(any::<u8>(), 0..512),
        // Noise made of protocol-ish fragments, to get past the first byte.
        proptest::collection::vec(
            prop_oneof![
                Just(&b"{"[..]),
                Just(&b"}"[..]),
                Just(&b"\n"[..]),
                Just(&b"\"id\":1,"[..]),
                Just(&b"\"connect\":"[..]),
                Just(&b"\"subscribe\":{\"channel\":\"a\""[..]),
                Just(&b"\"data\":"[..]),
                Just(&b"\"push\":{\"pub\":"[..]),
                Just(&b"[1,{\"a\":null}]"[..]),
                Just(&b"\"offset\":18446744073709551616"[..]),
                Just(&b"\x00"[..]),
                Just(&b"\x80"[..]),
                Just(&b"\xff"[..]),
                Just(&b"\x22\x02\x0a\x00"[..]),
                Just(&b"\x0b\x08\x01\x22\x07\x0a\x01x\x22\x02js"[..]),
            ],
            0..40,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(frame in arbitrary_frame()) {
        for encoding in [Encoding::Json, Encoding::Protobuf] {
            let _ = decode_commands(encoding, &frame);
            let _ = decode_replies(encoding, &frame);
        }
    }

    #[test]
    fn decoded_json_commands_encode_again(frame in arbitrary_frame()) {
        // Whatever decodes must encode back, in both encodings, and decode
        // to the same value.
        if let Ok(commands) = decode_commands(Encoding::Json, &frame) {
            for command in commands {
                let json = serde_json::to_vec(&command).unwrap();
                prop_assert_eq!(&decode_commands(Encoding::Json, &json).unwrap()[..], &[command.clone()][..]);
                prop_assert_eq!(Command::decode(&command.encode_to_vec()[..]).unwrap(), command);
            }
        }
    }

    #[test]
    fn flipped_bytes_of_a_valid_frame_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        truncate in any::<prop::sample::Index>(),
    ) {
        let reply = Reply::from_push(Push::publication(
            "news",
            Publication { data: r#"{"a":[1,2]}"#.into(), offset: 3, ..Default::default() },
        ));
        for encoding in [Encoding::Json, Encoding::Protobuf] {
            let mut frame = Vec::new();
            encode_replies(encoding, &[reply.clone(), Reply::ping(), reply.clone()], &mut frame).unwrap();
            for (at, byte) in &flips {
                let i = at.index(frame.len());
                frame[i] = *byte;
            }
            let _ = decode_replies(encoding, &frame);
            let _ = decode_commands(encoding, &frame);
            let cut = truncate.index(frame.len() + 1);
            let _ = decode_replies(encoding, &frame[..cut]);
        }
    }

    #[test]
    fn publications_round_trip_in_both_encodings(
        channel in "[a-z:]{0,12}",
        offset in any::<u64>(),
        time in any::<i64>(),
        score in any::<i64>(),
        tags in proptest::collection::btree_map("[a-z]{1,4}", ".{0,6}", 0..3),
        data in prop_oneof![
            Just("{\"a\":1}".to_owned()),
            Just("null".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            ".{0,20}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        ],
    ) {
        let push = Push::publication(
            channel,
            Publication { data: data.into(), offset, time, score, tags, ..Default::default() },
        );
        let reply = Reply::from_push(push.clone());
        for encoding in [Encoding::Json, Encoding::Protobuf] {
            let frame = encode_push_reply(encoding, &push).unwrap();
            prop_assert_eq!(&decode_replies(encoding, &frame).unwrap()[..], &[reply.clone()][..]);
        }
    }
}
