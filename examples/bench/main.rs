//! Portico's benchmark (run it with `bench/run`): how close Portico's pages come to a bare
//! axum handler on the same machine, on SQLite and on PostgreSQL, with the targets of
//! issue 9 checked. Each page is compared twice: with "hello", and with a bare handler
//! serving that very page's response from memory. It seeds through Portico's store, starts
//! the release binary, loads it with wrk on loopback and prints one table; the same goes to
//! bench/results/ as JSON.
//!
//! A benchmark, not a test: nothing here runs in `cargo test`.

#[path = "../../tests/it/support/fake_microsoft/mod.rs"]
mod fake_microsoft;
mod load;
mod seed;
mod servers;
mod sign_ins;

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use portico::crypto::{Keyring, SecretKey};
use portico::store::Db;
use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;

use fake_microsoft::{FakeMicrosoft, Seed};
use load::{Load, Measured};
use servers::{Database, Server};
use sign_ins::{Storm, TimingProxy};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

#[derive(Parser)]
#[command(about = "Portico's benchmark: pages against a bare axum handler")]
struct Args {
    /// A PostgreSQL server on which a database may be created (and dropped); without it
    /// only SQLite is measured.
    #[arg(long, env = "BENCH_POSTGRES_URL")]
    postgres: Option<String>,
    /// Seconds each load runs.
    #[arg(long, default_value_t = 6)]
    seconds: u64,
    /// Connections each load keeps open.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Microsoft sign-ins, one after another, in scenario 4.
    #[arg(long, default_value_t = 300)]
    microsoft_sign_ins: usize,
    /// Tenants of 1,000 mailboxes each in scenario 5's large case.
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// The portico binary to measure (default: the release build beside this one).
    #[arg(long)]
    portico: Option<PathBuf>,
    /// An earlier portico binary (the previous release) whose pages are measured too, in the
    /// same run, on the same database: it must know the same migrations.
    #[arg(long)]
    before: Option<PathBuf>,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Also write the report as bench/results/baseline.json (this machine's reference).
    #[arg(long)]
    baseline: bool,
}

/// Local sign-ins at once in scenario 3.
const STORM: usize = seed::STORM_AGENTS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Backend {
    Sqlite,
    Postgres,
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
struct Row {
    backend: Option<Backend>,
    scenario: String,
    requests_per_second: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    /// Throughput over the "hello" ceiling's.
    ratio: Option<f64>,
    /// Throughput over a bare handler's serving this page's recorded response from memory.
    ratio_to_same_bytes: Option<f64>,
    /// Throughput over Portico's own stack serving this page with its data in memory.
    ratio_to_stack: Option<f64>,
    target: String,
    met: Option<bool>,
}

impl Row {
    fn load(backend: Backend, scenario: &str, measured: &Measured, ceiling: f64) -> Self {
        let rps = measured.requests_per_second();
        Self {
            backend: Some(backend),
            scenario: scenario.to_owned(),
            requests_per_second: Some(rps),
            p50_ms: Some(measured.p50_ms()),
            p99_ms: Some(measured.p99_ms()),
            ratio: Some(rps / ceiling),
            ratio_to_same_bytes: None,
            ratio_to_stack: None,
            target: String::new(),
            met: None,
        }
    }

    /// Also compared with `same_bytes`, the bare handler serving this page's bytes.
    fn beside(mut self, same_bytes: &Measured) -> Self {
        self.ratio_to_same_bytes = self
            .requests_per_second
            .map(|rps| rps / same_bytes.requests_per_second());
        self
    }

    /// Also compared with `stack`, Portico's own stack serving this page from memory.
    fn on_stack(mut self, stack: &Measured) -> Self {
        self.ratio_to_stack = self
            .requests_per_second
            .map(|rps| rps / stack.requests_per_second());
        self
    }

    /// Throughput at least `ratio` of Portico's own stack with the data in memory, and p99
    /// at most `p99_ms` where there is such a target.
    fn against_stack(mut self, ratio: f64, p99_ms: Option<f64>) -> Self {
        self.target = match p99_ms {
            Some(p99_ms) => format!("x stack >= {ratio:.2}, p99 <= {p99_ms} ms"),
            None => format!("x stack >= {ratio:.2}"),
        };
        self.met = Some(
            self.ratio_to_stack >= Some(ratio) && p99_ms.is_none_or(|p99| self.p99_ms <= Some(p99)),
        );
        self
    }

    fn other(backend: Backend, scenario: &str, value: String, target: &str, met: bool) -> Self {
        Self {
            backend: Some(backend),
            scenario: format!("{scenario}: {value}"),
            requests_per_second: None,
            p50_ms: None,
            p99_ms: None,
            ratio: None,
            ratio_to_same_bytes: None,
            ratio_to_stack: None,
            target: target.to_owned(),
            met: Some(met),
        }
    }
}

#[derive(Serialize)]
struct Report {
    date: String,
    machine: Machine,
    connections: u32,
    seconds: u64,
    ceiling: Measured,
    rows: Vec<Row>,
    backends: Vec<BackendDetails>,
}

#[derive(Serialize)]
struct Machine {
    cores: usize,
    cpu: String,
    /// The 1-minute load average before the run: other work on the machine skews results.
    load_before: f64,
}

/// What the table summarizes, for the record.
#[derive(Serialize)]
struct BackendDetails {
    backend: Backend,
    seed_seconds: f64,
    scale_seed_seconds: f64,
    start_to_ready_ms: f64,
    rss_idle_mib: f64,
    rss_after_load_mib: f64,
    /// None when a sign-in of the storm failed (`storm_error`).
    storm: Option<sign_ins::StormReport>,
    storm_error: Option<String>,
    microsoft: MicrosoftDetails,
    loads: Vec<(String, Measured)>,
    /// The bare handler serving each page's recorded response, loaded as the page is.
    page_ceilings: Vec<PageCeiling>,
    /// Portico's own stack serving each page with its data in memory, loaded as the page is.
    stack_ceilings: Vec<(String, Measured)>,
}

#[derive(Serialize)]
struct PageCeiling {
    page: String,
    route: String,
    /// The recorded body's length; its headers are Portico's too.
    body_bytes: usize,
    measured: Measured,
}

#[derive(Serialize)]
struct MicrosoftDetails {
    sign_ins: usize,
    callback_p50_ms: f64,
    callback_p99_ms: f64,
    own_p50_ms: f64,
    own_p99_ms: f64,
    token_p50_ms: f64,
    jwks_fetches: usize,
    discovery_fetches: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let scratch = tempfile::tempdir()?;
    let load = Load::new(
        scratch.path(),
        args.connections,
        Duration::from_secs(args.seconds),
    )?;
    let machine = machine()?;
    if machine.load_before > 1.0 {
        eprintln!(
            "note: load average {:.2} before the run; other work skews the results",
            machine.load_before
        );
    }

    eprintln!("ceiling: bare axum hello");
    let ceiling_server = Server::ceiling(&[]).await?;
    load.get(&ceiling_server.url, None).await?; // warm-up
    let ceiling = load.get(&ceiling_server.url, None).await?;
    ceiling_server.stop().await?;
    let mut rows = vec![Row {
        backend: None,
        scenario: "ceiling: bare axum \"hello\"".into(),
        requests_per_second: Some(ceiling.requests_per_second()),
        p50_ms: Some(ceiling.p50_ms()),
        p99_ms: Some(ceiling.p99_ms()),
        ratio: Some(1.0),
        ratio_to_same_bytes: None,
        ratio_to_stack: None,
        target: String::new(),
        met: None,
    }];

    // Portico reaches the fake through the proxy, and the fake names the proxy as itself
    // (in its issuer, say), so Portico sees one identity platform.
    let (listener, proxy_url) = TimingProxy::bind().await?;
    let fake = FakeMicrosoft::start_behind(([127, 0, 0, 1], 0).into(), Some(&proxy_url)).await?;
    let proxy = TimingProxy::serve(listener, proxy_url, &fake.listen_url())?;
    let mut world: Seed = serde_json::from_str(include_str!("../fake-microsoft-seed.json"))?;
    world.sign_in_as = Some(seed::ALICE_UPN.into());
    fake.apply_seed(&world);

    let mut backends = Vec::new();
    let mut databases = vec![(Backend::Sqlite, Database::sqlite(scratch.path()))];
    if let Some(url) = &args.postgres {
        databases.push((Backend::Postgres, Database::postgres(url).await?));
    }
    for (backend, database) in databases {
        let run = Run {
            args: &args,
            backend,
            database: &database,
            load: &load,
            ceiling: ceiling.requests_per_second(),
            fake: &fake,
            world: &mut world,
            proxy: &proxy,
            scratch: scratch.path().to_owned(),
        };
        let outcome = run.measure().await;
        database.drop_it().await?;
        let (mut backend_rows, details) = outcome?;
        rows.append(&mut backend_rows);
        backends.push(details);
    }

    let report = Report {
        date: OffsetDateTime::now_utc().format(format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))?,
        machine,
        connections: args.connections,
        seconds: args.seconds,
        ceiling,
        rows,
        backends,
    };
    print_table(&report);
    write_report(&args, &report)?;
    Ok(())
}

/// One backend's part of the run.
struct Run<'a> {
    args: &'a Args,
    backend: Backend,
    database: &'a Database,
    load: &'a Load,
    ceiling: f64,
    fake: &'a FakeMicrosoft,
    world: &'a mut Seed,
    proxy: &'a TimingProxy,
    scratch: PathBuf,
}

