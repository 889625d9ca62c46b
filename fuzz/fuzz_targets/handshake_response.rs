//! Arbitrary bytes as the server's answer to our opening handshake.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wshub_proto::handshake::{ClientHandshake, ClientOptions};
use wshub_proto::{DeflateConfig, Limits};

fuzz_target!(|data: &[u8]| {
    let opts = ClientOptions::default()
        .subprotocols(["chat"])
        .deflate(Some(DeflateConfig::default()));
    let hs = ClientHandshake::new("example.com", "/", opts);
    if let Ok(Some((_, used))) = hs.receive_response(data, &Limits::default()) {
        assert!(used <= data.len());
    }
});
