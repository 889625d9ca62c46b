//! Arbitrary bytes as the payload of compressed frames: the inflater must
//! never panic nor exceed the message size limit.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wshub_proto::frame::{write_frame, OpCode};
use wshub_proto::{Config, Connection, DeflateParams, Limits, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else { return };
    let params = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: knobs & 1 != 0,
        server_max_window_bits: 15,
        client_max_window_bits: 8 + (knobs >> 1) % 8,
    };
    let limits = Limits::default().max_message_size(1 << 16);
    let mut c = Connection::new(Role::Server, Config::default().limits(limits), Some(params));
    let mut wire = bytes::BytesMut::new();
    let op = if knobs & 0x80 != 0 { OpCode::Text } else { OpCode::Binary };
    for (i, piece) in rest.chunks(97).enumerate() {
        let first = i == 0;
        let last = (i + 1) * 97 >= rest.len();
        let opcode = if first { op } else { OpCode::Continuation };
        write_frame(&mut wire, last, first, opcode, Some([1, 2, 3, 4]), piece);
    }
    c.receive_data(&wire);
    while let Ok(Some(ev)) = c.poll_event() {
        if let wshub_proto::Event::Message(m) = ev {
            assert!(m.len() <= 1 << 16);
        }
    }
});
