//! OAuth 2.0 sign-in with the XOAUTH2 SASL mechanism, the one Microsoft 365 and Google
//! accept for IMAP, POP3 and SMTP: the user name and a bearer access token in one base64
//! string. A server that refuses the token first answers with a base64 JSON challenge
//! (`{"status":"401","schemes":"bearer","scope":"..."}`), which the client acknowledges
//! with an empty line before the final refusal.
//!
//! <https://learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth>
//! <https://developers.google.com/workspace/gmail/imap/xoauth2-protocol>

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroizing;

use super::{Failure, Stage};
use crate::domain::Security;

/// The longest value quoted from a server's challenge; a scope URL is well under this.
const MAX_QUOTED: usize = 200;

/// A user name and access token, checked once for what no line protocol can carry, and for
/// the ^A that separates XOAUTH2's fields.
pub(super) struct TokenCredentials<'a> {
    username: &'a str,
    token: &'a str,
}

impl<'a> TokenCredentials<'a> {
    pub(super) fn of(username: &'a str, token: &'a str) -> Result<Self, Failure> {
        let unsendable = |text: &str| text.contains(['\r', '\n', '\0', '\x01']);
        if token.trim().is_empty() {
            return Err(Failure::new(
                Stage::Authentication,
                "No OAuth 2.0 access token was given to sign in with.",
            ));
        }
        if unsendable(username) || unsendable(token) {
            return Err(Failure::new(
                Stage::Authentication,
                "The user name or access token contains a line break, NUL or control-A character, which cannot be sent in an OAuth 2.0 (XOAUTH2) sign-in.",
            ));
        }
        Ok(Self { username, token })
    }

    /// XOAUTH2's initial response: base64 of `user={user}^Aauth=Bearer {token}^A^A`.
    pub(super) fn xoauth2(&self) -> Zeroizing<String> {
        let message = Zeroizing::new(format!(
            "user={}\x01auth=Bearer {}\x01\x01",
            self.username, self.token
        ));
        Zeroizing::new(BASE64.encode(message.as_bytes()))
    }

    /// Why the server refused the token, from its `challenge` (the base64 JSON, if it sent
    /// one) and its final words, e.g. "535 5.7.3 Authentication unsuccessful".
    pub(super) fn refusal(&self, challenge: Option<&str>, server_said: &str) -> Failure {
        let why = challenge
            .and_then(explain_challenge)
            .map(|why| format!(" ({why})"))
            .unwrap_or_default();
        let said = self.redact(server_said.trim());
        let said = if said.is_empty() {
            String::new()
        } else {
            format!("; it said: \"{said}\"")
        };
        Failure::new(
            Stage::Authentication,
            self.redact(&format!(
                "The server refused the OAuth 2.0 access token{why}{said}"
            )),
        )
    }

    /// `text` without the token or the XOAUTH2 string, should a server echo either back.
    fn redact(&self, text: &str) -> String {
        text.replace(self.token, "[token]")
            .replace(self.xoauth2().as_str(), "[token]")
    }
}

/// The failure when a server's list of mechanisms (`offered`, empty if unknown) lacks XOAUTH2.
pub(super) fn not_offered(offered: &[String], security: Security) -> Failure {
    let offers = if offered.is_empty() {
        String::new()
    } else {
        format!("; it offers {}", offered.join(", "))
    };
    let hint = if security == Security::None {
        " Many servers offer it only on an encrypted connection: choose TLS or STARTTLS."
    } else {
        ""
    };
    Failure::new(
        Stage::Authentication,
        format!(
            "The server does not offer OAuth 2.0 sign-in (XOAUTH2) on this connection{offers}.{hint}"
        ),
    )
}

/// The challenge's JSON in words: "status 401: the token is not valid, ...; the server
/// expects a bearer token for the scope "https://mail.google.com/"". None if unreadable.
fn explain_challenge(challenge: &str) -> Option<String> {
    let json = BASE64.decode(challenge.trim()).ok()?;
    let serde_json::Value::Object(fields) = serde_json::from_slice(&json).ok()? else {
        return None;
    };
    let field = |name: &str| {
        let text = match fields.get(name)? {
            serde_json::Value::String(text) => text.trim().to_owned(),
            serde_json::Value::Number(number) => number.to_string(),
            _ => return None,
        };
        (!text.is_empty()).then(|| text.chars().take(MAX_QUOTED).collect::<String>())
    };
    let mut parts = Vec::new();
    if let Some(status) = field("status") {
        parts.push(match status.as_str() {
            // Google answers 400 for a token it cannot use, Microsoft and RFC 7628 say 401.
            "400" | "401" => format!(
                "status {status}: the token is not valid, has expired, or was issued for another account, user name or service"
            ),
            "403" => format!(
                "status {status}: the token is valid but does not grant access to this mailbox"
            ),
            _ => format!("status {status}"),
        });
    }
    let schemes = field("schemes");
    let scope = field("scope");
    match (schemes, scope) {
        (Some(schemes), Some(scope)) => parts.push(format!(
            "the server expects a {schemes} token for the scope \"{scope}\""
        )),
        (Some(schemes), None) => parts.push(format!("the server expects a {schemes} token")),
        (None, Some(scope)) => parts.push(format!(
            "the server expects a token for the scope \"{scope}\""
        )),
        (None, None) => {}
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_is_base64_of_user_and_bearer_token() {
        let credentials = TokenCredentials::of(
            "someuser@example.com",
            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
        )
        .unwrap();
        // The example of Google's XOAUTH2 page.
        assert_eq!(
            *credentials.xoauth2(),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn tokens_that_cannot_be_sent_are_refused_without_echoing_them() {
        for (username, token) in [
            ("agent", "ya29.secret\r\nA1 LOGOUT"),
            ("agent", "ya29.secret\x01auth=Bearer other"),
            ("agent\x01x", "ya29.secret"),
            ("agent", "ya29.secret\0"),
        ] {
            let failure = TokenCredentials::of(username, token).err().unwrap();

            assert_eq!(failure.stage, Stage::Authentication);
            assert!(!failure.message.contains("secret"), "{}", failure.message);
        }
        assert!(
            TokenCredentials::of("agent", " ")
                .err()
                .unwrap()
                .message
                .contains("No OAuth 2.0 access token")
        );
    }

    #[test]
    fn challenges_are_explained_in_words() {
        // Gmail's answer to an expired token.
        let challenge = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==";

        let why = explain_challenge(challenge).unwrap();

        assert_eq!(
            why,
            "status 400: the token is not valid, has expired, or was issued for another account, user name or service; the server expects a Bearer token for the scope \"https://mail.google.com/\""
        );
        assert_eq!(explain_challenge("not base64!"), None);
        assert_eq!(explain_challenge(&BASE64.encode("[1, 2]")), None);
        assert_eq!(
            explain_challenge(&BASE64.encode(r#"{"status":401}"#)).unwrap(),
            "status 401: the token is not valid, has expired, or was issued for another account, user name or service"
        );
    }

    #[test]
    fn refusals_never_repeat_the_token() {
        let credentials = TokenCredentials::of("agent", "ya29.secret-token").unwrap();
        let echoing = BASE64.encode(r#"{"status":"401","scope":"ya29.secret-token"}"#);

        let failure = credentials.refusal(Some(&echoing), "NO ya29.secret-token is wrong");

        assert_eq!(failure.stage, Stage::Authentication);
        assert!(
            !failure.message.contains("secret-token"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("status 401"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("[token] is wrong"),
            "{}",
            failure.message
        );
    }
}
