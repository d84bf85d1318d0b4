//! The `portico` command: serve, and the operator commands that need no browser.

use std::io::Read as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use portico::app::App;
use portico::config::{
    Config, DatabaseArgs, KeyArgs, KeyFile, ServeArgs, ensure_data_dir, load_keys,
};
use portico::domain::{
    AuditAction, DisplayName, EmailAddress, NewPassword, Role, Slug, TenantName,
};
use portico::store::Db;
use portico::store::audit::{self, NewAuditEvent};
use portico::store::sessions::DbSessionStore;
use portico::store::tenants::{self, Tenant};
use portico::store::users::{self, NewUser};
use secrecy::{ExposeSecret, SecretString};
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

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
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
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    tracing::info!(
        "Portico listening on {bind}, public URL {}",
        state.config.base_url
    );

    let sessions = DbSessionStore::new(state.db.clone());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(15 * 60));
        loop {
            every.tick().await;
            if let Err(err) = sessions.delete_expired().await {
                tracing::warn!(error = %err, "could not delete expired sessions");
            }
        }
    });

    let renewer = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            if let Err(err) = portico::connections::renew_due(&renewer).await {
                tracing::warn!(error = %err, "renewing OAuth connections failed");
            }
        }
    });

    let db = state.db.clone();
    portico::serve(state, listener, shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    db.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
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
    let report = portico::key_rotation::rotate(&db, &keys)
        .await
        .map_err(|e| e.to_string())?;
    for column in &report.columns {
        let mut line = format!(
            "{}.{}: {} re-encrypted, {} under key {}",
            column.table, column.column, column.resealed, column.under_current_key, report.key_id
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
