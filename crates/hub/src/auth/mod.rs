//! Connection and subscription tokens (being written).
