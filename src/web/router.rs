//! Every route of Portico, in one place.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::routing::{MethodRouter, get, post};
use tower::util::option_layer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer, SessionStore};

use super::{
    assets, audit_log, auth, csrf, dashboard, error, expiring, graph_credentials, mailboxes,
    microsoft_sign_in, microsoft_sign_in_settings, oauth_connections, observe, public, segments,
    session, setup, users,
};
use crate::app::AppState;
use crate::store::sessions::DbSessionStore;

/// Name of the session cookie.
const SESSION_COOKIE: &str = "portico_session";

/// Who may use a route. Handlers enforce it through their extractors (`TenantCtx`,
/// `AdminCtx`); the isolation tests hold every route of the table to its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not: the front page, probes, setup, sign-in, Microsoft's
    /// callbacks and the assets.
    Public,
    /// Signed-in users of the tenant in the path, admins and agents alike.
    Member,
    /// Admins of the tenant in the path; agents get 403.
    Admin,
}

/// One route: its path, who may use it, and its handlers.
pub struct Route {
    pub path: &'static str,
    pub access: Access,
    pub handlers: MethodRouter<AppState>,
}

fn route(access: Access, path: &'static str, handlers: MethodRouter<AppState>) -> Route {
    Route {
        path,
        access,
        handlers,
    }
}

/// Every route of Portico, and the router's only source of them: the security tests walk
/// this table (and check the router holds nothing else), so a route added here is tested
/// against other tenants, agents and signed-out clients from the start.
pub fn routes() -> Vec<Route> {
    use Access::{Admin, Member, Public};
    vec![
        route(Public, "/", get(public::home)),
        route(Public, "/healthz", get(public::healthz)),
        route(Public, "/readyz", get(public::readyz)),
        route(Public, "/setup", get(setup::show).post(setup::create)),
        route(Public, "/static/{file}", get(assets::serve)),
        route(Public, "/t/{slug}", get(public::tenant_root)),
        route(
            Public,
            "/t/{slug}/login",
            get(auth::show).post(auth::sign_in),
        ),
        route(
            Public,
            "/t/{slug}/auth/microsoft",
            get(microsoft_sign_in::start),
        ),
        route(
            Public,
            "/t/{slug}/auth/microsoft/link/{token}",
            get(microsoft_sign_in::show_link).post(microsoft_sign_in::start_link),
        ),
        route(
            Public,
            "/auth/microsoft/callback",
            get(microsoft_sign_in::callback),
        ),
        route(Public, "/oauth/callback", get(oauth_connections::callback)),
        route(Member, "/t/{slug}/", get(dashboard::show)),
        route(Member, "/t/{slug}/logout", post(auth::sign_out)),
        route(Member, "/t/{slug}/profile", get(dashboard::profile)),
        route(
            Member,
            "/t/{slug}/profile/password",
            post(dashboard::change_password),
        ),
        route(
            Admin,
            "/t/{slug}/users",
            get(users::list).post(users::create),
        ),
        route(Admin, "/t/{slug}/users/new", get(users::new)),
        route(Admin, "/t/{slug}/users/{id}", get(users::show)),
        route(Admin, "/t/{slug}/users/{id}/role", post(users::change_role)),
        route(
            Admin,
            "/t/{slug}/users/{id}/status",
            post(users::change_status),
        ),
        route(
            Admin,
            "/t/{slug}/users/{id}/password",
            post(users::reset_password),
        ),
        route(
            Admin,
            "/t/{slug}/users/{id}/microsoft-link",
            post(users::create_microsoft_link),
        ),
        route(
            Admin,
            "/t/{slug}/users/{id}/microsoft-unlink",
            post(users::unlink_microsoft),
        ),
        route(Admin, "/t/{slug}/audit", get(audit_log::list)),
        route(Admin, "/t/{slug}/expiring", get(expiring::show)),
        route(
            Admin,
            "/t/{slug}/expiring/alerts",
            post(expiring::save_alerts),
        ),
        route(
            Admin,
            "/t/{slug}/external-apis",
            get(graph_credentials::list).post(graph_credentials::create),
        ),
        route(
            Admin,
            "/t/{slug}/external-apis/new",
            get(graph_credentials::new),
        ),
        route(
            Admin,
            "/t/{slug}/external-apis/{id}",
            get(graph_credentials::show).post(graph_credentials::update),
        ),
        route(
            Admin,
            "/t/{slug}/external-apis/{id}/secret",
            post(graph_credentials::replace_secret),
        ),
        route(
            Admin,
            "/t/{slug}/external-apis/{id}/test",
            post(graph_credentials::test),
        ),
        route(
            Admin,
            "/t/{slug}/external-apis/{id}/certificate/renew",
            post(graph_credentials::renew_certificate),
        ),
        route(
            Admin,
            "/t/{slug}/external-apis/{id}/certificate/switch",
            post(graph_credentials::switch_certificate),
        ),
        route(
            Admin,
            "/t/{slug}/external-apis/{id}/certificate/{file}",
            get(graph_credentials::download_certificate),
        ),
        route(
            Admin,
            "/t/{slug}/external-apis/{id}/check-mailbox",
            post(graph_credentials::check_mailbox),
        ),
        route(
            Admin,
            "/t/{slug}/external-apis/{id}/delete",
            post(graph_credentials::delete),
        ),
        route(
            Admin,
            "/t/{slug}/segments",
            get(segments::list).post(segments::create),
        ),
        route(
            Admin,
            "/t/{slug}/segments/{id}",
            get(segments::show).post(segments::update),
        ),
        route(
            Admin,
            "/t/{slug}/segments/{id}/delete",
            post(segments::delete),
        ),
        route(
            Admin,
            "/t/{slug}/segments/{id}/mailboxes/new",
            get(mailboxes::new),
        ),
        route(
            Admin,
            "/t/{slug}/segments/{id}/mailboxes",
            post(mailboxes::create),
        ),
        route(
            Admin,
            "/t/{slug}/mailboxes/{id}",
            get(mailboxes::show).post(mailboxes::update),
        ),
        route(
            Admin,
            "/t/{slug}/mailboxes/{id}/test",
            post(mailboxes::test),
        ),
        route(
            Admin,
            "/t/{slug}/mailboxes/{id}/move",
            post(mailboxes::move_to),
        ),
        route(
            Admin,
            "/t/{slug}/mailboxes/{id}/delete",
            post(mailboxes::delete),
        ),
        route(
            Admin,
            "/t/{slug}/oauth-connections",
            get(oauth_connections::list).post(oauth_connections::create),
        ),
        route(
            Admin,
            "/t/{slug}/oauth-connections/new",
            get(oauth_connections::new),
        ),
        route(
            Admin,
            "/t/{slug}/oauth-connections/{id}",
            get(oauth_connections::show).post(oauth_connections::update),
        ),
        route(
            Admin,
            "/t/{slug}/oauth-connections/{id}/secret",
            post(oauth_connections::replace_secret),
        ),
        route(
            Admin,
            "/t/{slug}/oauth-connections/{id}/authenticate",
            post(oauth_connections::authenticate),
        ),
        route(
            Admin,
            "/t/{slug}/oauth-connections/{id}/delete",
            post(oauth_connections::delete),
        ),
        route(
            Admin,
            "/t/{slug}/settings/microsoft-sign-in",
            get(microsoft_sign_in_settings::show).post(microsoft_sign_in_settings::save),
        ),
        route(
            Admin,
            "/t/{slug}/settings/microsoft-sign-in/certificate/renew",
            post(microsoft_sign_in_settings::renew_certificate),
        ),
        route(
            Admin,
            "/t/{slug}/settings/microsoft-sign-in/certificate/switch",
            post(microsoft_sign_in_settings::switch_certificate),
        ),
        route(
            Admin,
            "/t/{slug}/settings/microsoft-sign-in/certificate/{file}",
            get(microsoft_sign_in_settings::download_certificate),
        ),
    ]
}

