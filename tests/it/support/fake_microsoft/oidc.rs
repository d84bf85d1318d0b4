//! The identity platform's v2.0 endpoints: OpenID discovery, JWKS, authorize, token, logout.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::header::{AUTHORIZATION, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use url::Url;
use uuid::Uuid;

use super::directory::{
    AccessGrant, Authority, CONSUMERS_TENANT, EXCHANGE_RESOURCE, FakeApp, FakeUser, IssuedCode,
    State, UnknownAuthority, UserGrant,
};
use super::errors::{self, AadError, escape_html};
use super::keys::Signing;
use super::{Shared, assertions, random_token};

/// How long an authorization code can be redeemed, as in Entra.
const CODE_LIFETIME: time::Duration = time::Duration::minutes(10);
/// Lifetime of ID tokens and access tokens.
const TOKEN_LIFETIME: time::Duration = time::Duration::hours(1);
/// What the token endpoint reports as `expires_in`: Entra rounds down to 3599.
const EXPIRES_IN: i64 = 3599;
/// The real Graph: a client may still ask for `https://graph.microsoft.com/.default` while
/// only its endpoints point at the fake.
const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";

fn authority_error(unknown: UnknownAuthority, segment: &str) -> AadError {
    match unknown {
        UnknownAuthority::NotFound => errors::tenant_not_found(segment),
        UnknownAuthority::Malformed => errors::tenant_malformed(segment),
    }
}

/// The `iss` of tokens a sign-in at `authority` can produce. For `common` and `organizations`
/// it is a template with a literal `{tenantid}`, as in Entra's own document.
fn issuer(login_url: &str, authority: Authority) -> String {
    match authority {
        Authority::Common | Authority::Organizations => format!("{login_url}/{{tenantid}}/v2.0"),
        Authority::Consumers => format!("{login_url}/{CONSUMERS_TENANT}/v2.0"),
        Authority::Directory(id) => format!("{login_url}/{id}/v2.0"),
    }
}

/// `GET {login}/{authority}/v2.0/.well-known/openid-configuration`
pub(crate) async fn discovery(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(segment): Path<String>,
) -> Response {
    let mut state = shared.state();
    state.discovery_fetches += 1;
    let login = &shared.login_url;
    let authority = match state.resolve_authority(&segment) {
        Ok(authority) => authority,
        Err(unknown) => {
            return authority_error(unknown, &segment)
                .with_error("invalid_tenant")
                .json(login, state.now());
        }
    };
    // Asked by domain, Entra answers with the directory's GUID in every endpoint.
    let (base, region) = match authority {
        Authority::Directory(id) => (format!("{login}/{id}"), json!("NA")),
        _ => (
            format!("{login}/{}", segment.to_ascii_lowercase()),
            Value::Null,
        ),
    };
    Json(json!({
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported":
            ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer(login, authority),
        "request_uri_parameter_supported": false,
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
        "claims_supported": [
            "sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
            "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
            "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"
        ],
        "tenant_region_scope": region,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }))
    .into_response()
}

/// `GET {login}/{authority}/discovery/v2.0/keys`
pub(crate) async fn keys(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(segment): Path<String>,
) -> Response {
    let mut state = shared.state();
    state.keys_fetches += 1;
    match state.resolve_authority(&segment) {
        Ok(authority) => {
            Json(state.keys.jwks(&issuer(&shared.login_url, authority))).into_response()
        }
        Err(unknown) => authority_error(unknown, &segment)
            .with_error("invalid_tenant")
            .json(&shared.login_url, state.now()),
    }
}

/// Why an authorization request did not produce a code.
enum Refusal {
    /// Entra shows its own page: the redirect URI cannot be trusted (yet).
    Page(AadError),
    /// Entra sends the error back to the app's (registered) redirect URI.
    Redirect(AadError),
    /// No account was named: Entra asks for one on its sign-in page.
    AskForAccount,
}

/// `GET {login}/{authority}/oauth2/v2.0/authorize`: no password; the user is the one named by
/// `login_hint`, else the one of `sign_in_as`, else the one typed on the sign-in page.
pub(crate) async fn authorize(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(segment): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mut state = shared.state();
    let now = state.now();
    let outcome = match sign_in(&mut state, &segment, &params) {
        Ok(granted) => granted,
        Err(Refusal::Redirect(error)) => error.redirect_params(&shared.login_url, now),
        Err(Refusal::Page(error)) => return error.page(now),
        Err(Refusal::AskForAccount) => return account_page(&params),
    };
    send_back(&params, outcome)
}

