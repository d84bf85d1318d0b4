//! The values an admin copies from the Azure portal, parsed once.

use std::fmt;

use uuid::Uuid;

/// The directory of personal Microsoft accounts (Outlook.com, Hotmail, Xbox...).
pub const CONSUMERS_DIRECTORY: Uuid = uuid::uuid!("9188040d-6c67-4c5b-b112-36a304b66dad");

/// Why the directory of personal accounts cannot restrict sign-in: anyone can make an
/// account in it.
pub const PERSONAL_ACCOUNTS_DIRECTORY: &str = "This is the directory of personal Microsoft accounts, which anyone can join: it restricts nothing. Leave this empty to admit personal accounts, or enter your organization's directory.";

/// "Application (client) ID" in the Azure portal: a GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientId(Uuid);

impl ClientId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        parse_guid(raw)
            .map(Self)
            .ok_or_else(|| "Paste the Application (client) ID from the app's Overview page in Azure: a GUID such as 00000000-0000-0000-0000-000000000000.".into())
    }

    pub fn as_uuid(self) -> Uuid {
        self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// "Directory (tenant) ID": a GUID, or a verified domain of the directory that Portico
/// resolves to the GUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryId {
    Guid(Uuid),
    Domain(String),
}

impl DirectoryId {
    /// An empty value means "no directory": any Microsoft account may sign in.
    pub fn parse_optional(raw: &str) -> Result<Option<Self>, String> {
        let value = raw.trim().to_ascii_lowercase();
        if value.is_empty() {
            return Ok(None);
        }
        if matches!(value.as_str(), "common" | "organizations" | "consumers") {
            return Err(
                "Leave this empty to let any Microsoft account sign in; enter your directory's ID to allow only its users.".into(),
            );
        }
        if let Some(guid) = parse_guid(&value) {
            if guid == CONSUMERS_DIRECTORY {
                return Err(PERSONAL_ACCOUNTS_DIRECTORY.into());
            }
            return Ok(Some(Self::Guid(guid)));
        }
        let is_domain = value.len() <= 253
            && value.contains('.')
            && value.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if is_domain {
            Ok(Some(Self::Domain(value)))
        } else {
            Err("Enter the Directory (tenant) ID from the app's Overview page (a GUID), or a verified domain such as contoso.onmicrosoft.com.".into())
        }
    }
}

impl fmt::Display for DirectoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Guid(guid) => guid.hyphenated().fmt(f),
            Self::Domain(domain) => f.write_str(domain),
        }
    }
}

/// The Microsoft cloud an Azure app lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Global,
    UsGovernment,
    /// US Government DoD: the US Government sign-in, with its own Graph host.
    UsGovernmentDod,
    China,
}

impl Cloud {
    pub const ALL: [Cloud; 4] = [
        Cloud::Global,
        Cloud::UsGovernment,
        Cloud::UsGovernmentDod,
        Cloud::China,
    ];

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|cloud| cloud.as_str() == raw)
            .ok_or_else(|| "Choose the cloud your Azure app lives in.".into())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::UsGovernment => "us-government",
            Self::UsGovernmentDod => "us-government-dod",
            Self::China => "china",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Global => "Global",
            Self::UsGovernment => "US Government",
            Self::UsGovernmentDod => "US Government DoD",
            Self::China => "China operated by 21Vianet",
        }
    }

    /// The domains of this cloud's Exchange Online mail servers (outlook.office365.com,
    /// smtp.office365.com...): the only servers an app-only Exchange token is sent to.
    pub fn exchange_online_domains(self) -> &'static [&'static str] {
        match self {
            Self::Global => &["office365.com", "outlook.office.com"],
            Self::UsGovernment | Self::UsGovernmentDod => &["office365.us"],
            Self::China => &["partner.outlook.cn"],
        }
    }

    /// Whether `host` (lowercase, as `parse_host` leaves it) is one of this cloud's
    /// Exchange Online mail servers.
    pub fn is_exchange_online_host(self, host: &str) -> bool {
        self.exchange_online_domains().iter().any(|domain| {
            host == *domain
                || host
                    .strip_suffix(domain)
                    .is_some_and(|prefix| prefix.ends_with('.'))
        })
    }
}

/// Accepts a GUID as Azure shows it (any case, optional braces) and nothing else.
fn parse_guid(raw: &str) -> Option<Uuid> {
    let trimmed = raw.trim().trim_start_matches('{').trim_end_matches('}');
    (trimmed.len() == 36)
        .then(|| Uuid::try_parse(trimmed).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_online_hosts_are_the_clouds_own() {
        for host in [
            "outlook.office365.com",
            "smtp.office365.com",
            "outlook.office.com",
        ] {
            assert!(Cloud::Global.is_exchange_online_host(host), "{host}");
        }
        for host in [
            "office365.com.attacker.example",
            "evil-office365.com",
            "imap.example.com",
            "outlook.office365.us",
        ] {
            assert!(!Cloud::Global.is_exchange_online_host(host), "{host}");
        }
        assert!(Cloud::UsGovernment.is_exchange_online_host("outlook.office365.us"));
        assert!(Cloud::China.is_exchange_online_host("partner.outlook.cn"));
        assert!(!Cloud::China.is_exchange_online_host("outlook.office365.com"));
    }

    #[test]
    fn client_id_is_a_guid_in_any_case() {
        let id = ClientId::parse(" {6731DE76-14A6-49AE-97BC-6EBA6914391E} ").unwrap();
        assert_eq!(id.to_string(), "6731de76-14a6-49ae-97bc-6eba6914391e");
        for bad in [
            "",
            "6731de7614a649ae97bc6eba6914391e",
            "not-a-guid",
            "6731de76-14a6-49ae-97bc",
        ] {
            assert!(ClientId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn directory_is_optional_and_a_guid_or_a_domain() {
        assert_eq!(DirectoryId::parse_optional("  "), Ok(None));
        assert_eq!(
            DirectoryId::parse_optional("Contoso.OnMicrosoft.com"),
            Ok(Some(DirectoryId::Domain("contoso.onmicrosoft.com".into())))
        );
        assert!(matches!(
            DirectoryId::parse_optional("72f988bf-86f1-41af-91ab-2d7cd011db47"),
            Ok(Some(DirectoryId::Guid(_)))
        ));
        for bad in [
            "common",
            "organizations",
            "contoso",
            "con toso.com",
            "-a.com",
            "a..com",
        ] {
            assert!(DirectoryId::parse_optional(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clouds_round_trip() {
        for cloud in Cloud::ALL {
            assert_eq!(Cloud::parse(cloud.as_str()), Ok(cloud));
        }
        assert!(Cloud::parse("mars").is_err());
    }
}