pub fn router(state: AppState) -> Router {
    let portal = routes().into_iter().fold(Router::new(), |router, route| {
        router.route(route.path, route.handlers)
    });
    // /metrics shares the public address only behind a token; otherwise it is served on
    // PORTICO_METRICS_BIND alone (see `metrics_router`), or not at all.
    let portal = if state.config.metrics.token.is_some() {
        portal.route("/metrics", get(observe::metrics))
    } else {
        portal
    };
    let sessions = DbSessionStore::new(state.db.clone());
    with_middleware(portal, sessions, state)
}

/// Portico's middleware around `portal`, its sessions kept in `sessions`: the database's for
/// the portal, memory for the benchmark's ceiling of the same stack without a database
/// (examples/bench-ceiling.rs).
pub fn with_middleware<S>(portal: Router<AppState>, sessions: S, state: AppState) -> Router
where
    S: SessionStore + Clone,
{
    let sessions = SessionManagerLayer::new(sessions)
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.config.secure_cookies())
        // Saved when changed: `session::keep_alive` changes it once a minute while in use,
        // which moves the idle expiry forward without a write on every request.
        .with_expiry(Expiry::OnInactivity(session::IDLE_TIMEOUT));
    let https = state.config.base_url.scheme() == "https";

    portal
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
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
        // Pages show tenant data (and once, a one-time link): no cache keeps them. Assets
        // set their own, long, caching.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        // Behind https, browsers are told never to try plain http for a year.
        .layer(option_layer(https.then(|| {
            SetResponseHeaderLayer::if_not_present(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            )
        })))
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
