//! App-only access to Microsoft Graph: client-credentials tokens, cached and shared, the
//! mailbox check, and sending mail as a mailbox. The same app's tokens for Exchange Online
//! sign IMAP, POP3 and SMTP mailboxes in app-only (XOAUTH2).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::errors::GraphError;
use super::{CallError, Microsoft, MicrosoftError, observed};
use crate::crypto::certificates::{self, CertificateInfo};
use crate::domain::{ClientId, Cloud};
use crate::metrics::MicrosoftCall;

/// A cached token is renewed this long before it expires, so no call uses a dying token.
const RENEW_BEFORE_EXPIRY: Duration = Duration::minutes(5);

/// An Azure app's application credentials.
pub struct AppCredentials<'a> {
    /// Names the cache entry: a credential id plus something that changes with the secret
    /// or certificate.
    pub cache_key: String,
    pub client_id: ClientId,
    pub directory_id: Uuid,
    pub cloud: Cloud,
    pub proof: ClientProof<'a>,
}

/// How the app proves itself at the token endpoint.
pub enum ClientProof<'a> {
    Secret(&'a SecretString),
    /// A client assertion signed with the private key of this certificate.
    Certificate {
        private_key: &'a SecretString,
        certificate: &'a CertificateInfo,
    },
}

/// The form fields that prove the client at the token endpoint `token_url`: its secret, or
/// a fresh signed assertion addressed to that endpoint.
pub(super) fn client_proof_fields(
    proof: &ClientProof<'_>,
    client_id: &str,
    token_url: &str,
    now: OffsetDateTime,
) -> Result<Vec<(&'static str, SecretString)>, CallError> {
    Ok(match proof {
        ClientProof::Secret(secret) => vec![("client_secret", (*secret).clone())],
        ClientProof::Certificate {
            private_key,
            certificate,
        } => {
            let assertion =
                certificates::client_assertion(private_key, certificate, client_id, token_url, now)
                    .map_err(|e| CallError::Unexpected(e.to_string()))?;
            vec![
                (
                    "client_assertion_type",
                    SecretString::from(CLIENT_ASSERTION_TYPE),
                ),
                ("client_assertion", assertion),
            ]
        }
    })
}

/// RFC 7523's name for a JWT that authenticates the client.
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An app-only access token and the application permissions it carries.
#[derive(Clone)]
pub struct AppToken {
    access_token: SecretString,
    pub roles: Vec<String>,
    /// The `oid` claim: the Object ID of the app's enterprise application (service
    /// principal) in the directory, which Exchange Online's `New-ServicePrincipal` asks for.
    pub service_principal_id: Option<Uuid>,
    expires_at: OffsetDateTime,
}

impl AppToken {
    /// The bearer token, for an XOAUTH2 sign-in.
    pub fn secret(&self) -> &SecretString {
        &self.access_token
    }
}

/// Which API an app-only token is for: its scope is `{resource}/.default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Graph,
    /// Exchange Online's IMAP, POP and SMTP ("Office 365 Exchange Online" in Azure), whose
    /// application permissions are IMAP.AccessAsApp, POP.AccessAsApp and SMTP.SendAsApp.
    ExchangeOnline,
}

/// Exchange Online's resource identifier in each cloud. Only named in the scope: Portico
/// never calls it, so no test replaces it.
/// <https://learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth#use-client-credentials-grant-flow-to-authenticate-smtp-imap-and-pop-connections>
fn exchange_resource(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Global => "https://outlook.office365.com",
        Cloud::UsGovernment => "https://outlook.office365.us",
        Cloud::UsGovernmentDod => "https://outlook-dod.office365.us",
        Cloud::China => "https://partner.outlook.cn",
    }
}

/// What Graph says about one mailbox for this app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxAccess {
    Granted,
    /// 403 ErrorAccessDenied: an application access policy or RBAC scope excludes it.
    Denied,
    NotFound,
}

/// The application permission to send mail as any mailbox the app may reach.
const MAIL_SEND: &str = "Mail.Send";

/// A plain-text message to send as a mailbox.
pub struct GraphMessage<'a> {
    pub to: &'a [String],
    pub subject: &'a str,
    pub body: &'a str,
}

/// Why Graph would not send a message.
#[derive(Debug)]
pub struct SendRefused {
    pub error: GraphError,
    /// Whether the refused token carried Mail.Send.
    pub mail_send_granted: bool,
}

