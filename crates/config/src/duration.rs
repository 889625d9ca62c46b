//! Durations written the way Centrifugo (and Go's `time.ParseDuration`) writes them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration as written in a config file: `"25s"`, `"1m30s"`,
/// `"500ms"`, `"720h"`, `"1.5h"` or `"0"`.
///
/// Units: `ns`, `us` (also `µs`/`μs`), `ms`, `s`, `m`, `h`. Like Centrifugo,
/// a bare JSON/YAML/TOML integer is read as nanoseconds (Go's
/// `time.Duration` semantics); prefer strings with a unit.
///
/// It serializes to the shortest exact form (`"25s"`, `"1500ms"`, `"720h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(StdDuration);

impl Duration {
    /// Zero: for most options it means "off" or "use the default".
    pub const ZERO: Duration = Duration(StdDuration::ZERO);

    /// From whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration(StdDuration::from_secs(secs))
    }

    /// From whole milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(StdDuration::from_millis(ms))
    }

    /// The standard library duration.
    pub const fn as_std(self) -> StdDuration {
        self.0
    }

    /// True when zero.
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<StdDuration> for Duration {
    fn from(d: StdDuration) -> Self {
        Duration(d)
    }
}

impl From<Duration> for StdDuration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationParseError {
    input: String,
    reason: &'static str,
}

impl DurationParseError {
    fn new(input: &str, reason: &'static str) -> Self {
        DurationParseError {
            input: input.to_owned(),
            reason,
        }
    }
}

const NANOS_PER: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

impl FromStr for Duration {
    type Err = DurationParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let mut s = input.trim();
        let mut negative = false;
        if let Some(rest) = s.strip_prefix('+') {
            s = rest;
        } else if let Some(rest) = s.strip_prefix('-') {
            s = rest;
            negative = true;
        }
        if s == "0" {
            return Ok(Duration::ZERO);
        }
        if s.is_empty() {
            return Err(DurationParseError::new(input, "empty"));
        }
        let mut total: u128 = 0;
        while !s.is_empty() {
            // Number: digits, optional fraction.
            let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (int_part, rest) = s.split_at(int_end);
            let (frac_part, rest) = match rest.strip_prefix('.') {
                Some(r) => {
                    let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                    r.split_at(end)
                }
                None => ("", rest),
            };
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(DurationParseError::new(input, "expected a number"));
            }
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let (unit, rest) = rest.split_at(unit_end);
            if unit.is_empty() {
                return Err(DurationParseError::new(
                    input,
                    "missing unit (use ns, us, ms, s, m or h)",
                ));
            }
            let Some(&(_, scale)) = NANOS_PER.iter().find(|(u, _)| *u == unit) else {
                return Err(DurationParseError::new(
                    input,
                    "unknown unit (use ns, us, ms, s, m or h)",
                ));
            };
            let overflow = || DurationParseError::new(input, "too large");
            let whole: u128 = if int_part.is_empty() {
                0
            } else {
                int_part.parse::<u128>().map_err(|_| overflow())?
            };
            let mut nanos = whole.checked_mul(scale).ok_or_else(overflow)?;
            // Fraction: keep up to 18 digits, truncate the rest (like Go).
            let mut frac_scale = scale;
            for d in frac_part.bytes().take(18) {
                frac_scale /= 10;
                if frac_scale == 0 {
                    break;
                }
                nanos += u128::from(d - b'0') * frac_scale;
            }
            total = total.checked_add(nanos).ok_or_else(overflow)?;
            s = rest;
        }
        if negative && total != 0 {
            return Err(DurationParseError::new(
                input,
                "negative durations are not allowed",
            ));
        }
        let secs = u64::try_from(total / 1_000_000_000)
            .map_err(|_| DurationParseError::new(input, "too large"))?;
        // The remainder is below 1e9 and fits in u32.
        let sub = (total % 1_000_000_000) as u32;
        Ok(Duration(StdDuration::new(secs, sub)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.as_nanos();
        if n == 0 {
            return f.write_str("0s");
        }
        for (unit, scale) in [
            ("h", 3_600_000_000_000u128),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
        ] {
            if n.is_multiple_of(scale) {
                return write!(f, "{}{unit}", n / scale);
            }
        }
        write!(f, "{n}ns")
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"25s\", \"500ms\" or \"1h\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration(StdDuration::from_nanos(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(|v| Duration(StdDuration::from_nanos(v)))
                    .map_err(|_| E::custom("negative durations are not allowed"))
            }
            fn visit_f64<E: de::Error>(self, _v: f64) -> Result<Duration, E> {
                Err(E::custom(
                    "a duration must be a string with a unit, such as \"1.5s\"",
                ))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> StdDuration {
        s.parse::<Duration>().unwrap().as_std()
    }

    #[test]
    fn parses_go_syntax() {
        assert_eq!(d("25s"), StdDuration::from_secs(25));
        assert_eq!(d("500ms"), StdDuration::from_millis(500));
        assert_eq!(d("1m"), StdDuration::from_secs(60));
        assert_eq!(d("720h"), StdDuration::from_secs(720 * 3600));
        assert_eq!(d("1h30m"), StdDuration::from_secs(5400));
        assert_eq!(d("1.5s"), StdDuration::from_millis(1500));
        assert_eq!(d(".5s"), StdDuration::from_millis(500));
        assert_eq!(d("2us"), StdDuration::from_micros(2));
        assert_eq!(d("2µs"), StdDuration::from_micros(2));
        assert_eq!(d("7ns"), StdDuration::from_nanos(7));
        assert_eq!(d("0"), StdDuration::ZERO);
        assert_eq!(d("0s"), StdDuration::ZERO);
    }

    #[test]
    fn rejects_bad_input() {
        for bad in ["", "5", "s", "1x", "-1s", "1.s.", "10 s", "1e3s"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["25s", "1500ms", "720h", "90m", "1us", "3ns", "0s"] {
            let v: Duration = s.parse().unwrap();
            assert_eq!(v.to_string(), s);
            assert_eq!(v.to_string().parse::<Duration>().unwrap(), v);
        }
    }

    #[test]
    fn integers_are_nanoseconds_like_go() {
        let v: Duration = serde_json::from_str("1000000000").unwrap();
        assert_eq!(v.as_std(), StdDuration::from_secs(1));
        assert!(serde_json::from_str::<Duration>("-1").is_err());
        assert!(serde_json::from_str::<Duration>("1.5").is_err());
    }
}
