//! The slice of Microsoft Graph Portico uses: reading a mailbox's inbox folder with an app-only
//! token (the check that mailbox credentials work), sending mail as a mailbox (expiry
//! alerts), and the organization.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;
use uuid::Uuid;

use super::Shared;
use super::directory::{AccessGrant, EXCHANGE_RESOURCE, MailboxAccess, SentMail, State};

/// Graph's own application ID, named in its `WWW-Authenticate` challenge.
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Application permissions that let an app read a mailbox's folders.
const MAIL_READ_ROLES: [&str; 3] = ["Mail.ReadBasic.All", "Mail.Read", "Mail.ReadWrite"];
/// The application permission that lets an app send mail as any mailbox it may reach.
const MAIL_SEND_ROLE: &str = "Mail.Send";
/// Application permissions that let an app read the organization.
const ORGANIZATION_READ_ROLES: [&str; 4] = [
    "Organization.Read.All",
    "Organization.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
/// The counts every granted inbox reports.
const INBOX_TOTAL_ITEMS: u32 = 12;
const INBOX_UNREAD_ITEMS: u32 = 3;

/// A Graph error body: `{"error": {"code", "message", "innerError"}}`.
fn graph_error(status: StatusCode, code: &str, message: &str, now: OffsetDateTime) -> Response {
    let date = now
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))
        .unwrap_or_default();
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": date,
                "request-id": Uuid::new_v4(),
                "client-request-id": Uuid::new_v4(),
            },
        },
    });
    (status, Json(body)).into_response()
}

/// The access token's grant, or why Graph refuses the token.
fn authenticate(state: &State, headers: &HeaderMap) -> Result<AccessGrant, &'static str> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    if token.is_empty() {
        return Err("Access token is empty.");
    }
    if !token.contains('.') {
        return Err(
            "IDX14100: JWT is not well formed, there are no dots (.).\nThe token needs to be in \
             JWS or JWE Compact Serialization Format. (JWS): 'EncodedHeader.EndcodedPayload.\
             EncodedSignature'. (JWE): 'EncodedProtectedHeader.EncodedEncryptedKey.\
             EncodedInitializationVector.EncodedCiphertext.EncodedAuthenticationTag'.",
        );
    }
    match state.access_tokens.get(token) {
        // An Exchange Online token is for IMAP, POP and SMTP only.
        Some(grant) if grant.audience == EXCHANGE_RESOURCE => {
            Err("Access token validation failure. Invalid audience.")
        }
        Some(grant) if grant.expires_at > state.now() => Ok(grant.clone()),
        Some(_) => Err("Lifetime validation failed, the token is expired."),
        None => Err("Access token validation failure. Invalid audience."),
    }
}

