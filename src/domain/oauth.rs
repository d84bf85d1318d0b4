//! Delegated OAuth connections: what they are for, and where they sign in.

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
