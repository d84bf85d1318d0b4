//! The mail "Test connection" engine (`portico::mail`) against real IMAP, POP3 and SMTP
//! servers on loopback.

mod mailbox_page;
mod oauth;
mod probe;
mod servers;
