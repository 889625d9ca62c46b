//! Integration tests of the Redis broker: the broker conformance suite on
//! the system Redis (127.0.0.1:6379, a random key prefix per test), the
//! key layout, and failures (killed and stopped servers) on private
//! `redis-server` processes.

mod conformance;
mod failures;
mod layout;
mod support;