impl Run<'_> {
    async fn measure(self) -> Result<(Vec<Row>, BackendDetails)> {
        let backend = self.backend;
        let name = format!("{backend:?}").to_lowercase();
        eprintln!("{name}: seeding");
        let key = SecretKey::generate();
        let key_text = key.to_base64().to_string();
        let keys = Keyring::from(key);
        let seeding = Instant::now();
        let db = Db::connect(self.database.url()).await?;
        db.migrate().await?;
        let seeded = seed::tenant(&db, &keys).await?;
        let seed_seconds = seeding.elapsed().as_secs_f64();

        let port = servers::free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let app = self
            .world
            .apps
            .iter_mut()
            .find(|app| app.client_id == seed::SIGN_IN_APP)
            .ok_or("the fake's seed lost its sign-in app")?;
        app.web_redirect_uris
            .push(format!("{base}/auth/microsoft/callback"));
        self.fake.add_app(app.clone());
        let (jwks_before, discovery_before) =
            (self.fake.keys_fetches(), self.fake.discovery_fetches());

        let env = [
            ("DATABASE_URL", self.database.url().to_owned()),
            ("PORTICO_SECRET_KEY", key_text),
            ("PORTICO_DATA_DIR", self.scratch.display().to_string()),
            // The storm's agents each come from an address of their own.
            ("PORTICO_TRUST_FORWARDED_FOR", "true".to_owned()),
            (
                "PORTICO_MICROSOFT_LOGIN_URL",
                format!("{}/login", self.proxy.url),
            ),
            (
                "PORTICO_MICROSOFT_GRAPH_URL",
                format!("{}/graph", self.proxy.url),
            ),
        ];
        eprintln!("{name}: starting Portico");
        let binary = match &self.args.portico {
            Some(path) => path.clone(),
            None => servers::built("portico")?,
        };
        let log = self.scratch.join(format!("{name}.log"));
        let portico = Server::portico(&binary, port, &env, &log).await?;
        let start_to_ready_ms = portico.ready_after.as_secs_f64() * 1000.0;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_idle_mib = portico.rss_mib()?;

        let cookie =
            sign_ins::signed_in_cookie(&base, seed::SLUG, seed::ADMIN_EMAIL, seed::ADMIN_PASSWORD)
                .await?;
        let page = |path: &str| format!("{base}{path}");
        let segment = page(&seeded.segment_path);
        let external_apis = page(&format!("/t/{}/external-apis", seed::SLUG));
        let dashboard = page(&format!("/t/{}/", seed::SLUG));
        let list_page = format!("{segment}?page=10");
        let search = format!("{segment}?q=box-00500%40{}", seed::SLUG);
        let pages = Pages { cookie: &cookie };
        // What each page of (1) and (2) must show: a text, and how many mailbox links.
        let shows = [("box-00049@", 50), ("Sales mail", 0), ("Support IMAP", 0)];
        let segment_page = pages.check(&segment, shows[0].0, shows[0].1).await?;
        let apis_page = pages.check(&external_apis, shows[1].0, shows[1].1).await?;
        let dashboard_page = pages.check(&dashboard, shows[2].0, shows[2].1).await?;
        pages.check(&list_page, "box-00499@", 50).await?;
        pages.check(&search, "box-00500@", 1).await?;

        // Each page's ceiling: its response as just recorded, served by a bare handler at
        // the same path and loaded with the same cookie as Portico is.
        let recorded = [
            (
                "1 segment page, 50 rows",
                &seeded.segment_path,
                segment_page,
            ),
            (
                "2 External APIs page",
                &format!("/t/{}/external-apis", seed::SLUG),
                apis_page,
            ),
            (
                "2 dashboard, expiry banners",
                &format!("/t/{}/", seed::SLUG),
                dashboard_page,
            ),
        ];
        let mut files = Vec::new();
        for (index, (_, route, page)) in recorded.iter().enumerate() {
            let file = self.scratch.join(format!("{name}-page-{index}.http"));
            page.write(&file)?;
            files.push(((*route).clone(), file));
        }
        let same_bytes_server = Server::ceiling(&files).await?;
        let mut page_ceilings = Vec::new();
        for (index, (page, route, recorded)) in recorded.iter().enumerate() {
            eprintln!("{name}: ceiling for {page}: the same bytes from memory");
            let url = format!("{}{route}", same_bytes_server.url);
            if index == 0 {
                self.load.get(&url, Some(&cookie)).await?; // warm-up
            }
            page_ceilings.push(PageCeiling {
                page: (*page).to_owned(),
                route: (*route).clone(),
                body_bytes: recorded.body.len(),
                measured: self.load.get(&url, Some(&cookie)).await?,
            });
        }
        same_bytes_server.stop().await?;
        let log = self.scratch.join(format!("{name}-stack.log"));
        let stack_server = Server::stack(&env, &log).await?;
        let mut stack_ceilings = Vec::new();
        for (page, route, _) in &recorded {
            eprintln!("{name}: ceiling for {page}: Portico's stack, data in memory");
            let url = format!("{}{route}", stack_server.url);
            self.load.get(&url, Some(&cookie)).await?; // warm-up: reads the page's data
            stack_ceilings.push((
                (*page).to_owned(),
                self.load.get(&url, Some(&cookie)).await?,
            ));
        }
        stack_server.stop().await?;
        let same_bytes_row = |index: usize| {
            let ceiling: &PageCeiling = &page_ceilings[index];
            let number = ceiling.page.split(' ').next().unwrap_or_default();
            let scenario = format!(
                "{number} ceiling: its {} bytes from memory",
                ceiling.body_bytes
            );
            Row::load(backend, &scenario, &ceiling.measured, self.ceiling)
        };
        let stack_row = |index: usize| {
            let number = recorded[index].0.split(' ').next().unwrap_or_default();
            let scenario = format!("{number} ceiling: Portico's stack, data in memory");
            Row::load(backend, &scenario, &stack_ceilings[index].1, self.ceiling)
                .beside(&page_ceilings[index].measured)
        };

        let mut rows = Vec::new();
        let mut loads = Vec::new();
        let (ratio, p99) = match backend {
            Backend::Sqlite => (0.25, Some(20.0)),
            Backend::Postgres => (0.12, None),
        };
        let mut measure = async |label: &str, url: &str| -> Result<Measured> {
            eprintln!("{name}: {label}");
            let measured = self.load.get(url, Some(&cookie)).await?;
            loads.push((label.to_owned(), measured.clone()));
            Ok(measured)
        };
        measure("warm-up", &segment).await?;
        for (index, url) in [&segment, &external_apis, &dashboard]
            .into_iter()
            .enumerate()
        {
            let page = recorded[index].0;
            let measured = measure(page, url).await?;
            rows.push(same_bytes_row(index));
            rows.push(stack_row(index));
            rows.push(
                Row::load(backend, page, &measured, self.ceiling)
                    .beside(&page_ceilings[index].measured)
                    .on_stack(&stack_ceilings[index].1)
                    .against_stack(ratio, p99),
            );
        }
        if let Some(before) = &self.args.before {
            let log = self.scratch.join(format!("{name}-before.log"));
            let port = servers::free_port()?;
            let earlier = Server::portico(before, port, &env, &log).await?;
            let base = format!("http://127.0.0.1:{port}");
            let cookie = sign_ins::signed_in_cookie(
                &base,
                seed::SLUG,
                seed::ADMIN_EMAIL,
                seed::ADMIN_PASSWORD,
            )
            .await?;
            let pages = Pages { cookie: &cookie };
            for (index, (page, route, _)) in recorded.iter().enumerate() {
                let url = format!("{base}{route}");
                let (text, mailboxes) = shows[index];
                pages.check(&url, text, mailboxes).await?;
                eprintln!("{name}: {page}, the earlier binary");
                if index == 0 {
                    self.load.get(&url, Some(&cookie)).await?; // warm-up
                }
                let measured = self.load.get(&url, Some(&cookie)).await?;
                rows.push(
                    Row::load(
                        backend,
                        &format!("{page}, earlier binary"),
                        &measured,
                        self.ceiling,
                    )
                    .beside(&page_ceilings[index].measured)
                    .on_stack(&stack_ceilings[index].1)
                    .against_stack(ratio, p99),
                );
            }
            earlier.stop().await?;
        }

        let storm = Storm::start(STORM, &base, seed::SLUG, seed::ADMIN_PASSWORD);
        let during_storm = measure("3 segment page during 32 sign-ins", &segment).await;
        // A sign-in Portico refuses (say, throttled) ends the storm: the row says so, and
        // the run goes on, so the other scenarios are still measured.
        let (storm, storm_error) = match storm.stop().await {
            Ok(storm) => (Some(storm), None),
            Err(error) => (None, Some(error.to_string())),
        };
        let during_storm = during_storm?;
        let mut row = match &storm {
            Some(storm) => Row::load(
                backend,
                &format!(
                    "3 segment page, {} sign-ins/s at once",
                    storm.sign_ins_per_second.round()
                ),
                &during_storm,
                self.ceiling,
            )
            .beside(&page_ceilings[0].measured),
            None => Row::other(
                backend,
                "3 segment page during 32 sign-ins",
                format!(
                    "not measured, {}",
                    storm_error.as_deref().unwrap_or_default()
                ),
                "",
                false,
            ),
        };
        row.target = "p99 <= 25 ms".into();
        row.met = Some(storm.is_some() && during_storm.p99_ms() <= 25.0);
        rows.push(row);

        eprintln!("{name}: 4 Microsoft sign-ins");
        let microsoft = self.microsoft_sign_ins(&base).await?;
        let mut row = Row {
            backend: Some(backend),
            scenario: "4 Microsoft callback, Portico's own share".into(),
            requests_per_second: None,
            p50_ms: Some(microsoft.own_p50_ms),
            p99_ms: Some(microsoft.own_p99_ms),
            ratio: None,
            ratio_to_same_bytes: None,
            ratio_to_stack: None,
            target: "p99 <= 3 ms".into(),
            met: Some(microsoft.own_p99_ms <= 3.0),
        };
        rows.push(row.clone());

        let small_list = measure("5 list page 10, 1k rows", &list_page).await?;
        let small_search = measure("5 search by address, 1k rows", &search).await?;
        eprintln!("{name}: growing to {} tenants", self.args.tenants);
        let scale_seed = seed::more_tenants(&db, self.args.tenants).await?;
        db.close().await;
        measure("warm-up, 1M rows", &list_page).await?;
        let large_list = measure("5 list page 10, 1M rows", &list_page).await?;
        let large_search = measure("5 search by address, 1M rows", &search).await?;
        let rows_large = self.args.tenants * seed::MAILBOXES_PER_SEGMENT;
        for (what, small, large) in [
            ("list page 10", &small_list, &large_list),
            ("search by address", &small_search, &large_search),
        ] {
            rows.push(Row::load(
                backend,
                &format!("5 {what}, {} rows", seed::MAILBOXES_PER_SEGMENT),
                small,
                self.ceiling,
            ));
            let mut row = Row::load(
                backend,
                &format!("5 {what}, {rows_large} rows"),
                large,
                self.ceiling,
            );
            row.target = format!("p99 <= 1.5 x {:.2} ms", small.p99_ms());
            row.met = Some(large.p99_ms() <= 1.5 * small.p99_ms());
            rows.push(row);
        }
        pages.check(&search, "box-00500@", 1).await?;

        let rss_after_load_mib = portico.rss_mib()?;
        portico.stop().await?;
        let microsoft = MicrosoftDetails {
            jwks_fetches: self.fake.keys_fetches() - jwks_before,
            discovery_fetches: self.fake.discovery_fetches() - discovery_before,
            ..microsoft
        };
        row.scenario = format!(
            "4 JWKS fetched {}x, discovery {}x in the run",
            microsoft.jwks_fetches, microsoft.discovery_fetches
        );
        row.p50_ms = None;
        row.p99_ms = None;
        row.target = "once".into();
        row.met = Some(microsoft.jwks_fetches == 1 && microsoft.discovery_fetches <= 1);
        rows.push(row);

        rows.push(Row::other(
            backend,
            "6 RSS idle",
            format!("{rss_idle_mib:.1} MiB"),
            "<= 40 MiB",
            rss_idle_mib <= 40.0,
        ));
        rows.push(Row::other(
            backend,
            "6 RSS after the load",
            format!("{rss_after_load_mib:.1} MiB"),
            "<= 120 MiB",
            rss_after_load_mib <= 120.0,
        ));
        rows.push(Row::other(
            backend,
            "6 start to /readyz 200",
            format!("{start_to_ready_ms:.0} ms"),
            if backend == Backend::Sqlite {
                "<= 500 ms"
            } else {
                "(SQLite only)"
            },
            backend != Backend::Sqlite || start_to_ready_ms <= 500.0,
        ));

        Ok((
            rows,
            BackendDetails {
                backend,
                seed_seconds,
                scale_seed_seconds: scale_seed.as_secs_f64(),
                start_to_ready_ms,
                rss_idle_mib,
                rss_after_load_mib,
                storm,
                storm_error,
                microsoft,
                loads,
                page_ceilings,
                stack_ceilings,
            },
        ))
    }

    /// Scenario 4: sign-ins one after another, each timed at the callback, less the token
    /// request Portico waited for (timed at the proxy).
    async fn microsoft_sign_ins(&self, base: &str) -> Result<MicrosoftDetails> {
        let mut callbacks = Vec::new();
        let mut own = Vec::new();
        let mut tokens = Vec::new();
        for _ in 0..self.args.microsoft_sign_ins {
            let (callback, token) =
                sign_ins::microsoft_sign_in(base, seed::SLUG, self.proxy).await?;
            callbacks.push(callback);
            own.push(callback.saturating_sub(token));
            tokens.push(token);
        }
        Ok(MicrosoftDetails {
            sign_ins: callbacks.len(),
            callback_p50_ms: percentile_ms(&mut callbacks, 50.0),
            callback_p99_ms: percentile_ms(&mut callbacks, 99.0),
            own_p50_ms: percentile_ms(&mut own, 50.0),
            own_p99_ms: percentile_ms(&mut own, 99.0),
            token_p50_ms: percentile_ms(&mut tokens, 50.0),
            jwks_fetches: 0,
            discovery_fetches: 0,
        })
    }
}

