//! A fake Centrifugo-protocol server: each accepted connection is handed to
//! the test, which reads the client's commands and scripts the replies.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use wshub_client::{Client, ClientConfig, ClientEvent, SubscriptionEvent};
use wshub_protocol::{
    decode_commands, Command, ConnectRequest, ConnectResult, Encoding, Push, Reply, ReplyEncoder,
};
use wshub_ws::{accept, CloseCode, Message, ServerOptions, WebSocket};

pub const WAIT: Duration = Duration::from_secs(5);

pub struct FakeServer {
    pub url: String,
    conns: mpsc::UnboundedReceiver<Conn>,
}

impl FakeServer {
    pub async fn start() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, conns) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let opts = ServerOptions::default().subprotocols([Encoding::PROTOBUF_SUBPROTOCOL]);
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let Ok(ws) = accept(tcp, &opts).await else {
                    continue;
                };
                let encoding = match ws.protocol() {
                    Some(p) => Encoding::from_subprotocol(p).unwrap(),
                    None => Encoding::Json,
                };
                let conn = Conn {
                    ws,
                    encoding,
                    queue: VecDeque::new(),
                    pongs: 0,
                };
                if tx.send(conn).is_err() {
                    return;
                }
            }
        });
        FakeServer {
            url: format!("ws://{addr}/connection/websocket"),
            conns,
        }
    }

    /// The next connection from the client.
    pub async fn conn(&mut self) -> Conn {
        timeout(WAIT, self.conns.recv())
            .await
            .expect("no connection from the client")
            .unwrap()
    }

    /// No connection arrives within `d`.
    pub async fn no_conn_within(&mut self, d: Duration) {
        if let Ok(Some(_)) = timeout(d, self.conns.recv()).await {
            panic!("the client connected again");
        }
    }

    /// Accepts the next connection and answers its connect command.
    pub async fn connected(&mut self, result: ConnectResult) -> (Conn, ConnectRequest) {
        let mut conn = self.conn().await;
        let req = conn.accept_connect(result).await;
        (conn, req)
    }

    pub fn client(&self, config: ClientConfig) -> (Client, mpsc::UnboundedReceiver<ClientEvent>) {
        Client::new(self.url.clone(), config)
    }
}

pub fn connect_result(client: &str) -> ConnectResult {
    ConnectResult {
        client: client.into(),
        version: "fake".into(),
        ..ConnectResult::default()
    }
}

pub fn config() -> ClientConfig {
    ClientConfig::default()
        .min_reconnect_delay(Duration::from_millis(20))
        .max_reconnect_delay(Duration::from_millis(100))
        .timeout(Duration::from_secs(3))
}

pub struct Conn {
    pub ws: WebSocket<TcpStream>,
    pub encoding: Encoding,
    queue: VecDeque<Command>,
    pub pongs: usize,
}

impl Conn {
    /// Reads one frame into the queue; `false` once the connection is over.
    async fn read(&mut self) -> bool {
        match self.ws.recv().await {
            Some(Ok(msg)) => {
                match (&msg, self.encoding) {
                    (Message::Text(_), Encoding::Json)
                    | (Message::Binary(_), Encoding::Protobuf) => {}
                    _ => panic!("frame type does not match the encoding {:?}", self.encoding),
                }
                for cmd in decode_commands(self.encoding, msg.as_bytes()).unwrap() {
                    if cmd.is_pong() {
                        self.pongs += 1;
                    } else {
                        self.queue.push_back(cmd);
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// The next command (pongs are counted, not returned).
    pub async fn command(&mut self) -> Command {
        loop {
            if let Some(cmd) = self.queue.pop_front() {
                return cmd;
            }
            let alive = timeout(WAIT, self.read())
                .await
                .expect("no command from the client");
            assert!(alive, "connection closed while waiting for a command");
        }
    }

    /// Reads for `d`, returning whether the connection is still open.
    pub async fn read_for(&mut self, d: Duration) -> bool {
        let end = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(end, self.read()).await {
                Err(_) => return true,
                Ok(false) => return false,
                Ok(true) => {}
            }
        }
    }

    pub async fn accept_connect(&mut self, result: ConnectResult) -> ConnectRequest {
        let cmd = self.command().await;
        let req = cmd.connect.clone().expect("first command is connect");
        self.reply(Reply {
            id: cmd.id,
            connect: Some(result),
            ..Reply::default()
        })
        .await;
        req
    }

    pub async fn replies(&mut self, replies: &[Reply]) {
        let mut out = ReplyEncoder::new(self.encoding);
        for r in replies {
            out.push(r).unwrap();
        }
        let frame = out.finish();
        match self.encoding {
            Encoding::Json => {
                self.ws
                    .send_text(std::str::from_utf8(&frame).unwrap())
                    .await
            }
            Encoding::Protobuf => self.ws.send_binary(&frame).await,
        }
        .unwrap();
    }

    pub async fn reply(&mut self, reply: Reply) {
        self.replies(&[reply]).await;
    }

    pub async fn push(&mut self, push: Push) {
        self.reply(Reply::from_push(push)).await;
    }

    pub async fn ping(&mut self) {
        self.reply(Reply::ping()).await;
    }

    /// Closes with a WebSocket close code (how Centrifugo delivers a disconnect).
    pub async fn close(mut self, code: u16, reason: &str) {
        let _ = timeout(WAIT, self.ws.close(CloseCode(code), reason)).await;
    }
}

/// The next event, failing the test after [`WAIT`].
pub async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    timeout(WAIT, rx.recv())
        .await
        .expect("no event in time")
        .expect("event stream ended")
}

/// Skips events until `f` picks one.
pub async fn until<T: std::fmt::Debug, R>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    mut f: impl FnMut(&T) -> Option<R>,
) -> R {
    loop {
        let e = next(rx).await;
        if let Some(r) = f(&e) {
            return r;
        }
    }
}

/// Waits for the client's `Connected` event; returns the client id.
pub async fn wait_connected(rx: &mut mpsc::UnboundedReceiver<ClientEvent>) -> String {
    until(rx, |e| match e {
        ClientEvent::Connected { client_id, .. } => Some(client_id.clone()),
        _ => None,
    })
    .await
}

/// The offsets of the publications among `events` (the test's view of delivery).
pub fn publication_offset(e: &SubscriptionEvent) -> Option<u64> {
    match e {
        SubscriptionEvent::Publication(p) => Some(p.offset),
        _ => None,
    }
}
