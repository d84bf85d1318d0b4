//! Two admins editing the same thing at once: the second save, made on a page opened before
//! the first, is refused with a clear message, keeps what its admin typed (never a secret),
//! saves and audits nothing, and goes through once they save again from the new page.

use portico::domain::Role;
use portico::store::{mailboxes, tenants::Tenant};
use secrecy::ExposeSecret;
use uuid::{Uuid, uuid};

use crate::external_apis::in_days;
use crate::on_both_backends;
use crate::support::{Backend, Browser, PASSWORD, Page, TestApp, spawn_app};

const CONTOSO: Uuid = uuid!("12121212-1212-4121-8121-121212121212");
const APP_ID: Uuid = uuid!("34343434-3434-4343-8343-343434343434");
const OTHER_APP_ID: Uuid = uuid!("56565656-5656-4565-8565-565656565656");
const BEN_SECRET: &str = "Ben~Canary-Secret.111";
const ANA_SECRET: &str = "Ana~Canary-Secret.222";
const ANA_PASSWORD: &str = "ana-canary-mailbox-password";

on_both_backends!(
    graph_credential_edits_and_secret_replacements_never_overwrite_each_other,
    segment_and_mailbox_edits_never_overwrite_each_other,
    oauth_connection_edits_never_overwrite_each_other,
    sign_in_with_microsoft_settings_never_overwrite_each_other,
    user_changes_never_overwrite_each_other,
    of_many_saves_from_one_page_exactly_one_applies,
);

