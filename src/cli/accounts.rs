//! `portico tenant create` and `portico user create`: the first tenant and admin without a
//! browser, audited like changes made in the portal.

use std::io::Read as _;

use secrecy::SecretString;

use crate::cli::CommandResult;
use crate::cli::database::open_database;
use crate::config::DatabaseArgs;
use crate::domain::{AuditAction, DisplayName, EmailAddress, NewPassword, Role, Slug, TenantName};
use crate::store::Db;
use crate::store::audit::{self, NewAuditEvent};
use crate::store::tenants::{self, Tenant};
use crate::store::users::{self, NewUser};

/// Who the audit log names for changes made here.
const CLI_ACTOR: &str = "command line";

pub async fn create_tenant(slug: &str, name: &str, database: &DatabaseArgs) -> CommandResult {
    let slug = Slug::parse(slug).map_err(|e| format!("--slug: {e}"))?;
    let name = TenantName::parse(name).map_err(|e| format!("--name: {e}"))?;
    let db = open_database(database).await?;
    let (tenant, _) = crate::services::accounts::create_tenant(&db, &slug, &name, None, false)
        .await
        .map_err(|e| e.to_string())?;
    record(&db, &tenant, AuditAction::TenantCreated, &tenant.name, "").await?;
    println!("created tenant {} at /t/{}/", tenant.name, tenant.slug);
    Ok(())
}

/// Reads the password from standard input: on a command line it would stay in the shell's
/// history and be visible to other users in the process list.
pub async fn create_user(
    tenant: &str,
    email: &str,
    name: Option<&str>,
    role: &str,
    database: &DatabaseArgs,
) -> CommandResult {
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

    let db = open_database(database).await?;
    let tenant = tenants::find_by_slug(&db, tenant)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no tenant with slug {tenant}"))?;
    let hasher = crate::crypto::PasswordHasher::new().map_err(|e| e.to_string())?;
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

async fn record(
    db: &Db,
    tenant: &Tenant,
    action: AuditAction,
    target: &str,
    detail: &str,
) -> CommandResult {
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
