//! tokio-tungstenite echo server: `accept_async`, then every text or binary
//! message is forwarded back (the sink is flushed when the stream has
//! nothing more ready, so a burst goes out in one write).

use futures_util::{future, StreamExt, TryStreamExt};

fn main() {
    wshub_bench_peers::serve("tokio-tungstenite", |tcp| async move {
        let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        let (sink, stream) = ws.split();
        let _ = stream
            .try_filter(|m| future::ready(m.is_text() || m.is_binary()))
            .forward(sink)
            .await;
    });
}