/// A tenant "acme" with two admins, Ana and Ben, each signed in in their own browser.
async fn two_admins(app: &TestApp) -> (Tenant, Browser, Browser) {
    let (tenant, ana) = app.tenant_with_admin("acme").await;
    app.create_user(&tenant, "ben@acme.test", Role::Admin).await;
    let ben = app.browser();
    ben.sign_in("acme", "ben@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
    (tenant, ana, ben)
}

/// Posts `fields` to `action` as a form of `opened` would: with its token and its version.
async fn save_from(
    browser: &Browser,
    opened: &Page,
    action: &str,
    fields: &[(&str, &str)],
) -> Page {
    let token = opened.csrf_token();
    let version = opened
        .version()
        .unwrap_or_else(|| panic!("no version in the page's forms:\n{}", opened.body));
    let mut all = vec![
        ("csrf_token", token.as_str()),
        ("version", version.as_str()),
    ];
    all.extend_from_slice(fields);
    browser.post_raw(action, &all).await
}

/// The answer to a save that came second: 409, the message, and nothing of `secret`.
#[track_caller]
fn assert_changed_meanwhile(page: &Page, what: &str, secret: Option<&str>) {
    page.assert_status(409).assert_contains(&format!(
        "Someone else changed {what} since you opened it. Nothing was saved: review their \
         change and save again."
    ));
    if let Some(secret) = secret {
        page.assert_lacks(secret);
    }
}

/// How many audit entries of `action` the tenant has.
async fn audited(app: &TestApp, tenant: &Tenant, action: &str) -> usize {
    app.audit_actions(tenant)
        .await
        .iter()
        .filter(|(logged, _, _)| logged == action)
        .count()
}

async fn graph_credential_edits_and_secret_replacements_never_overwrite_each_other(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.microsoft
        .add_directory(CONTOSO, &["contoso.onmicrosoft.com"]);
    let (tenant, ana, ben) = two_admins(&app).await;
    let app_id = APP_ID.to_string();
    let directory = CONTOSO.to_string();
    let fields = |name: &'static str| {
        vec![
            ("name", name),
            ("client_id", app_id.as_str()),
            ("directory", directory.as_str()),
            ("cloud", "global"),
        ]
    };
    let (first_expiry, second_expiry) = (in_days(400), in_days(600));
    let mut new = fields("Support mail");
    new.extend([
        ("client_secret", BEN_SECRET),
        ("secret_expires_on", first_expiry.as_str()),
    ]);
    let created = ben
        .submit("/t/acme/external-apis/new", "/t/acme/external-apis", &new)
        .await;
    let credential = created.location.clone().unwrap();

    // Both open the page; Ben renames first, then Ana saves what she typed.
    let ana_page = ana.get(&credential).await;
    let ben_page = ben.get(&credential).await;
    save_from(&ben, &ben_page, &credential, &fields("Support mail (Ben)"))
        .await
        .assert_redirect(&format!("{credential}?done=saved"));
    let refused = save_from(&ana, &ana_page, &credential, &fields("Support mail (Ana)")).await;
    assert_changed_meanwhile(&refused, "this credential", None);
    // Ben's name is what is saved; Ana's stays in her form.
    refused
        .assert_contains("<h1>Support mail (Ben)</h1>")
        .assert_contains("value=\"Support mail (Ana)\"");
    assert_eq!(audited(&app, &tenant, "graph_credential.changed").await, 1);
    ana.get(&credential)
        .await
        .assert_contains("<h1>Support mail (Ben)</h1>");

    // Saving again from the refusal applies her change on top of his.
    save_from(&ana, &refused, &credential, &fields("Support mail (Ana)"))
        .await
        .assert_redirect(&format!("{credential}?done=saved"));
    ana.get(&credential)
        .await
        .assert_contains("<h1>Support mail (Ana)</h1>");
    assert_eq!(audited(&app, &tenant, "graph_credential.changed").await, 2);

    // Replacing the secret from a page opened before someone else's change: refused, the
    // typed secret never shown, the stored secret and its expiry untouched.
    let ana_page = ana.get(&credential).await;
    save_from(
        &ben,
        &ben.get(&credential).await,
        &credential,
        &fields("Support mail"),
    )
    .await
    .assert_redirect(&format!("{credential}?done=saved"));
    let secret_path = format!("{credential}/secret");
    let secret_fields = [
        ("client_secret", ANA_SECRET),
        ("secret_expires_on", second_expiry.as_str()),
    ];
    let refused = save_from(&ana, &ana_page, &secret_path, &secret_fields).await;
    assert_changed_meanwhile(&refused, "this credential", Some(ANA_SECRET));
    refused.assert_contains("Paste the client secret again");
    refused.assert_contains(&format!("value=\"{second_expiry}\""));
    let page = ana.get(&credential).await;
    page.assert_contains(&first_expiry)
        .assert_lacks(&second_expiry);
    assert_eq!(
        audited(&app, &tenant, "graph_credential.secret_replaced").await,
        0
    );
    save_from(&ana, &refused, &secret_path, &secret_fields)
        .await
        .assert_redirect(&format!("{credential}?done=secret"));
    ana.get(&credential).await.assert_contains(&second_expiry);
}

