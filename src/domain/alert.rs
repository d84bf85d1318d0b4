//! Who is told when something expires.

use super::{EmailAddress, MailProtocol};

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

/// An outgoing mailbox of the tenant that expiry alerts may go out through: SMTP, signed in
/// with its password or OAuth connection, or Microsoft Graph with its shared credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSender {
    pub id: String,
    pub name: String,
    pub email: String,
    pub protocol: MailProtocol,
}

impl AlertSender {
    /// How the sender list names it: "Support (support@contoso.com), Microsoft Graph".
    pub fn label(&self) -> String {
        format!("{} ({}), {}", self.name, self.email, self.protocol.label())
    }

    /// How the audit log names the way alerts take through it.
    pub fn route(&self) -> String {
        sending_route(&self.name, &self.email, self.protocol)
    }
}

/// "the mailbox Support (support@contoso.com)", with "with Microsoft Graph" for Graph.
pub fn sending_route(name: &str, email: &str, protocol: MailProtocol) -> String {
    match protocol {
        MailProtocol::Graph => format!("the mailbox {name} ({email}) with Microsoft Graph"),
        _ => format!("the mailbox {name} ({email})"),
    }
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

    #[test]
    fn senders_say_how_they_send() {
        let sender = AlertSender {
            id: "m1".into(),
            name: "Support".into(),
            email: "support@contoso.com".into(),
            protocol: MailProtocol::Graph,
        };
        assert_eq!(
            sender.label(),
            "Support (support@contoso.com), Microsoft Graph"
        );
        assert_eq!(
            sender.route(),
            "the mailbox Support (support@contoso.com) with Microsoft Graph"
        );
        let smtp = AlertSender {
            protocol: MailProtocol::Smtp,
            ..sender
        };
        assert_eq!(smtp.label(), "Support (support@contoso.com), SMTP");
        assert_eq!(smtp.route(), "the mailbox Support (support@contoso.com)");
    }
}
