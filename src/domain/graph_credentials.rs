//! Rules of a Microsoft Graph credential: its name, its secret's expiry, and which
//! application permissions a mail integration needs.

use time::{Date, OffsetDateTime};

use super::MailProtocol;

/// A credential's name, unique in its tenant (e.g. one per business unit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialName(String);

impl CredentialName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        super::parse_name(raw, 80, "Enter a name, such as the Azure app's name.").map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a credential proves itself to Microsoft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A client secret the admin copied from Azure.
    ClientSecret,
    /// A certificate Portico generated; the admin uploads it to Azure. Microsoft's advice for
    /// app-only access: nothing secret is ever copied by hand.
    Certificate,
}

impl AuthMethod {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "client_secret" => Ok(Self::ClientSecret),
            "certificate" => Ok(Self::Certificate),
            _ => Err("Choose a client secret or a certificate.".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecret => "client_secret",
            Self::Certificate => "certificate",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::ClientSecret => "Client secret",
            Self::Certificate => "Certificate",
        }
    }
}

/// How long a certificate Portico generates is valid, in months: what the form offers.
pub const CERTIFICATE_VALIDITY_MONTHS: [u32; 3] = [6, 12, 24];

/// The validity the admin chose for a new certificate, as a duration (a month counts 30
/// days, so 12 months are 360 days: the certificate ends before the anniversary, never after).
pub fn parse_certificate_validity(raw: &str) -> Result<time::Duration, String> {
    raw.trim()
        .parse::<u32>()
        .ok()
        .filter(|months| CERTIFICATE_VALIDITY_MONTHS.contains(months))
        .map(|months| time::Duration::days(30 * i64::from(months)))
        .ok_or_else(|| "Choose how long the certificate is valid.".into())
}

/// "Secret expires on", as the Azure portal shows it when the secret is made.
pub fn parse_expiry_date(raw: &str) -> Result<Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(raw.trim(), format)
        .map_err(|_| "Enter the date Azure shows under Expires, as YYYY-MM-DD.".into())
}

/// How soon a secret stops working; admins are warned this many days ahead.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryStatus {
    Valid,
    ExpiresSoon {
        days_left: i64,
    },
    Expired,
    /// Stopped working before its date: Microsoft refused it (a connection that needs
    /// re-authentication).
    Failed,
}

impl ExpiryStatus {
    /// A secret works through the end of its expiry day (UTC).
    pub fn of(expires_on: Date, now: OffsetDateTime) -> Self {
        let days_left = (expires_on - now.date()).whole_days();
        if days_left < 0 {
            Self::Expired
        } else if days_left <= EXPIRY_WARNING_DAYS {
            Self::ExpiresSoon { days_left }
        } else {
            Self::Valid
        }
    }

    pub fn needs_attention(self) -> bool {
        self != Self::Valid
    }

    pub fn label(self) -> String {
        match self {
            Self::Valid => "Valid".into(),
            Self::ExpiresSoon { days_left: 0 } => "Expires today".into(),
            Self::ExpiresSoon { days_left: 1 } => "Expires tomorrow".into(),
            Self::ExpiresSoon { days_left } => format!("Expires in {days_left} days"),
            Self::Expired => "Expired".into(),
            Self::Failed => "Failing".into(),
        }
    }

    /// The badge's style: ok, warn or danger.
    pub fn tone(self) -> &'static str {
        match self {
            Self::Valid => "ok",
            Self::ExpiresSoon { .. } => "warn",
            Self::Expired | Self::Failed => "danger",
        }
    }
}

/// The application permissions a Graph mailbox needs: read and move mail, and send it.
pub const REQUIRED_ROLES: [&str; 2] = ["Mail.ReadWrite", "Mail.Send"];

/// Exchange Online's application permissions for the mail protocols (the API "Office 365
/// Exchange Online" in Azure, not Microsoft Graph), in the order IMAP, POP3, SMTP.
pub const EXCHANGE_ROLES: [&str; 3] = ["IMAP.AccessAsApp", "POP.AccessAsApp", "SMTP.SendAsApp"];

