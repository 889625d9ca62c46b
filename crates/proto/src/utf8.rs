//! Incremental UTF-8 validation.
//!
//! Text messages arrive in pieces: fragments, and partial frames as TCP
//! segments land. [`Utf8Validator`] checks each piece as it comes, so an
//! invalid byte fails the connection at once (Autobahn 6.4.x, strict), and a
//! code point split across pieces is accepted. Whole runs go through
//! `simdutf8`; only the at most three bytes of a split code point are carried.

/// Result of feeding bytes to the validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// Validates a UTF-8 stream fed in arbitrary pieces.
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a stream.
    pub const fn new() -> Self {
        Utf8Validator {
            pending: [0; 4],
            pending_len: 0,
        }
    }

    /// Feeds the next piece. Fails as soon as the bytes seen so far cannot
    /// be the prefix of any valid UTF-8 string.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), Invalid> {
        if self.pending_len == 0 && input.len() < 64 && input.is_ascii() {
            // Short ASCII pieces (most chat-sized text): a word-at-a-time
            // check is cheaper than setting up the SIMD validator.
            return Ok(());
        }
        if self.pending_len > 0 {
            // Complete the split code point one byte at a time (at most 3).
            while self.pending_len > 0 {
                let Some((&b, rest)) = input.split_first() else {
                    return Ok(());
                };
                // At most 3 bytes are ever pending (an incomplete code
                // point), so the slot exists; `Invalid` would be a safe answer.
                let len = usize::from(self.pending_len);
                let Some(slot) = self.pending.get_mut(len) else {
                    return Err(Invalid);
                };
                *slot = b;
                self.pending_len += 1;
                input = rest;
                let Some(code_point) = self.pending.get(..=len) else {
                    return Err(Invalid);
                };
                match std::str::from_utf8(code_point) {
                    Ok(_) => self.pending_len = 0,
                    Err(e) if e.error_len().is_none() => {}
                    Err(_) => return Err(Invalid),
                }
            }
        }
        match simdutf8::compat::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(Invalid),
                None => {
                    // An incomplete code point at the end: at most 3 bytes.
                    let tail = input.get(e.valid_up_to()..).unwrap_or_default();
                    let Some(pending) = self.pending.get_mut(..tail.len()) else {
                        return Err(Invalid);
                    };
                    pending.copy_from_slice(tail);
                    self.pending_len = tail.len() as u8;
                    Ok(())
                }
            },
        }
    }

    /// Ends the stream: fails if a code point was left incomplete. Resets
    /// the validator for the next message.
    pub fn finish(&mut self) -> Result<(), Invalid> {
        let ok = self.pending_len == 0;
        self.pending_len = 0;
        if ok {
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    /// Forgets any partial state.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }
}

/// Validates a complete string (fast path).
#[inline]
pub fn validate(bytes: &[u8]) -> Result<(), Invalid> {
    simdutf8::basic::from_utf8(bytes)
        .map(|_| ())
        .map_err(|_| Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stream_ok(parts: &[&[u8]]) -> bool {
        let mut v = Utf8Validator::new();
        for p in parts {
            if v.feed(p).is_err() {
                return false;
            }
        }
        v.finish().is_ok()
    }

    #[test]
    fn split_code_points() {
        let s = "κόσμε 😀 ok".as_bytes();
        for i in 0..=s.len() {
            for j in i..=s.len() {
                assert!(stream_ok(&[&s[..i], &s[i..j], &s[j..]]), "{i} {j}");
            }
        }
    }

    #[test]
    fn fails_fast_inside_a_piece() {
        // Autobahn 6.4.1: valid prefix, then an invalid code point before the end.
        let mut v = Utf8Validator::new();
        assert!(v.feed("κόσμε".as_bytes()).is_ok());
        assert!(v.feed(b"\xf4\x90\x80\x80").is_err());
        // A lone byte that can never start a sequence fails on its own.
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xf4").is_ok());
        assert!(v.feed(b"\x90").is_err());
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xff").is_err());
    }

    #[test]
    fn incomplete_at_end_fails() {
        assert!(!stream_ok(&[b"abc\xe2\x82"]));
        assert!(!stream_ok(&[b"\xc3"]));
        assert!(stream_ok(&[b""]));
    }

    #[test]
    fn surrogates_and_overlongs_rejected() {
        for bad in [
            &b"\xed\xa0\x80"[..],
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xf8\x88\x80\x80\x80",
        ] {
            assert!(!stream_ok(&[bad]), "{bad:?}");
            for cut in 1..bad.len() {
                assert!(!stream_ok(&[&bad[..cut], &bad[cut..]]), "{bad:?} at {cut}");
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_std_at_every_split(data in proptest::collection::vec(any::<u8>(), 0..64), a in 0usize..64, b in 0usize..64) {
            let (a, b) = (a.min(data.len()), b.min(data.len()));
            let (a, b) = (a.min(b), a.max(b));
            let expect = std::str::from_utf8(&data).is_ok();
            prop_assert_eq!(stream_ok(&[&data[..a], &data[a..b], &data[b..]]), expect);
        }

        #[test]
        fn valid_strings_pass_at_every_split(s in "\\PC{0,40}", a in 0usize..200) {
            let bytes = s.as_bytes();
            let a = a.min(bytes.len());
            prop_assert!(stream_ok(&[&bytes[..a], &bytes[a..]]));
        }

        #[test]
        fn byte_by_byte_matches_std(data in proptest::collection::vec(any::<u8>(), 0..32)) {
            let parts: Vec<&[u8]> = data.chunks(1).collect();
            prop_assert_eq!(stream_ok(&parts), std::str::from_utf8(&data).is_ok());
        }
    }
}
