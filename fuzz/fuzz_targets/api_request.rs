//! Arbitrary bytes as a server API request body: the first byte picks the
//! method (one of the API's, or `batch`), the rest is the body. Decoding
//! must never panic; a decoded batch holds at most the limit of commands
//! and every command's parameters are a JSON value from the body, which
//! decodes as a request of its method or fails cleanly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wshub_hub::api::{decode, decode_batch, is_method, ApiLimits, METHODS};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let limits = ApiLimits::default()
        .max_batch_commands(64)
        .max_broadcast_channels(16);
    // One of the API's methods, or one it does not have.
    let method = METHODS
        .get(pick as usize % (METHODS.len() + 1))
        .copied()
        .unwrap_or("nope");
    if method == "batch" {
        if let Ok(batch) = decode_batch(body, &limits) {
            assert!(batch.len() <= 64);
            for i in 0..batch.len() {
                if let Some((m, params)) = batch.command(body, i) {
                    assert!(is_method(m) && m != "batch");
                    assert!(serde_json::from_slice::<serde::de::IgnoredAny>(params).is_ok());
                    let _ = decode(m, params, &limits);
                }
            }
        }
    } else {
        match decode(method, body, &limits) {
            Ok(r) => assert_eq!(r.method(), method),
            Err(e) => assert!([200, 400].contains(&e.kind.http_status())),
        }
    }
});
