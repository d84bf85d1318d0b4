//! What the fake knows: directories (Azure tenants), app registrations, users, mailboxes, and
//! the codes and tokens it has issued. One `State` behind one mutex; no lock is held across an
//! `.await`.

use std::collections::HashMap;

use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::keys::KeyRing;

/// The directory every personal Microsoft account (outlook.com, hotmail.com…) lives in.
pub const CONSUMERS_TENANT: Uuid = uuid::uuid!("9188040d-6c67-4c5b-b112-36a304b66dad");

/// An app registration, as set up in the Entra admin center.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeApp {
    /// The Application (client) ID.
    pub client_id: Uuid,
    /// The directory the app was registered in.
    pub home_tenant: Uuid,
    /// Display name, quoted in some AADSTS messages.
    #[serde(default = "default_app_name")]
    pub name: String,
    /// "Accounts in any organizational directory": any directory may sign in (and, simplified,
    /// every directory has consented). False means "this organizational directory only".
    #[serde(default)]
    pub multi_tenant: bool,
    /// "…and personal Microsoft accounts": only meaningful with `multi_tenant`.
    #[serde(default)]
    pub allow_personal_accounts: bool,
    /// "Web" platform redirect URIs: redeeming their codes needs a client secret.
    #[serde(default)]
    pub web_redirect_uris: Vec<String>,
    /// "Mobile and desktop applications" redirect URIs: public client, PKCE and no secret.
    #[serde(default)]
    pub public_client_redirect_uris: Vec<String>,
    /// Client secrets ("Certificates & secrets").
    #[serde(default)]
    pub secrets: Vec<FakeSecret>,
    /// Application permissions granted with admin consent, e.g. `Mail.ReadWrite`.
    #[serde(default)]
    pub application_roles: Vec<String>,
    /// Application permissions of the API "Office 365 Exchange Online", admin consented:
    /// `IMAP.AccessAsApp`, `POP.AccessAsApp`, `SMTP.SendAsApp`. They travel in Exchange
    /// tokens only, as Graph's roles travel in Graph tokens only.
    #[serde(default)]
    pub exchange_roles: Vec<String>,
    /// Certificates uploaded under "Certificates & secrets", as PEM: the app may prove
    /// itself with assertions signed by their private keys.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// The Object ID of its enterprise application (service principal): the `oid` of its
    /// app-only tokens, not the app registration's own Object ID.
    #[serde(default = "Uuid::new_v4")]
    pub service_principal_id: Uuid,
}

fn default_app_name() -> String {
    "Portico".to_owned()
}

impl FakeApp {
    /// A single-tenant app with no redirect URI, secret or permission yet.
    pub fn new(client_id: Uuid, home_tenant: Uuid) -> Self {
        Self {
            client_id,
            home_tenant,
            name: default_app_name(),
            multi_tenant: false,
            allow_personal_accounts: false,
            web_redirect_uris: Vec::new(),
            public_client_redirect_uris: Vec::new(),
            secrets: Vec::new(),
            application_roles: Vec::new(),
            exchange_roles: Vec::new(),
            certificates: Vec::new(),
            service_principal_id: Uuid::new_v4(),
        }
    }

    /// Sets the display name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Accounts in any organizational directory (AzureADMultipleOrgs).
    pub fn multi_tenant(mut self) -> Self {
        self.multi_tenant = true;
        self
    }

    /// Any directory and personal Microsoft accounts (AzureADandPersonalMicrosoftAccount).
    pub fn with_personal_accounts(mut self) -> Self {
        self.multi_tenant = true;
        self.allow_personal_accounts = true;
        self
    }

    /// Adds a "Web" platform redirect URI.
    pub fn web_redirect_uri(mut self, uri: &str) -> Self {
        self.web_redirect_uris.push(uri.to_owned());
        self
    }

    /// Adds a "Mobile and desktop applications" redirect URI.
    pub fn public_client_redirect_uri(mut self, uri: &str) -> Self {
        self.public_client_redirect_uris.push(uri.to_owned());
        self
    }

