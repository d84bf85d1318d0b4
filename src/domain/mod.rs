//! Plain types and rules. Raw form input becomes one of these through `parse`, so code past
//! the handlers only ever holds valid values.

mod alert;
mod audit;
mod certificate;
mod fields;
mod graph_credentials;
mod mailbox;
mod mailbox_check;
mod microsoft;
mod oauth;
mod tenant;
pub mod throttle;
mod user;

pub use alert::{AlertSender, MAX_ALERT_RECIPIENTS, parse_alert_recipients, sending_route};
pub use audit::AuditAction;
pub use certificate::{
    CertificateOnSave, CurrentProof, NextCertificateCheck, SecretOnSave, certificate_on_save,
    may_switch, secret_on_save,
};
pub use fields::{FieldErrors, parse_name};
pub use graph_credentials::{
    AuthMethod, CERTIFICATE_VALIDITY_MONTHS, CredentialName, EXPIRY_WARNING_DAYS, ExpiryStatus,
    GRAPH_READ_ROLE, GRAPH_SEND_ROLE, RoleReview, StoredSecret, exchange_role,
    parse_certificate_validity, parse_expiry_date, secret_expiry_on_save,
};
pub use mailbox::{
    Direction, MailProtocol, PasswordDestination, Security, SignInMethod, keep_stored_password,
    parse_host, parse_port,
};
pub use mailbox_check::{CheckRecord, CheckState, FAILING_AFTER, Transition};
pub use microsoft::{
    CONSUMERS_DIRECTORY, ClientId, Cloud, DirectoryId, PERSONAL_ACCOUNTS_DIRECTORY,
};
pub use oauth::{OAuthAuthority, OAuthPurpose, OAuthStatus};
pub use tenant::{Slug, TenantName};
pub use user::{DisplayName, EmailAddress, NewPassword, Role, UserStatus};

/// How times read on every page and in the audit log: UTC, to the minute.
pub fn format_time(at: time::OffsetDateTime) -> String {
    at.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .unwrap_or_default()
}
