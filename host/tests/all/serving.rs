//! The serving API's protections and conveniences through the real router:
//! every route × role, public-key JWTs, API keys, the audit log, rate
//! limits, the answer cache with ETags, pagination, tenancy, metrics,
//! request ids and headers, and HTTPS on a real process.

use std::collections::BTreeSet;

use adpipe::api::{Access, ROUTES};
use adpipe::app::App;
use adpipe::auth::{now_unix, Claims, Role};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::api::{meta_row, page, push};
use crate::common::*;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

/// An app with Meta pipelines for tenants `demo` and `other`; `tune` edits the config.
async fn start_with(tune: impl FnOnce(&mut adpipe::config::Config)) -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(
        &dir,
        vec![plugin("meta")],
        vec![
            pipeline("meta", "demo", "meta"),
            pipeline("other-meta", "other", "meta"),
        ],
    );
    config.server.watch_plugins = false;
    tune(&mut config);
    let app = App::start(config).await.expect("start");
    (app, dir)
}

fn concrete(path: &str) -> String {
    path.replace("{pipeline}", "meta")
        .replace("{name}", "meta")
        .replace("{id}", "no-such-id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_times_every_role() {
    let (app, _dir) = start_with(|_| {}).await;
    let mut checked = 0;
    for route in ROUTES.iter() {
        let uri = concrete(route.path);
        let mut callers: Vec<(Option<String>, Option<Role>)> = vec![(None, None)];
        callers.extend(Role::ALL.map(|r| (Some(token("demo", &[r], 60)), Some(r))));
        for (token, role) in callers {
            let answer = send(&app, request(route.method, &uri, token.as_deref())).await;
            let auth_refusal = matches!(answer.code(), "missing_token" | "forbidden");
            let expected_refusal = match (route.access, role) {
                (Access::Public | Access::Webhook, _) => None,
                (_, None) => Some(StatusCode::UNAUTHORIZED),
                (Access::Authenticated, Some(_)) => None,
                (Access::Role(required), Some(held)) => {
                    (!held.grants(required)).then_some(StatusCode::FORBIDDEN)
                }
            };
            match expected_refusal {
                Some(status) => assert_eq!(
                    answer.status, status,
                    "{} {} as {role:?}: {}",
                    route.method, route.path, answer.text
                ),
                None => {
                    assert!(
                        !auth_refusal && answer.status != StatusCode::METHOD_NOT_ALLOWED,
                        "{} {} as {role:?} was refused: {} {}",
                        route.method,
                        route.path,
                        answer.status,
                        answer.text
                    );
                    assert!(
                        answer.status.as_u16() < 500 || route.path.ends_with("/pull"),
                        "{} {} as {role:?}: {} {}",
                        route.method,
                        route.path,
                        answer.status,
                        answer.text
                    );
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ROUTES.len() * (Role::ALL.len() + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_mounted_routes() {
    let (app, _dir) = start_with(|_| {}).await;
    let admin = token("demo", &[Role::Admin], 60);
    // Public (docs/contracts.md §4: it holds no data), so tools that take a spec URL can read it.
    let answer = send(&app, get("/openapi.json", None)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in answer.json["paths"].as_object().expect("paths") {
        for method in ["get", "post", "delete", "put", "patch"] {
            if let Some(op) = item.get(method) {
                documented.insert(format!("{} {path}", method.to_uppercase()));
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
            }
        }
    }
    let declared: BTreeSet<String> = ROUTES
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(documented, declared);
    // Every declared route is really mounted (not the fallback's 404).
    for route in ROUTES.iter() {
        let answer = send(
            &app,
            request(route.method, &concrete(route.path), Some(&admin)),
        )
        .await;
        assert_ne!(
            answer.code(),
            "not_found",
            "{} {}",
            route.method,
            route.path
        );
    }
    assert!(answer.json["components"]["schemas"]["InsightsAnswer"].is_object());
    assert!(answer.json["components"]["securitySchemes"]["bearer"].is_object());
}

fn claims(tenant: &str, exp: u64) -> Claims {
    Claims {
        sub: "idp-user".into(),
        tenant: tenant.into(),
        roles: vec![Role::Viewer],
        exp,
        iat: None,
        nbf: None,
        iss: Some("https://idp.example".into()),
        aud: Some("adpipe".into()),
    }
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Claims) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    encode(&header, claims, key).expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_key_tokens_with_kid_nbf_aud_and_no_algorithm_confusion() {
    let (app, _dir) = start_with(|c| {
        c.auth.jwt_secret = None;
        c.auth.public_key_file = Some(fixture("rsa-public.pem"));
        c.auth.public_key_id = Some("pem-rsa".into());
        c.auth.jwks_file = Some(fixture("jwks.json"));
        c.auth.issuer = Some("https://idp.example".into());
        c.auth.audience = Some("adpipe".into());
    })
    .await;
    let rsa =
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa-private.pem")).expect("test value"))
            .expect("rsa key");
    let ec =
        EncodingKey::from_ec_pem(&std::fs::read(fixture("ec-private.pem")).expect("test value"))
            .expect("ec key");
    let now = now_unix();
    let ok = claims("demo", now + 60);
    let whoami = |t: String| {
        let app = app.clone();
        async move { send(&app, get("/v1/whoami", Some(&t))).await }
    };
    // RS256 by the PEM key, by the JWKS key (kid rsa-1); ES256 by the JWKS (kid ec-1).
    for token in [
        sign(Algorithm::RS256, Some("pem-rsa"), &rsa, &ok),
        sign(Algorithm::RS256, Some("rsa-1"), &rsa, &ok),
        sign(Algorithm::ES256, Some("ec-1"), &ec, &ok),
    ] {
        let answer = whoami(token).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(answer.json["tenant"], "demo");
        assert_eq!(answer.json["credential"], "jwt");
    }
    let refused = |answer: &Answer, needle: &str| {
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
        assert!(
            answer.json["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(needle),
            "`{needle}` not in {}",
            answer.text
        );
    };
    refused(
        &whoami(sign(Algorithm::ES256, Some("nope"), &ec, &ok)).await,
        "unknown key id",
    );
    // ES256 signature presented under the RSA key's id.
    refused(
        &whoami(sign(Algorithm::ES256, Some("rsa-1"), &ec, &ok)).await,
        "not accepted",
    );
    // Algorithm confusion: HS256 keyed with the public key's bytes.
    let public_pem = std::fs::read(fixture("rsa-public.pem")).expect("test value");
    refused(
        &whoami(sign(
            Algorithm::HS256,
            Some("rsa-1"),
            &EncodingKey::from_secret(&public_pem),
            &ok,
        ))
        .await,
        "not accepted",
    );
    // alg: none.
    {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#),
            b64(&serde_json::to_string(&ok).expect("test value"))
        );
        refused(&whoami(token).await, "malformed");
    }
    let mut early = ok.clone();
    early.nbf = Some(now + 3600);
    refused(
        &whoami(sign(Algorithm::RS256, Some("rsa-1"), &rsa, &early)).await,
        "not valid yet",
    );
    let mut wrong_aud = ok.clone();
    wrong_aud.aud = Some("someone-else".into());
    refused(
        &whoami(sign(Algorithm::RS256, Some("rsa-1"), &rsa, &wrong_aud)).await,
        "audience",
    );
    let mut wrong_iss = ok.clone();
    wrong_iss.iss = Some("https://evil.example".into());
    refused(
        &whoami(sign(Algorithm::RS256, Some("rsa-1"), &rsa, &wrong_iss)).await,
        "issuer",
    );
    let expired = claims("demo", now - 5);
    let answer = whoami(sign(Algorithm::RS256, Some("rsa-1"), &rsa, &expired)).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::UNAUTHORIZED, "token_expired")
    );
    // A token minted with the old dev secret no longer works in this mode.
    refused(
        &whoami(token("demo", &[Role::Admin], 60)).await,
        "not accepted",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_scoped_revocable_and_audited() {
    let (app, _dir) = start_with(|_| {}).await;
    let admin = token("demo", &[Role::Admin], 60);
    let other_admin = token("other", &[Role::Admin], 60);
    let made = send(
        &app,
        post(
            "/v1/keys",
            Some(&admin),
            json!({"name": "dashboard", "roles": ["viewer"]}).to_string(),
        ),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let key = made.json["key"].as_str().expect("key").to_owned();
    let id = made.json["api_key"]["id"].as_str().expect("id").to_owned();
    assert!(key.starts_with(&format!("adp_{id}_")));
    assert!(!made.json["api_key"]
        .as_object()
        .expect("test value")
        .contains_key("secret_sha256"));

    // Bearer and X-API-Key both work; the key acts for its tenant and roles.
    let answer = send(&app, get("/v1/whoami", Some(&key))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(
        (
            answer.json["tenant"].as_str(),
            answer.json["credential"].as_str()
        ),
        (Some("demo"), Some("api_key"))
    );
    let by_header = Request::get("/v1/campaigns")
        .header("x-api-key", &key)
        .body(Body::empty())
        .expect("test value");
    assert_eq!(send(&app, by_header).await.status, StatusCode::OK);
    assert_eq!(
        send(&app, get("/v1/plugins", Some(&key))).await.status,
        StatusCode::FORBIDDEN
    );
    let listed = send(&app, get("/v1/keys", Some(&admin))).await;
    assert_eq!(listed.json["api_keys"][0]["id"], id.as_str());
    assert!(
        !listed.text.contains(&key[16..]),
        "the secret is never listed"
    );
    // Another tenant neither sees nor revokes it.
    let theirs = send(&app, get("/v1/keys", Some(&other_admin))).await;
    assert_eq!(theirs.json["api_keys"], json!([]));
    let answer = send(
        &app,
        request("DELETE", &format!("/v1/keys/{id}"), Some(&other_admin)),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    // A tampered secret is refused.
    let mut forged = key.clone();
    forged.pop();
    forged.push(if key.ends_with('A') { 'B' } else { 'A' });
    let answer = send(&app, get("/v1/whoami", Some(&forged))).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::UNAUTHORIZED, "invalid_api_key")
    );
    // Revoked: refused at once.
    let answer = send(
        &app,
        request("DELETE", &format!("/v1/keys/{id}"), Some(&admin)),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let answer = send(&app, get("/v1/whoami", Some(&key))).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.text.contains("revoked"), "{}", answer.text);

    // The audit log holds both actions, for this tenant only.
    let audit = send(&app, get("/v1/audit", Some(&admin))).await;
    let actions: Vec<(String, i64)> = audit.json["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            assert_eq!(e["actor"], "test");
            (
                e["action"].as_str().expect("test value").to_owned(),
                e["status"].as_i64().expect("test value"),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("DELETE /v1/keys/{id}".to_owned(), 200),
            ("POST /v1/keys".to_owned(), 201)
        ]
    );
    let theirs = send(&app, get("/v1/audit", Some(&other_admin))).await;
    // Only their own refused revoke attempt.
    assert_eq!(theirs.json["entries"].as_array().map(Vec::len), Some(1));
    assert_eq!(theirs.json["entries"][0]["status"], 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_headers_per_class() {
    let (app, _dir) = start_with(|c| {
        let rate = |per_second, burst| adpipe::config::Rate { per_second, burst };
        c.api.rate_limits.enabled = true;
        c.api.rate_limits.read.caller = rate(1, 3);
        c.api.rate_limits.read.tenant = rate(1, 100);
    })
    .await;
    let viewer = token("demo", &[Role::Viewer], 60);
    for remaining in ["2", "1", "0"] {
        let answer = send(&app, get("/v1/campaigns", Some(&viewer))).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.headers["ratelimit-limit"], "3");
        assert_eq!(answer.headers["ratelimit-remaining"], remaining);
        assert_eq!(answer.headers["ratelimit-policy"], "3;w=3");
    }
    let answer = send(&app, get("/v1/campaigns", Some(&viewer))).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert_eq!(answer.headers["retry-after"], "1");
    assert_eq!(answer.headers["ratelimit-remaining"], "0");
    // Ingestion draws from its own budget.
    let ingest = token("demo", &[Role::Ingest], 60);
    let body = page(vec![meta_row(
        "c1",
        "s1",
        "a1",
        "2026-11-01",
        10,
        1,
        "1.00",
        0,
    )]);
    let answer = send(
        &app,
        post("/v1/pipelines/meta/reports", Some(&ingest), body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    let metrics = send(
        &app,
        get("/metrics", Some(&token("demo", &[Role::Operator], 60))),
    )
    .await;
    assert!(
        metrics
            .text
            .contains("adpipe_rate_limited_requests_total{class=\"read\",scope=\"caller\"} 1"),
        "{}",
        metrics.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_revalidate_with_etags_and_never_hide_new_data() {
    let (app, _dir) = start_with(|_| {}).await;
    let viewer = token("demo", &[Role::Viewer], 60);
    push(
        &app,
        vec![meta_row("c1", "s1", "a1", "2026-11-01", 100, 5, "10.00", 0)],
    )
    .await;
    let uri =
        "/v1/insights?from=2026-11-01&to=2026-11-30&granularity=total&metrics=impressions,spend";
    let first = send(&app, get(uri, Some(&viewer))).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.json["rows"][0]["impressions"], 100);
    let etag = first.headers["etag"]
        .to_str()
        .expect("test value")
        .to_owned();
    let second = send(&app, get(uri, Some(&viewer))).await;
    assert_eq!(
        (
            second.headers["etag"].to_str().expect("test value"),
            &second.text
        ),
        (etag.as_str(), &first.text)
    );
    let revalidate = Request::get(uri)
        .header("authorization", format!("Bearer {viewer}"))
        .header("if-none-match", &etag)
        .body(Body::empty())
        .expect("test value");
    let answer = send(&app, revalidate).await;
    assert_eq!(answer.status, StatusCode::NOT_MODIFIED);
    assert!(answer.text.is_empty());
    // New data for the tenant: the next answer has it, with a new tag.
    push(
        &app,
        vec![meta_row("c1", "s1", "a1", "2026-11-02", 50, 1, "2.50", 0)],
    )
    .await;
    let third = send(&app, get(uri, Some(&viewer))).await;
    assert_eq!(third.json["rows"][0]["impressions"], 150);
    assert_eq!(third.json["rows"][0]["spend"], 12.5);
    assert_ne!(third.headers["etag"].to_str().expect("test value"), etag);
    let metrics = send(
        &app,
        get("/metrics", Some(&token("demo", &[Role::Operator], 60))),
    )
    .await;
    assert!(
        metrics
            .text
            .contains("adpipe_insights_cache_requests_total{result=\"hit\"} 2"),
        "{}",
        metrics.text
    );
    assert!(metrics
        .text
        .contains("adpipe_insights_cache_requests_total{result=\"miss\"} 2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_by_and_cursor_pages_cover_every_row_once() {
    let (app, _dir) = start_with(|_| {}).await;
    let viewer = token("demo", &[Role::Viewer], 60);
    let rows: Vec<Value> = (1..=7)
        .map(|i| {
            meta_row(
                &format!("c{i}"),
                "s",
                &format!("a{i}"),
                "2026-11-03",
                100 * i,
                i,
                &format!("{}.00", (i * 37) % 11 + 1),
                0,
            )
        })
        .collect();
    push(&app, rows).await;
    let base = "/v1/insights?from=2026-11-01&to=2026-11-30&granularity=total&group_by=campaign_id&order_by=-spend,campaign_id";
    let all = send(&app, get(base, Some(&viewer))).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let all_rows = all.json["rows"].as_array().expect("test value").clone();
    assert_eq!(all_rows.len(), 7);
    assert_eq!(all.json["next_cursor"], Value::Null);
    let spends: Vec<f64> = all_rows
        .iter()
        .map(|r| r["spend"].as_f64().expect("test value"))
        .collect();
    assert!(spends.windows(2).all(|w| w[0] >= w[1]), "{spends:?}");
    let mut paged = Vec::new();
    let mut uri = format!("{base}&limit=3");
    loop {
        let answer = send(&app, get(&uri, Some(&viewer))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        paged.extend(
            answer.json["rows"]
                .as_array()
                .expect("test value")
                .iter()
                .cloned(),
        );
        match answer.json["next_cursor"].as_str() {
            Some(c) => uri = format!("{base}&limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(paged, all_rows);
    // A cursor is bound to its query; order_by names fields of the answer.
    let first = send(&app, get(&format!("{base}&limit=3"), Some(&viewer))).await;
    let cursor = first.json["next_cursor"].as_str().expect("test value");
    let answer = send(
        &app,
        get(
            &format!("/v1/insights?from=2026-11-01&to=2026-11-30&cursor={cursor}"),
            Some(&viewer),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.text.contains("`cursor`"), "{}", answer.text);
    let answer = send(
        &app,
        get(
            "/v1/insights?from=2026-11-01&to=2026-11-30&order_by=ad_id",
            Some(&viewer),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.text.contains("`order_by`"), "{}", answer.text);
    let answer = send(
        &app,
        get(
            "/v1/insights?from=2026-11-01&to=2026-11-30&limit=0",
            Some(&viewer),
        ),
    )
    .await;
    assert!(answer.text.contains("`limit`"), "{}", answer.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_reads_across_tenants() {
    let (app, _dir) = start_with(|_| {}).await;
    push(
        &app,
        vec![meta_row("c1", "s1", "a1", "2026-11-01", 100, 5, "10.00", 0)],
    )
    .await;
    // A dead letter of tenant demo.
    let ingest = token("demo", &[Role::Ingest], 60);
    let bad = send(
        &app,
        post("/v1/pipelines/meta/reports", Some(&ingest), "{not json"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let letter = bad.json["error"]["dead_letter_id"]
        .as_str()
        .expect("kept")
        .to_owned();

    let other = token("other", &[Role::Admin], 60);
    let demo = token("demo", &[Role::Admin], 60);
    let q = "/v1/insights?from=2026-11-01&to=2026-11-30&granularity=total";
    for uri in [
        q.to_owned(),
        format!("{q}&campaign_id=c1"),
        format!("{q}&platform=meta&account_id=1234567890&group_by=campaign_id,ad_id"),
    ] {
        let mine = send(&app, get(&uri, Some(&demo))).await;
        assert_eq!(mine.json["rows"].as_array().map(Vec::len), Some(1), "{uri}");
        let theirs = send(&app, get(&uri, Some(&other))).await;
        assert_eq!(theirs.json["rows"], json!([]), "{uri}: {}", theirs.text);
    }
    let theirs = send(&app, get("/v1/campaigns", Some(&other))).await;
    assert_eq!(theirs.json["campaigns"], json!([]));
    let theirs = send(&app, get("/v1/dead-letters", Some(&other))).await;
    assert_eq!(theirs.json["dead_letters"], json!([]));
    let answer = send(
        &app,
        post(
            &format!("/v1/dead-letters/{letter}/retry"),
            Some(&other),
            "",
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    for (method, uri) in [
        ("POST", "/v1/pipelines/meta/reports"),
        ("GET", "/v1/pipelines/meta/pulls"),
        ("POST", "/v1/pipelines/meta/pull"),
    ] {
        let answer = send(&app, request(method, uri, Some(&other))).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{method} {uri}: {}",
            answer.text
        );
    }
    let listed = send(&app, get("/v1/pipelines", Some(&other))).await;
    let names: Vec<&str> = listed.json["pipelines"]
        .as_array()
        .expect("test value")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, vec!["other-meta"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_request_ids_and_security_headers() {
    let (app, _dir) = start_with(|c| {
        c.server.cors_allowed_origins = vec!["https://dash.example".parse().expect("origin")];
    })
    .await;
    push(
        &app,
        vec![
            meta_row("c1", "s1", "a1", "2026-11-01", 100, 5, "10.00", 0),
            meta_row("c1", "s1", "a2", "2026-11-01", 1, 0, "0.10", 0),
        ],
    )
    .await;
    let viewer = token("demo", &[Role::Viewer], 60);
    let answer = send(&app, get("/v1/campaigns", Some(&viewer))).await;
    let id = answer.headers["x-request-id"].to_str().expect("test value");
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(answer.headers["x-content-type-options"], "nosniff");
    assert_eq!(answer.headers["x-frame-options"], "DENY");
    let mine = Request::get("/healthz")
        .header("x-request-id", "trace-me-42")
        .header("origin", "https://dash.example")
        .body(Body::empty())
        .expect("test value");
    let answer = send(&app, mine).await;
    assert_eq!(answer.headers["x-request-id"], "trace-me-42");
    assert_eq!(
        answer.headers["access-control-allow-origin"],
        "https://dash.example"
    );
    let stranger = Request::get("/healthz")
        .header("origin", "https://evil.example")
        .body(Body::empty())
        .expect("test value");
    assert!(!send(&app, stranger)
        .await
        .headers
        .contains_key("access-control-allow-origin"));

    // The consumer applies in the background: lag reads 0 once it has.
    assert!(
        app.bus
            .settled(&app.store, std::time::Duration::from_secs(10))
            .await
    );
    let metrics = send(
        &app,
        get("/metrics", Some(&token("demo", &[Role::Operator], 60))),
    )
    .await;
    assert_eq!(metrics.status, StatusCode::OK);
    for line in [
        "adpipe_http_requests_total{route=\"/v1/campaigns\",method=\"GET\",status=\"200\"} 1",
        "adpipe_http_requests_total{route=\"/v1/pipelines/{pipeline}/reports\",method=\"POST\",status=\"202\"} 1",
        "adpipe_ingested_rows_total{pipeline=\"meta\",platform=\"meta\"} 2",
        "adpipe_http_request_duration_seconds_count{route=\"/v1/campaigns\",method=\"GET\"} 1",
        "adpipe_plugin_call_duration_seconds_count{plugin=\"meta\"} 1",
        "adpipe_bus_lag_records 0",
        "# EOF",
    ] {
        assert!(metrics.text.contains(line), "missing `{line}` in\n{}", metrics.text);
    }
}

#[test]
fn https_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).expect("test value");
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem())
        .expect("test value");
    let config = dir.path().join("adpipe.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nwatch_plugins = false\n\
             [server.tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("test value");
    let server = Server::spawn(&config, &[("ADPIPE_JWT_SECRET", JWT_SECRET)], &[]);
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let port = server
        .base
        .rsplit(':')
        .next()
        .expect("test value")
        .to_owned();
    let runtime = tokio::runtime::Runtime::new().expect("test value");
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).expect("test value"),
            )
            .build()
            .expect("test value");
        let url = format!("https://localhost:{port}");
        let health = client
            .get(format!("{url}/healthz"))
            .send()
            .await
            .expect("https");
        assert_eq!(health.status(), 200);
        assert_eq!(
            health.headers()["strict-transport-security"],
            "max-age=31536000"
        );
        let me = client
            .get(format!("{url}/v1/whoami"))
            .bearer_auth(token("demo", &[Role::Viewer], 60))
            .send()
            .await
            .expect("test value");
        assert_eq!(me.status(), 200);
        // No plaintext on the TLS port, and no trust without the certificate.
        let plain = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await;
        assert!(plain.is_err() || plain.expect("test value").status() != 200);
        assert!(reqwest::Client::new()
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_err());
    });
}
