//! `spawn_app()`: the real router on a random port, a fresh database, and browsers that
//! keep cookies and never follow redirects, so tests see exactly what a browser is told.

mod database;
pub mod fake_microsoft;
mod loopback;
pub mod process;

use std::net::SocketAddr;
use std::sync::Arc;

use portico::app::{App, AppState};
use portico::config::{Config, MetricsAccess, MicrosoftArgs};
use portico::crypto::SecretKey;
use portico::domain::{DisplayName, EmailAddress, Role, Slug, TenantName};
use portico::egress::EgressPolicy;
use portico::store::tenants::{self, Tenant};
use portico::store::users::{self, NewUser, UserId};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

pub use database::{Backend, TestDatabase};
use fake_microsoft::{FakeApp, FakeMicrosoft, FakeUser};
pub use loopback::serve_on_loopback;

/// Runs an async test body once per backend: `mod name { sqlite, postgres }`.
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn sqlite() {
                super::$test($crate::support::Backend::Sqlite).await;
            }

            #[tokio::test]
            async fn postgres() {
                if $crate::support::Backend::postgres_available() {
                    super::$test($crate::support::Backend::Postgres).await;
                }
            }
        }
    )*};
}

pub const PASSWORD: &str = "correct horse battery";

/// How far ahead the "Secret expires on" is that [`with_secret_expiry`] enters.
pub const SECRET_LIFETIME_DAYS: i64 = 180;

/// `fields` as a person fills in a form with a client secret: when a secret is typed without
/// its "Secret expires on", the date Azure shows for a secret made today ([`SECRET_LIFETIME_DAYS`]
/// on) goes with it.
pub fn with_secret_expiry<'a>(
    fields: &[(&'a str, &'a str)],
    date: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut all = fields.to_vec();
    let typed_secret = fields
        .iter()
        .any(|(name, value)| *name == "client_secret" && !value.is_empty());
    if typed_secret && !fields.iter().any(|(name, _)| *name == "secret_expires_on") {
        all.push(("secret_expires_on", date));
    }
    all
}

/// The date [`with_secret_expiry`] enters.
pub fn default_secret_expiry() -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::days(SECRET_LIFETIME_DAYS))
        .date()
        .to_string()
}

/// How often `eventually` looks again: short, so a wait ends soon after its condition holds.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Waits until `condition` holds, looking every few milliseconds; fails the test, saying
/// `what` did not happen, once it has not held for `within`.
pub async fn eventually(
    within: std::time::Duration,
    what: &str,
    mut condition: impl AsyncFnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

pub struct TestApp {
    pub address: SocketAddr,
    pub state: AppState,
    /// Stands in for Microsoft's identity platform and Graph.
    pub microsoft: FakeMicrosoft,
    /// Dropped with the app: the SQLite directory goes with it.
    _database: TestDatabase,
    /// A pool of the tests' own, to read what Portico stored.
    inspector: tokio::sync::OnceCell<sqlx::AnyPool>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    let database = TestDatabase::create(backend).await;
    spawn_app_on(database).await
}

/// Everything Portico logged during this test binary's run, at debug level, so tests can
/// check that no secret ever reaches a log line.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        tracing_subscriber::fmt()
            .with_env_filter("portico=debug,tower_http=debug,info")
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .init();
    });
}

pub async fn spawn_app_on(database: TestDatabase) -> TestApp {
    spawn_app_with(database, |_| {}).await
}