async fn segment_and_mailbox_edits_never_overwrite_each_other(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, ana, ben) = two_admins(&app).await;
    let mut segments = Vec::new();
    for name in ["Sales", "Support"] {
        let made = ben
            .submit(
                "/t/acme/segments",
                "/t/acme/segments",
                &[("name", name), ("description", "")],
            )
            .await;
        segments.push(made.location.clone().unwrap());
    }
    let sales = &segments[0];

    // The segment: Ben renames it, then Ana's older page tries to.
    let ana_page = ana.get(sales).await;
    ben.submit(sales, sales, &[("name", "Sales EMEA"), ("description", "")])
        .await
        .assert_redirect(&format!("{sales}?done=saved"));
    let typed = [("name", "Sales Europe"), ("description", "Ana's words")];
    let refused = save_from(&ana, &ana_page, sales, &typed).await;
    assert_changed_meanwhile(&refused, "this segment", None);
    refused
        .assert_contains("<h1>Sales EMEA</h1>")
        .assert_contains("value=\"Sales Europe\"");
    assert_eq!(audited(&app, &tenant, "segment.changed").await, 1);
    save_from(&ana, &refused, sales, &typed)
        .await
        .assert_redirect(&format!("{sales}?done=saved"));
    ana.get(sales)
        .await
        .assert_contains("<h1>Sales Europe</h1>");

    // A mailbox with a password.
    let imap = |name: &'static str, password: &'static str| {
        vec![
            ("name", name),
            ("email", "support@contoso.com"),
            ("protocol", "imap"),
            ("direction", "incoming"),
            ("host", "imap.contoso.com"),
            ("port", ""),
            ("security", "tls"),
            ("username", "support@contoso.com"),
            ("authentication", "password"),
            ("password", password),
            ("enabled", "on"),
        ]
    };
    let made = ben
        .submit(
            &format!("{sales}/mailboxes/new"),
            &format!("{sales}/mailboxes"),
            &imap("Support IMAP", "the-first-password"),
        )
        .await;
    let mailbox = made.location.clone().unwrap();
    let mailbox_id = mailbox.rsplit('/').next().unwrap().to_owned();
    let stored_password = || async {
        let stored = mailboxes::get(&app.state.db, &tenant.id, &mailbox_id)
            .await
            .unwrap()
            .unwrap();
        let sealed = stored.server.unwrap().password_sealed.unwrap();
        let password = sealed
            .open(&app.state.config.secret_key, &tenant.id, &mailbox_id)
            .unwrap();
        (
            stored.name,
            stored.segment_id,
            password.expose_secret().to_owned(),
        )
    };

    // Ben renames it; Ana, on an older page, renames it and types a new password.
    let ana_page = ana.get(&mailbox).await;
    ben.submit(&mailbox, &mailbox, &imap("Support IMAP (Ben)", ""))
        .await
        .assert_redirect(&format!("{mailbox}?done=saved"));
    let refused = save_from(
        &ana,
        &ana_page,
        &mailbox,
        &imap("Support IMAP (Ana)", ANA_PASSWORD),
    )
    .await;
    assert_changed_meanwhile(&refused, "this mailbox", Some(ANA_PASSWORD));
    refused
        .assert_contains("<h1>Support IMAP (Ben)</h1>")
        .assert_contains("value=\"Support IMAP (Ana)\"");
    let sales_id = sales.rsplit('/').next().unwrap().to_owned();
    assert_eq!(
        stored_password().await,
        (
            "Support IMAP (Ben)".to_owned(),
            sales_id.clone(),
            "the-first-password".to_owned()
        )
    );
    assert_eq!(audited(&app, &tenant, "mailbox.changed").await, 1);

    // Moving from a page opened before a change is refused too.
    let support_id = segments[1].rsplit('/').next().unwrap().to_owned();
    let refused = save_from(
        &ana,
        &ana_page,
        &format!("{mailbox}/move"),
        &[("segment_id", &support_id)],
    )
    .await;
    assert_changed_meanwhile(&refused, "this mailbox", None);
    assert_eq!(stored_password().await.1, sales_id);
    assert_eq!(audited(&app, &tenant, "mailbox.moved").await, 0);

    // From the fresh page both go through.
    let again = ana.get(&mailbox).await;
    save_from(
        &ana,
        &again,
        &mailbox,
        &imap("Support IMAP (Ana)", ANA_PASSWORD),
    )
    .await
    .assert_redirect(&format!("{mailbox}?done=saved"));
    let again = ana.get(&mailbox).await;
    save_from(
        &ana,
        &again,
        &format!("{mailbox}/move"),
        &[("segment_id", &support_id)],
    )
    .await
    .assert_redirect(&format!("{mailbox}?done=moved"));
    assert_eq!(
        stored_password().await,
        (
            "Support IMAP (Ana)".to_owned(),
            support_id,
            ANA_PASSWORD.to_owned()
        )
    );
}

