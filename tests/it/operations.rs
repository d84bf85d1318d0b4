//! Running Portico: metrics, logs, shutdown, backup and restore, doctor, and instances
//! upgrading one PostgreSQL database together.

use std::os::unix::fs::PermissionsExt as _;

use portico::crypto::SecretKey;
use portico::domain::Role;
use portico::store::Page as ListPage;
use portico::store::users;
use secrecy::SecretString;
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use uuid::{Uuid, uuid};

use crate::on_both_backends;
use crate::support::fake_microsoft::{FakeApp, FakeMicrosoft, MailboxAccess};
use crate::support::process::{Running, portico, run};
use crate::support::{
    Backend, PASSWORD, TestApp, TestDatabase, eventually, spawn_app, spawn_app_with,
};

const METRICS_TOKEN: &str = "prometheus-scrapes-with-this";
const CONTOSO: Uuid = uuid!("44444444-4444-4444-8444-444444444444");
const MAIL_APP: Uuid = uuid!("55555555-5555-4555-8555-555555555555");
const SECRET: &str = "Graph~Metrics-Secret.0123456789";

on_both_backends!(metrics_count_by_route_template_and_name_no_tenant);

async fn scrape(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let request = reqwest::Client::new().get(app.url("/metrics"));
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    request.send().await.unwrap()
}

async fn metrics_count_by_route_template_and_name_no_tenant(backend: Backend) {
    let app = spawn_app_with(TestDatabase::create(backend).await, |config| {
        config.metrics.token = Some(SecretString::from(METRICS_TOKEN));
    })
    .await;
    app.register_azure_app(
        FakeApp::new(MAIL_APP, CONTOSO)
            .secret(SECRET, OffsetDateTime::now_utc() + Duration::days(180))
            .application_role("Mail.ReadWrite")
            .application_role("Mail.Send"),
    );
    app.microsoft
        .set_mailbox_access(MAIL_APP, "support@contoso.com", MailboxAccess::Granted);

    let (tenant, admin) = app.tenant_with_admin("orchid").await;
    let user_id = app.user_id(&tenant, "admin@orchid.test").await;
    app.browser()
        .sign_in("orchid", "admin@orchid.test", "not the password")
        .await
        .assert_status(400);
    admin.get("/t/orchid/users").await.assert_status(200);
    admin
        .get(&format!("/t/orchid/users/{user_id}"))
        .await
        .assert_status(200);
    app.browser().get("/orchid/users").await.assert_status(404);

    // A Graph credential expiring in 10 days: its domain is resolved (discovery), a token
    // fetched (a miss) then reused (a hit) to read a mailbox (Graph).
    let expires_on = (OffsetDateTime::now_utc() + Duration::days(10)).date();
    let credential = admin
        .add_graph_credential(
            "orchid",
            &[
                ("name", "Support mail"),
                ("client_id", &MAIL_APP.to_string()),
                ("directory", "contoso.onmicrosoft.com"),
                ("client_secret", SECRET),
                ("secret_expires_on", &expires_on.to_string()),
            ],
        )
        .await;
    admin
        .submit(&credential, &format!("{credential}/test"), &[])
        .await
        .assert_contains("Connected.");
    admin
        .submit(
            &credential,
            &format!("{credential}/check-mailbox"),
            &[("mailbox", "support@contoso.com")],
        )
        .await
        .assert_contains("Granted:");

    assert_eq!(scrape(&app, None).await.status(), 401);
    assert_eq!(
        scrape(&app, Some("a-wrong-token-of-any-length"))
            .await
            .status(),
        401
    );
    let response = scrape(&app, Some(METRICS_TOKEN)).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    for series in [
        r#"portico_http_requests_total{method="GET",route="/t/{slug}/users",status="200"} 1"#,
        r#"portico_http_requests_total{method="GET",route="/t/{slug}/users/{id}",status="200"} 1"#,
        r#"portico_http_requests_total{method="POST",route="/t/{slug}/login",status="303"} 1"#,
        r#"portico_http_requests_total{method="POST",route="/t/{slug}/login",status="400"} 1"#,
        r#"portico_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"portico_http_request_duration_seconds_count{method="GET",route="/t/{slug}/users"} 1"#,
        r#"portico_sign_ins_total{method="password",outcome="success"} 1"#,
        r#"portico_sign_ins_total{method="password",outcome="refused"} 1"#,
        r#"portico_microsoft_calls_total{kind="discovery",outcome="ok"} 1"#,
        // Test connection asks for two tokens: Graph's and Exchange Online's.
        r#"portico_microsoft_calls_total{kind="token",outcome="ok"} 2"#,
        r#"portico_microsoft_calls_total{kind="graph",outcome="ok"} 1"#,
        r#"portico_microsoft_call_duration_seconds_count{kind="token"} 2"#,
        r#"portico_graph_token_cache_total{result="miss"} 2"#,
        r#"portico_graph_token_cache_total{result="hit"} 1"#,
        r#"portico_graph_client_secrets{state="expiring_30d"} 1"#,
        r#"portico_graph_client_secrets{state="expired"} 0"#,
        r#"portico_db_pool_connections{state="max"}"#,
        r#"portico_db_pool_connections{state="in_use"}"#,
    ] {
        assert!(text.contains(series), "no {series} in:\n{text}");
    }
    for private in [
        "orchid",
        tenant.id.as_str(),
        &user_id,
        "admin@",
        "contoso",
        &MAIL_APP.to_string(),
        SECRET,
    ] {
        assert!(
            !text.contains(private),
            "{private:?} in the metrics:\n{text}"
        );
    }
}

