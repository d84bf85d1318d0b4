//! Every check of a password or one-time token is limited: the setup link per address, a
//! signed-in user's current password per account and address, and the one-time Microsoft
//! links per address; and how a pause of sign-in ends as its failures age out. (Sign-in
//! itself: auth.rs.)

use portico::domain::Role;
use portico::store::tenants::Tenant;
use time::{Duration, OffsetDateTime};

use crate::on_both_backends;
use crate::support::{Backend, Browser, PASSWORD, TestApp, eventually, spawn_app};

on_both_backends!(
    wrong_setup_links_pause_setup_for_that_address,
    wrong_current_passwords_pause_password_changes_and_sign_in,
    wrong_one_time_links_pause_links_from_that_address,
    a_parallel_burst_for_one_account_costs_at_most_the_limit_in_hashes,
    a_burst_from_one_address_is_recorded_without_an_entry_per_attempt,
    a_full_hashing_queue_answers_503_at_once,
    an_account_signs_in_again_once_its_failures_age_out,
    an_address_signs_in_again_once_its_failures_age_out,
);

async fn wrong_setup_links_pause_setup_for_that_address(backend: Backend) {
    let app = spawn_app(backend).await;
    let setup = app.setup_url().unwrap();
    let path = setup.trim_start_matches(&app.url(""));
    let token = path.trim_start_matches("/setup?token=");
    let browser = app.browser();
    let form_token = browser.get(path).await.csrf_token();
    let fields = |token| {
        [
            ("csrf_token", form_token.clone()),
            ("token", token),
            ("tenant_name", "Acme Corp".to_owned()),
            ("slug", "acme".to_owned()),
            ("display_name", "Ana".to_owned()),
            ("email", "ana@acme.test".to_owned()),
            ("password", "long enough password".to_owned()),
        ]
    };
    let post = |token: &str| {
        let fields = fields(token.to_owned());
        let browser = &browser;
        async move {
            let fields: Vec<(&str, &str)> = fields
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            browser.post_raw("/setup", &fields).await
        }
    };
    // Wrong links count whether opened or posted.
    for n in 0..9 {
        browser
            .get(&format!("/setup?token=guess-{n}"))
            .await
            .assert_status(403)
            .assert_contains("Setup link required");
    }
    post("guess-9").await.assert_status(403);

    // Now even the right link waits, for the page and the form alike.
    browser
        .get(path)
        .await
        .assert_status(429)
        .assert_contains("Too many failed attempts");
    post(token).await.assert_status(429);
    assert_eq!(
        portico::store::tenants::count(&app.state.db).await.unwrap(),
        0
    );

    // A quarter of an hour later the link works again.
    app.state.clock.advance(Duration::minutes(15));
    browser
        .get(path)
        .await
        .assert_status(200)
        .assert_contains("Set up Portico");
    post(token).await.assert_redirect("/t/acme/");
}

async fn wrong_current_passwords_pause_password_changes_and_sign_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("acme", "Acme Corp").await;
    app.create_user(&tenant, "agent@acme.test", Role::Agent)
        .await;
    let agent = app.browser();
    agent
        .sign_in("acme", "agent@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
    let change = |current: &'static str| {
        let agent = &agent;
        async move {
            agent
                .submit(
                    "/t/acme/profile",
                    "/t/acme/profile/password",
                    &[
                        ("current_password", current),
                        ("new_password", "a brand new password"),
                    ],
                )
                .await
        }
    };
    for _ in 0..5 {
        change("a wrong guess")
            .await
            .assert_status(400)
            .assert_contains("This is not your current password.");
    }
    // A stolen session cannot go on guessing: even the right password waits now.
    change(PASSWORD)
        .await
        .assert_status(429)
        .assert_contains("Too many wrong passwords. Wait 15 minutes and try again.");
    let audit = app.audit_actions(&tenant).await;
    let rejected = audit
        .iter()
        .filter(|(action, target, _)| {
            action == "user.own_password_rejected" && target == "agent@acme.test"
        })
        .count();
    assert_eq!(rejected, 5);
    assert!(audit.iter().any(|(action, target, _)| {
        action == "sign_in.throttled" && target == "agent@acme.test"
    }));
    assert!(
        !audit
            .iter()
            .any(|(action, _, _)| action == "user.own_password_changed")
    );

    // The guesses count against the account at sign-in too; the password is unchanged.
    app.browser()
        .sign_in("acme", "agent@acme.test", PASSWORD)
        .await
        .assert_status(429);
    app.browser()
        .sign_in("acme", "agent@acme.test", "a brand new password")
        .await
        .assert_status(429);
}