async fn oauth_connection_edits_never_overwrite_each_other(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, ana, ben) = two_admins(&app).await;
    let client_id = APP_ID.to_string();
    let fields = |name: &'static str| {
        vec![
            ("name", name),
            ("client_id", client_id.as_str()),
            ("directory", "organizations"),
            ("cloud", "global"),
            ("purpose", "imap"),
        ]
    };
    let made = ben
        .submit(
            "/t/acme/oauth-connections/new",
            "/t/acme/oauth-connections",
            &fields("Support IMAP"),
        )
        .await;
    let connection = made.location.clone().unwrap();

    let ana_page = ana.get(&connection).await;
    ben.submit(&connection, &connection, &fields("Support IMAP (Ben)"))
        .await
        .assert_redirect(&connection);
    let refused = save_from(&ana, &ana_page, &connection, &fields("Support IMAP (Ana)")).await;
    assert_changed_meanwhile(&refused, "this connection", None);
    refused
        .assert_contains("<h1>Support IMAP (Ben)</h1>")
        .assert_contains("value=\"Support IMAP (Ana)\"");
    assert_eq!(audited(&app, &tenant, "oauth_connection.changed").await, 1);

    // Her client secret from that old page is refused as well, and shown nowhere.
    let secret_path = format!("{connection}/secret");
    let expires_on = in_days(200);
    let secret_fields = [
        ("client_secret", ANA_SECRET),
        ("secret_expires_on", expires_on.as_str()),
    ];
    let refused = save_from(&ana, &ana_page, &secret_path, &secret_fields).await;
    assert_changed_meanwhile(&refused, "this connection", Some(ANA_SECRET));
    refused.assert_contains("Paste the client secret again");
    refused.assert_contains("None (public client)");
    assert_eq!(
        audited(&app, &tenant, "oauth_connection.secret_replaced").await,
        0
    );
    save_from(&ana, &refused, &secret_path, &secret_fields)
        .await
        .assert_redirect(&connection);
    ana.get(&connection)
        .await
        .assert_lacks("None (public client)")
        .assert_lacks(ANA_SECRET);
}

async fn sign_in_with_microsoft_settings_never_overwrite_each_other(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, ana, ben) = two_admins(&app).await;
    let settings = "/t/acme/settings/microsoft-sign-in";
    let app_id = APP_ID.to_string();
    let other_app_id = OTHER_APP_ID.to_string();

    // Both open the page before anything is configured; Ben saves first, with a secret.
    let ana_page = ana.get(settings).await;
    let ben_page = ben.get(settings).await;
    let expires_on = in_days(200);
    save_from(
        &ben,
        &ben_page,
        settings,
        &[
            ("client_id", &app_id),
            ("cloud", "global"),
            ("enabled", "on"),
            ("client_secret", BEN_SECRET),
            ("secret_expires_on", &expires_on),
        ],
    )
    .await
    .assert_redirect(&format!("{settings}?saved=1"));
    let ana_fields = [
        ("client_id", other_app_id.as_str()),
        ("cloud", "global"),
        ("client_secret", ANA_SECRET),
        ("secret_expires_on", expires_on.as_str()),
    ];
    let refused = save_from(&ana, &ana_page, settings, &ana_fields).await;
    assert_changed_meanwhile(&refused, "these settings", Some(ANA_SECRET));
    refused.assert_contains("Paste the client secret again");
    // Her values stay in the form; what Ben saved is listed, his secret only as "set".
    refused
        .assert_contains(&format!("value=\"{other_app_id}\""))
        .assert_contains(&format!(
            "Saved now: Application (client) ID {app_id}; Directory (tenant) ID none (any \
             Microsoft account); Global; enabled; create agents on first \
             sign-in off; client secret set."
        ))
        .assert_lacks(BEN_SECRET);
    assert_eq!(
        audited(&app, &tenant, "settings.microsoft_sign_in_changed").await,
        1
    );
    ana.get(settings)
        .await
        .assert_contains(&format!("value=\"{app_id}\""));

    save_from(&ana, &refused, settings, &ana_fields)
        .await
        .assert_redirect(&format!("{settings}?saved=1"));
    ana.get(settings)
        .await
        .assert_contains(&format!("value=\"{other_app_id}\""));
    assert_eq!(
        audited(&app, &tenant, "settings.microsoft_sign_in_changed").await,
        2
    );
}