/// Validates an authorization request the way Entra does, in its order, and issues a code.
fn sign_in(
    state: &mut State,
    segment: &str,
    params: &HashMap<String, String>,
) -> Result<Vec<(String, String)>, Refusal> {
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let page = |error: AadError| Refusal::Page(error);

    let authority = state
        .resolve_authority(segment)
        .map_err(|unknown| page(authority_error(unknown, segment)))?;
    let client_id =
        param("client_id").ok_or_else(|| page(errors::missing_parameter("client_id")))?;
    let app = state
        .app_seen_from(client_id, authority)
        .cloned()
        .ok_or_else(|| {
            page(errors::app_not_found(
                client_id,
                &state.authority_name(authority, segment),
            ))
        })?;
    let redirect_uri =
        param("redirect_uri").ok_or_else(|| page(errors::missing_parameter("redirect_uri")))?;
    let is_web = app.web_redirect_uris.iter().any(|u| u == redirect_uri);
    let is_public = app
        .public_client_redirect_uris
        .iter()
        .any(|u| u == redirect_uri);
    if !is_web && !is_public {
        return Err(page(errors::redirect_uri_mismatch(redirect_uri, client_id)));
    }

    // From here on the redirect URI is registered: errors go back to the app.
    let refuse = |error: AadError| Refusal::Redirect(error);
    match param("response_type") {
        Some("code") => {}
        Some(other) => return Err(refuse(errors::unsupported_response_type(other))),
        None => return Err(refuse(errors::missing_parameter("response_type"))),
    }
    let scope = param("scope").ok_or_else(|| refuse(errors::missing_parameter("scope")))?;
    let code_challenge = match (param("code_challenge"), param("code_challenge_method")) {
        (None, _) if is_public && !is_web => return Err(refuse(errors::pkce_required())),
        (None, _) => None,
        (Some(challenge), None) => Some(("plain".to_owned(), challenge.to_owned())),
        (Some(challenge), Some(method @ ("plain" | "S256"))) => {
            Some((method.to_owned(), challenge.to_owned()))
        }
        (Some(_), Some(_)) => return Err(refuse(errors::invalid_code_challenge_method())),
    };
    if !app.multi_tenant && matches!(authority, Authority::Common | Authority::Organizations) {
        return Err(refuse(errors::not_multi_tenant(client_id, &app.name)));
    }
    let user = signed_in_user(state, authority, segment, params)?;
    if std::mem::take(&mut state.cancel_next) {
        return Err(refuse(errors::user_declined()));
    }
    admit(state, &app, authority, &user).map_err(refuse)?;

    let code = random_token();
    state.issued.push(code.clone());
    let expires_at = state.now() + CODE_LIFETIME;
    state.codes.insert(
        code.clone(),
        IssuedCode {
            client_id: app.client_id,
            redirect_uri: redirect_uri.to_owned(),
            code_challenge,
            nonce: param("nonce").map(str::to_owned),
            scope: scope.to_owned(),
            user,
            expires_at,
            redeemed: false,
        },
    );
    Ok(vec![
        ("code".to_owned(), code),
        ("session_state".to_owned(), Uuid::new_v4().to_string()),
    ])
}

/// The user signing in: named by `login_hint` if it is a known user, else by `sign_in_as`.
fn signed_in_user(
    state: &State,
    authority: Authority,
    segment: &str,
    params: &HashMap<String, String>,
) -> Result<FakeUser, Refusal> {
    let hint = params.get("login_hint").filter(|h| !h.is_empty());
    let chosen = hint
        .and_then(|hint| state.user(hint))
        .or_else(|| state.signed_in.as_deref().and_then(|upn| state.user(upn)));
    match (chosen, hint) {
        (Some(user), _) => Ok(user.clone()),
        (None, Some(hint)) => Err(Refusal::Page(errors::user_not_found(
            hint,
            &state.authority_name(authority, segment),
        ))),
        (None, None) if params.get("prompt").is_some_and(|p| p == "none") => {
            Err(Refusal::Redirect(errors::login_required()))
        }
        (None, None) => Err(Refusal::AskForAccount),
    }
}