/// Checks a page before loading it: a fast error page or sign-in redirect proves nothing.
struct Pages<'a> {
    cookie: &'a str,
}

impl Pages<'_> {
    /// `url` answers 200 with `text` and `mailboxes` links to mailboxes; returns the answer.
    async fn check(&self, url: &str, text: &str, mailboxes: usize) -> Result<Recorded> {
        let page = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?
            .get(url)
            .header("cookie", self.cookie)
            .send()
            .await?;
        let status = page.status();
        let headers = page
            .headers()
            .iter()
            .filter(|(name, _)| !Recorded::SERVER_MADE.contains(&name.as_str()))
            .map(|(name, value)| Ok((name.as_str().to_owned(), value.to_str()?.to_owned())))
            .collect::<Result<Vec<_>>>()?;
        // As bytes: the ceiling serves exactly these.
        let bytes = page.bytes().await?;
        let body = String::from_utf8_lossy(&bytes);
        let links = body
            .matches(&format!("/t/{}/mailboxes/", seed::SLUG))
            .count();
        if status != 200 || !body.contains(text) || links != mailboxes {
            return Err(format!(
                "{url}: {status}, {text:?} missing or {links} mailboxes, not {mailboxes}"
            )
            .into());
        }
        Ok(Recorded {
            headers,
            body: bytes.to_vec(),
        })
    }
}

