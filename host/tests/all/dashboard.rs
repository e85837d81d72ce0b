//! The built-in dashboard's files and the pipeline figures its pipelines
//! view reads (the page itself is driven in Chromium by scripts/test-dashboard).

use adpipe::auth::Role;
use axum::http::StatusCode;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_files_are_public_and_locked_to_this_origin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = meta_app(&dir).await;
    let page = send(&app, get("/", None)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers["content-type"]
        .to_str()
        .is_ok_and(|t| t.starts_with("text/html")));
    let csp = page.headers["content-security-policy"]
        .to_str()
        .expect("csp");
    assert!(
        csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let index = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/dashboard/index.html"),
    )
    .expect("index");
    assert!(
        page.text.as_bytes() == index,
        "/ is not assets/dashboard/index.html"
    );
    for (file, kind) in [
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
        ("uplot.min.js", "text/javascript"),
        ("uplot.min.css", "text/css"),
    ] {
        let asset = send(&app, get(&format!("/assets/{file}"), None)).await;
        assert_eq!(asset.status, StatusCode::OK, "{file}");
        assert!(
            asset.headers["content-type"]
                .to_str()
                .is_ok_and(|t| t.starts_with(kind)),
            "{file}: {:?}",
            asset.headers["content-type"]
        );
        assert_eq!(asset.headers["x-content-type-options"], "nosniff");
    }
    let missing = send(&app, get("/assets/../metadata.db", None)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let missing = send(&app, get("/assets/secrets.js", None)).await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::NOT_FOUND, "unknown_asset")
    );

    // The pipelines view's figures: rows accepted today, when, the adapter.
    let admin = token("demo", &[Role::Admin], 60);
    let body = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../plugins/adapters/meta/tests/fixtures/insights_campaign.json"),
    )
    .expect("fixture");
    let pushed = send(&app, post("/v1/pipelines/meta/reports", Some(&admin), body)).await;
    assert_eq!(pushed.status, StatusCode::ACCEPTED, "{}", pushed.text);
    let accepted = pushed.json["accepted"].as_u64().expect("accepted");
    let listed = send(&app, get("/v1/pipelines", Some(&admin))).await;
    let meta = &listed.json["pipelines"][0];
    assert_eq!(
        meta["rows_accepted_today"].as_u64(),
        Some(accepted),
        "{}",
        listed.text
    );
    assert!(
        meta["last_accepted_at_ms"].as_i64().is_some(),
        "{}",
        listed.text
    );
    assert_eq!(meta["adapter_state"], "active");
    assert!(meta["adapter_version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    assert!(listed.json["bus_lag_records"].is_u64(), "{}", listed.text);
}
