//! Tenant isolation as a matrix over every route the router serves, with every method it
//! takes (both read from the router itself): an admin of one tenant on another's paths and
//! with another's ids of every kind (users, one of them linked to a Microsoft identity,
//! credentials, segments, mailboxes, connections, one-time links), also in form fields; an
//! agent on admin routes; a signed-out client everywhere. Nothing answers 200 with another's
//! data, nothing answers 500, and nothing of the other tenant changes.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::StreamExt as _;
use portico::domain::Role;
use portico::store::tenants::Tenant;
use portico::web::router::{Access, routes};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::on_both_backends;
use crate::support::{Backend, Browser, PASSWORD, Page, TestApp, default_secret_expiry, spawn_app};

on_both_backends!(
    the_router_serves_exactly_the_route_table,
    another_tenants_admin_finds_nothing_by_path_or_id,
    agents_are_refused_on_every_admin_route,
    signed_out_clients_reach_no_tenant_route,
);

/// Requests in flight at once in a sweep: enough to be quick, few enough for two cores.
const PARALLEL: usize = 6;

/// A route as the router itself holds it: path and the methods it answers.
#[derive(Debug)]
pub(crate) struct ServedRoute {
    pub path: String,
    pub access: Access,
    pub methods: BTreeSet<String>,
}

/// The routes of the real router, read from the router (its `Debug` output names every
/// path and the `Allow` value of each), joined with the table's access classes. A route
/// the router serves but the table lacks fails here.
pub(crate) fn served_routes(app: &TestApp) -> Vec<ServedRoute> {
    let router = format!("{:?}", portico::web::router::router(app.state.clone()));
    // The fallback router comes after the routes proper.
    let routes_part = router.split("fallback_router:").next().unwrap();
    let mut paths = BTreeMap::new();
    let mut allowed = BTreeMap::new();
    for piece in routes_part.split("RouteId(").skip(1) {
        let (id, rest) = piece.split_once(')').unwrap();
        let id: u32 = id.parse().unwrap();
        if let Some(path) = rest.strip_prefix(": \"") {
            paths.insert(id, path.split('"').next().unwrap().to_owned());
        } else if let Some((_, allow)) = rest.split_once("allow_header: Bytes(b\"") {
            let methods: BTreeSet<String> = allow
                .split('"')
                .next()
                .unwrap()
                .split(',')
                .map(str::to_owned)
                .collect();
            allowed.insert(id, methods);
        }
    }
    assert!(
        paths.len() > 10 && paths.len() == allowed.len(),
        "the router's Debug output changed ({} paths, {} method sets): update served_routes",
        paths.len(),
        allowed.len()
    );
    let table: BTreeMap<&str, Access> = routes()
        .into_iter()
        .map(|route| (route.path, route.access))
        .collect();
    paths
        .into_iter()
        .map(|(id, path)| {
            let access = *table.get(path.as_str()).unwrap_or_else(|| {
                panic!("the router serves {path}, which is not in router::routes()")
            });
            ServedRoute {
                path,
                access,
                methods: allowed.remove(&id).unwrap(),
            }
        })
        .collect()
}

/// Everything one tenant holds: one object of every kind, and browsers of its people.
pub(crate) struct TenantObjects {
    pub tenant: Tenant,
    pub admin: Browser,
    pub agent: Browser,
    /// The ids of its objects, by the path segment that names their kind: a user linked to
    /// a Microsoft account and one not, a credential, a connection, a segment, an IMAP and
    /// a Graph mailbox.
    pub ids: BTreeMap<&'static str, Vec<String>>,
    /// The id of every row of this tenant, whatever its kind (audit events aside).
    pub all_ids: Vec<String>,
    pub link_token: String,
    /// Texts of this tenant that no other tenant may ever be shown.
    pub secrets: Vec<String>,
}

