//! Portico's integration tests: one binary, each test with its own server and database.
//! Every test runs on SQLite, and again on PostgreSQL when TEST_DATABASE_URL is set.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test support fails loudly, outside #[test] functions too"
)]

mod support;

mod assets;
mod auth;
mod certificates;
mod concurrency;
mod egress;
mod expiring;
mod external_apis;
mod fairness;
mod health;
mod key_rotation;
mod mail_servers;
mod mailboxes;
mod microsoft_sign_in;
mod migrations;
mod oauth_connections;
mod operations;
mod scale_out;
mod secret_destinations;
mod secret_expiry;
mod security_faults;
mod security_headers;
mod security_input;
mod security_isolation;
mod security_secrets;
mod session_hygiene;
mod setup;
mod sign_in_certificates;
mod sqlite_build;
mod storage;
mod throttling;
mod users;
