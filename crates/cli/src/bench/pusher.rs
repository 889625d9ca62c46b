//! The Pusher Channels protocol 7 side of the gateway load generators
//! (`--protocol pusher`): client sessions on `/app/{key}?protocol=7` and a
//! publisher that triggers events through the signed HTTP API
//! (`POST /apps/{app_id}/events`), as the Pusher server SDKs do.
//!
//! A session waits for `pusher:connection_established`, sends
//! `pusher:subscribe` for a public channel and waits for
//! `pusher_internal:subscription_succeeded`; `pusher:ping` is answered with
//! `pusher:pong`. The publisher's events carry their data as a JSON string
//! (as the SDKs send it) holding the same `{"t":...,"p":...}` object the
//! Centrifugo publisher sends, so a delivery looks like
//! `{"event":"bench","channel":"c","data":"{\"t\":123,\"p\":\"xx\"}"}`.
//!
//! The publisher writes its requests on one keep-alive HTTP/1.1 connection
//! without waiting for the answers (pipelining; the server answers in
//! order), so its schedule stays open-loop like the Centrifugo publisher's
//! commands on one WebSocket.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use wshub_proto::Message;
use wshub_ws::{connect, ClientOptions};

use super::raw;
use super::sse::read_head;
use super::Ws;

/// The longest wait for a setup step (connection_established, the
/// subscribe's answer).
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a server sends as `pusher:ping` starts with.
pub const PING_PREFIX: &str = r#"{"event":"pusher:ping""#;

/// The answer to `pusher:ping`.
pub const PONG: &str = r#"{"event":"pusher:pong","data":{}}"#;

/// The event name the publisher triggers.
const EVENT: &str = "bench";

/// `--protocol pusher`: the app the connections and the publisher use
/// (default: the development defaults' app, `wshub serve` with no file).
#[derive(clap::Args, Clone, Debug)]
pub struct PusherArgs {
    /// `--protocol pusher`: the app's id (the API's `/apps/{app_id}/events`).
    #[arg(long, default_value = wshub_config::DEMO_PUSHER_APP.0)]
    pub pusher_app_id: String,
    /// `--protocol pusher`: the app's key (clients' `/app/{key}`, the API's
    /// `auth_key`).
    #[arg(long, default_value = wshub_config::DEMO_PUSHER_APP.1)]
    pub pusher_key: String,
    /// `--protocol pusher`: the app's secret (signs the API triggers).
    #[arg(long, default_value = wshub_config::DEMO_PUSHER_APP.2)]
    pub pusher_secret: String,
}

/// The Pusher client endpoint for `url`: `url` itself when its path is
/// already `/app/...`, else `/app/{key}?protocol=7` on its host and port
/// (so the Centrifugo default `ws://.../connection/websocket` works too).
pub fn client_url(url: &str, key: &str) -> Result<String> {
    let mut u = url::Url::parse(url).with_context(|| format!("bad URL {url:?}"))?;
    if u.path().starts_with("/app/") {
        return Ok(url.to_owned());
    }
    u.set_path(&format!("/app/{key}"));
    u.set_query(Some("protocol=7"));
    Ok(u.to_string())
}

/// `http://host:port` of a `ws://` URL (where the HTTP API is).
pub fn api_base(url: &str) -> Result<String> {
    let u = url::Url::parse(url).with_context(|| format!("bad URL {url:?}"))?;
    let host = u.host_str().context("no host")?;
    Ok(match u.port() {
        Some(p) => format!("http://{host}:{p}"),
        None => format!("http://{host}"),
    })
}

/// The `"event"` of a message, and the message parsed.
fn event_of(text: &str) -> Option<(String, Value)> {
    let v: Value = serde_json::from_str(text).ok()?;
    let e = v["event"].as_str()?.to_owned();
    Some((e, v))
}

/// Waits for a message whose event is one of `wanted` (answering pings);
/// `pusher:error` and `pusher:subscription_error` are errors.
async fn wait_for(ws: &mut Ws, wanted: &[&str], what: &str) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.recv()).await {
            Ok(m) => m,
            Err(_) => bail!("no {what} within {SETUP_TIMEOUT:?}"),
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                let Some((event, v)) = event_of(&t) else {
                    bail!("not a Pusher message during setup: {}", &*t);
                };
                if wanted.contains(&event.as_str()) {
                    return Ok(v);
                }
                match event.as_str() {
                    "pusher:ping" => ws.send_text(PONG).await?,
                    "pusher:error" | "pusher:subscription_error" => {
                        bail!("{what}: the server answered {}", &*t)
                    }
                    _ => {}
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection closed while waiting for {what}"),
        }
    }
}

/// A Pusher connection (at a `client_url`), subscribed to `channel` when
/// given.
pub async fn session(url: &str, channel: Option<&str>) -> Result<Ws> {
    let mut ws = connect(url, &ClientOptions::default()).await?;
    wait_for(
        &mut ws,
        &["pusher:connection_established"],
        "pusher:connection_established",
    )
    .await?;
    if let Some(ch) = channel {
        ws.send_text(&subscribe_message(ch)).await?;
        let v = wait_for(
            &mut ws,
            &["pusher_internal:subscription_succeeded"],
            "pusher_internal:subscription_succeeded",
        )
        .await?;
        if v["channel"].as_str() != Some(ch) {
            bail!("subscription_succeeded for another channel: {v}");
        }
    }
    Ok(ws)
}

/// `pusher:subscribe` to a public channel.
pub fn subscribe_message(channel: &str) -> String {
    serde_json::json!({"event": "pusher:subscribe", "data": {"channel": channel}}).to_string()
}

