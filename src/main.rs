//! The `portico` command: parses the command line and serves; the operator commands that
//! need no browser live in `portico::cli`, one function per command.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portico::Shutdown;
use portico::app::App;
use portico::cli::{self, CommandResult};
use portico::config::{Config, DatabaseArgs, KeyArgs, ServeArgs, ensure_data_dir};
use secrecy::ExposeSecret;
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

/// mimalloc returns memory to the system after a load; glibc's arenas, one per thread
/// (tokio's workers, each SQLite connection's), kept it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let command_line = Cli::parse();
    init_logs(command_line.log_format);
    let command = command_line
        .command
        .unwrap_or(Command::Serve(Box::new(command_line.serve)));
    let result = match command {
        Command::Serve(args) => serve(*args).await,
        Command::Migrate(args) => cli::database::migrate(&args).await,
        Command::Tenant(TenantCommand::Create {
            slug,
            name,
            database,
        }) => cli::accounts::create_tenant(&slug, &name, &database).await,
        Command::User(UserCommand::Create {
            tenant,
            email,
            name,
            role,
            password_stdin: _,
            database,
        }) => cli::accounts::create_user(&tenant, &email, name.as_deref(), &role, &database).await,
        Command::Secrets(SecretsCommand::RotateKey { database, keys }) => {
            cli::key_rotation::run(&database, &keys).await
        }
        Command::Backup { to, database } => cli::database::backup(&to, &database).await,
        Command::Restore { from, database } => cli::database::restore(&from, &database).await,
        Command::Doctor(args) => cli::doctor::run(&args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

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

async fn serve(args: ServeArgs) -> CommandResult {
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
