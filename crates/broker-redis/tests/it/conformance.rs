//! The broker conformance suite of `wshub-hub`, on the system Redis, with
//! real time.

use crate::support::RedisHarness;

wshub_hub::broker_conformance_tests!(
    attr = tokio::test(flavor = "multi_thread", worker_threads = 2),
    harness = RedisHarness::new(),
);
