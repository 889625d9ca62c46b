//! Centrifugo client protocol v2 codec (being written).