/// Entra's "Sign in" page, reduced to its account field: "Next" asks again, with the account
/// typed as `login_hint` and every other parameter kept.
fn account_page(params: &HashMap<String, String>) -> Response {
    let kept: String = params
        .iter()
        .filter(|(name, _)| *name != "login_hint")
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape_html(name),
                escape_html(value)
            )
        })
        .collect();
    Html(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Sign in to your account</title></head><body><main>\
         <h1>Sign in</h1><form method=\"get\">{kept}\
         <label for=\"login_hint\">Email, phone, or Skype</label> \
         <input id=\"login_hint\" name=\"login_hint\" type=\"email\" autocomplete=\"username\" required> \
         <button type=\"submit\">Next</button></form></main></body></html>\n"
    ))
    .into_response()
}

/// Whether `user` may sign in to `app` at `authority` (guest accounts are not modelled: a
/// directory authority admits only its own users).
fn admit(
    state: &State,
    app: &FakeApp,
    authority: Authority,
    user: &FakeUser,
) -> Result<(), AadError> {
    let identity_provider = if user.is_personal() {
        "live.com".to_owned()
    } else {
        format!("https://sts.windows.net/{}/", user.tenant_id)
    };
    let refused = |tenant: &str| {
        errors::user_not_in_tenant(
            &user.upn,
            &identity_provider,
            tenant,
            &app.client_id.to_string(),
            &app.name,
        )
    };
    // Personal accounts that an app does not take end up in this tenant, as in Entra.
    const MSA_PASSTHROUGH_TENANT: &str = "Microsoft Services";
    match authority {
        Authority::Directory(id) if user.tenant_id != id => {
            let name = state.authority_name(authority, "");
            Err(refused(&name))
        }
        Authority::Consumers if !user.is_personal() => Err(refused(&CONSUMERS_TENANT.to_string())),
        Authority::Organizations if user.is_personal() => Err(refused(MSA_PASSTHROUGH_TENANT)),
        Authority::Common if !app.admits_directory(user.tenant_id) => {
            Err(refused(MSA_PASSTHROUGH_TENANT))
        }
        _ => Ok(()),
    }
}

/// Answers the app at its redirect URI, in the `response_mode` it asked for.
fn send_back(params: &HashMap<String, String>, mut outcome: Vec<(String, String)>) -> Response {
    let redirect_uri = params
        .get("redirect_uri")
        .map(String::as_str)
        .unwrap_or_default();
    if let Some(state) = params.get("state") {
        outcome.push(("state".to_owned(), state.clone()));
    }
    let Ok(mut target) = Url::parse(redirect_uri) else {
        let message = "The fake Microsoft cannot redirect: the registered redirect URI is no URL.";
        return (StatusCode::BAD_REQUEST, Html(message)).into_response();
    };
    match params.get("response_mode").map(String::as_str) {
        Some("form_post") => {
            let inputs: String = outcome
                .iter()
                .map(|(name, value)| {
                    format!(
                        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                        escape_html(name),
                        escape_html(value)
                    )
                })
                .collect();
            Html(format!(
                "<!DOCTYPE html><html><body onload=\"document.forms[0].submit()\">\
                 <form method=\"POST\" action=\"{}\">{inputs}</form></body></html>",
                escape_html(redirect_uri)
            ))
            .into_response()
        }
        Some("fragment") => {
            let fragment = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&outcome)
                .finish();
            target.set_fragment(Some(&fragment));
            found(&target)
        }
        _ => {
            target.query_pairs_mut().extend_pairs(&outcome);
            found(&target)
        }
    }
}

/// Entra redirects with 302 Found.
fn found(target: &Url) -> Response {
    (StatusCode::FOUND, [(LOCATION, target.as_str())]).into_response()
}

/// `POST {login}/{authority}/oauth2/v2.0/token`. The body is read whatever its content type,
/// so a JSON body fails as in Entra: AADSTS900144, no `grant_type`.
pub(crate) async fn token(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body).unwrap_or_default();
    let mut state = shared.state();
    state.token_requests += 1;
    state.last_token_fields = fields.iter().map(|(name, _)| name.clone()).collect();
    let form: HashMap<String, String> = fields
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .collect();
    let now = state.now();
    let request = TokenRequest {
        shared: &shared,
        segment: &segment,
        form: &form,
        basic: basic_credentials(&headers),
    };
    match request.answer(&mut state) {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.json(&shared.login_url, now),
    }
}

/// One call to the token endpoint.
struct TokenRequest<'a> {
    shared: &'a Shared,
    segment: &'a str,
    form: &'a HashMap<String, String>,
    /// `(client_id, client_secret)` from HTTP Basic (`client_secret_basic`).
    basic: Option<(String, String)>,
}

