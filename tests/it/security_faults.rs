//! Faults: Microsoft unreachable, hanging, or answering garbage, for discovery, signing
//! keys, tokens and Graph; the database going away and coming back. Each gives a clear
//! page within its timeout, no request stays stuck, local sign-in keeps working while
//! Microsoft is down, and service resumes without a restart.

use std::future::Future;

use futures_util::future::LocalBoxFuture;
use portico::domain::{OAuthStatus, Role};
use portico::store::oauth_connections;
use time::{Duration, OffsetDateTime};
use uuid::{Uuid, uuid};

use crate::health::db_proxy::DbProxy;
use crate::support::fake_microsoft::{Endpoint, FakeApp, FakeUser, Fault, MailboxAccess};
use crate::support::{
    Backend, Browser, PASSWORD, Page, TestApp, TestDatabase, eventually, spawn_app_with,
};

const CONTOSO: Uuid = uuid!("fa0fa0fa-1111-4111-8111-111111111111");
const SIGN_IN_APP: Uuid = uuid!("fa0fa0fa-2222-4222-8222-222222222222");
const GRAPH_APP: Uuid = uuid!("fa0fa0fa-3333-4333-8333-333333333333");
const OAUTH_APP: Uuid = uuid!("fa0fa0fa-4444-4444-8444-444444444444");
const GRAPH_SECRET: &str = "Faults~Graph-Secret";
const OAUTH_SECRET: &str = "Faults~OAuth-Secret";

/// Far beyond any timeout of Portico's (Microsoft's here, the database pool's, the
/// router's 30 s): an answer later than this means a request was stuck.
const STUCK: std::time::Duration = std::time::Duration::from_secs(45);

/// The answer, or a failure naming what never answered.
async fn in_time<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STUCK, future)
        .await
        .unwrap_or_else(|_| panic!("{what} never answered: a request is stuck"))
}

/// A tenant using Microsoft every way: Sign in with Microsoft (a public client, restricted
/// to Contoso), a Graph credential with a Graph mailbox, and an authenticated OAuth
/// connection. Microsoft calls time out after `timeout_seconds`.
struct Scene {
    app: TestApp,
    admin: Browser,
    credential: String,
    graph_mailbox: String,
    connection: String,
}

async fn scene(database: TestDatabase, timeout_seconds: u64) -> Scene {
    let app = spawn_app_with(database, |config| {
        config.microsoft.timeout_seconds = timeout_seconds;
    })
    .await;
    let expires = OffsetDateTime::now_utc() + Duration::days(90);
    app.register_azure_app(
        FakeApp::new(SIGN_IN_APP, CONTOSO)
            .public_client_redirect_uri(&app.url("/auth/microsoft/callback")),
    );
    app.register_azure_app(
        FakeApp::new(GRAPH_APP, CONTOSO)
            .secret(GRAPH_SECRET, expires)
            .application_role("Mail.ReadWrite")
            .application_role("Mail.Send"),
    );
    app.register_azure_app(
        FakeApp::new(OAUTH_APP, CONTOSO)
            .web_redirect_uri(&app.url("/oauth/callback"))
            .secret(OAUTH_SECRET, expires),
    );
    let microsoft = &app.microsoft;
    microsoft.add_user(FakeUser::new(CONTOSO, "ana@contoso.com", "Ana").email("ana@contoso.com"));
    microsoft.add_user(FakeUser::new(CONTOSO, "support@contoso.com", "Support"));
    microsoft.set_mailbox_access(GRAPH_APP, "support@contoso.com", MailboxAccess::Granted);
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    app.create_user(&tenant, "ana@contoso.com", Role::Agent)
        .await;

    let settings = "/t/acme/settings/microsoft-sign-in";
    admin
        .submit(
            settings,
            settings,
            &[
                ("client_id", &SIGN_IN_APP.to_string()),
                ("directory", &CONTOSO.to_string()),
                ("cloud", "global"),
                ("enabled", "on"),
            ],
        )
        .await
        .assert_status(303);
    let credential = admin
        .add_graph_credential(
            "acme",
            &[
                ("name", "Mail app"),
                ("client_id", &GRAPH_APP.to_string()),
                ("directory", &CONTOSO.to_string()),
                ("client_secret", GRAPH_SECRET),
                ("secret_expires_on", &expires.date().to_string()),
            ],
        )
        .await;
    let segments = "/t/acme/segments";
    let segment = admin
        .submit(
            segments,
            segments,
            &[("name", "Support"), ("description", "")],
        )
        .await
        .location
        .unwrap();
    let graph_mailbox = admin
        .submit(
            &format!("{segment}/mailboxes/new"),
            &format!("{segment}/mailboxes"),
            &[
                ("name", "Support"),
                ("email", "support@contoso.com"),
                ("protocol", "graph"),
                ("direction", "both"),
                (
                    "graph_credential_id",
                    credential.rsplit('/').next().unwrap(),
                ),
                ("enabled", "on"),
            ],
        )
        .await
        .location
        .unwrap();
    let connection = admin
        .add_oauth_connection(
            "acme",
            &[
                ("name", "Support IMAP"),
                ("client_id", &OAUTH_APP.to_string()),
                ("directory", &CONTOSO.to_string()),
                ("purpose", "imap"),
                ("client_secret", OAUTH_SECRET),
            ],
        )
        .await;
    let scene = Scene {
        app,
        admin,
        credential,
        graph_mailbox,
        connection,
    };
    let callback = scene.authorize_connection().await;
    scene
        .finish_connection(&callback)
        .await
        .assert_contains("Authenticated as");
    scene
}