/// A one-time link for Carol made by an admin of acme; returns its path.
async fn link_for_carol(app: &TestApp) -> String {
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let carol = app
        .create_user(&tenant, "carol@acme.test", Role::Agent)
        .await;
    let carol_page = format!("/t/acme/users/{}", carol.as_str());
    let page = admin
        .submit(&carol_page, &format!("{carol_page}/microsoft-link"), &[])
        .await;
    let marker = "id=\"link-url\">";
    let start = page.body.find(marker).unwrap() + marker.len();
    let link = page.body[start..].split('<').next().unwrap();
    link.trim_start_matches(&app.url("")).to_owned()
}

async fn wrong_one_time_links_pause_links_from_that_address(backend: Backend) {
    let app = spawn_app(backend).await;
    let link = link_for_carol(&app).await;
    let visitor = app.browser();
    visitor
        .get(&link)
        .await
        .assert_status(200)
        .assert_contains("carol@acme.test");
    for n in 0..20 {
        visitor
            .get(&format!("/t/acme/auth/microsoft/link/guessed-{n}"))
            .await
            .assert_status(400);
    }
    // Twenty wrong links from this address: the right one waits too, and says why.
    visitor
        .get(&link)
        .await
        .assert_status(429)
        .assert_contains("Too many failed attempts")
        .assert_lacks("carol@acme.test");
    let confirm = visitor.get("/t/acme/login").await;
    visitor
        .post_raw(&link, &[("csrf_token", &confirm.csrf_token())])
        .await
        .assert_status(429);
    let tenant = app.tenant("acme").await;
    let audit = app.audit_actions(&tenant).await;
    let rejected = audit
        .iter()
        .filter(|(action, _, _)| action == "user.microsoft_link_rejected")
        .count();
    assert_eq!(rejected, 20);
    assert!(
        audit
            .iter()
            .any(|(action, _, _)| action == "sign_in.throttled")
    );
    // The address is paused for password sign-in as well: one budget of guesses.
    app.browser()
        .sign_in("acme", "admin@acme.test", PASSWORD)
        .await
        .assert_status(429);
}

/// The tenant's audit entries of `action`, with how many attempts each stands for.
async fn entries(app: &TestApp, tenant: &Tenant, action: &str) -> Vec<(String, i64)> {
    let page = portico::store::Page::new(None, 500);
    portico::store::audit::list(&app.state.db, &tenant.id, page)
        .await
        .unwrap()
        .rows
        .into_iter()
        .filter(|row| row.action == action)
        .map(|row| (row.target, row.attempts))
        .collect()
}

