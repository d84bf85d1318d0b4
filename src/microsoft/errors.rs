//! Microsoft's error answers, and what they mean in plain words. Portico branches on the
//! OAuth `error` and the AADSTS code, or Graph's error `code`, never on the wording of
//! `error_description` or `message`.

use std::fmt;

use serde::Deserialize;

/// An error as Microsoft reported it, with the references its support asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MicrosoftError {
    /// The OAuth 2.0 `error` value, e.g. `invalid_client`.
    pub error: String,
    /// The AADSTS number, e.g. 7000215.
    pub code: Option<u32>,
    pub description: String,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    pub timestamp: Option<String>,
}

impl MicrosoftError {
    /// From the `error` and `error_description` parameters of a redirect back to Portico.
    pub fn from_redirect(error: &str, description: Option<&str>) -> Self {
        let description = description.unwrap_or_default();
        Self {
            error: error.to_owned(),
            code: aadsts_code(description),
            description: first_line(description),
            trace_id: labelled(description, "Trace ID:"),
            correlation_id: labelled(description, "Correlation ID:"),
            timestamp: labelled(description, "Timestamp:"),
        }
    }

    /// From the JSON body of an error answer of the token or discovery endpoints.
    pub fn from_body(body: &str) -> Self {
        #[derive(Deserialize, Default)]
        struct Body {
            #[serde(default)]
            error: String,
            #[serde(default)]
            error_description: String,
            #[serde(default)]
            error_codes: Vec<u32>,
            trace_id: Option<String>,
            correlation_id: Option<String>,
            timestamp: Option<String>,
        }
        let Ok(body) = serde_json::from_str::<Body>(body) else {
            return Self {
                error: "unexpected_response".into(),
                description: "Microsoft answered with an error Portico could not read.".into(),
                ..Self::default()
            };
        };
        let from_text = Self::from_redirect(&body.error, Some(&body.error_description));
        Self {
            code: body.error_codes.first().copied().or(from_text.code),
            trace_id: body.trace_id.or(from_text.trace_id),
            correlation_id: body.correlation_id.or(from_text.correlation_id),
            timestamp: body.timestamp.or(from_text.timestamp),
            ..from_text
        }
    }

    /// What it means and what to do, in the words of the Azure portal.
    pub fn advice(&self, context: &AdviceContext<'_>) -> Advice {
        advice(self.code, &self.error, context)
    }
}

impl fmt::Display for MicrosoftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "AADSTS{code} ({})", self.error),
            None => f.write_str(&self.error),
        }
    }
}

/// An error answer of Microsoft Graph: `{"error": {"code": "ErrorAccessDenied", "message":
/// …, "innerError": {"request-id": …}}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// What Microsoft's support asks for.
    pub request_id: Option<String>,
}

impl GraphError {
    /// From an error answer's body; `None` when it is not Graph's error JSON (a proxy's
    /// page, say).
    pub fn from_body(status: u16, body: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Body {
            error: Error,
        }
        #[derive(Deserialize)]
        struct Error {
            code: String,
            #[serde(default)]
            message: String,
            #[serde(default, rename = "innerError")]
            inner_error: Option<Inner>,
        }
        #[derive(Deserialize)]
        struct Inner {
            #[serde(rename = "request-id")]
            request_id: Option<String>,
        }
        let body: Body = serde_json::from_str(body).ok()?;
        Some(Self {
            status,
            code: body.error.code,
            message: body.error.message,
            request_id: body.error.inner_error.and_then(|inner| inner.request_id),
        })
    }

