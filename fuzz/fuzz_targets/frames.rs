//! Arbitrary bytes into a connection, server or client role, with and
//! without deflate, delivered in chunks whose sizes come from the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wshub_proto::{Config, Connection, DeflateParams, Limits, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else { return };
    let role = if knobs & 1 != 0 { Role::Client } else { Role::Server };
    let deflate = (knobs & 2 != 0).then(DeflateParams::default);
    let limits = Limits::default().max_frame_size(1 << 16).max_message_size(1 << 18);
    let mut c = Connection::new(role, Config::default().limits(limits), deflate);
    let chunk = (knobs >> 2) as usize + 1;
    let mut sink = Vec::new();
    for piece in rest.chunks(chunk) {
        c.receive_data(piece);
        while let Ok(Some(_)) = c.poll_event() {}
        sink.clear();
        c.drain_transmit(&mut sink);
    }
    c.receive_eof();
    let _ = c.poll_event();
});
