//! Sign in with Microsoft: the authorization code flow with PKCE, and the ID token checks
//! that decide who signed in. A mistake here lets strangers in, so every rule is explicit.

use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreIdTokenVerifier,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AdditionalClaims, AuthType, AuthUrl, AuthorizationCode, ClaimsVerificationError,
    ClientId as OidcClientId, CsrfToken, IdToken, IdTokenClaims, IssuerUrl, JsonWebKeySet, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    SignatureVerificationError, TokenResponse, TokenUrl,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use url::Url;
use uuid::Uuid;

use super::graph::{ClientProof, client_proof_fields};
use super::keys::Freshness;
use super::{CallError, Microsoft, MicrosoftError, observed};
use crate::domain::{CONSUMERS_DIRECTORY, ClientId, Cloud};
use crate::metrics::MicrosoftCall;

/// Clocks differ a little between Microsoft and Portico.
const CLOCK_SKEW: Duration = Duration::minutes(2);

/// The claims of Microsoft's v2.0 ID tokens that openidconnect does not know.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MicrosoftClaims {
    tid: Option<String>,
    oid: Option<String>,
    ver: Option<String>,
    nbf: Option<i64>,
    /// "Email domain owner verified": Entra sends it only when asked for as an optional
    /// claim; true means the directory owns the email's domain.
    xms_edov: Option<serde_json::Value>,
}

impl AdditionalClaims for MicrosoftClaims {}

type MicrosoftIdToken = IdToken<
    MicrosoftClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type MicrosoftIdTokenClaims = IdTokenClaims<MicrosoftClaims, CoreGenderClaim>;

/// The Azure app a tenant signs in with.
pub struct SignInApp<'a> {
    pub client_id: ClientId,
    /// The only directory whose users may sign in; `None` admits any Microsoft account.
    pub directory: Option<Uuid>,
    pub cloud: Cloud,
    /// With a secret or a certificate Portico is a confidential ("Web") client, without
    /// either a public client.
    pub proof: Option<ClientProof<'a>>,
    /// Sent as `domain_hint`, so people with several accounts see the right one first.
    pub domain_hint: Option<&'a str>,
}

/// What the callback needs to finish a sign-in. It stays on the server, in the session of
/// the browser that started it. (No `Debug`: it holds the state, nonce and PKCE verifier.)
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingSignIn {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// A person Microsoft vouched for, by the only stable pair: directory and object id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    pub tid: Uuid,
    pub oid: Uuid,
    pub name: Option<String>,
    pub username: Option<String>,
    pub email: Option<String>,
    /// Whether the directory owns the domain of `email` (`xms_edov`).
    pub email_domain_verified: bool,
}

impl VerifiedIdentity {
    pub fn is_personal_account(&self) -> bool {
        self.tid == CONSUMERS_DIRECTORY
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error(transparent)]
    Call(#[from] CallError),
    /// The ID token failed a check: the sign-in is refused, whatever Microsoft said.
    #[error("the ID token was refused: {0}")]
    TokenRefused(String),
}

impl Microsoft {
    fn authority(&self, app: &SignInApp<'_>) -> String {
        let directory = app
            .directory
            .map_or_else(|| "common".to_owned(), |guid| guid.hyphenated().to_string());
        format!("{}/{directory}", self.login_base(app.cloud))
    }

    fn token_url(&self, app: &SignInApp<'_>) -> String {
        format!("{}/oauth2/v2.0/token", self.authority(app))
    }

