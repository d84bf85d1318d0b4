//! Security headers on every answer (pages, redirects, errors, assets), cookies as
//! configured, and pages that keep to their own Content-Security-Policy.

use std::collections::{BTreeMap, BTreeSet};

use crate::security_isolation::{calls, populate, served_routes};
use crate::support::{Backend, Page, TestApp, TestDatabase, spawn_app, spawn_app_with};

/// Sources that would let injected markup run script.
const UNSAFE_SCRIPT_SOURCES: [&str; 7] = [
    "'unsafe-inline'",
    "'unsafe-eval'",
    "'unsafe-hashes'",
    "*",
    "data:",
    "http:",
    "https:",
];

fn header<'a>(page: &'a Page, name: &str) -> Option<&'a str> {
    page.headers.get(name).map(|value| value.to_str().unwrap())
}

/// The policy's directives, by name.
fn directives(policy: &str) -> BTreeMap<String, Vec<String>> {
    policy
        .split(';')
        .filter_map(|directive| {
            let mut words = directive.split_whitespace();
            let name = words.next()?.to_ascii_lowercase();
            Some((name, words.map(str::to_owned).collect()))
        })
        .collect()
}

#[track_caller]
fn assert_security_headers(what: &str, page: &Page) {
    let policy = header(page, "content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"));
    let policy = directives(policy);
    let scripts = policy
        .get("script-src")
        .or_else(|| policy.get("default-src"))
        .unwrap_or_else(|| panic!("{what}: the policy does not restrict scripts: {policy:?}"));
    for unsafe_source in UNSAFE_SCRIPT_SOURCES {
        assert!(
            !scripts.iter().any(|source| source == unsafe_source),
            "{what}: scripts may come from {unsafe_source}"
        );
    }
    assert_eq!(
        policy.get("object-src").map(Vec::as_slice),
        Some(["'none'".to_owned()].as_slice()),
        "{what}"
    );
    let no_framing = policy.get("frame-ancestors").map(Vec::as_slice)
        == Some(["'none'".to_owned()].as_slice())
        || header(page, "x-frame-options").is_some_and(|v| v.eq_ignore_ascii_case("deny"));
    assert!(no_framing, "{what}: the page may be framed");
    assert_eq!(
        header(page, "x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    let referrer = header(page, "referrer-policy").unwrap_or_default();
    assert!(
        [
            "no-referrer",
            "same-origin",
            "strict-origin",
            "strict-origin-when-cross-origin"
        ]
        .contains(&referrer),
        "{what}: Referrer-Policy {referrer:?}"
    );
}

/// The markup needs no exception from the policy: no inline script or style, no event
/// handler attributes, no `javascript:` URLs. Returns the `/static/` assets it uses.
#[track_caller]
fn assert_keeps_to_the_policy(what: &str, html: &str) -> BTreeSet<String> {
    let mut assets = BTreeSet::new();
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("javascript:"), "{what}: javascript: URL");
    assert!(!lower.contains("<style"), "{what}: inline <style>");
    for tag in lower.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or_default();
        let name = tag.split_whitespace().next().unwrap_or_default();
        for attribute in tag.split_whitespace().skip(1) {
            let attribute_name = attribute.split('=').next().unwrap_or_default();
            assert!(
                !(attribute_name.len() > 2
                    && attribute_name.starts_with("on")
                    && attribute_name.chars().all(|c| c.is_ascii_alphabetic())),
                "{what}: event handler attribute in <{tag}>"
            );
            assert_ne!(attribute_name, "style", "{what}: inline style in <{tag}>");
            for prefix in ["src=\"", "href=\""] {
                if let Some(url) = attribute.strip_prefix(prefix)
                    && url.starts_with("/static/")
                {
                    assets.insert(url.split('"').next().unwrap().to_owned());
                }
            }
        }
        if name == "script" {
            assert!(tag.contains(" src="), "{what}: inline <script>");
        }
    }
    assets
}

