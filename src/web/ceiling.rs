//! The benchmark's ceiling of Portico's own stack (`bench-ceiling --portico`, see README's
//! Performance): the segment page, External APIs and the dashboard through Portico's
//! middleware, extractors, handlers and templates, each page's data read by its real
//! handler at the first request and then held in memory, and each session read once from
//! the database and then kept in memory. A page's distance from this ceiling is its
//! database work; this ceiling's distance from the page's bytes served bare is the rest of
//! Portico.

use std::sync::Arc;

use askama::Template;
use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::sync::OnceCell;
use tower_sessions::MemoryStore;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use super::error::AppError;
use super::extract::{AdminCtx, Path, Query, TenantCtx};
use super::{dashboard, graph_credentials, router, segments};
use crate::app::AppState;
use crate::store::sessions::DbSessionStore;

/// The three pages at their own paths, answered from memory after their first request.
/// One page is held per route, whoever asks: the benchmark asks as one admin.
pub fn router(state: AppState) -> Router {
    let segment_page = Arc::new(OnceCell::new());
    let external_apis = Arc::new(OnceCell::new());
    let dashboard = Arc::new(OnceCell::new());
    let portal = Router::new()
        .route(
            "/t/{slug}/segments/{id}",
            get(
                move |state: State<AppState>, admin: AdminCtx, path: Path<_>, query: Query<_>| {
                    let held = segment_page.clone();
                    async move { render(&held, segments::show(state, admin, path, query)).await }
                },
            ),
        )
        .route(
            "/t/{slug}/external-apis",
            get(move |state: State<AppState>, admin: AdminCtx| {
                let held = external_apis.clone();
                async move { render(&held, graph_credentials::list(state, admin)).await }
            }),
        )
        .route(
            "/t/{slug}/",
            get(move |state: State<AppState>, member: TenantCtx| {
                let held = dashboard.clone();
                async move { render(&held, dashboard::show(state, member)).await }
            }),
        );
    let sessions = HeldSessions {
        database: DbSessionStore::new(state.db.clone()),
        memory: MemoryStore::default(),
    };
    router::with_middleware(portal, sessions, state)
}

/// The page held in `held`, built by `build` (the real handler) the first time.
async fn render<P: Template>(
    held: &OnceCell<P>,
    build: impl Future<Output = Result<P, AppError>>,
) -> Response {
    match held.get_or_try_init(|| build).await {
        Ok(page) => match page.render() {
            Ok(html) => Html(html).into_response(),
            Err(err) => AppError::Internal(err.into()).into_response(),
        },
        Err(err) => err.into_response(),
    }
}

/// Sessions (with their user, as the database's store loads them) read from the database
/// once, then kept and saved in memory only.
#[derive(Debug, Clone)]
struct HeldSessions {
    database: DbSessionStore,
    memory: MemoryStore,
}

#[async_trait]
impl SessionStore for HeldSessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.memory.create(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.memory.save(record).await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        if let Some(record) = self.memory.load(id).await? {
            return Ok(Some(record));
        }
        let Some(record) = self.database.load(id).await? else {
            return Ok(None);
        };
        self.memory.save(&record).await?;
        Ok(Some(record))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.memory.delete(id).await
    }
}