    fn oidc_client(
        &self,
        app: &SignInApp<'_>,
        redirect_uri: &str,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointSet,
        >,
        CallError,
    > {
        let authority = self.authority(app);
        let bad_url = |e: url::ParseError| CallError::Unexpected(e.to_string());
        // Built from the known endpoints: openidconnect's discovery rejects the `common`
        // document, whose issuer is the template ".../{tenantid}/v2.0".
        let client = CoreClient::new(
            OidcClientId::new(app.client_id.to_string()),
            IssuerUrl::new(format!("{authority}/v2.0")).map_err(bad_url)?,
            JsonWebKeySet::default(),
        )
        .set_auth_uri(AuthUrl::new(format!("{authority}/oauth2/v2.0/authorize")).map_err(bad_url)?)
        .set_token_uri(TokenUrl::new(self.token_url(app)).map_err(bad_url)?)
        .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).map_err(bad_url)?)
        // Without a client secret set, oauth2 sends the client_id in the body and no
        // client_secret at all; the proof goes along as extra fields (`complete_sign_in`).
        .set_auth_type(AuthType::RequestBody);
        Ok(client)
    }

    /// Where to send the browser, and what to remember until it comes back.
    pub fn authorization_url(
        &self,
        app: &SignInApp<'_>,
        redirect_uri: &str,
    ) -> Result<(Url, PendingSignIn), CallError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.oidc_client(app, redirect_uri)?;
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge)
            .add_prompt(CoreAuthPrompt::SelectAccount);
        if let Some(hint) = app.domain_hint {
            request = request.add_extra_param("domain_hint", hint.to_owned());
        }
        let (url, state, nonce) = request.url();
        Ok((
            url,
            PendingSignIn {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
            },
        ))
    }

    /// Redeems the code and checks the ID token; returns who signed in.
    pub async fn complete_sign_in(
        &self,
        app: &SignInApp<'_>,
        redirect_uri: &str,
        code: &str,
        pending: &PendingSignIn,
        now: OffsetDateTime,
    ) -> Result<VerifiedIdentity, SignInError> {
        let client = self.oidc_client(app, redirect_uri)?;
        let mut exchange = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()));
        // The client secret, or `client_assertion_type` and a `client_assertion` addressed
        // to this token endpoint (RFC 7523); nothing for a public client.
        if let Some(proof) = &app.proof {
            let fields =
                client_proof_fields(proof, &app.client_id.to_string(), &self.token_url(app), now)?;
            for (name, value) in fields {
                exchange = exchange.add_extra_param(name, value.expose_secret().to_owned());
            }
        }
        let response = observed(&self.metrics, MicrosoftCall::Token, async {
            exchange
                .request_async(&self.http)
                .await
                .map_err(token_error)
        })
        .await?;
        let raw = response
            .id_token()
            .ok_or_else(|| SignInError::TokenRefused("Microsoft sent no ID token".into()))?
            .to_string();
        let id_token: MicrosoftIdToken = raw
            .parse()
            .map_err(|_| SignInError::TokenRefused("the ID token is malformed".into()))?;

        let keys_url = format!("{}/discovery/v2.0/keys", self.authority(app));
        let nonce = Nonce::new(pending.nonce.clone());
        let (keys, _) = self
            .keys
            .get(&self.http, &keys_url, Freshness::Cached)
            .await?;
        let claims = match verify(&id_token, app, keys, &nonce, now) {
            // A key Portico has not seen: Microsoft may have rotated its keys.
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                let (keys, refetched) = self
                    .keys
                    .get(&self.http, &keys_url, Freshness::UnknownKeySeen)
                    .await?;
                if !refetched {
                    return Err(SignInError::TokenRefused(
                        "the ID token is signed with an unknown key".into(),
                    ));
                }
                verify(&id_token, app, keys, &nonce, now)
            }
            other => other,
        }
        .map_err(|e| SignInError::TokenRefused(e.to_string()))?;
        check_microsoft_claims(&claims, &self.login_base(app.cloud), app.directory, now)
            .map_err(SignInError::TokenRefused)
    }
}