#[tokio::test]
async fn metrics_are_not_served_unless_configured() {
    let app = spawn_app(Backend::Sqlite).await;
    assert_eq!(scrape(&app, None).await.status(), 404);
    assert_eq!(scrape(&app, Some(METRICS_TOKEN)).await.status(), 404);
}

#[tokio::test]
async fn error_pages_give_the_request_id_as_their_reference() {
    let app = spawn_app(Backend::Sqlite).await;
    let page = app.browser().get("/t/nobody-here/users").await;
    page.assert_status(404);
    let request_id = page.headers["x-request-id"].to_str().unwrap();
    assert!(Uuid::try_parse(request_id).is_ok(), "{request_id}");
    page.assert_contains(&format!("Reference: <code>{request_id}</code>"));

    // A proxy's plain id is kept; anything else is replaced, never shown or logged.
    let browser = app.browser();
    for (sent, kept) in [("nginx-5f3a.9_1", true), ("<b>look here</b>", false)] {
        let response = browser
            .client
            .get(app.url("/t/nobody-here/users"))
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        let returned = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(returned == sent, kept, "{sent} became {returned}");
        let body = response.text().await.unwrap();
        assert!(body.contains(&format!("Reference: <code>{returned}</code>")));
    }
}

/// A tenant `slug` with the admin ana@SLUG.test, made with the command line.
async fn tenant_by_command_line(data_dir: &std::path::Path, slug: &str) {
    let created = run(
        portico(
            data_dir,
            &["tenant", "create", "--slug", slug, "--name", slug],
        ),
        "",
    )
    .await;
    assert!(created.status.success(), "{created:?}");
    let email = format!("ana@{slug}.test");
    let created = run(
        portico(
            data_dir,
            &[
                "user",
                "create",
                "--tenant",
                slug,
                "--email",
                &email,
                "--role",
                "admin",
                "--password-stdin",
            ],
        ),
        PASSWORD,
    )
    .await;
    assert!(created.status.success(), "{created:?}");
}