    /// Why Graph would not send mail as `mailbox`, and what to do, in plain words.
    /// `mail_send_granted`: whether the refused token carried the Mail.Send application
    /// permission, which tells a missing permission from a mailbox the app may not reach.
    pub fn sending_explanation(&self, mailbox: &str, mail_send_granted: bool) -> String {
        let explanation = match (self.status, self.code.as_str()) {
            (403, "ErrorAccessDenied") if !mail_send_granted => format!(
                "Microsoft 365 refused to send as {mailbox} (ErrorAccessDenied): the app has \
                 not been granted the Mail.Send application permission. In Azure, open App \
                 registrations → the app → API permissions, add Microsoft Graph → Application \
                 permissions → Mail.Send, and grant admin consent (Portico's next token, within \
                 the hour, carries it)."
            ),
            (403, "ErrorAccessDenied") => format!(
                "Microsoft 365 refused to send as {mailbox} (ErrorAccessDenied): the app has the \
                 Mail.Send permission, but an Exchange application access policy (or RBAC for \
                 Applications scope) leaves this mailbox out. Ask an Exchange admin to include \
                 it, or choose another mailbox."
            ),
            (_, "MailboxNotEnabledForRESTAPI") => format!(
                "{mailbox} cannot be used through Microsoft Graph (MailboxNotEnabledForRESTAPI): \
                 it is not an Exchange Online mailbox, or it is inactive or has no Exchange \
                 Online license. Choose another mailbox."
            ),
            (_, "ErrorInvalidUser") | (404, _) => format!(
                "Microsoft 365 has no mailbox {mailbox} ({}). Check the mailbox's address.",
                self.code
            ),
            (401, _) => format!(
                "Microsoft Graph did not accept the app's token ({}): {}",
                self.code, self.message
            ),
            (429, _) => format!(
                "Microsoft 365 is limiting how much the app sends ({}); it is tried again later.",
                self.code
            ),
            _ => format!(
                "Microsoft Graph refused the message ({}, {}): {}",
                self.status, self.code, self.message
            ),
        };
        match &self.request_id {
            Some(id) => format!("{explanation} Request ID: {id}."),
            None => explanation,
        }
    }
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code, self.status)
    }
}

/// What an explanation may point at.
pub struct AdviceContext<'a> {
    /// The redirect URI Portico sent, exactly as it must be registered.
    pub redirect_uri: &'a str,
    /// Whether Portico authenticated as a confidential client (with a client secret or a
    /// certificate).
    pub confidential_client: bool,
    /// Where an admin downloads the app's certificate, when it is not the page shown.
    pub certificate_page: Option<&'a str>,
    /// Where a directory admin grants consent to the app, when known.
    pub admin_consent_url: Option<&'a str>,
}

/// An explanation for people: a title, what happened, and the next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    pub title: &'static str,
    pub meaning: String,
    pub next_step: String,
}

