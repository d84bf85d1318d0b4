//! Every column that holds a secret sealed with the deployment key, and what each sealed
//! value is bound to: what `portico secrets rotate-key` walks through.

use super::certificates::{self, OwnerKind};
use super::sealed::Sealed;
use super::tenants::TenantId;
use super::{Db, graph_credentials, mailboxes, microsoft_sign_in, oauth_connections};

/// One column of sealed values, or of those rows of it whose values share one context.
pub struct SealedColumn {
    pub table: &'static str,
    pub column: &'static str,
    /// Which rows, when the column holds values sealed to contexts of different kinds.
    pub rows: Option<SealedRows>,
    /// The column that names a row within its tenant (`id`, or `tenant_id` for one-per-tenant
    /// settings).
    key_column: &'static str,
    /// The context a value of this column is sealed with, from its tenant and row key.
    context: fn(&TenantId, &str) -> String,
}

/// A part of a column: what people call it, and the SQL condition that selects it.
pub struct SealedRows {
    pub label: &'static str,
    condition: &'static str,
}

impl SealedColumn {
    pub fn context(&self, tenant: &TenantId, row_key: &str) -> String {
        (self.context)(tenant, row_key)
    }

    /// The SQL condition selecting this column's rows.
    fn rows_condition(&self) -> &'static str {
        self.rows.as_ref().map_or("TRUE", |rows| rows.condition)
    }
}

/// The sign-in settings' secret is sealed with an empty row key: a tenant has one.
fn sign_in_secret(tenant: &TenantId, _: &str) -> String {
    Sealed::<microsoft_sign_in::SignInClientSecret>::context(tenant, "")
}

fn sign_in_private_key(tenant: &TenantId, id: &str) -> String {
    certificates::private_key_context(tenant, OwnerKind::MicrosoftSignIn, id)
}

fn graph_private_key(tenant: &TenantId, id: &str) -> String {
    certificates::private_key_context(tenant, OwnerKind::GraphCredential, id)
}

/// All of them. A new sealed column belongs here, or a key rotation would leave it behind.
pub const SEALED_COLUMNS: [SealedColumn; 8] = [
    SealedColumn {
        table: "microsoft_sign_in",
        column: "client_secret_sealed",
        rows: None,
        key_column: "tenant_id",
        context: sign_in_secret,
    },
    SealedColumn {
        table: "certificates",
        column: "private_key_sealed",
        rows: Some(SealedRows {
            label: "Sign in with Microsoft's",
            condition: "microsoft_sign_in_tenant_id IS NOT NULL",
        }),
        key_column: "id",
        context: sign_in_private_key,
    },
    SealedColumn {
        table: "graph_credentials",
        column: "client_secret_sealed",
        rows: None,
        key_column: "id",
        context: Sealed::<graph_credentials::GraphClientSecret>::context,
    },
    SealedColumn {
        table: "certificates",
        column: "private_key_sealed",
        rows: Some(SealedRows {
            label: "Graph credentials'",
            condition: "graph_credential_id IS NOT NULL",
        }),
        key_column: "id",
        context: graph_private_key,
    },
    SealedColumn {
        table: "mailboxes",
        column: "password_sealed",
        rows: None,
        key_column: "id",
        context: Sealed::<mailboxes::MailboxPassword>::context,
    },
    SealedColumn {
        table: "oauth_connections",
        column: "client_secret_sealed",
        rows: None,
        key_column: "id",
        context: Sealed::<oauth_connections::ConnectionClientSecret>::context,
    },
    SealedColumn {
        table: "oauth_connections",
        column: "refresh_token_sealed",
        rows: None,
        key_column: "id",
        context: Sealed::<oauth_connections::RefreshToken>::context,
    },
    SealedColumn {
        table: "oauth_connections",
        column: "access_token_sealed",
        rows: None,
        key_column: "id",
        context: Sealed::<oauth_connections::AccessToken>::context,
    },
];

/// One stored sealed value and where it lives.
pub struct SealedValue {
    pub tenant: TenantId,
    pub row_key: String,
    pub sealed: String,
}

/// Up to `limit` values of `column` not starting with `prefix` (the current key's), after
/// row `after` in row order: a rotation pages through them and can stop anywhere.
pub async fn not_under(
    db: &Db,
    column: &SealedColumn,
    prefix: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<SealedValue>, sqlx::Error> {
    let selected = column.rows_condition();
    let SealedColumn {
        table,
        column,
        key_column,
        ..
    } = column;
    let rows: Vec<(String, String, String)> = sqlx::query_as(&format!(
        "SELECT tenant_id, {key_column}, {column} FROM {table} \
         WHERE {column} IS NOT NULL AND {column} NOT LIKE $1 AND {key_column} > $2 AND {selected} \
         ORDER BY {key_column} LIMIT $3"
    ))
    .bind(format!("{prefix}%"))
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tenant, row_key, sealed)| SealedValue {
            tenant: TenantId(tenant),
            row_key,
            sealed,
        })
        .collect())
}

/// How many values of `column` start with `prefix`, and how many do not.
pub async fn count_by_prefix(
    db: &Db,
    column: &SealedColumn,
    prefix: &str,
) -> Result<(i64, i64), sqlx::Error> {
    let selected = column.rows_condition();
    let SealedColumn { table, column, .. } = column;
    let (under, not_under): (i64, i64) = sqlx::query_as(&format!(
        "SELECT COUNT(CASE WHEN {column} LIKE $1 THEN 1 END), \
         COUNT(CASE WHEN {column} NOT LIKE $1 THEN 1 END) FROM {table} WHERE {selected}"
    ))
    .bind(format!("{prefix}%"))
    .fetch_one(db.pool())
    .await?;
    Ok((under, not_under))
}

/// Replaces one sealed value, only while it is still the one read: a value that Portico
/// changed meanwhile (a new secret, a renewed token) is already under the current key and
/// stays. One statement, so each value is its own transaction. The row's edit version does
/// not move: nothing an admin sees changed.
pub async fn replace(
    db: &Db,
    column: &SealedColumn,
    value: &SealedValue,
    resealed: &str,
) -> Result<bool, sqlx::Error> {
    let SealedColumn {
        table,
        column,
        key_column,
        ..
    } = column;
    let replaced = sqlx::query(&format!(
        "UPDATE {table} SET {column} = $1 \
         WHERE tenant_id = $2 AND {key_column} = $3 AND {column} = $4"
    ))
    .bind(resealed)
    .bind(value.tenant.as_str())
    .bind(&value.row_key)
    .bind(&value.sealed)
    .execute(db.pool())
    .await?;
    Ok(replaced.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sealed_column_has_a_context_of_its_own() {
        let tenant = TenantId("tenant".into());
        let contexts: Vec<String> = SEALED_COLUMNS
            .iter()
            .map(|column| column.context(&tenant, "row"))
            .collect();
        for (i, context) in contexts.iter().enumerate() {
            for other in &contexts[i + 1..] {
                assert_ne!(context, other);
            }
        }
        assert_eq!(
            Sealed::<mailboxes::MailboxPassword>::context(&tenant, "row"),
            "mailbox/password/tenant/row",
            "a purpose's context is the one its stored values were sealed with"
        );
    }
}
