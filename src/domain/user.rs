use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// An email address, trimmed and lowercased so that one person has one account per tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim().to_lowercase();
        let message = || "Enter an email address such as name@example.com.".to_owned();
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(message());
        }
        let (local, domain) = email.rsplit_once('@').ok_or_else(message)?;
        let domain_ok = domain.contains('.')
            && domain
                .split('.')
                .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(message());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name shown for a person in lists and the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        super::parse_name(raw, 100, "Enter the person's name.").map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password being set. Length is what matters (NIST SP 800-63B): at least 12 characters,
/// no composition rules, and at most 128 so hashing stays bounded.
pub struct NewPassword(SecretString);

impl NewPassword {
    pub const MIN_CHARS: usize = 12;
    const MAX_CHARS: usize = 128;

    pub fn parse(raw: SecretString) -> Result<Self, String> {
        let length = raw.expose_secret().chars().count();
        if length < Self::MIN_CHARS {
            return Err(format!("Use at least {} characters.", Self::MIN_CHARS));
        }
        if length > Self::MAX_CHARS {
            return Err(format!("Use at most {} characters.", Self::MAX_CHARS));
        }
        Ok(Self(raw))
    }

    pub fn into_secret(self) -> SecretString {
        self.0
    }
}

/// What a user may do in their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Manages the tenant's users and settings.
    Admin,
    /// Handles customer mail; sees only their own profile here.
    Agent,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Admin, Role::Agent];

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "admin" => Ok(Self::Admin),
            "agent" => Ok(Self::Agent),
            _ => Err("Choose Admin or Agent.".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Agent => "agent",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Admin => "Admin",
            Self::Agent => "Agent",
        }
    }
}

/// Disabled users keep their history but cannot sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Disabled,
}

impl UserStatus {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "active" => Ok(Self::Active),
            "disabled" => Ok(Self::Disabled),
            _ => Err("Choose Active or Disabled.".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalized() {
        assert_eq!(
            EmailAddress::parse(" Ana@Acme.TEST ").unwrap().as_str(),
            "ana@acme.test"
        );
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "ana",
            "ana@",
            "@acme.test",
            "ana@acme",
            "a b@acme.test",
            "ana@-acme.test",
            "ana@acme..test",
        ] {
            assert!(
                EmailAddress::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn password_length_is_the_rule() {
        assert!(NewPassword::parse(SecretString::from("short")).is_err());
        assert!(NewPassword::parse(SecretString::from("twelve chars")).is_ok());
        assert!(NewPassword::parse(SecretString::from("x".repeat(129))).is_err());
    }

    #[test]
    fn roles_and_statuses_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert!(Role::parse("owner").is_err());
        assert_eq!(UserStatus::parse("disabled"), Ok(UserStatus::Disabled));
    }
}
