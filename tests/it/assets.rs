//! The stylesheet, script and icons: every file in static/ is served, and every one a page
//! links is there.

use std::collections::BTreeSet;

use crate::support::{Backend, spawn_app};

#[tokio::test]
async fn every_static_file_and_every_linked_asset_is_served() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_, admin) = app.tenant_with_admin("alpha").await;

    let mut paths = BTreeSet::new();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/static")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        paths.insert(format!("/static/{name}"));
    }
    let on_disk = paths.len();
    for page in [
        "/t/alpha/",
        "/t/alpha/settings/microsoft-sign-in",
        "/t/alpha/oauth-connections/new",
    ] {
        let body = admin.get(page).await.assert_status(200).body.clone();
        for link in body.split("\"/static/").skip(1) {
            let file = link.split(['"', '?']).next().unwrap();
            paths.insert(format!("/static/{file}"));
        }
    }
    assert_eq!(
        paths.len(),
        on_disk,
        "pages link files not in static/: {paths:?}"
    );

    for path in &paths {
        let asset = admin.get(path).await;
        asset.assert_status(200);
        let content_type = asset.headers["content-type"].to_str().unwrap();
        assert!(
            !content_type.starts_with("text/html"),
            "{path} served as {content_type}"
        );
    }
}
