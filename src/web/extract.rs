//! Extractors: the only place where requests are authenticated and authorized.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tower_sessions::Session;

use super::csrf::AnonymousToken;
use super::error::AppError;
use super::observe::RequestSpan;
use super::session;
use crate::app::AppState;
use crate::domain::{Role, UserStatus};
use crate::store::tenants::Tenant;
use crate::store::users::User;

#[derive(Deserialize)]
struct TenantPath {
    slug: String,
}

async fn session_of(parts: &mut Parts, state: &AppState) -> Result<Session, AppError> {
    Session::from_request_parts(parts, state)
        .await
        .map_err(|(_, message)| AppError::Internal(message.into()))
}

/// The tenant named in the path, for pages anyone may open (its sign-in page).
pub struct PathTenant(pub Tenant);

impl FromRequestParts<AppState> for PathTenant {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let Path(TenantPath { slug }) = Path::from_request_parts(parts, state).await?;
        let tenant = state
            .tenants
            .find_by_slug(&state.db, &slug)
            .await?
            .ok_or(AppError::NotFound)?;
        RequestSpan::of(parts).record_tenant(&tenant.slug);
        Ok(Self(tenant))
    }
}

/// A signed-in, active user of the tenant named in the path. Every tenant page takes this
/// (or `AdminCtx`), and every store call on tenant data takes `ctx.tenant.id` from it.
pub struct TenantCtx {
    pub tenant: Tenant,
    pub user: User,
    pub csrf_token: String,
    /// How and when this session signed in.
    pub signed_in: session::SignedIn,
}

impl TenantCtx {
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }
}

impl FromRequestParts<AppState> for TenantCtx {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let PathTenant(tenant) = PathTenant::from_request_parts(parts, state).await?;
        let session = session_of(parts, state).await?;
        let sign_in_required = || AppError::SignInRequired {
            login_path: format!("/t/{}/login", tenant.slug),
        };
        let Some(signed_in) = session::signed_in(&session).await? else {
            return Err(sign_in_required());
        };
        // Signed in elsewhere: this tenant's pages do not exist for this user.
        if signed_in.tenant_id != tenant.id.as_str() {
            return Err(AppError::NotFound);
        }
        let user = session::signed_in_user(&session).await?;
        let user = user.map(User::try_from).transpose()?;
        let active_user = user.filter(|user| {
            user.id.as_str() == signed_in.user_id && user.status == UserStatus::Active
        });
        let Some(user) = active_user.filter(|_| !signed_in.is_expired(state.clock.now())) else {
            session::sign_out(&session).await?;
            return Err(sign_in_required());
        };
        RequestSpan::of(parts).record_user(user.id.as_str());
        session::keep_alive(&session, state.clock.now()).await?;
        let csrf_token = session::csrf_token(&session).await?;
        Ok(Self {
            tenant,
            user,
            csrf_token,
            signed_in,
        })
    }
}

/// A `TenantCtx` whose user is an admin; agents get 403.
pub struct AdminCtx(pub TenantCtx);

impl FromRequestParts<AppState> for AdminCtx {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let ctx = TenantCtx::from_request_parts(parts, state).await?;
        if ctx.is_admin() {
            Ok(Self(ctx))
        } else {
            Err(AppError::Forbidden)
        }
    }
}

/// The form token for pages shown before sign-in (setup, sign-in, a one-time link): the
/// session's, when it has one, else the signed cookie's (see `csrf`). Never makes a session,
/// so an anonymous page view writes nothing.
pub struct CsrfToken(pub String);

impl FromRequestParts<AppState> for CsrfToken {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let session = session_of(parts, state).await?;
        if let Some(token) = session::existing_csrf_token(&session).await? {
            session::keep_alive(&session, state.clock.now()).await?;
            return Ok(Self(token));
        }
        parts
            .extensions
            .get::<AnonymousToken>()
            .map(|anonymous| Self(anonymous.token()))
            .ok_or_else(|| AppError::Internal("served without the CSRF layer".into()))
    }
}

/// The client's address: the peer, or the last X-Forwarded-For hop when Portico is told it
/// runs behind a trusted proxy (the last hop is the one that proxy added).
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if state.config.trust_forwarded_for {
            let last_hop = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .next_back()
                .and_then(|hop| hop.trim().parse::<IpAddr>().ok());
            if let Some(ip) = last_hop {
                return Ok(Self(ip));
            }
        }
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| Self(addr.ip()))
            .ok_or_else(|| AppError::Internal("server started without connect info".into()))
    }
}

/// `axum::Form`, refusing what it cannot read (a field twice, another content type) with
/// Portico's 400 page instead of axum's plain text, and refusing NUL characters, which no
/// person types and PostgreSQL cannot store.
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        let is_form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(AppError::Unreadable("not a form".into()));
        }
        let body =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge,
                    _ => AppError::Unreadable(rejection.body_text()),
                })?;
        decode(&body).map(Self)
    }
}

/// `axum::extract::Query`, refusing as `Form` does.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        decode(parts.uri.query().unwrap_or_default().as_bytes()).map(Self)
    }
}

fn decode<T: DeserializeOwned>(encoded: &[u8]) -> Result<T, AppError> {
    let has_nul = url::form_urlencoded::parse(encoded)
        .any(|(name, value)| name.contains('\0') || value.contains('\0'));
    if has_nul {
        return Err(AppError::Unreadable("a NUL character".into()));
    }
    serde_urlencoded::from_bytes(encoded).map_err(|err| AppError::Unreadable(err.to_string()))
}

/// `axum::extract::Path`: a parameter that cannot be decoded, or holds a NUL character,
/// names nothing, so the page is not found.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::NotFound)?;
        if raw.iter().any(|(_, value)| value.contains('\0')) {
            return Err(AppError::NotFound);
        }
        let axum::extract::Path(value) = axum::extract::Path::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::NotFound)?;
        Ok(Self(value))
    }
}