/// A page's answer as Portico gave it, for a bare handler to serve again.
struct Recorded {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    /// Headers every server makes for itself (or, like a renewed session cookie, does not
    /// send with every page).
    const SERVER_MADE: [&str; 6] = [
        "date",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "set-cookie",
    ];

    /// As `bench-ceiling --page` reads it: header lines, an empty line, the body.
    fn write(&self, path: &std::path::Path) -> Result<()> {
        let mut file = Vec::with_capacity(self.body.len() + 512);
        for (name, value) in &self.headers {
            file.extend_from_slice(format!("{name}: {value}\n").as_bytes());
        }
        file.push(b'\n');
        file.extend_from_slice(&self.body);
        std::fs::write(path, file)?;
        Ok(())
    }
}

fn percentile_ms(samples: &mut [Duration], percentile: f64) -> f64 {
    samples.sort_unstable();
    let Some(last) = samples.len().checked_sub(1) else {
        return 0.0;
    };
    let index = ((last as f64) * percentile / 100.0).round() as usize;
    samples[index.min(last)].as_secs_f64() * 1000.0
}

fn machine() -> Result<Machine> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let load_before = std::fs::read_to_string("/proc/loadavg")?
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .parse()?;
    Ok(Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        load_before,
    })
}

fn print_table(report: &Report) {
    println!(
        "\nPortico benchmark, {}: {} cores ({}), load average {:.2} before; wrk, {} connections, {} s per load\n",
        report.date,
        report.machine.cores,
        report.machine.cpu,
        report.machine.load_before,
        report.connections,
        report.seconds
    );
    let number = |value: Option<f64>, decimals: usize| {
        value.map_or_else(String::new, |v| format!("{v:.decimals$}"))
    };
    println!(
        "| backend | scenario | req/s | p50 ms | p99 ms | x hello | x same bytes | x stack | target | met |\n|---|---|--:|--:|--:|--:|--:|--:|---|---|"
    );
    for row in &report.rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.backend
                .map_or("-".to_owned(), |b| format!("{b:?}").to_lowercase()),
            row.scenario,
            number(row.requests_per_second, 0),
            number(row.p50_ms, 2),
            number(row.p99_ms, 2),
            number(row.ratio, 2),
            number(row.ratio_to_same_bytes, 2),
            number(row.ratio_to_stack, 2),
            row.target,
            match row.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            }
        );
    }
}

fn write_report(args: &Args, report: &Report) -> Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let json = serde_json::to_string_pretty(report)?;
    let stamp = OffsetDateTime::now_utc().format(format_description!(
        "[year][month][day]-[hour][minute][second]"
    ))?;
    let path = args.out.join(format!("{stamp}.json"));
    std::fs::write(&path, &json)?;
    eprintln!("\nwritten to {}", path.display());
    if args.baseline {
        let path = args.out.join("baseline.json");
        std::fs::write(&path, &json)?;
        eprintln!("and to {}", path.display());
    }
    Ok(())
}