impl Scene {
    /// A new browser sent to Microsoft and back, up to the callback it would open.
    async fn start_sign_in(&self) -> (Browser, String) {
        self.app.microsoft.sign_in_as("ana@contoso.com");
        let browser = self.app.browser();
        let callback = browser
            .microsoft_authorize("/t/acme/auth/microsoft")
            .await
            .unwrap();
        (browser, callback)
    }

    /// Clicks Authenticate on the connection; returns the callback Microsoft sends back.
    async fn authorize_connection(&self) -> String {
        self.app.microsoft.sign_in_as("support@contoso.com");
        let to_microsoft = self
            .admin
            .submit(
                &self.connection,
                &format!("{}/authenticate", self.connection),
                &[],
            )
            .await;
        let microsoft = self
            .admin
            .get_url(to_microsoft.location.as_deref().unwrap())
            .await;
        microsoft.location.unwrap()
    }

    /// Opens the callback and the connection page it leads to.
    async fn finish_connection(&self, callback: &str) -> Page {
        let answer = self.admin.get_url(callback).await;
        match answer.location.as_deref() {
            Some(page) => self.admin.get(page).await,
            None => answer,
        }
    }

    fn forget_app_tokens(&self) {
        let id = self.credential.rsplit('/').next().unwrap();
        self.app.state.microsoft.forget_tokens(id);
    }

    /// Every page that calls Microsoft's `endpoint`, run at once; the callbacks (whose
    /// first half, at Microsoft, must not fail) are prepared before the fault starts.
    async fn flows_calling(
        &self,
        endpoint: Option<Endpoint>,
        start_fault: impl FnOnce(),
    ) -> Vec<(&'static str, Page)> {
        let calls = |wanted: &[Endpoint]| endpoint.is_none_or(|e| wanted.contains(&e));
        let sign_in = if calls(&[Endpoint::Keys, Endpoint::Token]) {
            Some(self.start_sign_in().await)
        } else {
            None
        };
        let connection_callback = if calls(&[Endpoint::Token]) {
            Some(self.authorize_connection().await)
        } else {
            None
        };
        self.forget_app_tokens();
        start_fault();

        let admin = &self.admin;
        let credential = &self.credential;
        let mut flows: Vec<LocalBoxFuture<'_, (&'static str, Page)>> = Vec::new();
        if calls(&[Endpoint::Discovery]) {
            flows.push(Box::pin(async move {
                let name = format!("Lookup {}", Uuid::new_v4().simple());
                let expires = (OffsetDateTime::now_utc() + Duration::days(30))
                    .date()
                    .to_string();
                let fields = [
                    ("name", name.as_str()),
                    ("client_id", "fa0fa0fa-3333-4333-8333-333333333333"),
                    ("directory", "contoso.onmicrosoft.com"),
                    ("cloud", "global"),
                    ("client_secret", GRAPH_SECRET),
                    ("secret_expires_on", &expires),
                ];
                let new = "/t/acme/external-apis/new";
                let create = "/t/acme/external-apis";
                ("directory lookup", admin.submit(new, create, &fields).await)
            }));
        }
        if let Some((browser, callback)) = &sign_in {
            flows.push(Box::pin(async move {
                ("Microsoft sign-in", browser.get_url(callback).await)
            }));
        }
        if let Some(callback) = &connection_callback {
            flows.push(Box::pin(async move {
                ("OAuth Authenticate", self.finish_connection(callback).await)
            }));
        }
        // Test connection reads the granted roles from the app's token: no Graph call.
        if calls(&[Endpoint::Token]) {
            flows.push(Box::pin(async move {
                let test = format!("{credential}/test");
                (
                    "credential test",
                    admin.submit(credential, &test, &[]).await,
                )
            }));
        }
        if calls(&[Endpoint::Token, Endpoint::Graph]) {
            flows.push(Box::pin(async move {
                let check = format!("{credential}/check-mailbox");
                let fields = [("mailbox", "support@contoso.com")];
                (
                    "mailbox check",
                    admin.submit(credential, &check, &fields).await,
                )
            }));
            flows.push(Box::pin(async move {
                let mailbox = &self.graph_mailbox;
                let test = format!("{mailbox}/test");
                (
                    "Graph mailbox test",
                    admin.submit(mailbox, &test, &[]).await,
                )
            }));
        }
        in_time(
            "a page calling Microsoft",
            futures_util::future::join_all(flows),
        )
        .await
    }
}

