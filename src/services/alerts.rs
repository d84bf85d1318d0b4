//! Expiry alerts: tell a tenant's chosen recipients 30, 7 and 1 days before a secret,
//! certificate or OAuth connection stops working, when it has expired, and when a
//! connection starts failing; and, planned by `mailbox_checks`, when a mailbox starts
//! failing and when it works again. A background job plans due alerts as rows (once per
//! threshold, by a unique constraint), then claims and sends them one by one: an alert
//! survives restarts, and of several instances only the one holding its claim sends it.
//! They go out through the tenant's chosen mailbox (SMTP, or Microsoft Graph's sendMail with
//! the mailbox's credential), or through the deployment's relay (PORTICO_SMTP_URL).

use time::Duration;

use crate::app::App;
use crate::domain::{AuditAction, Direction, ExpiryStatus, MailProtocol, sending_route};
use crate::mail::outgoing::{self, OutgoingMessage, Route};
use crate::microsoft::CallError;
use crate::microsoft::graph::GraphMessage;
use crate::services::expiry;
use crate::services::fair_share::{self, Turns};
use crate::services::graph_credentials::OpenError;
use crate::services::mailbox_checks;
use crate::store::audit::{self, NewAuditEvent};
use crate::store::expiry_alerts::{self, Alert, PlannedAlert};
use crate::store::graph_credentials;
use crate::store::mailboxes::{self, Mailbox, Server};
use crate::store::tenants::{self, TenantId};

/// How long one instance holds an alert while sending it: longer than the send timeout
/// (`Config::alert_send_timeout`), so no other instance takes it over while it is sent.
const SENDING_LEASE: Duration = Duration::minutes(5);
/// Alerts looked at per run, taken in turns across tenants; the rest wait for the next one.
const BATCH: i64 = 200;
/// No send starts later than this into a run, so a run ends within this plus one send
/// timeout, and alerts planned meanwhile wait for the next run, not for a slow tenant's.
const SENDING_WINDOW: std::time::Duration = std::time::Duration::from_secs(50);
/// An alert still failing this long after it was planned is given up: by then it is stale
/// (a later threshold has its own alert), and the page says so instead of retrying forever.
const GIVE_UP_AFTER: Duration = Duration::days(7);
/// The longest wait between two tries of a failing alert.
const MAX_RETRY_DELAY: Duration = Duration::minutes(64);

/// When an alert is due, from the least to the most urgent. Stored by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Threshold {
    ThirtyDays,
    SevenDays,
    OneDay,
    Expired,
    Failing,
}

