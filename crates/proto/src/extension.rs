//! `Sec-WebSocket-Extensions`: parsing (RFC 6455 §9.1) and
//! permessage-deflate negotiation (RFC 7692 §7).
//!
//! [`parse_extensions`] turns one or more header values into a list of
//! [`Extension`]s. [`negotiate_server`] picks the first acceptable
//! permessage-deflate offer and builds the answer; [`client_offer`] and
//! [`accept_client`] are the client's two halves.
//!
//! ```
//! use wshub_proto::extension::{client_offer, negotiate_server};
//! use wshub_proto::DeflateConfig;
//!
//! let config = DeflateConfig::default();
//! let offer = client_offer(&config);
//! assert_eq!(offer, "permessage-deflate; client_max_window_bits");
//! let (params, answer) = negotiate_server(&config, &[offer.as_bytes()]).unwrap();
//! assert_eq!(answer, "permessage-deflate");
//! assert_eq!(params.client_max_window_bits, 15);
//! ```

use std::borrow::Cow;
use std::fmt;

use crate::deflate::{DeflateConfig, DeflateParams};

/// The registered name of the permessage-deflate extension.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// One extension from a `Sec-WebSocket-Extensions` list, with its
/// parameters in the order they were written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension<'a> {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: &'a str,
    /// The parameters, in order, duplicates kept.
    pub params: Vec<ExtensionParam<'a>>,
}

/// One `name[=value]` parameter of an [`Extension`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionParam<'a> {
    /// The parameter token.
    pub name: &'a str,
    /// The value, unquoted (a quoted-string value is always a valid token
    /// once unquoted); `None` for a bare parameter.
    pub value: Option<Cow<'a, str>>,
}

/// Why a `Sec-WebSocket-Extensions` header, or a server's answer to our
/// permessage-deflate offer, was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtensionError {
    /// The header does not follow the RFC 6455 §9.1 grammar.
    Malformed {
        /// Which header line (counted from 0).
        line: usize,
        /// Byte offset inside that line.
        offset: usize,
    },
    /// The server accepted an extension that we did not offer.
    Unoffered(String),
    /// The server accepted permessage-deflate more than once.
    Duplicate,
    /// A parameter permessage-deflate does not define.
    UnknownParam(String),
    /// A parameter given twice.
    DuplicateParam(String),
    /// A parameter with a missing, superfluous or out-of-range value.
    InvalidParam(String),
    /// A parameter we asked for is missing from the answer.
    MissingParam(&'static str),
}

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtensionError::Malformed { line, offset } => write!(
                f,
                "malformed Sec-WebSocket-Extensions header (line {line}, byte {offset})"
            ),
            ExtensionError::Unoffered(name) => {
                write!(f, "server accepted extension {name:?} that was not offered")
            }
            ExtensionError::Duplicate => {
                write!(f, "server accepted permessage-deflate more than once")
            }
            ExtensionError::UnknownParam(p) => {
                write!(f, "unknown permessage-deflate parameter {p:?}")
            }
            ExtensionError::DuplicateParam(p) => {
                write!(f, "duplicate permessage-deflate parameter {p:?}")
            }
            ExtensionError::InvalidParam(p) => {
                write!(f, "invalid value for permessage-deflate parameter {p:?}")
            }
            ExtensionError::MissingParam(p) => {
                write!(
                    f,
                    "permessage-deflate parameter {p:?} requested but not answered"
                )
            }
        }
    }
}

impl std::error::Error for ExtensionError {}

/// `tchar` from RFC 7230 §3.2.6.
pub(crate) fn is_tchar(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'#'
            | b'$'
            | b'%'
            | b'&'
            | b'\''
            | b'*'
            | b'+'
            | b'-'
            | b'.'
            | b'^'
            | b'_'
            | b'`'
            | b'|'
            | b'~'
    ) || b.is_ascii_alphanumeric()
}