/// A test app whose configuration `configure` adjusts first.
pub async fn spawn_app_with(
    database: TestDatabase,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    capture_logs();
    // The suite needs the mail servers: without them it stops here, in its first test.
    crate::mail_servers::servers::installed();
    let microsoft = FakeMicrosoft::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut config = Config {
        bind: address,
        base_url: format!("http://{address}").parse().unwrap(),
        database_url: database.url.clone(),
        secret_key: SecretKey::generate().into(),
        trust_forwarded_for: false,
        mail_ca_file: None,
        microsoft: MicrosoftArgs {
            login_url: Some(microsoft.login_url().parse().unwrap()),
            graph_url: Some(microsoft.graph_url().parse().unwrap()),
            // The XOAUTH2 responders of `mail_servers` play Exchange Online on loopback.
            exchange_host: Some("127.0.0.1".into()),
            // Short, so timeout tests end quickly; the fake answers in milliseconds otherwise.
            timeout_seconds: 2,
        },
        metrics: MetricsAccess::default(),
        shutdown_timeout: std::time::Duration::from_secs(5),
        smtp_relay: None,
        // The tests' mail servers and OAuth endpoints listen on loopback, as an operator
        // would open an on-premises range.
        egress: EgressPolicy::allowing(vec!["127.0.0.0/8".parse().unwrap()]),
        alert_send_timeout: portico::config::DEFAULT_ALERT_SEND_TIMEOUT,
        audit_retention_days: portico::config::DEFAULT_AUDIT_RETENTION_DAYS,
        mailbox_check_interval: Some(std::time::Duration::from_secs(
            portico::config::DEFAULT_MAILBOX_CHECK_MINUTES * 60,
        )),
        mailbox_check_timeout: portico::config::DEFAULT_MAILBOX_CHECK_TIMEOUT,
    };
    configure(&mut config);
    let state = App::start(config).await.unwrap();
    tokio::spawn(portico::serve(
        state.clone(),
        listener,
        std::future::pending(),
    ));
    TestApp {
        address,
        state,
        microsoft,
        _database: database,
        inspector: tokio::sync::OnceCell::new(),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// A new browser with an empty cookie jar.
    pub fn browser(&self) -> Browser {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        Browser {
            base: format!("http://{}", self.address),
            client: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar,
            history: Arc::default(),
        }
    }

    pub fn setup_url(&self) -> Option<String> {
        self.state
            .setup_url()
            .map(|url| url.expose_secret().to_owned())
    }

    /// A tenant made directly through the store, as `portico tenant create` does.
    pub async fn create_tenant(&self, slug: &str, name: &str) -> Tenant {
        let slug = Slug::parse(slug).unwrap();
        let name = TenantName::parse(name).unwrap();
        portico::services::accounts::create_tenant(&self.state.db, &slug, &name, None, false)
            .await
            .unwrap()
            .0
    }

    /// The tenant with this slug, which the test made.
    pub async fn tenant(&self, slug: &str) -> Tenant {
        tenants::find_by_slug(&self.state.db, slug)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no tenant {slug}"))
    }

    /// Registers `azure_app` with the fake Microsoft and adds its home directory as Contoso,
    /// which every test calls it: a form may name it `contoso.onmicrosoft.com` or its GUID.
    pub fn register_azure_app(&self, azure_app: FakeApp) {
        self.microsoft
            .add_directory(azure_app.home_tenant, &["contoso.onmicrosoft.com"]);
        self.microsoft.add_app(azure_app);
    }

    /// An agent of `tenant` with the shared password who is also `email`, named `name`, in
    /// Microsoft's `directory`, which vouches for the email: her first Microsoft sign-in
    /// links her by it. The fake Microsoft signs in as her next.
    pub async fn microsoft_user(
        &self,
        tenant: &Tenant,
        directory: Uuid,
        email: &str,
        name: &str,
    ) -> UserId {
        let user = self.create_user(tenant, email, Role::Agent).await;
        self.microsoft
            .add_user(FakeUser::new(directory, email, name).email(email));
        self.microsoft.sign_in_as(email);
        user
    }

    /// A user with the shared test password, as `portico user create` does.
    pub async fn create_user(&self, tenant: &Tenant, email: &str, role: Role) -> UserId {
        // One hash of the shared password serves every user: hashing is slow on purpose.
        static HASH: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
        let hash = HASH
            .get_or_init(|| async {
                self.state
                    .passwords
                    .hash(SecretString::from(PASSWORD))
                    .await
                    .unwrap()
            })
            .await
            .clone();
        let user = NewUser {
            email: EmailAddress::parse(email).unwrap(),
            display_name: DisplayName::parse(email.split('@').next().unwrap()).unwrap(),
            role,
            password_hash: Some(hash),
        };
        users::create(&self.state.db, &tenant.id, &user)
            .await
            .unwrap()
    }

    /// A tenant with one admin, and a browser signed in as that admin.
    pub async fn tenant_with_admin(&self, slug: &str) -> (Tenant, Browser) {
        let tenant = self.create_tenant(slug, &format!("{slug} Inc")).await;
        let email = format!("admin@{slug}.test");
        self.create_user(&tenant, &email, Role::Admin).await;
        let browser = self.browser();
        browser
            .sign_in(slug, &email, PASSWORD)
            .await
            .assert_redirect(&format!("/t/{slug}/"));
        (tenant, browser)
    }

    /// The id of the tenant's user with this email, as the Users page links it.
    pub async fn user_id(&self, tenant: &Tenant, email: &str) -> String {
        let page = portico::store::Page::new(None, 500);
        users::list(&self.state.db, &tenant.id, Some(email), page)
            .await
            .unwrap()
            .rows
            .into_iter()
            .find(|user| user.email == email)
            .unwrap()
            .id
            .as_str()
            .to_owned()
    }

    /// Every text value of every table, for scans that must not find a secret in
    /// plaintext. (On SQLite, also the raw database files, WAL included.)
    pub async fn database_text(&self) -> Vec<String> {
        let mut rows = Vec::new();
        for (_, row) in self.all_rows().await {
            rows.extend(row.into_iter().map(|(_, value)| value));
        }
        if let Some(dir) = self._database.sqlite_dir() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                rows.push(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
        rows
    }

    /// Runs `sql` on the tests' own connection: to leave rows as an earlier Portico did.
    pub async fn execute(&self, sql: &str) {
        sqlx::query(sql)
            .execute(self.inspector().await)
            .await
            .unwrap();
    }

    /// The tests' own connection to the database.
    async fn inspector(&self) -> &sqlx::AnyPool {
        self.inspector
            .get_or_init(|| async {
                sqlx::any::AnyPoolOptions::new()
                    .max_connections(2)
                    .connect(&self._database.url)
                    .await
                    .unwrap()
            })
            .await
    }

    /// The names of every table Portico created (sqlx's migration bookkeeping aside).
    pub async fn table_names(&self) -> Vec<String> {
        let pool = self.inspector().await;
        let query = if self._database.sqlite_dir().is_some() {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        } else {
            "SELECT table_schema || '.' || table_name FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        };
        let names: Vec<String> = sqlx::query_scalar::<_, String>(query)
            .fetch_all(pool)
            .await
            .unwrap()
            .into_iter()
            .filter(|name| !name.contains("_sqlx_migrations"))
            .collect();
        assert!(!names.is_empty(), "no tables found");
        names
    }

    /// Every row of every table, as (table, [(column, value as text)]).
    pub async fn all_rows(&self) -> Vec<(String, Vec<(String, String)>)> {
        use sqlx::{Column as _, Row as _};
        let pool = self.inspector().await;
        let mut all = Vec::new();
        for table in self.table_names().await {
            let query = format!("SELECT * FROM {table}");
            for row in sqlx::query(&query).fetch_all(pool).await.unwrap() {
                let columns = row
                    .columns()
                    .iter()
                    .map(|column| {
                        let index = column.ordinal();
                        let value = row
                            .try_get::<Option<String>, _>(index)
                            .map(|v| v.unwrap_or_else(|| "NULL".into()))
                            .or_else(|_| {
                                row.try_get::<Option<i64>, _>(index)
                                    .map(|v| v.map_or_else(|| "NULL".into(), |v| v.to_string()))
                            })
                            .or_else(|_| {
                                row.try_get::<Option<Vec<u8>>, _>(index).map(|v| {
                                    v.map_or_else(
                                        || "NULL".into(),
                                        |v| String::from_utf8_lossy(&v).into_owned(),
                                    )
                                })
                            })
                            .unwrap_or_else(|_| "?".into());
                        (column.name().to_owned(), value)
                    })
                    .collect();
                all.push((table.clone(), columns));
            }
        }
        all
    }

    /// Everything stored about one tenant, one line per row, sorted: its `tenants` row and
    /// every row of any table whose `tenant_id` is it. Equal snapshots mean nothing of the
    /// tenant changed.
    pub async fn tenant_rows(&self, tenant_id: &str) -> Vec<String> {
        let mut lines: Vec<String> = self
            .all_rows()
            .await
            .into_iter()
            .filter(|(table, columns)| {
                let column = if table.ends_with("tenants") {
                    "id"
                } else {
                    "tenant_id"
                };
                columns
                    .iter()
                    .any(|(name, value)| name == column && value == tenant_id)
            })
            .map(|(table, columns)| {
                let values: Vec<String> = columns
                    .into_iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect();
                format!("{table}: {}", values.join(", "))
            })
            .collect();
        lines.sort();
        lines
    }

    pub fn database_url(&self) -> String {
        self._database.url.clone()
    }

    /// `count` IMAP mailboxes named box-00000... in one segment, inserted in bulk.
    pub async fn insert_mailboxes(&self, tenant: &Tenant, segment_id: &str, count: usize) {
        let pool = sqlx::AnyPool::connect(&self._database.url).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
            let rows: Vec<String> = chunk
                .iter()
                .map(|n| {
                    format!(
                        "('{id}', '{tenant}', '{segment_id}', 'box-{n:05}', 'box-{n:05}@contoso.com', \
                         'incoming', 'imap', 'imap.contoso.com', 993, 'tls', 'box', 1, 0, 0)",
                        id = uuid::Uuid::new_v4(),
                        tenant = tenant.id.as_str(),
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO mailboxes (id, tenant_id, segment_id, name, email, direction, protocol, \
                 host, port, security, username, enabled, created_at, updated_at) VALUES {}",
                rows.join(", ")
            );
            sqlx::query(&sql).execute(&mut *tx).await.unwrap();
        }
        // As the store does: the segment keeps its count in the same transaction.
        sqlx::query(
            "UPDATE segments SET mailbox_count = mailbox_count + $1 WHERE tenant_id = $2 AND id = $3",
        )
        .bind(i64::try_from(count).unwrap())
        .bind(tenant.id.as_str())
        .bind(segment_id)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    /// The tenant's audit log as (action, target, detail) rows, newest first.
    pub async fn audit_actions(&self, tenant: &Tenant) -> Vec<(String, String, String)> {
        let page = portico::store::Page::new(None, 500);
        portico::store::audit::list(&self.state.db, &tenant.id, page)
            .await
            .unwrap()
            .rows
            .into_iter()
            .map(|row| (row.action, row.target, row.detail))
            .collect()
    }
}

/// One browser: a cookie jar against one server.
pub struct Browser {
    base: String,
    pub client: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
    /// Every answer this browser received, for scans of everything a user was shown.
    history: Arc<std::sync::Mutex<Vec<Page>>>,
}

/// A response read whole: status, Location and body.
#[derive(Debug, Clone)]
pub struct Page {
    /// Where it came from.
    pub url: String,
    pub status: StatusCode,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub async fn read(response: reqwest::Response) -> Self {
        let url = response.url().to_string();
        let status = response.status();
        let headers = response.headers().clone();
        let location = headers
            .get("location")
            .map(|value| value.to_str().unwrap().to_owned());
        Self {
            url,
            status,
            location,
            headers,
            body: response.text().await.unwrap(),
        }
    }

    #[track_caller]
    pub fn assert_redirect(&self, to: &str) -> &Self {
        assert!(
            self.status.is_redirection(),
            "expected a redirect to {to}, got {} with {}",
            self.status,
            self.body
        );
        assert_eq!(self.location.as_deref(), Some(to));
        self
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }

    #[track_caller]
    pub fn assert_contains(&self, text: &str) -> &Self {
        assert!(
            self.body.contains(text),
            "expected {text:?} in the page:\n{}",
            self.body
        );
        self
    }

    #[track_caller]
    pub fn assert_lacks(&self, text: &str) -> &Self {
        assert!(
            !self.body.contains(text),
            "did not expect {text:?} in the page:\n{}",
            self.body
        );
        self
    }

    /// The form token of the first form of the page.
    pub fn csrf_token(&self) -> String {
        self.hidden_field("csrf_token")
            .unwrap_or_else(|| panic!("no form token in:\n{}", self.body))
    }

    /// The version of the row the page's edit forms were loaded with, if they carry one.
    pub fn version(&self) -> Option<String> {
        self.hidden_field("version")
    }

    fn hidden_field(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = start + self.body[start..].find('"')?;
        Some(self.body[start..end].to_owned())
    }
}

impl Browser {
    /// The absolute URL of one of Portico's paths.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// This browser, cookies and all, talking to another instance (as through a load
    /// balancer).
    pub fn at(&self, other: &TestApp) -> Browser {
        Browser {
            base: format!("http://{}", other.address),
            client: self.client.clone(),
            jar: self.jar.clone(),
            history: self.history.clone(),
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        self.get_url(&format!("{}{path}", self.base)).await
    }

    /// GET of an absolute URL: Microsoft's pages, or Portico's from a Location header.
    pub async fn get_url(&self, url: &str) -> Page {
        self.keep(Page::read(self.client.get(url).send().await.unwrap()).await)
    }

    fn keep(&self, page: Page) -> Page {
        self.history.lock().unwrap().push(page.clone());
        page
    }

    /// Every answer Portico gave this browser so far (Microsoft's pages aside).
    pub fn history(&self) -> Vec<Page> {
        let history = self.history.lock().unwrap();
        history
            .iter()
            .filter(|page| page.url.starts_with(&self.base))
            .cloned()
            .collect()
    }

    /// Clicks "Sign in with Microsoft" (or a link that starts it) and lets the (fake)
    /// Microsoft send the browser on, up to the URL it redirects back to. Returns
    /// Microsoft's own page instead when it does not redirect.
    pub async fn microsoft_authorize(&self, start_path: &str) -> Result<String, Page> {
        let start = self.get(start_path).await;
        assert!(
            start.status.is_redirection(),
            "no redirect to Microsoft: {} {}",
            start.status,
            start.body
        );
        let authorize = self.get_url(start.location.as_deref().unwrap()).await;
        if !authorize.status.is_redirection() {
            return Err(authorize);
        }
        Ok(authorize.location.unwrap())
    }

    /// The whole Microsoft sign-in, ending with Portico's answer to the callback.
    pub async fn microsoft_sign_in(&self, slug: &str) -> Page {
        match self
            .microsoft_authorize(&format!("/t/{slug}/auth/microsoft"))
            .await
        {
            Ok(callback) => self.get_url(&callback).await,
            Err(microsoft_page) => microsoft_page,
        }
    }

    /// Sends `method` to `path` with `fields` as a form body (none for GET and HEAD).
    pub async fn request(&self, method: &str, path: &str, fields: &[(&str, &str)]) -> Page {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if method != reqwest::Method::GET && method != reqwest::Method::HEAD {
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(serde_urlencoded::to_string(fields).unwrap());
        }
        self.keep(Page::read(request.send().await.unwrap()).await)
    }

    /// Posts exactly these fields, without adding a form token.
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(fields).unwrap();
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.keep(Page::read(response).await)
    }

    /// Opens `page`, then posts `fields` to `action` with the page's form token (and the
    /// version its forms carry, unless `fields` has one), like a person filling in the form.
    pub async fn submit(&self, page: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let form_page = self.get(page).await;
        form_page.assert_status(200);
        let token = form_page.csrf_token();
        let version = form_page.version();
        let mut all = vec![("csrf_token", token.as_str())];
        if let Some(version) = &version
            && !fields.iter().any(|(name, _)| *name == "version")
        {
            all.push(("version", version));
        }
        all.extend_from_slice(fields);
        self.post_raw(action, &all).await
    }

    /// Adds a Graph credential (in the Global cloud) to tenant `slug` through the External
    /// APIs form with `fields`; returns the credential's page, where the save redirected.
    pub async fn add_graph_credential(&self, slug: &str, fields: &[(&str, &str)]) -> String {
        self.add_saved(slug, "external-apis", fields).await
    }

    /// Adds an OAuth connection (in the Global cloud) to tenant `slug` through its form with
    /// `fields`; returns the connection's page, where the save redirected.
    pub async fn add_oauth_connection(&self, slug: &str, fields: &[(&str, &str)]) -> String {
        self.add_saved(slug, "oauth-connections", fields).await
    }

    /// Submits the "new" form of one of the tenant's lists and returns the saved row's page.
    async fn add_saved(&self, slug: &str, list: &str, fields: &[(&str, &str)]) -> String {
        let list = format!("/t/{slug}/{list}");
        let expires_on = default_secret_expiry();
        let mut all = vec![("cloud", "global")];
        all.extend(with_secret_expiry(fields, &expires_on));
        let page = self.submit(&format!("{list}/new"), &list, &all).await;
        let location = page
            .location
            .clone()
            .unwrap_or_else(|| panic!("not saved: {}", page.body));
        assert!(location.starts_with(&format!("{list}/")), "{location}");
        location
    }

    pub async fn sign_in(&self, slug: &str, email: &str, password: &str) -> Page {
        let login = format!("/t/{slug}/login");
        self.submit(&login, &login, &[("email", email), ("password", password)])
            .await
    }

    /// The session cookie's value, to compare before and after sign-in.
    pub fn session_cookie(&self) -> Option<String> {
        use reqwest::cookie::CookieStore as _;
        let cookies = self.jar.cookies(&self.base.parse().unwrap())?;
        cookies
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|pair| pair.strip_prefix("portico_session=").map(str::to_owned))
    }

    /// Replaces the session cookie, as an attacker who planted one would.
    pub fn set_session_cookie(&self, value: &str) {
        self.jar.add_cookie_str(
            &format!("portico_session={value}; Path=/"),
            &self.base.parse().unwrap(),
        );
    }
}
