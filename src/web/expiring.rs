//! The Expiring page: everything of the tenant that stops working on a date, soonest first,
//! and who is told before it does.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::error::{AppError, Conflict, Rejected};
use super::extract::{AdminCtx, ClientIp, Form, Query, TenantCtx};
use super::mailbox_checks::{WatchedLine, watched_lines};
use super::{Layout, changed_meanwhile, format_time};
use crate::app::App;
use crate::app::AppState;
use crate::domain::{AlertSender, AuditAction, FieldErrors, parse_alert_recipients};
use crate::services::alerts;
use crate::services::expiry::{self, Expiring};
use crate::store::expiry_alerts::{self, AlertSettings};
use crate::store::{SaveError, mailboxes};

/// An alert as the page lists it.
pub struct AlertLine {
    pub at: String,
    pub headline: String,
    pub state: String,
    /// The badge's tone: ok, warn or danger.
    pub tone: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "expiring.html")]
pub struct ExpiringPage {
    layout: Layout,
    slug: String,
    items: Vec<Expiring>,
    form: AlertsForm,
    errors: FieldErrors,
    /// The tenant's SMTP and Graph mailboxes that send.
    senders: Vec<AlertSender>,
    /// Whether the operator set PORTICO_SMTP_URL.
    has_relay: bool,
    alerts: Vec<AlertLine>,
    saved: bool,
    /// Mailboxes whose background checks fail, or that recently work again.
    watched_mailboxes: Vec<WatchedLine>,
}

/// What the admin typed.
#[derive(Deserialize, Default)]
pub struct AlertsForm {
    #[serde(default)]
    recipients: String,
    /// A mailbox id, or empty for the deployment's relay.
    #[serde(default)]
    sender_mailbox_id: String,
    #[serde(default)]
    version: i64,
}

impl AlertsForm {
    fn of(settings: &AlertSettings) -> Self {
        Self {
            recipients: settings.recipients.join("\n"),
            sender_mailbox_id: settings.sender_mailbox_id.clone().unwrap_or_default(),
            version: settings.version,
        }
    }
}

async fn page(
    state: &App,
    ctx: &TenantCtx,
    form: Option<AlertsForm>,
    errors: FieldErrors,
) -> Result<ExpiringPage, AppError> {
    let tenant = &ctx.tenant.id;
    let form = match form {
        Some(form) => form,
        None => AlertsForm::of(&expiry_alerts::settings(&state.db, tenant).await?),
    };
    let alerts = expiry_alerts::recent(&state.db, tenant, 20)
        .await?
        .iter()
        .map(|alert| AlertLine {
            at: format_time(
                alert
                    .sent_at()
                    .or_else(|| alert.given_up_at())
                    .unwrap_or_else(|| alert.created_at()),
            ),
            headline: alerts::headline(alert),
            state: alerts::state_label(alert),
            tone: alerts::state_tone(alert),
        })
        .collect();
    Ok(ExpiringPage {
        layout: ctx.layout("Expiring", "expiring"),
        slug: ctx.tenant.slug.clone(),
        items: expiry::of_tenant(state, tenant).await?,
        form,
        errors,
        senders: mailboxes::alert_senders(&state.db, tenant).await?,
        has_relay: state.config.smtp_relay.is_some(),
        alerts,
        saved: false,
        watched_mailboxes: watched_lines(state, tenant, None).await?,
    })
}

#[derive(Deserialize)]
pub struct ShowQuery {
    saved: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    Query(query): Query<ShowQuery>,
) -> Result<ExpiringPage, AppError> {
    let mut shown = page(&state, &ctx, None, FieldErrors::new()).await?;
    shown.saved = query.saved.is_some();
    Ok(shown)
}

/// How alerts would go out: through the chosen one of the tenant's outgoing mailboxes, or
/// the deployment's relay when none is chosen.
fn sending_route(senders: &[AlertSender], chosen: Option<&str>) -> Result<String, String> {
    match chosen {
        None => Ok("the deployment's mail relay".to_owned()),
        Some(id) => senders
            .iter()
            .find(|known| known.id == id)
            .map(AlertSender::route)
            .ok_or_else(|| {
                "Choose one of the organization's outgoing SMTP or Microsoft Graph mailboxes."
                    .to_owned()
            }),
    }
}

/// Saves who is told, and through which mailbox.
pub async fn save_alerts(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Form(form): Form<AlertsForm>,
) -> Result<Response, AppError> {
    let mut errors = FieldErrors::new();
    let recipients = errors.check("recipients", parse_alert_recipients(&form.recipients));
    let senders = mailboxes::alert_senders(&state.db, &ctx.tenant.id).await?;
    let sender = (!form.sender_mailbox_id.is_empty()).then_some(form.sender_mailbox_id.as_str());
    let sender_name = errors.check("sender_mailbox_id", sending_route(&senders, sender));
    let (Some(recipients), Some(sender_name), true) = (recipients, sender_name, errors.is_empty())
    else {
        return Ok(Rejected(page(&state, &ctx, Some(form), errors).await?).into_response());
    };
    let now = state.clock.now().unix_timestamp();
    match expiry_alerts::save_settings(
        &state.db,
        &ctx.tenant.id,
        form.version,
        &recipients,
        sender,
        now,
    )
    .await
    {
        Ok(()) => {}
        Err(SaveError::Stale) => {
            let current = expiry_alerts::settings(&state.db, &ctx.tenant.id).await?;
            let form = AlertsForm {
                version: current.version,
                ..form
            };
            let errors = changed_meanwhile("the alert settings");
            return Ok(Conflict(page(&state, &ctx, Some(form), errors).await?).into_response());
        }
        Err(other) => return Err(other.into()),
    }
    let detail = if recipients.is_empty() {
        "nobody is told".to_owned()
    } else {
        format!("tell {} through {sender_name}", recipients.join(", "))
    };
    ctx.audit(
        &state,
        AuditAction::ExpiryAlertSettingsChanged,
        "Expiry alerts",
        &detail,
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path("/expiring?saved=1")).into_response())
}
