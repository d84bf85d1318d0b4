//! Runs the fake Microsoft identity platform and Graph on its own: for the browser suite, and
//! for trying Portico without Azure.
//!
//! `cargo run --example fake-microsoft -- [--port 9999] [--seed FILE]`
//!
//! Without `--seed` it serves the world of `examples/fake-microsoft-seed.json`, which is also
//! the template for a seed file of your own.

#[path = "../tests/it/support/fake_microsoft/mod.rs"]
mod fake_microsoft;

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use fake_microsoft::{FakeMicrosoft, Seed};

const DEFAULT_SEED: &str = include_str!("fake-microsoft-seed.json");

#[derive(Parser)]
#[command(about = "A fake Microsoft Entra ID and Graph on 127.0.0.1")]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,

    /// JSON file of directories, apps, users and mailboxes (shape: examples/fake-microsoft-seed.json).
    #[arg(long)]
    seed: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let seed: Seed = match &args.seed {
        Some(path) => serde_json::from_str(&std::fs::read_to_string(path)?)
            .map_err(|err| format!("{}: {err}", path.display()))?,
        None => serde_json::from_str(DEFAULT_SEED)?,
    };
    let fake = FakeMicrosoft::start_on(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    fake.apply_seed(&seed);
    print!("{}", describe(&fake, &seed));
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// What a person (or a script: the first line) needs to point Portico at the fake.
fn describe(fake: &FakeMicrosoft, seed: &Seed) -> String {
    let mut out = format!("fake Microsoft listening on {}\n", fake.base_url());
    out += &format!(
        "  login (for https://login.microsoftonline.com): {}\n",
        fake.login_url()
    );
    out += &format!(
        "  graph (for https://graph.microsoft.com):       {}\n",
        fake.graph_url()
    );
    out += "\ndirectories:\n";
    for directory in &seed.directories {
        out += &format!(
            "  {}  {}\n",
            directory.tenant_id,
            directory.verified_domains.join(", ")
        );
    }
    out += "\napps:\n";
    for app in &seed.apps {
        let audience = match (app.multi_tenant, app.allow_personal_accounts) {
            (true, true) => "any directory and personal accounts",
            (true, false) => "any directory",
            (false, _) => "its directory only",
        };
        out += &format!(
            "  {} \"{}\" (home {}, {audience})\n",
            app.client_id, app.name, app.home_tenant
        );
        for uri in &app.web_redirect_uris {
            out += &format!("      web redirect URI:            {uri}\n");
        }
        for uri in &app.public_client_redirect_uris {
            out += &format!("      mobile/desktop redirect URI: {uri}\n");
        }
        for secret in &app.secrets {
            out += &format!(
                "      secret: {}  (expires {})\n",
                secret.value,
                secret.expires_at.date()
            );
        }
        if !app.application_roles.is_empty() {
            out += &format!(
                "      application permissions: {}\n",
                app.application_roles.join(", ")
            );
        }
    }
    out += "\nusers:\n";
    for user in &seed.users {
        let email = user.email.as_deref().unwrap_or("no email claim");
        out += &format!(
            "  {}  \"{}\"  tenant {}  ({email})\n",
            user.upn, user.name, user.tenant_id
        );
    }
    if let Some(upn) = &seed.sign_in_as {
        out += &format!("  signed in (when no login_hint names another): {upn}\n");
    }
    out += "\nmailboxes:\n";
    for mailbox in &seed.mailboxes {
        out += &format!(
            "  {} for app {}: {:?}\n",
            mailbox.mailbox, mailbox.client_id, mailbox.access
        );
    }
    out
}