fn token_error<E: std::error::Error>(
    err: RequestTokenError<
        E,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> CallError {
    match err {
        RequestTokenError::ServerResponse(response) => {
            CallError::Microsoft(Box::new(MicrosoftError::from_redirect(
                response.error().as_ref(),
                response.error_description().map(String::as_str),
            )))
        }
        RequestTokenError::Request(request) => {
            let message = request.to_string();
            if message.contains("timed out") || message.contains("timeout") {
                CallError::Unreachable("no answer in time".into())
            } else {
                CallError::Unreachable("the connection failed".into())
            }
        }
        RequestTokenError::Parse(_, body) => CallError::Microsoft(Box::new(
            MicrosoftError::from_body(&String::from_utf8_lossy(&body)),
        )),
        RequestTokenError::Other(message) => CallError::Unexpected(message),
    }
}

/// Signature (RS256 only, from Microsoft's keys), audience, expiry and nonce. The issuer
/// is checked by `check_microsoft_claims`, because for `common` it depends on `tid`.
fn verify(
    id_token: &MicrosoftIdToken,
    app: &SignInApp<'_>,
    keys: openidconnect::core::CoreJsonWebKeySet,
    nonce: &Nonce,
    now: OffsetDateTime,
) -> Result<MicrosoftIdTokenClaims, ClaimsVerificationError> {
    let lenient_now = now - CLOCK_SKEW;
    let as_chrono =
        chrono::DateTime::from_timestamp(lenient_now.unix_timestamp(), 0).unwrap_or_default();
    // A public-client verifier has no client secret, so an HS256 token "signed" with the
    // secret can never pass; only RS256 is allowed at all.
    let verifier = CoreIdTokenVerifier::new_public_client(
        OidcClientId::new(app.client_id.to_string()),
        IssuerUrl::new("https://issuer.checked.separately".into())
            .map_err(|e| ClaimsVerificationError::Other(e.to_string()))?,
        keys,
    )
    .require_issuer_match(false)
    .set_allowed_algs([CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256])
    .set_time_fn(move || as_chrono);
    id_token.claims(&verifier, nonce).cloned()
}

/// The rules that make a token Microsoft's and of the right directory:
/// `ver` 2.0; `tid` a GUID; the issuer exactly `<login>/<tid>/v2.0`; with a directory set,
/// `tid` equal to it (so personal accounts only when none is set); `nbf`/`iat` not ahead.
pub fn check_microsoft_claims(
    claims: &MicrosoftIdTokenClaims,
    login_base: &str,
    directory: Option<Uuid>,
    now: OffsetDateTime,
) -> Result<VerifiedIdentity, String> {
    let extra = claims.additional_claims();
    if extra.ver.as_deref() != Some("2.0") {
        return Err("the ID token is not a v2.0 token".into());
    }
    let tid = extra
        .tid
        .as_deref()
        .and_then(|tid| Uuid::try_parse(tid).ok())
        .ok_or("the ID token names no directory (tid)")?;
    let expected_issuer = format!("{login_base}/{}/v2.0", tid.hyphenated());
    if claims.issuer().as_str() != expected_issuer {
        return Err(format!(
            "the ID token's issuer {} is not its directory's",
            claims.issuer().as_str()
        ));
    }
    if directory.is_some_and(|directory| tid != directory) {
        return Err("the account belongs to another directory".into());
    }
    let latest_start = (now + CLOCK_SKEW).unix_timestamp();
    if extra.nbf.is_some_and(|nbf| nbf > latest_start)
        || claims.issue_time().timestamp() > latest_start
    {
        return Err("the ID token is not valid yet".into());
    }
    let oid = extra
        .oid
        .as_deref()
        .and_then(|oid| Uuid::try_parse(oid).ok())
        .ok_or("the ID token names no user object (oid)")?;
    let email_domain_verified = matches!(&extra.xms_edov, Some(serde_json::Value::Bool(true)))
        || matches!(&extra.xms_edov, Some(serde_json::Value::String(s)) if s == "1" || s.eq_ignore_ascii_case("true"));
    Ok(VerifiedIdentity {
        tid,
        oid,
        name: claims
            .name()
            .and_then(|name| name.get(None))
            .map(|n| n.to_string()),
        username: claims.preferred_username().map(|u| u.to_string()),
        email: claims.email().map(|e| e.to_string().to_lowercase()),
        email_domain_verified,
    })
}
