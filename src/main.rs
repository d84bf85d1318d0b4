//! The `portico` command: serve, and the operator commands that need no browser.

use std::io::{IsTerminal as _, Read as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portico::Shutdown;
use portico::app::App;
use portico::cli::doctor::Level;
use portico::config::{
    Config, DatabaseArgs, KeyArgs, KeyFile, ServeArgs, ensure_data_dir, load_keys,
};
use portico::domain::{
    AuditAction, DisplayName, EmailAddress, NewPassword, Role, Slug, TenantName,
};
use portico::store::Db;
use portico::store::audit::{self, NewAuditEvent};
use portico::store::tenants::{self, Tenant};
use portico::store::users::{self, NewUser};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "portico",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `text` for people, `json` for one JSON object per line (log collectors).
    #[arg(long, env = "PORTICO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Without a command, Portico serves with these options.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the portal (the default).
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage users of a tenant.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the secrets sealed at rest.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Copy the SQLite database to a new file, consistently, while Portico serves.
    Backup {
        /// The file to write; it must not exist yet.
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Restore a backup into an empty SQLite database (stop Portico first).
    Restore {
        /// A file written by `portico backup`.
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Check configuration, database, key file and Microsoft's reachability; change nothing.
    Doctor(Box<ServeArgs>),
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Seal every stored secret again under the current key (PORTICO_SECRET_KEY, or the
    /// first key of secret.key), opening them with the old keys (PORTICO_OLD_SECRET_KEYS,
    /// or the file's further keys). Safe to interrupt and run again.
    RotateKey {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        keys: KeyArgs,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant, reachable at /t/SLUG/.
    Create {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user who signs in with email and password.
    Create {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        /// Display name; defaults to the part of the email before the @.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_parser = ["admin", "agent"], default_value = "agent")]
        role: String,
        /// Read the password from standard input (it never belongs on a command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Who the audit log names for changes made here.
const CLI_ACTOR: &str = "command line";

/// mimalloc returns memory to the system after a load; glibc's arenas, one per thread
/// (tokio's workers, each SQLite connection's), kept it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let result = match cli.command.unwrap_or(Command::Serve(Box::new(cli.serve))) {
        Command::Serve(args) => serve(*args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Tenant(TenantCommand::Create {
            slug,
            name,
            database,
        }) => create_tenant(&slug, &name, database).await,
        Command::User(UserCommand::Create {
            tenant,
            email,
            name,
            role,
            password_stdin: _,
            database,
        }) => create_user(&tenant, &email, name.as_deref(), &role, database).await,
        Command::Secrets(SecretsCommand::RotateKey { database, keys }) => {
            rotate_key(&database, &keys).await
        }
        Command::Backup { to, database } => backup(&to, database).await,
        Command::Restore { from, database } => restore(&from, database).await,
        Command::Doctor(args) => doctor(&args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<(), String>;

/// Logs go to standard output, filtered by RUST_LOG (default `info`). Every line written
/// while a request is served carries the request's span: its id, route template, and the
/// tenant and user once known.
fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        // Colours only for a person at a terminal, never into files or collectors.
        LogFormat::Text => logs.with_ansi(std::io::stdout().is_terminal()).init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

async fn serve(args: ServeArgs) -> CliResult {
    ensure_data_dir(&args.database.data_dir).map_err(|e| e.to_string())?;
    let config = Config::from_args(args).map_err(|e| e.to_string())?;
    let bind = config.bind;
    let state = App::start(config).await.map_err(|e| e.to_string())?;
    if let Some(url) = state.setup_url() {
        tracing::info!(
            "no tenant exists yet; create the first one at {}",
            url.expose_secret()
        );
    }
    let shutdown = shutdown_signal()?;
    let app = listen(bind).await?;
    let metrics = match state.config.metrics.bind {
        Some(address) => Some(listen(address).await?),
        None => None,
    };
    tracing::info!(
        "Portico listening on {}, public URL {}",
        local_address(&app),
        state.config.base_url
    );
    if let Some(listener) = &metrics {
        tracing::info!("metrics on http://{}/metrics", local_address(listener));
    }
    let timeout = state.config.shutdown_timeout;
    let listeners = portico::Listeners { app, metrics };
    match portico::run(state, listeners, shutdown).await {
        Shutdown::Complete => tracing::info!("stopped"),
        Shutdown::DeadlineExceeded => tracing::warn!(
            "stopped after PORTICO_SHUTDOWN_TIMEOUT ({} s): requests or jobs still running \
             then were cut off",
            timeout.as_secs()
        ),
    }
    Ok(())
}

async fn listen(address: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))
}

/// The address actually bound (BIND may ask for port 0).
fn local_address(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |address| address.to_string())
}

/// Completes at SIGTERM (container runtimes, systemd) or Ctrl-C. The handlers are installed
/// at once, so a signal that comes right after start-up is not lost.
fn shutdown_signal() -> Result<impl Future<Output = ()>, String> {
    let listen = |kind| signal(kind).map_err(|e| format!("cannot handle signals: {e}"));
    let mut terminate = listen(SignalKind::terminate())?;
    let mut interrupt = listen(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::info!("shutting down: no new connections, finishing requests in flight");
    })
}

async fn open_database(args: &DatabaseArgs) -> Result<Db, String> {
    if args.database_url.is_none() {
        ensure_data_dir(&args.data_dir).map_err(|e| e.to_string())?;
    }
    let db = Db::connect(&args.resolved_url())
        .await
        .map_err(|e| e.to_string())?;
    db.migrate().await.map_err(|e| e.to_string())?;
    Ok(db)
}

async fn migrate(args: DatabaseArgs) -> CliResult {
    open_database(&args).await?;
    println!("migrations applied");
    Ok(())
}

async fn backup(to: &Path, database: DatabaseArgs) -> CliResult {
    portico::store::backup::backup(&database.resolved_url(), to)
        .await
        .map_err(|e| e.to_string())?;
    println!("backup written to {}", to.display());
    Ok(())
}

async fn restore(from: &Path, database: DatabaseArgs) -> CliResult {
    if database.database_url.is_none() {
        ensure_data_dir(&database.data_dir).map_err(|e| e.to_string())?;
    }
    let restored = portico::store::backup::restore(from, &database.resolved_url())
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "restored {} tenants and {} users from {}",
        restored.tenants,
        restored.users,
        from.display()
    );
    Ok(())
}

async fn doctor(args: &ServeArgs) -> CliResult {
    let findings = portico::cli::doctor::examine(args).await;
    for finding in &findings {
        println!(
            "{:<4}  {:<13} {}",
            finding.level.label(),
            finding.topic,
            finding.message
        );
        if let Some(fix) = &finding.fix {
            println!("      {:<13} fix: {fix}", "");
        }
    }
    let failures = findings
        .iter()
        .filter(|finding| finding.level == Level::Fail)
        .count();
    match failures {
        0 => Ok(()),
        n => Err(format!("{n} problems to fix")),
    }
}

async fn create_tenant(slug: &str, name: &str, database: DatabaseArgs) -> CliResult {
    let slug = Slug::parse(slug).map_err(|e| format!("--slug: {e}"))?;
    let name = TenantName::parse(name).map_err(|e| format!("--name: {e}"))?;
    let db = open_database(&database).await?;
    let (tenant, _) = tenants::create(&db, &slug, &name, None, false)
        .await
        .map_err(|e| e.to_string())?;
    record(&db, &tenant, AuditAction::TenantCreated, &tenant.name, "").await?;
    println!("created tenant {} at /t/{}/", tenant.name, tenant.slug);
    Ok(())
}

async fn create_user(
    tenant: &str,
    email: &str,
    name: Option<&str>,
    role: &str,
    database: DatabaseArgs,
) -> CliResult {
    let email = EmailAddress::parse(email).map_err(|e| format!("--email: {e}"))?;
    let default_name = email
        .as_str()
        .split('@')
        .next()
        .unwrap_or_default()
        .to_owned();
    let display_name =
        DisplayName::parse(name.unwrap_or(&default_name)).map_err(|e| format!("--name: {e}"))?;
    let role = Role::parse(role).map_err(|e| format!("--role: {e}"))?;
    let mut typed = String::new();
    std::io::stdin()
        .read_to_string(&mut typed)
        .map_err(|e| format!("reading the password from standard input: {e}"))?;
    let password = SecretString::from(typed.trim_end_matches(['\r', '\n']).to_owned());
    typed.clear();
    let password = NewPassword::parse(password).map_err(|e| format!("password: {e}"))?;

    let db = open_database(&database).await?;
    let tenant = tenants::find_by_slug(&db, tenant)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no tenant with slug {tenant}"))?;
    let hasher = portico::crypto::PasswordHasher::new().map_err(|e| e.to_string())?;
    let password_hash = hasher
        .hash(password.into_secret())
        .await
        .map_err(|e| e.to_string())?;
    let user = NewUser {
        email,
        display_name,
        role,
        password_hash: Some(password_hash),
    };
    users::create(&db, &tenant.id, &user)
        .await
        .map_err(|e| e.to_string())?;
    let detail = format!("role {}", role.label());
    record(
        &db,
        &tenant,
        AuditAction::UserCreated,
        user.email.as_str(),
        &detail,
    )
    .await?;
    println!(
        "created {} {} in {}",
        role.label().to_lowercase(),
        user.email,
        tenant.slug
    );
    Ok(())
}

async fn rotate_key(database: &DatabaseArgs, keys: &KeyArgs) -> CliResult {
    let keys =
        load_keys(keys, &database.data_dir, KeyFile::MustExist).map_err(|e| e.to_string())?;
    let db = open_database(database).await?;
    println!(
        "Sealing every secret under key {}; old keys given: {}.",
        keys.key_id(),
        match keys.old_key_ids() {
            ids if ids.is_empty() => "none".to_owned(),
            ids => ids.join(", "),
        }
    );
    let report = portico::cli::key_rotation::rotate(&db, &keys)
        .await
        .map_err(|e| e.to_string())?;
    for column in &report.columns {
        let mut line = format!(
            "{}: {} re-encrypted, {} under key {}",
            column.name(),
            column.resealed,
            column.under_current_key,
            report.key_id
        );
        if column.changed_meanwhile > 0 {
            line.push_str(&format!(
                ", {} changed by Portico meanwhile",
                column.changed_meanwhile
            ));
        }
        if column.left_behind > 0 {
            line.push_str(&format!(", {} still under an old key", column.left_behind));
        }
        println!("{line}");
    }
    match report.left_behind() {
        0 => {
            println!(
                "No secret under an old key remains: remove the old keys \
                 (PORTICO_OLD_SECRET_KEYS, or the further keys of secret.key)."
            );
            Ok(())
        }
        left => {
            let why = if report.problems.is_empty() {
                "sealed meanwhile by an instance that still seals with an old key".to_owned()
            } else {
                report
                    .problems
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            Err(format!(
                "{left} secrets are still under an old key ({why}). Give every instance the \
                 new key and any missing old keys, and run this again; keep the old keys \
                 until then."
            ))
        }
    }
}

async fn record(
    db: &Db,
    tenant: &Tenant,
    action: AuditAction,
    target: &str,
    detail: &str,
) -> CliResult {
    audit::record(
        db,
        &tenant.id,
        NewAuditEvent {
            action,
            actor_user_id: None,
            actor: CLI_ACTOR,
            target,
            detail,
            ip: None,
        },
    )
    .await
    .map_err(|e| e.to_string())
}
