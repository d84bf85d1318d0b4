//! The fake itself must behave like Entra, or Portico's tests prove nothing: these drive it
//! over HTTP as Portico will.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier as _;
use rsa::{BigUint, RsaPublicKey};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use uuid::{Uuid, uuid};

use super::*;

const CONTOSO: Uuid = uuid!("0b6b2c1e-7d4f-4c35-9a51-3f1b6a2d9e01");
const FABRIKAM: Uuid = uuid!("5d2f7a8c-1e3b-4f60-8c9d-2a4b6c8e0f12");
/// Multi-tenant, web and public-client redirect URIs, one valid and one expired secret.
const PORTAL: Uuid = uuid!("11111111-2222-4333-8444-555555555555");
/// Single-tenant in Contoso, with mail permissions.
const MAILER: Uuid = uuid!("66666666-7777-4888-8999-aaaaaaaaaaaa");
/// Open to personal accounts.
const CONSUMER_APP: Uuid = uuid!("bbbbbbbb-cccc-4ddd-8eee-ffffffffffff");

const WEB_CALLBACK: &str = "http://localhost:8080/auth/microsoft/callback";
const OTHER_WEB_CALLBACK: &str = "http://127.0.0.1:8080/auth/microsoft/callback";
const DESKTOP_CALLBACK: &str = "http://localhost";
const SECRET: &str = "portal~secret~value";
const OLD_SECRET: &str = "portal~expired~secret";
const MAILER_SECRET: &str = "mailer~secret~value";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

