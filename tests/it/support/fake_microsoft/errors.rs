//! Entra's errors: an OAuth `error`, an AADSTS number and Microsoft's own wording, rendered
//! the three ways Entra does: a JSON body (token and discovery endpoints), query parameters on
//! the redirect back to the app (authorize), or its own HTML page when it cannot trust the
//! redirect URI.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;
use time::OffsetDateTime;
use time::macros::format_description;
use uuid::Uuid;

/// One Entra error.
#[derive(Debug, Clone)]
pub(crate) struct AadError {
    /// The OAuth 2.0 `error` code, e.g. `invalid_client`.
    pub error: &'static str,
    /// The AADSTS number.
    pub code: u32,
    /// Microsoft's text, without the `AADSTSnnn: ` prefix and trace lines.
    pub message: String,
}

fn aad(error: &'static str, code: u32, message: impl Into<String>) -> AadError {
    AadError {
        error,
        code,
        message: message.into(),
    }
}

pub(crate) fn tenant_not_found(tenant: &str) -> AadError {
    aad(
        "invalid_request",
        90002,
        format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are \
             signing into the correct cloud. Check with your subscription administrator, this may \
             happen if there are no active subscriptions for the tenant."
        ),
    )
}

pub(crate) fn tenant_malformed(tenant: &str) -> AadError {
    aad(
        "invalid_request",
        900023,
        format!(
            "Specified tenant identifier '{tenant}' is neither a valid DNS name, nor a valid \
             external domain."
        ),
    )
}

pub(crate) fn missing_parameter(name: &str) -> AadError {
    aad(
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{name}'."),
    )
}

pub(crate) fn app_not_found(client_id: &str, directory: &str) -> AadError {
    aad(
        "unauthorized_client",
        700016,
        format!(
            "Application with identifier '{client_id}' was not found in the directory \
             '{directory}'. This can happen if the application has not been installed by the \
             administrator of the tenant or consented to by any user in the tenant. You may have \
             sent your authentication request to the wrong tenant."
        ),
    )
}

pub(crate) fn redirect_uri_mismatch(redirect_uri: &str, client_id: &str) -> AadError {
    aad(
        "invalid_request",
        50011,
        format!(
            "The redirect URI '{redirect_uri}' specified in the request does not match the \
             redirect URIs configured for the application '{client_id}'. Make sure the redirect \
             URI sent in the request matches one added to your application in the Azure portal. \
             Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix \
             this."
        ),
    )
}

pub(crate) fn unsupported_response_type(response_type: &str) -> AadError {
    aad(
        "unsupported_response_type",
        700054,
        format!("response_type '{response_type}' is not enabled for the application."),
    )
}

pub(crate) fn invalid_code_challenge_method() -> AadError {
    aad(
        "invalid_request",
        50149,
        "Invalid Code_Challenge_method parameter.",
    )
}

/// Entra asks single-page apps for PKCE with this; the fake asks every public client, which
/// should always send it.
pub(crate) fn pkce_required() -> AadError {
    aad(
        "invalid_request",
        9002325,
        "Proof Key for Code Exchange is required for cross-origin authorization code redemption.",
    )
}

pub(crate) fn not_multi_tenant(client_id: &str, app_name: &str) -> AadError {
    aad(
        "invalid_request",
        50194,
        format!(
            "Application '{client_id}'({app_name}) is not configured as a multi-tenant \
             application. Usage of the /common endpoint is not supported for such applications \
             created after '10/15/2018'. Use a tenant-specific endpoint or configure the \
             application to be multi-tenant."
        ),
    )
}

/// `identity_provider` is `live.com` for personal accounts, else the user's directory STS.
pub(crate) fn user_not_in_tenant(
    upn: &str,
    identity_provider: &str,
    tenant: &str,
    client_id: &str,
    app_name: &str,
) -> AadError {
    aad(
        "invalid_request",
        50020,
        format!(
            "User account '{upn}' from identity provider '{identity_provider}' does not exist in \
             tenant '{tenant}' and cannot access the application '{client_id}'({app_name}) in that \
             tenant. The account needs to be added as an external user in the tenant first. Sign \
             out and sign in again with a different Azure Active Directory user account."
        ),
    )
}

