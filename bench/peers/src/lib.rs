//! Shared plumbing for the peer echo servers: the listen address from the
//! first argument, a current-thread runtime, an accept loop that spawns one
//! task per connection with `TCP_NODELAY` set (as `wshub echo` does).

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

/// Runs `handle` for every accepted connection on a single-threaded
/// runtime, listening on `argv[1]` (default `127.0.0.1:9001`).
pub fn serve<F, Fut>(name: &str, handle: F)
where
    F: Fn(TcpStream) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into())
        .parse()
        .expect("usage: <server> ADDR (e.g. 127.0.0.1:9001)");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        println!(
            "{name} listening on ws://{}",
            listener.local_addr().unwrap()
        );
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    tokio::task::spawn_local(handle(tcp));
                }
                Err(_) => {
                    // Out of descriptors and the like: keep serving the rest.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
}