/// One answer of the API: its status, and the start of its body when it
/// was not 200.
type Answer = Result<(u16, String), String>;

/// The fan-out publisher: signed `POST /apps/{app_id}/events` requests,
/// pipelined on one keep-alive connection.
pub struct Trigger {
    write: OwnedWriteHalf,
    answers: mpsc::UnboundedReceiver<Answer>,
    /// The ids of the requests not answered yet, oldest first.
    in_flight: VecDeque<u32>,
    host: String,
    path: String,
    app: PusherArgs,
    request: Vec<u8>,
}

impl Trigger {
    /// Connects to the API at `base` (`http://host:port`).
    pub async fn connect(base: &str, app: &PusherArgs) -> Result<Trigger> {
        let u = url::Url::parse(base).with_context(|| format!("bad URL {base:?}"))?;
        if u.scheme() != "http" {
            bail!("the Pusher publisher speaks plain http:// only, not {base:?}");
        }
        let (addr, host) = raw::resolve(&u, base)?;
        let stream = raw::connect_from(addr, None)
            .await
            .with_context(|| format!("connecting to {base}"))?;
        let (mut read, write) = stream.into_split();
        let (tx, answers) = mpsc::unbounded_channel();
        tokio::task::spawn_local(async move {
            let mut buf = Vec::with_capacity(4096);
            loop {
                let (answer, close) = match read_answer(&mut read, &mut buf).await {
                    Ok((status, body, close)) => (Ok((status, body)), close),
                    Err(e) => (Err(e), true),
                };
                if tx.send(answer).is_err() {
                    return;
                }
                if close {
                    let _ = tx.send(Err("the server closed the connection".into()));
                    return;
                }
            }
        });
        Ok(Trigger {
            write,
            answers,
            in_flight: VecDeque::new(),
            host,
            path: format!("/apps/{}/events", app.pusher_app_id),
            app: app.clone(),
            request: Vec::with_capacity(1024),
        })
    }

    /// Sends request `id`: event `bench` on `channel`, its data the JSON
    /// string of `data`.
    pub async fn send(&mut self, id: u32, channel: &str, data: &str) -> Result<()> {
        let body =
            serde_json::json!({"name": EVENT, "channels": [channel], "data": data}).to_string();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut query = vec![
            ("auth_key".to_owned(), self.app.pusher_key.clone()),
            ("auth_timestamp".to_owned(), now.to_string()),
            ("auth_version".to_owned(), "1.0".to_owned()),
            (
                "body_md5".to_owned(),
                wshub_pusher::sign::body_md5_hex(body.as_bytes()),
            ),
        ];
        let signature = wshub_pusher::sign::sign_api_request(
            "POST",
            &self.path,
            &query,
            &self.app.pusher_secret,
        );
        query.push(("auth_signature".to_owned(), signature));
        let qs = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&query)
            .finish();
        self.request.clear();
        self.request.extend_from_slice(
            format!(
                "POST {}?{qs} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                self.path,
                self.host,
                body.len()
            )
            .as_bytes(),
        );
        self.request.extend_from_slice(body.as_bytes());
        self.write.write_all(&self.request).await?;
        self.in_flight.push_back(id);
        Ok(())
    }

    /// An answer that has arrived: (request id, status, body start).
    pub fn try_answer(&mut self) -> Option<Result<(u32, u16, String)>> {
        let a = self.answers.try_recv().ok()?;
        Some(self.match_answer(a))
    }

    /// Waits for the next answer; `None` when the connection ended.
    pub async fn answer(&mut self) -> Option<Result<(u32, u16, String)>> {
        let a = self.answers.recv().await?;
        Some(self.match_answer(a))
    }

    fn match_answer(&mut self, a: Answer) -> Result<(u32, u16, String)> {
        let (status, body) = a.map_err(|e| anyhow::anyhow!("the Pusher API connection: {e}"))?;
        let id = self
            .in_flight
            .pop_front()
            .context("an API answer to no request")?;
        Ok((id, status, body))
    }
}

/// Reads one response (head and `Content-Length` body) from the API
/// connection: status, body start, whether the server closes after it;
/// `buf` keeps what follows it (the next pipelined answer).
async fn read_answer(
    read: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut Vec<u8>,
) -> Result<(u16, String, bool), String> {
    let head = read_head(read, buf).await.map_err(|e| format!("{e:#}"))?;
    if head.chunked {
        return Err("a chunked API answer (not expected)".into());
    }
    let n = head.content_length.unwrap_or(0);
    while buf.len() < n {
        match read.read_buf(buf).await {
            Ok(0) => return Err("closed in an answer's body".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let body = if head.status == 200 {
        String::new()
    } else {
        String::from_utf8_lossy(&buf[..n.min(200)])
            .trim()
            .to_owned()
    };
    buf.drain(..n);
    Ok((head.status, body, head.close))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_urls() {
        assert_eq!(
            client_url("ws://127.0.0.1:8000/connection/websocket", "k").unwrap(),
            "ws://127.0.0.1:8000/app/k?protocol=7"
        );
        assert_eq!(
            client_url("ws://h:1/app/x?protocol=7&client=js", "k").unwrap(),
            "ws://h:1/app/x?protocol=7&client=js"
        );
        assert_eq!(
            api_base("ws://127.0.0.1:8000/app/k?protocol=7").unwrap(),
            "http://127.0.0.1:8000"
        );
    }

    #[test]
    fn stamps_inside_a_pusher_event() {
        let inner = r#"{"t":12345,"p":"xx"}"#;
        let frame = serde_json::json!({"event": EVENT, "channel": "c", "data": inner}).to_string();
        assert_eq!(super::super::stamp(&frame), Some(12345));
    }
}
