//! What nodes tell each other through [`Broker::publish_control`]: server
//! API actions aimed at a user's connections wherever they are
//! (disconnect, unsubscribe, subscribe, refresh). Each node applies the
//! action to its own connections; the sending node receives its own
//! message too, so one code path serves one node and many.
//!
//! The encoding is JSON with a version field: small, rare messages, and
//! readable with `redis-cli monitor` or `nats sub` when debugging.
//!
//! [`Broker::publish_control`]: crate::broker::Broker::publish_control

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wshub_protocol::Disconnect;

use crate::broker::StreamPosition;
use crate::hub::Control;

/// A control action for the connections of `user` (all of them, or only
/// `client` when it is not empty) on every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserControl {
    /// Format version (1).
    pub v: u32,
    /// The user; empty with a `client` to address one anonymous connection.
    pub user: String,
    /// One connection only, when not empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client: String,
    /// The action.
    pub action: Action,
}

/// The action of a [`UserControl`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Action {
    /// Close the connections with this disconnect.
    Disconnect {
        /// Disconnect code.
        code: u32,
        /// Reason.
        reason: String,
        /// Whether the client should reconnect.
        reconnect: bool,
    },
    /// Server-side unsubscribe.
    Unsubscribe {
        /// The channel.
        channel: String,
    },
    /// Server-side subscribe.
    Subscribe {
        /// The channel.
        channel: String,
        /// Channel info (JSON text).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        info: Option<String>,
        /// Subscribe push data (JSON text).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<String>,
        /// Recover after (offset, epoch).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recover_since: Option<(u64, String)>,
    },
    /// Refresh the connection's expiry and/or info.
    Refresh {
        /// New expiry (Unix seconds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expire_at: Option<u64>,
        /// New connection info (JSON text).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        info: Option<String>,
    },
}

fn text(b: &Option<Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

fn bytes(s: Option<String>) -> Option<Bytes> {
    s.map(Bytes::from)
}

impl UserControl {
    /// The cluster form of a local [`Control`]; `None` for controls that
    /// only make sense on one node.
    pub fn new(user: &str, client: &str, c: &Control) -> Option<Self> {
        let action = match c {
            Control::Disconnect(d) => Action::Disconnect {
                code: d.code,
                reason: d.reason.clone(),
                reconnect: d.reconnect,
            },
            Control::Unsubscribe(channel) => Action::Unsubscribe {
                channel: channel.clone(),
            },
            Control::Subscribe {
                channel,
                info,
                data,
                recover_since,
            } => Action::Subscribe {
                channel: channel.clone(),
                info: text(info),
                data: text(data),
                recover_since: recover_since.as_ref().map(|p| (p.offset, p.epoch.clone())),
            },
            Control::Refresh { expire_at, info } => Action::Refresh {
                expire_at: *expire_at,
                info: text(info),
            },
            _ => return None,
        };
        Some(UserControl {
            v: 1,
            user: user.to_owned(),
            client: client.to_owned(),
            action,
        })
    }

    /// The local [`Control`] to apply.
    pub fn control(self) -> Control {
        match self.action {
            Action::Disconnect {
                code,
                reason,
                reconnect,
            } => Control::Disconnect(Disconnect {
                code,
                reason,
                reconnect,
            }),
            Action::Unsubscribe { channel } => Control::Unsubscribe(channel),
            Action::Subscribe {
                channel,
                info,
                data,
                recover_since,
            } => Control::Subscribe {
                channel,
                info: bytes(info),
                data: bytes(data),
                recover_since: recover_since.map(|(o, e)| StreamPosition::new(o, e)),
            },
            Action::Refresh { expire_at, info } => Control::Refresh {
                expire_at,
                info: bytes(info),
            },
        }
    }

    /// Encodes for [`Broker::publish_control`](crate::broker::Broker::publish_control).
    pub fn encode(&self) -> Bytes {
        // Serializing plain strings and numbers cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a control message; `None` for anything else (a message from
    /// a newer node, garbage on the backend).
    pub fn decode(b: &[u8]) -> Option<Self> {
        serde_json::from_slice::<UserControl>(b)
            .ok()
            .filter(|c| c.v == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_round_trips() {
        let controls = [
            Control::Disconnect(Disconnect {
                code: 4000,
                reason: "bye".into(),
                reconnect: false,
            }),
            Control::Unsubscribe("news".into()),
            Control::Subscribe {
                channel: "chat:1".into(),
                info: Some(Bytes::from_static(b"{\"a\":1}")),
                data: None,
                recover_since: Some(StreamPosition::new(5, "ep")),
            },
            Control::Refresh {
                expire_at: Some(1_900_000_000),
                info: None,
            },
        ];
        for c in controls {
            let u = UserControl::new("alice", "", &c).unwrap();
            let back = UserControl::decode(&u.encode()).unwrap();
            assert_eq!(back.user, "alice");
            assert_eq!(back.control(), c);
        }
        assert!(UserControl::new("a", "", &Control::InsufficientState("x".into())).is_none());
        assert!(UserControl::decode(b"\x00garbage").is_none());
        assert!(UserControl::decode(
            br#"{"v":2,"user":"a","action":{"type":"unsubscribe","channel":"x"}}"#
        )
        .is_none());
    }
}
