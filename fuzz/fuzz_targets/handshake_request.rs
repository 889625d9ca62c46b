//! Arbitrary bytes as an opening handshake request: parse, then accept
//! with deflate and subprotocols configured.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wshub_proto::handshake::{accept, parse_request, ServerOptions};
use wshub_proto::{DeflateConfig, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(Some((req, used))) = parse_request(data, &limits) {
        assert!(used <= data.len());
        let opts = ServerOptions::default()
            .subprotocols(["chat", "superchat"])
            .deflate(Some(DeflateConfig::default().client_max_window_bits(10)));
        let _ = accept(&req, &opts);
    }
});
