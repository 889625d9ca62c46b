//! Several messages in one frame, the streaming decoder and the limits.

use prost::Message as _;
use wshub_protocol::{
    decode_commands, decode_commands_with, decode_replies, encode_push_reply, encode_replies,
    ping_frame, Command, CommandDecoder, CommandEncoder, DecodeError, DecodeLimits, Encoding,
    ErrorCode, Method, Publication, PublishResult, Push, Reply, ReplyEncoder,
};

fn methods(commands: &[Command]) -> Vec<Option<Method>> {
    commands.iter().map(Command::method).collect()
}

#[test]
fn json_batch_of_lines() {
    // As the JS SDK batches: commands joined by "\n".
    let frame = concat!(
        r#"{"id":1,"connect":{"token":"x","name":"js"}}"#,
        "\n",
        r#"{"id":2,"subscribe":{"channel":"a"}}"#,
        "\n",
        r#"{"id":3,"subscribe":{"channel":"b"}}"#,
    );
    let commands = decode_commands(Encoding::Json, frame.as_bytes()).unwrap();
    assert_eq!(
        methods(&commands),
        [
            Some(Method::Connect),
            Some(Method::Subscribe),
            Some(Method::Subscribe)
        ]
    );
    assert_eq!(commands.iter().map(|c| c.id).collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn json_blank_lines_trailing_newline_and_crlf_are_tolerated() {
    let frame = b"\n{\"id\":1,\"presence\":{\"channel\":\"a\"}}\r\n\n  \n{}\n";
    let commands = decode_commands(Encoding::Json, frame).unwrap();
    assert_eq!(methods(&commands), [Some(Method::Presence), None]);
    assert!(commands[1].is_pong());
    assert!(decode_commands(Encoding::Json, b"").unwrap().is_empty());
    assert!(decode_commands(Encoding::Json, b"\n\n").unwrap().is_empty());
}

#[test]
fn protobuf_batch_including_an_empty_pong() {
    let commands = [
        Command::default(), // pong: zero-length message
        Command {
            id: 5,
            presence: Some(Default::default()),
            ..Default::default()
        },
        Command::default(),
    ];
    let mut frame = Vec::new();
    for c in &commands {
        c.encode_length_delimited(&mut frame).unwrap();
    }
    assert_eq!(frame[0], 0, "an empty command is a zero length prefix");
    assert_eq!(
        decode_commands(Encoding::Protobuf, &frame).unwrap(),
        commands
    );
}

#[test]
fn replies_frame_round_trips_in_both_encodings() {
    let replies = vec![
        Reply {
            id: 1,
            publish: Some(PublishResult::default()),
            ..Default::default()
        },
        Reply::error(2, ErrorCode::PERMISSION_DENIED),
        Reply::ping(),
        Reply::from_push(Push::publication(
            "news",
            Publication {
                data: r#"{"n":1}"#.into(),
                offset: 1,
                ..Default::default()
            },
        )),
    ];
    for encoding in [Encoding::Json, Encoding::Protobuf] {
        let mut out = Vec::new();
        encode_replies(encoding, &replies, &mut out).unwrap();
        assert_eq!(
            decode_replies(encoding, &out).unwrap(),
            replies,
            "{encoding:?}"
        );
    }
    let mut out = Vec::new();
    encode_replies(Encoding::Json, &replies, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        concat!(
            r#"{"id":1,"publish":{}}"#,
            "\n",
            r#"{"id":2,"error":{"code":103,"message":"permission denied"}}"#,
            "\n{}\n",
            r#"{"push":{"channel":"news","pub":{"data":{"n":1},"offset":1}}}"#,
        )
    );
}

#[test]
fn shared_push_bytes_batch_with_other_replies() {
    let push = Push::publication(
        "news",
        Publication {
            data: "[1]".into(),
            offset: 9,
            ..Default::default()
        },
    );
    for encoding in [Encoding::Json, Encoding::Protobuf] {
        let shared = encode_push_reply(encoding, &push).unwrap();
        let mut frame = ReplyEncoder::new(encoding);
        frame.push_encoded(ping_frame(encoding));
        frame.push_encoded(&shared);
        frame
            .push(&Reply::error(7, ErrorCode::BAD_REQUEST))
            .unwrap();
        frame.push_encoded(&shared);
        assert_eq!(frame.len(), 4);
        let replies = decode_replies(encoding, &frame.take()).unwrap();
        assert!(frame.is_empty() && frame.byte_len() == 0);
        assert!(replies[0].is_ping());
        assert_eq!(replies[1].push.as_ref(), Some(&push));
        assert_eq!(replies[2].id, 7);
        assert_eq!(replies[1], replies[3]);
    }
}

#[test]
fn command_encoder_for_clients() {
    for encoding in [Encoding::Json, Encoding::Protobuf] {
        let mut frame = CommandEncoder::new(encoding);
        frame
            .push(&Command {
                id: 1,
                subscribe: Some(Default::default()),
                ..Default::default()
            })
            .unwrap();
        frame.push(&Command::default()).unwrap();
        let bytes = frame.finish();
        let commands = decode_commands(encoding, &bytes).unwrap();
        assert_eq!(methods(&commands), [Some(Method::Subscribe), None]);
    }
}

#[test]
fn streaming_decoder_yields_good_commands_before_a_bad_one() {
    let frame = b"{\"id\":1,\"ping\":{}}\n{\"id\":2,\"ping\":{}}\n{broken\n{\"id\":4,\"ping\":{}}";
    let mut decoder = CommandDecoder::new(Encoding::Json, frame, DecodeLimits::default());
    assert_eq!(decoder.next().unwrap().unwrap().id, 1);
    assert_eq!(decoder.next().unwrap().unwrap().id, 2);
    assert!(matches!(
        decoder.next(),
        Some(Err(DecodeError::Json { index: 2, .. }))
    ));
    assert!(decoder.next().is_none(), "stops after the first error");
    assert_eq!(decoder.decoded(), 3);
    // The collecting form reports the same error.
    assert!(matches!(
        decode_commands(Encoding::Json, frame),
        Err(DecodeError::Json { index: 2, .. })
    ));
}

#[test]
fn streaming_decoder_handles_a_large_batch_lazily() {
    let line = br#"{"id":1,"publish":{"channel":"a","data":{"v":[1,2,3]}}}"#;
    let mut frame = Vec::new();
    for _ in 0..3000 {
        frame.extend_from_slice(line);
        frame.push(b'\n');
    }
    let decoder = CommandDecoder::new(Encoding::Json, &frame, DecodeLimits::default());
    assert_eq!(
        decoder
            .filter(|c| c.as_ref().unwrap().publish.is_some())
            .count(),
        3000
    );
}

#[test]
fn message_count_limit() {
    let limits = DecodeLimits::default().max_messages_per_frame(2);
    assert_eq!(
        decode_commands_with(Encoding::Json, b"{}\n{}", &limits)
            .unwrap()
            .len(),
        2
    );
    assert!(matches!(
        decode_commands_with(Encoding::Json, b"{}\n{}\n{}", &limits),
        Err(DecodeError::TooManyMessages { limit: 2 })
    ));
    // Blank lines do not count.
    assert_eq!(
        decode_commands_with(Encoding::Json, b"{}\n\n\n{}\n", &limits)
            .unwrap()
            .len(),
        2
    );
    assert!(matches!(
        decode_commands_with(Encoding::Protobuf, &[0, 0, 0], &limits),
        Err(DecodeError::TooManyMessages { limit: 2 })
    ));
    // The first two are still handed out by the streaming decoder.
    let mut decoder = CommandDecoder::new(Encoding::Protobuf, &[0, 0, 0], limits);
    assert!(decoder.next().unwrap().is_ok());
    assert!(decoder.next().unwrap().is_ok());
    assert!(decoder.next().unwrap().is_err());
}

#[test]
fn message_size_limit() {
    let limits = DecodeLimits::default().max_message_bytes(16);
    let small = br#"{"id":1}"#;
    let big = br#"{"id":1,"publish":{"channel":"aaaaaaaa"}}"#;
    assert!(decode_commands_with(Encoding::Json, small, &limits).is_ok());
    assert!(matches!(
        decode_commands_with(Encoding::Json, big, &limits),
        Err(DecodeError::MessageTooLarge {
            index: 0,
            limit: 16,
            ..
        })
    ));
    // Protobuf: the declared length is checked before anything is read, so
    // a huge claim in a tiny frame is refused without allocating.
    assert!(matches!(
        decode_commands_with(Encoding::Protobuf, &[0x11], &limits),
        Err(DecodeError::MessageTooLarge {
            index: 0,
            size: 17,
            limit: 16
        })
    ));
    let huge_claim = [0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(matches!(
        decode_commands(Encoding::Protobuf, &huge_claim),
        Err(DecodeError::MessageTooLarge {
            size: 0xffff_ffff,
            ..
        })
    ));
}

#[test]
fn encoding_selection_helpers() {
    assert_eq!(
        Encoding::from_subprotocol("centrifuge-protobuf"),
        Some(Encoding::Protobuf)
    );
    assert_eq!(
        Encoding::from_subprotocol("centrifuge-json"),
        Some(Encoding::Json)
    );
    assert_eq!(Encoding::from_subprotocol("mqtt"), None);
    assert_eq!(Encoding::from_query_value("protobuf"), Encoding::Protobuf);
    assert_eq!(Encoding::from_query_value("json"), Encoding::Json);
    assert!(Encoding::Protobuf.is_binary() && !Encoding::Json.is_binary());
}
