//! Liveness and readiness probes.

use crate::on_both_backends;
use crate::support::{Backend, TestDatabase, eventually, spawn_app, spawn_app_on};

pub(crate) mod db_proxy;

on_both_backends!(health_and_readiness_answer_while_the_database_does);

async fn health_and_readiness_answer_while_the_database_does(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    browser.get("/healthz").await.assert_status(200);
    browser.get("/readyz").await.assert_status(200);

    app.state.db.close().await;
    browser.get("/readyz").await.assert_status(503);
    browser.get("/healthz").await.assert_status(200);
}

/// PostgreSQL goes away (every connection cut, new ones refused) and comes back:
/// /readyz follows it both ways without a restart.
#[tokio::test]
async fn readiness_recovers_when_postgres_comes_back() {
    if !Backend::postgres_available() {
        return;
    }
    let mut database = TestDatabase::create(Backend::Postgres).await;
    let proxy = db_proxy::DbProxy::start(&database.url).await;
    database.url = proxy.url_through(&database.url);
    let app = spawn_app_on(database).await;
    let browser = app.browser();
    browser.get("/readyz").await.assert_status(200);

    proxy.cut();
    wait_for_status(&browser, 503).await;
    browser.get("/healthz").await.assert_status(200);

    proxy.restore();
    wait_for_status(&browser, 200).await;
}

/// Polls /readyz until it answers `status`; each poll is itself bounded by the probe's
/// own timeout, and the whole wait by a deadline.
async fn wait_for_status(browser: &crate::support::Browser, status: u16) {
    let within = std::time::Duration::from_secs(30);
    eventually(within, &format!("/readyz answering {status}"), async || {
        browser.get("/readyz").await.status.as_u16() == status
    })
    .await;
}
