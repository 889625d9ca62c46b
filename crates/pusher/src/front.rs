//! The front's codec on the node: what an app's publication carries, how
//! the fan-out encodes it (once per event, [`Codec`]), and the presence
//! records the session turns into member events.
//!
//! A publication in an app's channel (`$pusher/{app_id}/{channel}`) holds
//! an [`Envelope`] as JSON: the event name, its data exactly as given, and
//! on presence channels the sender's `user_id`. Its `info.client` is the
//! `socket_id` that must not get it back (the API's `socket_id`, a client
//! event's sender).

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use wshub_hub::broker::{ClientInfo, Publication};
use wshub_hub::node::{FrontCodec, FrontPush};

use crate::wire;

/// What an app's publication carries.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// The event name.
    #[serde(rename = "e")]
    pub event: String,
    /// The event's data, raw JSON as given (a string from the API, any
    /// value from a client).
    #[serde(rename = "d")]
    pub data: Box<RawValue>,
    /// The sender's user id, for client events on presence channels.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// The publication data of an envelope.
pub fn encode(env: &Envelope) -> Bytes {
    // Strings and a raw value: serializing cannot fail.
    Bytes::from(serde_json::to_vec(env).unwrap_or_default())
}

/// An envelope from publication data; `None` when it is not one.
pub fn decode(data: &[u8]) -> Option<Envelope> {
    serde_json::from_slice(data).ok()
}

/// A presence member: the user and its `user_info` (raw JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    /// The `user_id` of the channel_data.
    pub user_id: String,
    /// The `user_info` of the channel_data, raw JSON.
    pub user_info: Option<String>,
}

impl Member {
    /// The broker's client info of this member's connection `socket`.
    pub fn info(&self, socket: &str) -> ClientInfo {
        let mut i = ClientInfo::new(self.user_id.clone(), socket);
        i.chan_info = self.user_info.clone().map(Bytes::from);
        i
    }

    /// `user_info` as a raw JSON value.
    pub fn raw_info(&self) -> Option<Box<RawValue>> {
        self.user_info
            .as_ref()
            .and_then(|s| RawValue::from_string(s.clone()).ok())
    }
}

/// The first byte of a presence record in a connection's queue: never the
/// first byte of a wire message (`{`).
const JOINED: u8 = 0;
const LEFT: u8 = 1;

#[derive(Serialize, Deserialize)]
struct Record {
    c: String,
    s: String,
    m: Member,
}

fn record(kind: u8, channel: &str, info: &ClientInfo) -> Option<Bytes> {
    let member = Member {
        user_id: info.user.clone(),
        user_info: info
            .chan_info
            .as_ref()
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_owned),
    };
    let r = Record {
        c: channel.to_owned(),
        s: info.client.clone(),
        m: member,
    };
    let body = serde_json::to_vec(&r).ok()?;
    let mut b = BytesMut::with_capacity(body.len() + 1);
    b.put_u8(kind);
    b.extend_from_slice(&body);
    Some(b.freeze())
}

/// Whether a queued frame is a presence record, not a wire message.
pub fn is_record(frame: &[u8]) -> bool {
    matches!(frame.first(), Some(&JOINED | &LEFT))
}

/// A presence record from a queued frame: (joined, node channel, member,
/// socket id); `None` for a wire message.
pub fn member_record(frame: &[u8]) -> Option<(bool, &str, Member, &str)> {
    let (&kind, body) = frame.split_first()?;
    let joined = match kind {
        JOINED => true,
        LEFT => false,
        _ => return None,
    };
    // Borrow the names from the frame; the member is small and owned.
    #[derive(Deserialize)]
    struct Borrowed<'a> {
        c: &'a str,
        s: &'a str,
        m: Member,
    }
    let r: Borrowed<'_> = serde_json::from_slice(body).ok()?;
    Some((joined, r.c, r.m, r.s))
}

/// The node's [`FrontCodec`] for every app's channels.
#[derive(Debug, Default)]
pub struct Codec;

/// The app's channel name of a node channel (`$pusher/{app}/{channel}`).
fn app_channel(channel: &str) -> Option<&str> {
    let rest = channel.strip_prefix(wshub_config::FRONT_CHANNEL_PREFIX)?;
    rest.split_once('/').map(|(_, c)| c)
}

impl FrontCodec for Codec {
    fn publication(&self, channel: &str, publication: &Publication) -> Option<FrontPush> {
        let name = app_channel(channel)?;
        let env = decode(&publication.data)?;
        let frame = wire::event(name, &env.event, &env.data, env.user_id.as_deref());
        let exclude = publication
            .info
            .as_ref()
            .map(|i| i.client.clone())
            .filter(|c| !c.is_empty());
        Some(FrontPush { frame, exclude })
    }

    fn join(&self, channel: &str, info: &ClientInfo) -> Option<Bytes> {
        record(JOINED, channel, info)
    }

    fn leave(&self, channel: &str, info: &ClientInfo) -> Option<Bytes> {
        record(LEFT, channel, info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_becomes_the_event_and_names_its_sender() {
        let env = Envelope {
            event: "my-event".into(),
            data: RawValue::from_string(r#""{\"a\":1}""#.into()).unwrap(),
            user_id: None,
        };
        let mut p = Publication::new(encode(&env));
        p.info = Some(ClientInfo::new("", "1.2"));
        let push = Codec.publication("$pusher/app/my-channel", &p).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&push.frame).unwrap();
        assert_eq!(v["event"], "my-event");
        assert_eq!(v["channel"], "my-channel");
        assert_eq!(v["data"], "{\"a\":1}");
        assert_eq!(push.exclude.as_deref(), Some("1.2"));
        // Not an envelope, or not an app channel: nothing.
        assert!(Codec
            .publication("$pusher/app/c", &Publication::new("x"))
            .is_none());
        assert!(Codec.publication("other", &p).is_none());
    }

    #[test]
    fn presence_records_round_trip_and_are_never_wire_messages() {
        let mut info = ClientInfo::new("u1", "1.2");
        info.chan_info = Some(Bytes::from_static(br#"{"name":"A"}"#));
        let j = Codec.join("$pusher/app/presence-x", &info).unwrap();
        let (joined, c, m, s) = member_record(&j).unwrap();
        assert!(joined);
        assert_eq!(c, "$pusher/app/presence-x");
        assert_eq!(s, "1.2");
        assert_eq!(m.user_id, "u1");
        assert_eq!(m.user_info.as_deref(), Some(r#"{"name":"A"}"#));
        let l = Codec.leave("$pusher/app/presence-x", &info).unwrap();
        assert!(!member_record(&l).unwrap().0);
        assert!(member_record(br#"{"event":"x"}"#).is_none());
        assert!(member_record(b"").is_none());
        assert!(member_record(b"\0not json").is_none());
    }
}