/// Graph's 401, with its `WWW-Authenticate` challenge naming where to get a token.
fn unauthorized(shared: &Shared, message: &str, now: OffsetDateTime) -> Response {
    let mut response = graph_error(
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        message,
        now,
    );
    let challenge = format!(
        "Bearer realm=\"\", authorization_uri=\"{}/common/oauth2/authorize\", \
         client_id=\"{GRAPH_APP_ID}\"",
        shared.login_url
    );
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

fn has_any_role(grant: &AccessGrant, roles: &[&str]) -> bool {
    grant
        .roles
        .iter()
        .any(|role| roles.contains(&role.as_str()))
}

/// `GET {graph}/v1.0/users/{address}/{path}`; only `mailFolders/inbox` exists here (segment
/// names are case-insensitive in Graph).
pub(crate) async fn user_resource(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((address, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let state = shared.state();
    let now = state.now();
    let grant = match authenticate(&state, &headers) {
        Ok(grant) => grant,
        Err(message) => return unauthorized(&shared, message, now),
    };
    if !path.eq_ignore_ascii_case("mailFolders/inbox") {
        let segment = path.split('/').next().unwrap_or_default();
        let message = format!("Resource not found for the segment '{segment}'.");
        return graph_error(StatusCode::BAD_REQUEST, "BadRequest", &message, now);
    }
    if !has_any_role(&grant, &MAIL_READ_ROLES) {
        let message = "Access is denied. Check credentials and try again.";
        return graph_error(StatusCode::FORBIDDEN, "ErrorAccessDenied", message, now);
    }
    match state.mailbox_access(grant.app_id, &address) {
        MailboxAccess::Granted => Json(inbox(&shared.graph_url, &address)).into_response(),
        MailboxAccess::Denied => {
            let message = "Access to OData is disabled: [RAOP] : Blocked by tenant configured \
                           AppOnly AccessPolicy settings.";
            graph_error(StatusCode::FORBIDDEN, "ErrorAccessDenied", message, now)
        }
        MailboxAccess::NotFound => {
            let message = format!("The requested user '{address}' is invalid.");
            graph_error(StatusCode::NOT_FOUND, "ErrorInvalidUser", &message, now)
        }
    }
}

/// `POST {graph}/v1.0/users/{address}/{path}`; only `sendMail` exists here. Like Graph, it
/// needs an app-only token with `Mail.Send`, a mailbox the app may reach (an application
/// access policy may leave it out), and a JSON message with at least one recipient; it
/// answers 202 with no body and keeps the message for `FakeMicrosoft::sent_mail`.
pub(crate) async fn user_action(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((address, path)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = shared.state();
    let now = state.now();
    let grant = match authenticate(&state, &headers) {
        Ok(grant) => grant,
        Err(message) => return unauthorized(&shared, message, now),
    };
    if !path.eq_ignore_ascii_case("sendMail") {
        let segment = path.split('/').next().unwrap_or_default();
        let message = format!("Resource not found for the segment '{segment}'.");
        return graph_error(StatusCode::BAD_REQUEST, "BadRequest", &message, now);
    }
    // Portico sends app-only. A user's token would send only as that user (or with Send As
    // rights), which the fake does not model: it is refused.
    if grant.delegated || !has_any_role(&grant, &[MAIL_SEND_ROLE]) {
        let message = "Access is denied. Check credentials and try again.";
        return graph_error(StatusCode::FORBIDDEN, "ErrorAccessDenied", message, now);
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        let message = "Unable to read JSON request payload. Please ensure Content-Type header \
                       is set and payload is of valid JSON format.";
        return graph_error(StatusCode::BAD_REQUEST, "BadRequest", message, now);
    };
    let Some(mail) = request.get("message").filter(|m| m.is_object()) else {
        let message = "The value of the parameter 'Message' is empty.";
        return graph_error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidParameter",
            message,
            now,
        );
    };
    let to: Vec<String> = mail["toRecipients"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|recipient| {
            recipient["emailAddress"]["address"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    if to.is_empty() || to.iter().any(|address| !address.contains('@')) {
        let message = "At least one recipient isn't valid., A message can't be sent because it \
                       contains no recipients.";
        return graph_error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRecipients",
            message,
            now,
        );
    }
    match state.mailbox_access(grant.app_id, &address) {
        MailboxAccess::Granted => {}
        MailboxAccess::Denied => {
            let message = "Access to OData is disabled: [RAOP] : Blocked by tenant configured \
                           AppOnly AccessPolicy settings.";
            return graph_error(StatusCode::FORBIDDEN, "ErrorAccessDenied", message, now);
        }
        MailboxAccess::NotFound => {
            let message = format!("The requested user '{address}' is invalid.");
            return graph_error(StatusCode::NOT_FOUND, "ErrorInvalidUser", &message, now);
        }
    }
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    state.sent_mail.push(SentMail {
        app_id: grant.app_id,
        mailbox: address.to_ascii_lowercase(),
        to,
        subject: text(&mail["subject"]),
        content_type: text(&mail["body"]["contentType"]),
        body: text(&mail["body"]["content"]),
        save_to_sent_items: request["saveToSentItems"].as_bool().unwrap_or(true),
    });
    StatusCode::ACCEPTED.into_response()
}

/// The inbox folder resource; its ids are stable per mailbox.
fn inbox(graph_url: &str, address: &str) -> Value {
    let folder_id = |salt: &str| {
        let digest = Sha256::digest(format!("{salt}:{}", address.to_ascii_lowercase()));
        format!("AAMkA{}", URL_SAFE_NO_PAD.encode(digest))
    };
    json!({
        "@odata.context":
            format!("{graph_url}/v1.0/$metadata#users('{address}')/mailFolders/$entity"),
        "id": folder_id("inbox"),
        "displayName": "Inbox",
        "parentFolderId": folder_id("root"),
        "childFolderCount": 0,
        "unreadItemCount": INBOX_UNREAD_ITEMS,
        "totalItemCount": INBOX_TOTAL_ITEMS,
        "sizeInBytes": 0,
        "isHidden": false,
    })
}

/// `GET {graph}/v1.0/organization`: the token's directory. App-only tokens need an
/// organization or directory read permission; user tokens may read it.
pub(crate) async fn organization(
    AxumState(shared): AxumState<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    let state = shared.state();
    let now = state.now();
    let grant = match authenticate(&state, &headers) {
        Ok(grant) => grant,
        Err(message) => return unauthorized(&shared, message, now),
    };
    if !grant.delegated && !has_any_role(&grant, &ORGANIZATION_READ_ROLES) {
        let message = "Insufficient privileges to complete the operation.";
        return graph_error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            message,
            now,
        );
    }
    let Some(directory) = state.directory(grant.tenant_id) else {
        return Json(json!({ "value": [] })).into_response();
    };
    let domains: Vec<Value> = directory
        .verified_domains
        .iter()
        .enumerate()
        .map(|(index, name)| {
            json!({
                "capabilities": "Email, OfficeCommunicationsOnline",
                "isDefault": index == 0,
                "isInitial": name.ends_with(".onmicrosoft.com"),
                "name": name,
                "type": "Managed",
            })
        })
        .collect();
    Json(json!({
        "@odata.context": format!("{}/v1.0/$metadata#organization", shared.graph_url),
        "value": [{
            "id": directory.id,
            "displayName": directory.display_name(),
            "verifiedDomains": domains,
        }],
    }))
    .into_response()
}