fn advice(code: Option<u32>, error: &str, context: &AdviceContext<'_>) -> Advice {
    let platform = if context.confidential_client {
        "Web"
    } else {
        "Mobile and desktop applications"
    };
    let consent = context.admin_consent_url.map_or_else(
        || "An admin of the directory must grant admin consent to the app in Azure (API permissions → Grant admin consent).".to_owned(),
        |url| format!("An admin of the directory must grant consent to the app: open {url} and accept."),
    );
    let (title, meaning, next_step) = match (code, error) {
        (Some(50011), _) => (
            "Redirect URI not registered",
            format!("The app in Azure does not list Portico's redirect URI {}.", context.redirect_uri),
            format!("In Azure, open App registrations → the app → Authentication, add the platform “{platform}” if needed, and register exactly {}.", context.redirect_uri),
        ),
        (Some(700016), _) => (
            "Application not found in the directory",
            "Microsoft has no app with this Application (client) ID in the directory used.".into(),
            "Check the Application (client) ID and the Directory (tenant) ID against the app's Overview page in Azure.".into(),
        ),
        (Some(50020), _) => (
            "Account from another directory",
            "The account you chose belongs to a directory this app does not admit.".into(),
            "Sign in with your organization's account, or ask an admin to invite this account into the directory as a guest.".into(),
        ),
        (Some(50194), _) => (
            "Single-tenant app without a directory",
            "The app is registered for accounts of one directory only, but Portico has no Directory (tenant) ID for it.".into(),
            "Enter the Directory (tenant) ID in Portico's Sign in with Microsoft settings, or make the app multi-tenant in Azure (Authentication → Supported account types).".into(),
        ),
        (Some(65001 | 90094), _) => (
            "Consent required",
            "The app has not been granted permission to sign users in to this directory.".into(),
            consent,
        ),
        (Some(7000215), _) => (
            "Client secret is wrong",
            "Microsoft does not recognize the client secret Portico sent.".into(),
            "In Azure, open Certificates & secrets and copy the secret's Value, not its Secret ID. The Value is shown only when the secret is made: if it is gone, add a new secret and paste its Value into Portico.".into(),
        ),
        (Some(7000222), _) => (
            "Client secret has expired",
            "The client secret's expiry date has passed.".into(),
            "In Azure, add a new client secret under Certificates & secrets and replace the secret in Portico.".into(),
        ),
        (Some(7000218), _) => (
            "Client secret missing",
            "The redirect URI is registered under the Web platform, which requires a client secret, and Portico has none for this app.".into(),
            format!("Either enter a client secret in Portico, or register {} under “Mobile and desktop applications” in Azure instead of Web.", context.redirect_uri),
        ),
        (Some(700027), _) => (
            "Certificate not accepted",
            "Microsoft could not check Portico's signed request against a certificate of the app: the certificate was not uploaded to this app in Azure, a different one was, or it has expired there.".into(),
            format!(
                "Download the certificate (.cer) from {} and upload it in Azure under App registrations → the app → Certificates & secrets → Certificates → Upload certificate. The Thumbprint Azure then lists must match the one Portico shows.",
                context.certificate_page.unwrap_or("this page")
            ),
        ),
        (Some(700024), _) => (
            "Signed request outside its valid time",
            "Microsoft found the time in Portico's signed request wrong: the clock of the server Portico runs on is off by more than a few minutes.".into(),
            "Ask your operator to synchronize the server's clock (NTP), then test again.".into(),
        ),
        (Some(700023), _) => (
            "Signed request addressed elsewhere",
            "Portico's signed request named another token endpoint than the one it was sent to, which happens when the cloud chosen does not match the app's.".into(),
            "Check the Cloud setting against where the app is registered in Azure.".into(),
        ),
        (Some(90002), _) => (
            "Directory not found",
            "Microsoft has no directory with this Directory (tenant) ID or domain.".into(),
            "Copy the Directory (tenant) ID from the app's Overview page in Azure.".into(),
        ),
        (Some(54005), _) => (
            "Sign-in already completed",
            "This sign-in's code was already used.".into(),
            "Start again from the sign-in page.".into(),
        ),
        (Some(53003), _) => (
            "Blocked by Conditional Access",
            "A Conditional Access policy of your organization does not let this sign-in through (for this app, place, device or account).".into(),
            "Ask your Microsoft 365 admin which policy blocked it: Entra admin center → Sign-in logs shows the policy under Conditional Access, by the correlation ID below.".into(),
        ),
        (Some(53000), _) => (
            "Device not compliant",
            "A Conditional Access policy asks for a device your organization manages and marks compliant; this one is not.".into(),
            "Sign in from a managed device, or ask your IT department to enroll this one (Intune) and bring it into compliance.".into(),
        ),
        (Some(53001), _) => (
            "Device not joined to your organization",
            "A Conditional Access policy asks for a device joined to your organization's directory; this one is not.".into(),
            "Sign in from a company device, or ask your IT department to join this one.".into(),
        ),
        (Some(50076 | 50079), _) => (
            "Multi-factor authentication required",
            "Your organization asks for a second factor for this sign-in (or for you to set one up first), and it was not completed.".into(),
            "Sign in again and complete the verification Microsoft asks for; to set up a method, open https://aka.ms/mysecurityinfo.".into(),
        ),
        (Some(50105), _) => (
            "Not assigned to the app",
            "The app in your directory lets in only users and groups assigned to it, and this account is not one of them.".into(),
            "An admin assigns the user (or a group of theirs) in Entra admin center → Enterprise applications → the app → Users and groups → Add user/group, or sets Properties → Assignment required? to No.".into(),
        ),
        (Some(7000112), _) => (
            "App disabled",
            "The app is disabled in the directory, so Microsoft lets no one sign in to it.".into(),
            "An admin enables it in Entra admin center → Enterprise applications → the app → Properties → Enabled for users to sign-in? → Yes.".into(),
        ),
        (Some(50053), _) => (
            "Account locked",
            "Microsoft locked the account after too many wrong passwords, or blocked sign-ins coming from a suspicious address.".into(),
            "Wait a few minutes and try again with the right password; if it stays locked, ask your Microsoft 365 admin.".into(),
        ),
        (Some(50055), _) => (
            "Password expired",
            "The account's password has expired.".into(),
            "Change it at https://aka.ms/sspr (or as your organization does), then sign in again.".into(),
        ),
        (Some(50097), _) => (
            "Device authentication required",
            "Your organization asks the device itself to prove who it is, and this browser or device could not.".into(),
            "Sign in from a device registered with your organization, in a browser that supports it (Edge, or Chrome with the Microsoft Single Sign On extension).".into(),
        ),
        (Some(50158), _) => (
            "External security check not completed",
            "Your organization sends this sign-in through another security service (an external MFA or identity provider), and its check was not completed.".into(),
            "Sign in again and complete that check; if it keeps failing, ask your IT department.".into(),
        ),
        (Some(65004), _) | (None, "access_denied") => (
            "Sign-in cancelled",
            "The sign-in at Microsoft was cancelled, or the permissions were declined. Nothing changed.".into(),
            "Try again when you are ready.".into(),
        ),
        _ => (
            "Microsoft refused the request",
            "Microsoft answered with an error Portico has no explanation for.".into(),
            "Give the details below to your admin; Microsoft's support can find the request by its trace and correlation IDs.".into(),
        ),
    };
    Advice {
        title,
        meaning,
        next_step,
    }
}