/// A byte cursor over one header line.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self) -> ExtensionError {
        ExtensionError::Malformed {
            line: self.line,
            offset: self.pos,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Result<&'a str, ExtensionError> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err());
        }
        // Only ASCII tchars were consumed, so this cannot fail.
        let token = self.s.get(start..self.pos).ok_or_else(|| self.err())?;
        std::str::from_utf8(token).map_err(|_| self.err())
    }

    /// A quoted-string whose unquoted content must be a token. The opening
    /// quote is at `self.pos`.
    fn quoted_token(&mut self) -> Result<Cow<'a, str>, ExtensionError> {
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<String> = None;
        loop {
            let Some(b) = self.peek() else {
                return Err(self.err());
            };
            match b {
                b'"' => break,
                b'\\' => {
                    let at = self.pos;
                    self.pos += 1;
                    let Some(c) = self.peek().filter(|&c| is_tchar(c)) else {
                        return Err(self.err());
                    };
                    owned
                        .get_or_insert_with(|| {
                            let before = self.s.get(start..at).unwrap_or_default();
                            String::from_utf8_lossy(before).into_owned()
                        })
                        .push(char::from(c));
                }
                c if is_tchar(c) => {
                    if let Some(o) = owned.as_mut() {
                        o.push(char::from(c));
                    }
                }
                _ => return Err(self.err()),
            }
            self.pos += 1;
        }
        let end = self.pos;
        self.pos += 1; // closing quote
        if end == start {
            return Err(ExtensionError::Malformed {
                line: self.line,
                offset: start,
            });
        }
        match owned {
            Some(o) => Ok(Cow::Owned(o)),
            None => {
                let token = self.s.get(start..end).ok_or_else(|| self.err())?;
                std::str::from_utf8(token)
                    .map(Cow::Borrowed)
                    .map_err(|_| self.err())
            }
        }
    }
}

/// Parses `Sec-WebSocket-Extensions` header values (several header lines
/// form one list) per RFC 6455 §9.1:
///
/// ```text
/// extension-list = 1#( extension-token *( ";" extension-param ) )
/// extension-param = token [ "=" ( token | quoted-string ) ]
/// ```
///
/// Optional whitespace is allowed around `,`, `;` and `=`; empty list
/// elements (`a, , b`) are ignored as RFC 7230 §7 asks. A quoted-string
/// value must be a token once unquoted. Runs in time linear in the input.
pub fn parse_extensions<'a>(
    header_values: &[&'a [u8]],
) -> Result<Vec<Extension<'a>>, ExtensionError> {
    let mut out = Vec::new();
    for (line, value) in header_values.iter().enumerate() {
        let mut c = Cursor {
            s: value,
            pos: 0,
            line,
        };
        loop {
            c.skip_ows();
            match c.peek() {
                None => break,
                Some(b',') => {
                    c.pos += 1;
                    continue;
                }
                Some(_) => {}
            }
            let name = c.token()?;
            let mut params = Vec::new();
            loop {
                c.skip_ows();
                match c.peek() {
                    None => break,
                    Some(b',') => {
                        c.pos += 1;
                        break;
                    }
                    Some(b';') => c.pos += 1,
                    Some(_) => return Err(c.err()),
                }
                c.skip_ows();
                let pname = c.token()?;
                c.skip_ows();
                let value = if c.peek() == Some(b'=') {
                    c.pos += 1;
                    c.skip_ows();
                    Some(if c.peek() == Some(b'"') {
                        c.quoted_token()?
                    } else {
                        Cow::Borrowed(c.token()?)
                    })
                } else {
                    None
                };
                params.push(ExtensionParam { name: pname, value });
            }
            out.push(Extension { name, params });
        }
    }
    Ok(out)
}

/// A window-bits value: `8`..=`15`, plain digits, no leading zero.
fn window_bits(v: &str) -> Option<u8> {
    match v {
        "8" => Some(8),
        "9" => Some(9),
        "10" => Some(10),
        "11" => Some(11),
        "12" => Some(12),
        "13" => Some(13),
        "14" => Some(14),
        "15" => Some(15),
        _ => None,
    }
}

/// The permessage-deflate parameters of one offer or answer, checked for
/// unknown names, duplicates and values.
#[derive(Default)]
struct PmdParams {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value.
    client_max_window_bits: Option<Option<u8>>,
}

