//! tokio-websockets echo server: `ServerBuilder::accept`, then every text or
//! binary message is sent back (pings are answered by the library).

use futures_util::{SinkExt, StreamExt};
use tokio_websockets::ServerBuilder;

fn main() {
    wshub_bench_peers::serve("tokio-websockets", |tcp| async move {
        let Ok((_req, mut ws)) = ServerBuilder::new().accept(tcp).await else {
            return;
        };
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
}