    /// Adds a client secret that expires at `expires_at`.
    pub fn secret(mut self, value: &str, expires_at: OffsetDateTime) -> Self {
        self.secrets.push(FakeSecret {
            value: value.to_owned(),
            expires_at,
        });
        self
    }

    /// Uploads a certificate (PEM).
    pub fn certificate(mut self, pem: &str) -> Self {
        self.certificates.push(pem.to_owned());
        self
    }

    /// Grants an application permission (admin consented).
    pub fn application_role(mut self, role: &str) -> Self {
        self.application_roles.push(role.to_owned());
        self
    }

    /// Grants an Exchange Online application permission (admin consented).
    pub fn exchange_role(mut self, role: &str) -> Self {
        self.exchange_roles.push(role.to_owned());
        self
    }

    /// Whether users of `directory` can sign in to this app at all.
    pub(crate) fn admits_directory(&self, directory: Uuid) -> bool {
        if directory == CONSUMERS_TENANT {
            self.allow_personal_accounts
        } else {
            self.multi_tenant || directory == self.home_tenant
        }
    }
}

/// A client secret: its value (not its ID) and when it stops working.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeSecret {
    /// What the client sends as `client_secret`.
    pub value: String,
    /// After this the token endpoint answers AADSTS7000222.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A user who can "sign in" (there is no login form: see `FakeMicrosoft::sign_in_as`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeUser {
    /// Home directory; `CONSUMERS_TENANT` for personal Microsoft accounts.
    pub tenant_id: Uuid,
    /// Object ID, the `oid` claim.
    #[serde(default = "Uuid::new_v4")]
    pub oid: Uuid,
    /// User principal name, sent as the `preferred_username` claim.
    pub upn: String,
    /// Display name, the `name` claim.
    pub name: String,
    /// The `email` claim; Entra leaves it out for users without a mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// The optional `xms_edov` claim (is the email's domain verified by the tenant owner).
    #[serde(default)]
    pub xms_edov: Option<bool>,
}

impl FakeUser {
    /// A work or school account in `tenant_id`, without an email claim.
    pub fn new(tenant_id: Uuid, upn: &str, name: &str) -> Self {
        Self {
            tenant_id,
            oid: Uuid::new_v4(),
            upn: upn.to_owned(),
            name: name.to_owned(),
            email: None,
            xms_edov: None,
        }
    }

    /// A personal Microsoft account: consumers directory, an `oid` shaped like Entra gives
    /// them (`00000000-0000-0000-xxxx-xxxxxxxxxxxx`), and the address as email claim.
    pub fn personal(address: &str, name: &str) -> Self {
        let random = Uuid::new_v4().as_u128() & ((1u128 << 64) - 1);
        Self {
            tenant_id: CONSUMERS_TENANT,
            oid: Uuid::from_u128(random),
            upn: address.to_owned(),
            name: name.to_owned(),
            email: Some(address.to_owned()),
            xms_edov: None,
        }
    }

    /// Sets the `email` claim.
    pub fn email(mut self, email: &str) -> Self {
        self.email = Some(email.to_owned());
        self
    }

    /// Sets the `xms_edov` claim.
    pub fn xms_edov(mut self, verified: bool) -> Self {
        self.xms_edov = Some(verified);
        self
    }

    pub(crate) fn is_personal(&self) -> bool {
        self.tenant_id == CONSUMERS_TENANT
    }
}

/// What Graph answers an app that reads a mailbox or sends mail as it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MailboxAccess {
    /// 200 with the folder.
    Granted,
    /// 403: an Exchange application access policy (RBAC for Applications) excludes the app.
    Denied,
    /// 404: no such mailbox; the default for any address not set.
    NotFound,
}

/// What an access token the fake issued grants, as Exchange Online would read it: for the
/// tests' XOAUTH2 responders, which play Exchange's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedAccess {
    pub app_id: Uuid,
    pub tenant_id: Uuid,
    pub audience: String,
    pub roles: Vec<String>,
    pub app_only: bool,
    pub expired: bool,
}

