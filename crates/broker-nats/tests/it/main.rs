//! Integration tests of the NATS broker: the broker conformance suite on the
//! system NATS server (127.0.0.1:4222, one prefix per test) and failure
//! scenarios on private nats-server processes started by the tests.

mod common;
mod conformance;
mod failures;
mod ordering;
