//! The broker conformance suite of wshub-hub on the system NATS server.

use crate::common::NatsHarness;

wshub_hub::broker_conformance_tests!(
    attr = tokio::test(flavor = "multi_thread", worker_threads = 2),
    harness = NatsHarness::new(),
);
