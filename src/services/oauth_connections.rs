//! Delegated OAuth connections: completing an admin's Authenticate, and keeping the
//! access token fresh in the background without ever storing a used refresh token alone.

use std::net::IpAddr;

use secrecy::{ExposeSecret as _, SecretString};
use time::Duration;

use crate::app::App;
use crate::crypto::SealError;
use crate::domain::{AuditAction, OAuthAuthority, OAuthStatus};
use crate::microsoft::delegated::{DelegatedApp, DelegatedTokens, PendingAuthorization};
use crate::microsoft::{CallError, MicrosoftError};
use crate::services::fair_share::{self, Turns};
use crate::store::audit::{self, NewAuditEvent};
use crate::store::oauth_connections::{
    self, ConnectionFields, OAuthConnection, SealedClientSecret, SealedTokens,
};
use crate::store::sealed::{Purpose, Sealed};
use crate::store::tenants::TenantId;

/// Access tokens are renewed this long before they expire.
pub const RENEW_AHEAD: Duration = Duration::minutes(10);
/// How long one instance holds a connection while renewing it.
const RENEWAL_LEASE: Duration = Duration::minutes(2);

/// The connection's client secret, if it has one.
pub fn client_secret(
    app: &App,
    connection: &OAuthConnection,
) -> Result<Option<SecretString>, SealError> {
    connection
        .client_secret_sealed
        .as_ref()
        .map(|sealed| {
            sealed.open(
                &app.config.secret_key,
                &connection.tenant_id,
                &connection.id,
            )
        })
        .transpose()
}

/// The settings a stored client secret is bound to that `fields` would change, by their
/// labels: the secret goes only to the app, directory, cloud and URLs it was entered for.
pub fn secret_destination_changes(
    stored: &OAuthConnection,
    fields: &ConnectionFields,
) -> Vec<&'static str> {
    [
        (
            "Application (client) ID",
            stored.client_id != fields.client_id,
        ),
        (
            "Directory (tenant) ID",
            stored.directory != fields.directory,
        ),
        ("cloud", stored.cloud != fields.cloud),
        (
            "Authorization URL",
            stored.authorization_url != fields.authorization_url,
        ),
        ("Token URL", stored.token_url != fields.token_url),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(label, _)| label)
    .collect()
}

/// The sealed client secret to save with `fields` on the Edit form: a typed one, sealed to
/// this connection; `None` keeps the stored one, allowed only while it still goes where it
/// was entered for. `Err` says why the secret must be pasted again.
pub fn client_secret_to_save(
    app: &App,
    stored: &OAuthConnection,
    fields: &ConnectionFields,
    typed: Option<&SecretString>,
) -> Result<Option<SealedClientSecret>, String> {
    let typed = typed.filter(|secret| !secret.expose_secret().trim().is_empty());
    if let Some(secret) = typed {
        let keys = &app.config.secret_key;
        let sealed = SealedClientSecret::seal(keys, &stored.tenant_id, &stored.id, secret);
        return Ok(Some(sealed));
    }
    let moved = secret_destination_changes(stored, fields);
    if stored.client_secret_sealed.is_some() && !moved.is_empty() {
        return Err(format!(
            "You changed the {}: the stored client secret was entered for the old settings \
             and is never sent anywhere else. Paste the client secret again.",
            moved.join(", ")
        ));
    }
    Ok(None)
}

/// The app and endpoints to use: the admin's own (Advanced), or Microsoft's.
pub fn delegated_app<'a>(
    app: &App,
    connection: &'a OAuthConnection,
    secret: Option<&'a SecretString>,
) -> DelegatedApp<'a> {
    let authority = OAuthAuthority::parse(&connection.directory).map_or_else(
        |_| connection.directory.clone(),
        |authority| authority.segment(),
    );
    let (authorize, token) = app
        .microsoft
        .delegated_endpoints(connection.cloud, &authority);
    DelegatedApp {
        client_id: connection.client_id.to_string(),
        authorization_url: connection.authorization_url.clone().unwrap_or(authorize),
        token_url_typed_by_tenant: connection.token_url.is_some(),
        token_url: connection.token_url.clone().unwrap_or(token),
        scope: &connection.scope,
        client_secret: secret,
    }
}

