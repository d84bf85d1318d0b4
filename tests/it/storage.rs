//! Nothing is stored without a reason: typed emails are cut before the audit log keeps them,
//! and the audit log itself keeps entries only PORTICO_AUDIT_RETENTION_DAYS. (Anonymous page
//! views: auth.rs; throttled bursts: throttling.rs.)

use portico::metrics::Job;
use portico::services::jobs;
use time::Duration;

use crate::on_both_backends;
use crate::support::{Backend, TestDatabase, spawn_app, spawn_app_with};

on_both_backends!(
    typed_emails_are_cut_to_254_characters_before_they_are_stored,
    the_daily_clean_up_deletes_audit_entries_past_their_retention,
);

async fn typed_emails_are_cut_to_254_characters_before_they_are_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("acme", "Acme Corp").await;
    let typed = format!("{}@acme.test", "é".repeat(5_000));
    let kept: String = typed.chars().take(254).collect();
    for attempt in 0..5 {
        app.browser()
            .sign_in("acme", &typed, "some password")
            .await
            .assert_status(400)
            .assert_contains("Email or password is incorrect.");
        let audit = app.audit_actions(&tenant).await;
        assert_eq!(audit.len(), attempt + 1);
        assert!(audit.iter().all(|(_, target, _)| *target == kept));
    }
    // The throttle counts the cut email as the account it is.
    app.browser()
        .sign_in("acme", &typed, "some password")
        .await
        .assert_status(429);
    let rows = app.all_rows().await;
    let longest = rows
        .iter()
        .filter(|(table, _)| table.ends_with("audit_events"))
        .flat_map(|(_, row)| row.iter().map(|(_, value)| value.chars().count()))
        .max()
        .unwrap();
    assert!(longest <= 254, "an audit value of {longest} characters");
}

async fn the_daily_clean_up_deletes_audit_entries_past_their_retention(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let app = spawn_app_with(database, |config| config.audit_retention_days = 30).await;
    let (tenant, _admin) = app.tenant_with_admin("acme").await;
    let entries = app.audit_actions(&tenant).await.len();
    assert!(entries > 0);

    assert!(
        jobs::run_if_due(&app.state, Job::AuditCleanup)
            .await
            .unwrap()
    );
    // Once a day, across instances: the next tick finds it done.
    assert!(
        !jobs::run_if_due(&app.state, Job::AuditCleanup)
            .await
            .unwrap()
    );
    assert_eq!(app.audit_actions(&tenant).await.len(), entries);

    app.state.clock.advance(Duration::days(29));
    assert!(
        jobs::run_if_due(&app.state, Job::AuditCleanup)
            .await
            .unwrap()
    );
    assert_eq!(app.audit_actions(&tenant).await.len(), entries);

    app.state.clock.advance(Duration::days(2));
    assert!(
        jobs::run_if_due(&app.state, Job::AuditCleanup)
            .await
            .unwrap()
    );
    assert!(app.audit_actions(&tenant).await.is_empty());
}