impl PmdParams {
    /// With `is_answer`, `client_max_window_bits` must have a value (a
    /// server's answer); an offer may leave it bare.
    fn parse(params: &[ExtensionParam<'_>], is_answer: bool) -> Result<Self, ExtensionError> {
        let mut p = PmdParams::default();
        let mut seen = 0u8;
        for param in params {
            let name = param.name;
            let idx = [
                SERVER_NO_CONTEXT_TAKEOVER,
                CLIENT_NO_CONTEXT_TAKEOVER,
                SERVER_MAX_WINDOW_BITS,
                CLIENT_MAX_WINDOW_BITS,
            ]
            .iter()
            .position(|k| k.eq_ignore_ascii_case(name))
            .ok_or_else(|| ExtensionError::UnknownParam(name.to_owned()))?;
            if seen & (1 << idx) != 0 {
                return Err(ExtensionError::DuplicateParam(name.to_owned()));
            }
            seen |= 1 << idx;
            let invalid = || ExtensionError::InvalidParam(name.to_owned());
            let bits = || {
                param
                    .value
                    .as_deref()
                    .and_then(window_bits)
                    .ok_or_else(invalid)
            };
            match idx {
                0 | 1 => {
                    if param.value.is_some() {
                        return Err(invalid());
                    }
                    if idx == 0 {
                        p.server_no_context_takeover = true;
                    } else {
                        p.client_no_context_takeover = true;
                    }
                }
                2 => p.server_max_window_bits = Some(bits()?),
                _ => {
                    p.client_max_window_bits = Some(match param.value {
                        None if !is_answer => None,
                        _ => Some(bits()?),
                    })
                }
            }
        }
        Ok(p)
    }
}

/// Server side: answers the client's `Sec-WebSocket-Extensions` offers.
///
/// Walks the permessage-deflate offers in the client's order of preference
/// and accepts the first valid one that `config` can honour, adjusted to
/// `config` (RFC 7692 §7.1). Offers with unknown or duplicate parameters,
/// or bad values, are declined and the next one is tried. An offer without
/// `client_max_window_bits` is declined when `config` wants to limit the
/// client's window, since the client would not understand the limit.
/// Other extensions are ignored. A header that does not parse at all
/// declines everything.
///
/// Returns the negotiated parameters and the `Sec-WebSocket-Extensions`
/// response value, or `None` if nothing was accepted.
pub fn negotiate_server(
    config: &DeflateConfig,
    header_values: &[&[u8]],
) -> Option<(DeflateParams, String)> {
    let extensions = parse_extensions(header_values).ok()?;
    let cfg_server_bits = config.server_max_window_bits.clamp(8, 15);
    let cfg_client_bits = config.client_max_window_bits.clamp(8, 15);
    for ext in extensions
        .iter()
        .filter(|e| e.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
    {
        let Ok(offer) = PmdParams::parse(&ext.params, false) else {
            continue;
        };
        let server_nct = offer.server_no_context_takeover || config.server_no_context_takeover;
        let client_nct = offer.client_no_context_takeover || config.client_no_context_takeover;
        let (server_bits, send_server_bits) = match offer.server_max_window_bits {
            Some(b) => (b.min(cfg_server_bits), true),
            None => (cfg_server_bits, cfg_server_bits < 15),
        };
        let (client_bits, send_client_bits) = match offer.client_max_window_bits {
            Some(offered) => {
                let b = offered.unwrap_or(15).min(cfg_client_bits);
                (b, b < 15 || offered.is_some())
            }
            // We may not limit a client that did not say it can be limited.
            None if cfg_client_bits < 15 => continue,
            None => (15, false),
        };
        let mut answer = String::from(PERMESSAGE_DEFLATE);
        if server_nct {
            answer.push_str("; ");
            answer.push_str(SERVER_NO_CONTEXT_TAKEOVER);
        }
        if client_nct {
            answer.push_str("; ");
            answer.push_str(CLIENT_NO_CONTEXT_TAKEOVER);
        }
        if send_server_bits {
            answer.push_str(&format!("; {SERVER_MAX_WINDOW_BITS}={server_bits}"));
        }
        if send_client_bits {
            answer.push_str(&format!("; {CLIENT_MAX_WINDOW_BITS}={client_bits}"));
        }
        let params = DeflateParams {
            server_no_context_takeover: server_nct,
            client_no_context_takeover: client_nct,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        };
        return Some((params, answer));
    }
    None
}

/// Client side: the `Sec-WebSocket-Extensions` value offering
/// permessage-deflate as `config` asks.
///
/// `client_max_window_bits` is always offered (bare when
/// `config.client_max_window_bits` is 15) so that servers which want to
/// limit our window can accept the offer.
pub fn client_offer(config: &DeflateConfig) -> String {
    let mut s = String::from(PERMESSAGE_DEFLATE);
    if config.server_no_context_takeover {
        s.push_str("; ");
        s.push_str(SERVER_NO_CONTEXT_TAKEOVER);
    }
    if config.client_no_context_takeover {
        s.push_str("; ");
        s.push_str(CLIENT_NO_CONTEXT_TAKEOVER);
    }
    let server_bits = config.server_max_window_bits.clamp(8, 15);
    if server_bits < 15 {
        s.push_str(&format!("; {SERVER_MAX_WINDOW_BITS}={server_bits}"));
    }
    let client_bits = config.client_max_window_bits.clamp(8, 15);
    s.push_str("; ");
    s.push_str(CLIENT_MAX_WINDOW_BITS);
    if client_bits < 15 {
        s.push_str(&format!("={client_bits}"));
    }
    s
}

/// Client side: checks the server's `Sec-WebSocket-Extensions` answer to
/// the offer built by [`client_offer`] from the same `config`.
///
/// `Ok(None)` when the server accepted no extension (no header, or an
/// empty one). Errors when the server accepted something we did not offer,
/// accepted permessage-deflate twice, or answered with unknown, duplicate
/// or invalid parameters, a window larger than we asked for, or without a
/// `server_no_context_takeover` / `server_max_window_bits` we asked for.
///
/// In the result, `client_no_context_takeover` and `client_max_window_bits`
/// also honour what we offered ourselves.
pub fn accept_client(
    config: &DeflateConfig,
    header_values: &[&[u8]],
) -> Result<Option<DeflateParams>, ExtensionError> {
    let mut result = None;
    let cfg_server_bits = config.server_max_window_bits.clamp(8, 15);
    let cfg_client_bits = config.client_max_window_bits.clamp(8, 15);
    for ext in parse_extensions(header_values)? {
        if !ext.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
            return Err(ExtensionError::Unoffered(ext.name.to_owned()));
        }
        if result.is_some() {
            return Err(ExtensionError::Duplicate);
        }
        let answer = PmdParams::parse(&ext.params, true)?;
        if config.server_no_context_takeover && !answer.server_no_context_takeover {
            return Err(ExtensionError::MissingParam(SERVER_NO_CONTEXT_TAKEOVER));
        }
        let server_bits = match answer.server_max_window_bits {
            Some(b) if b > cfg_server_bits => {
                return Err(ExtensionError::InvalidParam(SERVER_MAX_WINDOW_BITS.into()))
            }
            Some(b) => b,
            None if cfg_server_bits < 15 => {
                return Err(ExtensionError::MissingParam(SERVER_MAX_WINDOW_BITS))
            }
            None => 15,
        };
        let client_bits = match answer.client_max_window_bits {
            Some(Some(b)) if b > cfg_client_bits => {
                return Err(ExtensionError::InvalidParam(CLIENT_MAX_WINDOW_BITS.into()))
            }
            Some(Some(b)) => b,
            // `PmdParams::parse` requires a value in an answer.
            Some(None) | None => cfg_client_bits,
        };
        result = Some(DeflateParams {
            server_no_context_takeover: answer.server_no_context_takeover,
            client_no_context_takeover: answer.client_no_context_takeover
                || config.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        });
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DeflateConfig {
        DeflateConfig::default()
    }

    fn server(config: &DeflateConfig, lines: &[&str]) -> Option<(DeflateParams, String)> {
        let v: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        negotiate_server(config, &v)
    }

    fn server_answer(config: &DeflateConfig, lines: &[&str]) -> Option<String> {
        server(config, lines).map(|(_, a)| a)
    }

    fn client(
        config: &DeflateConfig,
        lines: &[&str],
    ) -> Result<Option<DeflateParams>, ExtensionError> {
        let v: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        accept_client(config, &v)
    }

    fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        }
    }

