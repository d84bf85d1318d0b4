//! Rules of a Microsoft Graph credential: its name, its secret's expiry, and which
//! application permissions a mail integration needs.

use time::{Date, OffsetDateTime};

use super::{Direction, MailProtocol};

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

/// "Secret expires on", as the Azure portal shows it when the secret is made: not past on
/// `today`, and within Azure's limit, "Client secret lifetime is limited to two years (24
/// months) or less".
pub fn parse_expiry_date(raw: &str, today: Date) -> Result<Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let expires_on = Date::parse(raw.trim(), format)
        .map_err(|_| "Enter the date Azure shows under Expires, as YYYY-MM-DD.".to_owned())?;
    if expires_on < today {
        return Err(format!(
            "This date has passed (today is {today}): a secret that works expires in the \
             future. Enter the date Azure shows under Expires."
        ));
    }
    let latest = latest_secret_expiry(today);
    if expires_on > latest {
        return Err(format!(
            "Client secret lifetime is limited to two years (24 months) or less: Azure shows \
             a date by {latest} under Expires."
        ));
    }
    Ok(expires_on)
}

/// The last day a secret made `today` may work: two years on (28 February for 29 February).
fn latest_secret_expiry(today: Date) -> Date {
    let year = today.year() + 2;
    today
        .replace_year(year)
        .or_else(|_| Date::from_calendar_date(year, today.month(), today.day() - 1))
        .unwrap_or(Date::MAX)
}

/// The client secret a save finds stored, as far as its expiry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredSecret {
    None,
    /// Entered before Portico asked for its "Secret expires on".
    Undated,
    ExpiresOn(Date),
}

impl StoredSecret {
    pub fn of(has_secret: bool, expires_on: Option<Date>) -> Self {
        match (has_secret, expires_on) {
            (false, _) => Self::None,
            (true, None) => Self::Undated,
            (true, Some(date)) => Self::ExpiresOn(date),
        }
    }
}

/// The "Secret expires on" a save stores beside a client secret: `Some` to store, `None`
/// to keep what is stored. Required with a `new_secret`. For the `stored` secret, a typed
/// date enters or corrects it without the secret (the date alone is not secret); an empty
/// field or the stored date keeps it, so an expired secret's date never stops other
/// settings from being saved. Without any secret, no date.
pub fn secret_expiry_on_save(
    raw: &str,
    new_secret: bool,
    stored: StoredSecret,
    today: Date,
) -> Result<Option<Date>, String> {
    let typed = raw.trim();
    if new_secret {
        return parse_expiry_date(typed, today).map(Some);
    }
    match stored {
        _ if typed.is_empty() => Ok(None),
        StoredSecret::ExpiresOn(known) if typed == known.to_string() => Ok(None),
        StoredSecret::ExpiresOn(_) | StoredSecret::Undated => {
            parse_expiry_date(typed, today).map(Some)
        }
        StoredSecret::None => Err(
            "There is no client secret for this date: paste the secret with it, or leave the \
             date empty."
                .into(),
        ),
    }
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
    /// A client secret stored before Portico asked for its "Secret expires on": it may end
    /// any day, so it is shown until an admin enters the date.
    Unknown,
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

    /// As [`Self::of`], for a secret whose date may be unknown.
    pub fn of_known(expires_on: Option<Date>, now: OffsetDateTime) -> Self {
        expires_on.map_or(Self::Unknown, |date| Self::of(date, now))
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
            Self::Unknown => "Expiry unknown".into(),
        }
    }

    /// The badge's style: ok, warn or danger.
    pub fn tone(self) -> &'static str {
        match self {
            Self::Valid => "ok",
            Self::ExpiresSoon { .. } | Self::Unknown => "warn",
            Self::Expired | Self::Failed => "danger",
        }
    }
}

/// Graph's application permission to read a mailbox's mail and move what Portico has read.
pub const GRAPH_READ_ROLE: &str = "Mail.ReadWrite";
/// Graph's application permission to send mail as a mailbox.
pub const GRAPH_SEND_ROLE: &str = "Mail.Send";
/// Every Graph application permission a Graph mailbox may need, reading first.
pub const GRAPH_ROLES: [&str; 2] = [GRAPH_READ_ROLE, GRAPH_SEND_ROLE];

/// The Graph application permissions a Graph mailbox of `direction` needs: receiving reads
/// (and moves) mail, sending needs only Mail.Send.
pub fn graph_roles(direction: Direction) -> &'static [&'static str] {
    match direction {
        Direction::Incoming => &GRAPH_ROLES[..1],
        Direction::Outgoing => &GRAPH_ROLES[1..],
        Direction::Both => &GRAPH_ROLES,
    }
}

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

/// One permission Portico may use, judged against the mailboxes that use a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleNeed {
    pub role: &'static str,
    pub granted: bool,
    /// The addresses of the mailboxes that need it; empty when none does.
    pub needed_by: Vec<String>,
}

impl RoleNeed {
    /// Needed by a mailbox and not granted: that mailbox fails.
    pub fn is_missing(&self) -> bool {
        !self.granted && !self.needed_by.is_empty()
    }

