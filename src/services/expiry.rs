//! What stops working when, in a tenant: client secrets (their "Secret expires on": Graph
//! credentials', Sign in with Microsoft's and OAuth connections'), certificates (their end
//! of validity, Sign in with Microsoft's too) and delegated OAuth connections, whose refresh
//! token Microsoft ends after 90 days unused, so Portico counts from the last successful
//! renewal. One list feeds the dashboard banner, the Expiring page and the alerts.

use time::{Date, Duration, OffsetDateTime};

use crate::app::App;
use crate::domain::AuthMethod;
use crate::domain::{ExpiryStatus, OAuthStatus};
use crate::store::certificates::{self, Owner, Slot, StoredCertificate};
use crate::store::graph_credentials::{self, Authentication, GraphCredential};
use crate::store::microsoft_sign_in::{self, SignInSettings};
use crate::store::oauth_connections::{self, OAuthConnection};
use crate::store::tenants::TenantId;

/// How long Microsoft keeps a refresh token that is not used (Entra's inactivity limit).
pub const REFRESH_TOKEN_LIFETIME: Duration = Duration::days(90);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiringKind {
    /// A Graph credential's client secret.
    ClientSecret,
    Certificate,
    /// The certificate Sign in with Microsoft signs with.
    SignInCertificate,
    /// The client secret Sign in with Microsoft signs in with.
    SignInClientSecret,
    /// An OAuth connection's consent (its refresh token).
    OAuthConnection,
    /// An OAuth connection's client secret.
    OAuthClientSecret,
}

impl ExpiringKind {
    /// Stored in alert rows: never change a released name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecret => "client_secret",
            Self::Certificate => "certificate",
            Self::SignInCertificate => "sign_in_certificate",
            Self::SignInClientSecret => "sign_in_client_secret",
            Self::OAuthConnection => "oauth_connection",
            Self::OAuthClientSecret => "oauth_client_secret",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::ClientSecret | Self::SignInClientSecret | Self::OAuthClientSecret => {
                "Client secret"
            }
            Self::Certificate | Self::SignInCertificate => "Certificate",
            Self::OAuthConnection => "OAuth connection",
        }
    }
}

/// One thing that stops, or stopped, working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    pub kind: ExpiringKind,
    /// The Graph credential's or connection's id (`microsoft-sign-in` for the sign-in's
    /// certificate or secret, one per tenant).
    pub id: String,
    pub name: String,
    /// The last day it works; `None` for a connection that already fails, and for a
    /// secret whose date is unknown.
    pub ends_on: Option<Date>,
    pub status: ExpiryStatus,
    /// Why it fails, when it does.
    pub reason: Option<String>,
    /// Names this expiry: it changes when the secret, certificate or consent is renewed,
    /// so alerts about the old one are never taken for the new one.
    pub instance: String,
}

impl Expiring {
    /// The page of the thing, under the tenant's path.
    pub fn page(&self) -> String {
        match self.kind {
            ExpiringKind::ClientSecret | ExpiringKind::Certificate => {
                format!("/external-apis/{}", self.id)
            }
            ExpiringKind::SignInCertificate | ExpiringKind::SignInClientSecret => {
                SIGN_IN_SETTINGS_PAGE.to_owned()
            }
            ExpiringKind::OAuthConnection | ExpiringKind::OAuthClientSecret => {
                format!("/oauth-connections/{}", self.id)
            }
        }
    }

    /// Within the warning window, expired, failing or of unknown date: the dashboard shows
    /// it.
    pub fn needs_attention(&self) -> bool {
        self.status.needs_attention()
    }
}

fn of_credential(credential: &GraphCredential, now: OffsetDateTime) -> Expiring {
    let (kind, instance) = match &credential.authentication {
        // With its end date: a secret replaced within the same second is still told apart.
        Authentication::ClientSecret { replaced_at, .. } => (
            ExpiringKind::ClientSecret,
            format!(
                "{}/{}",
                replaced_at.unix_timestamp(),
                credential.expires_on()
            ),
        ),
        Authentication::Certificate { thumbprint, .. } => {
            (ExpiringKind::Certificate, thumbprint.clone())
        }
    };
    Expiring {
        kind,
        id: credential.id.clone(),
        name: credential.name.clone(),
        ends_on: Some(credential.expires_on()),
        status: ExpiryStatus::of(credential.expires_on(), now),
        reason: None,
        instance,
    }
}

/// Where Sign in with Microsoft is set up, under the tenant's path.
pub const SIGN_IN_SETTINGS_PAGE: &str = "/settings/microsoft-sign-in";

fn of_sign_in_certificate(certificate: &StoredCertificate, now: OffsetDateTime) -> Expiring {
    let ends_on = certificate.not_after().date();
    Expiring {
        kind: ExpiringKind::SignInCertificate,
        id: "microsoft-sign-in".into(),
        name: "Sign in with Microsoft".into(),
        ends_on: Some(ends_on),
        status: ExpiryStatus::of(ends_on, now),
        reason: None,
        instance: certificate.thumbprint.clone(),
    }
}

