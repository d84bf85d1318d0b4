//! The benchmark's ceilings, built with Portico's release profile and runtime, so
//! `bench/run` can say what share of them each page reaches: a bare axum handler answering
//! "hello" at `/`, and, for each `--page`, a bare handler answering with a response the
//! driver recorded from Portico (the same headers and body, held in memory). With
//! `--portico`, instead, Portico's own stack with each page's data held in memory
//! (`portico::web::ceiling`), configured as `portico serve` is (PORTICO_* variables).
//!
//! `cargo run --release --example bench-ceiling -- [--port 0] [--page ROUTE=FILE]...`
//! or `... -- --portico` prints `listening on ADDR`.

use std::error::Error;
use std::net::SocketAddr;
use std::path::Path;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::routing::get;
use clap::Parser;
use portico::app::App;
use portico::config::{Config, ServeArgs};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

#[derive(Parser)]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Also answer GET ROUTE with the response recorded in FILE: header lines
    /// (`name: value`), an empty line, then the body. Repeatable.
    #[arg(long = "page", value_name = "ROUTE=FILE")]
    pages: Vec<String>,
    /// Serve Portico's own stack with the pages' data in memory, on PORTICO_BIND.
    #[arg(long, conflicts_with_all = ["port", "pages"])]
    portico: bool,
    #[command(flatten)]
    serve: ServeArgs,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.portico {
        return portico_in_memory(args.serve).await;
    }
    let mut app = Router::new().route("/", get(|| async { "hello" }));
    for page in &args.pages {
        let (route, file) = page
            .split_once('=')
            .ok_or_else(|| format!("--page {page}: not ROUTE=FILE"))?;
        let (headers, body) = recorded(Path::new(file))?;
        app = app.route(
            route,
            get(move || {
                let (headers, body) = (headers.clone(), body.clone());
                async move { (headers, body) }
            }),
        );
    }
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// Portico's router, middleware, extractors and templates, the data of each page read once.
async fn portico_in_memory(serve: ServeArgs) -> Result<()> {
    let config = Config::from_args(serve)?;
    let bind = config.bind;
    let state = App::start(config).await?;
    let listener = tokio::net::TcpListener::bind(bind).await?;
    println!("listening on {}", listener.local_addr()?);
    let app = portico::web::ceiling::router(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// A recorded response's headers and body; its headers replace the body's own
/// `content-type` (octet-stream) when the response is built.
fn recorded(file: &Path) -> Result<(HeaderMap, Bytes)> {
    let bytes = std::fs::read(file)?;
    let end = bytes
        .windows(2)
        .position(|pair| pair == b"\n\n")
        .ok_or_else(|| format!("{}: no empty line after the headers", file.display()))?;
    let mut headers = HeaderMap::new();
    for line in std::str::from_utf8(&bytes[..end])?.lines() {
        let (name, value) = line
            .split_once(": ")
            .ok_or_else(|| format!("{}: not a header line: {line}", file.display()))?;
        headers.append(HeaderName::try_from(name)?, HeaderValue::try_from(value)?);
    }
    Ok((headers, Bytes::copy_from_slice(&bytes[end + 2..])))
}
