//! The WebTransport adapter (Centrifugo's experimental `webtransport`
//! transport): a WebTransport session over HTTP/3 whose first bidirectional
//! stream, opened by the client, carries the client protocol both ways. A
//! stream has no message boundaries, so both directions are cut as on
//! `http_stream`: JSON commands and replies one per line (`\n` after each),
//! protobuf ones each with its varint length prefix (`cf_protocol=protobuf`
//! in the URL).
//!
//! One task per session runs the [`Session`] as `server::ws` does for a
//! WebSocket: its one timer, the node's actions, the shutdown. What the
//! client sends is read into a buffer bounded by
//! `webtransport.message_size_limit` for the command being received; each
//! complete command goes to [`Session::handle_data`] (in batches of whole
//! commands). The output is written with the `websocket.write_timeout`;
//! what is being written counts as in flight for `client.queue_max_size`.
//! Further streams the client opens are refused (reset), and the session
//! ends with the client's stream, the QUIC connection, or a disconnect:
//! the disconnect goes out as the stream's last message (a stream has no
//! close frame), the stream is finished, and the connection is closed
//! with the code once the client has had a moment to read it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use h3_webtransport::server::{AcceptedBi, WebTransportSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep_until, Instant};
use wshub_hub::limits::IpPermit;
use wshub_hub::metrics::ClientLimit;
use wshub_hub::session::{Session, TransportInfo};
use wshub_protocol::{Disconnect, DisconnectCode, Encoding};

use crate::Shared;

const FAR: Duration = Duration::from_secs(86400 * 365);

/// Most commands handed to the session in one batch (below the codec's
/// per-frame limit, so a burst of tiny commands is not a protocol error).
const MAX_BATCH: usize = 1024;

/// How long the client has to open its stream after the session is up.
const FIRST_STREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// A WebTransport session on quinn.
pub(crate) type WtSession = WebTransportSession<h3_quinn::Connection, Bytes>;

/// Why the buffered input cannot be a command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// The command being received is over the size limit.
    TooBig,
}

/// The length of the longest prefix of `buf` made of whole commands (at
/// most [`MAX_BATCH`] of them), or why the next one can never fit in
/// `limit` bytes. JSON commands end with `\n`; a protobuf command is its
/// varint length and that many bytes.
pub(crate) fn complete_prefix(
    buf: &[u8],
    encoding: Encoding,
    limit: usize,
) -> Result<usize, Framing> {
    let mut end = 0usize;
    let mut count = 0usize;
    while count < MAX_BATCH {
        let Some(rest) = buf.get(end..) else { break };
        match encoding {
            Encoding::Json => match rest.iter().position(|b| *b == b'\n') {
                Some(i) if i > limit => return Err(Framing::TooBig),
                Some(i) => end += i + 1,
                None if rest.len() > limit => return Err(Framing::TooBig),
                None => break,
            },
            Encoding::Protobuf => {
                let mut len: u64 = 0;
                let mut header = None;
                for (i, b) in rest.iter().take(10).enumerate() {
                    len |= u64::from(b & 0x7f) << (7 * i);
                    if b & 0x80 == 0 {
                        header = Some(i + 1);
                        break;
                    }
                }
                let Some(header) = header else {
                    if rest.len() >= 10 {
                        // Ten bytes and no end: no length fits in 64 bits.
                        return Err(Framing::TooBig);
                    }
                    break;
                };
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > limit {
                    return Err(Framing::TooBig);
                }
                if rest.len() - header < len {
                    break;
                }
                end += header + len;
            }
        }
        count += 1;
    }
    Ok(end)
}

