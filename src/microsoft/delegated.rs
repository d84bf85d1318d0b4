//! Delegated OAuth 2.0 for mailboxes: a user's consent once in the browser (code flow with
//! PKCE), then access tokens renewed with the refresh token. Microsoft's endpoints by
//! default; any provider's when an admin gives them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::{CsrfToken, PkceCodeChallenge};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{CallError, Microsoft, MicrosoftError, observed};
use crate::domain::Cloud;
use crate::metrics::MicrosoftCall;

/// An app to obtain delegated tokens with.
pub struct DelegatedApp<'a> {
    pub client_id: String,
    pub authorization_url: String,
    pub token_url: String,
    /// Whether `token_url` is one a tenant admin typed (Advanced) rather than Microsoft's:
    /// only then does the egress policy stand between it and the operator's network.
    pub token_url_typed_by_tenant: bool,
    pub scope: &'a str,
    pub client_secret: Option<&'a SecretString>,
}

/// Kept in the admin's session until the browser comes back to `/oauth/callback`.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub state: String,
    pub pkce_verifier: String,
}

/// Tokens from the token endpoint. A refresh token may rotate with every renewal.
pub struct DelegatedTokens {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_in: i64,
    /// Who consented, from the ID token (`preferred_username`), when one came back.
    pub username: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default = "default_expires_in")]
    expires_in: i64,
    #[serde(default)]
    id_token: Option<String>,
}

fn default_expires_in() -> i64 {
    3600
}

impl Microsoft {
    /// Microsoft's authorize and token endpoints for a directory (or `common`, ...).
    pub fn delegated_endpoints(&self, cloud: Cloud, authority: &str) -> (String, String) {
        let base = format!("{}/{authority}/oauth2/v2.0", self.login_base(cloud));
        (format!("{base}/authorize"), format!("{base}/token"))
    }

    /// Where to send the browser: the code flow with PKCE (S256) and `select_account`.
    pub fn delegated_authorization_url(
        &self,
        app: &DelegatedApp<'_>,
        redirect_uri: &str,
        login_hint: Option<&str>,
    ) -> Result<(Url, PendingAuthorization), CallError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = CsrfToken::new_random();
        let mut url = Url::parse(&app.authorization_url)
            .map_err(|e| CallError::Unexpected(format!("Authorization URL: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("client_id", &app.client_id)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("response_mode", "query")
                // openid and profile bring an ID token naming who consented.
                .append_pair("scope", &format!("openid profile {}", app.scope))
                .append_pair("state", state.secret())
                .append_pair("code_challenge", challenge.as_str())
                .append_pair("code_challenge_method", "S256")
                .append_pair("prompt", "select_account");
            if let Some(hint) = login_hint {
                query.append_pair("login_hint", hint);
            }
        }
        Ok((
            url,
            PendingAuthorization {
                state: state.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
            },
        ))
    }

    pub async fn redeem_delegated_code(
        &self,
        app: &DelegatedApp<'_>,
        redirect_uri: &str,
        code: &str,
        pending: &PendingAuthorization,
    ) -> Result<DelegatedTokens, CallError> {
        self.delegated_token_request(
            app,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", &pending.pkce_verifier),
            ],
        )
        .await
    }

    pub async fn refresh_delegated(
        &self,
        app: &DelegatedApp<'_>,
        refresh_token: &SecretString,
    ) -> Result<DelegatedTokens, CallError> {
        self.delegated_token_request(
            app,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose_secret()),
                ("scope", app.scope),
            ],
        )
        .await
    }

    async fn delegated_token_request(
        &self,
        app: &DelegatedApp<'_>,
        grant: &[(&str, &str)],
    ) -> Result<DelegatedTokens, CallError> {
        let mut form: Vec<(&str, &str)> = vec![("client_id", &app.client_id)];
        form.extend_from_slice(grant);
        if let Some(secret) = app.client_secret {
            form.push(("client_secret", secret.expose_secret()));
        }
        let http = if app.token_url_typed_by_tenant {
            let url = Url::parse(&app.token_url)
                .map_err(|e| CallError::Unexpected(format!("Token URL: {e}")))?;
            // reqwest asks no resolver about a literal address.
            self.egress
                .check_url(&url)
                .map_err(CallError::Destination)?;
            &self.tenant_http
        } else {
            &self.http
        };
        let tokens: TokenResponse = observed(&self.metrics, MicrosoftCall::Token, async {
            let response = http
                .post(&app.token_url)
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
            serde_json::from_str(&body)
                .map_err(|_| CallError::Unexpected("the token answer is not JSON".into()))
        })
        .await?;
        Ok(DelegatedTokens {
            username: tokens.id_token.as_deref().and_then(preferred_username),
            access_token: SecretString::from(tokens.access_token),
            refresh_token: tokens.refresh_token.map(SecretString::from),
            expires_in: tokens.expires_in,
        })
    }
}

/// `preferred_username` of an ID token that came straight from the token endpoint over TLS;
/// shown to admins only, never used to decide anything.
fn preferred_username(id_token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Claims {
        preferred_username: Option<String>,
        email: Option<String>,
    }
    let payload = URL_SAFE_NO_PAD.decode(id_token.split('.').nth(1)?).ok()?;
    let claims: Claims = serde_json::from_slice(&payload).ok()?;
    claims.preferred_username.or(claims.email)
}