/// Seals a token of `connection` for purpose `P`.
fn seal<P: Purpose>(app: &App, connection: &OAuthConnection, token: &SecretString) -> Sealed<P> {
    Sealed::seal(
        &app.config.secret_key,
        &connection.tenant_id,
        &connection.id,
        token,
    )
}

/// Redeems the code Microsoft sent back and stores the tokens; returns who consented.
pub async fn complete_authentication(
    app: &App,
    connection: &OAuthConnection,
    redirect_uri: &str,
    code: &str,
    pending: &PendingAuthorization,
) -> Result<Result<String, CallError>, AuthenticationError> {
    let secret = client_secret(app, connection)?;
    let delegated = delegated_app(app, connection, secret.as_ref());
    let tokens = match app
        .microsoft
        .redeem_delegated_code(&delegated, redirect_uri, code, pending)
        .await
    {
        Ok(tokens) => tokens,
        Err(error) => return Ok(Err(error)),
    };
    let Some(refresh_token) = &tokens.refresh_token else {
        return Ok(Err(CallError::Unexpected(
            "Microsoft sent no refresh token: the scope must include offline_access".into(),
        )));
    };
    let who = tokens
        .username
        .clone()
        .unwrap_or_else(|| "an unnamed account".into());
    let access = seal(app, connection, &tokens.access_token);
    let refresh = seal(app, connection, refresh_token);
    let sealed = SealedTokens {
        access_token: &access,
        expires_at: expiry(app, &tokens),
        refresh_token: Some(&refresh),
    };
    let now = app.clock.now().unix_timestamp();
    let stored = oauth_connections::store_authentication(
        &app.db,
        &connection.tenant_id,
        &connection.id,
        connection.version,
        &who,
        &sealed,
        now,
    )
    .await
    .map_err(|err| AuthenticationError::Store(err.to_string()))?;
    if !stored {
        return Err(AuthenticationError::SettingsChanged);
    }
    Ok(Ok(who))
}

#[derive(Debug, thiserror::Error)]
pub enum AuthenticationError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("storing the tokens: {0}")]
    Store(String),
    /// The connection was saved while Microsoft answered: the consent was for settings that
    /// no longer hold, so its tokens were not stored.
    #[error(
        "The connection's settings were changed while Microsoft answered, so nothing was \
         stored. Authenticate again."
    )]
    SettingsChanged,
}

fn expiry(app: &App, tokens: &DelegatedTokens) -> i64 {
    (app.clock.now() + Duration::seconds(tokens.expires_in)).unix_timestamp()
}

/// How one renewal went.
#[derive(Debug, PartialEq, Eq)]
pub enum Renewal {
    Renewed,
    /// Another instance holds the lease right now.
    Skipped,
    /// The refresh token was refused for good (revoked, password changed, unused too long).
    NeedsReauthentication,
    /// Microsoft could not be reached; tried again later, status unchanged.
    Postponed,
}

