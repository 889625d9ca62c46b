//! Configuration in the Centrifugo v6 file format (being written).
