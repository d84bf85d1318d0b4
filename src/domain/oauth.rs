//! Delegated OAuth connections: what they are for, and where they sign in.

use super::MailProtocol;

/// What a connection's token is for; it decides the scope Microsoft is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthPurpose {
    Imap,
    Pop,
    Smtp,
    GraphMail,
    /// Scope (and endpoints) given by hand in the Advanced section.
    Custom,
}

impl OAuthPurpose {
    pub const ALL: [OAuthPurpose; 5] = [
        Self::Imap,
        Self::Pop,
        Self::Smtp,
        Self::GraphMail,
        Self::Custom,
    ];

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|purpose| purpose.as_str() == raw)
            .ok_or_else(|| "Choose what the connection is for.".into())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Imap => "imap",
            Self::Pop => "pop",
            Self::Smtp => "smtp",
            Self::GraphMail => "graph",
            Self::Custom => "custom",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Imap => "IMAP (read mail)",
            Self::Pop => "POP (read mail)",
            Self::Smtp => "SMTP (send mail)",
            Self::GraphMail => "Graph delegated mail",
            Self::Custom => "Custom scope (Advanced)",
        }
    }

    /// Microsoft's scope for the purpose; `offline_access` brings the refresh token.
    pub fn scope(self) -> Option<&'static str> {
        match self {
            Self::Imap => {
                Some("offline_access https://outlook.office365.com/IMAP.AccessAsUser.All")
            }
            Self::Pop => Some("offline_access https://outlook.office365.com/POP.AccessAsUser.All"),
            Self::Smtp => Some("offline_access https://outlook.office365.com/SMTP.Send"),
            Self::GraphMail => Some("offline_access Mail.ReadWrite Mail.Send"),
            Self::Custom => None,
        }
    }
}

impl OAuthPurpose {
    /// The purposes whose token an IMAP, POP3 or SMTP mailbox can sign in with: its own
    /// protocol's, or a custom scope (the admin's call, as for Google). None for Graph,
    /// whose mailboxes sign in with a Graph credential.
    pub fn fitting(protocol: MailProtocol) -> &'static [OAuthPurpose] {
        match protocol {
            MailProtocol::Imap => &[Self::Imap, Self::Custom],
            MailProtocol::Pop3 => &[Self::Pop, Self::Custom],
            MailProtocol::Smtp => &[Self::Smtp, Self::Custom],
            MailProtocol::Graph => &[],
        }
    }

    /// Whether a mailbox of `protocol` may use a connection for this purpose; otherwise
    /// what to tell the admin beside the connection field, naming the purposes that would.
    pub fn check_fits(self, protocol: MailProtocol) -> Result<(), String> {
        let fitting = Self::fitting(protocol);
        if fitting.contains(&self) {
            return Ok(());
        }
        let names: Vec<&str> = fitting.iter().map(|purpose| purpose.label()).collect();
        Err(format!(
            "This connection's token is for {}: {} mailboxes cannot sign in with it. \
             Choose a connection for {}.",
            self.label(),
            protocol.label(),
            names.join(" or ")
        ))
    }
}

/// Where a delegated sign-in happens: one directory, or Microsoft's shared authorities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthAuthority {
    Directory(super::DirectoryId),
    /// `common`, `organizations` or `consumers` (personal Outlook.com accounts).
    Shared(&'static str),
}

impl OAuthAuthority {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let value = raw.trim().to_ascii_lowercase();
        for shared in ["common", "organizations", "consumers"] {
            if value == shared {
                return Ok(Self::Shared(shared));
            }
        }
        match super::DirectoryId::parse_optional(&value)? {
            Some(directory) => Ok(Self::Directory(directory)),
            None => Err("Enter the Directory (tenant) ID, or common, organizations or consumers (personal Outlook.com accounts).".into()),
        }
    }

    /// The path segment of Microsoft's endpoints.
    pub fn segment(&self) -> String {
        match self {
            Self::Directory(directory) => directory.to_string(),
            Self::Shared(name) => (*name).to_owned(),
        }
    }
}

/// Where a connection stands, as the list shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthStatus {
    NotAuthenticated,
    Authenticated,
    NeedsReauthentication,
}

impl OAuthStatus {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "not_authenticated" => Ok(Self::NotAuthenticated),
            "authenticated" => Ok(Self::Authenticated),
            "needs_reauthentication" => Ok(Self::NeedsReauthentication),
            other => Err(format!("unknown connection status {other}")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAuthenticated => "not_authenticated",
            Self::Authenticated => "authenticated",
            Self::NeedsReauthentication => "needs_reauthentication",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_their_mailboxes_protocol() {
        assert_eq!(OAuthPurpose::Imap.check_fits(MailProtocol::Imap), Ok(()));
        assert_eq!(OAuthPurpose::Custom.check_fits(MailProtocol::Smtp), Ok(()));
        assert_eq!(
            OAuthPurpose::Smtp.check_fits(MailProtocol::Imap),
            Err("This connection's token is for SMTP (send mail): IMAP mailboxes cannot sign in with it. Choose a connection for IMAP (read mail) or Custom scope (Advanced).".into())
        );
        assert!(
            OAuthPurpose::GraphMail
                .check_fits(MailProtocol::Pop3)
                .is_err()
        );
        assert!(OAuthPurpose::Imap.check_fits(MailProtocol::Pop3).is_err());
    }

    #[test]
    fn purposes_carry_microsofts_scopes() {
        assert_eq!(
            OAuthPurpose::Imap.scope(),
            Some("offline_access https://outlook.office365.com/IMAP.AccessAsUser.All")
        );
        assert_eq!(OAuthPurpose::Custom.scope(), None);
        for purpose in OAuthPurpose::ALL {
            assert_eq!(OAuthPurpose::parse(purpose.as_str()), Ok(purpose));
        }
    }

    #[test]
    fn authorities_include_the_shared_ones() {
        assert_eq!(
            OAuthAuthority::parse("Consumers"),
            Ok(OAuthAuthority::Shared("consumers"))
        );
        assert_eq!(
            OAuthAuthority::parse("contoso.onmicrosoft.com")
                .unwrap()
                .segment(),
            "contoso.onmicrosoft.com"
        );
        assert!(OAuthAuthority::parse("").is_err());
    }
}