/// Renews one connection's access token, if this instance wins its lease.
pub async fn renew(app: &App, connection: &OAuthConnection) -> Result<Renewal, sqlx::Error> {
    let tenant = &connection.tenant_id;
    let now = app.clock.now();
    let lease_until = (now + RENEWAL_LEASE).unix_timestamp();
    let Some(lease) = oauth_connections::claim_renewal(
        &app.db,
        tenant,
        &connection.id,
        now.unix_timestamp(),
        lease_until,
    )
    .await?
    else {
        return Ok(Renewal::Skipped);
    };
    // The row as it is now, under the lease: another instance may have renewed (and rotated
    // the refresh token) since `connection` was read.
    let Some(connection) = oauth_connections::get(&app.db, tenant, &connection.id).await? else {
        return Ok(Renewal::Skipped);
    };
    let renewed_lately = connection
        .access_token_expires_at
        .is_some_and(|expires_at| expires_at > now + RENEW_AHEAD);
    if renewed_lately {
        oauth_connections::release_renewal(&app.db, tenant, &connection.id, &lease).await?;
        return Ok(Renewal::Skipped);
    }
    let opened = client_secret(app, &connection).and_then(|secret| {
        let refresh = connection
            .refresh_token_sealed
            .as_ref()
            .map(|sealed| sealed.open(&app.config.secret_key, tenant, &connection.id))
            .transpose()?;
        Ok((secret, refresh))
    });
    let (secret, Some(refresh_token)) = (match opened {
        Ok(opened) => opened,
        Err(err) => {
            tracing::error!(error = %err, "a connection's stored secret does not open");
            (None, None)
        }
    }) else {
        let reason = "Portico holds no usable refresh token";
        return needs_reauthentication(app, &connection, &lease, reason).await;
    };
    let delegated = delegated_app(app, &connection, secret.as_ref());
    match app
        .microsoft
        .refresh_delegated(&delegated, &refresh_token)
        .await
    {
        Ok(tokens) => {
            let access = seal(app, &connection, &tokens.access_token);
            let rotated = tokens
                .refresh_token
                .as_ref()
                .map(|token| seal(app, &connection, token));
            let sealed = SealedTokens {
                access_token: &access,
                expires_at: expiry(app, &tokens),
                refresh_token: rotated.as_ref(),
            };
            let renewed_at = app.clock.now().unix_timestamp();
            let stored = oauth_connections::store_renewal(
                &app.db,
                tenant,
                &connection.id,
                &lease,
                &sealed,
                renewed_at,
            )
            .await?;
            Ok(if stored {
                Renewal::Renewed
            } else {
                Renewal::Skipped
            })
        }
        Err(CallError::Microsoft(error)) if !is_transient(&error) => {
            let reason = refusal_reason(&error);
            needs_reauthentication(app, &connection, &lease, &reason).await
        }
        // The Token URL's name now resolves inside: that will not pass by itself.
        Err(CallError::Destination(refused)) => {
            let reason = format!("{refused} Nothing was sent there.");
            needs_reauthentication(app, &connection, &lease, &reason).await
        }
        Err(error) => {
            tracing::warn!(error = %error, connection = %connection.id, "renewal postponed");
            // 1, 2, 4 ... 32 minutes: a short outage heals by itself.
            let backoff = Duration::minutes(1 << connection.renewal_failures.clamp(0, 5));
            let retry_at = (app.clock.now() + backoff).unix_timestamp();
            oauth_connections::postpone_renewal(&app.db, tenant, &connection.id, &lease, retry_at)
                .await?;
            Ok(Renewal::Postponed)
        }
    }
}

/// Errors that may pass by themselves; any other answer needs a person.
fn is_transient(error: &MicrosoftError) -> bool {
    matches!(
        error.error.as_str(),
        "temporarily_unavailable" | "server_error" | "unexpected_response"
    )
}

/// Why renewing stopped, for the connection page and the audit log.
fn refusal_reason(error: &MicrosoftError) -> String {
    let code = error
        .code
        .map(|code| format!(" (AADSTS{code})"))
        .unwrap_or_default();
    if error.error == "invalid_grant" {
        format!(
            "Microsoft refused the refresh token{code}: it was revoked, the password changed, or it went unused for 90 days. Authenticate again."
        )
    } else {
        format!(
            "Microsoft refused to renew the token{code}: {}. Check the connection's settings, then authenticate again.",
            error.error
        )
    }
}

