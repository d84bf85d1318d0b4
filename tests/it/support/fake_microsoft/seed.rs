//! A whole fake world in one JSON document, for `examples/fake-microsoft.rs --seed FILE`.

use serde::Deserialize;
use uuid::Uuid;

use super::{FakeApp, FakeMicrosoft, FakeUser, MailboxAccess};

/// Directories, apps, users and mailboxes to add, and who is signed in.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Directories (Azure tenants) besides the consumers one, which always exists.
    #[serde(default)]
    pub directories: Vec<SeedDirectory>,
    /// App registrations.
    #[serde(default)]
    pub apps: Vec<FakeApp>,
    /// Users of those directories, and personal accounts.
    #[serde(default)]
    pub users: Vec<FakeUser>,
    /// What Graph answers each app for each mailbox.
    #[serde(default)]
    pub mailboxes: Vec<SeedMailbox>,
    /// The UPN passed to `FakeMicrosoft::sign_in_as`.
    #[serde(default)]
    pub sign_in_as: Option<String>,
}

/// A directory of a seed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedDirectory {
    /// The directory (tenant) ID.
    pub tenant_id: Uuid,
    /// Domains that resolve to it, first one used as its name.
    #[serde(default)]
    pub verified_domains: Vec<String>,
}

/// A mailbox of a seed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedMailbox {
    /// The app reading the mailbox.
    pub client_id: Uuid,
    /// The mailbox address.
    pub mailbox: String,
    /// What Graph answers.
    pub access: MailboxAccess,
}

impl FakeMicrosoft {
    /// Adds everything in `seed`.
    pub fn apply_seed(&self, seed: &Seed) {
        for directory in &seed.directories {
            let domains: Vec<&str> = directory
                .verified_domains
                .iter()
                .map(String::as_str)
                .collect();
            self.add_directory(directory.tenant_id, &domains);
        }
        for app in &seed.apps {
            self.add_app(app.clone());
        }
        for user in &seed.users {
            self.add_user(user.clone());
        }
        for mailbox in &seed.mailboxes {
            self.set_mailbox_access(mailbox.client_id, &mailbox.mailbox, mailbox.access);
        }
        if let Some(upn) = &seed.sign_in_as {
            self.sign_in_as(upn);
        }
    }
}