fn location_id(page: &Page) -> String {
    let location = page
        .location
        .clone()
        .unwrap_or_else(|| panic!("not created: {} {}", page.status, page.body));
    location
        .split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

/// A tenant with an admin, an agent linked to a Microsoft account, a one-time link, Sign
/// in with Microsoft settings, a Graph credential, a segment with an IMAP and a Graph
/// mailbox, and an OAuth connection; all names carry `label` so leaks are easy to spot.
pub(crate) async fn populate(app: &TestApp, slug: &str, label: &str) -> TenantObjects {
    let tenant = app
        .create_tenant(slug, &format!("{label} Corporation"))
        .await;
    let domain = format!("{}.test", label.to_lowercase());
    let admin_email = format!("admin@{domain}");
    let agent_email = format!("agent@{domain}");
    let admin_id = app.create_user(&tenant, &admin_email, Role::Admin).await;
    let agent_id = app.create_user(&tenant, &agent_email, Role::Agent).await;
    portico::store::identities::link(
        &app.state.db,
        &tenant.id,
        &agent_id,
        Uuid::new_v4(),
        Uuid::new_v4(),
        &format!("{label}-identity@{domain}"),
    )
    .await
    .unwrap();
    let admin = app.browser();
    admin
        .sign_in(slug, &admin_email, PASSWORD)
        .await
        .assert_redirect(&format!("/t/{slug}/"));
    let agent = app.browser();
    agent
        .sign_in(slug, &agent_email, PASSWORD)
        .await
        .assert_redirect(&format!("/t/{slug}/"));

    let base = format!("/t/{slug}");
    let user_page = format!("{base}/users/{}", agent_id.as_str());
    let link_page = admin
        .submit(&user_page, &format!("{user_page}/microsoft-link"), &[])
        .await;
    let link_token = link_page
        .body
        .split("/auth/microsoft/link/")
        .nth(1)
        .unwrap_or_else(|| panic!("no link in {}", link_page.body))
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_')
        .next()
        .unwrap()
        .to_owned();

    let settings = format!("{base}/settings/microsoft-sign-in");
    let directory = Uuid::new_v4().to_string();
    admin
        .submit(
            &settings,
            &settings,
            &[
                ("client_id", &Uuid::new_v4().to_string()),
                ("directory", &directory),
                ("cloud", "global"),
                ("enabled", "on"),
                ("client_secret", &format!("{label}-sign-in-secret")),
                ("secret_expires_on", &default_secret_expiry()),
            ],
        )
        .await
        .assert_redirect(&format!("{settings}?saved=1"));
    let expires = (OffsetDateTime::now_utc() + Duration::days(90))
        .date()
        .to_string();
    let credential = location_id(
        &admin
            .submit(
                &format!("{base}/external-apis/new"),
                &format!("{base}/external-apis"),
                &[
                    ("name", &format!("{label} Credential")),
                    ("client_id", &Uuid::new_v4().to_string()),
                    ("directory", &directory),
                    ("cloud", "global"),
                    ("client_secret", &format!("{label}-graph-secret")),
                    ("secret_expires_on", &expires),
                ],
            )
            .await,
    );
    let connection = location_id(
        &admin
            .submit(
                &format!("{base}/oauth-connections/new"),
                &format!("{base}/oauth-connections"),
                &[
                    ("name", &format!("{label} Connection")),
                    ("client_id", &Uuid::new_v4().to_string()),
                    ("directory", &directory),
                    ("cloud", "global"),
                    ("purpose", "imap"),
                    ("client_secret", &format!("{label}-oauth-secret")),
                    ("secret_expires_on", &default_secret_expiry()),
                ],
            )
            .await,
    );
    let segments = format!("{base}/segments");
    let segment = location_id(
        &admin
            .submit(
                &segments,
                &segments,
                &[("name", &format!("{label} Segment")), ("description", "")],
            )
            .await,
    );
    let new_mailbox = format!("{base}/segments/{segment}/mailboxes/new");
    let create_mailbox = format!("{base}/segments/{segment}/mailboxes");
    let mailbox = location_id(
        &admin
            .submit(
                &new_mailbox,
                &create_mailbox,
                &[
                    ("name", &format!("{label} Mailbox")),
                    ("email", &format!("inbox@{domain}")),
                    ("protocol", "imap"),
                    ("direction", "incoming"),
                    ("host", "127.0.0.1"),
                    ("port", "1"),
                    ("security", "tls"),
                    ("username", &format!("inbox@{domain}")),
                    ("authentication", "password"),
                    ("password", &format!("{label}-mailbox-password")),
                    ("enabled", "on"),
                ],
            )
            .await,
    );
    let graph_mailbox = location_id(
        &admin
            .submit(
                &new_mailbox,
                &create_mailbox,
                &[
                    ("name", &format!("{label} Graph Mailbox")),
                    ("email", &format!("graph@{domain}")),
                    ("protocol", "graph"),
                    ("direction", "both"),
                    ("graph_credential_id", &credential),
                    ("enabled", "on"),
                ],
            )
            .await,
    );

    let all_ids = app
        .all_rows()
        .await
        .into_iter()
        .filter(|(table, columns)| {
            !table.ends_with("audit_events")
                && columns
                    .iter()
                    .any(|(name, value)| name == "tenant_id" && value == tenant.id.as_str())
        })
        .filter_map(|(_, columns)| {
            columns
                .into_iter()
                .find(|(name, _)| name == "id")
                .map(|(_, value)| value)
        })
        .collect();
    let ids = BTreeMap::from([
        (
            "users",
            vec![agent_id.as_str().to_owned(), admin_id.as_str().to_owned()],
        ),
        ("external-apis", vec![credential]),
        ("oauth-connections", vec![connection]),
        ("segments", vec![segment]),
        ("mailboxes", vec![mailbox, graph_mailbox]),
    ]);
    TenantObjects {
        tenant,
        admin,
        agent,
        ids,
        all_ids,
        link_token,
        secrets: vec![format!("{label} "), domain],
    }
}

/// Every request a route answers: each method it takes, on `slug`, with each id of
/// `objects` of the kind the route names.
pub(crate) fn calls(
    route: &ServedRoute,
    slug: &str,
    objects: &TenantObjects,
    token: &str,
) -> Vec<Call> {
    let kind = route
        .path
        .split("/{id}")
        .next()
        .and_then(|before| before.rsplit('/').next())
        .unwrap_or_default();
    let ids = if route.path.contains("{id}") {
        objects.ids.get(kind).cloned().unwrap_or_else(|| {
            panic!(
                "{}: say in populate() which kind of object {{id}} names here",
                route.path
            )
        })
    } else {
        vec![String::new()]
    };
    let mut calls = Vec::new();
    for id in ids {
        let path = route
            .path
            .replace("{slug}", slug)
            .replace("{id}", &id)
            .replace("{token}", &objects.link_token)
            .replace("{file}", "portico.css");
        for method in &route.methods {
            calls.push(Call {
                method: method.clone(),
                path: path.clone(),
                fields: plausible_fields(token),
            });
        }
    }
    calls
}

/// Fields every form might want, filled in plausibly, plus the form token.
fn plausible_fields(token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("csrf_token", token.to_owned()),
        ("name", "Intruder".into()),
        ("display_name", "Intruder".into()),
        ("email", "intruder@evil.test".into()),
        ("role", "agent".into()),
        ("status", "active".into()),
        ("password", "intruder password 123".into()),
        ("current_password", PASSWORD.into()),
        ("new_password", "intruder password 123".into()),
        ("description", "taken over".into()),
        ("mailbox", "intruder@evil.test".into()),
        ("login_hint", "intruder@evil.test".into()),
    ]
}