/// The number in "AADSTS50011: The redirect URI ...".
fn aadsts_code(text: &str) -> Option<u32> {
    let start = text.find("AADSTS")? + "AADSTS".len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The value after a label such as "Trace ID:", up to the end of its line.
fn labelled(text: &str, label: &str) -> Option<String> {
    let start = text.find(label)? + label.len();
    let value = text[start..].lines().next()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// Microsoft's description up to its first line break: the references follow on their own.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESCRIPTION: &str = "AADSTS50011: The redirect URI 'https://x/cb' specified in the request does not match.\r\nTrace ID: 0f4b9a4e-1\r\nCorrelation ID: 7c2d-2\r\nTimestamp: 2026-11-25 17:04:49Z";

    #[test]
    fn redirect_errors_yield_code_and_references() {
        let error = MicrosoftError::from_redirect("invalid_request", Some(DESCRIPTION));
        assert_eq!(error.code, Some(50011));
        assert_eq!(error.trace_id.as_deref(), Some("0f4b9a4e-1"));
        assert_eq!(error.correlation_id.as_deref(), Some("7c2d-2"));
        assert_eq!(error.timestamp.as_deref(), Some("2026-11-25 17:04:49Z"));
        assert!(
            error
                .description
                .starts_with("AADSTS50011: The redirect URI")
        );
        assert!(!error.description.contains("Trace ID"));
    }

    #[test]
    fn token_errors_prefer_the_json_fields() {
        let body = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215],"trace_id":"t-1","correlation_id":"c-1","timestamp":"2026-11-25 17:04:49Z"}"#;
        let error = MicrosoftError::from_body(body);
        assert_eq!(error.code, Some(7000215));
        assert_eq!(error.error, "invalid_client");
        assert_eq!(error.trace_id.as_deref(), Some("t-1"));
        assert_eq!(
            MicrosoftError::from_body("<html>").error,
            "unexpected_response"
        );
    }

    #[test]
    fn graph_refusals_to_send_are_explained() {
        let body = r#"{"error":{"code":"ErrorAccessDenied","message":"Access is denied. Check credentials and try again.","innerError":{"date":"2026-11-25T17:04:49","request-id":"r-1"}}}"#;
        let denied = GraphError::from_body(403, body).unwrap();
        assert_eq!(denied.code, "ErrorAccessDenied");
        assert_eq!(denied.request_id.as_deref(), Some("r-1"));
        let missing = denied.sending_explanation("support@contoso.com", false);
        assert!(missing.contains("not been granted the Mail.Send application permission"));
        assert!(missing.ends_with("Request ID: r-1."));
        assert!(
            denied
                .sending_explanation("support@contoso.com", true)
                .contains("application access policy")
        );
        let unlicensed = GraphError::from_body(
            404,
            r#"{"error":{"code":"MailboxNotEnabledForRESTAPI","message":"The mailbox is either inactive, soft-deleted, or is hosted on-premise."}}"#,
        )
        .unwrap();
        assert!(
            unlicensed
                .sending_explanation("old@contoso.com", true)
                .contains("not an Exchange Online mailbox")
        );
        assert_eq!(GraphError::from_body(502, "<html>Bad gateway</html>"), None);
    }

    #[test]
    fn common_sign_in_refusals_are_explained_not_generic() {
        let context = AdviceContext {
            redirect_uri: "https://portal.example/oauth/callback",
            confidential_client: true,
            certificate_page: None,
            admin_consent_url: None,
        };
        for (code, title) in [
            (53003, "Blocked by Conditional Access"),
            (53000, "Device not compliant"),
            (53001, "Device not joined to your organization"),
            (50076, "Multi-factor authentication required"),
            (50079, "Multi-factor authentication required"),
            (50105, "Not assigned to the app"),
            (700016, "Application not found in the directory"),
            (7000112, "App disabled"),
            (65001, "Consent required"),
            (65004, "Sign-in cancelled"),
            (50053, "Account locked"),
            (50055, "Password expired"),
            (50097, "Device authentication required"),
            (50158, "External security check not completed"),
        ] {
            let body = format!(
                r#"{{"error":"interaction_required","error_description":"AADSTS{code}: text.","error_codes":[{code}]}}"#
            );
            let advice = MicrosoftError::from_body(&body).advice(&context);
            assert_eq!(advice.title, title, "AADSTS{code}");
            assert!(!advice.next_step.is_empty(), "AADSTS{code}");
        }
    }

    #[test]
    fn advice_names_the_next_step() {
        let context = AdviceContext {
            redirect_uri: "https://portico.example/auth/microsoft/callback",
            confidential_client: false,
            certificate_page: None,
            admin_consent_url: Some("https://login.example/dir/adminconsent?client_id=app"),
        };
        let mismatch =
            MicrosoftError::from_redirect("invalid_request", Some(DESCRIPTION)).advice(&context);
        assert!(
            mismatch
                .next_step
                .contains("https://portico.example/auth/microsoft/callback")
        );
        assert!(
            mismatch
                .next_step
                .contains("Mobile and desktop applications")
        );
        let consent = advice(Some(65001), "consent_required", &context);
        assert!(consent.next_step.contains("adminconsent?client_id=app"));
        assert_eq!(
            advice(None, "access_denied", &context).title,
            "Sign-in cancelled"
        );
        assert!(
            advice(Some(7000215), "invalid_client", &context)
                .next_step
                .contains("Value, not its Secret ID")
        );
        assert!(
            advice(Some(700027), "invalid_client", &context)
                .next_step
                .contains("Upload certificate")
        );
        assert!(
            advice(Some(700024), "invalid_client", &context)
                .meaning
                .contains("clock")
        );
    }
}
