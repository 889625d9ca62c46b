//! Integration tests of the protocol codec: JSON and protobuf shapes as the
//! SDKs send and expect them, framing, limits and hostile input.

mod framing;
mod json;
mod malformed;
mod protobuf;

use prost::Message as _;
use wshub_protocol::{decode_commands, decode_replies, encode_reply, Command, Encoding, Reply};

/// Decodes `json` as a single command, checks that encoding it again gives
/// the same JSON (compared as values, so key order does not matter) and
/// that it survives a protobuf round trip unchanged.
pub fn command_round_trip(json: &str) -> Command {
    let mut commands = decode_commands(Encoding::Json, json.as_bytes()).unwrap();
    assert_eq!(commands.len(), 1, "{json}");
    let command = commands.remove(0);
    let again = serde_json::to_string(&command).unwrap();
    assert_same_json(&again, json);
    let wire = command.encode_to_vec();
    assert_eq!(Command::decode(&wire[..]).unwrap(), command);
    command
}

/// Like [`command_round_trip`] for one reply, through the frame encoder.
pub fn reply_round_trip(json: &str) -> Reply {
    let mut replies = decode_replies(Encoding::Json, json.as_bytes()).unwrap();
    assert_eq!(replies.len(), 1, "{json}");
    let reply = replies.remove(0);
    let again = encode_reply(Encoding::Json, &reply).unwrap();
    assert_same_json(std::str::from_utf8(&again).unwrap(), json);
    let wire = encode_reply(Encoding::Protobuf, &reply).unwrap();
    assert_eq!(
        decode_replies(Encoding::Protobuf, &wire).unwrap(),
        vec![reply.clone()]
    );
    reply
}

/// Asserts two JSON texts hold the same value.
pub fn assert_same_json(actual: &str, expected: &str) {
    let a: serde_json::Value = serde_json::from_str(actual).unwrap();
    let e: serde_json::Value = serde_json::from_str(expected).unwrap();
    assert_eq!(a, e, "\nactual:   {actual}\nexpected: {expected}");
}
