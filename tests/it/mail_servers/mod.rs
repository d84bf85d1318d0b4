//! The mail "Test connection" engine (`portico::mail`) against real IMAP, POP3 and SMTP
//! servers on loopback, and expiry alerts received by the real SMTP server.

mod alerts;
mod app_only;
mod checks;
mod mailbox_page;
pub(crate) mod oauth;
mod probe;
pub mod servers;
