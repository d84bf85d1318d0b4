//! Mailboxes: which protocol, which direction, and the server settings rules.

/// How Portico reaches a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailProtocol {
    /// Microsoft Graph with a shared credential from External APIs.
    Graph,
    Imap,
    Pop3,
    Smtp,
}

impl MailProtocol {
    pub const ALL: [MailProtocol; 4] = [Self::Graph, Self::Imap, Self::Pop3, Self::Smtp];

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|protocol| protocol.as_str() == raw)
            .ok_or_else(|| "Choose Microsoft Graph, IMAP, POP3 or SMTP.".into())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Graph => "graph",
            Self::Imap => "imap",
            Self::Pop3 => "pop3",
            Self::Smtp => "smtp",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Graph => "Microsoft Graph",
            Self::Imap => "IMAP",
            Self::Pop3 => "POP3",
            Self::Smtp => "SMTP",
        }
    }

    /// IMAP, POP3 and SMTP carry their own server settings; Graph uses a credential.
    pub fn has_server(self) -> bool {
        self != Self::Graph
    }

    /// The port a server of this protocol listens on for this security, by convention.
    pub fn default_port(self, security: Security) -> Option<u16> {
        match (self, security) {
            (Self::Graph, _) => None,
            (Self::Imap, Security::Tls) => Some(993),
            (Self::Imap, Security::StartTls | Security::None) => Some(143),
            (Self::Pop3, Security::Tls) => Some(995),
            (Self::Pop3, Security::StartTls | Security::None) => Some(110),
            (Self::Smtp, Security::Tls) => Some(465),
            (Self::Smtp, Security::StartTls | Security::None) => Some(587),
        }
    }
}

/// How the connection to a mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (implicit TLS: 993, 995, 465).
    Tls,
    /// Plain connection upgraded with STARTTLS (IMAP/POP3 "STLS", SMTP 587).
    StartTls,
    /// No encryption: passwords cross the network readable. Allowed, with a warning.
    None,
}

impl Security {
    pub const ALL: [Security; 3] = [Self::Tls, Self::StartTls, Self::None];

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|security| security.as_str() == raw)
            .ok_or_else(|| "Choose TLS, STARTTLS or none.".into())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::StartTls => "starttls",
            Self::None => "none",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Tls => "TLS",
            Self::StartTls => "STARTTLS",
            Self::None => "None (unencrypted)",
        }
    }
}

/// Which way mail flows through a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Incoming,
    Outgoing,
    Both,
}

impl Direction {
    pub const ALL: [Direction; 3] = [Self::Incoming, Self::Outgoing, Self::Both];

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|direction| direction.as_str() == raw)
            .ok_or_else(|| "Choose incoming, outgoing or both.".into())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Incoming => "incoming",
            Self::Outgoing => "outgoing",
            Self::Both => "both",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Incoming => "Incoming",
            Self::Outgoing => "Outgoing",
            Self::Both => "Incoming and outgoing",
        }
    }

    /// IMAP and POP3 only receive and SMTP only sends; Graph does both.
    pub fn check(self, protocol: MailProtocol) -> Result<(), String> {
        match (protocol, self) {
            (MailProtocol::Imap | MailProtocol::Pop3, Self::Outgoing | Self::Both) => Err(format!(
                "{} only receives mail: choose Incoming, and add an SMTP mailbox to send.",
                protocol.label()
            )),
            (MailProtocol::Smtp, Self::Incoming | Self::Both) => Err(
                "SMTP only sends mail: choose Outgoing, and add an IMAP or POP3 mailbox to receive."
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}

/// How an IMAP, POP3 or SMTP mailbox signs in: the form's Authentication choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMethod {
    Password,
    /// A delegated OAuth connection: a person's consent, XOAUTH2.
    OAuthConnection,
    /// "Microsoft 365 app (from External APIs)": a Graph credential's Azure app signs in
    /// app-only with an Exchange Online token, XOAUTH2 as the mailbox address. Nobody's
    /// consent can lapse: the app's permissions stay while the credential does.
    MicrosoftApp,
}

impl SignInMethod {
    /// The form's value; anything but "oauth" or "app" is a password, as forms from before
    /// these choices sent.
    pub fn parse(raw: &str) -> Self {
        match raw {
            "oauth" => Self::OAuthConnection,
            "app" => Self::MicrosoftApp,
            _ => Self::Password,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::OAuthConnection => "oauth",
            Self::MicrosoftApp => "app",
        }
    }

    /// Whether it sends a bearer token, which must never cross the network readable.
    pub fn sends_a_token(self) -> bool {
        self != Self::Password
    }
}

/// A mail server's host name or IP address.
pub fn parse_host(raw: &str) -> Result<String, String> {
    let host = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let message = || "Enter the server's host name, such as outlook.office365.com.".to_owned();
    if host.is_empty() {
        return Err(message());
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(host);
    }
    let valid = host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid { Ok(host) } else { Err(message()) }
}

/// The port typed, or the protocol's conventional one when left empty.
pub fn parse_port(raw: &str, protocol: MailProtocol, security: Security) -> Result<u16, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return protocol
            .default_port(security)
            .ok_or_else(|| "Enter the server's port.".into());
    }
    raw.parse::<u16>()
        .ok()
        .filter(|port| *port > 0)
        .ok_or_else(|| "Enter a port from 1 to 65535, or leave it empty for the usual one.".into())
}

