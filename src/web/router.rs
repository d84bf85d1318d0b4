//! Every route of Portico, in one place.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::routing::{MethodRouter, get, post};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use super::{
    assets, audit_log, auth, csrf, dashboard, error, external_apis, mailboxes, microsoft_settings,
    microsoft_sign_in, oauth_connections, observe, public, segments, session, setup, users,
};
use crate::app::AppState;
use crate::store::sessions::DbSessionStore;

/// Name of the session cookie.
const SESSION_COOKIE: &str = "portico_session";

/// Every page under `/t/{slug}/` that needs a signed-in user. The isolation tests walk this
/// list, so a page added here is tested against other tenants from the start.
pub fn tenant_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/t/{slug}/", get(dashboard::show)),
        ("/t/{slug}/logout", post(auth::sign_out)),
        ("/t/{slug}/profile", get(dashboard::profile)),
        (
            "/t/{slug}/profile/password",
            post(dashboard::change_password),
        ),
        ("/t/{slug}/users", get(users::list).post(users::create)),
        ("/t/{slug}/users/new", get(users::new)),
        ("/t/{slug}/users/{id}", get(users::show)),
        ("/t/{slug}/users/{id}/role", post(users::change_role)),
        ("/t/{slug}/users/{id}/status", post(users::change_status)),
        ("/t/{slug}/users/{id}/password", post(users::reset_password)),
        (
            "/t/{slug}/users/{id}/microsoft-link",
            post(users::create_microsoft_link),
        ),
        (
            "/t/{slug}/users/{id}/microsoft-unlink",
            post(users::unlink_microsoft),
        ),
        ("/t/{slug}/audit", get(audit_log::list)),
        (
            "/t/{slug}/external-apis",
            get(external_apis::list).post(external_apis::create),
        ),
        ("/t/{slug}/external-apis/new", get(external_apis::new)),
        (
            "/t/{slug}/external-apis/{id}",
            get(external_apis::show).post(external_apis::update),
        ),
        (
            "/t/{slug}/external-apis/{id}/secret",
            post(external_apis::replace_secret),
        ),
        (
            "/t/{slug}/external-apis/{id}/test",
            post(external_apis::test),
        ),
        (
            "/t/{slug}/external-apis/{id}/check-mailbox",
            post(external_apis::check_mailbox),
        ),
        (
            "/t/{slug}/external-apis/{id}/delete",
            post(external_apis::delete),
        ),
        (
            "/t/{slug}/segments",
            get(segments::list).post(segments::create),
        ),
        (
            "/t/{slug}/segments/{id}",
            get(segments::show).post(segments::update),
        ),
        ("/t/{slug}/segments/{id}/delete", post(segments::delete)),
        ("/t/{slug}/segments/{id}/mailboxes/new", get(mailboxes::new)),
        ("/t/{slug}/segments/{id}/mailboxes", post(mailboxes::create)),
        (
            "/t/{slug}/mailboxes/{id}",
            get(mailboxes::show).post(mailboxes::update),
        ),
        ("/t/{slug}/mailboxes/{id}/test", post(mailboxes::test)),
        ("/t/{slug}/mailboxes/{id}/move", post(mailboxes::move_to)),
        ("/t/{slug}/mailboxes/{id}/delete", post(mailboxes::delete)),
        (
            "/t/{slug}/oauth-connections",
            get(oauth_connections::list).post(oauth_connections::create),
        ),
        (
            "/t/{slug}/oauth-connections/new",
            get(oauth_connections::new),
        ),
        (
            "/t/{slug}/oauth-connections/{id}",
            get(oauth_connections::show).post(oauth_connections::update),
        ),
        (
            "/t/{slug}/oauth-connections/{id}/secret",
            post(oauth_connections::replace_secret),
        ),
        (
            "/t/{slug}/oauth-connections/{id}/authenticate",
            post(oauth_connections::authenticate),
        ),
        (
            "/t/{slug}/oauth-connections/{id}/delete",
            post(oauth_connections::delete),
        ),
        (
            "/t/{slug}/settings/microsoft-sign-in",
            get(microsoft_settings::show).post(microsoft_settings::save),
        ),
    ]
}

pub fn router(state: AppState) -> Router {
    let sessions = SessionManagerLayer::new(DbSessionStore::new(state.db.clone()))
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.config.secure_cookies())
        .with_expiry(Expiry::OnInactivity(session::IDLE_TIMEOUT))
        // Saving on every request is what moves the idle expiry forward.
        .with_always_save(true);

    let tenant_pages = tenant_routes()
        .into_iter()
        .fold(Router::new(), |router, (path, route)| {
            router.route(path, route)
        });

    let routes = Router::new()
        .merge(tenant_pages)
        .route("/", get(public::home))
        .route("/healthz", get(public::healthz))
        .route("/readyz", get(public::readyz))
        .route("/setup", get(setup::show).post(setup::create))
        .route("/t/{slug}", get(public::tenant_root))
        .route("/t/{slug}/login", get(auth::show).post(auth::sign_in))
        .route("/t/{slug}/auth/microsoft", get(microsoft_sign_in::start))
        .route(
            "/t/{slug}/auth/microsoft/link/{token}",
            get(microsoft_sign_in::show_link).post(microsoft_sign_in::start_link),
        )
        .route("/auth/microsoft/callback", get(microsoft_sign_in::callback))
        .route("/oauth/callback", get(oauth_connections::callback))
        .route("/static/{file}", get(assets::serve));
    // /metrics shares the public address only behind a token; otherwise it is served on
    // PORTICO_METRICS_BIND alone (see `metrics_router`), or not at all.
    let routes = if state.config.metrics.token.is_some() {
        routes.route("/metrics", get(observe::metrics))
    } else {
        routes
    };

    routes
        .fallback(error::not_found)
        // Layers run outside-in from the bottom: request id, trace, error pages, body limit,
        // sessions, CSRF, then the timeout right around the handler.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(middleware::from_fn_with_state(state.clone(), csrf::verify))
        .layer(sessions)
        .layer(RequestBodyLimitLayer::new(csrf::MAX_FORM_BYTES))
        .layer(middleware::from_fn(error::render_error_pages))
        // No framing, no sniffing, no referrer leaving the site, only Portico's own assets.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            observe::track,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(observe::request_span))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::map_request(observe::drop_unusable_request_id))
        .with_state(state)
}

/// The router of PORTICO_METRICS_BIND: /metrics and nothing else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(observe::metrics))
        .with_state(state)
}
