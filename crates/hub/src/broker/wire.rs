//! The bytes networked brokers (Redis, NATS) put on the wire between nodes:
//! publications with their stream position, join/leave events, client and
//! node infos. Protobuf (prost), so that the format can grow fields without
//! breaking nodes of an older version during a rolling upgrade; unknown
//! fields are skipped on decode.
//!
//! The field numbers are a contract beyond this file: the Redis broker's
//! publish script appends `offset` (field 1) and `epoch` (field 6) to an
//! encoded publication inside Redis and wraps it as field 1 of the event,
//! because only the script knows them. Never renumber; add new fields.
//!
//! These bytes come from the backend, which other nodes (or anyone with
//! access to it) write: decoding never panics and returns
//! [`BrokerError::Backend`] on malformed input.

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;

use super::{BrokerError, ClientInfo, NodeInfo, Publication, StreamPosition};

#[derive(Clone, PartialEq, Message)]
struct WireClientInfo {
    #[prost(string, tag = "1")]
    user: String,
    #[prost(string, tag = "2")]
    client: String,
    #[prost(bytes = "bytes", optional, tag = "3")]
    conn_info: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "4")]
    chan_info: Option<Bytes>,
}

#[derive(Clone, PartialEq, Message)]
struct WirePublication {
    #[prost(uint64, tag = "1")]
    offset: u64,
    #[prost(bytes = "bytes", tag = "2")]
    data: Bytes,
    #[prost(message, optional, tag = "3")]
    info: Option<WireClientInfo>,
    #[prost(btree_map = "string, string", tag = "4")]
    tags: BTreeMap<String, String>,
    #[prost(uint64, tag = "5")]
    time: u64,
    /// The stream's epoch (empty without history).
    #[prost(string, tag = "6")]
    epoch: String,
}

#[derive(Clone, PartialEq, Message)]
struct WireNodeInfo {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, tag = "3")]
    version: String,
    #[prost(uint64, tag = "4")]
    num_clients: u64,
    #[prost(uint64, tag = "5")]
    num_users: u64,
    #[prost(uint64, tag = "6")]
    num_subs: u64,
    #[prost(uint64, tag = "7")]
    num_channels: u64,
    #[prost(uint64, tag = "8")]
    uptime_secs: u64,
}

/// What one node sends the others about a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelEvent {
    /// A publication and the stream position after it.
    Publication(Publication, StreamPosition),
    /// A client joined.
    Join(ClientInfo),
    /// A client left.
    Leave(ClientInfo),
}

#[derive(Clone, PartialEq, Message)]
struct WireEvent {
    #[prost(message, optional, tag = "1")]
    publication: Option<WirePublication>,
    #[prost(message, optional, tag = "2")]
    join: Option<WireClientInfo>,
    #[prost(message, optional, tag = "3")]
    leave: Option<WireClientInfo>,
}

fn info_to_wire(i: &ClientInfo) -> WireClientInfo {
    WireClientInfo {
        user: i.user.clone(),
        client: i.client.clone(),
        conn_info: i.conn_info.clone(),
        chan_info: i.chan_info.clone(),
    }
}

fn info_from_wire(w: WireClientInfo) -> ClientInfo {
    ClientInfo {
        user: w.user,
        client: w.client,
        conn_info: w.conn_info,
        chan_info: w.chan_info,
    }
}

fn publication_to_wire(p: &Publication, position: &StreamPosition) -> WirePublication {
    WirePublication {
        offset: p.offset,
        data: p.data.clone(),
        info: p.info.as_ref().map(info_to_wire),
        tags: p.tags.clone(),
        time: p.time,
        epoch: position.epoch.clone(),
    }
}

fn publication_from_wire(w: WirePublication) -> (Publication, StreamPosition) {
    let position = StreamPosition::new(w.offset, w.epoch);
    let p = Publication {
        offset: w.offset,
        data: w.data,
        info: w.info.map(info_from_wire),
        tags: w.tags,
        time: w.time,
    };
    (p, position)
}

fn malformed(what: &str, e: prost::DecodeError) -> BrokerError {
    BrokerError::Backend(format!("malformed {what} from the backend: {e}").into())
}

/// Encodes a channel event for other nodes.
pub fn encode_event(e: &ChannelEvent) -> Vec<u8> {
    let w = match e {
        ChannelEvent::Publication(p, pos) => WireEvent {
            publication: Some(publication_to_wire(p, pos)),
            ..WireEvent::default()
        },
        ChannelEvent::Join(i) => WireEvent {
            join: Some(info_to_wire(i)),
            ..WireEvent::default()
        },
        ChannelEvent::Leave(i) => WireEvent {
            leave: Some(info_to_wire(i)),
            ..WireEvent::default()
        },
    };
    w.encode_to_vec()
}

