//! All four platforms as their APIs speak: webhooks (LinkedIn challenge and
//! X-LI-Signature, TikTok timestamped signatures, Google's absence of
//! webhooks) and scheduled pulls against local fakes of each platform's API
//! serving the recorded fixtures with real pagination, rate limits, 5xx and
//! restated figures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use adpipe::app::App;
use adpipe::auth::Role;
use adpipe::config::PullConfig;
use axum::extract::{Path as UrlPath, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing;
use axum::Router;
use serde_json::{json, Value};

use crate::common::*;

fn fixture(plugin: &str, name: &str) -> String {
    let path = format!(
        "{}/../plugins/adapters/{plugin}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What the fakes count and serve.
#[derive(Default)]
struct Fake {
    base: std::sync::OnceLock<String>,
    meta_calls: AtomicU32,
    google_calls: AtomicU32,
    restated: AtomicBool,
    /// Make Meta's next page point off the allow-list.
    evil_next: AtomicBool,
    /// Raw query strings of the adAnalytics requests, as they arrived.
    linkedin_queries: std::sync::Mutex<Vec<String>>,
}

type Shared = Arc<Fake>;

fn first_call(calls: &AtomicU32) -> bool {
    calls.fetch_add(1, Ordering::SeqCst) == 0
}

async fn meta_insights(
    State(fake): State<Shared>,
    UrlPath(account): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if query.get("access_token").map(String::as_str) != Some("meta-token") {
        let error = json!({"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}});
        return (StatusCode::UNAUTHORIZED, error.to_string()).into_response();
    }
    if first_call(&fake.meta_calls) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "{\"error\":{\"code\":17}}",
        )
            .into_response();
    }
    if query.get("after").map(String::as_str) == Some("NQZDZD") {
        return fixture("meta", "insights_ad_page2.json").into_response();
    }
    let mut page: Value =
        serde_json::from_str(&fixture("meta", "insights_ad_page1.json")).expect("json");
    if fake.restated.load(Ordering::SeqCst) {
        let restated: Value =
            serde_json::from_str(&fixture("meta", "insights_restated.json")).expect("json");
        page["data"][0] = restated["data"][0].clone();
    }
    let base = if fake.evil_next.load(Ordering::SeqCst) {
        "http://127.0.0.1:9"
    } else {
        fake.base.get().map(String::as_str).unwrap_or("")
    };
    // The real API echoes the caller's token in `next`; the plugin must drop it.
    page["paging"]["next"] = json!(format!(
        "{base}/v27.0/{account}/insights?access_token=ECHOED&limit=6&after=NQZDZD"
    ));
    page.to_string().into_response()
}

async fn google_stream(
    State(fake): State<Shared>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    if header("authorization") != "Bearer google-token" || header("developer-token") != "dev-token"
    {
        return (
            StatusCode::UNAUTHORIZED,
            "{\"error\":{\"code\":401,\"status\":\"UNAUTHENTICATED\",\"message\":\"no\"}}",
        )
            .into_response();
    }
    assert!(path.ends_with("googleAds:searchStream"), "{path}");
    assert!(body.contains("segments.date BETWEEN"), "{body}");
    if first_call(&fake.google_calls) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"error\":{\"code\":503,\"status\":\"UNAVAILABLE\"}}",
        )
            .into_response();
    }
    fixture("google", "searchstream_ad_group_ad.json").into_response()
}

/// Why LinkedIn's Rest.li 2.0 gateway would refuse this raw query, if it would:
/// `( ) : ,` are Rest.li syntax and must arrive raw, and the URNs inside a value
/// are percent-encoded once (`urn%3Ali%3A...`), so a double-encoded `%253A` or an
/// escaped `%28` / `%29` / `%2C` is a malformed value (protocol-version page of
/// learn.microsoft.com/en-us/linkedin/shared/api-guide/concepts).
fn restli_refusal(raw: &str) -> Option<String> {
    let mut params = HashMap::new();
    for pair in raw.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let upper = value.to_ascii_uppercase();
        if upper.contains("%25") {
            return Some(format!("double-encoded value of `{key}`: {value}"));
        }
        for escaped in ["%28", "%29", "%2C"] {
            if upper.contains(escaped) {
                return Some(format!("Rest.li syntax escaped in `{key}`: {value}"));
            }
        }
        params.insert(key, value);
    }
    let accounts = params.get("accounts").copied().unwrap_or("");
    let urns = accounts
        .strip_prefix("List(")
        .and_then(|a| a.strip_suffix(')'));
    let valid_urns = urns.is_some_and(|list| {
        list.split(',').all(|urn| {
            urn.strip_prefix("urn%3Ali%3AsponsoredAccount%3A")
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        })
    });
    if !valid_urns {
        return Some(format!("invalid accounts: {accounts}"));
    }
    let date_range = params.get("dateRange").copied().unwrap_or("");
    if !date_range.starts_with("(start:(year:") {
        return Some(format!("invalid dateRange: {date_range}"));
    }
    None
}

