//! Hostile input must never stop the pipeline (issue 10): the JWT secret
//! file and token lifetimes, HEAD and unknown methods through the guard,
//! unsigned webhook floods, the webhook body limit, the global concurrency
//! limit and the header-read timeout of the plain and the TLS listener.

use adpipe::api::{Access, ROUTES};
use adpipe::app::App;
use adpipe::auth::Role;
use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::common::*;

async fn app_with(tune: impl FnOnce(&mut adpipe::config::Config)) -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(
        &dir,
        vec![plugin("meta")],
        vec![pipeline("meta", "demo", "meta")],
    );
    config.server.watch_plugins = false;
    tune(&mut config);
    let app = App::start(config).await.expect("start");
    (app, dir)
}

fn request(method: &str, uri: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::empty()).expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_unknown_methods_go_through_the_guard() {
    let (app, _dir) = app_with(|c| {
        c.api.rate_limits.enabled = true;
    })
    .await;
    let viewer = token("demo", &[Role::Viewer], 60);
    let mut checked = 0;
    for route in ROUTES.iter().filter(|r| r.method == "GET") {
        let mut uri = route.path.replace("{pipeline}", "meta");
        if uri == "/v1/insights" {
            uri.push_str("?from=2026-11-01&to=2026-11-02");
        }
        match route.access {
            Access::Public | Access::Webhook => continue,
            Access::Authenticated | Access::Role(_) => {}
        }
        let answer = send(&app, request("HEAD", &uri, None)).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "HEAD {uri} without a token"
        );
        assert!(answer.text.is_empty(), "HEAD {uri} has no body");
        let answer = send(&app, request("HEAD", &uri, Some(&viewer))).await;
        let expected = match route.access {
            Access::Role(required) if !Role::Viewer.grants(required) => StatusCode::FORBIDDEN,
            _ => StatusCode::OK,
        };
        assert_eq!(answer.status, expected, "HEAD {uri} as viewer");
        // The same budget as GET.
        assert!(
            answer.headers.contains_key("ratelimit-remaining") || expected != StatusCode::OK,
            "HEAD {uri} draws from the rate limit: {:?}",
            answer.headers
        );
        checked += 1;
    }
    assert!(checked >= 8, "{checked}");

    // Unknown methods: 405 with the JSON error and Allow.
    for (method, uri, allowed) in [
        ("PUT", "/v1/insights", "GET"),
        ("DELETE", "/openapi.json", "GET"),
        ("PATCH", "/v1/webhooks/meta", "POST"),
        ("POST", "/healthz", "GET"),
        ("PUT", "/v1/keys", "POST"),
    ] {
        let answer = send(&app, request(method, uri, Some(&viewer))).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            "{method} {uri}: {}",
            answer.text
        );
        assert!(
            answer.json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(method)),
            "{}",
            answer.text
        );
        let allow = answer
            .headers
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(allow.contains(allowed), "{method} {uri}: Allow `{allow}`");
    }
    // Unknown paths stay 404.
    let answer = send(&app, request("PUT", "/v1/nothing", None)).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
}