/// Moves Portico's clock and Microsoft's together, so tokens stay valid on both sides.
fn advance(app: &TestApp, minutes: i64) {
    app.state.clock.advance(Duration::minutes(minutes));
    let seconds = u64::try_from(minutes * 60).unwrap();
    app.microsoft
        .advance_clock(std::time::Duration::from_secs(seconds));
}

/// A page that says Microsoft failed, in words, rather than a crash or a timeout page.
#[track_caller]
fn assert_explains_microsoft(fault: &str, what: &str, page: &Page) {
    let status = page.status.as_u16();
    assert!(
        [200, 400, 502].contains(&status),
        "{what} with Microsoft {fault}: {status}: {}",
        page.body
    );
    assert!(
        page.body.contains("Microsoft") && !page.body.contains("Something went wrong"),
        "{what} with Microsoft {fault} explains nothing: {}",
        page.body
    );
    assert!(
        !page.body.contains("Connected.") && !page.body.contains("Granted:"),
        "{what} with Microsoft {fault} claims success: {}",
        page.body
    );
}

#[tokio::test]
async fn microsoft_unreachable_hanging_or_garbled_gets_a_clear_page_in_time_and_service_resumes() {
    let database = TestDatabase::create(Backend::Sqlite).await;
    let scene = scene(database, 1).await;
    let app = &scene.app;
    let microsoft = &app.microsoft;
    let tenant = app.tenant("acme").await;
    let connection_status = || async {
        oauth_connections::list(&app.state.db, &tenant.id)
            .await
            .unwrap()
            .remove(0)
            .status
    };

    // Unreachable: every call fails; local sign-in does not care.
    let pages = scene
        .flows_calling(None, || microsoft.set_unreachable(true))
        .await;
    assert_eq!(pages.len(), 6);
    for (what, page) in &pages {
        assert_explains_microsoft("unreachable", what, page);
    }
    app.browser()
        .sign_in("acme", "admin@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
    advance(app, 55);
    in_time(
        "renewal",
        portico::services::oauth_connections::renew_due(&app.state),
    )
    .await
    .unwrap();
    // An outage is not a refusal: the connection waits for Microsoft, not for a person.
    assert_eq!(connection_status().await, OAuthStatus::Authenticated);
    microsoft.set_unreachable(false);

    // Each endpoint on its own hangs, then answers garbage.
    for fault in [Fault::Hang, Fault::Garbage] {
        for endpoint in [
            Endpoint::Discovery,
            Endpoint::Keys,
            Endpoint::Token,
            Endpoint::Graph,
        ] {
            let pages = scene
                .flows_calling(Some(endpoint), || {
                    microsoft.set_fault(endpoint, Some(fault));
                })
                .await;
            assert!(!pages.is_empty());
            for (what, page) in &pages {
                assert_explains_microsoft(&format!("{fault:?} at {endpoint:?}"), what, page);
            }
            if endpoint == Endpoint::Token {
                advance(app, 40);
                in_time(
                    "renewal",
                    portico::services::oauth_connections::renew_due(&app.state),
                )
                .await
                .unwrap();
                assert_eq!(connection_status().await, OAuthStatus::Authenticated);
            }
            microsoft.set_fault(endpoint, None);
        }
    }
    // Nothing Portico started is still waiting at Microsoft.
    assert_eq!(microsoft.held_requests(), 0);

    // Microsoft is back: everything works again, without a restart.
    let pages = scene.flows_calling(None, || {}).await;
    for (what, page) in &pages {
        let works = match *what {
            "directory lookup" => page.status == 303,
            "Microsoft sign-in" => page.location.as_deref() == Some("/t/acme/"),
            "OAuth Authenticate" => page.body.contains("Authenticated as"),
            "credential test" => page.body.contains("Connected."),
            _ => page.body.contains("Granted:"),
        };
        assert!(
            works,
            "{what} after Microsoft came back: {} {}",
            page.status, page.body
        );
    }
    advance(app, 60);
    assert_eq!(
        portico::services::oauth_connections::renew_due(&app.state)
            .await
            .unwrap(),
        1
    );
}

/// While Microsoft holds ten sign-ins, nothing else waits for them: pages, local
/// sign-in and readiness answer; once Microsoft answers, every held sign-in completes.
#[tokio::test]
async fn while_microsoft_hangs_other_pages_and_local_sign_in_are_served() {
    // More than the SQLite pool has connections: a held request must not keep one.
    const HELD: usize = 10;
    let database = TestDatabase::create(Backend::Sqlite).await;
    // Long enough that the held sign-ins cannot time out while the test looks around.
    let scene = scene(database, 30).await;
    let app = &scene.app;
    let mut sign_ins = Vec::new();
    for _ in 0..HELD {
        sign_ins.push(scene.start_sign_in().await);
    }
    app.microsoft.set_fault(Endpoint::Token, Some(Fault::Hang));
    let held = futures_util::future::join_all(
        sign_ins
            .iter()
            .map(|(browser, callback)| browser.get_url(callback)),
    );
    let meanwhile = async {
        wait_until("Microsoft holds every sign-in", || {
            app.microsoft.held_requests() == HELD
        })
        .await;
        app.browser()
            .sign_in("acme", "admin@acme.test", PASSWORD)
            .await
            .assert_redirect("/t/acme/");
        scene.admin.get("/t/acme/").await.assert_status(200);
        scene.admin.get(&scene.credential).await.assert_status(200);
        app.browser().get("/readyz").await.assert_status(200);
        // All of that was served while every sign-in was still held.
        assert_eq!(app.microsoft.held_requests(), HELD);
        app.microsoft.set_fault(Endpoint::Token, None);
    };
    let (pages, ()) = in_time("held sign-ins", async { tokio::join!(held, meanwhile) }).await;
    for page in pages {
        page.assert_redirect("/t/acme/");
    }
}

/// Polls `condition` until it holds; each look is instant, the whole wait bounded.
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    eventually(STUCK, what, async || condition()).await;
}