async fn world() -> FakeMicrosoft {
    let fake = FakeMicrosoft::start().await;
    let in_a_year = OffsetDateTime::now_utc() + time::Duration::days(365);
    let yesterday = OffsetDateTime::now_utc() - time::Duration::days(1);
    fake.add_directory(CONTOSO, &["contoso.onmicrosoft.com", "contoso.com"]);
    fake.add_directory(FABRIKAM, &["fabrikam.onmicrosoft.com"]);
    fake.add_app(
        FakeApp::new(PORTAL, CONTOSO)
            .multi_tenant()
            .web_redirect_uri(WEB_CALLBACK)
            .web_redirect_uri(OTHER_WEB_CALLBACK)
            .public_client_redirect_uri(DESKTOP_CALLBACK)
            .secret(SECRET, in_a_year)
            .secret(OLD_SECRET, yesterday),
    );
    fake.add_app(
        FakeApp::new(MAILER, CONTOSO)
            .named("Portico mail")
            .web_redirect_uri(WEB_CALLBACK)
            .secret(MAILER_SECRET, in_a_year)
            .application_role("Mail.ReadWrite")
            .application_role("Mail.Send"),
    );
    fake.add_app(
        FakeApp::new(CONSUMER_APP, CONTOSO)
            .with_personal_accounts()
            .public_client_redirect_uri(DESKTOP_CALLBACK),
    );
    fake.add_user(
        FakeUser::new(CONTOSO, "alice@contoso.com", "Alice Admin")
            .email("alice@contoso.com")
            .xms_edov(true),
    );
    fake.add_user(FakeUser::new(CONTOSO, "bob@contoso.onmicrosoft.com", "Bob"));
    fake.add_user(FakeUser::new(
        FABRIKAM,
        "carol@fabrikam.onmicrosoft.com",
        "Carol",
    ));
    fake.add_user(FakeUser::personal("dave@outlook.com", "Dave"));
    fake.sign_in_as("alice@contoso.com");
    fake
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Calls authorize with the usual web-app parameters, `extra` overriding them.
async fn authorize(
    fake: &FakeMicrosoft,
    authority: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let challenge = pkce_challenge(VERIFIER);
    let mut params: HashMap<&str, &str> = HashMap::from([
        ("client_id", "11111111-2222-4333-8444-555555555555"),
        ("response_type", "code"),
        ("redirect_uri", WEB_CALLBACK),
        ("scope", "openid profile email offline_access"),
        ("state", "st4te"),
        ("nonce", "n0nce"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    params.extend(extra.iter().copied());
    let url = format!("{}/{authority}/oauth2/v2.0/authorize", fake.login_url());
    http().get(url).query(&params).send().await.unwrap()
}

/// The body as JSON (reqwest's `json` feature is not among the dev-dependencies).
async fn json_body(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// The query parameters of a redirect.
fn redirected(response: &reqwest::Response) -> HashMap<String, String> {
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()[LOCATION].to_str().unwrap();
    let url = url::Url::parse(location).unwrap();
    url.query_pairs().into_owned().collect()
}

async fn code_for(fake: &FakeMicrosoft, authority: &str, extra: &[(&str, &str)]) -> String {
    let params = redirected(&authorize(fake, authority, extra).await);
    assert_eq!(params["state"], "st4te");
    params["code"].clone()
}

async fn token(
    fake: &FakeMicrosoft,
    authority: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let url = format!("{}/{authority}/oauth2/v2.0/token", fake.login_url());
    let response = http().post(url).form(form).send().await.unwrap();
    (response.status(), json_body(response).await)
}

async fn redeem(fake: &FakeMicrosoft, code: &str, extra: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut form: HashMap<&str, &str> = HashMap::from([
        ("grant_type", "authorization_code"),
        ("client_id", "11111111-2222-4333-8444-555555555555"),
        ("code", code),
        ("redirect_uri", WEB_CALLBACK),
        ("code_verifier", VERIFIER),
        ("client_secret", SECRET),
    ]);
    form.extend(extra.iter().copied());
    let form: Vec<(&str, &str)> = form.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    token(fake, "organizations", &form).await
}

fn error_code(body: &Value) -> u64 {
    body["error_codes"][0].as_u64().unwrap()
}

fn jwt_part(jwt: &str, index: usize) -> Value {
    let part = jwt.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn jwks(fake: &FakeMicrosoft) -> Vec<Value> {
    let url = format!("{}/common/discovery/v2.0/keys", fake.login_url());
    let body = json_body(http().get(url).send().await.unwrap()).await;
    body["keys"].as_array().unwrap().clone()
}

/// Verifies an RS256 JWT against the published JWKS, as Portico will.
async fn verify(fake: &FakeMicrosoft, jwt: &str) -> bool {
    let kid = jwt_part(jwt, 0)["kid"].as_str().unwrap().to_owned();
    let Some(jwk) = jwks(fake).await.into_iter().find(|k| k["kid"] == kid) else {
        return false;
    };
    let number = |field: &str| {
        BigUint::from_bytes_be(
            &URL_SAFE_NO_PAD
                .decode(jwk[field].as_str().unwrap())
                .unwrap(),
        )
    };
    let key = VerifyingKey::<Sha256>::new(RsaPublicKey::new(number("n"), number("e")).unwrap());
    let (signed, signature) = jwt.rsplit_once('.').unwrap();
    let signature = Signature::try_from(URL_SAFE_NO_PAD.decode(signature).unwrap().as_slice());
    signature.is_ok_and(|s| key.verify(signed.as_bytes(), &s).is_ok())
}

#[tokio::test]
async fn discovery_answers_for_every_kind_of_authority() {
    let fake = world().await;
    let login = fake.login_url();
    let fetch = |authority: &str| {
        let url = format!("{login}/{authority}/v2.0/.well-known/openid-configuration");
        async move {
            let response = http().get(url).send().await.unwrap();
            (response.status(), json_body(response).await)
        }
    };

    let (status, common) = fetch("common").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(common["issuer"], format!("{login}/{{tenantid}}/v2.0"));
    assert_eq!(
        common["authorization_endpoint"],
        format!("{login}/common/oauth2/v2.0/authorize")
    );
    assert_eq!(
        common["token_endpoint"],
        format!("{login}/common/oauth2/v2.0/token")
    );
    assert_eq!(
        common["jwks_uri"],
        format!("{login}/common/discovery/v2.0/keys")
    );
    assert_eq!(common["subject_types_supported"], json!(["pairwise"]));
    assert_eq!(
        common["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );

    let (_, organizations) = fetch("organizations").await;
    assert_eq!(
        organizations["issuer"],
        format!("{login}/{{tenantid}}/v2.0")
    );
    let (_, consumers) = fetch("consumers").await;
    assert_eq!(
        consumers["issuer"],
        format!("{login}/{CONSUMERS_TENANT}/v2.0")
    );
    let (_, by_id) = fetch(&CONTOSO.to_string()).await;
    assert_eq!(by_id["issuer"], format!("{login}/{CONTOSO}/v2.0"));
    let (_, by_domain) = fetch("Contoso.com").await;
    assert_eq!(by_domain["issuer"], format!("{login}/{CONTOSO}/v2.0"));
    assert_eq!(
        by_domain["token_endpoint"],
        format!("{login}/{CONTOSO}/oauth2/v2.0/token")
    );

    let (status, unknown) = fetch("nowhere.onmicrosoft.com").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown["error"], "invalid_tenant");
    assert_eq!(error_code(&unknown), 90002);
    let description = unknown["error_description"].as_str().unwrap();
    assert!(description.starts_with("AADSTS90002: Tenant 'nowhere.onmicrosoft.com' not found."));
    assert!(description.contains("\r\nTrace ID: ") && description.contains("\r\nTimestamp: "));
    let (_, malformed) = fetch("nowhere").await;
    assert_eq!(error_code(&malformed), 900023);

    assert_eq!(fake.discovery_fetches(), 7);
}

#[tokio::test]
async fn a_web_sign_in_yields_a_verifiable_id_token_once() {
    let fake = world().await;
    let code = code_for(&fake, "organizations", &[]).await;
    let (status, body) = redeem(&fake, &code, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert!(body["refresh_token"].is_string());

    let id_token = body["id_token"].as_str().unwrap();
    assert!(verify(&fake, id_token).await);
    assert_eq!(jwt_part(id_token, 0)["alg"], "RS256");
    let claims = jwt_part(id_token, 1);
    assert_eq!(claims["aud"], PORTAL.to_string());
    assert_eq!(
        claims["iss"],
        format!("{}/{CONTOSO}/v2.0", fake.login_url())
    );
    assert_eq!(claims["tid"], CONTOSO.to_string());
    assert_eq!(claims["nonce"], "n0nce");
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(claims["preferred_username"], "alice@contoso.com");
    assert_eq!(claims["email"], "alice@contoso.com");
    assert_eq!(claims["xms_edov"], true);
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 3600);

    let (status, replay) = redeem(&fake, &code, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(replay["error"], "invalid_grant");
    assert_eq!(error_code(&replay), 54005);
    assert_eq!(fake.token_requests(), 2);
}

#[tokio::test]
async fn without_a_signed_in_user_entra_asks_for_the_account() {
    let fake = world().await;
    fake.shared.state().signed_in = None;

    let page = authorize(&fake, "organizations", &[]).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("<label for=\"login_hint\">Email, phone, or Skype</label>"));
    assert!(html.contains("name=\"state\" value=\"st4te\""), "{html}");

    // "Next" asks again with the typed account as login_hint.
    let code = code_for(
        &fake,
        "organizations",
        &[("login_hint", "bob@contoso.onmicrosoft.com")],
    )
    .await;
    let (_, body) = redeem(&fake, &code, &[]).await;
    let claims = jwt_part(body["id_token"].as_str().unwrap(), 1);
    assert_eq!(claims["preferred_username"], "bob@contoso.onmicrosoft.com");
}

#[tokio::test]
async fn sub_is_pairwise_and_email_only_when_the_user_has_one() {
    let fake = world().await;
    let login_hint = [("login_hint", "bob@contoso.onmicrosoft.com")];
    let code = code_for(&fake, &CONTOSO.to_string(), &login_hint).await;
    let (_, body) = redeem(&fake, &code, &[]).await;
    let portal = jwt_part(body["id_token"].as_str().unwrap(), 1);
    assert_eq!(portal["preferred_username"], "bob@contoso.onmicrosoft.com");
    assert!(portal.get("email").is_none());
    assert!(portal.get("xms_edov").is_none());

    let other_app = fake
        .id_token_claims(MAILER, "bob@contoso.onmicrosoft.com", None)
        .unwrap();
    assert_eq!(portal["oid"], other_app["oid"]);
    assert_ne!(portal["sub"], other_app["sub"]);
}

#[tokio::test]
async fn the_token_endpoint_refuses_like_entra() {
    let fake = world().await;
    type Fields = &'static [(&'static str, &'static str)];
    let cases: [(Fields, StatusCode, &str, u64); 5] = [
        (
            &[("client_secret", "")],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
        ),
        (
            &[("client_secret", "nope")],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
        ),
        (
            &[("client_secret", OLD_SECRET)],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000222,
        ),
        (
            &[("code_verifier", "wrong")],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            501481,
        ),
        (
            &[("redirect_uri", OTHER_WEB_CALLBACK)],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            500112,
        ),
    ];
    for (extra, status, error, code_number) in cases {
        let code = code_for(&fake, "organizations", &[]).await;
        let (got_status, body) = redeem(&fake, &code, extra).await;
        assert_eq!(
            (got_status, body["error"].as_str()),
            (status, Some(error)),
            "{body}"
        );
        assert_eq!(error_code(&body), code_number, "{body}");
    }

    let (_, wrong) = redeem(&fake, "garbage", &[]).await;
    assert_eq!(error_code(&wrong), 70008);
    let description = wrong["error_description"].as_str().unwrap();
    assert!(description.starts_with("AADSTS70008: "));
    assert_eq!(
        wrong["error_uri"],
        format!("{}/error?code=70008", fake.login_url())
    );

    let code = code_for(&fake, "organizations", &[]).await;
    fake.advance_clock(Duration::from_secs(11 * 60));
    let (_, expired) = redeem(&fake, &code, &[]).await;
    assert_eq!(error_code(&expired), 70008);
}

#[tokio::test]
async fn the_wrong_secret_is_told_in_entras_words() {
    let fake = world().await;
    let code = code_for(&fake, "organizations", &[]).await;
    let (_, body) = redeem(&fake, &code, &[("client_secret", "nope")]).await;
    let description = body["error_description"].as_str().unwrap();
    let expected = format!(
        "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the \
         request is the client secret value, not the client secret ID, for a secret added to \
         app '{PORTAL}'.\r\nTrace ID: "
    );
    assert!(description.starts_with(&expected), "{description}");
    assert!(body["trace_id"].is_string() && body["correlation_id"].is_string());
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn http_basic_client_authentication_works() {
    let fake = world().await;
    let code = code_for(&fake, "organizations", &[]).await;
    let url = format!("{}/organizations/oauth2/v2.0/token", fake.login_url());
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", WEB_CALLBACK),
        ("code_verifier", VERIFIER),
    ];
    let response = http()
        .post(url)
        .basic_auth(PORTAL, Some(SECRET))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn public_clients_need_pkce_and_no_secret() {
    let fake = world().await;
    let desktop = [("redirect_uri", DESKTOP_CALLBACK)];
    let no_pkce = [
        ("redirect_uri", DESKTOP_CALLBACK),
        ("code_challenge", ""),
        ("code_challenge_method", ""),
    ];
    let refused = redirected(&authorize(&fake, "organizations", &no_pkce).await);
    assert_eq!(refused["error"], "invalid_request");
    assert!(refused["error_description"].starts_with("AADSTS9002325: "));

    let code = code_for(&fake, "organizations", &desktop).await;
    let (status, body) = redeem(&fake, &code, &[("redirect_uri", DESKTOP_CALLBACK)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), 700025);

    let code = code_for(&fake, "organizations", &desktop).await;
    let public = [("redirect_uri", DESKTOP_CALLBACK), ("client_secret", "")];
    let (status, body) = redeem(&fake, &code, &public).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_challenge_without_method_is_plain() {
    let fake = world().await;
    let code = code_for(&fake, "organizations", &[("code_challenge_method", "")]).await;
    let (_, body) = redeem(&fake, &code, &[]).await;
    assert_eq!(error_code(&body), 501481);
}

#[tokio::test]
async fn an_unregistered_redirect_uri_gets_entras_page_not_a_redirect() {
    let fake = world().await;
    let evil = "https://evil.example/steal";
    let response = authorize(&fake, "organizations", &[("redirect_uri", evil)]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get(LOCATION).is_none());
    let page = response.text().await.unwrap();
    assert!(
        page.contains("AADSTS50011") && page.contains(evil),
        "{page}"
    );

    let unknown_app = [("client_id", "00000000-1111-4222-8333-444444444444")];
    let response = authorize(&fake, &CONTOSO.to_string(), &unknown_app).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("AADSTS700016"));
}

#[tokio::test]
async fn sign_in_refusals_go_back_to_the_app() {
    let fake = world().await;
    let refusal = |params: HashMap<String, String>| {
        assert_eq!(params["state"], "st4te");
        assert!(params["error_uri"].contains("/error?code="));
        let description = params["error_description"].clone();
        (params["error"].clone(), description[..13].to_owned())
    };

    let carol = [("login_hint", "carol@fabrikam.onmicrosoft.com")];
    let wrong_directory = authorize(&fake, &CONTOSO.to_string(), &carol).await;
    assert_eq!(
        refusal(redirected(&wrong_directory)),
        ("invalid_request".to_owned(), "AADSTS50020: ".to_owned())
    );

    let single_tenant = [("client_id", "66666666-7777-4888-8999-aaaaaaaaaaaa")];
    let on_common = authorize(&fake, "common", &single_tenant).await;
    assert_eq!(refusal(redirected(&on_common)).1, "AADSTS50194: ");

    let dave = [("login_hint", "dave@outlook.com")];
    let personal = redirected(&authorize(&fake, "common", &dave).await);
    assert!(personal["error_description"].contains("from identity provider 'live.com'"));

    fake.cancel_next_sign_in();
    let cancelled = redirected(&authorize(&fake, "organizations", &[]).await);
    assert_eq!(cancelled["error"], "access_denied");
    assert_eq!(cancelled["error_subcode"], "cancel");
    assert!(cancelled["error_description"].starts_with("AADSTS65004: "));
    assert!(redirected(&authorize(&fake, "organizations", &[]).await).contains_key("code"));
}

#[tokio::test]
async fn personal_accounts_sign_in_with_the_consumers_tenant() {
    let fake = world().await;
    fake.sign_in_as("dave@outlook.com");
    let params = [
        ("client_id", "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff"),
        ("redirect_uri", DESKTOP_CALLBACK),
    ];
    let code = code_for(&fake, "common", &params).await;
    let form = [
        ("client_id", "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff"),
        ("redirect_uri", DESKTOP_CALLBACK),
        ("client_secret", ""),
    ];
    let (status, body) = redeem(&fake, &code, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = jwt_part(body["id_token"].as_str().unwrap(), 1);
    assert_eq!(claims["tid"], CONSUMERS_TENANT.to_string());
    assert_eq!(
        claims["iss"],
        format!("{}/{CONSUMERS_TENANT}/v2.0", fake.login_url())
    );
    assert!(
        claims["oid"]
            .as_str()
            .unwrap()
            .starts_with("00000000-0000-0000-")
    );
}

#[tokio::test]
async fn refresh_tokens_renew_and_unknown_ones_fail() {
    let fake = world().await;
    let code = code_for(&fake, "organizations", &[]).await;
    let (_, body) = redeem(&fake, &code, &[]).await;
    let refresh_token = body["refresh_token"].as_str().unwrap();
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "11111111-2222-4333-8444-555555555555"),
        ("client_secret", SECRET),
        ("refresh_token", refresh_token),
    ];
    let (status, renewed) = token(&fake, "organizations", &form).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert!(renewed["access_token"].is_string() && renewed["refresh_token"].is_string());

    let form = [form[0], form[1], form[2], ("refresh_token", "made-up")];
    let (status, refused) = token(&fake, "organizations", &form).await;
    assert_eq!(
        (status, error_code(&refused)),
        (StatusCode::BAD_REQUEST, 70000)
    );
}

async fn app_token(fake: &FakeMicrosoft, authority: &str, secret: &str) -> (StatusCode, Value) {
    let scope = format!("{}/.default", fake.graph_url());
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "66666666-7777-4888-8999-aaaaaaaaaaaa"),
        ("client_secret", secret),
        ("scope", scope.as_str()),
    ];
    token(fake, authority, &form).await
}

async fn inbox(fake: &FakeMicrosoft, token: &str, mailbox: &str) -> (StatusCode, Value) {
    let url = format!(
        "{}/v1.0/users/{mailbox}/mailFolders/inbox",
        fake.graph_url()
    );
    let response = http().get(url).bearer_auth(token).send().await.unwrap();
    (response.status(), json_body(response).await)
}

#[tokio::test]
async fn client_credentials_reach_the_mailboxes_they_are_allowed() {
    let fake = world().await;
    fake.set_mailbox_access(MAILER, "support@contoso.com", MailboxAccess::Granted);
    fake.set_mailbox_access(MAILER, "ceo@contoso.com", MailboxAccess::Denied);

    let (status, body) = app_token(&fake, "contoso.com", MAILER_SECRET).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 3599);
    let access_token = body["access_token"].as_str().unwrap();
    let claims = jwt_part(access_token, 1);
    assert_eq!(claims["roles"], json!(["Mail.ReadWrite", "Mail.Send"]));
    assert_eq!(claims["aud"], fake.graph_url());
    assert_eq!(claims["tid"], CONTOSO.to_string());
    assert_eq!(claims["appid"], MAILER.to_string());

    let (status, folder) = inbox(&fake, access_token, "Support@contoso.com").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(folder["displayName"], "Inbox");
    assert!(folder["totalItemCount"].is_u64() && folder["unreadItemCount"].is_u64());

    let (status, denied) = inbox(&fake, access_token, "ceo@contoso.com").await;
    assert_eq!(
        (status, denied["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("ErrorAccessDenied"))
    );
    assert!(
        denied["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[RAOP]")
    );

    let (status, missing) = inbox(&fake, access_token, "nobody@contoso.com").await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("ErrorInvalidUser"))
    );

    let (status, bogus) = inbox(&fake, "not-a-token", "support@contoso.com").await;
    assert_eq!(
        (status, bogus["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("InvalidAuthenticationToken"))
    );

    fake.advance_clock(Duration::from_secs(2 * 3600));
    let (status, expired) = inbox(&fake, access_token, "support@contoso.com").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        expired["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[tokio::test]
async fn client_credentials_refusals() {
    let fake = world().await;
    let fabrikam = FABRIKAM.to_string();
    let cases = [
        ("contoso.com", "nope", StatusCode::UNAUTHORIZED, 7000215),
        ("common", MAILER_SECRET, StatusCode::BAD_REQUEST, 50059),
        (
            fabrikam.as_str(),
            MAILER_SECRET,
            StatusCode::BAD_REQUEST,
            700016,
        ),
        ("nowhere.com", MAILER_SECRET, StatusCode::BAD_REQUEST, 90002),
    ];
    for (authority, secret, status, code) in cases {
        let (got, body) = app_token(&fake, authority, secret).await;
        assert_eq!(
            (got, error_code(&body)),
            (status, code),
            "{authority}: {body}"
        );
    }

    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "66666666-7777-4888-8999-aaaaaaaaaaaa"),
        ("client_secret", MAILER_SECRET),
        ("scope", "Mail.Read"),
    ];
    let (_, body) = token(&fake, "contoso.com", &form).await;
    assert_eq!(
        (body["error"].as_str(), error_code(&body)),
        (Some("invalid_scope"), 1002012)
    );
    assert_eq!(fake.token_requests(), 5);
}

#[tokio::test]
async fn an_app_without_mail_permission_is_denied_by_graph() {
    let fake = world().await;
    let in_a_year = OffsetDateTime::now_utc() + time::Duration::days(365);
    fake.add_app(FakeApp::new(MAILER, CONTOSO).secret(MAILER_SECRET, in_a_year));
    fake.set_mailbox_access(MAILER, "support@contoso.com", MailboxAccess::Granted);
    let (_, body) = app_token(&fake, &CONTOSO.to_string(), MAILER_SECRET).await;
    let access_token = body["access_token"].as_str().unwrap();
    assert!(jwt_part(access_token, 1).get("roles").is_none());
    let (status, denied) = inbox(&fake, access_token, "support@contoso.com").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        denied["error"]["message"],
        "Access is denied. Check credentials and try again."
    );
}

async fn send_mail(
    fake: &FakeMicrosoft,
    token: &str,
    mailbox: &str,
    body: &Value,
) -> (StatusCode, String) {
    let url = format!("{}/v1.0/users/{mailbox}/sendMail", fake.graph_url());
    let response = http()
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

fn graph_code(body: &str) -> String {
    let body: Value = serde_json::from_str(body).unwrap();
    body["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn graph_sends_mail_as_the_mailboxes_an_app_with_mail_send_may_reach() {
    let fake = world().await;
    fake.set_mailbox_access(MAILER, "support@contoso.com", MailboxAccess::Granted);
    fake.set_mailbox_access(MAILER, "ceo@contoso.com", MailboxAccess::Denied);
    let (_, body) = app_token(&fake, "contoso.com", MAILER_SECRET).await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    let message = json!({
        "message": {
            "subject": "Expiring",
            "body": { "contentType": "Text", "content": "The secret expires." },
            "toRecipients": [
                { "emailAddress": { "address": "it@acme.test" } },
                { "emailAddress": { "address": "ops@acme.test" } },
            ],
        },
        "saveToSentItems": false,
    });

    let (status, answer) = send_mail(&fake, &token, "support%40contoso.com", &message).await;
    assert_eq!((status, answer.as_str()), (StatusCode::ACCEPTED, ""));
    assert_eq!(
        fake.sent_mail(),
        vec![SentMail {
            app_id: MAILER,
            mailbox: "support@contoso.com".into(),
            to: vec!["it@acme.test".into(), "ops@acme.test".into()],
            subject: "Expiring".into(),
            content_type: "Text".into(),
            body: "The secret expires.".into(),
            save_to_sent_items: false,
        }]
    );

    let refusals = [
        (
            "ceo@contoso.com",
            &message,
            StatusCode::FORBIDDEN,
            "ErrorAccessDenied",
        ),
        (
            "nobody@contoso.com",
            &message,
            StatusCode::NOT_FOUND,
            "ErrorInvalidUser",
        ),
        (
            "support@contoso.com",
            &json!({ "message": { "subject": "x", "toRecipients": [] } }),
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRecipients",
        ),
        (
            "support@contoso.com",
            &json!({ "saveToSentItems": false }),
            StatusCode::BAD_REQUEST,
            "ErrorInvalidParameter",
        ),
    ];
    for (mailbox, body, status, code) in refusals {
        let (got, answer) = send_mail(&fake, &token, mailbox, body).await;
        assert_eq!(
            (got, graph_code(&answer).as_str()),
            (status, code),
            "{mailbox}: {answer}"
        );
    }
    let (status, answer) = send_mail(&fake, "not-a-token", "support@contoso.com", &message).await;
    assert_eq!(
        (status, graph_code(&answer).as_str()),
        (StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken")
    );

    // Without Mail.Send, even a mailbox the app may read refuses.
    let in_a_year = OffsetDateTime::now_utc() + time::Duration::days(365);
    fake.add_app(
        FakeApp::new(MAILER, CONTOSO)
            .secret(MAILER_SECRET, in_a_year)
            .application_role("Mail.ReadWrite"),
    );
    let (_, body) = app_token(&fake, "contoso.com", MAILER_SECRET).await;
    let reader = body["access_token"].as_str().unwrap();
    let (status, answer) = send_mail(&fake, reader, "support@contoso.com", &message).await;
    assert_eq!(
        (status, graph_code(&answer).as_str()),
        (StatusCode::FORBIDDEN, "ErrorAccessDenied")
    );
    assert!(answer.contains("Access is denied. Check credentials and try again."));
    assert_eq!(fake.sent_mail().len(), 1);
}

#[tokio::test]
async fn rotation_publishes_the_new_key_beside_the_previous_one() {
    let fake = world().await;
    let claims = fake
        .id_token_claims(PORTAL, "alice@contoso.com", None)
        .unwrap();
    let before = fake.mint_id_token(claims.clone(), Signing::CurrentKey);
    assert!(verify(&fake, &before).await);
    assert_eq!(jwks(&fake).await.len(), 1);

    fake.rotate_signing_key();
    let after = fake.mint_id_token(claims.clone(), Signing::CurrentKey);
    assert_ne!(jwt_part(&before, 0)["kid"], jwt_part(&after, 0)["kid"]);
    assert_eq!(jwks(&fake).await.len(), 2);
    assert!(verify(&fake, &before).await && verify(&fake, &after).await);

    fake.rotate_signing_key();
    assert!(!verify(&fake, &before).await);
    assert_eq!(fake.keys_fetches(), 6);
}

#[tokio::test]
async fn forged_tokens_do_not_verify() {
    let fake = world().await;
    let claims = fake
        .id_token_claims(PORTAL, "alice@contoso.com", Some("n0nce"))
        .unwrap();
    let unknown = fake.mint_id_token(claims.clone(), Signing::UnknownKey);
    assert!(!verify(&fake, &unknown).await);

    let none = fake.mint_id_token(claims.clone(), Signing::AlgNone);
    assert_eq!(jwt_part(&none, 0)["alg"], "none");
    assert!(none.ends_with('.'));

    let hs256 = fake.mint_id_token(claims.clone(), Signing::Hs256("secret".to_owned()));
    assert_eq!(jwt_part(&hs256, 0)["alg"], "HS256");
    assert_eq!(jwt_part(&hs256, 1), claims);
}

#[tokio::test]
async fn set_delay_slows_every_endpoint() {
    let fake = world().await;
    fake.set_delay(Some(Duration::from_millis(500)));
    let url = format!("{}/common/discovery/v2.0/keys", fake.login_url());
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(impatient.get(&url).send().await.unwrap_err().is_timeout());
    fake.set_delay(None);
    assert!(impatient.get(&url).send().await.is_ok());
}

#[tokio::test]
async fn form_post_answers_with_a_self_submitting_form() {
    let fake = world().await;
    let response = authorize(&fake, "organizations", &[("response_mode", "form_post")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(page.contains(&format!("action=\"{WEB_CALLBACK}\"")));
    assert!(page.contains("name=\"code\"") && page.contains("name=\"state\" value=\"st4te\""));
}

#[tokio::test]
async fn a_seed_file_builds_a_world() {
    let seed: Seed = serde_json::from_value(json!({
        "directories": [{ "tenant_id": CONTOSO, "verified_domains": ["contoso.com"] }],
        "apps": [{
            "client_id": MAILER,
            "home_tenant": CONTOSO,
            "secrets": [{ "value": MAILER_SECRET, "expires_at": "2099-01-01T00:00:00Z" }],
            "application_roles": ["Mail.Read"],
        }],
        "users": [{ "tenant_id": CONTOSO, "upn": "alice@contoso.com", "name": "Alice" }],
        "mailboxes": [{ "client_id": MAILER, "mailbox": "support@contoso.com", "access": "Granted" }],
        "sign_in_as": "alice@contoso.com",
    }))
    .unwrap();
    let fake = FakeMicrosoft::start().await;
    fake.apply_seed(&seed);
    let (_, body) = app_token(&fake, "contoso.com", MAILER_SECRET).await;
    let (status, _) = inbox(
        &fake,
        body["access_token"].as_str().unwrap(),
        "support@contoso.com",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// Client assertions: a JWT signed by the private key of an uploaded certificate, with
/// everything Entra checks made wrong once.
#[tokio::test]
async fn client_assertions_are_checked_like_entra_and_used_once() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use secrecy::ExposeSecret as _;

    let fake = world().await;
    let now = OffsetDateTime::now_utc();
    let year = time::Duration::days(365);
    let uploaded = portico::crypto::certificates::generate("Uploaded", now, year).unwrap();
    let stranger = portico::crypto::certificates::generate("Never uploaded", now, year).unwrap();
    fake.upload_certificate(MAILER, uploaded.certificate.pem());
    let endpoint = format!("{}/{CONTOSO}/oauth2/v2.0/token", fake.login_url());

    // An assertion about MAILER naming `named`'s certificate, signed by `signer`'s key.
    let assertion = |named: &portico::crypto::certificates::GeneratedCertificate,
                     signer: &portico::crypto::certificates::GeneratedCertificate,
                     claims: Value| {
        let mut header = Header::new(Algorithm::RS256);
        header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(Sha256::digest(named.certificate.der())));
        let key = EncodingKey::from_rsa_pem(signer.private_key.expose_secret().as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let claims = |aud: &str, exp: OffsetDateTime, jti: &str| {
        json!({
            "aud": aud, "iss": MAILER.to_string(), "sub": MAILER.to_string(), "jti": jti,
            "nbf": (exp - time::Duration::minutes(10)).unix_timestamp(),
            "exp": exp.unix_timestamp(),
        })
    };
    let present = |jwt: String| {
        let fake = fake.clone();
        async move {
            let scope = format!("{}/.default", fake.graph_url());
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", "66666666-7777-4888-8999-aaaaaaaaaaaa"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", jwt.as_str()),
                ("scope", scope.as_str()),
            ];
            token(&fake, &CONTOSO.to_string(), &form).await
        }
    };
    let code = |body: &Value| body["error_codes"][0].as_u64().unwrap_or(0);
    let soon = now + time::Duration::minutes(5);

    let good = assertion(&uploaded, &uploaded, claims(&endpoint, soon, "first"));
    let (status, body) = present(good.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        jwt_part(body["access_token"].as_str().unwrap(), 1)["roles"],
        json!(["Mail.ReadWrite", "Mail.Send"])
    );

    let cases = [
        // The same assertion again.
        (good, 70002),
        (
            assertion(
                &uploaded,
                &uploaded,
                claims("https://elsewhere/token", soon, "aud"),
            ),
            700023,
        ),
        (
            assertion(
                &uploaded,
                &uploaded,
                claims(&endpoint, now - time::Duration::minutes(20), "old"),
            ),
            700024,
        ),
        (
            assertion(&stranger, &stranger, claims(&endpoint, soon, "unknown")),
            700027,
        ),
        // The uploaded certificate named, another key signing.
        (
            assertion(&uploaded, &stranger, claims(&endpoint, soon, "forged")),
            700027,
        ),
    ];
    for (jwt, expected) in cases {
        let (status, body) = present(jwt).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(code(&body), expected, "{body}");
    }
}

/// The authorization-code grant checks a client assertion as the client-credentials grant
/// does: Sign in with Microsoft with a certificate redeems its codes this way.
#[tokio::test]
async fn a_code_is_redeemed_with_a_client_assertion_checked_like_entra() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use secrecy::ExposeSecret as _;

    let fake = world().await;
    let now = OffsetDateTime::now_utc();
    let year = time::Duration::days(365);
    let uploaded = portico::crypto::certificates::generate("Uploaded", now, year).unwrap();
    let stranger = portico::crypto::certificates::generate("Never uploaded", now, year).unwrap();
    fake.upload_certificate(PORTAL, uploaded.certificate.pem());
    let endpoint = format!("{}/organizations/oauth2/v2.0/token", fake.login_url());
    let assertion = |named: &portico::crypto::certificates::GeneratedCertificate,
                     aud: &str,
                     exp: OffsetDateTime,
                     jti: &str| {
        let mut header = Header::new(Algorithm::PS256);
        header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(Sha256::digest(named.certificate.der())));
        let claims = json!({
            "aud": aud, "iss": PORTAL.to_string(), "sub": PORTAL.to_string(), "jti": jti,
            "nbf": (exp - time::Duration::minutes(10)).unix_timestamp(),
            "exp": exp.unix_timestamp(),
        });
        let key = EncodingKey::from_rsa_pem(named.private_key.expose_secret().as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let present = |jwt: String| {
        let fake = fake.clone();
        async move {
            let code = code_for(&fake, "organizations", &[]).await;
            let form = [
                ("client_secret", ""),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", jwt.as_str()),
            ];
            redeem(&fake, &code, &form).await
        }
    };
    let soon = now + time::Duration::minutes(5);

    let good = assertion(&uploaded, &endpoint, soon, "first");
    let (status, body) = present(good.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(verify(&fake, body["id_token"].as_str().unwrap()).await);

    let cases = [
        (good, 70002),
        (
            assertion(&uploaded, "https://elsewhere/token", soon, "aud"),
            700023,
        ),
        (
            assertion(
                &uploaded,
                &endpoint,
                now - time::Duration::minutes(20),
                "old",
            ),
            700024,
        ),
        (assertion(&stranger, &endpoint, soon, "unknown"), 700027),
    ];
    for (jwt, expected) in cases {
        let (status, body) = present(jwt).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(error_code(&body), expected, "{body}");
    }
}