impl TokenRequest<'_> {
    fn field(&self, name: &str) -> Result<&str, AadError> {
        self.form
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| errors::missing_parameter(name))
    }

    fn client_id(&self) -> Result<&str, AadError> {
        match (self.form.get("client_id"), &self.basic) {
            (Some(id), _) | (None, Some((id, _))) => Ok(id),
            (None, None) => Err(errors::missing_parameter("client_id")),
        }
    }

    fn offered_secret(&self) -> Option<&str> {
        self.form
            .get("client_secret")
            .or(self.basic.as_ref().map(|(_, secret)| secret))
            .map(String::as_str)
    }

    fn answer(&self, state: &mut State) -> Result<Value, AadError> {
        let authority = state
            .resolve_authority(self.segment)
            .map_err(|unknown| authority_error(unknown, self.segment))?;
        let grant_type = self.field("grant_type")?;
        match grant_type {
            "authorization_code" | "refresh_token" | "client_credentials" => {}
            other => return Err(errors::unsupported_grant_type(other)),
        }
        if grant_type == "client_credentials" && !matches!(authority, Authority::Directory(_)) {
            return Err(errors::no_tenant());
        }
        let client_id = self.client_id()?;
        let app = state
            .app_seen_from(client_id, authority)
            .cloned()
            .ok_or_else(|| {
                errors::app_not_found(client_id, &state.authority_name(authority, self.segment))
            })?;
        match grant_type {
            "authorization_code" => self.redeem_code(state, &app),
            "refresh_token" => self.refresh(state, &app),
            _ => self.client_credentials(state, &app, authority),
        }
    }

    /// Client authentication: confidential clients prove themselves with a secret or a
    /// client assertion, public clients must send neither.
    fn authenticate(
        &self,
        state: &mut State,
        app: &FakeApp,
        confidential: bool,
    ) -> Result<(), AadError> {
        let now = state.now();
        let offered = self.offered_secret();
        let assertion = self.form.get("client_assertion");
        let client_id = app.client_id.to_string();
        if !confidential {
            return match (offered, assertion) {
                (None, None) => Ok(()),
                _ => Err(errors::public_client_with_secret()),
            };
        }
        if let Some(assertion) = assertion {
            if self.form.get("client_assertion_type").map(String::as_str)
                != Some(assertions::ASSERTION_TYPE)
            {
                return Err(errors::assertion_invalid(
                    "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
                ));
            }
            let mut audiences = vec![format!(
                "{}/{}/oauth2/v2.0/token",
                self.shared.login_url, self.segment
            )];
            if let Ok(Authority::Directory(id)) = state.resolve_authority(self.segment) {
                audiences.push(format!("{}/{id}/oauth2/v2.0/token", self.shared.login_url));
            }
            return assertions::verify(assertion, app, &audiences, now, &mut state.used_assertions);
        }
        let offered = offered.ok_or_else(errors::secret_missing)?;
        match app.secrets.iter().find(|s| s.value == offered) {
            None => Err(errors::secret_invalid(&client_id)),
            Some(secret) if secret.expires_at <= now => Err(errors::secret_expired(&client_id)),
            Some(_) => Ok(()),
        }
    }

    fn redeem_code(&self, state: &mut State, app: &FakeApp) -> Result<Value, AadError> {
        let now = state.now();
        let redirect_uri = self.field("redirect_uri")?;
        // A code redeemed at a "Mobile and desktop" URI comes from a public client.
        let confidential = app.web_redirect_uris.iter().any(|u| u == redirect_uri)
            || !app
                .public_client_redirect_uris
                .iter()
                .any(|u| u == redirect_uri);
        self.authenticate(state, app, confidential)?;

        let issued = state
            .codes
            .get_mut(self.field("code")?)
            .ok_or_else(errors::code_expired)?;
        if issued.redeemed {
            return Err(errors::code_redeemed());
        }
        if issued.expires_at <= now {
            return Err(errors::code_expired());
        }
        // Any attempt by an authenticated client uses the code up, even a failing one.
        issued.redeemed = true;
        let issued = issued.clone();

        if issued.client_id != app.client_id {
            return Err(errors::invalid_grant());
        }
        if issued.redirect_uri != redirect_uri {
            return Err(errors::reply_address_mismatch(
                redirect_uri,
                &issued.redirect_uri,
            ));
        }
        if let Some((method, challenge)) = &issued.code_challenge {
            let verifier = self
                .form
                .get("code_verifier")
                .ok_or_else(errors::pkce_mismatch)?;
            let derived = if method == "S256" {
                URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
            } else {
                verifier.clone()
            };
            if derived != *challenge {
                return Err(errors::pkce_mismatch());
            }
        }
        let grant = UserGrant {
            client_id: app.client_id,
            scope: issued.scope,
            user: issued.user,
            confidential,
        };
        let offline = has_scope(&grant.scope, "offline_access");
        Ok(self.user_tokens(state, app, &grant, issued.nonce.as_deref(), offline))
    }

    fn refresh(&self, state: &mut State, app: &FakeApp) -> Result<Value, AadError> {
        let grant = state
            .refresh_tokens
            .get(self.field("refresh_token")?)
            .filter(|grant| grant.client_id == app.client_id)
            .cloned()
            .ok_or_else(errors::invalid_grant)?;
        self.authenticate(state, app, grant.confidential)?;
        Ok(self.user_tokens(state, app, &grant, None, true))
    }

    /// Tokens for a signed-in user: an access token for Graph, an ID token when `openid` was
    /// asked for, and a refresh token with `offline_access`, as Entra decides.
    fn user_tokens(
        &self,
        state: &mut State,
        app: &FakeApp,
        grant: &UserGrant,
        nonce: Option<&str>,
        with_refresh_token: bool,
    ) -> Value {
        let now = state.now();
        let user = &grant.user;
        let granted: Vec<&str> = grant
            .scope
            .split_whitespace()
            .filter(|s| *s != "offline_access")
            .collect();
        let delegated: Vec<&str> = granted
            .iter()
            .copied()
            .filter(|s| !matches!(*s, "openid" | "profile" | "email"))
            .collect();
        let access_claims = json!({
            "aud": self.shared.graph_url,
            "iss": format!("https://sts.windows.net/{}/", user.tenant_id),
            "iat": now.unix_timestamp(),
            "nbf": now.unix_timestamp(),
            "exp": (now + TOKEN_LIFETIME).unix_timestamp(),
            "appid": app.client_id,
            "tid": user.tenant_id,
            "oid": user.oid,
            "upn": user.upn,
            "scp": delegated.join(" "),
            "ver": "1.0",
        });
        let access_token =
            self.access_token(state, &access_claims, app, user.tenant_id, Vec::new(), true);
        let mut body = json!({
            "token_type": "Bearer",
            "scope": granted.join(" "),
            "expires_in": EXPIRES_IN,
            "ext_expires_in": EXPIRES_IN,
            "access_token": access_token,
        });
        if has_scope(&grant.scope, "openid") {
            let mut claims =
                id_token_claims(&self.shared.login_url, app.client_id, user, nonce, now);
            let signing = match state.tamper_next_id_token.take() {
                Some(tamper) => tamper(&mut claims),
                None => Signing::CurrentKey,
            };
            let id_token = state.keys.mint(&claims, &signing);
            state.issued.push(id_token.clone());
            body["id_token"] = json!(id_token);
        }
        if with_refresh_token {
            let refresh_token = random_token();
            state.issued.push(refresh_token.clone());
            state
                .refresh_tokens
                .insert(refresh_token.clone(), grant.clone());
            body["refresh_token"] = json!(refresh_token);
        }
        body
    }

    /// App-only tokens, for `{resource}/.default` only: Graph's with the app's Graph
    /// application permissions, Exchange Online's with its Exchange ones.
    fn client_credentials(
        &self,
        state: &mut State,
        app: &FakeApp,
        authority: Authority,
    ) -> Result<Value, AadError> {
        let Authority::Directory(tenant_id) = authority else {
            return Err(errors::no_tenant());
        };
        self.authenticate(state, app, true)?;
        let scope = self.field("scope")?;
        let resource = scope
            .strip_suffix("/.default")
            .ok_or_else(|| errors::scope_not_default(scope))?;
        let resource = resource.trim_end_matches('/');
        let (audience, roles) = if resource == EXCHANGE_RESOURCE {
            (EXCHANGE_RESOURCE.to_owned(), app.exchange_roles.clone())
        } else if resource == self.shared.graph_url || resource == GRAPH_RESOURCE {
            (self.shared.graph_url.clone(), app.application_roles.clone())
        } else {
            let tenant = state.authority_name(authority, self.segment);
            return Err(errors::resource_not_found(resource, &tenant));
        };
        let now = state.now();
        let mut claims = json!({
            "aud": audience,
            "iss": format!("https://sts.windows.net/{tenant_id}/"),
            "iat": now.unix_timestamp(),
            "nbf": now.unix_timestamp(),
            "exp": (now + TOKEN_LIFETIME).unix_timestamp(),
            "appid": app.client_id,
            "app_displayname": app.name,
            "idtyp": "app",
            "oid": app.service_principal_id,
            "sub": app.service_principal_id,
            "tid": tenant_id,
            "ver": "1.0",
        });
        // Entra leaves `roles` out entirely when nothing is granted.
        if !roles.is_empty() {
            claims["roles"] = json!(roles);
        }
        let access_token = self.access_token(state, &claims, app, tenant_id, roles, false);
        Ok(json!({
            "token_type": "Bearer",
            "expires_in": EXPIRES_IN,
            "ext_expires_in": EXPIRES_IN,
            "access_token": access_token,
        }))
    }

    /// Signs an access token and remembers what it grants, for Graph to check.
    fn access_token(
        &self,
        state: &mut State,
        claims: &Value,
        app: &FakeApp,
        tenant_id: Uuid,
        roles: Vec<String>,
        delegated: bool,
    ) -> String {
        let token = state.keys.mint(claims, &Signing::CurrentKey);
        state.issued.push(token.clone());
        let expires_at = state.now() + TOKEN_LIFETIME;
        let audience = claims["aud"].as_str().unwrap_or_default().to_owned();
        state.access_tokens.insert(
            token.clone(),
            AccessGrant {
                app_id: app.client_id,
                tenant_id,
                audience,
                roles,
                delegated,
                expires_at,
            },
        );
        token
    }
}