async fn linkedin_analytics(
    State(fake): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer li-token") {
        return (
            StatusCode::UNAUTHORIZED,
            "{\"status\":401,\"message\":\"Invalid access token\"}",
        )
            .into_response();
    }
    // LinkedIn answers a missing or sunset version with 426 (versions are
    // served about a year: 202410 sunset on 2025-10-15).
    match headers
        .get("linkedin-version")
        .and_then(|v| v.to_str().ok())
    {
        Some("202601" | "202602" | "202603" | "202604" | "202605" | "202606") => {}
        other => {
            let error = json!({"status": 426, "code": "VERSION_DEPRECATED",
                "message": format!("Requested version {} is not active", other.unwrap_or("(none)"))});
            return (StatusCode::UPGRADE_REQUIRED, error.to_string()).into_response();
        }
    }
    let raw = raw.unwrap_or_default();
    if let Ok(mut seen) = fake.linkedin_queries.lock() {
        seen.push(raw.clone());
    }
    if let Some(why) = restli_refusal(&raw) {
        let error = json!({"status": 400, "message": why});
        return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
    }
    assert_eq!(query.get("q").map(String::as_str), Some("statistics"));
    match query.get("start").map(String::as_str) {
        Some("4") => fixture("linkedin", "adanalytics_statistics_page2.json").into_response(),
        _ => fixture("linkedin", "adanalytics_statistics_page1.json").into_response(),
    }
}

async fn tiktok_report(
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if headers.get("access-token").and_then(|v| v.to_str().ok()) != Some("tt-token") {
        return "{\"code\":40105,\"message\":\"Access token is incorrect or has been revoked.\",\"request_id\":\"x\",\"data\":{}}".into_response();
    }
    match query.get("page").map(String::as_str) {
        Some("2") => fixture("tiktok", "report_ad_page2.json").into_response(),
        _ => fixture("tiktok", "report_ad_page1.json").into_response(),
    }
}