/// PostgreSQL goes away (connections cut, new ones refused) while a request is in flight
/// and while people use Portico, then comes back: every answer meanwhile is a clear page,
/// none hangs, and afterwards the same sessions work on, without a restart.
#[tokio::test]
async fn the_database_going_away_and_coming_back_during_requests() {
    if !Backend::postgres_available() {
        return;
    }
    let mut database = TestDatabase::create(Backend::Postgres).await;
    let proxy = DbProxy::start(&database.url).await;
    database.url = proxy.url_through(&database.url);
    let scene = scene(database, 30).await;
    let app = &scene.app;
    let (ana, callback) = scene.start_sign_in().await;

    // A sign-in is under way (held at Microsoft) when the database goes away.
    app.microsoft.set_fault(Endpoint::Token, Some(Fault::Hang));
    let during = async {
        wait_until("the sign-in reaches Microsoft", || {
            app.microsoft.held_requests() == 1
        })
        .await;
        proxy.cut();
        app.microsoft.set_fault(Endpoint::Token, None);
    };
    let (sign_in, ()) = in_time("a sign-in while the database went away", async {
        tokio::join!(ana.get_url(&callback), during)
    })
    .await;
    assert_database_unavailable("the sign-in", &sign_in);

    // Meanwhile: pages, local sign-in and forms all say so; readiness says not ready.
    let stranger = app.browser();
    let pages = in_time("pages while the database is away", async {
        tokio::join!(
            scene.admin.get("/t/acme/"),
            scene.admin.get("/t/acme/users"),
            stranger.get("/t/acme/login"),
            scene
                .admin
                .post_raw("/t/acme/segments", &[("name", "Lost")]),
        )
    })
    .await;
    for (what, page) in [
        ("the dashboard", pages.0),
        ("the users page", pages.1),
        ("the sign-in page", pages.2),
        ("a form", pages.3),
    ] {
        assert_database_unavailable(what, &page);
    }
    stranger.get("/readyz").await.assert_status(503);

    // The database is back: the same sessions and the same process serve again.
    proxy.restore();
    wait_until_ready(&stranger).await;
    scene.admin.get("/t/acme/").await.assert_status(200);
    app.browser()
        .sign_in("acme", "admin@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
    scene
        .admin
        .submit(
            "/t/acme/segments",
            "/t/acme/segments",
            &[("name", "Found"), ("description", "")],
        )
        .await
        .assert_status(303);
    let (ana, callback) = scene.start_sign_in().await;
    ana.get_url(&callback).await.assert_redirect("/t/acme/");
}

/// A page that says the service is unavailable for now, not a bare status or a crash.
#[track_caller]
fn assert_database_unavailable(what: &str, page: &Page) {
    assert_eq!(page.status.as_u16(), 503, "{what}: {}", page.body);
    assert!(
        page.body.contains("<h1>") && page.body.contains("database"),
        "{what} explains nothing: {:?}",
        page.body
    );
}

async fn wait_until_ready(browser: &Browser) {
    eventually(
        STUCK,
        "readiness after the database came back",
        async || browser.get("/readyz").await.status == 200,
    )
    .await;
}
