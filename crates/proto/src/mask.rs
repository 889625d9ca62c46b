//! Payload masking (RFC 6455 §5.3).
//!
//! XOR with a 4-byte key, 16 bytes at a time through `u128` words (the
//! compiler lowers them to SIMD registers), so masking runs at memory speed.

/// XORs `buf` in place with `key`, as if the masked stream had already
/// consumed `offset` bytes (so a payload can be unmasked in pieces as it
/// arrives).
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    let k32 = u32::from_ne_bytes(key);
    // Both halves equal, so the byte order of the wide words is the key's.
    let k64 = u64::from(k32) | (u64::from(k32) << 32);
    let k128 = u128::from(k64) | (u128::from(k64) << 64);
    let mut chunks = buf.chunks_exact_mut(16);
    for c in &mut chunks {
        // `chunks_exact_mut` yields 16 bytes each time: the conversion
        // always succeeds (and compiles to nothing).
        if let Ok(arr) = <&mut [u8; 16]>::try_from(c) {
            *arr = (u128::from_ne_bytes(*arr) ^ k128).to_ne_bytes();
        }
    }
    // Fewer than 16 bytes are left: 8, then 4, if that many are there
    // (`len & n <= len`, so the splits are in bounds). Every step consumes a
    // multiple of 4 bytes, so the key phase is intact for the next.
    let rest = chunks.into_remainder();
    let (w8, rest) = rest.split_at_mut(rest.len() & 8);
    if let Ok(arr) = <&mut [u8; 8]>::try_from(w8) {
        *arr = (u64::from_ne_bytes(*arr) ^ k64).to_ne_bytes();
    }
    let (w4, rest) = rest.split_at_mut(rest.len() & 4);
    if let Ok(arr) = <&mut [u8; 4]>::try_from(w4) {
        *arr = (u32::from_ne_bytes(*arr) ^ k32).to_ne_bytes();
    }
    for (b, k) in rest.iter_mut().zip(key) {
        *b ^= k;
    }
}

#[inline]
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    // Little-endian: byte i of the result is byte (i + offset) % 4 of the key.
    let s = (offset & 3) as u32;
    u32::from_le_bytes(key).rotate_right(8 * s).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(i + offset) & 3];
        }
    }

    proptest! {
        #[test]
        fn matches_naive(data in proptest::collection::vec(any::<u8>(), 0..300), key in any::<[u8; 4]>(), offset in 0usize..8) {
            let mut a = data.clone();
            let mut b = data;
            apply_mask(&mut a, key, offset);
            naive(&mut b, key, offset);
            prop_assert_eq!(a, b);
        }

        #[test]
        fn split_masking_equals_whole(data in proptest::collection::vec(any::<u8>(), 0..300), key in any::<[u8; 4]>(), cut in 0usize..300) {
            let cut = cut.min(data.len());
            let mut whole = data.clone();
            apply_mask(&mut whole, key, 0);
            let mut parts = data;
            let (a, b) = parts.split_at_mut(cut);
            apply_mask(a, key, 0);
            apply_mask(b, key, cut);
            prop_assert_eq!(whole, parts);
        }
    }
}
