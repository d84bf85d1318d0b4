//! Operator commands beside `portico serve`: migrations, backup and restore, tenants and
//! users, checks and key rotation.

pub mod accounts;
pub mod database;
pub mod doctor;
pub mod key_rotation;

/// How a command ends: `Err` holds the message `main` prints after `error: ` before
/// exiting with a failure status.
pub type CommandResult = Result<(), String>;
