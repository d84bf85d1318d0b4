//! Business operations: what Portico does for an admin or on its own, between the web layer
//! (which parses and renders) and the store, mail and Microsoft clients (which do the I/O).
//! Handlers call one operation each; background jobs call the same ones.

pub mod accounts;
pub mod alerts;
pub mod certificate_lifecycle;
pub mod expiry;
pub mod fair_share;
pub mod graph_credentials;
pub mod jobs;
pub mod mailbox_checks;
pub mod mailboxes;
pub mod oauth_connections;
pub mod throttle;