/// A message Graph accepted to send (`sendMail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMail {
    /// The app whose token sent it.
    pub app_id: Uuid,
    /// The mailbox it was sent as, lowercase.
    pub mailbox: String,
    /// The `toRecipients` addresses.
    pub to: Vec<String>,
    pub subject: String,
    /// `Text` or `HTML`.
    pub content_type: String,
    pub body: String,
    /// Graph's default is true.
    pub save_to_sent_items: bool,
}

/// A directory (Azure tenant).
#[derive(Debug, Clone)]
pub(crate) struct Directory {
    pub id: Uuid,
    pub verified_domains: Vec<String>,
}

impl Directory {
    /// How Entra names the directory in messages: its first domain, else its ID.
    pub fn display_name(&self) -> String {
        self.verified_domains
            .first()
            .cloned()
            .unwrap_or_else(|| self.id.to_string())
    }
}

/// The `{authority}` path segment, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Authority {
    /// Work, school and personal accounts.
    Common,
    /// Work and school accounts of any directory.
    Organizations,
    /// Personal accounts only (`consumers` or the consumers directory's GUID).
    Consumers,
    /// One directory, named by GUID or verified domain.
    Directory(Uuid),
}

/// Why an authority segment names no directory.
pub(crate) enum UnknownAuthority {
    /// A GUID or domain no directory has: AADSTS90002.
    NotFound,
    /// Neither a GUID nor a domain name: AADSTS900023.
    Malformed,
}

/// An authorization code waiting to be redeemed.
#[derive(Debug, Clone)]
pub(crate) struct IssuedCode {
    pub client_id: Uuid,
    pub redirect_uri: String,
    /// `(method, challenge)`; Entra takes a challenge without a method as `plain`.
    pub code_challenge: Option<(String, String)>,
    pub nonce: Option<String>,
    pub scope: String,
    pub user: FakeUser,
    pub expires_at: OffsetDateTime,
    pub redeemed: bool,
}

/// What a user's sign-in granted an app; a refresh token stands for one.
#[derive(Debug, Clone)]
pub(crate) struct UserGrant {
    pub client_id: Uuid,
    pub scope: String,
    pub user: FakeUser,
    /// Whether it was issued through a Web redirect URI, so redeeming it needs the secret.
    pub confidential: bool,
}

/// Exchange Online's resource: app-only tokens for IMAP, POP and SMTP are issued for it.
pub const EXCHANGE_RESOURCE: &str = "https://outlook.office365.com";

/// What an access token lets its bearer do at Graph or Exchange Online.
#[derive(Debug, Clone)]
pub(crate) struct AccessGrant {
    pub app_id: Uuid,
    pub tenant_id: Uuid,
    /// The `aud`: Graph's URL, or [`EXCHANGE_RESOURCE`].
    pub audience: String,
    /// Application permissions; empty for delegated (user) tokens.
    pub roles: Vec<String>,
    /// Issued to a signed-in user rather than to the app itself.
    pub delegated: bool,
    pub expires_at: OffsetDateTime,
}

/// Everything the fake remembers.
/// Changes an ID token's claims and picks its signing.
pub type IdTokenTamper = Box<dyn FnOnce(&mut serde_json::Value) -> super::keys::Signing + Send>;