/// A hundred wrong passwords for one account at once: each takes its place in the throttle
/// before argon2 runs, so only the first five are hashed, and the rest are one audit entry.
async fn a_parallel_burst_for_one_account_costs_at_most_the_limit_in_hashes(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("acme", "Acme Corp").await;
    app.create_user(&tenant, "agent@acme.test", Role::Agent)
        .await;
    let browser = app.browser();
    let token = browser.get("/t/acme/login").await.csrf_token();
    let hashes_before = app.state.passwords.hashes_started();

    let guesses = (0..100).map(|n| {
        let (browser, token) = (&browser, token.as_str());
        async move {
            let guess = format!("wrong guess number {n}");
            let fields = [
                ("csrf_token", token),
                ("email", "agent@acme.test"),
                ("password", guess.as_str()),
            ];
            browser.post_raw("/t/acme/login", &fields).await.status
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;

    let hashed = app.state.passwords.hashes_started() - hashes_before;
    assert!(hashed <= 5, "{hashed} hashes for a burst of 100");
    let refused = statuses.iter().filter(|s| s.as_u16() == 400).count();
    let throttled = statuses.iter().filter(|s| s.as_u16() == 429).count();
    assert_eq!((refused, throttled), (5, 95), "{statuses:?}");
    let failed = entries(&app, &tenant, "sign_in.failed").await;
    assert_eq!(failed.len(), 5, "{failed:?}");
    assert_eq!(
        entries(&app, &tenant, "sign_in.throttled").await,
        vec![("agent@acme.test".to_owned(), 95)]
    );

    // The right password waits too, and costs no hash either.
    browser
        .sign_in("acme", "agent@acme.test", PASSWORD)
        .await
        .assert_status(429);
    assert_eq!(app.state.passwords.hashes_started() - hashes_before, hashed);
    // Another account of the tenant still signs in.
    app.create_user(&tenant, "admin@acme.test", Role::Admin)
        .await;
    app.browser()
        .sign_in("acme", "admin@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
}

/// Failed sign-ins from one address over many typed emails: twenty entries, then one that
/// counts the rest, however many accounts are tried.
async fn a_burst_from_one_address_is_recorded_without_an_entry_per_attempt(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let before = app.audit_actions(&tenant).await.len();
    for n in 0..60 {
        let status = app
            .browser()
            .sign_in("acme", &format!("guess{n}@acme.test"), "some password")
            .await
            .status
            .as_u16();
        assert_eq!(status, if n < 20 { 400 } else { 429 }, "attempt {n}");
    }
    let written = app.audit_actions(&tenant).await.len() - before;
    assert_eq!(written, 21);
    let throttled = entries(&app, &tenant, "sign_in.throttled").await;
    assert_eq!(throttled, vec![("guess20@acme.test".to_owned(), 40)]);
    admin
        .get("/t/acme/audit")
        .await
        .assert_contains("too many failed sign-ins (40 attempts)");
}

/// With every hashing thread busy and the queue full, a sign-in is answered 503 with
/// Retry-After at once (before any queued hash started), counts no failure, and sign-in
/// works again once the queue drains.
async fn a_full_hashing_queue_answers_503_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("acme", "Acme Corp").await;
    app.create_user(&tenant, "agent@acme.test", Role::Agent)
        .await;
    let hasher = app.state.passwords.clone();
    // A hash with 150 passes instead of 2: verifying it holds a thread for a while.
    let slow = "$argon2id$v=19$m=19456,t=150,p=1$7As44HM+7jaeMZq38Ds7RQ$Dtm0dl71cAAuD9ec5OBPlKmOJRk3UGOiNZjuzzGnK9U";
    let started = hasher.hashes_started();
    let hold = |stored: Option<&str>| {
        let (hasher, stored) = (hasher.clone(), stored.map(str::to_owned));
        tokio::spawn(async move { hasher.verify("x".to_owned().into(), stored).await })
    };
    let holders: Vec<_> = (0..hasher.threads()).map(|_| hold(Some(slow))).collect();
    let within = std::time::Duration::from_secs(30);
    eventually(within, "every hashing thread busy", async || {
        hasher.hashes_started() >= started + hasher.threads() as u64
    })
    .await;
    let queued: Vec<_> = (0..hasher.queue_capacity()).map(|_| hold(None)).collect();
    eventually(within, "the hashing queue full", async || {
        hasher.queued() >= hasher.queue_capacity()
    })
    .await;

    let page = app
        .browser()
        .sign_in("acme", "agent@acme.test", PASSWORD)
        .await;
    page.assert_status(503)
        .assert_contains("Portico is busy")
        .assert_lacks(PASSWORD);
    assert_eq!(
        page.headers.get("retry-after").map(|v| v.to_str().unwrap()),
        Some("5")
    );
    // Answered while the threads were still held: it waited for none of the queue.
    assert_eq!(
        hasher.hashes_started(),
        started + hasher.threads() as u64,
        "the busy answer waited for a hash"
    );
    assert!(entries(&app, &tenant, "sign_in.failed").await.is_empty());

    for task in queued {
        task.abort();
    }
    for task in holders {
        task.await.unwrap().unwrap();
    }
    eventually(within, "the hashing queue drained", async || {
        hasher.queued() == 0
    })
    .await;
    app.browser()
        .sign_in("acme", "agent@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
}

/// When the tenant's first failed sign-in was recorded: the pause ends 15 minutes later.
async fn first_failure(app: &TestApp, tenant: &Tenant) -> OffsetDateTime {
    let page = portico::store::Page::new(None, 500);
    portico::store::audit::list(&app.state.db, &tenant.id, page)
        .await
        .unwrap()
        .rows
        .into_iter()
        .filter(|row| row.action == "sign_in.failed")
        .map(|row| row.created_at())
        .min()
        .unwrap()
}

/// Moves the app's clock to `at`, or less than a second before it (it moves in whole
/// seconds).
fn move_clock_to(app: &TestApp, at: OffsetDateTime) {
    app.state.clock.advance(at - app.state.clock.now());
}

/// `email` of a paused sign-in still waits five seconds before the first failure is 15
/// minutes old, and signs in once it is.
async fn waits_until_the_first_failure_ages_out(
    app: &TestApp,
    tenant: &Tenant,
    browser: &Browser,
    email: &str,
) {
    let first = first_failure(app, tenant).await;

    move_clock_to(app, first + Duration::minutes(15) - Duration::seconds(5));
    browser
        .sign_in("acme", email, PASSWORD)
        .await
        .assert_status(429)
        .assert_contains("Too many failed sign-ins");

    move_clock_to(app, first + Duration::minutes(15) + Duration::seconds(1));
    browser
        .sign_in("acme", email, PASSWORD)
        .await
        .assert_redirect("/t/acme/");
}

/// Five wrong passwords pause the account until the first of them is 15 minutes old: five
/// seconds before, even the right password still waits; then it signs in again.
async fn an_account_signs_in_again_once_its_failures_age_out(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("acme", "Acme Corp").await;
    app.create_user(&tenant, "agent@acme.test", Role::Agent)
        .await;
    let browser = app.browser();
    for _ in 0..5 {
        browser
            .sign_in("acme", "agent@acme.test", "wrong password!")
            .await
            .assert_status(400);
    }
    browser
        .sign_in("acme", "agent@acme.test", PASSWORD)
        .await
        .assert_status(429)
        .assert_contains("Too many failed sign-ins");
    waits_until_the_first_failure_ages_out(&app, &tenant, &browser, "agent@acme.test").await;
}

/// Twenty failed sign-ins from one address pause every account from there until the first
/// of them is 15 minutes old: five seconds before, the admin still waits; then signs in.
async fn an_address_signs_in_again_once_its_failures_age_out(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("acme", "Acme Corp").await;
    app.create_user(&tenant, "admin@acme.test", Role::Admin)
        .await;
    for n in 0..20 {
        app.browser()
            .sign_in("acme", &format!("guess{n}@acme.test"), "some password")
            .await
            .assert_status(400);
    }
    let browser = app.browser();
    browser
        .sign_in("acme", "admin@acme.test", PASSWORD)
        .await
        .assert_status(429)
        .assert_contains("Too many failed sign-ins");
    waits_until_the_first_failure_ages_out(&app, &tenant, &browser, "admin@acme.test").await;
}