async fn user_changes_never_overwrite_each_other(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, ana, ben) = two_admins(&app).await;
    app.create_user(&tenant, "carol@acme.test", Role::Agent)
        .await;
    let carol = format!(
        "/t/acme/users/{}",
        app.user_id(&tenant, "carol@acme.test").await
    );

    // Ben makes Carol an admin; Ana, on an older page, disables her.
    let ana_page = ana.get(&carol).await;
    ben.submit(&carol, &format!("{carol}/role"), &[("role", "admin")])
        .await
        .assert_redirect(&format!("{carol}?done=role"));
    let refused = save_from(
        &ana,
        &ana_page,
        &format!("{carol}/status"),
        &[("status", "disabled")],
    )
    .await;
    assert_changed_meanwhile(&refused, "this user", None);
    refused
        .assert_contains("<dt>Role</dt><dd>Admin</dd>")
        .assert_contains("<span class=\"badge ok\">Active</span>");

    // Her role choice from the old page is refused but stays chosen.
    let refused = save_from(
        &ana,
        &ana_page,
        &format!("{carol}/role"),
        &[("role", "agent")],
    )
    .await;
    assert_changed_meanwhile(&refused, "this user", None);
    refused.assert_contains("<option value=\"agent\" selected>");

    // So is a password reset, which must not leave Carol with a password nobody gave her.
    let password_path = format!("{carol}/password");
    let refused = save_from(
        &ana,
        &ana_page,
        &password_path,
        &[("password", ANA_PASSWORD)],
    )
    .await;
    assert_changed_meanwhile(&refused, "this user", Some(ANA_PASSWORD));
    let carol_browser = app.browser();
    carol_browser
        .sign_in("acme", "carol@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
    for action in ["user.disabled", "user.password_reset"] {
        assert_eq!(audited(&app, &tenant, action).await, 0, "{action}");
    }
    assert_eq!(audited(&app, &tenant, "user.role_changed").await, 1);

    // From the page the refusal showed, her reset goes through.
    save_from(
        &ana,
        &refused,
        &password_path,
        &[("password", ANA_PASSWORD)],
    )
    .await
    .assert_redirect(&format!("{carol}?done=password"));
    app.browser()
        .sign_in("acme", "carol@acme.test", ANA_PASSWORD)
        .await
        .assert_redirect("/t/acme/");

    // A user's own password change moves their version on too: an admin's reset from a
    // page opened before it is refused.
    let ana_page = ana.get(&carol).await;
    let carol_browser = app.browser();
    carol_browser
        .sign_in("acme", "carol@acme.test", ANA_PASSWORD)
        .await
        .assert_redirect("/t/acme/");
    carol_browser
        .submit(
            "/t/acme/profile",
            "/t/acme/profile/password",
            &[
                ("current_password", ANA_PASSWORD),
                ("new_password", "carol's own new password"),
            ],
        )
        .await
        .assert_redirect("/t/acme/profile?saved=1");
    let refused = save_from(
        &ana,
        &ana_page,
        &password_path,
        &[("password", "an admin's reset password")],
    )
    .await;
    assert_changed_meanwhile(&refused, "this user", None);
    app.browser()
        .sign_in("acme", "carol@acme.test", "carol's own new password")
        .await
        .assert_redirect("/t/acme/");
}

/// Real races: many saves posted at once from one page's version; the database lets one
/// through and refuses the rest, on both backends.
async fn of_many_saves_from_one_page_exactly_one_applies(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, ana, _) = two_admins(&app).await;
    let made = ana
        .submit(
            "/t/acme/segments",
            "/t/acme/segments",
            &[("name", "Sales"), ("description", "")],
        )
        .await;
    let sales = made.location.clone().unwrap();
    let opened = ana.get(&sales).await;
    let names: Vec<String> = (0..8).map(|n| format!("Sales {n}")).collect();
    let forms: Vec<[(&str, &str); 2]> = names
        .iter()
        .map(|name| [("name", name.as_str()), ("description", "")])
        .collect();
    let saves = forms
        .iter()
        .map(|fields| save_from(&ana, &opened, &sales, fields));
    let answers = futures_util::future::join_all(saves).await;
    let statuses: Vec<u16> = answers.iter().map(|page| page.status.as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|status| **status == 303).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|status| **status == 409).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(audited(&app, &tenant, "segment.changed").await, 1);
}
