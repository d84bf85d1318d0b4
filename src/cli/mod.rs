//! Operator commands beside `portico serve`: migrations, backup and restore, tenants and
//! users, checks and key rotation. Each prints what a person reads and returns
//! [`CommandResult`]; `main` only parses the command line and dispatches.

pub mod accounts;
pub mod database;
pub mod doctor;
pub mod key_rotation;

/// How a command ends: `Err` holds the message `main` prints after `error: ` before
/// exiting with a failure status.
pub type CommandResult = Result<(), String>;
