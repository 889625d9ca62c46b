//! NATS broker (work in progress).
