//! Protobuf wire bytes, checked against bytes computed by hand from the
//! field numbers of `client.proto`.

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message as _;
use wshub_protocol::{
    decode_commands, decode_replies, encode_push_reply, encode_reply, ClientInfo, Command,
    ConnectRequest, Encoding, Error, FilterNode, HistoryRequest, Publication, Push, Reply,
    StreamPosition, SubscribeRequest, SubscribeResult,
};

/// Field key byte for field numbers below 16: `(number << 3) | wire_type`.
fn key(field: u8, wire_type: u8) -> u8 {
    assert!(field < 16);
    (field << 3) | wire_type
}
const VARINT: u8 = 0;
const LEN: u8 = 2;

#[test]
fn connect_command_matches_hand_computed_bytes() {
    let command = Command {
        id: 1,
        connect: Some(ConnectRequest {
            token: "x".into(),
            name: "js".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    // id = 1: field 1 varint. connect: field 4, length 7, holding
    // token "x" (field 1) and name "js" (field 4).
    let expected = [
        0x08, 0x01, 0x22, 0x07, 0x0a, 0x01, b'x', 0x22, 0x02, b'j', b's',
    ];
    assert_eq!(command.encode_to_vec(), expected);
    // In a frame: an 11-byte length prefix first.
    let mut frame = vec![0x0b];
    frame.extend_from_slice(&expected);
    assert_eq!(
        decode_commands(Encoding::Protobuf, &frame).unwrap(),
        vec![command]
    );
}

#[test]
fn subscribe_command_matches_hand_computed_bytes() {
    // channel (1) "news", recover (3) true, epoch (6) "abc", offset (7) 5.
    let body = [
        0x0a, 0x04, b'n', b'e', b'w', b's', 0x18, 0x01, 0x32, 0x03, b'a', b'b', b'c', 0x38, 0x05,
    ];
    let mut bytes = vec![0x08, 0x02, key(5, LEN), body.len() as u8];
    bytes.extend_from_slice(&body);
    let command = Command::decode(&bytes[..]).unwrap();
    assert_eq!(command.id, 2);
    assert_eq!(
        command.subscribe,
        Some(SubscribeRequest {
            channel: "news".into(),
            recover: true,
            epoch: "abc".into(),
            offset: 5,
            ..Default::default()
        })
    );
    assert_eq!(command.encode_to_vec(), bytes);
}

#[test]
fn publication_push_matches_hand_computed_bytes() {
    let push = Push::publication(
        "news",
        Publication {
            data: Bytes::from_static(b"{}"),
            offset: 6,
            ..Default::default()
        },
    );
    // Publication: data (4) "{}", offset (6) 6.
    let publication = [0x22, 0x02, b'{', b'}', 0x30, 0x06];
    // Push: channel (2) "news", pub (4).
    let mut push_bytes = vec![
        0x12,
        0x04,
        b'n',
        b'e',
        b'w',
        b's',
        0x22,
        publication.len() as u8,
    ];
    push_bytes.extend_from_slice(&publication);
    // Reply: push (4); then the frame's length prefix in front.
    let mut reply = vec![0x22, push_bytes.len() as u8];
    reply.extend_from_slice(&push_bytes);
    let mut frame = vec![reply.len() as u8];
    frame.extend_from_slice(&reply);

    assert_eq!(
        &encode_push_reply(Encoding::Protobuf, &push).unwrap()[..],
        frame
    );
    assert_eq!(
        &encode_reply(Encoding::Protobuf, &Reply::from_push(push.clone())).unwrap()[..],
        frame
    );
    assert_eq!(
        decode_replies(Encoding::Protobuf, &frame).unwrap(),
        vec![Reply::from_push(push)]
    );
}

#[test]
fn every_command_request_has_its_field_number() {
    let cases: [(u8, Command); 12] = [
        (
            4,
            Command {
                connect: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            5,
            Command {
                subscribe: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            6,
            Command {
                unsubscribe: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            7,
            Command {
                publish: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            8,
            Command {
                presence: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            9,
            Command {
                presence_stats: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            10,
            Command {
                history: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            11,
            Command {
                ping: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            12,
            Command {
                send: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            13,
            Command {
                rpc: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            14,
            Command {
                refresh: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            15,
            Command {
                sub_refresh: Some(Default::default()),
                ..Default::default()
            },
        ),
    ];
    for (field, command) in cases {
        assert_eq!(
            command.encode_to_vec(),
            [key(field, LEN), 0],
            "field {field}"
        );
        assert_eq!(Command::decode(&[key(field, LEN), 0][..]).unwrap(), command);
    }
}

#[test]
fn every_reply_field_has_its_field_number() {
    let cases: [(u8, Reply); 13] = [
        (
            2,
            Reply {
                error: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            4,
            Reply {
                push: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            5,
            Reply {
                connect: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            6,
            Reply {
                subscribe: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            7,
            Reply {
                unsubscribe: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            8,
            Reply {
                publish: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            9,
            Reply {
                presence: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            10,
            Reply {
                presence_stats: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            11,
            Reply {
                history: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            12,
            Reply {
                ping: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            13,
            Reply {
                rpc: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            14,
            Reply {
                refresh: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            15,
            Reply {
                sub_refresh: Some(Default::default()),
                ..Default::default()
            },
        ),
    ];
    for (field, reply) in cases {
        assert_eq!(reply.encode_to_vec(), [key(field, LEN), 0], "field {field}");
    }
}

#[test]
fn every_push_field_has_its_field_number() {
    let cases: [(u8, Push); 9] = [
        (
            4,
            Push {
                publication: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            5,
            Push {
                join: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            6,
            Push {
                leave: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            7,
            Push {
                unsubscribe: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            8,
            Push {
                message: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            9,
            Push {
                subscribe: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            10,
            Push {
                connect: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            11,
            Push {
                disconnect: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            12,
            Push {
                refresh: Some(Default::default()),
                ..Default::default()
            },
        ),
    ];
    for (field, push) in cases {
        assert_eq!(push.encode_to_vec(), [key(field, LEN), 0], "field {field}");
    }
    // id (1) is an int64 varint: -1 takes ten bytes (not zigzag).
    let push = Push {
        id: -1,
        ..Default::default()
    };
    let mut expected = vec![key(1, VARINT)];
    expected.extend_from_slice(&[0xff; 9]);
    expected.push(0x01);
    assert_eq!(push.encode_to_vec(), expected);
}

#[test]
fn publication_field_numbers_and_types() {
    let p = Publication {
        tags: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
        delta: true,
        time: 1,
        channel: "c".into(),
        key: "y".into(),
        removed: true,
        score: -1,
        epoch: "e".into(),
        prev_data: Bytes::from_static(b"p"),
        version: 3,
        info: Some(ClientInfo {
            user: "u".into(),
            client: "i".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let expected = [
        // info (5): user (1) "u", client (2) "i"
        0x2a, 0x06, 0x0a, 0x01, b'u', 0x12, 0x01, b'i',
        // tags (7): map entry { key (1) "k", value (2) "v" }
        0x3a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', // delta (8), time (9)
        0x40, 0x01, 0x48, 0x01, // channel (10), key (11)
        0x52, 0x01, b'c', 0x5a, 0x01, b'y',
        // removed (12); score (13) is sint64: zigzag(-1) = 1
        0x60, 0x01, 0x68, 0x01, // epoch (14), prev_data (15)
        0x72, 0x01, b'e', 0x7a, 0x01, b'p',
        // version (16): key 16 << 3 = 128 takes two varint bytes
        0x80, 0x01, 0x03,
    ];
    assert_eq!(p.encode_to_vec(), expected);
    assert_eq!(Publication::decode(&expected[..]).unwrap(), p);
}

#[test]
fn result_and_request_field_numbers() {
    // SubscribeResult: was_recovering (12), delta (13), id (14), publish_debounce (19).
    let r = SubscribeResult {
        was_recovering: true,
        delta: true,
        id: 7,
        publish_debounce: 100,
        ..Default::default()
    };
    assert_eq!(
        r.encode_to_vec(),
        [0x60, 0x01, 0x68, 0x01, 0x70, 0x07, 0x98, 0x01, 0x64]
    );
    // HistoryRequest: channel (1), limit (7), since (8) { offset (1), epoch (2) }, reverse (9).
    let h = HistoryRequest {
        channel: "a".into(),
        limit: 2,
        since: Some(StreamPosition {
            offset: 5,
            epoch: "e".into(),
        }),
        reverse: true,
    };
    assert_eq!(
        h.encode_to_vec(),
        [0x0a, 0x01, b'a', 0x38, 0x02, 0x42, 0x05, 0x08, 0x05, 0x12, 0x01, b'e', 0x48, 0x01]
    );
    // Error: code (1), message (2), temporary (3).
    let e = Error {
        code: 100,
        message: "m".into(),
        temporary: true,
    };
    assert_eq!(
        e.encode_to_vec(),
        [0x08, 0x64, 0x12, 0x01, b'm', 0x18, 0x01]
    );
    // ConnectRequest: dict is field 8, profile field 9 (out of order in the .proto).
    let c = ConnectRequest {
        dict: "d".into(),
        profile: "p".into(),
        ..Default::default()
    };
    assert_eq!(c.encode_to_vec(), [0x42, 0x01, b'd', 0x4a, 0x01, b'p']);
}

#[test]
fn binary_payloads_travel_in_protobuf() {
    let push = Push::publication(
        "bin",
        Publication {
            data: Bytes::from_static(b"\x00\xff\xfe not json"),
            ..Default::default()
        },
    );
    let frame = encode_push_reply(Encoding::Protobuf, &push).unwrap();
    let back = decode_replies(Encoding::Protobuf, &frame)
        .unwrap()
        .remove(0);
    assert_eq!(back.push.unwrap(), push);
}

#[test]
fn unknown_fields_are_skipped() {
    // id 1, an unknown varint field 99, an unknown length-delimited field
    // 100, then presence { channel "a" }.
    let mut bytes = vec![0x08, 0x01];
    bytes.extend_from_slice(&[0x98, 0x06, 0x2a]); // field 99 varint = 42
    bytes.extend_from_slice(&[0xa2, 0x06, 0x02, b'z', b'z']); // field 100 bytes "zz"
    bytes.extend_from_slice(&[0x42, 0x03, 0x0a, 0x01, b'a']);
    let command = Command::decode(&bytes[..]).unwrap();
    assert_eq!(command.id, 1);
    assert_eq!(command.presence.unwrap().channel, "a");
    // The old protocol v1 fields 2 and 3 are unknown now, too.
    let v1 = [0x08, 0x01, 0x10, 0x01, 0x1a, 0x02, b'{', b'}'];
    let command = Command::decode(&v1[..]).unwrap();
    assert_eq!((command.id, command.request()), (1, None));
}

#[test]
fn recursive_filter_round_trips() {
    let tf = FilterNode {
        op: "not".into(),
        nodes: vec![FilterNode {
            op: "or".into(),
            nodes: vec![
                FilterNode {
                    key: "a".into(),
                    cmp: "ex".into(),
                    ..Default::default()
                },
                FilterNode {
                    key: "b".into(),
                    cmp: "nin".into(),
                    vals: vec!["1".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let s = SubscribeRequest {
        channel: "c".into(),
        tf: Some(tf),
        ..Default::default()
    };
    assert_eq!(SubscribeRequest::decode(&s.encode_to_vec()[..]).unwrap(), s);
}