/// Decodes what [`encode_event`] wrote.
pub fn decode_event(b: &[u8]) -> Result<ChannelEvent, BrokerError> {
    let w = WireEvent::decode(b).map_err(|e| malformed("channel event", e))?;
    if let Some(p) = w.publication {
        let (p, pos) = publication_from_wire(p);
        Ok(ChannelEvent::Publication(p, pos))
    } else if let Some(i) = w.join {
        Ok(ChannelEvent::Join(info_from_wire(i)))
    } else if let Some(i) = w.leave {
        Ok(ChannelEvent::Leave(info_from_wire(i)))
    } else {
        Err(BrokerError::Backend(
            "empty channel event from the backend".into(),
        ))
    }
}

/// Encodes a publication for a history store. The position's epoch is kept
/// with it, so one stored entry is enough to deliver it again.
pub fn encode_publication(p: &Publication, position: &StreamPosition) -> Vec<u8> {
    publication_to_wire(p, position).encode_to_vec()
}

/// Decodes what [`encode_publication`] wrote.
pub fn decode_publication(b: &[u8]) -> Result<(Publication, StreamPosition), BrokerError> {
    WirePublication::decode(b)
        .map(publication_from_wire)
        .map_err(|e| malformed("publication", e))
}

/// Encodes a client info (presence entries).
pub fn encode_client_info(i: &ClientInfo) -> Vec<u8> {
    info_to_wire(i).encode_to_vec()
}

/// Decodes what [`encode_client_info`] wrote.
pub fn decode_client_info(b: &[u8]) -> Result<ClientInfo, BrokerError> {
    WireClientInfo::decode(b)
        .map(info_from_wire)
        .map_err(|e| malformed("client info", e))
}

/// Encodes a node info (node registry).
pub fn encode_node_info(n: &NodeInfo) -> Vec<u8> {
    WireNodeInfo {
        id: n.id.clone(),
        name: n.name.clone(),
        version: n.version.clone(),
        num_clients: n.num_clients,
        num_users: n.num_users,
        num_subs: n.num_subs,
        num_channels: n.num_channels,
        uptime_secs: n.uptime_secs,
    }
    .encode_to_vec()
}

/// Decodes what [`encode_node_info`] wrote.
pub fn decode_node_info(b: &[u8]) -> Result<NodeInfo, BrokerError> {
    let w = WireNodeInfo::decode(b).map_err(|e| malformed("node info", e))?;
    Ok(NodeInfo {
        id: w.id,
        name: w.name,
        version: w.version,
        num_clients: w.num_clients,
        num_users: w.num_users,
        num_subs: w.num_subs,
        num_channels: w.num_channels,
        uptime_secs: w.uptime_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ClientInfo {
        ClientInfo {
            user: "u1".into(),
            client: "c1".into(),
            conn_info: Some(Bytes::from_static(b"{\"a\":1}")),
            chan_info: None,
        }
    }

    #[test]
    fn events_round_trip() {
        let mut p = Publication::new(&b"\x00binary\xff"[..]);
        p.offset = 7;
        p.time = 1_700_000_000_000;
        p.info = Some(info());
        p.tags.insert("k".into(), "v".into());
        let pos = StreamPosition::new(7, "e1");
        for e in [
            ChannelEvent::Publication(p.clone(), pos.clone()),
            ChannelEvent::Join(info()),
            ChannelEvent::Leave(ClientInfo::new("", "anon")),
        ] {
            assert_eq!(decode_event(&encode_event(&e)).unwrap(), e);
        }
        assert_eq!(
            decode_publication(&encode_publication(&p, &pos)).unwrap(),
            (p, pos)
        );
        assert_eq!(
            decode_client_info(&encode_client_info(&info())).unwrap(),
            info()
        );
        let mut n = NodeInfo::new("id", "name");
        n.num_clients = 3;
        assert_eq!(decode_node_info(&encode_node_info(&n)).unwrap(), n);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for b in [&b""[..], b"\xff\xff\xff", b"\x0a\x05ab", b"\x12\x80"] {
            assert!(decode_event(b).is_err(), "{b:?}");
        }
        assert!(decode_publication(b"\x0a\xff").is_err());
    }
}