pub(crate) fn user_not_found(upn: &str, directory: &str) -> AadError {
    aad(
        "invalid_request",
        50034,
        format!(
            "The user account {upn} does not exist in the {directory} directory. To sign into \
             this application, the account must be added to the directory."
        ),
    )
}

pub(crate) fn login_required() -> AadError {
    aad(
        "login_required",
        50058,
        "A silent sign-in request was sent but no user is signed in.",
    )
}

pub(crate) fn user_declined() -> AadError {
    aad(
        "access_denied",
        65004,
        "User declined to consent to access the app.",
    )
}

pub(crate) fn code_expired() -> AadError {
    aad(
        "invalid_grant",
        70008,
        "The provided authorization code or refresh token has expired due to inactivity. Send a \
         new interactive authorization request for this user and resource.",
    )
}

pub(crate) fn code_redeemed() -> AadError {
    aad(
        "invalid_grant",
        54005,
        "OAuth2 Authorization code was already redeemed, please retry with a new valid code or \
         use an existing refresh token.",
    )
}

pub(crate) fn invalid_grant() -> AadError {
    aad(
        "invalid_grant",
        70000,
        "Provided grant is invalid or malformed.",
    )
}

pub(crate) fn reply_address_mismatch(sent: &str, authorized: &str) -> AadError {
    aad(
        "invalid_grant",
        500112,
        format!(
            "The reply address '{sent}' does not match the reply address '{authorized}' provided \
             when requesting Authorization code."
        ),
    )
}

pub(crate) fn pkce_mismatch() -> AadError {
    aad(
        "invalid_grant",
        501481,
        "The Code_Verifier does not match the code_challenge supplied in the authorization \
         request.",
    )
}

pub(crate) fn secret_missing() -> AadError {
    aad(
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or \
         'client_secret'.",
    )
}

pub(crate) fn secret_invalid(client_id: &str) -> AadError {
    aad(
        "invalid_client",
        7000215,
        format!(
            "Invalid client secret provided. Ensure the secret being sent in the request is the \
             client secret value, not the client secret ID, for a secret added to app \
             '{client_id}'."
        ),
    )
}

pub(crate) fn secret_expired(client_id: &str) -> AadError {
    aad(
        "invalid_client",
        7000222,
        format!(
            "The provided client secret keys for app '{client_id}' are expired. Visit the Azure \
             portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider \
             using certificate credentials for added security: https://aka.ms/certCreds."
        ),
    )
}

pub(crate) fn certificate_not_registered(thumbprint: &str, client_id: &str) -> AadError {
    aad(
        "invalid_client",
        700027,
        format!(
            "The certificate with identifier used to sign the client assertion is not registered \
             on application. [Reason - The key was not found., Thumbprint of key used by client: \
             '{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS \
             Graph to see configured keys for app Id '{client_id}'.]"
        ),
    )
}

pub(crate) fn certificate_expired(thumbprint: &str, client_id: &str) -> AadError {
    aad(
        "invalid_client",
        700027,
        format!(
            "The certificate with identifier used to sign the client assertion is expired on \
             application. [Reason - The key used is expired., Thumbprint of key used by client: \
             '{thumbprint}', app Id '{client_id}'.]"
        ),
    )
}

pub(crate) fn assertion_signature_invalid() -> AadError {
    aad(
        "invalid_client",
        700027,
        "Client assertion failed signature validation.",
    )
}

pub(crate) fn assertion_audience(audience: &str) -> AadError {
    aad(
        "invalid_client",
        700023,
        format!(
            "Client assertion audience claim does not match Realm issuer. Audience in the \
             assertion: '{audience}'. Review the documentation at \
             https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
        ),
    )
}

pub(crate) fn assertion_time(now: i64, not_before: i64, expires: i64) -> AadError {
    aad(
        "invalid_client",
        700024,
        format!(
            "Client assertion is not within its valid time range. Current time: {now}, assertion \
             valid from {not_before}, expiry time of assertion {expires}. Review the \
             documentation at \
             https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
        ),
    )
}

/// Entra documents no code of its own for these; the fake answers its generic one.
pub(crate) fn assertion_invalid(reason: &str) -> AadError {
    aad(
        "invalid_client",
        70002,
        format!("Error validating credentials. {reason}"),
    )
}

pub(crate) fn public_client_with_secret() -> AadError {
    aad(
        "invalid_client",
        700025,
        "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
    )
}