/// Every page a signed-in admin opens, every error and redirect, and every asset they
/// use: all carry the headers, and no page needs an exception from its policy.
#[tokio::test]
async fn every_answer_carries_the_security_headers_and_every_page_keeps_to_its_policy() {
    let app = spawn_app(Backend::Sqlite).await;
    let alpha = populate(&app, "alpha", "Alpha").await;
    let token = alpha.admin.get("/t/alpha/").await.csrf_token();
    let mut pages: Vec<(String, Page)> = Vec::new();
    for route in served_routes(&app) {
        for call in calls(&route, "alpha", &alpha, &token) {
            if call.method == "GET" {
                let what = format!("admin GET {}", call.path);
                pages.push((what, alpha.admin.get(&call.path).await));
            }
        }
    }
    let stranger = app.browser();
    pages.push(("front page".into(), stranger.get("/").await));
    pages.push(("sign-in".into(), stranger.get("/t/alpha/login").await));
    pages.push((
        "sign-in refused".into(),
        stranger
            .submit(
                "/t/alpha/login",
                "/t/alpha/login",
                &[("email", "nobody@alpha.test"), ("password", "wrong")],
            )
            .await,
    ));
    pages.push((
        "redirect to sign-in".into(),
        stranger.get("/t/alpha/").await,
    ));
    pages.push(("404".into(), stranger.get("/nothing/here").await));
    pages.push((
        "403 without form token".into(),
        stranger.post_raw("/t/alpha/login", &[]).await,
    ));
    pages.push((
        "405".into(),
        stranger.request("DELETE", "/healthz", &[]).await,
    ));
    pages.push((
        "403 for an agent".into(),
        alpha.agent.get("/t/alpha/users").await,
    ));
    pages.push((
        "400 form error".into(),
        alpha
            .admin
            .submit("/t/alpha/segments", "/t/alpha/segments", &[("name", "")])
            .await,
    ));
    let big = "x".repeat(70 * 1024);
    pages.push((
        "413".into(),
        stranger
            .post_raw("/t/alpha/login", &[("csrf_token", &token), ("email", &big)])
            .await,
    ));
    assert!(pages.iter().any(|(_, page)| page.status == 413));

    let mut assets = BTreeSet::new();
    for (what, page) in &pages {
        assert!(page.status.as_u16() < 500, "{what}: {}", page.status);
        assert_security_headers(what, page);
        let html = header(page, "content-type").is_some_and(|t| t.starts_with("text/html"));
        if html {
            assert_eq!(header(page, "cache-control"), Some("no-store"), "{what}");
            assets.extend(assert_keeps_to_the_policy(what, &page.body));
        }
    }
    // Every asset a page uses is served, with the headers and its own content type.
    assert!(assets.iter().any(|a| a.starts_with("/static/portico.js")));
    for asset in assets {
        let page = stranger.get(&asset).await;
        page.assert_status(200);
        assert_security_headers(&asset, &page);
        let extension = asset.split('?').next().unwrap().rsplit('.').next().unwrap();
        let expected = match extension {
            "css" => "text/css",
            "js" => "text/javascript",
            "svg" => "image/svg+xml",
            other => panic!("{asset}: which content type has .{other}?"),
        };
        assert!(
            header(&page, "content-type").is_some_and(|t| t.starts_with(expected)),
            "{asset}: {:?}",
            header(&page, "content-type")
        );
    }
}

/// The attributes, lowercased, of each cookie Portico sets: the form-token cookie of a fresh
/// sign-in page, and the session cookie of the sign-in. Returns the sign-in page too.
async fn cookie_attributes(app: &TestApp) -> (Page, Vec<BTreeSet<String>>) {
    let tenant = app.create_tenant("acme", "Acme").await;
    app.create_user(&tenant, "agent@acme.test", portico::domain::Role::Agent)
        .await;
    let browser = app.browser();
    let page = browser.get("/t/acme/login").await;
    page.assert_status(200);
    // Sent by hand: over the tests' plain http a browser would keep a Secure cookie to itself.
    let form_cookie = page
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap())
        .find(|value| value.starts_with("portico_form="))
        .and_then(|value| value.split(';').next())
        .unwrap_or_else(|| panic!("no form cookie: {:?}", page.headers))
        .to_owned();
    let response = browser
        .client
        .post(app.url("/t/acme/login"))
        .header("cookie", form_cookie)
        .form(&[
            ("csrf_token", page.csrf_token().as_str()),
            ("email", "agent@acme.test"),
            ("password", crate::support::PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let signed_in = Page::read(response).await;
    signed_in.assert_redirect("/t/acme/");
    let cookie = |page: &Page, name: &str| {
        let cookie = page
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .find(|value| value.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} cookie: {:?}", page.headers));
        cookie
            .split(';')
            .skip(1)
            .map(|attribute| attribute.trim().to_ascii_lowercase())
            .collect()
    };
    let cookies = vec![
        cookie(&page, "portico_form"),
        cookie(&signed_in, "portico_session"),
    ];
    (page, cookies)
}

#[tokio::test]
async fn https_deployments_get_hsts_and_secure_cookies() {
    let database = TestDatabase::create(Backend::Sqlite).await;
    let app = spawn_app_with(database, |config| {
        config.base_url = "https://portal.example.com".parse().unwrap();
    })
    .await;
    let (page, cookies) = cookie_attributes(&app).await;
    let hsts = directives(header(&page, "strict-transport-security").unwrap_or_default());
    let max_age: u64 = hsts
        .keys()
        .find_map(|directive| directive.strip_prefix("max-age="))
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or_else(|| panic!("no HSTS max-age: {:?}", page.headers));
    assert!(max_age >= 365 * 24 * 3600, "HSTS for {max_age} s only");
    for cookie in cookies {
        for attribute in ["secure", "httponly", "samesite=lax", "path=/"] {
            assert!(
                cookie.contains(attribute),
                "{attribute} missing: {cookie:?}"
            );
        }
        assert!(
            !cookie.iter().any(|a| a.starts_with("domain=")),
            "{cookie:?}"
        );
    }
}

#[tokio::test]
async fn plain_http_deployments_keep_httponly_samesite_cookies_without_secure() {
    let app = spawn_app(Backend::Sqlite).await;
    let (page, cookies) = cookie_attributes(&app).await;
    assert_eq!(header(&page, "strict-transport-security"), None);
    for cookie in cookies {
        for attribute in ["httponly", "samesite=lax", "path=/"] {
            assert!(
                cookie.contains(attribute),
                "{attribute} missing: {cookie:?}"
            );
        }
        // Over plain http a Secure cookie would never come back: sign-in would not work.
        assert!(!cookie.contains("secure"), "{cookie:?}");
    }
}
