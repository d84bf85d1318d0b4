//! The benchmark's ceiling: a bare axum handler answering "hello", built with Portico's
//! release profile and runtime, so `bench/run` can say what share of it each page reaches.
//!
//! `cargo run --release --example bench-ceiling -- [--port 0]` prints `listening on ADDR`.

use std::error::Error;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    println!("listening on {}", listener.local_addr()?);
    let app = Router::new().route("/", get(|| async { "hello" }));
    axum::serve(listener, app).await?;
    Ok(())
}