/// One fake of all four APIs on 127.0.0.1.
async fn start_fake() -> (Shared, String) {
    let fake: Shared = Arc::default();
    let router = Router::new()
        // Only versions the platforms still serve (Meta's Marketing API v27.0,
        // Google Ads v26): a pull on a sunset version gets the real 404.
        .route("/v27.0/{account}/insights", routing::get(meta_insights))
        .route("/v26/customers/{*path}", routing::post(google_stream))
        .route("/rest/adAnalytics", routing::get(linkedin_analytics))
        .route(
            "/open_api/v1.3/report/integrated/get/",
            routing::get(tiktok_report),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let _ = fake.base.set(base.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (fake, base)
}

fn pull(base: &str, account: &str, credential_env: &str) -> Option<PullConfig> {
    Some(PullConfig {
        accounts: vec![account.into()],
        every: None,
        lookback_days: None,
        base_url: Some(base.parse().expect("base url")),
        credential_env: Some(credential_env.into()),
        header_envs: Default::default(),
        max_pages: 10,
        max_response_bytes: 64 * 1024 * 1024,
    })
}

async fn start_app(dir: &tempfile::TempDir, base: &str) -> App {
    std::env::set_var("ADPIPE_TEST_META_TOKEN", "meta-token");
    std::env::set_var("ADPIPE_TEST_GOOGLE_TOKEN", "google-token");
    std::env::set_var("ADPIPE_TEST_GOOGLE_DEV_TOKEN", "dev-token");
    std::env::set_var("ADPIPE_TEST_LI_TOKEN", "li-token");
    std::env::set_var("ADPIPE_TEST_LI_SECRET", "li-client-secret");
    std::env::set_var("ADPIPE_TEST_TT_TOKEN", "tt-token");
    std::env::set_var("ADPIPE_TEST_TT_SECRET", "tt-app-secret");
    let mut meta = pipeline("meta", "demo", "meta");
    meta.pull = pull(base, "1234567890", "ADPIPE_TEST_META_TOKEN");
    let mut google = pipeline("google", "demo", "google");
    google.pull = pull(base, "123-456-7890", "ADPIPE_TEST_GOOGLE_TOKEN");
    if let Some(p) = google.pull.as_mut() {
        p.header_envs.insert(
            "developer-token".into(),
            "ADPIPE_TEST_GOOGLE_DEV_TOKEN".into(),
        );
    }
    let mut linkedin = pipeline("linkedin", "demo", "linkedin");
    linkedin.pull = pull(base, "509876", "ADPIPE_TEST_LI_TOKEN");
    linkedin.currency = Some("USD".into());
    linkedin.webhook_secret_env = Some("ADPIPE_TEST_LI_SECRET".into());
    let mut tiktok = pipeline("tiktok", "demo", "tiktok");
    tiktok.pull = pull(base, "7012345678901234567", "ADPIPE_TEST_TT_TOKEN");
    tiktok.webhook_secret_env = Some("ADPIPE_TEST_TT_SECRET".into());
    let plugins = ["meta", "google", "linkedin", "tiktok"]
        .map(plugin)
        .to_vec();
    App::start(config(dir, plugins, vec![meta, google, linkedin, tiktok]))
        .await
        .expect("start")
}

async fn totals(app: &App, platform: &str) -> Vec<Value> {
    let viewer = token("demo", &[Role::Viewer], 60);
    let uri = format!(
        "/v1/insights?from=2026-11-01&to=2026-11-02&granularity=day&group_by=campaign_id&platform={platform}&metrics=impressions,clicks,spend,conversions,conversion_value"
    );
    let answer = send(app, get(&uri, Some(&viewer))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let mut rows = answer.json["rows"].as_array().cloned().unwrap_or_default();
    // Every row names its campaign (null where the platform's rows carry no
    // name); the figures are compared without it, names in their own checks.
    for row in rows.iter_mut() {
        let name = row.as_object_mut().and_then(|r| r.remove("campaign_name"));
        assert!(
            name.as_ref().is_some_and(|n| n.is_string() || n.is_null()),
            "{row}: campaign_name {name:?}"
        );
    }
    rows
}

/// The campaign names a platform's insights rows carry, by campaign id.
async fn campaign_names(app: &App, platform: &str) -> Vec<(String, Value)> {
    let viewer = token("demo", &[Role::Viewer], 60);
    let uri = format!(
        "/v1/insights?from=2026-11-01&to=2026-11-02&granularity=total&group_by=campaign_id&platform={platform}&metrics=spend"
    );
    let answer = send(app, get(&uri, Some(&viewer))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let rows = answer.json["rows"].as_array().cloned().unwrap_or_default();
    rows.iter()
        .map(|r| {
            (
                r["campaign_id"].as_str().unwrap_or("").to_owned(),
                r["campaign_name"].clone(),
            )
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn row(
    date: &str,
    platform: &str,
    campaign: &str,
    currency: &str,
    imp: i64,
    clicks: i64,
    spend: f64,
    conv: f64,
    value: f64,
) -> Value {
    json!({"date": date, "platform": platform, "campaign_id": campaign, "currency": currency,
           "impressions": imp, "clicks": clicks, "spend": spend, "conversions": conv, "conversion_value": value})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_follow_pages_retry_and_land_exact_totals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fake, base) = start_fake().await;
    let app = start_app(&dir, &base).await;

    // Meta: a 429 with Retry-After, then two pages linked by `paging.next`.
    let run = pull_now(&app, "meta").await;
    assert_eq!(
        (
            run["status"].as_str(),
            run["pages"].as_i64(),
            run["rows"].as_i64(),
            run["retries"].as_i64()
        ),
        (Some("ok"), Some(2), Some(10), Some(1)),
        "{run}"
    );
    assert_eq!(run["account"], "1234567890");
    // Names from the pulled pages' `campaign_name`.
    let names = campaign_names(&app, "meta").await;
    assert!(
        names.contains(&(
            "120210000000001".into(),
            Value::from("Prospecting – Broad US")
        )),
        "{names:?}"
    );
    let meta = totals(&app, "meta").await;
    assert_eq!(
        meta[0],
        row(
            "2026-11-01",
            "meta",
            "120210000000001",
            "USD",
            24_770,
            521,
            353.49,
            11.0,
            880.49
        )
    );
    assert_eq!(
        meta[3],
        row(
            "2026-11-02",
            "meta",
            "120210000000002",
            "USD",
            7_420,
            228,
            117.04,
            3.0,
            240.0
        )
    );

    // A restated day comes back in the lookback window and replaces the old figures.
    fake.restated.store(true, Ordering::SeqCst);
    let run = pull_now(&app, "meta").await;
    assert_eq!(run["status"], "ok", "{run}");
    let meta = totals(&app, "meta").await;
    assert_eq!(
        meta[0],
        row(
            "2026-11-01",
            "meta",
            "120210000000001",
            "USD",
            24_920,
            526,
            356.14,
            12.0,
            940.49
        )
    );

    // Google: a 503, retried; one searchStream response, bearer + developer token injected.
    let run = pull_now(&app, "google").await;
    assert_eq!(
        (
            run["status"].as_str(),
            run["pages"].as_i64(),
            run["rows"].as_i64(),
            run["retries"].as_i64()
        ),
        (Some("ok"), Some(1), Some(6), Some(1)),
        "{run}"
    );
    let google = totals(&app, "google").await;
    assert_eq!(
        google[0],
        row(
            "2026-11-01",
            "google",
            "20123456701",
            "USD",
            7_210,
            508,
            238.64,
            35.5,
            2800.25
        )
    );

    // LinkedIn: relative `next` link on the same host; currency from the pipeline.
    let run = pull_now(&app, "linkedin").await;
    assert_eq!(outcome(&run), (Some("ok"), Some(2), Some(7)), "{run}");
    let linkedin = totals(&app, "linkedin").await;
    assert_eq!(
        linkedin[0],
        row(
            "2026-11-01",
            "linkedin",
            "612345001",
            "USD",
            20_330,
            119,
            562.42,
            6.0,
            1500.0
        )
    );

    // TikTok: page_info paging through the request URL; Access-Token header.
    let run = pull_now(&app, "tiktok").await;
    assert_eq!(outcome(&run), (Some("ok"), Some(2), Some(6)), "{run}");
    let tiktok = totals(&app, "tiktok").await;
    assert_eq!(
        tiktok[0],
        row(
            "2026-11-01",
            "tiktok",
            "1780000000000001",
            "USD",
            68_325,
            813,
            184.65,
            17.0,
            1370.2
        )
    );

    // Runs are recorded.
    let admin = token("demo", &[Role::Admin], 60);
    let runs = send(&app, get("/v1/pipelines/meta/pulls", Some(&admin))).await;
    assert_eq!(runs.json["runs"].as_array().map(Vec::len), Some(2));

    // A next page off the allow-list is refused, and the run says so.
    fake.evil_next.store(true, Ordering::SeqCst);
    let run = pull_now(&app, "meta").await;
    assert_eq!(run["status"], "failed");
    assert!(
        run["error"].as_str().unwrap_or("").contains("allow-list"),
        "{run}"
    );
}

/// Hex HMAC-SHA256 of the concatenated `parts`, with the `hmac` crate directly.
fn independent_hmac(secret: &[u8], parts: &[&[u8]]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// What LinkedIn puts in `X-LI-Signature`: hex HMAC-SHA256(client secret,
/// "hmacsha256=" + body) (learn.microsoft.com/en-us/linkedin/shared/api-guide/webhook-validation).
fn li_signature(secret: &[u8], body: &[u8]) -> String {
    independent_hmac(secret, &[b"hmacsha256=", body])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkedin_tiktok_and_google_webhooks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_fake, base) = start_fake().await;
    let app = start_app(&dir, &base).await;

    // LinkedIn validation: challengeResponse = hex HMAC-SHA256(client secret, challengeCode).
    let answer = send(
        &app,
        get(
            "/v1/webhooks/linkedin?challengeCode=890e4665-4dfe-4ab1-b689-ed553bceeed4",
            None,
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let expected = independent_hmac(
        b"li-client-secret",
        &[b"890e4665-4dfe-4ab1-b689-ed553bceeed4"],
    );
    assert_eq!(
        answer.json,
        json!({"challengeCode": "890e4665-4dfe-4ab1-b689-ed553bceeed4", "challengeResponse": expected})
    );

    // LinkedIn notifications carry X-LI-Signature: hex HMAC-SHA256(client secret,
    // "hmacsha256=" + body), computed here without adpipe's signing code.
    let body = fixture("linkedin", "webhook_leads.json");
    let signed = li_signature(b"li-client-secret", body.as_bytes());
    let request = |sig: &str| {
        axum::http::Request::post("/v1/webhooks/linkedin")
            .header("x-li-signature", sig)
            .body(axum::body::Body::from(body.clone()))
            .expect("request")
    };
    let answer = send(&app, request(&signed)).await;
    assert_eq!(
        (answer.status, answer.json.clone()),
        (StatusCode::ACCEPTED, json!({"accepted": 2})),
        "{}",
        answer.text
    );
    let answer = send(&app, request(&format!("hmacsha256={signed}"))).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    // The digest of the bare body (adpipe's old reading of the docs) is not LinkedIn's.
    let bare = independent_hmac(b"li-client-secret", &[body.as_bytes()]);
    for sig in [
        "hmacsha256=00".to_owned(),
        bare.clone(),
        format!("hmacsha256={bare}"),
    ] {
        let answer = send(&app, request(&sig)).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::UNAUTHORIZED, "invalid_signature"),
            "{sig}"
        );
    }

    // TikTok: TikTok-Signature t=<ts>,s=<hex HMAC(secret, "<ts>.<body>")>, stale ones refused.
    let body = fixture("tiktok", "webhook_leads.json");
    let tiktok = |ts: i64, secret: &[u8]| {
        let sig = adpipe::pipeline::signature::hmac_hex(secret, format!("{ts}.{body}").as_bytes());
        axum::http::Request::post("/v1/webhooks/tiktok")
            .header("tiktok-signature", format!("t={ts},s={sig}"))
            .body(axum::body::Body::from(body.clone()))
            .expect("request")
    };
    let now = chrono::Utc::now().timestamp();
    let answer = send(&app, tiktok(now, b"tt-app-secret")).await;
    assert_eq!(
        (answer.status, answer.json.clone()),
        (StatusCode::ACCEPTED, json!({"accepted": 2})),
        "{}",
        answer.text
    );
    let answer = send(&app, tiktok(now - 3600, b"tt-app-secret")).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
    assert!(
        answer.json["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("300 s"),
        "{}",
        answer.text
    );
    let answer = send(&app, tiktok(now, b"wrong")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // Google Ads has no metric webhooks.
    for answer in [
        send(&app, get("/v1/webhooks/google", None)).await,
        send(&app, post("/v1/webhooks/google", None, "{}")).await,
    ] {
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::NOT_FOUND, "webhooks_not_supported"),
            "{}",
            answer.text
        );
    }

    // TikTok leads name their campaign; they show once the report's rows exist for it.
    let ingest = token("demo", &[Role::Ingest], 60);
    let report = fixture("tiktok", "report_ad_page1.json");
    let answer = send(
        &app,
        post(
            "/v1/pipelines/tiktok/reports?account_id=7012345678901234567",
            Some(&ingest),
            report,
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    let viewer = token("demo", &[Role::Viewer], 60);
    let answer = send(
        &app,
        get("/v1/insights?from=2026-11-01&to=2026-11-01&granularity=total&group_by=campaign_id&platform=tiktok&metrics=leads", Some(&viewer)),
    )
    .await;
    let rows = answer.json["rows"].as_array().cloned().unwrap_or_default();
    let leads: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r["campaign_id"].as_str().unwrap_or(""),
                r["leads"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        leads,
        vec![("1780000000000001", 0), ("1780000000000002", 2)],
        "{}",
        answer.text
    );
}

/// The LinkedIn validation route is no signing oracle, on a real `adpipe serve`:
/// a JSON body sent as `challengeCode` is refused, so posting that JSON with
/// whatever came back is refused too — for the old reading of the scheme
/// (digest of the bare body) and for LinkedIn's (digest of `hmacsha256=` + body).
#[test]
fn linkedin_challenge_is_no_signing_oracle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("adpipe.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nwatch_plugins = false\n\n\
             [[plugins]]\nname = \"linkedin\"\npath = \"{}\"\n\n\
             [[pipelines]]\nname = \"linkedin\"\ntenant = \"demo\"\nadapter = \"linkedin\"\n\
             webhook_secret_env = \"ADPIPE_TEST_ORACLE_LI_SECRET\"\ncurrency = \"USD\"\naccount_id = \"509876\"\n",
            dir.path().join("data").display(),
            plugin_path("linkedin").display()
        ),
    )
    .expect("config");
    let secret = b"oracle-client-secret";
    let server = Server::spawn(
        &config,
        &[
            ("ADPIPE_JWT_SECRET", JWT_SECRET),
            ("ADPIPE_TEST_ORACLE_LI_SECRET", "oracle-client-secret"),
        ],
        &[],
    );
    let url = format!("{}/v1/webhooks/linkedin", server.base);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let challenge = |code: String| {
            let request = client.get(&url).query(&[("challengeCode", code)]);
            async move {
                let response = request.send().await.expect("get");
                let status = response.status();
                let json: Value = response.json().await.unwrap_or(Value::Null);
                (status, json)
            }
        };
        let deliver = |body: &str, signature: String| {
            let request = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-li-signature", signature)
                .body(body.to_owned());
            async move {
                let response = request.send().await.expect("post");
                let status = response.status();
                let json: Value = response.json().await.unwrap_or(Value::Null);
                (status, json)
            }
        };

        // LinkedIn's own validation: a type-4 UUID, answered with its HMAC.
        let uuid = "890e4665-4dfe-4ab1-b689-ed553bceeed0";
        let (status, json) = challenge(uuid.into()).await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(
            json,
            json!({"challengeCode": uuid, "challengeResponse": independent_hmac(secret, &[uuid.as_bytes()])})
        );

        // A genuine delivery (signed as LinkedIn signs) is accepted, with or
        // without the prefix on the digest.
        let body = fixture("linkedin", "webhook_leads.json");
        let genuine = li_signature(secret, body.as_bytes());
        let (status, json) = deliver(&body, genuine.clone()).await;
        assert_eq!(status, 202, "{json}");
        let (status, json) = deliver(&body, format!("hmacsha256={genuine}")).await;
        assert_eq!(status, 202, "{json}");

        // The attack: have the forged notification signed through the handshake...
        let forged = r#"{"type":"LEAD_ACTION","leadAction":"CREATED","leadGenFormResponse":"urn:li:leadGenFormResponse:forged-1","owner":{"sponsoredAccount":"urn:li:sponsoredAccount:509876"},"associatedEntity":{"sponsoredCampaign":"urn:li:sponsoredCampaign:612345001"},"occuredAt":1793541200000}"#;
        for (scheme, code) in [
            ("old: digest of the bare body", forged.to_owned()),
            ("LinkedIn's: digest of hmacsha256= + body", format!("hmacsha256={forged}")),
        ] {
            let (status, json) = challenge(code).await;
            assert_eq!(status, 400, "{scheme}: the oracle answered {json}");
            assert_eq!(json["error"]["code"], "invalid_handshake", "{scheme}: {json}");
            assert!(
                json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{scheme}: {json}"
            );
            // ...then post it with what came back: refused.
            let digest = json["challengeResponse"].as_str().unwrap_or("").to_owned();
            for signature in [digest.clone(), format!("hmacsha256={digest}")] {
                let (status, json) = deliver(forged, signature).await;
                assert_eq!(status, 401, "{scheme}: {json}");
                assert_eq!(json["error"]["code"], "invalid_signature", "{scheme}: {json}");
            }
        }
        // The digest the old oracle would have returned (HMAC of the bare body),
        // computed here, is no signature of that body either.
        let old_oracle = independent_hmac(secret, &[forged.as_bytes()]);
        for signature in [old_oracle.clone(), format!("hmacsha256={old_oracle}")] {
            let (status, json) = deliver(forged, signature).await;
            assert_eq!(status, 401, "{json}");
        }
    });
}

/// An app with the one pipeline `name` (adapter `name`) pulling per `pull`.
async fn start_one(dir: &tempfile::TempDir, name: &str, pull: Option<PullConfig>) -> App {
    std::env::set_var("ADPIPE_TEST_LI_TOKEN", "li-token");
    std::env::set_var("ADPIPE_TEST_TT_TOKEN", "tt-token");
    let mut one = pipeline(name, "demo", name);
    one.pull = pull;
    if name == "linkedin" {
        one.currency = Some("USD".into());
    }
    App::start(config(dir, vec![plugin(name)], vec![one]))
        .await
        .expect("start")
}

/// LinkedIn pulls send the Rest.li query exactly as the plugin built it, so a
/// fake that refuses what the real API refuses (double-encoded URNs, escaped
/// brackets) answers, and a *scheduled* pull lands the exact totals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkedin_scheduled_pull_sends_the_restli_query_as_built() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fake, base) = start_fake().await;

    // The fake is as strict as LinkedIn: what the old host sent is a 400.
    let client = reqwest::Client::new();
    for query in [
        "q=statistics&dateRange=(start:(year:2026,month:11,day:1))&accounts=List%28urn%253Ali%253AsponsoredAccount%253A509876%29",
        "q=statistics&dateRange=%28start%3A%28year%3A2026%2Cmonth%3A11%2Cday%3A1%29%29&accounts=List(urn%3Ali%3AsponsoredAccount%3A509876)",
        "q=statistics&dateRange=(start:(year:2026,month:11,day:1))&accounts=List(urn:li:sponsoredAccount:509876)",
    ] {
        let response = client
            .get(format!("{base}/rest/adAnalytics?{query}"))
            .bearer_auth("li-token")
            .header("linkedin-version", "202606")
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 400, "{query}");
    }
    // And a version LinkedIn has retired (202410, adpipe's old pin) is a 426.
    let response = client
        .get(format!("{base}/rest/adAnalytics?q=statistics"))
        .bearer_auth("li-token")
        .header("linkedin-version", "202410")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 426);
    if let Ok(mut seen) = fake.linkedin_queries.lock() {
        seen.clear();
    }

    let mut pull = pull(&base, "509876", "ADPIPE_TEST_LI_TOKEN");
    if let Some(p) = pull.as_mut() {
        p.every = Some(std::time::Duration::from_secs(3600)); // the first tick runs at start
    }
    let app = start_one(&dir, "linkedin", pull).await;
    let admin = token("demo", &[Role::Admin], 60);
    let mut run = Value::Null;
    for _ in 0..200 {
        let runs = send(&app, get("/v1/pipelines/linkedin/pulls", Some(&admin))).await;
        if let Some(first) = runs.json["runs"].as_array().and_then(|r| r.first()) {
            run = first.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(outcome(&run), (Some("ok"), Some(2), Some(7)), "{run}");
    let first = fake
        .linkedin_queries
        .lock()
        .map(|q| q.first().cloned().unwrap_or_default())
        .unwrap_or_default();
    for part in [
        "q=statistics&",
        "&pivots=List(CAMPAIGN,CREATIVE)&",
        "&dateRange=(start:(year:",
        "&accounts=List(urn%3Ali%3AsponsoredAccount%3A509876)&",
        "&fields=dateRange,pivotValues,impressions,clicks,",
    ] {
        assert!(first.contains(part), "`{part}` not in {first}");
    }
    let expected = row(
        "2026-11-01",
        "linkedin",
        "612345001",
        "USD",
        20_330,
        119,
        562.42,
        6.0,
        1500.0,
    );
    let mut linkedin = Vec::new();
    for _ in 0..100 {
        linkedin = totals(&app, "linkedin").await;
        if linkedin.first() == Some(&expected) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(linkedin.first(), Some(&expected), "{linkedin:?}");
}

/// What a host off the allow-list saw.
#[derive(Default)]
struct Target {
    requests: AtomicU32,
    credentials: std::sync::Mutex<Vec<String>>,
}

/// The pull client follows no redirect off the plugin's allow-list (the target
/// never sees a request, let alone the credential); a redirect on the same
/// origin is followed with the credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_redirects_off_the_allow_list_are_not_followed() {
    let target: Arc<Target> = Arc::default();
    let evil = Router::new()
        .fallback(
            |State(t): State<Arc<Target>>, headers: HeaderMap| async move {
                t.requests.fetch_add(1, Ordering::SeqCst);
                for name in ["access-token", "authorization"] {
                    if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                        if let Ok(mut seen) = t.credentials.lock() {
                            seen.push(format!("{name}: {v}"));
                        }
                    }
                }
                fixture("tiktok", "report_ad_page2.json")
            },
        )
        .with_state(target.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let evil_base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, evil).await });

    // TikTok's report route moves (same origin), and the new place sends the
    // caller to another host.
    let moved_with_token: Arc<AtomicU32> = Arc::default();
    let seen = moved_with_token.clone();
    let platform = Router::new()
        .route(
            "/open_api/v1.3/report/integrated/get/",
            routing::get(|| async { (StatusCode::FOUND, [("location", "/moved/report")]) }),
        )
        .route(
            "/moved/report",
            routing::get(move |headers: HeaderMap| {
                let seen = seen.clone();
                let evil_base = evil_base.clone();
                async move {
                    if headers.get("access-token").and_then(|v| v.to_str().ok()) == Some("tt-token")
                    {
                        seen.fetch_add(1, Ordering::SeqCst);
                    }
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [("location", format!("{evil_base}/collect?page=1"))],
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, platform).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let app = start_one(
        &dir,
        "tiktok",
        pull(&base, "7012345678901234567", "ADPIPE_TEST_TT_TOKEN"),
    )
    .await;
    let run = pull_now(&app, "tiktok").await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or("");
    assert!(
        error.contains("redirect")
            && error.contains("not followed")
            && error.contains("allow-list"),
        "{run}"
    );
    assert!(
        !error.contains("collect"),
        "only the origin is named: {run}"
    );
    assert_eq!(
        moved_with_token.load(Ordering::SeqCst),
        1,
        "the same-origin redirect is followed with the credential"
    );
    assert_eq!(target.requests.load(Ordering::SeqCst), 0);
    assert!(target
        .credentials
        .lock()
        .map(|c| c.is_empty())
        .unwrap_or(false));
}

/// A body over `pull.max_response_bytes` fails the run while it is being read:
/// the fake offers 256 MiB and the host stops long before, ingesting nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_bodies_over_the_limit_fail_while_reading() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const OFFERED: u64 = 256 * 1024 * 1024;
    let sent: Arc<std::sync::atomic::AtomicU64> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let start = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(start).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                let frame = [
                    format!("{:x}\r\n", chunk.len()).into_bytes(),
                    chunk,
                    b"\r\n".to_vec(),
                ]
                .concat();
                let mut total = 0u64;
                while total < OFFERED {
                    if socket.write_all(&frame).await.is_err() {
                        return;
                    }
                    total += 64 * 1024;
                    counter.store(total, Ordering::SeqCst);
                }
                let _ = socket.write_all(b"0\r\n\r\n").await;
            });
        }
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let mut pull = pull(&base, "509876", "ADPIPE_TEST_LI_TOKEN");
    if let Some(p) = pull.as_mut() {
        p.max_response_bytes = 1024 * 1024;
    }
    let app = start_one(&dir, "linkedin", pull).await;
    let run = pull_now(&app, "linkedin").await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"].as_str().is_some_and(
            |e| e.contains("over 1048576 bytes") && e.contains("pull.max_response_bytes")
        ),
        "{run}"
    );
    assert_eq!(
        (run["pages"].as_i64(), run["rows"].as_i64()),
        (Some(0), Some(0)),
        "{run}"
    );
    let streamed = sent.load(Ordering::SeqCst);
    assert!(
        streamed < 64 * 1024 * 1024,
        "the host read on after the limit: {streamed} bytes streamed"
    );
    assert!(totals(&app, "linkedin").await.is_empty());
}

/// A pull run's status, pages and rows.
fn outcome(run: &Value) -> (Option<&str>, Option<i64>, Option<i64>) {
    (
        run["status"].as_str(),
        run["pages"].as_i64(),
        run["rows"].as_i64(),
    )
}
