//! Stand-ins for the servers Portico connects to (mail servers that misbehave, services an
//! operator did not open): a listener on loopback whose every connection a test scripts.

use std::future::Future;

use tokio::net::{TcpListener, TcpStream};

/// Listens on 127.0.0.1 at a free port and hands every connection to `serve`, each on a
/// task of its own, so a stalled connection holds up no other. Returns the port; the
/// listener stops with the test's runtime.
pub async fn serve_on_loopback<Serve, Served>(serve: Serve) -> u16
where
    Serve: Fn(TcpStream) -> Served + Send + 'static,
    Served: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    port
}
