//! Client-protocol frames as the server reads them (commands) and as the
//! client reads them (replies and pushes), JSON (newline-delimited) and
//! protobuf (varint-delimited), one message per frame or batched. Whatever
//! decodes is encoded again in both encodings, as a server relays it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wshub_protocol::{
    decode_commands, decode_replies, CommandDecoder, CommandEncoder, DecodeLimits, Encoding,
    ReplyDecoder, ReplyEncoder,
};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, frame)) = data.split_first() else { return };
    let encoding = if knobs & 1 == 0 { Encoding::Json } else { Encoding::Protobuf };
    // Small limits, so the fuzzer also reaches the limit checks.
    let limits = DecodeLimits::default()
        .max_messages_per_frame(usize::from(knobs >> 2) + 1)
        .max_message_bytes(1 << 16);
    if knobs & 2 == 0 {
        let mut json = CommandEncoder::new(Encoding::Json);
        let mut proto = CommandEncoder::new(Encoding::Protobuf);
        let mut commands = CommandDecoder::new(encoding, frame, limits);
        for command in commands.by_ref() {
            let Ok(command) = command else { break };
            let _ = command.is_pong();
            let _ = json.push(&command);
            let _ = proto.push(&command);
        }
        let _ = commands.decoded();
        // What we encoded decodes again.
        assert!(decode_commands(Encoding::Protobuf, proto.as_bytes()).is_ok());
        let _ = decode_commands(encoding, frame);
    } else {
        let mut json = ReplyEncoder::new(Encoding::Json);
        let mut proto = ReplyEncoder::new(Encoding::Protobuf);
        for reply in ReplyDecoder::new(encoding, frame, limits) {
            let Ok(reply) = reply else { break };
            let _ = reply.is_ping();
            let _ = json.push(&reply);
            let _ = proto.push(&reply);
        }
        assert!(decode_replies(Encoding::Protobuf, proto.as_bytes()).is_ok());
        let _ = decode_replies(encoding, frame);
    }
});