/// Serves one accepted WebTransport session until it ends. `quic` is the
/// session's QUIC connection (closed at the end with the disconnect code).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    wt: WtSession,
    quic: quinn::Connection,
    encoding: Encoding,
    permit: IpPermit,
) {
    let _permit = permit;
    // The client's stream: the first bidirectional one it opens.
    let first = tokio::time::timeout(FIRST_STREAM_TIMEOUT, async {
        loop {
            match wt.accept_bi().await {
                Ok(Some(AcceptedBi::BidiStream(_, s))) => return Some(s),
                Ok(Some(AcceptedBi::Request(_, mut r))) => {
                    // A request inside the session: not ours to answer.
                    r.stop_stream(h3::error::Code::H3_REQUEST_REJECTED);
                }
                _ => return None,
            }
        }
    })
    .await;
    let Ok(Some(stream)) = first else {
        tracing::debug!("webtransport: no stream from the client");
        quic.close(quinn::VarInt::from_u32(0), b"no stream");
        return;
    };
    let (mut rd, mut wr) = tokio::io::split(stream);

    shared.open_streams.fetch_add(1, Ordering::Relaxed);
    let node = shared.node.clone();
    let limit = match node.config().webtransport.message_size_limit {
        0 => usize::MAX,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let write_timeout = match node.config().websocket.write_timeout.as_std() {
        d if d.is_zero() => FAR,
        d => d.max(Duration::from_millis(100)),
    };
    let mut session = Session::new(
        node.clone(),
        TransportInfo::bidirectional("webtransport", encoding),
        std::time::Instant::now(),
    );
    let handle = session.handle().clone();
    let mut shutdown = shared.shutdown.clone();
    let mut shutting_down = *shutdown.borrow();
    if shutting_down {
        session.begin_shutdown(std::time::Instant::now(), Duration::ZERO);
    }
    let mut input = BytesMut::with_capacity(1024);
    let mut out: Vec<u8> = Vec::new();

    let disconnect: Option<Disconnect> = 'outer: loop {
        let wake = session
            .poll_timeout()
            .map_or_else(|| Instant::now() + FAR, Instant::from_std);
        tokio::select! {
            _ = sleep_until(wake) => {
                let now = std::time::Instant::now();
                if let Err(d) = Box::pin(session.handle_timeout(now)).await {
                    break Some(d);
                }
            }
            r = rd.read_buf(&mut input) => {
                match r {
                    Ok(0) | Err(_) => break None,
                    Ok(_) => {}
                }
                loop {
                    let n = match complete_prefix(&input, encoding, limit) {
                        Ok(n) => n,
                        Err(Framing::TooBig) => {
                            tracing::debug!(client = %session.client_id(), "webtransport: command over message_size_limit");
                            node.metrics().limit_exceeded(ClientLimit::MessageSize);
                            break 'outer Some(DisconnectCode::BAD_REQUEST.to_disconnect());
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    let batch = input.split_to(n);
                    if let Err(d) = Box::pin(session.handle_data(&batch)).await {
                        break 'outer Some(d);
                    }
                }
                // Keep the buffer's room bounded by what is pending.
                if input.is_empty() && input.capacity() > 64 * 1024 {
                    input = BytesMut::with_capacity(1024);
                }
            }
            more = wt.accept_bi() => {
                match more {
                    // One stream per session: a further one is reset.
                    Ok(Some(AcceptedBi::BidiStream(_, s))) => drop(s),
                    Ok(Some(AcceptedBi::Request(_, mut r))) => {
                        r.stop_stream(h3::error::Code::H3_REQUEST_REJECTED);
                    }
                    _ => break None,
                }
            }
            _ = handle.notified() => {}
            r = async { shutdown.wait_for(|s| *s).await.map(|_| ()) }, if !shutting_down => {
                shutting_down = true;
                if r.is_err() {
                    break Some(DisconnectCode::SHUTDOWN.to_disconnect());
                }
                session.begin_shutdown(std::time::Instant::now(), shared.drain);
            }
        }
        // Everything the session has for the client, in one write; actions
        // from the node may add more.
        loop {
            let o = session.take_output();
            for m in &o.messages {
                put(&mut out, encoding, m);
            }
            if let Some(d) = o.disconnect {
                break 'outer Some(d);
            }
            if !o.actions {
                break;
            }
            if let Err(d) = Box::pin(session.apply_actions()).await {
                for m in session.take_output().messages {
                    put(&mut out, encoding, &m);
                }
                break 'outer Some(d);
            }
        }
        if out.is_empty() {
            continue;
        }
        handle.set_in_flight(out.len());
        // A peer that does not read must not hold the task forever: give
        // up when the queue overflows (3008) or a write stalls too long.
        let mut chunk: &[u8] = &out;
        tokio::select! {
            r = async {
                while chunk.has_remaining() {
                    let n = wr.write(chunk).await?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::WriteZero.into());
                    }
                    chunk.advance(n);
                }
                std::io::Result::Ok(())
            } => {
                if r.is_err() {
                    break None;
                }
            }
            _ = handle.closing() => break handle.pending_disconnect(),
            _ = tokio::time::sleep(write_timeout) => {
                tracing::debug!(client = %session.client_id(), "webtransport: write timeout");
                break Some(DisconnectCode::WRITE_ERROR.to_disconnect());
            }
        }
        out.clear();
        if out.capacity() > 64 * 1024 {
            out = Vec::new();
        }
        handle.set_in_flight(0);
    };

    Box::pin(session.close(disconnect.as_ref())).await;
    if let Some(d) = &disconnect {
        if d.code == DisconnectCode::SLOW.0 {
            tracing::info!(client = %session.client_id(), "slow consumer disconnected");
        }
        // What was queued before a requested disconnect still goes out
        // (not for a slow consumer: its queue was dropped), then the
        // disconnect as a push, then the stream ends.
        out.clear();
        for m in handle.drain().frames {
            put(&mut out, encoding, &m);
        }
        let push = wshub_protocol::Push {
            disconnect: Some(d.clone()),
            ..Default::default()
        };
        if let Ok(p) = wshub_protocol::encode_push_reply(encoding, &push) {
            put(&mut out, encoding, &p);
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            wr.write_all(&out).await?;
            wr.shutdown().await
        })
        .await;
        // The client closes the session once it has read the disconnect;
        // closing the connection first could discard the unread push.
        let _ = tokio::time::timeout(Duration::from_secs(2), quic.closed()).await;
    }
    let (code, reason) = disconnect.as_ref().map_or(
        (DisconnectCode::CONNECTION_CLOSED.0, "connection closed"),
        |d| (d.code, d.reason.as_str()),
    );
    quic.close(quinn::VarInt::from_u32(code), reason.as_bytes());
    drop(wt);
    shared.open_streams.fetch_sub(1, Ordering::Relaxed);
}