fn has_scope(scopes: &str, wanted: &str) -> bool {
    scopes.split_whitespace().any(|s| s == wanted)
}

/// `client_id:client_secret` from `Authorization: Basic`, each form-urlencoded (RFC 6749 2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |part: &str| -> String {
        url::form_urlencoded::parse(format!("v={part}").as_bytes())
            .map(|(_, value)| value.into_owned())
            .next()
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

/// The claims of an ID token for `user` signing in to `client_id`, as Entra v2.0 sets them.
pub(crate) fn id_token_claims(
    login_url: &str,
    client_id: Uuid,
    user: &FakeUser,
    nonce: Option<&str>,
    now: OffsetDateTime,
) -> Value {
    let issued_at = now.unix_timestamp();
    let mut claims = json!({
        "aud": client_id,
        "iss": format!("{login_url}/{}/v2.0", user.tenant_id),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": (now + TOKEN_LIFETIME).unix_timestamp(),
        "aio": random_token(),
        "name": user.name,
        "oid": user.oid,
        "preferred_username": user.upn,
        "rh": format!("0.{}.", random_token()),
        "sid": Uuid::new_v4(),
        "sub": pairwise_subject(user.oid, client_id),
        "tid": user.tenant_id,
        "uti": random_token(),
        "ver": "2.0",
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(nonce);
    }
    if let Some(email) = &user.email {
        claims["email"] = json!(email);
    }
    if let Some(verified) = user.xms_edov {
        claims["xms_edov"] = json!(verified);
    }
    claims
}

/// Entra's `sub` is pairwise: the same user has a different `sub` in every app, so it cannot
/// be used to recognise a user across apps (the `oid` + `tid` pair can).
fn pairwise_subject(oid: Uuid, client_id: Uuid) -> String {
    let mut digest = Sha256::new();
    digest.update(oid.as_bytes());
    digest.update(client_id.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.finalize())
}

/// `GET {login}/{authority}/oauth2/v2.0/logout`: back to `post_logout_redirect_uri` when it is
/// a registered redirect URI of some app, else Entra's "you signed out" page. The fake's
/// `sign_in_as` user stays signed in.
pub(crate) async fn logout(
    AxumState(shared): AxumState<Arc<Shared>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let state = shared.state();
    let registered = params.get("post_logout_redirect_uri").filter(|uri| {
        state.apps.iter().any(|app| {
            app.web_redirect_uris.contains(uri) || app.public_client_redirect_uris.contains(uri)
        })
    });
    match registered.and_then(|uri| Url::parse(uri).ok()) {
        Some(target) => found(&target),
        None => {
            Html("<!DOCTYPE html><html><body><h1>You signed out of your account</h1></body></html>")
                .into_response()
        }
    }
}