#[derive(Default)]
pub(crate) struct State {
    pub directories: Vec<Directory>,
    pub apps: Vec<FakeApp>,
    pub users: Vec<FakeUser>,
    /// Keyed by (client ID, lowercase address).
    pub mailboxes: HashMap<(Uuid, String), MailboxAccess>,
    /// The user the authorize endpoint signs in when no `login_hint` names one.
    pub signed_in: Option<String>,
    /// The next authorization is cancelled by the "user".
    pub cancel_next: bool,
    /// Rewrites the next ID token the token endpoint issues, and says how to sign it:
    /// how tests forge tokens that travel the real flow.
    pub tamper_next_id_token: Option<IdTokenTamper>,
    pub codes: HashMap<String, IssuedCode>,
    pub refresh_tokens: HashMap<String, UserGrant>,
    pub access_tokens: HashMap<String, AccessGrant>,
    /// Every message `sendMail` accepted, oldest first.
    pub sent_mail: Vec<SentMail>,
    /// Every code and token ever issued, for tests that look for them where they must
    /// not be.
    pub issued: Vec<String>,
    /// The `jti` of every client assertion accepted and not yet expired, with its `exp`.
    pub used_assertions: HashMap<String, i64>,
    pub keys: KeyRing,
    /// Added to the wall clock: lets tests expire codes, tokens and secrets.
    pub clock_offset: time::Duration,
    pub delay: Option<std::time::Duration>,
    pub faults: HashMap<super::Endpoint, super::Fault>,
    pub keys_fetches: usize,
    pub token_requests: usize,
    /// The names of the fields of the last token request's body, in order.
    pub last_token_fields: Vec<String>,
    pub discovery_fetches: usize,
}

impl State {
    pub fn new() -> Self {
        let mut state = Self::default();
        state.directories.push(Directory {
            id: CONSUMERS_TENANT,
            verified_domains: Vec::new(),
        });
        state
    }

    /// The fake's "now": the wall clock moved by `FakeMicrosoft::advance_clock`.
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.clock_offset
    }

    pub fn resolve_authority(&self, segment: &str) -> Result<Authority, UnknownAuthority> {
        let segment = segment.to_ascii_lowercase();
        match segment.as_str() {
            "common" => return Ok(Authority::Common),
            "organizations" => return Ok(Authority::Organizations),
            "consumers" => return Ok(Authority::Consumers),
            _ => {}
        }
        let found = if let Ok(id) = Uuid::parse_str(&segment) {
            self.directory(id)
        } else if segment.contains('.') {
            self.directories
                .iter()
                .find(|d| d.verified_domains.contains(&segment))
        } else {
            return Err(UnknownAuthority::Malformed);
        };
        match found {
            Some(d) if d.id == CONSUMERS_TENANT => Ok(Authority::Consumers),
            Some(d) => Ok(Authority::Directory(d.id)),
            None => Err(UnknownAuthority::NotFound),
        }
    }

    pub fn directory(&self, id: Uuid) -> Option<&Directory> {
        self.directories.iter().find(|d| d.id == id)
    }

    /// How AADSTS messages name the directory an authority points at.
    pub fn authority_name(&self, authority: Authority, segment: &str) -> String {
        match authority {
            Authority::Directory(id) => self
                .directory(id)
                .map_or_else(|| id.to_string(), Directory::display_name),
            Authority::Consumers => CONSUMERS_TENANT.to_string(),
            Authority::Common | Authority::Organizations => segment.to_owned(),
        }
    }

    /// The app `client_id` as seen from `authority`: a directory sees its own apps and every
    /// multi-tenant one; `consumers` only apps open to personal accounts.
    pub fn app_seen_from(&self, client_id: &str, authority: Authority) -> Option<&FakeApp> {
        let client_id = Uuid::parse_str(client_id).ok()?;
        let app = self.apps.iter().find(|a| a.client_id == client_id)?;
        let visible = match authority {
            Authority::Common | Authority::Organizations => true,
            Authority::Consumers => app.allow_personal_accounts,
            Authority::Directory(id) => app.admits_directory(id),
        };
        visible.then_some(app)
    }

    pub fn user(&self, upn: &str) -> Option<&FakeUser> {
        self.users.iter().find(|u| u.upn.eq_ignore_ascii_case(upn))
    }

    pub fn mailbox_access(&self, client_id: Uuid, mailbox: &str) -> MailboxAccess {
        self.mailboxes
            .get(&(client_id, mailbox.to_ascii_lowercase()))
            .copied()
            .unwrap_or(MailboxAccess::NotFound)
    }
}
