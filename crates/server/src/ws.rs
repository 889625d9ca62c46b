//! The WebSocket endpoint: one task per connection running a select loop —
//! read commands into the [`Session`], and on every wakeup write everything
//! queued on the session's handle (replies and shared broadcast frames) in
//! one flush; server pings and the pong deadline; the drain on shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep_until, Instant};
use wshub_hub::metrics::ClientLimit;
use wshub_hub::session::Session;
use wshub_proto::Error as ProtoError;
use wshub_protocol::{ping_frame, Disconnect, DisconnectCode, Encoding};
use wshub_ws::{CloseCode, Message, WebSocket, WsError};

use crate::Shared;

const FAR: Duration = Duration::from_secs(86400 * 365);

/// Serves one upgraded connection until it ends.
pub(crate) async fn serve<S>(shared: Arc<Shared>, mut ws: WebSocket<S>, encoding: Encoding)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    shared.open_ws.fetch_add(1, Ordering::Relaxed);
    let node = shared.node.clone();
    let cfg = node.config().clone();
    let mut session = Session::new(node.clone(), encoding);
    let handle = session.handle().clone();
    let ping_every = cfg
        .client
        .ping_interval
        .as_std()
        .max(Duration::from_millis(10));
    let pong_timeout = cfg.client.pong_timeout.as_std();
    let presence_every = cfg
        .client
        .presence_update_interval
        .as_std()
        .max(Duration::from_secs(1));
    let stale = cfg.client.stale_close_delay.as_std();
    let write_timeout = match cfg.websocket.write_timeout.as_std() {
        d if d.is_zero() => FAR,
        d => d.max(Duration::from_millis(100)),
    };
    let now = Instant::now();
    let mut next_ping = now + ping_every;
    let mut next_presence = now + presence_every;
    let connect_deadline = if stale.is_zero() {
        now + FAR
    } else {
        now + stale
    };
    let mut pong_deadline: Option<Instant> = None;
    let mut shutdown_at: Option<Instant> = None;
    let mut shutdown = shared.shutdown.clone();
    if *shutdown.borrow() {
        shutdown_at = Some(now);
    }

    let expired_delay = cfg.client.expired_close_delay.as_std();

    let disconnect: Option<Disconnect> = 'outer: loop {
        // Credentials that expire close the connection `expired_close_delay`
        // after `exp` unless a refresh moved it.
        let expire_at = session.expires_at().map(|exp| {
            let left = exp.saturating_sub(unix_now());
            Instant::now() + Duration::from_secs(left) + expired_delay
        });
        // Subscriptions whose token expired end with 2501 after
        // `expired_sub_close_delay` unless a sub_refresh moved them.
        let sub_expire_at = session.next_sub_expiry().map(|d| Instant::now() + d);
        // One timer for every deadline (the nearest one): each pending
        // timer would otherwise sit in every idle connection's task.
        let connected = session.is_connected();
        let wake = [
            sub_expire_at,
            expire_at,
            connected.then_some(next_ping),
            pong_deadline,
            (!connected).then_some(connect_deadline),
            connected.then_some(next_presence),
            shutdown_at,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + FAR);
        tokio::select! {
            _ = sleep_until(wake) => {
                let t = Instant::now();
                if shutdown_at.is_some_and(|d| d <= t) {
                    break Some(DisconnectCode::SHUTDOWN.to_disconnect());
                }
                if pong_deadline.is_some_and(|d| d <= t) {
                    node.metrics().heartbeat_failure();
                    break Some(DisconnectCode::NO_PONG.to_disconnect());
                }
                if !connected && connect_deadline <= t {
                    break Some(DisconnectCode::STALE.to_disconnect());
                }
                if expire_at.is_some_and(|d| d <= t)
                    && session.expires_at().is_some_and(|exp| exp <= unix_now())
                {
                    break Some(DisconnectCode::EXPIRED.to_disconnect());
                }
                if sub_expire_at.is_some_and(|d| d <= t) {
                    Box::pin(session.expire_subscriptions()).await;
                }
                if connected && next_ping <= t {
                    next_ping = Instant::now() + ping_every;
                    handle.push(node.frame(encoding, Bytes::from_static(ping_frame(encoding))));
                    if pong_deadline.is_none() && !pong_timeout.is_zero() {
                        pong_deadline = Some(Instant::now() + pong_timeout);
                    }
                }
                if connected && next_presence <= t {
                    next_presence = Instant::now() + presence_every;
                    Box::pin(session.refresh_presence()).await;
                }
            }
            m = ws.recv() => {
                let msg: Message = match m {
                    None => break None,
                    Some(Err(e)) => {
                        if let WsError::Protocol(
                            ProtoError::MessageTooBig
                            | ProtoError::FrameTooBig
                            | ProtoError::TooManyFragments,
                        ) = e
                        {
                            // The engine closed with 1009.
                            tracing::debug!(client = %session.client_id(), error = %e, "message size limit");
                            node.metrics().limit_exceeded(ClientLimit::MessageSize);
                        } else {
                            tracing::debug!(client = %session.client_id(), error = %e, "read failed");
                        }
                        break None;
                    }
                    Some(Ok(msg)) => msg,
                };
                node.metrics().count_received(encoding, msg.as_bytes().len());
                // Boxed, here and below: the command futures (token checks,
                // broker calls) are large, and inline they would make every
                // idle connection's task as large as the largest of them.
                if let Err(d) = Box::pin(session.handle_frame(msg.as_bytes())).await {
                    break Some(d);
                }
                if session.take_pong() {
                    pong_deadline = None;
                }
            }
            _ = handle.notified() => {}
            r = async { shutdown.wait_for(|s| *s).await.map(|_| ()) }, if shutdown_at.is_none() => {
                if r.is_err() {
                    // The server is gone.
                    break Some(DisconnectCode::SHUTDOWN.to_disconnect());
                }
                shutdown_at = Some(Instant::now() + spread(session.client_id(), shared.drain));
            }
        }
        // Write everything queued, apply actions, repeat until quiet.
        loop {
            let drained = handle.drain();
            let (mut frames, mut bytes) = (0u64, 0u64);
            for f in drained.frames {
                frames += 1;
                bytes += f.len() as u64;
                if ws.feed_encoded(f).is_err() {
                    break 'outer None;
                }
            }
            node.metrics().count_sent(encoding, frames, bytes);
            // What the engine holds unwritten stays counted against
            // `client.queue_max_size` until the socket takes it.
            handle.set_in_flight(ws.buffered_out());
            if let Some(d) = drained.disconnect {
                break 'outer Some(d);
            }
            if drained.controls.is_empty() {
                break;
            }
            for c in drained.controls {
                if let Err(d) = Box::pin(session.handle_control(c)).await {
                    break 'outer Some(d);
                }
            }
        }
        // A peer that does not read must not hold the task forever: give
        // up when the queue overflows (3008) or a write stalls too long.
        tokio::select! {
            r = ws.flush() => {
                if r.is_err() {
                    break None;
                }
                handle.set_in_flight(ws.buffered_out());
            }
            _ = handle.closing() => {
                break handle.pending_disconnect();
            }
            _ = tokio::time::sleep(write_timeout) => {
                tracing::debug!(client = %session.client_id(), "write timeout");
                break Some(DisconnectCode::WRITE_ERROR.to_disconnect());
            }
        }
    };

    if let Some(d) = &disconnect {
        if d.code == DisconnectCode::SLOW.0 {
            tracing::info!(client = %session.client_id(), "slow consumer disconnected");
        }
    }
    Box::pin(session.close(disconnect.as_ref())).await;
    if let Some(d) = disconnect {
        // Frames queued before a requested disconnect still go out, except
        // for a slow consumer (its queue was dropped).
        for f in handle.drain().frames {
            let _ = ws.feed_encoded(f);
        }
        let (code, reason) = d.close_frame();
        let _ =
            tokio::time::timeout(Duration::from_secs(5), ws.close(CloseCode(code), reason)).await;
    }
    shared.open_ws.fetch_sub(1, Ordering::Relaxed);
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A delay in `[0, drain)` derived from the client id, so disconnects on
/// shutdown are spread and clients do not all reconnect at once.
fn spread(client: &str, drain: Duration) -> Duration {
    if drain.is_zero() {
        return Duration::ZERO;
    }
    let h = client
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let ms = drain.as_millis().max(1) as u64;
    Duration::from_millis(h % ms)
}