/// Appends one protocol message in its stream form.
fn put(out: &mut Vec<u8>, encoding: Encoding, message: &[u8]) {
    out.extend_from_slice(message);
    if encoding == Encoding::Json {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_commands_are_cut_at_line_ends() {
        let j = Encoding::Json;
        assert_eq!(complete_prefix(b"", j, 10), Ok(0));
        assert_eq!(complete_prefix(b"{\"id\":1", j, 10), Ok(0));
        assert_eq!(complete_prefix(b"{}\n{}\n{", j, 10), Ok(6));
        assert_eq!(
            complete_prefix(b"0123456789ab", j, 10),
            Err(Framing::TooBig)
        );
        assert_eq!(
            complete_prefix(b"0123456789ab\n", j, 10),
            Err(Framing::TooBig)
        );
        let many = b"{}\n".repeat(MAX_BATCH + 5);
        assert_eq!(complete_prefix(&many, j, 10), Ok(3 * MAX_BATCH));
    }

    #[test]
    fn protobuf_commands_are_cut_by_their_length_prefix() {
        let p = Encoding::Protobuf;
        assert_eq!(complete_prefix(&[3, 1, 2], p, 100), Ok(0));
        assert_eq!(complete_prefix(&[3, 1, 2, 3, 1], p, 100), Ok(4));
        assert_eq!(complete_prefix(&[0, 0], p, 100), Ok(2));
        // 300 = 0xac 0x02: over a limit of 100 before its bytes arrive.
        assert_eq!(complete_prefix(&[0xac, 0x02], p, 100), Err(Framing::TooBig));
        assert_eq!(complete_prefix(&[0xff; 9], p, 100), Ok(0));
        assert_eq!(complete_prefix(&[0xff; 10], p, 100), Err(Framing::TooBig));
    }
}
