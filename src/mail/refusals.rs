//! What Exchange Online's refusals of a mail sign-in or submission mean, and what the
//! admin does next, the way `microsoft::errors` explains AADSTS codes. Read from the
//! server's own words, which every failure message quotes.
//!
//! <https://learn.microsoft.com/exchange/clients-and-mobile-in-exchange-online/authenticated-client-smtp-submission>
//! <https://learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth>

/// What proved the mailbox's identity when the server refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedInWith {
    Password,
    /// A person's delegated token (an OAuth connection).
    DelegatedToken,
    /// The Microsoft 365 app's own Exchange Online token.
    AppToken,
}

/// A refusal in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    pub meaning: &'static str,
    pub next_step: String,
}

impl Explained {
    /// One line to follow the failure message.
    pub fn sentence(&self) -> String {
        format!("{} What to do: {}", self.meaning, self.next_step)
    }
}

/// The explanation of `failure` (a message quoting the server) for `mailbox`, if it
/// carries one of Exchange Online's refusals.
pub fn explain(failure: &str, mailbox: &str, signed_in_with: SignedInWith) -> Option<Explained> {
    let codes: Vec<&str> = failure
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|code| code.trim_end_matches('.'))
        .collect();
    let has = |code: &str| codes.contains(&code);
    let says = |words: &str| failure.to_ascii_lowercase().contains(words);
    let app = signed_in_with == SignedInWith::AppToken;
    if says("server busy")
        || says("thread limit")
        || says("concurrent connections")
        || says("submissionquotaexceeded")
        || has("4.7.500")
        || has("4.3.2")
    {
        return Some(Explained {
            meaning: "Exchange Online is throttling this mailbox or app: too many connections or messages at once.",
            next_step: "Wait a few minutes and try again. Exchange allows a mailbox 3 SMTP connections at a time and 30 messages a minute; keep fewer mailboxes or jobs sending through it at once.".into(),
        });
    }
    if has("5.7.139") && says("basic authentication is disabled") {
        return Some(Explained {
            meaning: "Microsoft 365 no longer accepts a password for this mailbox (basic authentication is off, or security defaults block it).",
            next_step: "Choose “Microsoft 365 app (from External APIs)” or an OAuth 2.0 connection as the mailbox's Authentication.".into(),
        });
    }
    if has("5.7.139") {
        return Some(Explained {
            meaning: "SMTP AUTH (authenticated client submission) is turned off for the organization or for this mailbox.",
            next_step: format!(
                "In Exchange Online PowerShell, turn it on for the mailbox: Set-CASMailbox -Identity {mailbox} -SmtpClientAuthenticationDisabled $false (or for the whole organization: Set-TransportConfig -SmtpClientAuthenticationDisabled $false). Or send through a Microsoft Graph mailbox instead."
            ),
        });
    }
    if has("5.7.60") {
        return Some(Explained {
            meaning: "The account that signed in may not send as this mailbox (SendAs is denied).",
            next_step: if app {
                format!(
                    "Give the app's service principal SendAs: Add-RecipientPermission -Identity {mailbox} -Trustee <Object ID of the enterprise application> -AccessRights SendAs (the credential's page fills it in). Changes can take up to an hour to reach every server."
                )
            } else {
                format!(
                    "Give the signing-in account SendAs on the mailbox: Add-RecipientPermission -Identity {mailbox} -Trustee <the Username> -AccessRights SendAs, or make the mailbox's address the Username."
                )
            },
        });
    }
    let imap_or_pop_refused = says("authenticate failed") || says("authentication failure");
    if app && (has("5.7.3") || has("5.7.8") || has("535") || imap_or_pop_refused) {
        return Some(Explained {
            meaning: "Exchange Online took the app's token but would not sign it in as this mailbox: the app is not registered in Exchange as a service principal, has no permission on this mailbox, lacks the protocol's Exchange permission, or Exchange has not caught up yet.",
            next_step: format!(
                "On the credential's page, check that Test connection lists the protocol's permission (IMAP.AccessAsApp, POP.AccessAsApp or SMTP.SendAsApp), then run its PowerShell: New-ServicePrincipal, and Add-MailboxPermission -Identity {mailbox} -AccessRights FullAccess (IMAP, POP3) or Add-RecipientPermission -AccessRights SendAs (SMTP). Changes can take up to an hour to reach every server."
            ),
        });
    }
    if has("5.7.3") || has("5.7.8") || has("535") {
        return Some(Explained {
            meaning: match signed_in_with {
                SignedInWith::Password => "Microsoft 365 refused the user name and password.",
                _ => "Microsoft 365 refused the token for this user name.",
            },
            next_step: match signed_in_with {
                SignedInWith::Password => "Check the Username and password. If they are right, Microsoft 365 likely refuses passwords for this mailbox (MFA or security defaults): choose “Microsoft 365 app (from External APIs)” or an OAuth 2.0 connection instead.".into(),
                _ => "Authenticate the OAuth connection again as the mailbox's Username, and check that the account has FullAccess (reading) or SendAs (sending) on the mailbox.".into(),
            },
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAILBOX: &str = "support@contoso.com";

    fn explained(failure: &str, with: SignedInWith) -> Explained {
        explain(failure, MAILBOX, with).unwrap_or_else(|| panic!("{failure} not explained"))
    }

    #[test]
    fn smtp_auth_disabled_names_the_powershell_for_the_mailbox() {
        let explained = explained(
            "Sign-in failed: the server refused; it said: \"535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.\"",
            SignedInWith::Password,
        );
        assert!(explained.meaning.contains("SMTP AUTH"));
        assert!(explained.next_step.contains(
            "Set-CASMailbox -Identity support@contoso.com -SmtpClientAuthenticationDisabled $false"
        ));
        assert!(explained.next_step.contains("Set-TransportConfig"));
    }

    #[test]
    fn basic_authentication_disabled_points_to_oauth() {
        let explained = explained(
            "\"535 5.7.139 Authentication unsuccessful, basic authentication is disabled.\"",
            SignedInWith::Password,
        );
        assert!(explained.next_step.contains("Microsoft 365 app"));
    }

    #[test]
    fn authentication_failures_depend_on_what_signed_in() {
        for code in ["535 5.7.3", "535 5.7.8 Error: authentication failed"] {
            let with_password = explained(code, SignedInWith::Password);
            assert!(
                with_password
                    .next_step
                    .contains("Check the Username and password")
            );
            let with_app = explained(code, SignedInWith::AppToken);
            assert!(with_app.next_step.contains("New-ServicePrincipal"));
            assert!(with_app.next_step.contains("up to an hour"));
        }
        let delegated = explained(
            "535 5.7.3 Authentication unsuccessful",
            SignedInWith::DelegatedToken,
        );
        assert!(
            delegated
                .next_step
                .contains("Authenticate the OAuth connection again")
        );
    }

    #[test]
    fn imap_and_pop_refusals_of_an_app_token_name_the_service_principal() {
        for said in [
            "it said: \"AUTHENTICATE failed.\"",
            "it said: \"Authentication failure: unknown user name or bad password.\"",
        ] {
            let explained = explained(said, SignedInWith::AppToken);
            assert!(explained.next_step.contains(
                "Add-MailboxPermission -Identity support@contoso.com -AccessRights FullAccess"
            ));
        }
        assert_eq!(
            explain(
                "it said: \"AUTHENTICATE failed.\"",
                MAILBOX,
                SignedInWith::Password
            ),
            None
        );
    }

    #[test]
    fn send_as_denied_and_throttling_are_explained() {
        let denied = explained(
            "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
            SignedInWith::AppToken,
        );
        assert!(
            denied
                .next_step
                .contains("Add-RecipientPermission -Identity support@contoso.com")
        );
        let busy = explained(
            "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
            SignedInWith::Password,
        );
        assert!(busy.meaning.contains("throttling"));
        assert!(
            explain(
                "421 4.7.500 Server busy. Please try again later",
                MAILBOX,
                SignedInWith::AppToken
            )
            .is_some()
        );
    }

    #[test]
    fn other_failures_and_lookalike_numbers_are_left_alone() {
        for failure in [
            "The connection to 127.0.0.1:5535 timed out",
            "it said: \"NO [AUTHENTICATIONFAILED] Authentication failed.\"",
            "5.7.1390 something else",
        ] {
            assert_eq!(
                explain(failure, MAILBOX, SignedInWith::Password),
                None,
                "{failure}"
            );
        }
    }
}
