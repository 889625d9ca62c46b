//! The unidirectional transports' messages (`uni_websocket`, `uni_sse`,
//! `uni_http_stream`): the client sends one [`ConnectRequest`] and then only
//! receives, and what it receives are bare [`Push`] messages — the connect
//! result as `Push { connect }`, publications and the rest as they are in
//! `Reply { push }`, and a final `Push { disconnect }` — rather than
//! replies.
//!
//! A node encodes a publication once as `Reply { push }` for every
//! subscriber ([`crate::encode_push_reply`]); [`to_push`] turns such a frame into
//! the bare push by slicing (no decode, no copy) and falls back to decoding
//! for anything else.

use bytes::Bytes;

use crate::codec::{append, DecodeError, EncodeError, Encoding};
use crate::messages::{Connect, ConnectResult, Disconnect, Error, Push, Reply};

/// What one bidirectional frame (one encoded [`Reply`]) is on a
/// unidirectional transport.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum UniMessage {
    /// Send this encoded [`Push`].
    Push(Bytes),
    /// A command failed (the connect): unidirectional clients are told by a
    /// disconnect instead.
    Error(Error),
    /// Nothing to send (a reply to a command the transport never forwards).
    Skip,
}

/// What a unidirectional client is told when its connect failed: a
/// disconnect (it has no command to get an error reply for), mapped as
/// Centrifugo maps it: an expired token 3005 (get a new one and
/// reconnect), too many requests 3013, permission denied 3507, any other
/// error 3004 (reconnect later).
pub fn connect_error_disconnect(e: &Error) -> Disconnect {
    use crate::{DisconnectCode, ErrorCode};
    let code = match ErrorCode(e.code) {
        ErrorCode::TOKEN_EXPIRED | ErrorCode::EXPIRED => DisconnectCode::EXPIRED,
        ErrorCode::TOO_MANY_REQUESTS => DisconnectCode::TOO_MANY_REQUESTS,
        ErrorCode::PERMISSION_DENIED => DisconnectCode::PERMISSION_DENIED,
        _ => DisconnectCode::SERVER_ERROR,
    };
    let mut d = code.to_disconnect();
    if d.reason.is_empty() {
        d.reason = e.message.clone();
    }
    d
}

/// The push form of a connect result.
impl From<ConnectResult> for Connect {
    fn from(r: ConnectResult) -> Self {
        Connect {
            client: r.client,
            version: r.version,
            data: r.data,
            subs: r.subs,
            expires: r.expires,
            ttl: r.ttl,
            ping: r.ping,
            pong: r.pong,
            session: r.session,
            node: r.node,
            time: r.time,
        }
    }
}

/// Encodes a bare push as one message of `encoding` (protobuf: with its
/// length prefix).
pub fn encode_push(encoding: Encoding, push: &Push) -> Result<Bytes, EncodeError> {
    let mut out = Vec::new();
    append(encoding, push, &mut out)?;
    Ok(out.into())
}

/// `Push { disconnect }`, the last message of a unidirectional stream.
pub fn encode_disconnect_push(encoding: Encoding, d: &Disconnect) -> Result<Bytes, EncodeError> {
    encode_push(
        encoding,
        &Push {
            disconnect: Some(d.clone()),
            ..Default::default()
        },
    )
}

/// Turns one encoded reply (as a session or the fan-out queues it) into
/// what a unidirectional client gets. The server's ping (an empty reply)
/// stays the empty message, which reads as an empty push.
pub fn to_push(encoding: Encoding, frame: &Bytes) -> Result<UniMessage, DecodeError> {
    if let Some(p) = slice_push(encoding, frame) {
        return Ok(UniMessage::Push(p));
    }
    let mut replies = crate::codec::decode_replies(encoding, frame)?;
    let reply = match replies.len() {
        0 => return Ok(UniMessage::Skip),
        1 => replies.remove(0),
        _ => return Ok(UniMessage::Skip),
    };
    if reply == Reply::default() {
        return Ok(UniMessage::Push(frame.clone()));
    }
    let push = if let Some(push) = reply.push {
        push
    } else if let Some(c) = reply.connect {
        // As Centrifugo sends it: no node (and no pong, which is false).
        let mut c = Connect::from(c);
        c.node.clear();
        Push {
            connect: Some(c),
            ..Default::default()
        }
    } else if let Some(e) = reply.error {
        return Ok(UniMessage::Error(e));
    } else {
        return Ok(UniMessage::Skip);
    };
    Ok(encode_push(encoding, &push).map_or(UniMessage::Skip, UniMessage::Push))
}

