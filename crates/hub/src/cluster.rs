//! What nodes tell each other through [`Broker::publish_control`]: server
//! API actions aimed at a user's connections wherever they are
//! (disconnect, unsubscribe, subscribe, refresh). Each node applies the
//! action to its own connections; the sending node receives its own
//! message too, so one code path serves one node and many.
//!
//! And surveys: a question to every other node with answers addressed to
//! the asking node ([`SurveyRequest`], [`SurveyReply`]), used by the
//! `channels` API method to report the channels of the whole cluster. The
//! asker knows whom to wait for from the node registry and waits at most
//! `http_api.cluster_request_timeout`, so a dead node that is still
//! registered costs one timeout, never a hung request. A survey is asked
//! when needed rather than every node publishing its channel list
//! periodically: the answer is current, and nothing is sent while nobody
//! asks. Answers are cut into parts of at most [`SURVEY_PART_BYTES`] so
//! they pass NATS' default `max_payload` (1 MiB).
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

/// Commands for an emulation session on node `to`
/// (see [`crate::emulation`]), forwarded by the node that received them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmulationForward {
    /// Format version (1).
    pub v: u32,
    /// The request's id on the forwarding node (its answer names it).
    pub emulation: u64,
    /// The forwarding node's id (the answer goes to it).
    pub from: String,
    /// The node that holds the session.
    pub to: String,
    /// The session id.
    pub session: String,
    /// The commands as the client sent them, base64 (protobuf is binary).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data: String,
    /// A long-poll after this acknowledged sequence number, instead of
    /// commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<u64>,
    /// How long the owner may hold a poll, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

/// The answer to an [`EmulationForward`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmulationAnswer {
    /// Format version (1).
    pub v: u32,
    /// The id of the request answered.
    pub emulation_answer: u64,
    /// The forwarding node.
    pub to: String,
    /// What became of it ([`crate::emulation::Outcome::as_str`]).
    pub outcome: String,
    /// A poll's answer body, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// Largest JSON size of one [`SurveyReply`] part (the channel names and
/// counts; the envelope adds a little).
pub const SURVEY_PART_BYTES: usize = 256 << 10;

/// A question to every node but the asker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurveyRequest {
    /// Format version (1).
    pub v: u32,
    /// The survey's id (unique per question).
    pub survey: String,
    /// The asking node's id (answers go to it).
    pub from: String,
    /// The question.
    pub op: SurveyOp,
}

/// The question of a [`SurveyRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum SurveyOp {
    /// The node's channels with at least one subscriber, and their
    /// subscriber counts, for channels matching `pattern` (`*` wildcards;
    /// empty: all).
    Channels {
        /// The pattern.
        #[serde(default)]
        pattern: String,
    },
}

/// One part of one node's answer to a [`SurveyRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurveyReply {
    /// Format version (1).
    pub v: u32,
    /// The survey's id.
    pub survey_reply: String,
    /// The asking node's id.
    pub to: String,
    /// The answering node's id.
    pub from: String,
    /// Part number, from 0.
    pub part: u32,
    /// Whether this is the node's last part.
    pub last: bool,
    /// `(channel, number of subscribers on the node)`.
    #[serde(default)]
    pub channels: Vec<(String, u64)>,
}

impl SurveyReply {
    /// A node's answer to `req` in parts of at most [`SURVEY_PART_BYTES`]
    /// (at least one part, the last with `last`).
    pub fn parts(req: &SurveyRequest, from: &str, channels: Vec<(String, u64)>) -> Vec<Self> {
        let mut parts = Vec::new();
        let mut cur = Vec::new();
        let mut size = 0usize;
        for (c, n) in channels {
            // Quotes, comma, brackets and up to 20 digits.
            let len = c.len() + 26;
            if !cur.is_empty() && size + len > SURVEY_PART_BYTES {
                parts.push(std::mem::take(&mut cur));
                size = 0;
            }
            size += len;
            cur.push((c, n));
        }
        parts.push(cur);
        let count = parts.len();
        parts
            .into_iter()
            .enumerate()
            .map(|(i, channels)| SurveyReply {
                v: 1,
                survey_reply: req.survey.clone(),
                to: req.from.clone(),
                from: from.to_owned(),
                part: i as u32,
                last: i + 1 == count,
                channels,
            })
            .collect()
    }
}

/// Any message of the control channel.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ControlMessage {
    /// An action on a user's connections.
    User(UserControl),
    /// A survey question.
    Survey(SurveyRequest),
    /// A part of a survey answer.
    SurveyReply(SurveyReply),
    /// Emulation commands for a session on another node.
    Emulation(EmulationForward),
    /// The answer to a forwarded emulation request.
    EmulationAnswer(EmulationAnswer),
}