/// Names a client secret's expiry, like a Graph credential's: a secret replaced, or its
/// date entered, is another instance.
fn secret_instance(replaced_at: Option<OffsetDateTime>, expires_on: Option<Date>) -> String {
    format!(
        "{}/{}",
        replaced_at.map_or(0, OffsetDateTime::unix_timestamp),
        expires_on.map_or_else(|| "unknown".to_owned(), |day| day.to_string())
    )
}

fn of_sign_in_secret(settings: &SignInSettings, now: OffsetDateTime) -> Option<Expiring> {
    settings.client_secret_sealed.as_ref()?;
    Some(Expiring {
        kind: ExpiringKind::SignInClientSecret,
        id: "microsoft-sign-in".into(),
        name: "Sign in with Microsoft".into(),
        ends_on: settings.secret_expires_on,
        status: ExpiryStatus::of_known(settings.secret_expires_on, now),
        reason: None,
        instance: secret_instance(settings.secret_replaced_at, settings.secret_expires_on),
    })
}

fn of_connection_secret(connection: &OAuthConnection, now: OffsetDateTime) -> Option<Expiring> {
    connection.client_secret_sealed.as_ref()?;
    Some(Expiring {
        kind: ExpiringKind::OAuthClientSecret,
        id: connection.id.clone(),
        name: connection.name.clone(),
        ends_on: connection.secret_expires_on,
        status: ExpiryStatus::of_known(connection.secret_expires_on, now),
        reason: None,
        instance: secret_instance(connection.secret_replaced_at, connection.secret_expires_on),
    })
}

fn of_connection(connection: &OAuthConnection, now: OffsetDateTime) -> Option<Expiring> {
    let consented = connection.authenticated_at?.unix_timestamp().to_string();
    let (ends_on, status, reason) = match connection.status {
        OAuthStatus::NotAuthenticated => return None,
        OAuthStatus::NeedsReauthentication => (
            None,
            ExpiryStatus::Failed,
            Some(
                connection
                    .status_reason
                    .clone()
                    .unwrap_or_else(|| "Microsoft refused its token.".into()),
            ),
        ),
        OAuthStatus::Authenticated => {
            let renewed = connection.renewed_at.or(connection.authenticated_at)?;
            let ends_on = (renewed + REFRESH_TOKEN_LIFETIME).date();
            (Some(ends_on), ExpiryStatus::of(ends_on, now), None)
        }
    };
    Some(Expiring {
        kind: ExpiringKind::OAuthConnection,
        id: connection.id.clone(),
        name: connection.name.clone(),
        ends_on,
        status,
        reason,
        instance: consented,
    })
}

/// Everything of the tenant that expires: failing ones first, then secrets of unknown
/// date, then soonest first.
pub fn collect(
    credentials: &[GraphCredential],
    sign_in: Option<&SignInSettings>,
    sign_in_certificate: Option<&StoredCertificate>,
    connections: &[OAuthConnection],
    now: OffsetDateTime,
) -> Vec<Expiring> {
    let mut all: Vec<Expiring> = credentials
        .iter()
        .map(|credential| of_credential(credential, now))
        .chain(sign_in.and_then(|settings| of_sign_in_secret(settings, now)))
        .chain(sign_in_certificate.map(|certificate| of_sign_in_certificate(certificate, now)))
        .chain(connections.iter().flat_map(|connection| {
            [
                of_connection(connection, now),
                of_connection_secret(connection, now),
            ]
            .into_iter()
            .flatten()
        }))
        .collect();
    let urgency = |item: &Expiring| match item.status {
        ExpiryStatus::Failed => 0,
        ExpiryStatus::Unknown => 1,
        _ => 2,
    };
    all.sort_by(|a, b| (urgency(a), a.ends_on, &a.name).cmp(&(urgency(b), b.ends_on, &b.name)));
    all
}

/// The tenant's expiring things as of the app's clock.
pub async fn of_tenant(app: &App, tenant: &TenantId) -> Result<Vec<Expiring>, sqlx::Error> {
    let credentials = graph_credentials::list(&app.db, tenant).await?;
    let sign_in = microsoft_sign_in::get(&app.db, tenant).await?;
    let uses_certificate = sign_in
        .as_ref()
        .is_some_and(|settings| settings.auth_method == AuthMethod::Certificate);
    let sign_in_certificate = if uses_certificate {
        certificates::get(&app.db, tenant, Owner::MicrosoftSignIn, Slot::Current).await?
    } else {
        None
    };
    let connections = oauth_connections::list(&app.db, tenant).await?;
    Ok(collect(
        &credentials,
        sign_in.as_ref(),
        sign_in_certificate.as_ref(),
        &connections,
        app.clock.now(),
    ))
}