    /// "Mail.Send (sales@contoso.com, orders@contoso.com)".
    pub fn with_mailboxes(&self) -> String {
        format!("{} ({})", self.role, self.needed_by.join(", "))
    }
}

/// What a token's `roles` say about an app's permissions for one API (Graph, or Exchange
/// Online), judged by least privilege against the mailboxes that use the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleReview {
    pub granted: Vec<String>,
    /// Each permission of the API Portico may use, in its order, with who needs it.
    pub needs: Vec<RoleNeed>,
    /// Granted and needed by no mailbox using the credential: least privilege says remove
    /// them. While no mailbox uses the credential, only permissions Portico never uses.
    pub unneeded: Vec<String>,
    /// No mailbox uses the credential yet, so `needs` says what each kind would need.
    pub unused: bool,
}

impl RoleReview {
    /// `roles`: the token's; `known`: the API's permissions Portico may use; `needs`: each
    /// (mailbox address, permission it needs) through this API; `unused`: no mailbox uses
    /// the credential at all, through either API.
    pub fn of(
        roles: &[String],
        known: &[&'static str],
        needs: &[(&str, &'static str)],
        unused: bool,
    ) -> Self {
        let needs: Vec<RoleNeed> = known
            .iter()
            .map(|&role| RoleNeed {
                role,
                granted: roles.iter().any(|granted| granted == role),
                needed_by: needs
                    .iter()
                    .filter(|(_, needed)| *needed == role)
                    .map(|(email, _)| (*email).to_owned())
                    .collect(),
            })
            .collect();
        let unneeded = roles
            .iter()
            .filter(|role| match needs.iter().find(|need| need.role == *role) {
                Some(need) => need.needed_by.is_empty() && !unused,
                None => true,
            })
            .cloned()
            .collect();
        Self {
            granted: roles.to_vec(),
            needs,
            unneeded,
            unused,
        }
    }

    /// A Graph token's roles, judged against the Graph mailboxes (address, direction) that
    /// use the credential.
    pub fn of_graph(roles: &[String], mailboxes: &[(String, Direction)], unused: bool) -> Self {
        let needs: Vec<(&str, &'static str)> = mailboxes
            .iter()
            .flat_map(|(email, direction)| {
                graph_roles(*direction)
                    .iter()
                    .map(move |role| (email.as_str(), *role))
            })
            .collect();
        Self::of(roles, &GRAPH_ROLES, &needs, unused)
    }

    /// An Exchange Online token's roles, judged against the mailboxes (address, protocol)
    /// that sign in app-only with the credential's app.
    pub fn of_exchange(
        roles: &[String],
        mailboxes: &[(String, MailProtocol)],
        unused: bool,
    ) -> Self {
        let needs: Vec<(&str, &'static str)> = mailboxes
            .iter()
            .filter_map(|(email, protocol)| Some((email.as_str(), exchange_role(*protocol)?)))
            .collect();
        Self::of(roles, &EXCHANGE_ROLES, &needs, unused)
    }

    /// The permissions mailboxes need and the token lacks: admin consent is missing.
    pub fn missing(&self) -> impl Iterator<Item = &RoleNeed> {
        self.needs.iter().filter(|need| need.is_missing())
    }

    /// "Mail.Send (sales@contoso.com)", one for each missing permission.
    pub fn missing_with_mailboxes(&self) -> Vec<String> {
        self.missing().map(RoleNeed::with_mailboxes).collect()
    }

    /// Every mailbox has what it needs.
    pub fn is_sufficient(&self) -> bool {
        self.missing().next().is_none()
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

    fn graph(roles: &[&str], mailboxes: &[(&str, Direction)]) -> RoleReview {
        let roles: Vec<String> = roles.iter().map(|role| (*role).to_owned()).collect();
        let mailboxes: Vec<(String, Direction)> = mailboxes
            .iter()
            .map(|(email, direction)| ((*email).to_owned(), *direction))
            .collect();
        RoleReview::of_graph(&roles, &mailboxes, mailboxes.is_empty())
    }

    #[test]
    fn receiving_needs_no_mail_send_and_holding_it_unused_is_warned() {
        let review = graph(
            &["Mail.ReadWrite", "Mail.Send"],
            &[("support@contoso.com", Direction::Incoming)],
        );
        assert!(review.is_sufficient());
        assert_eq!(review.unneeded, vec!["Mail.Send".to_owned()]);
        let without_send = graph(
            &["Mail.ReadWrite"],
            &[("support@contoso.com", Direction::Incoming)],
        );
        assert!(without_send.is_sufficient());
        assert!(without_send.unneeded.is_empty());
    }

    #[test]
    fn a_permission_a_mailbox_needs_and_lacks_names_that_mailbox() {
        let review = graph(
            &["Mail.ReadWrite"],
            &[
                ("support@contoso.com", Direction::Incoming),
                ("sales@contoso.com", Direction::Outgoing),
                ("desk@contoso.com", Direction::Both),
            ],
        );
        assert!(!review.is_sufficient());
        assert_eq!(
            review.missing_with_mailboxes(),
            vec!["Mail.Send (sales@contoso.com, desk@contoso.com)"]
        );
        let sending_only = graph(
            &["Mail.Send"],
            &[("sales@contoso.com", Direction::Outgoing)],
        );
        assert!(sending_only.is_sufficient());
        let reading_unneeded = graph(
            &["Mail.ReadWrite", "Mail.Send"],
            &[("sales@contoso.com", Direction::Outgoing)],
        );
        assert_eq!(reading_unneeded.unneeded, vec!["Mail.ReadWrite".to_owned()]);
    }

    #[test]
    fn an_unused_credential_lists_what_each_direction_needs_and_warns_only_of_foreign_ones() {
        let review = graph(&["Mail.Send", "User.Read.All"], &[]);
        assert!(review.unused);
        assert!(review.is_sufficient());
        assert_eq!(review.unneeded, vec!["User.Read.All".to_owned()]);
        let needs: Vec<(&str, bool)> = review
            .needs
            .iter()
            .map(|need| (need.role, need.granted))
            .collect();
        assert_eq!(needs, vec![("Mail.ReadWrite", false), ("Mail.Send", true)]);
        assert_eq!(graph_roles(Direction::Incoming), ["Mail.ReadWrite"]);
        assert_eq!(graph_roles(Direction::Outgoing), ["Mail.Send"]);
        assert_eq!(graph_roles(Direction::Both), GRAPH_ROLES);
    }

    #[test]
    fn exchange_permissions_are_judged_by_the_protocols_that_sign_in() {
        let roles = vec!["SMTP.SendAsApp".to_owned(), "POP.AccessAsApp".to_owned()];
        let mailboxes = vec![
            ("inbox@contoso.com".to_owned(), MailProtocol::Imap),
            ("noreply@contoso.com".to_owned(), MailProtocol::Smtp),
        ];
        let review = RoleReview::of_exchange(&roles, &mailboxes, false);
        assert_eq!(
            review.missing_with_mailboxes(),
            vec!["IMAP.AccessAsApp (inbox@contoso.com)"]
        );
        assert_eq!(review.unneeded, vec!["POP.AccessAsApp".to_owned()]);
        // Used only by Graph mailboxes: every Exchange permission is unneeded.
        let graph_only = RoleReview::of_exchange(&roles, &[], false);
        assert!(graph_only.is_sufficient());
        assert_eq!(graph_only.unneeded, roles);
        assert!(
            RoleReview::of_exchange(&roles, &[], true)
                .unneeded
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
        let today = date!(2026 - 11 - 25);
        assert_eq!(
            parse_expiry_date(" 2027-05-31 ", today),
            Ok(date!(2027 - 05 - 31))
        );
        assert!(parse_expiry_date("31/05/2027", today).is_err());
    }

    #[test]
    fn a_secret_expiry_is_today_or_later_and_at_most_24_months_ahead() {
        let today = date!(2026 - 11 - 25);
        assert_eq!(parse_expiry_date("2026-11-25", today), Ok(today));
        assert!(
            parse_expiry_date("2026-11-24", today)
                .unwrap_err()
                .starts_with("This date has passed")
        );
        assert_eq!(
            parse_expiry_date("2028-11-25", today),
            Ok(date!(2028 - 11 - 25))
        );
        assert_eq!(
            parse_expiry_date("2028-11-26", today),
            Err(
                "Client secret lifetime is limited to two years (24 months) or less: Azure \
                 shows a date by 2028-11-25 under Expires."
                    .into()
            )
        );
        // Azure's longest choice, 730 days, always fits, across a leap day too.
        let leap_day = date!(2028 - 02 - 29);
        assert_eq!(latest_secret_expiry(leap_day), date!(2030 - 02 - 28));
        let longest = (leap_day + time::Duration::days(730)).to_string();
        assert!(parse_expiry_date(&longest, leap_day).is_ok());
    }

    #[test]
    fn a_date_is_required_with_a_new_secret_and_optional_for_the_stored_one() {
        let today = date!(2026 - 11 - 25);
        let dated = StoredSecret::ExpiresOn(date!(2026 - 11 - 01));
        let save = |raw, new_secret, stored| secret_expiry_on_save(raw, new_secret, stored, today);
        assert!(save("", true, dated).is_err());
        assert!(save("2026-11-01", true, dated).is_err());
        assert_eq!(
            save("2027-01-31", true, StoredSecret::None),
            Ok(Some(date!(2027 - 01 - 31)))
        );
        // The stored secret keeps its date, even one past, unless another is typed.
        assert_eq!(save("", false, dated), Ok(None));
        assert_eq!(save("2026-11-01", false, dated), Ok(None));
        assert_eq!(
            save("2027-01-31", false, StoredSecret::Undated),
            Ok(Some(date!(2027 - 01 - 31)))
        );
        assert!(save("2031-01-31", false, StoredSecret::Undated).is_err());
        assert_eq!(save("", false, StoredSecret::Undated), Ok(None));
        assert!(save("2027-01-31", false, StoredSecret::None).is_err());
        assert_eq!(save(" ", false, StoredSecret::None), Ok(None));
        assert_eq!(StoredSecret::of(true, None), StoredSecret::Undated);
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