impl Threshold {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ThirtyDays => "30_days",
            Self::SevenDays => "7_days",
            Self::OneDay => "1_day",
            Self::Expired => "expired",
            Self::Failing => "failing",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        [
            Self::ThirtyDays,
            Self::SevenDays,
            Self::OneDay,
            Self::Expired,
            Self::Failing,
        ]
        .into_iter()
        .find(|threshold| threshold.as_str() == stored)
    }

    /// The most urgent threshold `status` has reached, if any: a thing first seen 5 days
    /// before its end gets the 7-day alert, not the 30-day one as well.
    pub fn reached(status: ExpiryStatus) -> Option<Self> {
        match status {
            // Nothing to count from until an admin enters the date; the page and the
            // dashboard ask for it.
            ExpiryStatus::Valid | ExpiryStatus::Unknown => None,
            ExpiryStatus::ExpiresSoon { days_left } if days_left <= 1 => Some(Self::OneDay),
            ExpiryStatus::ExpiresSoon { days_left } if days_left <= 7 => Some(Self::SevenDays),
            ExpiryStatus::ExpiresSoon { .. } => Some(Self::ThirtyDays),
            ExpiryStatus::Expired => Some(Self::Expired),
            ExpiryStatus::Failed => Some(Self::Failing),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AlertRun {
    pub planned: usize,
    pub sent: usize,
    pub failed: usize,
    /// Failed again after `GIVE_UP_AFTER`, and ended.
    pub given_up: usize,
}

/// One run of the job: plan what is due, then send what this instance can claim.
pub async fn run(app: &App) -> Result<AlertRun, AlertError> {
    let planned = plan(app).await?;
    let mut run = deliver(app).await?;
    run.planned = planned;
    Ok(run)
}

/// Adds a row for every threshold reached by something of a tenant with recipients.
async fn plan(app: &App) -> Result<usize, AlertError> {
    let now = app.clock.now().unix_timestamp();
    let mut planned = 0;
    for tenant in expiry_alerts::tenants_with_recipients(&app.db).await? {
        for item in expiry::of_tenant(app, &tenant).await? {
            let Some(threshold) = Threshold::reached(item.status) else {
                continue;
            };
            let alert = PlannedAlert {
                kind: item.kind.as_str(),
                subject_id: &item.id,
                instance: &item.instance,
                threshold: threshold.as_str(),
                subject_name: &item.name,
                ends_on: item.ends_on.map(|day| day.to_string()),
            };
            if expiry_alerts::plan(&app.db, &tenant, &alert, now).await? {
                planned += 1;
            }
        }
    }
    Ok(planned)
}

/// What became of one due alert.
enum Delivery {
    /// Another instance holds it, or another alert of its tenant is being sent; or its
    /// claim lapsed before the outcome could be recorded.
    NotClaimed,
    Withdrawn,
    Sent,
    Failed,
    GivenUp,
}

/// Sends the due alerts this instance wins the claim of, a few tenants at a time and one
/// alert per tenant at a time (see `fair_share`), so one tenant's hanging mail server or
/// long queue costs another tenant at most one send timeout.
async fn deliver(app: &App) -> Result<AlertRun, AlertError> {
    let now = app.clock.now().unix_timestamp();
    let work = expiry_alerts::due(&app.db, now, BATCH)
        .await?
        .into_iter()
        .map(|alert| (alert.tenant_id.clone(), alert))
        .collect();
    let turns = Turns {
        concurrency: fair_share::CONCURRENCY,
        start_until: tokio::time::Instant::now() + SENDING_WINDOW,
    };
    let mut run = AlertRun::default();
    for delivery in fair_share::in_turns(work, turns, |alert| deliver_one(app, alert)).await {
        match delivery? {
            Delivery::NotClaimed | Delivery::Withdrawn => {}
            Delivery::Sent => run.sent += 1,
            Delivery::Failed => run.failed += 1,
            Delivery::GivenUp => run.given_up += 1,
        }
    }
    Ok(run)
}

/// Claims one alert and sends it, within the send timeout.
async fn deliver_one(app: &App, alert: Alert) -> Result<Delivery, AlertError> {
    // Each lease runs from its own claim: other sends may have taken a while.
    let now = app.clock.now();
    let until = (now + SENDING_LEASE).unix_timestamp();
    let Some(lease) = expiry_alerts::claim(&app.db, &alert, now.unix_timestamp(), until).await?
    else {
        return Ok(Delivery::NotClaimed);
    };
    if !still_applies(app, &alert).await? {
        expiry_alerts::withdraw(&app.db, &alert.id, &lease).await?;
        tracing::info!(alert = %alert.id, "an expiry alert no longer applies: withdrawn");
        return Ok(Delivery::Withdrawn);
    }
    let limit = app.config.alert_send_timeout;
    let outcome = tokio::time::timeout(limit, send_one(app, &alert))
        .await
        .unwrap_or_else(|_| Ok(Err(format!("sending took longer than {}", in_words(limit)))))?;
    let reason = match outcome {
        Ok(how) => {
            let at = app.clock.now().unix_timestamp();
            if !expiry_alerts::mark_sent(&app.db, &alert.id, &lease, at).await? {
                return Ok(Delivery::NotClaimed);
            }
            record(app, &alert, AuditAction::ExpiryAlertSent, &how).await?;
            return Ok(Delivery::Sent);
        }
        Err(reason) => reason,
    };
    tracing::warn!(alert = %alert.id, error = %reason, "an expiry alert was not sent");
    let now = app.clock.now();
    // `attempts` as read before this claim: the tries before this one.
    let tries = alert.attempts + 1;
    if now - alert.created_at() >= GIVE_UP_AFTER {
        let at = now.unix_timestamp();
        if !expiry_alerts::give_up(&app.db, &alert.id, &lease, at, &reason).await? {
            return Ok(Delivery::NotClaimed);
        }
        let days = GIVE_UP_AFTER.whole_days();
        let detail = format!("given up after {days} days and {tries} tries: {reason}");
        record(app, &alert, AuditAction::ExpiryAlertGivenUp, &detail).await?;
        return Ok(Delivery::GivenUp);
    }
    let retry_at = (now + retry_delay(alert.attempts)).unix_timestamp();
    expiry_alerts::release(&app.db, &alert.id, &lease, retry_at, &reason).await?;
    // The first failure is recorded; the retries are only logged.
    if alert.attempts == 0 {
        record(app, &alert, AuditAction::ExpiryAlertFailed, &reason).await?;
    }
    Ok(Delivery::Failed)
}

/// The wait before the next try after `failures` failed ones: 1, 2, 4 … 64 minutes, then
/// every 64, so a relay that is down heals by itself without being hammered.
fn retry_delay(failures: i64) -> Duration {
    Duration::minutes(1_i64 << failures.clamp(0, 6)).min(MAX_RETRY_DELAY)
}

/// A timeout as a person says it: "5 seconds", "2 minutes".
fn in_words(limit: std::time::Duration) -> String {
    match limit.as_secs() {
        0 => format!("{} ms", limit.as_millis()),
        1 => "1 second".into(),
        60 => "1 minute".into(),
        seconds if seconds % 60 == 0 => format!("{} minutes", seconds / 60),
        seconds => format!("{seconds} seconds"),
    }
}

/// Whether what the alert is about still stands: the same secret, certificate or consent,
/// not renewed, replaced or deleted since the alert was planned.
async fn still_applies(app: &App, alert: &Alert) -> Result<bool, sqlx::Error> {
    if mailbox_checks::is_check_alert(alert) {
        return mailbox_checks::alert_still_applies(app, alert).await;
    }
    let current = expiry::of_tenant(app, &alert.tenant()).await?;
    Ok(current.iter().any(|item| {
        item.kind.as_str() == alert.kind
            && item.id == alert.subject_id
            && item.instance == alert.instance
    }))
}

async fn record(
    app: &App,
    alert: &Alert,
    action: AuditAction,
    detail: &str,
) -> Result<(), sqlx::Error> {
    let detail = format!("{}: {detail}", headline(alert));
    audit::record(
        &app.db,
        &alert.tenant(),
        NewAuditEvent {
            action,
            actor_user_id: None,
            actor: "Portico",
            target: &alert.subject_name,
            detail: &detail,
            ip: None,
        },
    )
    .await
}

/// Sends one alert; the outer error is the database's, the inner one why mail failed.
/// On success, says to whom and how, for the audit log.
async fn send_one(app: &App, alert: &Alert) -> Result<Result<String, String>, AlertError> {
    let tenant_id = alert.tenant();
    let Some(tenant) = tenants::find_by_id(&app.db, tenant_id.as_str()).await? else {
        return Ok(Err("the tenant no longer exists".into()));
    };
    let settings = expiry_alerts::settings(&app.db, &tenant_id).await?;
    if settings.recipients.is_empty() {
        return Ok(Err("nobody is listed to receive expiry alerts".into()));
    }
    let body = match mailbox_checks::alert_body(app, &tenant.slug, &tenant.name, alert).await? {
        Some(body) => body,
        None => body(app, &tenant.slug, &tenant.name, alert),
    };
    let subject = format!("Portico: {}", headline(alert));
    let recipients = settings.recipients.join(", ");
    let sent = match &settings.sender_mailbox_id {
        Some(mailbox_id) => {
            send_through_mailbox(
                app,
                &tenant_id,
                mailbox_id,
                &settings.recipients,
                &subject,
                body,
            )
            .await?
        }
        None => match &app.config.smtp_relay {
            None => Err(
                "no mailbox is chosen to send alerts and PORTICO_SMTP_URL is not set".to_owned(),
            ),
            Some(relay) => {
                let message = OutgoingMessage {
                    from: &relay.from,
                    to: &settings.recipients,
                    subject: &subject,
                    body,
                };
                outgoing::send(Route::Relay(&relay.url), &message, &app.mail_probe)
                    .await
                    .map(|()| "the deployment's mail relay".to_owned())
                    .map_err(|e| e.to_string())
            }
        },
    };
    Ok(sent.map(|how| format!("told {recipients} through {how}")))
}

/// Sends through one of the tenant's mailboxes: SMTP, or Microsoft Graph.
async fn send_through_mailbox(
    app: &App,
    tenant: &TenantId,
    mailbox_id: &str,
    to: &[String],
    subject: &str,
    body: String,
) -> Result<Result<String, String>, AlertError> {
    let Some(mailbox) = mailboxes::get(&app.db, tenant, mailbox_id).await? else {
        return Ok(Err(
            "the mailbox chosen to send alerts no longer exists".into()
        ));
    };
    // As when it was chosen: an admin may have disabled it or made it incoming only since.
    if !mailbox.enabled || mailbox.direction == Direction::Incoming {
        return Ok(Err(format!(
            "{} is disabled or receives only: choose another sender on the Expiring page",
            mailbox.name
        )));
    }
    match (
        mailbox.protocol,
        &mailbox.graph_credential_id,
        &mailbox.server,
    ) {
        (MailProtocol::Graph, Some(credential_id), _) => {
            send_with_graph(app, tenant, &mailbox, credential_id, to, subject, &body).await
        }
        (MailProtocol::Smtp, _, Some(server)) => {
            send_with_smtp(app, tenant, &mailbox, server, to, subject, body).await
        }
        _ => Ok(Err(format!(
            "{} is neither an SMTP nor a Microsoft Graph mailbox",
            mailbox.name
        ))),
    }
}

/// Sends as a Graph mailbox (`sendMail`) with an app-only token of its credential.
async fn send_with_graph(
    app: &App,
    tenant: &TenantId,
    mailbox: &Mailbox,
    credential_id: &str,
    to: &[String],
    subject: &str,
    body: &str,
) -> Result<Result<String, String>, AlertError> {
    let Some(credential) = graph_credentials::get(&app.db, tenant, credential_id).await? else {
        return Ok(Err(format!(
            "the Graph credential of {} no longer exists",
            mailbox.name
        )));
    };
    let proof = match super::graph_credentials::open(app, tenant, &credential).await {
        Ok(proof) => proof,
        Err(OpenError::Database(err)) => return Err(err.into()),
        Err(err) => {
            return Ok(Err(format!(
                "the Graph credential {} cannot be used: {err}",
                credential.name
            )));
        }
    };
    let message = GraphMessage { to, subject, body };
    let sent = app
        .microsoft
        .send_mail(
            &proof.credentials(&credential),
            &mailbox.email,
            &message,
            app.clock.now(),
        )
        .await;
    let through = &mailbox.name;
    Ok(match sent {
        Ok(Ok(())) => Ok(sending_route(
            &mailbox.name,
            &mailbox.email,
            MailProtocol::Graph,
        )),
        Ok(Err(refused)) => Err(format!(
            "through {through}: {}",
            refused.explanation(&mailbox.email)
        )),
        // The token endpoint refused the credential: an AADSTS code, explained.
        Err(CallError::Microsoft(error)) => Err(format!(
            "through {through}: Microsoft refused the Graph credential {}: {error}: {}",
            credential.name,
            super::mailboxes::explain_app_token_refusal(&error)
        )),
        Err(error) => Err(format!("through {through}: {error}")),
    })
}

/// Sends through the tenant's SMTP mailbox, signed in with its password, OAuth token or
/// app-only Exchange token.
async fn send_with_smtp(
    app: &App,
    tenant: &TenantId,
    mailbox: &Mailbox,
    server: &Server,
    to: &[String],
    subject: &str,
    body: String,
) -> Result<Result<String, String>, AlertError> {
    let secret = match super::mailboxes::open_server_secret(app, tenant, mailbox, server).await? {
        Ok(secret) => secret,
        Err(reason) => return Ok(Err(reason)),
    };
    let settings = secret.settings(mailbox, server);
    let message = OutgoingMessage {
        from: &mailbox.email,
        to,
        subject,
        body,
    };
    Ok(
        outgoing::send(Route::Mailbox(settings), &message, &app.mail_probe)
            .await
            .map(|()| sending_route(&mailbox.name, &mailbox.email, MailProtocol::Smtp))
            .map_err(|e| secret.explain(format!("through {}: {e}", mailbox.name), mailbox)),
    )
}

fn kind_of(alert: &Alert) -> &'static str {
    match alert.kind.as_str() {
        "certificate" => "The certificate of the Graph credential",
        "sign_in_certificate" => "The certificate of",
        "sign_in_client_secret" => "The client secret of",
        "client_secret" => "The client secret of the Graph credential",
        "oauth_client_secret" => "The client secret of the OAuth connection",
        _ => "The OAuth connection",
    }
}

/// One line: what happens to what, and when.
pub fn headline(alert: &Alert) -> String {
    if let Some(headline) = mailbox_checks::alert_headline(alert) {
        return headline;
    }
    let ends_on = alert.ends_on.as_deref().unwrap_or_default();
    let when = match Threshold::parse(&alert.threshold) {
        Some(Threshold::ThirtyDays) => format!("expires within 30 days, on {ends_on}"),
        Some(Threshold::SevenDays) => format!("expires within 7 days, on {ends_on}"),
        Some(Threshold::OneDay) => format!("expires by tomorrow, on {ends_on}"),
        Some(Threshold::Expired) => format!("expired on {ends_on}"),
        Some(Threshold::Failing) | None => "fails: Microsoft refused it".to_owned(),
    };
    format!("{} {} {when}", kind_of(alert), alert.subject_name)
}

fn body(app: &App, slug: &str, tenant_name: &str, alert: &Alert) -> String {
    let item_page = match alert.kind.as_str() {
        "oauth_connection" | "oauth_client_secret" => {
            format!("/t/{slug}/oauth-connections/{}", alert.subject_id)
        }
        "sign_in_certificate" | "sign_in_client_secret" => {
            format!("/t/{slug}{}", expiry::SIGN_IN_SETTINGS_PAGE)
        }
        _ => format!("/t/{slug}/external-apis/{}", alert.subject_id),
    };
    let what_to_do = match alert.kind.as_str() {
        "certificate" => {
            "Open it, choose Renew certificate, upload the new certificate to the app in Azure \
             (Certificates & secrets), then switch to it."
        }
        "sign_in_certificate" => {
            "Open it, choose Renew certificate, upload the new certificate to the sign-in app in \
             Azure (Certificates & secrets), then switch to it. Until then nobody can sign in \
             with Microsoft."
        }
        "client_secret" => {
            "In Azure, add a new client secret to the app (Certificates & secrets), then open it \
             and replace the secret, or move it to a certificate."
        }
        "sign_in_client_secret" => {
            "In Azure, add a new client secret to the sign-in app (Certificates & secrets), then \
             open it and enter the new secret with its expiry date, or use a certificate \
             instead. Once it has expired, nobody can sign in with Microsoft."
        }
        "oauth_client_secret" => {
            "In Azure, add a new client secret to the app (Certificates & secrets), then open it \
             and update the client secret with its expiry date. Once it has expired, the \
             connection cannot renew its token, and its mailboxes stop."
        }
        _ => "Open it and choose Authenticate, then sign in as the mailbox's user.",
    };
    format!(
        "{}.\n\nIn {tenant_name}: {}\n{what_to_do}\n\nEvery expiry date: {}\n\n\
         You receive this because an admin of {tenant_name} listed you for Portico's expiry \
         alerts.\n",
        headline(alert),
        app.config.public_url(&item_page),
        app.config.public_url(&format!("/t/{slug}/expiring")),
    )
}

/// The label of an alert's state, for the Expiring page: what happened, and for an alert
/// given up, what the admin can do about it.
pub fn state_label(alert: &Alert) -> String {
    match (alert.status.as_str(), &alert.last_error) {
        ("sent", _) => "Sent".into(),
        ("given_up", error) => format!(
            "Given up after {} days ({} tries): {}. Nobody was told: fix what is named (the \
             sender is chosen above), and check {} yourself; Portico alerts again at its \
             next date.",
            GIVE_UP_AFTER.whole_days(),
            alert.attempts,
            error.as_deref().unwrap_or("it could not be sent"),
            alert.subject_name
        ),
        (_, Some(error)) => format!("Not sent yet ({} tries): {error}", alert.attempts),
        _ => "Waiting to be sent".into(),
    }
}

/// The badge tone of an alert's state.
pub fn state_tone(alert: &Alert) -> &'static str {
    match alert.status.as_str() {
        "sent" => "ok",
        "given_up" => "danger",
        _ => "warn",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_urgent_threshold_reached_is_due() {
        let soon = |days_left| ExpiryStatus::ExpiresSoon { days_left };
        assert_eq!(Threshold::reached(ExpiryStatus::Valid), None);
        assert_eq!(Threshold::reached(soon(30)), Some(Threshold::ThirtyDays));
        assert_eq!(Threshold::reached(soon(8)), Some(Threshold::ThirtyDays));
        assert_eq!(Threshold::reached(soon(7)), Some(Threshold::SevenDays));
        assert_eq!(Threshold::reached(soon(2)), Some(Threshold::SevenDays));
        assert_eq!(Threshold::reached(soon(1)), Some(Threshold::OneDay));
        assert_eq!(Threshold::reached(soon(0)), Some(Threshold::OneDay));
        assert_eq!(
            Threshold::reached(ExpiryStatus::Expired),
            Some(Threshold::Expired)
        );
        assert_eq!(
            Threshold::reached(ExpiryStatus::Failed),
            Some(Threshold::Failing)
        );
        for threshold in [Threshold::ThirtyDays, Threshold::Failing] {
            assert_eq!(Threshold::parse(threshold.as_str()), Some(threshold));
        }
    }

    #[test]
    fn a_failing_alert_waits_twice_as_long_each_time_up_to_an_hour() {
        let waits: Vec<i64> = (0..9)
            .map(|failures| retry_delay(failures).whole_minutes())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 64, 64]);
        assert_eq!(retry_delay(-1).whole_minutes(), 1);
        assert_eq!(retry_delay(i64::MAX).whole_minutes(), 64);
    }

    #[test]
    fn timeouts_read_as_people_say_them() {
        let words = |seconds| in_words(std::time::Duration::from_secs(seconds));
        assert_eq!(words(120), "2 minutes");
        assert_eq!(words(60), "1 minute");
        assert_eq!(words(5), "5 seconds");
        assert_eq!(words(1), "1 second");
        assert_eq!(in_words(std::time::Duration::from_millis(300)), "300 ms");
    }
}