pub(crate) fn no_tenant() -> AadError {
    aad(
        "invalid_request",
        50059,
        "No tenant-identifying information found in either the request or implied by any \
         provided credentials.",
    )
}

pub(crate) fn scope_not_default(scope: &str) -> AadError {
    aad(
        "invalid_scope",
        1002012,
        format!(
            "The provided value for scope {scope} is not valid. Client credential flows must have \
             a scope value with /.default suffixed to the resource identifier (application ID \
             URI)."
        ),
    )
}

pub(crate) fn resource_not_found(resource: &str, tenant: &str) -> AadError {
    aad(
        "invalid_resource",
        500011,
        format!(
            "The resource principal named {resource} was not found in the tenant named {tenant}. \
             This can happen if the application has not been installed by the administrator of \
             the tenant or consented to by any user in the tenant. You might have sent your \
             authentication request to the wrong tenant."
        ),
    )
}

pub(crate) fn unsupported_grant_type(grant_type: &str) -> AadError {
    aad(
        "unsupported_grant_type",
        70003,
        format!("The app requested an unsupported grant type '{grant_type}'."),
    )
}

/// The ids and time Entra stamps on every error, so a support case can find it.
struct Stamp {
    trace_id: Uuid,
    correlation_id: Uuid,
    timestamp: String,
}

impl Stamp {
    fn new(now: OffsetDateTime) -> Self {
        let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
        Self {
            trace_id: Uuid::new_v4(),
            correlation_id: Uuid::new_v4(),
            timestamp: now.format(&format).unwrap_or_default(),
        }
    }
}

impl AadError {
    /// Overrides the OAuth `error`: the same AADSTS code comes with a different one on some
    /// endpoints (AADSTS90002 is `invalid_tenant` in discovery).
    pub fn with_error(mut self, error: &'static str) -> Self {
        self.error = error;
        self
    }

    fn headline(&self) -> String {
        format!("AADSTS{}: {}", self.code, self.message)
    }

    fn description(&self, stamp: &Stamp) -> String {
        format!(
            "{}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
            self.headline(),
            stamp.trace_id,
            stamp.correlation_id,
            stamp.timestamp
        )
    }

    /// The JSON body of the token and discovery endpoints: 401 for `invalid_client`, else 400.
    pub fn json(&self, login_url: &str, now: OffsetDateTime) -> Response {
        let stamp = Stamp::new(now);
        let status = if self.error == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        let body = json!({
            "error": self.error,
            "error_description": self.description(&stamp),
            "error_codes": [self.code],
            "timestamp": stamp.timestamp,
            "trace_id": stamp.trace_id,
            "correlation_id": stamp.correlation_id,
            "error_uri": format!("{login_url}/error?code={}", self.code),
        });
        (status, Json(body)).into_response()
    }

    /// The query parameters of the redirect back to the app (`state` is added by the caller).
    pub fn redirect_params(&self, login_url: &str, now: OffsetDateTime) -> Vec<(String, String)> {
        let stamp = Stamp::new(now);
        let mut params = vec![
            ("error".to_owned(), self.error.to_owned()),
            ("error_description".to_owned(), self.description(&stamp)),
            (
                "error_uri".to_owned(),
                format!("{login_url}/error?code={}", self.code),
            ),
        ];
        // A cancelled sign-in is told apart from a refused consent only by this.
        if self.code == 65004 {
            params.push(("error_subcode".to_owned(), "cancel".to_owned()));
        }
        params
    }

    /// Entra's own error page, shown when sending the user back to the app is not safe.
    pub fn page(&self, now: OffsetDateTime) -> Response {
        let stamp = Stamp::new(now);
        let body = format!(
            "<!DOCTYPE html>\n<html><head><title>Sign in to your account</title></head><body>\n\
             <h1>Sorry, but we’re having trouble signing you in.</h1>\n\
             <p id=\"error\">{}</p>\n\
             <p>Request Id: {}<br>Correlation Id: {}<br>Timestamp: {}</p>\n\
             </body></html>\n",
            escape_html(&self.headline()),
            stamp.trace_id,
            stamp.correlation_id,
            stamp.timestamp
        );
        (StatusCode::BAD_REQUEST, Html(body)).into_response()
    }
}

/// Escapes text for HTML: redirect URIs in messages come from the request.
pub(crate) fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}