impl ControlMessage {
    /// Encodes for [`Broker::publish_control`](crate::broker::Broker::publish_control).
    pub fn encode(&self) -> Bytes {
        // Plain strings and numbers: serializing cannot fail.
        let v = match self {
            ControlMessage::User(u) => return u.encode(),
            ControlMessage::Survey(s) => serde_json::to_vec(s),
            ControlMessage::SurveyReply(r) => serde_json::to_vec(r),
            ControlMessage::Emulation(e) => serde_json::to_vec(e),
            ControlMessage::EmulationAnswer(a) => serde_json::to_vec(a),
        };
        Bytes::from(v.unwrap_or_default())
    }

    /// Decodes a control message; `None` for anything else (a message from
    /// a newer node, garbage on the backend).
    pub fn decode(b: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            User(UserControl),
            Survey(SurveyRequest),
            Reply(SurveyReply),
            Emulation(EmulationForward),
            EmulationAnswer(EmulationAnswer),
        }
        match serde_json::from_slice::<Any>(b).ok()? {
            Any::User(u) if u.v == 1 => Some(ControlMessage::User(u)),
            Any::Survey(s) if s.v == 1 => Some(ControlMessage::Survey(s)),
            Any::Reply(r) if r.v == 1 => Some(ControlMessage::SurveyReply(r)),
            Any::Emulation(e) if e.v == 1 => Some(ControlMessage::Emulation(e)),
            Any::EmulationAnswer(a) if a.v == 1 => Some(ControlMessage::EmulationAnswer(a)),
            _ => None,
        }
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

    #[test]
    fn surveys_round_trip_and_split_into_parts() {
        let req = SurveyRequest {
            v: 1,
            survey: "s1".into(),
            from: "n1".into(),
            op: SurveyOp::Channels {
                pattern: "chat:*".into(),
            },
        };
        let m = ControlMessage::Survey(req.clone());
        assert_eq!(ControlMessage::decode(&m.encode()), Some(m));
        let user = UserControl::new("a", "", &Control::Unsubscribe("x".into())).unwrap();
        let m = ControlMessage::User(user);
        assert_eq!(ControlMessage::decode(&m.encode()), Some(m));

        let none = SurveyReply::parts(&req, "n2", Vec::new());
        assert_eq!(none.len(), 1);
        assert!(none[0].last && none[0].to == "n1" && none[0].from == "n2");

        let many: Vec<(String, u64)> = (0..30_000).map(|i| (format!("chat:{i:08}"), 1)).collect();
        let parts = SurveyReply::parts(&req, "n2", many);
        assert!(parts.len() > 1);
        let mut total = 0;
        for (i, p) in parts.iter().enumerate() {
            let enc = ControlMessage::SurveyReply(p.clone()).encode();
            assert!(
                enc.len() < SURVEY_PART_BYTES + 1024,
                "part {i}: {}",
                enc.len()
            );
            assert_eq!(p.part as usize, i);
            assert_eq!(p.last, i + 1 == parts.len());
            total += p.channels.len();
            let back = ControlMessage::decode(&enc).unwrap();
            assert_eq!(back, ControlMessage::SurveyReply(p.clone()));
        }
        assert_eq!(total, 30_000);
        assert!(ControlMessage::decode(
            br#"{"v":2,"survey":"s","from":"n","op":{"type":"channels"}}"#
        )
        .is_none());
    }

    #[test]
    fn emulation_messages_round_trip_and_stay_apart_from_the_others() {
        let fwd = ControlMessage::Emulation(EmulationForward {
            v: 1,
            emulation: 7,
            from: "n1".into(),
            to: "n2".into(),
            session: "s".into(),
            data: "e30=".into(),
            poll: None,
            wait_ms: None,
        });
        assert_eq!(ControlMessage::decode(&fwd.encode()), Some(fwd));
        let fwd = ControlMessage::Emulation(EmulationForward {
            v: 1,
            emulation: 8,
            from: "n1".into(),
            to: "n2".into(),
            session: "s".into(),
            data: String::new(),
            poll: Some(3),
            wait_ms: Some(25_000),
        });
        assert_eq!(ControlMessage::decode(&fwd.encode()), Some(fwd));
        let ans = ControlMessage::EmulationAnswer(EmulationAnswer {
            v: 1,
            emulation_answer: 7,
            to: "n1".into(),
            outcome: "delivered".into(),
            body: Some("e30=".into()),
        });
        assert_eq!(ControlMessage::decode(&ans.encode()), Some(ans));
        assert!(ControlMessage::decode(
            br#"{"v":2,"emulation":1,"from":"a","to":"b","session":"s","data":""}"#
        )
        .is_none());
    }
}
