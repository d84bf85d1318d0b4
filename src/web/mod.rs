//! HTTP: routes, extractors, and thin handlers that parse, call the store, and render.

mod assets;
mod audit_log;
mod auth;
pub mod ceiling;
mod certificates;
mod csrf;
mod dashboard;
mod error;
mod expiring;
mod extract;
mod graph_credentials;
mod mailbox_checks;
mod mailboxes;
mod microsoft_sign_in;
mod microsoft_sign_in_settings;
mod oauth_connections;
mod observe;
mod public;
pub mod router;
mod segments;
mod session;
mod setup;
mod users;

use std::net::IpAddr;

pub use error::AppError;
use extract::TenantCtx;

use crate::app::App;
use crate::domain::{AuditAction, FieldErrors};
use crate::store::audit::{self, NewAuditEvent};

/// What the base layout needs on every page.
pub struct Layout {
    pub title: String,
    pub csrf_token: String,
    pub nav: Option<Nav>,
}

/// The signed-in navigation bar.
pub struct Nav {
    pub slug: String,
    pub tenant_name: String,
    pub user_name: String,
    pub is_admin: bool,
    /// Which item is highlighted: "dashboard", "users", "external-apis", "expiring",
    /// "settings", "audit" or "profile".
    pub section: &'static str,
}

impl Layout {
    pub fn public(title: impl Into<String>, csrf_token: String) -> Self {
        Self {
            title: title.into(),
            csrf_token,
            nav: None,
        }
    }
}

impl TenantCtx {
    pub fn layout(&self, title: impl Into<String>, section: &'static str) -> Layout {
        Layout {
            title: title.into(),
            csrf_token: self.csrf_token.clone(),
            nav: Some(Nav {
                slug: self.tenant.slug.clone(),
                tenant_name: self.tenant.name.clone(),
                user_name: self.user.display_name.clone(),
                is_admin: self.is_admin(),
                section,
            }),
        }
    }

    /// Path of a page of this tenant, e.g. `ctx.path("/users")`.
    pub fn path(&self, rest: &str) -> String {
        format!("/t/{}{}", self.tenant.slug, rest)
    }

    /// Records what the signed-in user changed. `detail` must never hold a secret value.
    pub async fn audit(
        &self,
        app: &App,
        action: AuditAction,
        target: &str,
        detail: &str,
        ip: IpAddr,
    ) -> Result<(), sqlx::Error> {
        audit::record(
            &app.db,
            &self.tenant.id,
            NewAuditEvent {
                action,
                actor_user_id: Some(self.user.id.as_str()),
                actor: &self.user.email,
                target,
                detail,
                ip: Some(ip),
            },
        )
        .await
    }
}

/// The message of a form whose row someone else saved after it was loaded (the store's
/// `Stale`), under the `version` key the pages show at their top. `what`: "this segment".
pub fn changed_meanwhile(what: &str) -> FieldErrors {
    FieldErrors::single(
        "version",
        format!(
            "Someone else changed {what} since you opened it. Nothing was saved: review \
             their change and save again."
        ),
    )
}

pub use crate::domain::format_time;