/// The Exchange Online application permission an app-only sign-in of `protocol` needs.
pub fn exchange_role(protocol: MailProtocol) -> Option<&'static str> {
    match protocol {
        MailProtocol::Imap => Some(EXCHANGE_ROLES[0]),
        MailProtocol::Pop3 => Some(EXCHANGE_ROLES[1]),
        MailProtocol::Smtp => Some(EXCHANGE_ROLES[2]),
        MailProtocol::Graph => None,
    }
}

/// What a token's `roles` say about the app's permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleReview {
    pub granted: Vec<String>,
    /// Required but not granted: admin consent is missing.
    pub missing: Vec<&'static str>,
    /// Granted beyond what Portico needs: least privilege says remove them.
    pub extra: Vec<String>,
}

impl RoleReview {
    pub fn of(roles: &[String]) -> Self {
        let missing = REQUIRED_ROLES
            .into_iter()
            .filter(|required| !roles.iter().any(|role| role == required))
            .collect();
        let extra = roles
            .iter()
            .filter(|role| !REQUIRED_ROLES.contains(&role.as_str()))
            .cloned()
            .collect();
        Self {
            granted: roles.to_vec(),
            missing,
            extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    #[test]
    fn expiry_status_warns_thirty_days_ahead() {
        let now = datetime!(2026-11-25 12:00 UTC);
        assert_eq!(
            ExpiryStatus::of(date!(2027 - 06 - 01), now),
            ExpiryStatus::Valid
        );
        assert_eq!(
            ExpiryStatus::of(date!(2026 - 12 - 25), now),
            ExpiryStatus::ExpiresSoon { days_left: 30 }
        );
        assert_eq!(
            ExpiryStatus::of(date!(2026 - 11 - 25), now),
            ExpiryStatus::ExpiresSoon { days_left: 0 }
        );
        assert_eq!(
            ExpiryStatus::of(date!(2026 - 11 - 24), now),
            ExpiryStatus::Expired
        );
        assert_eq!(
            ExpiryStatus::ExpiresSoon { days_left: 0 }.label(),
            "Expires today"
        );
    }

    #[test]
    fn role_review_names_missing_and_extra_permissions() {
        let review = RoleReview::of(&["Mail.Send".into(), "User.Read.All".into()]);
        assert_eq!(review.missing, vec!["Mail.ReadWrite"]);
        assert_eq!(review.extra, vec!["User.Read.All".to_owned()]);
        assert!(
            RoleReview::of(&["Mail.ReadWrite".into(), "Mail.Send".into()])
                .missing
                .is_empty()
        );
    }

    #[test]
    fn each_mail_protocol_needs_its_own_exchange_permission() {
        assert_eq!(exchange_role(MailProtocol::Imap), Some("IMAP.AccessAsApp"));
        assert_eq!(exchange_role(MailProtocol::Pop3), Some("POP.AccessAsApp"));
        assert_eq!(exchange_role(MailProtocol::Smtp), Some("SMTP.SendAsApp"));
        assert_eq!(exchange_role(MailProtocol::Graph), None);
    }

    #[test]
    fn names_and_dates_are_checked() {
        assert!(CredentialName::parse("  ").is_err());
        assert_eq!(
            CredentialName::parse(" Sales app ").unwrap().as_str(),
            "Sales app"
        );
        assert_eq!(parse_expiry_date("2027-05-31"), Ok(date!(2027 - 05 - 31)));
        assert!(parse_expiry_date("31/05/2027").is_err());
    }

    #[test]
    fn auth_methods_and_certificate_validity_are_checked() {
        assert_eq!(
            AuthMethod::parse("certificate"),
            Ok(AuthMethod::Certificate)
        );
        assert_eq!(
            AuthMethod::parse(AuthMethod::ClientSecret.as_str()),
            Ok(AuthMethod::ClientSecret)
        );
        assert!(AuthMethod::parse("password").is_err());
        assert_eq!(
            parse_certificate_validity("12"),
            Ok(time::Duration::days(360))
        );
        assert!(parse_certificate_validity("120").is_err());
        assert!(parse_certificate_validity("").is_err());
    }
}