impl SendRefused {
    /// What it means and what to do, for sending as `mailbox`.
    pub fn explanation(&self, mailbox: &str) -> String {
        self.error
            .sending_explanation(mailbox, self.mail_send_granted)
    }
}

/// Tokens by credential. Each entry has its own lock, so concurrent requests for one
/// credential make a single token request and the others wait for it.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<AppToken>>>>>,
}

impl TokenCache {
    fn slot(&self, key: &str) -> Arc<tokio::sync::Mutex<Option<AppToken>>> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.entry(key.to_owned()).or_default().clone()
    }

    /// Forgets every token of a credential (its secret was replaced, or it was deleted).
    pub fn forget(&self, credential_id: &str) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.retain(|key, _| !key.starts_with(credential_id));
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: i64,
}

impl Microsoft {
    /// A token for Graph with the app's application permissions, from the cache when it
    /// is still good for a while.
    pub async fn app_token(
        &self,
        credentials: &AppCredentials<'_>,
        now: OffsetDateTime,
    ) -> Result<AppToken, CallError> {
        self.cached_token(credentials, Resource::Graph, now).await
    }

    /// A token for Exchange Online's IMAP, POP and SMTP with the app's Exchange application
    /// permissions, cached as Graph's is (each under its own key).
    pub async fn exchange_token(
        &self,
        credentials: &AppCredentials<'_>,
        now: OffsetDateTime,
    ) -> Result<AppToken, CallError> {
        self.cached_token(credentials, Resource::ExchangeOnline, now)
            .await
    }