/// Where a server mailbox's password is sent: a stored password belongs to these settings.
/// Values the admin typed that did not parse are `None`, and count as changed.
#[derive(Debug, Clone, Copy)]
pub struct PasswordDestination<'a> {
    pub protocol: Option<MailProtocol>,
    pub host: Option<&'a str>,
    pub port: Option<u16>,
    pub security: Option<Security>,
    pub username: &'a str,
}

/// Whether a mailbox saved without a new password may keep `stored`'s, the destination it
/// was entered for: only while protocol, server, port, security and username stay the
/// same, so a stored password is never sent anywhere else. Otherwise, what to tell the admin.
pub fn keep_stored_password(
    stored: Option<&PasswordDestination<'_>>,
    new: &PasswordDestination<'_>,
) -> Result<(), String> {
    let Some(stored) = stored else {
        return Err("Enter the mailbox's password.".into());
    };
    let changed: Vec<&str> = [
        ("Protocol", stored.protocol != new.protocol),
        ("Server", stored.host != new.host),
        ("Port", stored.port != new.port),
        ("Security", stored.security != new.security),
        ("Username", stored.username != new.username),
    ]
    .into_iter()
    .filter_map(|(label, changed)| changed.then_some(label))
    .collect();
    if changed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "You changed the {}: the stored password was entered for the old settings and is \
             never sent anywhere else. Enter the mailbox's password again.",
            changed.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_follow_protocol_and_security() {
        assert_eq!(MailProtocol::Imap.default_port(Security::Tls), Some(993));
        assert_eq!(MailProtocol::Pop3.default_port(Security::Tls), Some(995));
        assert_eq!(
            MailProtocol::Smtp.default_port(Security::StartTls),
            Some(587)
        );
        assert_eq!(MailProtocol::Smtp.default_port(Security::Tls), Some(465));
        assert_eq!(MailProtocol::Graph.default_port(Security::Tls), None);
    }

    #[test]
    fn directions_fit_the_protocol() {
        assert!(Direction::Incoming.check(MailProtocol::Imap).is_ok());
        assert!(Direction::Both.check(MailProtocol::Pop3).is_err());
        assert!(Direction::Incoming.check(MailProtocol::Smtp).is_err());
        assert!(Direction::Both.check(MailProtocol::Graph).is_ok());
    }

    #[test]
    fn sign_in_methods_round_trip_and_default_to_a_password() {
        for method in [
            SignInMethod::Password,
            SignInMethod::OAuthConnection,
            SignInMethod::MicrosoftApp,
        ] {
            assert_eq!(SignInMethod::parse(method.as_str()), method);
        }
        assert_eq!(SignInMethod::parse(""), SignInMethod::Password);
        assert!(!SignInMethod::Password.sends_a_token());
        assert!(SignInMethod::MicrosoftApp.sends_a_token());
    }

    #[test]
    fn hosts_and_ports_are_checked() {
        assert_eq!(
            parse_host(" Outlook.Office365.com. "),
            Ok("outlook.office365.com".into())
        );
        assert_eq!(parse_host("127.0.0.1"), Ok("127.0.0.1".into()));
        assert!(parse_host("bad host").is_err());
        assert!(parse_host("").is_err());
        assert_eq!(parse_port("", MailProtocol::Imap, Security::Tls), Ok(993));
        assert_eq!(
            parse_port("2525", MailProtocol::Smtp, Security::None),
            Ok(2525)
        );
        assert!(parse_port("0", MailProtocol::Smtp, Security::None).is_err());
        assert!(parse_port("70000", MailProtocol::Smtp, Security::None).is_err());
    }

    #[test]
    fn protocols_and_securities_round_trip() {
        for protocol in MailProtocol::ALL {
            assert_eq!(MailProtocol::parse(protocol.as_str()), Ok(protocol));
        }
        for security in Security::ALL {
            assert_eq!(Security::parse(security.as_str()), Ok(security));
        }
        assert!(MailProtocol::parse("exchange").is_err());
    }

    #[test]
    fn a_stored_password_stays_only_with_its_destination() {
        let stored = PasswordDestination {
            protocol: Some(MailProtocol::Imap),
            host: Some("imap.example.com"),
            port: Some(993),
            security: Some(Security::Tls),
            username: "support@example.com",
        };
        assert_eq!(keep_stored_password(Some(&stored), &stored), Ok(()));
        let moved = PasswordDestination {
            host: Some("mail.elsewhere.example"),
            port: Some(143),
            ..stored
        };
        let refused = keep_stored_password(Some(&stored), &moved).unwrap_err();
        assert!(
            refused.starts_with("You changed the Server, Port:"),
            "{refused}"
        );
        let unparsed = PasswordDestination {
            host: None,
            ..stored
        };
        assert!(keep_stored_password(Some(&stored), &unparsed).is_err());
        assert_eq!(
            keep_stored_password(None, &stored),
            Err("Enter the mailbox's password.".into())
        );
    }
}
