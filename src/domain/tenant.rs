use std::fmt;

/// The URL name of a tenant: `/t/{slug}/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);

/// Paths of Portico itself that must never be mistaken for a tenant.
const RESERVED_SLUGS: &[&str] = &["admin", "api", "auth", "oauth", "setup", "static", "t"];

impl Slug {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let slug = raw.trim().to_ascii_lowercase();
        let valid_chars = slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if slug.len() < 2 || slug.len() > 40 {
            return Err("Use 2 to 40 characters.".into());
        }
        if !valid_chars || slug.starts_with('-') || slug.ends_with('-') {
            return Err(
                "Use lowercase letters, digits and hyphens; start and end with a letter or digit."
                    .into(),
            );
        }
        if RESERVED_SLUGS.contains(&slug.as_str()) {
            return Err("This name is reserved; choose another.".into());
        }
        Ok(Self(slug))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The organization's name as people read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        super::parse_name(raw, 100, "Enter the organization's name.").map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_is_normalized_and_checked() {
        assert_eq!(Slug::parse(" Acme-2 ").unwrap().as_str(), "acme-2");
        for bad in [
            "a",
            "-acme",
            "acme-",
            "ac me",
            "acmé",
            "setup",
            &"x".repeat(41),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn tenant_name_is_trimmed_and_bounded() {
        assert_eq!(
            TenantName::parse("  Acme Corp ").unwrap().as_str(),
            "Acme Corp"
        );
        assert!(TenantName::parse("   ").is_err());
        assert!(TenantName::parse("a\u{0}b").is_err());
        assert!(TenantName::parse(&"n".repeat(101)).is_err());
    }
}