    async fn cached_token(
        &self,
        credentials: &AppCredentials<'_>,
        resource: Resource,
        now: OffsetDateTime,
    ) -> Result<AppToken, CallError> {
        let key = match resource {
            Resource::Graph => credentials.cache_key.clone(),
            // Starts with the credential's key, so forgetting the credential forgets it too.
            Resource::ExchangeOnline => format!("{}/exchange", credentials.cache_key),
        };
        let slot = self.tokens.slot(&key);
        let mut cached = slot.lock().await;
        if let Some(token) = cached
            .as_ref()
            .filter(|t| t.expires_at - RENEW_BEFORE_EXPIRY > now)
        {
            self.metrics.token_cache(true);
            return Ok(token.clone());
        }
        self.metrics.token_cache(false);
        let token = observed(
            &self.metrics,
            MicrosoftCall::Token,
            self.request_app_token(credentials, resource, now),
        )
        .await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Asks the token endpoint of the credential's own cloud: the only place its secret or
    /// assertion is ever sent.
    async fn request_app_token(
        &self,
        credentials: &AppCredentials<'_>,
        resource: Resource,
        now: OffsetDateTime,
    ) -> Result<AppToken, CallError> {
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.login_base(credentials.cloud),
            credentials.directory_id.hyphenated()
        );
        let scope = match resource {
            Resource::Graph => format!("{}/.default", self.graph_base(credentials.cloud)),
            Resource::ExchangeOnline => {
                format!("{}/.default", exchange_resource(credentials.cloud))
            }
        };
        let client_id = credentials.client_id.to_string();
        let proof = client_proof_fields(&credentials.proof, &client_id, &url, now)?;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("scope", scope.as_str()),
        ];
        form.extend(
            proof
                .iter()
                .map(|(name, value)| (*name, value.expose_secret())),
        );
        let response = self
            .http
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(CallError::from_reqwest)?;
        let status = response.status();
        let body = response.text().await.map_err(CallError::from_reqwest)?;
        if !status.is_success() {
            return Err(CallError::Microsoft(Box::new(MicrosoftError::from_body(
                &body,
            ))));
        }
        let token: TokenResponse = serde_json::from_str(&body)
            .map_err(|_| CallError::Unexpected("the token answer is not JSON".into()))?;
        let claims = claims_of(&token.access_token);
        Ok(AppToken {
            roles: claims.roles,
            service_principal_id: claims.oid.and_then(|oid| Uuid::try_parse(&oid).ok()),
            access_token: SecretString::from(token.access_token),
            expires_at: now + Duration::seconds(token.expires_in),
        })
    }

    /// Reads the mailbox's inbox folder with the app's token, as Graph mail access would.
    pub async fn check_mailbox(
        &self,
        credentials: &AppCredentials<'_>,
        mailbox: &str,
        now: OffsetDateTime,
    ) -> Result<MailboxAccess, CallError> {
        let token = self.app_token(credentials, now).await?;
        let address: String = url::form_urlencoded::byte_serialize(mailbox.as_bytes()).collect();
        let url = format!(
            "{}/v1.0/users/{address}/mailFolders/inbox",
            self.graph_base(credentials.cloud)
        );
        observed(&self.metrics, MicrosoftCall::Graph, async {
            let response = self
                .http
                .get(url)
                .bearer_auth(token.access_token.expose_secret())
                .send()
                .await
                .map_err(CallError::from_reqwest)?;
            match response.status().as_u16() {
                // Only the folder itself proves access: a 200 that is not one (a proxy's
                // page, a broken answer) proves nothing.
                200 => {
                    let body = response.text().await.map_err(CallError::from_reqwest)?;
                    let folder = serde_json::from_str::<serde_json::Value>(&body).ok();
                    if folder.is_some_and(|folder| folder["id"].is_string()) {
                        Ok(MailboxAccess::Granted)
                    } else {
                        Err(CallError::Unexpected(
                            "Graph's answer is not a mail folder".into(),
                        ))
                    }
                }
                403 => Ok(MailboxAccess::Denied),
                404 => Ok(MailboxAccess::NotFound),
                status => Err(CallError::Unexpected(format!("Graph answered {status}"))),
            }
        })
        .await
    }

    /// Sends `message` as `mailbox` with the app's token (`sendMail`; the app needs the
    /// Mail.Send application permission). Graph answers 202 Accepted with no body; the
    /// message is not kept in the mailbox's Sent Items.
    pub async fn send_mail(
        &self,
        credentials: &AppCredentials<'_>,
        mailbox: &str,
        message: &GraphMessage<'_>,
        now: OffsetDateTime,
    ) -> Result<Result<(), SendRefused>, CallError> {
        let token = self.app_token(credentials, now).await?;
        let address: String = url::form_urlencoded::byte_serialize(mailbox.as_bytes()).collect();
        let url = format!(
            "{}/v1.0/users/{address}/sendMail",
            self.graph_base(credentials.cloud)
        );
        let recipients: Vec<_> = message
            .to
            .iter()
            .map(|address| json!({ "emailAddress": { "address": address } }))
            .collect();
        let payload = json!({
            "message": {
                "subject": message.subject,
                "body": { "contentType": "Text", "content": message.body },
                "toRecipients": recipients,
            },
            "saveToSentItems": false,
        });
        observed(&self.metrics, MicrosoftCall::Graph, async {
            let response = self
                .http
                .post(url)
                .bearer_auth(token.access_token.expose_secret())
                .json(&payload)
                .send()
                .await
                .map_err(CallError::from_reqwest)?;
            let status = response.status().as_u16();
            // Only Graph's own acceptance counts: another 2xx (a proxy's page) proves nothing.
            if status == 202 {
                return Ok(Ok(()));
            }
            let body = response.text().await.map_err(CallError::from_reqwest)?;
            match GraphError::from_body(status, &body) {
                Some(error) if status >= 400 => Ok(Err(SendRefused {
                    error,
                    mail_send_granted: token.roles.iter().any(|role| role == MAIL_SEND),
                })),
                _ => Err(CallError::Unexpected(format!("Graph answered {status}"))),
            }
        })
        .await
    }
}

/// The claims of an app-only access token Portico shows.
#[derive(Deserialize, Default)]
struct AppClaims {
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    oid: Option<String>,
}

/// The claims of an access token. Read without verifying the signature: the token came
/// straight from Microsoft over TLS, and this only shows what was granted.
fn claims_of(access_token: &str) -> AppClaims {
    access_token
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|json| serde_json::from_slice::<AppClaims>(&json).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_object_id_come_from_the_token_payload() {
        let payload = URL_SAFE_NO_PAD.encode(
            br#"{"roles":["Mail.Send","Mail.ReadWrite"],"oid":"7d3f4c1e-2b9a-4c55-9e61-0a8b3c2d1e4f"}"#,
        );
        let claims = claims_of(&format!("h.{payload}.s"));
        assert_eq!(claims.roles, vec!["Mail.Send", "Mail.ReadWrite"]);
        assert_eq!(
            claims.oid.as_deref(),
            Some("7d3f4c1e-2b9a-4c55-9e61-0a8b3c2d1e4f")
        );
        assert!(claims_of("not a token").roles.is_empty());
        assert_eq!(claims_of("not a token").oid, None);
    }
}