pub(crate) struct Call {
    pub method: String,
    pub path: String,
    pub fields: Vec<(&'static str, String)>,
}

/// Sends every call from `browser`, a few at a time; returns each with its answer.
pub(crate) async fn send_all(browser: &Browser, calls: Vec<Call>) -> Vec<(Call, Page)> {
    futures_util::stream::iter(calls)
        .map(|call| async move {
            let page = send(browser, &call).await;
            (call, page)
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await
}

async fn send(browser: &Browser, call: &Call) -> Page {
    let fields: Vec<(&str, &str)> = call
        .fields
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    browser.request(&call.method, &call.path, &fields).await
}

/// Fails with the rows that differ, not two walls of rows.
#[track_caller]
pub(crate) fn assert_unchanged(before: &[String], after: &[String]) {
    let gone: Vec<&String> = before.iter().filter(|row| !after.contains(row)).collect();
    let new: Vec<&String> = after.iter().filter(|row| !before.contains(row)).collect();
    assert!(
        gone.is_empty() && new.is_empty(),
        "the tenant's data changed\nbefore: {gone:#?}\nafter: {new:#?}"
    );
}

#[track_caller]
fn assert_answer(call: &Call, page: &Page, allowed: &[u16], secrets: &[String]) {
    assert!(
        allowed.contains(&page.status.as_u16()),
        "{} {} answered {} (expected one of {allowed:?}): {}",
        call.method,
        call.path,
        page.status,
        page.body
    );
    for secret in secrets {
        assert!(
            !page.body.contains(secret.as_str()),
            "{} {} showed {secret:?}: {}",
            call.method,
            call.path,
            page.body
        );
    }
}

async fn the_router_serves_exactly_the_route_table(backend: Backend) {
    let app = spawn_app(backend).await;
    let served = served_routes(&app);
    let table: Vec<&str> = routes().iter().map(|route| route.path).collect();
    let unique: BTreeSet<&str> = table.iter().copied().collect();
    assert_eq!(unique.len(), table.len(), "a path is twice in the table");
    assert_eq!(
        served
            .iter()
            .map(|route| route.path.as_str())
            .collect::<BTreeSet<_>>(),
        unique,
        "the router and router::routes() differ"
    );
    for route in &served {
        assert!(!route.methods.is_empty(), "{}", route.path);
        // Only what anyone may open lives outside /t/{slug}/; the rest is the tenant's.
        if route.access != Access::Public {
            assert!(route.path.starts_with("/t/{slug}/"), "{}", route.path);
        }
    }
}

async fn another_tenants_admin_finds_nothing_by_path_or_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let alpha = populate(&app, "alpha", "Alphaone").await;
    let beta = populate(&app, "beta", "Betahidden").await;
    let beta_before = app.tenant_rows(beta.tenant.id.as_str()).await;
    let token = alpha.admin.get("/t/alpha/").await.csrf_token();
    let served = served_routes(&app);
    let tenant_routes = || served.iter().filter(|r| r.access != Access::Public);

    // Beta's paths with Beta's ids, and Alpha's paths with Beta's ids: every method of
    // every tenant route answers 404 and shows nothing of Beta.
    let mut probes = Vec::new();
    for route in tenant_routes() {
        probes.extend(calls(route, "beta", &beta, &token));
        if route.path.contains("{id}") {
            probes.extend(calls(route, "alpha", &beta, &token));
        }
    }
    for (call, page) in send_all(&alpha.admin, probes).await {
        assert_answer(&call, &page, &[404], &beta.secrets);
    }

    // Beta's one-time link under Alpha's path is no link at all: it answers exactly as a
    // made-up one, and starts no sign-in.
    let link_route = "/t/{slug}/auth/microsoft/link/{token}";
    assert!(served.iter().any(|r| r.path == link_route));
    let beta_link = format!("/t/alpha/auth/microsoft/link/{}", beta.link_token);
    let made_up = format!("/t/alpha/auth/microsoft/link/{}", Uuid::new_v4().simple());
    for method in ["GET", "POST"] {
        let fields = [("csrf_token", token.as_str())];
        let stolen = alpha.admin.request(method, &beta_link, &fields).await;
        let unknown = alpha.admin.request(method, &made_up, &fields).await;
        assert_eq!(stolen.status, unknown.status, "{method} {}", stolen.body);
        assert!(stolen.location.is_none(), "{method} {beta_link} redirected");
        for secret in &beta.secrets {
            stolen.assert_lacks(secret);
        }
    }

    // Alpha's own objects, with Beta's ids in every field that names an object: refused
    // or ignored, never stored. One at a time: these really change Alpha's objects, and
    // deletions come last so the other forms still find theirs.
    let mut posts: Vec<&ServedRoute> = served
        .iter()
        .filter(|r| r.access == Access::Admin && r.methods.contains("POST"))
        .collect();
    posts.sort_by_key(|route| route.path.ends_with("/delete"));
    for route in posts {
        for variant in [
            [("protocol", "graph"), ("authentication", "password")],
            [("protocol", "imap"), ("authentication", "oauth")],
        ] {
            let mut call = calls(route, "alpha", &alpha, &token).remove(0);
            call.method = "POST".into();
            call.fields
                .extend(variant.map(|(name, value)| (name, value.to_owned())));
            call.fields.extend([
                ("direction", "incoming".into()),
                ("host", "127.0.0.1".into()),
                ("port", "1".into()),
                ("security", "tls".into()),
                ("username", "intruder".into()),
                ("graph_credential_id", beta.ids["external-apis"][0].clone()),
                (
                    "oauth_connection_id",
                    beta.ids["oauth-connections"][0].clone(),
                ),
                ("segment_id", beta.ids["segments"][0].clone()),
            ]);
            let page = send(&alpha.admin, &call).await;
            assert_answer(&call, &page, &[200, 303, 400, 404, 409], &beta.secrets);
        }
    }
    for row in app.tenant_rows(alpha.tenant.id.as_str()).await {
        for id in &beta.all_ids {
            assert!(
                !row.contains(id.as_str()),
                "Alpha's row refers to Beta's {id}: {row}"
            );
        }
    }

    assert_unchanged(
        &beta_before,
        &app.tenant_rows(beta.tenant.id.as_str()).await,
    );
    beta.admin.get("/t/beta/users").await.assert_status(200);
}

async fn agents_are_refused_on_every_admin_route(backend: Backend) {
    let app = spawn_app(backend).await;
    let alpha = populate(&app, "alpha", "Alphahidden").await;
    let before = app.tenant_rows(alpha.tenant.id.as_str()).await;
    let token = alpha.agent.get("/t/alpha/").await.csrf_token();
    let served = served_routes(&app);

    let mut probes = Vec::new();
    for route in served.iter().filter(|r| r.access == Access::Admin) {
        probes.extend(calls(route, "alpha", &alpha, &token));
    }
    for (call, page) in send_all(&alpha.agent, probes).await {
        assert_answer(&call, &page, &[403], &alpha.secrets);
    }
    assert_unchanged(&before, &app.tenant_rows(alpha.tenant.id.as_str()).await);
    // The agent's own pages still work.
    alpha.agent.get("/t/alpha/").await.assert_status(200);
}

async fn signed_out_clients_reach_no_tenant_route(backend: Backend) {
    let app = spawn_app(backend).await;
    let alpha = populate(&app, "alpha", "Alphahidden").await;
    let before = app.tenant_rows(alpha.tenant.id.as_str()).await;
    let served = served_routes(&app);

    // Two kinds of stranger: one with no cookie at all, and one whose session has a form
    // token (from the sign-in page) but nobody signed in.
    let stranger = app.browser();
    let visitor = app.browser();
    let token = visitor.get("/t/alpha/login").await.csrf_token();
    for (browser, has_token) in [(&stranger, false), (&visitor, true)] {
        let mut probes = Vec::new();
        for route in served.iter().filter(|r| r.access != Access::Public) {
            probes.extend(calls(route, "alpha", &alpha, &token));
        }
        for (call, page) in send_all(browser, probes).await {
            let safe = matches!(call.method.as_str(), "GET" | "HEAD");
            if safe || has_token {
                assert_answer(&call, &page, &[303], &alpha.secrets);
                assert_eq!(
                    page.location.as_deref(),
                    Some("/t/alpha/login"),
                    "{}",
                    call.path
                );
            } else {
                // No session, so no form token: refused before anything else.
                assert_answer(&call, &page, &[403], &alpha.secrets);
            }
        }
    }
    assert_unchanged(&before, &app.tenant_rows(alpha.tenant.id.as_str()).await);

    // Public routes never fail either.
    let mut probes = Vec::new();
    for route in served.iter().filter(|r| r.access == Access::Public) {
        probes.extend(calls(route, "alpha", &alpha, &token));
    }
    for (call, page) in send_all(&visitor, probes).await {
        assert!(
            page.status.as_u16() < 500,
            "{} {} answered {}: {}",
            call.method,
            call.path,
            page.status,
            page.body
        );
    }
}