/// Signs in at a running process; returns the browser.
async fn signed_in(server: &Running, slug: &str) -> reqwest::Client {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = server.url(&format!("/t/{slug}/login"));
    let page = browser
        .get(&login)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "name=\"csrf_token\" value=\"";
    let start = page.find(marker).unwrap() + marker.len();
    let token = &page[start..start + page[start..].find('"').unwrap()];
    let email = format!("ana@{slug}.test");
    let answer = browser
        .post(&login)
        .form(&[
            ("csrf_token", token),
            ("email", email.as_str()),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    browser
}

#[tokio::test]
async fn json_logs_carry_the_request_id_tenant_and_user_of_each_request() {
    let dir = tempfile::tempdir().unwrap();
    tenant_by_command_line(dir.path(), "lotus").await;
    let mut command = portico(dir.path(), &["serve", "--bind", "127.0.0.1:0"]);
    command
        .env("PORTICO_LOG_FORMAT", "json")
        .env("RUST_LOG", "info,tower_http=debug");
    let mut server = Running::start(command).await;
    let browser = signed_in(&server, "lotus").await;

    let dashboard = browser.get(server.url("/t/lotus/")).send().await.unwrap();
    assert_eq!(dashboard.status(), 200);
    let request_id = dashboard.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    server.line_containing(&request_id).await;
    server.terminate().await;
    let (status, output) = server.exit().await;
    assert!(status.success(), "{status}");

    let lines: Vec<serde_json::Value> = output
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let of_request = |line: &serde_json::Value| {
        line["spans"]
            .as_array()
            .and_then(|spans| spans.iter().find(|span| span["name"] == "request"))
            .filter(|span| span["request_id"] == request_id.as_str())
            .cloned()
    };
    let request_lines: Vec<_> = lines.iter().filter_map(of_request).collect();
    assert!(request_lines.len() >= 2, "{output:#?}");
    let last = request_lines.last().unwrap();
    assert_eq!(last["route"], "/t/{slug}/");
    assert_eq!(last["tenant"], "lotus");
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}/portico.db", dir.path().display()))
        .await
        .unwrap();
    let user_id: String = sqlx::query_scalar("SELECT id FROM users WHERE email = 'ana@lotus.test'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(last["user_id"], user_id.as_str());
    assert!(lines.iter().all(|line| line["level"].is_string()));
}

#[tokio::test]
async fn metrics_on_their_own_address_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = portico(dir.path(), &["serve", "--bind", "127.0.0.1:0"]);
    command.env("PORTICO_METRICS_BIND", "127.0.0.1:0");
    let mut server = Running::start(command).await;
    let line = server.line_containing("metrics on http://").await;
    let start = line.find("http://").unwrap();
    let metrics_url = line[start..].split_whitespace().next().unwrap().to_owned();

    let home = reqwest::get(server.url("/")).await.unwrap();
    assert_eq!(home.status(), 200);
    let public = reqwest::get(server.url("/metrics")).await.unwrap();
    assert_eq!(public.status(), 404);
    let text = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"portico_http_requests_total{method="GET",route="/",status="200"} 1"#),
        "{text}"
    );

    // Every background job runs once at start.
    let mut text = String::new();
    let within = std::time::Duration::from_secs(30);
    eventually(within, "every background job's first run", async || {
        text = reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let ran = |job: &str| {
            text.contains(&format!(
                "portico_background_job_runs_total{{job=\"{job}\"}} 1"
            ))
        };
        ran("session_cleanup") && ran("oauth_renewal") && ran("expiry_alerts")
    })
    .await;
    assert!(
        !text.contains("portico_background_job_failures_total{"),
        "{text}"
    );
}

/// A form without a session's token: Portico answers 403 once it has read it whole.
const FORGED_FORM: &str = "csrf_token=forged&slug=acme";

/// Opens a request whose body is still arriving: in flight until the rest is sent.
async fn request_in_flight(server: &mut Running) -> TcpStream {
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    let body = FORGED_FORM;
    let head = format!(
        "POST /setup HTTP/1.1\r\nHost: portico\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..5]).await.unwrap();
    server.line_containing("started processing request").await;
    stream
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = portico(dir.path(), &["serve", "--bind", "127.0.0.1:0"]);
    command.env("RUST_LOG", "info,tower_http=debug");
    let mut server = Running::start(command).await;
    let mut stream = request_in_flight(&mut server).await;

    server.terminate().await;
    server.line_containing("shutting down").await;
    // No new connections once shutdown starts.
    let address = server.address;
    let within = std::time::Duration::from_secs(30);
    eventually(within, "connections refused", async || {
        TcpStream::connect(address).await.is_err()
    })
    .await;

    stream
        .write_all(&FORGED_FORM.as_bytes()[5..])
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(response.contains("This form has expired"), "{response}");

    let (status, output) = server.exit().await;
    assert_eq!(status.code(), Some(0), "{output:#?}");
    assert!(output.last().unwrap().contains("stopped"), "{output:#?}");
}

#[tokio::test]
async fn shutdown_cuts_off_what_outlives_the_deadline_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = portico(dir.path(), &["serve", "--bind", "127.0.0.1:0"]);
    command
        .env("RUST_LOG", "info,tower_http=debug")
        .env("PORTICO_SHUTDOWN_TIMEOUT", "1");
    let mut server = Running::start(command).await;
    let _never_finished = request_in_flight(&mut server).await;

    server.terminate().await;
    let (status, output) = server.exit().await;
    assert_eq!(status.code(), Some(0), "{output:#?}");
    assert!(
        output
            .iter()
            .any(|line| line.contains("stopped after PORTICO_SHUTDOWN_TIMEOUT (1 s)")),
        "{output:#?}"
    );
}