    // ---- parser ----

    #[test]
    fn parses_lists_params_and_whitespace() {
        let lines: [&[u8]; 2] = [
            b"foo, permessage-deflate ; a=1;b ;\tc = \"x\\yz\" ,",
            b" , bar;q=\"tok\"",
        ];
        let exts = parse_extensions(&lines).unwrap();
        assert_eq!(exts.len(), 3);
        assert_eq!(exts[0].name, "foo");
        assert!(exts[0].params.is_empty());
        assert_eq!(exts[1].name, "permessage-deflate");
        let p = &exts[1].params;
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].name, p[0].value.as_deref()), ("a", Some("1")));
        assert_eq!((p[1].name, p[1].value.as_deref()), ("b", None));
        assert_eq!((p[2].name, p[2].value.as_deref()), ("c", Some("xyz")));
        assert_eq!(exts[2].name, "bar");
        assert_eq!(exts[2].params[0].value.as_deref(), Some("tok"));
        assert!(matches!(exts[2].params[0].value, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn empty_header_is_an_empty_list() {
        assert_eq!(parse_extensions(&[b""]).unwrap(), vec![]);
        assert_eq!(parse_extensions(&[b" , ,"]).unwrap(), vec![]);
        assert_eq!(parse_extensions(&[]).unwrap(), vec![]);
    }

    #[test]
    fn malformed_headers_are_errors() {
        for bad in [
            &b"permessage-deflate;"[..],
            b"permessage-deflate; ;a",
            b"permessage-deflate; a=",
            b"permessage-deflate; a=\"\"",
            b"permessage-deflate; a=\"1 0\"",
            b"permessage-deflate; a=\"10",
            b"permessage-deflate; a=\"1\\\"",
            b"permessage-deflate; a=1=2",
            b"permessage-deflate a",
            b"permessage-deflate; a b",
            b";a",
            b"perm\xc3\xa9ssage",
            b"pmd; a=\"\xc3\xa9\"",
            b"pmd; a=\"a,b\"",
            b"pmd; a=\"\\\xc3\"",
            b"x/y",
        ] {
            assert!(
                matches!(
                    parse_extensions(&[bad]),
                    Err(ExtensionError::Malformed { .. })
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_extensions(&[b"ok", b"a;"]),
            Err(ExtensionError::Malformed { line: 1, offset: 2 })
        );
    }

    #[test]
    fn parser_is_linear_on_long_input() {
        let mut big = Vec::new();
        for _ in 0..100_000 {
            big.extend_from_slice(b"x; a=\"b\\c\", ");
        }
        let exts = parse_extensions(&[&big]).unwrap();
        assert_eq!(exts.len(), 100_000);
        assert_eq!(exts[99_999].params[0].value.as_deref(), Some("bc"));
    }

    // ---- server negotiation ----

    #[test]
    fn server_accepts_plain_offer() {
        let (p, a) = server(&cfg(), &["permessage-deflate"]).unwrap();
        assert_eq!(a, "permessage-deflate");
        assert_eq!(p, params(false, false, 15, 15));
    }

    #[test]
    fn server_each_offered_param_is_echoed() {
        let c = cfg();
        let table: &[(&str, &str, DeflateParams)] = &[
            (
                "permessage-deflate; server_no_context_takeover",
                "permessage-deflate; server_no_context_takeover",
                params(true, false, 15, 15),
            ),
            (
                "permessage-deflate; client_no_context_takeover",
                "permessage-deflate; client_no_context_takeover",
                params(false, true, 15, 15),
            ),
            (
                "permessage-deflate; server_max_window_bits=10",
                "permessage-deflate; server_max_window_bits=10",
                params(false, false, 10, 15),
            ),
            (
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; server_max_window_bits=8",
                params(false, false, 8, 15),
            ),
            (
                "permessage-deflate; server_max_window_bits=15",
                "permessage-deflate; server_max_window_bits=15",
                params(false, false, 15, 15),
            ),
            (
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate",
                params(false, false, 15, 15),
            ),
            (
                "permessage-deflate; client_max_window_bits=9",
                "permessage-deflate; client_max_window_bits=9",
                params(false, false, 15, 9),
            ),
            (
                "permessage-deflate; client_max_window_bits=8",
                "permessage-deflate; client_max_window_bits=8",
                params(false, false, 15, 8),
            ),
            (
                "permessage-deflate; client_max_window_bits=15",
                "permessage-deflate; client_max_window_bits=15",
                params(false, false, 15, 15),
            ),
            (
                "permessage-deflate;client_max_window_bits=\"10\";server_max_window_bits=\"12\"",
                "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10",
                params(false, false, 12, 10),
            ),
            (
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=9; client_max_window_bits=11",
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=9; client_max_window_bits=11",
                params(true, true, 9, 11),
            ),
        ];
        for (offer, answer, p) in table {
            let got = server(&c, &[offer]);
            assert_eq!(got, Some((*p, answer.to_string())), "offer {offer:?}");
        }
    }

    #[test]
    fn server_config_adds_params() {
        let table: &[(DeflateConfig, &str, &str, DeflateParams)] = &[
            (
                cfg().server_no_context_takeover(true),
                "permessage-deflate",
                "permessage-deflate; server_no_context_takeover",
                params(true, false, 15, 15),
            ),
            (
                cfg().client_no_context_takeover(true),
                "permessage-deflate",
                "permessage-deflate; client_no_context_takeover",
                params(false, true, 15, 15),
            ),
            (
                cfg().server_max_window_bits(11),
                "permessage-deflate",
                "permessage-deflate; server_max_window_bits=11",
                params(false, false, 11, 15),
            ),
            (
                // min(offered, config) both ways.
                cfg().server_max_window_bits(11),
                "permessage-deflate; server_max_window_bits=13",
                "permessage-deflate; server_max_window_bits=11",
                params(false, false, 11, 15),
            ),
            (
                cfg().server_max_window_bits(11),
                "permessage-deflate; server_max_window_bits=9",
                "permessage-deflate; server_max_window_bits=9",
                params(false, false, 9, 15),
            ),
            (
                cfg().client_max_window_bits(10),
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate; client_max_window_bits=10",
                params(false, false, 15, 10),
            ),
            (
                cfg().client_max_window_bits(10),
                "permessage-deflate; client_max_window_bits=12",
                "permessage-deflate; client_max_window_bits=10",
                params(false, false, 15, 10),
            ),
            (
                cfg().client_max_window_bits(10),
                "permessage-deflate; client_max_window_bits=8",
                "permessage-deflate; client_max_window_bits=8",
                params(false, false, 15, 8),
            ),
            (
                cfg().client_max_window_bits(8),
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate; client_max_window_bits=8",
                params(false, false, 15, 8),
            ),
        ];
        for (c, offer, answer, p) in table {
            assert_eq!(
                server(c, &[offer]),
                Some((*p, answer.to_string())),
                "config {c:?} offer {offer:?}"
            );
        }
    }

    #[test]
    fn server_declines_when_client_window_cannot_be_limited() {
        let c = cfg().client_max_window_bits(12);
        assert_eq!(server(&c, &["permessage-deflate"]), None);
        // The next offer, which allows it, is taken.
        assert_eq!(
            server_answer(
                &c,
                &["permessage-deflate; server_no_context_takeover, permessage-deflate; client_max_window_bits"]
            )
            .as_deref(),
            Some("permessage-deflate; client_max_window_bits=12")
        );
    }

    #[test]
    fn server_declines_bad_offers() {
        let c = cfg();
        for offer in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=0",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; server_max_window_bits=\"16\"",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=08",
            "permessage-deflate; client_max_window_bits=",
            "permessage-deflate; client_max_window_bits=\"\"",
            "permessage-deflate; client_max_window_bits=\"1 0\"",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"x\"",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; unknown_param",
            "permessage-deflate; mux=1",
            "permessage-deflate; server_no_context_takeover;",
        ] {
            assert_eq!(server(&c, &[offer]), None, "offer {offer:?}");
        }
    }

    #[test]
    fn server_skips_invalid_offer_and_takes_next() {
        let c = cfg();
        // Same header line.
        assert_eq!(
            server_answer(
                &c,
                &["permessage-deflate; server_max_window_bits=16, permessage-deflate; client_no_context_takeover"]
            )
            .as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
        // Across header lines.
        assert_eq!(
            server_answer(
                &c,
                &[
                    "permessage-deflate; foo=bar",
                    "permessage-deflate; client_max_window_bits=9, permessage-deflate"
                ]
            )
            .as_deref(),
            Some("permessage-deflate; client_max_window_bits=9")
        );
        // Duplicate params declined, then the next one.
        assert_eq!(
            server_answer(
                &c,
                &[
                    "permessage-deflate; client_max_window_bits; client_max_window_bits",
                    "permessage-deflate"
                ]
            )
            .as_deref(),
            Some("permessage-deflate")
        );
        // The first valid offer wins even if a later one is "better".
        assert_eq!(
            server_answer(
                &c,
                &["permessage-deflate; server_max_window_bits=9, permessage-deflate"]
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=9")
        );
    }

    #[test]
    fn server_ignores_unknown_extensions() {
        let c = cfg();
        assert_eq!(server(&c, &["x-webkit-deflate-frame"]), None);
        assert_eq!(server(&c, &["foo; bar=1"]), None);
        assert_eq!(
            server_answer(&c, &["foo; bar=1, permessage-deflate", "baz"]).as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(server(&c, &[]), None);
        assert_eq!(server(&c, &[""]), None);
    }

    #[test]
    fn server_quoted_values() {
        let c = cfg();
        assert_eq!(
            server(&c, &["permessage-deflate; client_max_window_bits=\"10\""])
                .map(|(p, _)| p.client_max_window_bits),
            Some(10)
        );
        // Escapes are unquoted before the value is read.
        assert_eq!(
            server(&c, &["permessage-deflate; server_max_window_bits=\"1\\0\""])
                .map(|(p, _)| p.server_max_window_bits),
            Some(10)
        );
        // A quoted value that is not a token makes the header malformed.
        assert_eq!(
            server(
                &c,
                &["permessage-deflate; client_max_window_bits=\"1,0\", permessage-deflate"]
            ),
            None
        );
    }

    #[test]
    fn server_param_and_extension_names_are_case_insensitive() {
        assert_eq!(
            server_answer(&cfg(), &["PerMessage-Deflate; Server_No_Context_Takeover"]).as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
    }

    // ---- client ----

    #[test]
    fn client_offer_strings() {
        assert_eq!(
            client_offer(&cfg()),
            "permessage-deflate; client_max_window_bits"
        );
        assert_eq!(
            client_offer(
                &cfg()
                    .server_no_context_takeover(true)
                    .client_no_context_takeover(true)
                    .server_max_window_bits(10)
                    .client_max_window_bits(9)
            ),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9"
        );
        assert_eq!(
            client_offer(&cfg().server_max_window_bits(8)),
            "permessage-deflate; server_max_window_bits=8; client_max_window_bits"
        );
    }

    #[test]
    fn client_offer_round_trips_through_server() {
        for sbits in [8, 12, 15] {
            for cbits in [8, 12, 15] {
                for snct in [false, true] {
                    for cnct in [false, true] {
                        let c = cfg()
                            .server_no_context_takeover(snct)
                            .client_no_context_takeover(cnct)
                            .server_max_window_bits(sbits)
                            .client_max_window_bits(cbits);
                        let offer = client_offer(&c);
                        let (sp, answer) = negotiate_server(&cfg(), &[offer.as_bytes()]).unwrap();
                        let cp = accept_client(&c, &[answer.as_bytes()]).unwrap().unwrap();
                        assert_eq!(sp, cp, "{offer} -> {answer}");
                        assert_eq!(cp, params(snct, cnct, sbits, cbits), "{offer} -> {answer}");
                    }
                }
            }
        }
    }

    #[test]
    fn client_accepts_valid_answers() {
        let c = cfg();
        assert_eq!(client(&c, &[]), Ok(None));
        assert_eq!(client(&c, &[""]), Ok(None));
        let table: &[(&str, DeflateParams)] = &[
            ("permessage-deflate", params(false, false, 15, 15)),
            (
                "permessage-deflate; server_no_context_takeover",
                params(true, false, 15, 15),
            ),
            (
                "permessage-deflate; client_no_context_takeover",
                params(false, true, 15, 15),
            ),
            (
                "permessage-deflate; server_max_window_bits=8",
                params(false, false, 8, 15),
            ),
            (
                "permessage-deflate; server_max_window_bits=15",
                params(false, false, 15, 15),
            ),
            (
                "permessage-deflate; client_max_window_bits=8",
                params(false, false, 15, 8),
            ),
            (
                "permessage-deflate; client_max_window_bits=\"15\"",
                params(false, false, 15, 15),
            ),
        ];
        for (answer, p) in table {
            assert_eq!(client(&c, &[answer]), Ok(Some(*p)), "answer {answer:?}");
        }
    }

    #[test]
    fn client_honours_own_offer() {
        // We offered client_no_context_takeover and a client window of 10:
        // even if the server does not echo them, we keep our word.
        let c = cfg()
            .client_no_context_takeover(true)
            .client_max_window_bits(10);
        assert_eq!(
            client(&c, &["permessage-deflate"]),
            Ok(Some(params(false, true, 15, 10)))
        );
        assert_eq!(
            client(&c, &["permessage-deflate; client_max_window_bits=9"]),
            Ok(Some(params(false, true, 15, 9)))
        );
        assert_eq!(
            client(&c, &["permessage-deflate; client_max_window_bits=11"]),
            Err(ExtensionError::InvalidParam(
                "client_max_window_bits".into()
            ))
        );
        // Requested server window.
        let c = cfg().server_max_window_bits(10);
        assert_eq!(
            client(&c, &["permessage-deflate; server_max_window_bits=10"]),
            Ok(Some(params(false, false, 10, 15)))
        );
        assert_eq!(
            client(&c, &["permessage-deflate; server_max_window_bits=9"]),
            Ok(Some(params(false, false, 9, 15)))
        );
        assert_eq!(
            client(&c, &["permessage-deflate; server_max_window_bits=11"]),
            Err(ExtensionError::InvalidParam(
                "server_max_window_bits".into()
            ))
        );
        assert_eq!(
            client(&c, &["permessage-deflate"]),
            Err(ExtensionError::MissingParam("server_max_window_bits"))
        );
        // Requested server_no_context_takeover.
        let c = cfg().server_no_context_takeover(true);
        assert_eq!(
            client(&c, &["permessage-deflate"]),
            Err(ExtensionError::MissingParam("server_no_context_takeover"))
        );
        assert_eq!(
            client(&c, &["permessage-deflate; server_no_context_takeover"]),
            Ok(Some(params(true, false, 15, 15)))
        );
    }

    #[test]
    fn client_rejects_bad_answers() {
        let c = cfg();
        let table: &[(&[&str], ExtensionError)] = &[
            (&["foo"], ExtensionError::Unoffered("foo".into())),
            (
                &["permessage-deflate, foo"],
                ExtensionError::Unoffered("foo".into()),
            ),
            (
                &["permessage-deflate", "permessage-deflate"],
                ExtensionError::Duplicate,
            ),
            (
                &["permessage-deflate, permessage-deflate"],
                ExtensionError::Duplicate,
            ),
            (
                &["permessage-deflate; foo"],
                ExtensionError::UnknownParam("foo".into()),
            ),
            (
                &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
                ExtensionError::DuplicateParam("server_no_context_takeover".into()),
            ),
            (
                &["permessage-deflate; client_no_context_takeover=1"],
                ExtensionError::InvalidParam("client_no_context_takeover".into()),
            ),
            (
                &["permessage-deflate; server_max_window_bits"],
                ExtensionError::InvalidParam("server_max_window_bits".into()),
            ),
            (
                &["permessage-deflate; server_max_window_bits=16"],
                ExtensionError::InvalidParam("server_max_window_bits".into()),
            ),
            (
                &["permessage-deflate; server_max_window_bits=7"],
                ExtensionError::InvalidParam("server_max_window_bits".into()),
            ),
            (
                &["permessage-deflate; server_max_window_bits=09"],
                ExtensionError::InvalidParam("server_max_window_bits".into()),
            ),
            (
                // An answer must give client_max_window_bits a value.
                &["permessage-deflate; client_max_window_bits"],
                ExtensionError::InvalidParam("client_max_window_bits".into()),
            ),
            (
                &["permessage-deflate; client_max_window_bits=16"],
                ExtensionError::InvalidParam("client_max_window_bits".into()),
            ),
            (
                &["permessage-deflate; client_max_window_bits=7"],
                ExtensionError::InvalidParam("client_max_window_bits".into()),
            ),
        ];
        for (answer, err) in table {
            assert_eq!(client(&c, answer), Err(err.clone()), "answer {answer:?}");
        }
        assert!(matches!(
            client(&c, &["permessage-deflate; client_max_window_bits=\"\""]),
            Err(ExtensionError::Malformed { .. })
        ));
    }

    #[test]
    fn errors_display() {
        let e = ExtensionError::Unoffered("foo".into());
        assert!(e.to_string().contains("foo"));
        let e: Box<dyn std::error::Error> = Box::new(ExtensionError::Duplicate);
        assert!(!e.to_string().is_empty());
    }
}
