//! The mail "Test connection" engine (`portico::mail`) against real IMAP, POP3 and SMTP
//! servers on loopback.

mod probe;
mod servers;
