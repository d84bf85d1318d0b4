//! Portico: a multi-tenant admin portal for a contact center whose mail runs through
//! Microsoft 365.

pub mod accounts;
pub mod app;
pub mod clock;
pub mod config;
pub mod connections;
pub mod crypto;
pub mod domain;
pub mod key_rotation;
pub mod mail;
pub mod microsoft;
pub mod store;
pub mod throttle;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

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
