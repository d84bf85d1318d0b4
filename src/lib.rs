//! Portico: a multi-tenant admin portal for a contact center whose mail runs through
//! Microsoft 365.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod egress;
pub mod mail;
pub mod metrics;
pub mod microsoft;
pub mod services;
pub mod store;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;

/// Serves Portico on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = web::router::router(state);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The sockets a serving instance listens on.
pub struct Listeners {
    pub app: TcpListener,
    /// PORTICO_METRICS_BIND, when set.
    pub metrics: Option<TcpListener>,
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Every request finished, every job stopped and the pool closed in time.
    Complete,
    /// PORTICO_SHUTDOWN_TIMEOUT passed first; what still ran was cut off.
    DeadlineExceeded,
}

/// Runs a serving instance: the portal, /metrics on its own address when configured, and
/// the background jobs. When `shutdown` completes it stops accepting connections, lets
/// in-flight requests finish and jobs reach a safe point, then closes the database pool,
/// all within the configured shutdown timeout.
pub async fn run(
    state: AppState,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Shutdown {
    let stop = CancellationToken::new();
    let mut tasks = services::jobs::spawn(&state, &stop);
    tasks.push(serve_until(
        web::router::router(state.clone()),
        listeners.app,
        &stop,
    ));
    if let Some(listener) = listeners.metrics {
        tasks.push(serve_until(
            web::router::metrics_router(state.clone()),
            listener,
            &stop,
        ));
    }

    shutdown.await;
    stop.cancel();
    let deadline = Instant::now() + state.config.shutdown_timeout;
    let drained = tokio::time::timeout_at(deadline, async {
        for task in &mut tasks {
            let _ = task.await;
        }
    })
    .await;
    if drained.is_err() {
        tasks.iter().for_each(JoinHandle::abort);
    }
    let closed = tokio::time::timeout_at(deadline, state.db.close()).await;
    if drained.is_ok() && closed.is_ok() {
        Shutdown::Complete
    } else {
        Shutdown::DeadlineExceeded
    }
}

/// Serves `router` on `listener` until `stop` is cancelled, then until its connections end.
fn serve_until(router: Router, listener: TcpListener, stop: &CancellationToken) -> JoinHandle<()> {
    let stop = stop.clone();
    tokio::spawn(async move {
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "the server stopped");
        }
    })
}
