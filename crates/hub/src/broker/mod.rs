//! The Broker trait and the in-memory broker (being written).
