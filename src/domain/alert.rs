//! Who is told when something expires.

use super::EmailAddress;

/// At most this many people get each expiry alert.
pub const MAX_ALERT_RECIPIENTS: usize = 20;

/// Email addresses separated by lines, commas, semicolons or spaces, each once; none at all
/// turns alerts off.
pub fn parse_alert_recipients(raw: &str) -> Result<Vec<String>, String> {
    let mut recipients: Vec<String> = Vec::new();
    for typed in raw
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|part| !part.is_empty())
    {
        let address = EmailAddress::parse(typed)
            .map_err(|_| format!("“{typed}” is not an email address such as name@example.com."))?;
        if !recipients.iter().any(|known| known == address.as_str()) {
            recipients.push(address.as_str().to_owned());
        }
    }
    if recipients.len() > MAX_ALERT_RECIPIENTS {
        return Err(format!(
            "List at most {MAX_ALERT_RECIPIENTS} addresses; a shared mailbox reaches more people."
        ));
    }
    Ok(recipients)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_addresses_each_once() {
        assert_eq!(
            parse_alert_recipients("it@acme.test,\n Ops@Acme.test; it@acme.test").unwrap(),
            vec!["it@acme.test", "ops@acme.test"]
        );
        assert_eq!(
            parse_alert_recipients("  \n").unwrap(),
            Vec::<String>::new()
        );
        assert!(
            parse_alert_recipients("it@acme.test, nobody")
                .unwrap_err()
                .contains("“nobody”")
        );
        let many: Vec<String> = (0..21).map(|n| format!("p{n}@acme.test")).collect();
        assert!(parse_alert_recipients(&many.join(",")).is_err());
    }
}