/// The push inside a frame that is exactly `Reply { push }` as
/// [`crate::encode_push_reply`] writes it: JSON `{"push":P}` → `P`; protobuf
/// `len, 0x22, len(P), P` → `len(P), P`.
fn slice_push(encoding: Encoding, frame: &Bytes) -> Option<Bytes> {
    match encoding {
        Encoding::Json => {
            const HEAD: &[u8] = b"{\"push\":";
            (frame.len() > HEAD.len() + 1 && frame.starts_with(HEAD) && frame.ends_with(b"}"))
                .then(|| frame.slice(HEAD.len()..frame.len() - 1))
                .filter(|p| p.first() == Some(&b'{') && p.last() == Some(&b'}'))
        }
        Encoding::Protobuf => {
            let (outer, n) = varint(frame)?;
            let rest = frame.get(n..)?;
            // Field 4, length-delimited, and nothing after the push.
            if rest.first() != Some(&0x22) || outer != rest.len() as u64 {
                return None;
            }
            let (inner, m) = varint(rest.get(1..)?)?;
            (inner == (rest.len() - 1 - m) as u64).then(|| frame.slice(n + 1..))
        }
    }
}

fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_push_reply, encode_reply};
    use crate::messages::Publication;

    fn publication() -> Push {
        Push::publication(
            "news",
            Publication {
                data: Bytes::from_static(br#"{"n":1}"#),
                offset: 3,
                ..Default::default()
            },
        )
    }

    fn decode_push(enc: Encoding, b: &[u8]) -> Push {
        match enc {
            Encoding::Json => serde_json::from_slice(b).unwrap(),
            Encoding::Protobuf => {
                let (len, n) = varint(b).unwrap();
                assert_eq!(len as usize, b.len() - n);
                <Push as prost::Message>::decode(&b[n..]).unwrap()
            }
        }
    }

    #[test]
    fn a_shared_push_frame_becomes_the_bare_push_by_slicing() {
        for enc in [Encoding::Json, Encoding::Protobuf] {
            let push = publication();
            let frame = encode_push_reply(enc, &push).unwrap();
            let UniMessage::Push(p) = to_push(enc, &frame).unwrap() else {
                panic!("{enc:?}: not a push");
            };
            assert_eq!(p, encode_push(enc, &push).unwrap(), "{enc:?}");
            // Sliced, not copied.
            assert_eq!(
                p.as_ptr() as usize - frame.as_ptr() as usize,
                frame.len() - p.len() - usize::from(enc == Encoding::Json),
                "{enc:?}"
            );
        }
        let json = encode_push(Encoding::Json, &publication()).unwrap();
        assert_eq!(
            &json[..],
            br#"{"channel":"news","pub":{"data":{"n":1},"offset":3}}"#
        );
    }

    #[test]
    fn a_connect_reply_becomes_a_connect_push_and_an_error_is_reported() {
        for enc in [Encoding::Json, Encoding::Protobuf] {
            let reply = Reply {
                id: 1,
                connect: Some(ConnectResult {
                    client: "c1".into(),
                    ping: 25,
                    node: "n".into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let frame = encode_reply(enc, &reply).unwrap();
            let UniMessage::Push(p) = to_push(enc, &frame).unwrap() else {
                panic!("{enc:?}: not a push");
            };
            let back = decode_push(enc, &p);
            let c = back.connect.unwrap();
            assert_eq!((c.client.as_str(), c.ping, c.node.as_str()), ("c1", 25, ""));
            let err = Reply::error(1, crate::ErrorCode::TOKEN_EXPIRED);
            let frame = encode_reply(enc, &err).unwrap();
            assert!(matches!(to_push(enc, &frame).unwrap(), UniMessage::Error(e) if e.code == 109));
        }
        let ping = Bytes::from_static(b"{}");
        assert_eq!(
            to_push(Encoding::Json, &ping).unwrap(),
            UniMessage::Push(ping)
        );
        assert!(to_push(Encoding::Json, &Bytes::from_static(b"{\"push\":")).is_err());
    }

    #[test]
    fn a_disconnect_push_names_code_and_reason() {
        let d = Disconnect {
            code: 3001,
            reason: "shutdown".into(),
            reconnect: true,
        };
        let p = encode_disconnect_push(Encoding::Json, &d).unwrap();
        assert_eq!(
            &p[..],
            br#"{"disconnect":{"code":3001,"reason":"shutdown","reconnect":true}}"#
        );
    }
}
