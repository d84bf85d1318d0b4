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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_follow_protocol_and_security() {
        assert_eq!(MailProtocol::Imap.default_port(Security::Tls), Some(993));
        assert_eq!(MailProtocol::Pop3.default_port(Security::Tls), Some(995));
        assert_eq!(MailProtocol::Smtp.default_port(Security::StartTls), Some(587));
        assert_eq!(MailProtocol::Smtp.default_port(Security::Tls), Some(465));
        assert_eq!(MailProtocol::Graph.default_port(Security::Tls), None);
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
}