/// (email, role) of every user of the tenant, sorted.
async fn users_of(app: &TestApp, slug: &str) -> Vec<(String, String, String)> {
    let tenant = app.tenant(slug).await;
    let mut rows: Vec<_> = users::list(&app.state.db, &tenant.id, None, ListPage::new(None, 100))
        .await
        .unwrap()
        .rows
        .into_iter()
        .map(|user| {
            (
                user.id.as_str().to_owned(),
                user.email,
                user.role.label().to_owned(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_to_the_same_data() {
    let app = spawn_app(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant_with_admin("maple").await;
    app.create_user(&tenant, "bo@maple.test", Role::Agent).await;
    let before = users_of(&app, "maple").await;
    let audit_before = app.audit_actions(&tenant).await;

    // Every page view writes its session: the backup runs among writes.
    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("portico-backup.db");
    let mut backup = portico(backups.path(), &["backup", "--to", file.to_str().unwrap()]);
    backup.env("DATABASE_URL", app.database_url());
    let views = async {
        for _ in 0..20 {
            admin.get("/t/maple/").await.assert_status(200);
        }
    };
    let (backed_up, ()) = tokio::join!(run(backup, ""), views);
    assert!(backed_up.status.success(), "{backed_up:?}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let restored_dir = tempfile::tempdir().unwrap();
    let restored = run(
        portico(
            restored_dir.path(),
            &["restore", "--from", file.to_str().unwrap()],
        ),
        "",
    )
    .await;
    assert!(restored.status.success(), "{restored:?}");
    assert_eq!(
        String::from_utf8_lossy(&restored.stdout).trim(),
        format!("restored 1 tenants and 2 users from {}", file.display())
    );
    // A second restore would overwrite data: refused.
    let again = run(
        portico(
            restored_dir.path(),
            &["restore", "--from", file.to_str().unwrap()],
        ),
        "",
    )
    .await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds data"));

    let restored_app = crate::support::spawn_app_on(TestDatabase::sqlite_in(restored_dir)).await;
    assert_eq!(users_of(&restored_app, "maple").await, before);
    let restored_tenant = restored_app.tenant("maple").await;
    assert_eq!(
        restored_app.audit_actions(&restored_tenant).await,
        audit_before
    );
    let browser = restored_app.browser();
    browser
        .sign_in("maple", "admin@maple.test", PASSWORD)
        .await
        .assert_redirect("/t/maple/");
    browser
        .get("/t/maple/users")
        .await
        .assert_contains("bo@maple.test");
}

#[tokio::test]
async fn doctor_reports_a_world_readable_key_file_and_how_to_fix_it() {
    let microsoft = FakeMicrosoft::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("secret.key");
    std::fs::write(&key_file, SecretKey::generate().to_base64()).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let doctor = || {
        let mut command = portico(dir.path(), &["doctor"]);
        command
            .env("PORTICO_BASE_URL", "https://portal.example.com")
            .env("PORTICO_MICROSOFT_LOGIN_URL", microsoft.login_url())
            .env("PORTICO_MICROSOFT_GRAPH_URL", microsoft.graph_url());
        command
    };

    let report = run(doctor(), "").await;
    let stdout = String::from_utf8_lossy(&report.stdout);
    assert_eq!(report.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "FAIL  secret key    {} is readable or writable by others than its owner (mode 644)",
            key_file.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("fix: chmod 600 {}", key_file.display())),
        "{stdout}"
    );
    assert!(stdout.contains("ok    base URL      https://portal.example.com/"));
    assert!(stdout.contains("ok    Microsoft"), "{stdout}");
    assert!(String::from_utf8_lossy(&report.stderr).contains("1 problems to fix"));

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let report = run(doctor(), "").await;
    let stdout = String::from_utf8_lossy(&report.stdout);
    assert_eq!(report.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("ok    secret key"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[tokio::test]
async fn two_instances_migrating_one_postgres_at_once_both_start() {
    if !Backend::postgres_available() {
        return;
    }
    let database = TestDatabase::create(Backend::Postgres).await;
    let key = SecretKey::generate().to_base64();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let instance = |dir: &std::path::Path| {
        let mut command = portico(dir, &["serve", "--bind", "127.0.0.1:0"]);
        command
            .env("DATABASE_URL", &database.url)
            .env("PORTICO_SECRET_KEY", &key);
        command
    };
    let (a, b) = tokio::join!(
        Running::start(instance(dir_a.path())),
        Running::start(instance(dir_b.path()))
    );
    for server in [&a, &b] {
        let ready = reqwest::get(server.url("/readyz")).await.unwrap();
        assert_eq!(ready.status(), 200);
    }
    let pool = sqlx::AnyPool::connect(&database.url).await.unwrap();
    let (applied, succeeded): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(SUM(CASE WHEN success THEN 1 ELSE 0 END) AS BIGINT) \
         FROM _sqlx_migrations",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let files = std::fs::read_dir("migrations/postgres").unwrap().count();
    assert_eq!((applied, succeeded), (files as i64, files as i64));
}

/// The form every SQLite tool takes, with no `?mode=rwc`, on a machine where nothing of it
/// exists yet: Portico creates the directories and the file, private to its user.
#[tokio::test]
async fn a_plain_sqlite_url_to_a_new_directory_creates_the_database_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("some/new/dir/portico.db");
    let mut command = portico(
        &dir.path().join("data"),
        &["serve", "--bind", "127.0.0.1:0"],
    );
    command.env("DATABASE_URL", format!("sqlite://{}", database.display()));
    let server = Running::start(command).await;

    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&database), 0o600);
    for created in ["some", "some/new", "some/new/dir"] {
        assert_eq!(mode(&dir.path().join(created)), 0o700, "{created}");
    }
    // The tenants table was made and read: the first run offers its setup link.
    assert!(
        server
            .output
            .iter()
            .any(|line| line.contains("no tenant exists yet")),
        "{:?}",
        server.output
    );
}

/// A database path that cannot be made fails at start with one line naming it and why.
#[tokio::test]
async fn an_sqlite_path_that_cannot_be_created_is_named_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_directory = dir.path().join("portico.conf");
    std::fs::write(&not_a_directory, "").unwrap();
    let database = not_a_directory.join("portico.db");
    let mut command = portico(
        &dir.path().join("data"),
        &["serve", "--bind", "127.0.0.1:0"],
    );
    command.env("DATABASE_URL", format!("sqlite://{}", database.display()));

    let output = run(command, "").await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("error"))
        .collect();
    assert_eq!(
        errors,
        [format!(
            "error: database: cannot create or open the SQLite database {}: not a directory",
            not_a_directory.display()
        )],
        "{stderr}"
    );
}

/// A first start makes the data directory 0700 and the database 0600; doctor reports a
/// database file opened up since, with the fix.
#[tokio::test]
async fn the_data_directory_and_database_are_private_and_doctor_says_when_not() {
    let microsoft = FakeMicrosoft::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let migrated = run(portico(&data, &["migrate"]), "").await;
    assert!(migrated.status.success(), "{migrated:?}");
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let database = data.join("portico.db");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&database), 0o600);

    std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut doctor = portico(&data, &["doctor"]);
    doctor
        .env("PORTICO_MICROSOFT_LOGIN_URL", microsoft.login_url())
        .env("PORTICO_MICROSOFT_GRAPH_URL", microsoft.graph_url());
    let report = run(doctor, "").await;
    let stdout = String::from_utf8_lossy(&report.stdout);
    assert!(
        stdout.contains(&format!(
            "the database file {} is open to others than its owner (mode 644)",
            database.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("fix: chmod 600 {}", database.display())),
        "{stdout}"
    );
}

/// Settings that cannot work stop Portico before it listens, with one line naming them.
#[tokio::test]
async fn an_audit_retention_of_zero_days_or_a_bad_egress_range_is_refused_at_start() {
    for (name, value, expected) in [
        (
            "PORTICO_AUDIT_RETENTION_DAYS",
            "0",
            "PORTICO_AUDIT_RETENTION_DAYS must be a whole number of days, at least 1",
        ),
        (
            "PORTICO_EGRESS_ALLOW",
            "10.20.0.0/16, intranet",
            "PORTICO_EGRESS_ALLOW: \"intranet\" is not a CIDR range",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut command = portico(dir.path(), &["serve", "--bind", "127.0.0.1:0"]);
        command.env(name, value);
        let output = run(command, "").await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}={value} started");
        assert!(stderr.contains(expected), "{name}={value}: {stderr}");
    }
}
