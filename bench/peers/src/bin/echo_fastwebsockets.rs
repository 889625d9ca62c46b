//! fastwebsockets echo server: hyper HTTP/1.1 upgrade, a fragment collector,
//! automatic pongs and closes, frames echoed as they come (server frames are
//! unmasked).

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn upgrade_request(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn_local(async move {
        let _ = echo(fut).await;
    });
    Ok(response)
}

fn main() {
    wshub_bench_peers::serve("fastwebsockets", |tcp| async move {
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service_fn(upgrade_request))
            .with_upgrades()
            .await;
    });
}