async fn needs_reauthentication(
    app: &App,
    connection: &OAuthConnection,
    lease: &str,
    reason: &str,
) -> Result<Renewal, sqlx::Error> {
    let tenant = &connection.tenant_id;
    let marked = oauth_connections::mark_needs_reauthentication(
        &app.db,
        tenant,
        &connection.id,
        lease,
        reason,
    )
    .await?;
    if !marked {
        return Ok(Renewal::Skipped);
    }
    record(app, tenant, &connection.name, reason, None).await?;
    Ok(Renewal::NeedsReauthentication)
}

async fn record(
    app: &App,
    tenant: &TenantId,
    name: &str,
    detail: &str,
    ip: Option<IpAddr>,
) -> Result<(), sqlx::Error> {
    audit::record(
        &app.db,
        tenant,
        NewAuditEvent {
            action: AuditAction::OAuthConnectionNeedsReauthentication,
            actor_user_id: None,
            actor: "Portico",
            target: name,
            detail,
            ip,
        },
    )
    .await
}

/// Connections looked at per run; the rest wait for the next one.
const RENEWAL_BATCH: i64 = 200;
/// No renewal starts later than this into a run (see `fair_share::Turns`).
const RENEWAL_WINDOW: std::time::Duration = std::time::Duration::from_secs(50);

/// Renews every connection whose token expires soon; run every minute in the background.
/// A connection's Token URL may be its tenant's own server, so renewals take turns across
/// tenants (one per tenant at a time, a few at once, retries behind fresh ones): a tenant
/// whose token endpoint hangs holds up only its own connections.
pub async fn renew_due(app: &App) -> Result<usize, sqlx::Error> {
    let now = app.clock.now();
    let horizon = (now + RENEW_AHEAD).unix_timestamp();
    let work =
        oauth_connections::due_for_renewal(&app.db, now.unix_timestamp(), horizon, RENEWAL_BATCH)
            .await?
            .into_iter()
            .map(|connection| (connection.tenant_id.as_str().to_owned(), connection))
            .collect();
    let turns = Turns {
        concurrency: fair_share::CONCURRENCY,
        start_until: tokio::time::Instant::now() + RENEWAL_WINDOW,
    };
    let renewals = fair_share::in_turns(work, turns, |connection| async move {
        renew(app, &connection).await
    })
    .await;
    let mut renewed = 0;
    for renewal in renewals {
        if renewal? == Renewal::Renewed {
            renewed += 1;
        }
    }
    Ok(renewed)
}

/// A usable access token of the connection, renewed first when it is about to expire; or
/// why there is none, in words for the admin.
pub async fn access_token(
    app: &App,
    tenant: &TenantId,
    id: &str,
) -> Result<Result<SecretString, String>, sqlx::Error> {
    let Some(mut connection) = oauth_connections::get(&app.db, tenant, id).await? else {
        return Ok(Err("The OAuth connection no longer exists.".into()));
    };
    let soon = app.clock.now() + Duration::minutes(1);
    let expiring = connection
        .access_token_expires_at
        .is_none_or(|expires_at| expires_at <= soon);
    if connection.status == OAuthStatus::Authenticated && expiring {
        renew(app, &connection).await?;
        let Some(renewed) = oauth_connections::get(&app.db, tenant, id).await? else {
            return Ok(Err("The OAuth connection no longer exists.".into()));
        };
        connection = renewed;
    }
    let name = &connection.name;
    Ok(match (connection.status, &connection.access_token_sealed) {
        (OAuthStatus::Authenticated, Some(sealed)) => sealed
            .open(&app.config.secret_key, tenant, &connection.id)
            .map_err(|_| format!("The token of {name} cannot be read; authenticate it again.")),
        (OAuthStatus::NeedsReauthentication, _) => Err(format!(
            "The OAuth connection {name} needs re-authentication: {}",
            connection
                .status_reason
                .as_deref()
                .unwrap_or("its token no longer works")
        )),
        _ => Err(format!(
            "The OAuth connection {name} is not authenticated yet: open it and choose Authenticate."
        )),
    })
}
