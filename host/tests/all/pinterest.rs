//! Pinterest Ads through wasmtime and against a fake of its v5 API.
//!
//! - Every fixture parses to the same rows, extras, notices and next page in
//!   the sandbox as natively (also as pages of a pull, whose URL drives the
//!   next request), rejections keep their kind, path and message, and the
//!   planned first request is the same.
//! - A pull walks the account's campaigns listing and their daily analytics
//!   against a fake that refuses what Pinterest refuses (a wrong token gets
//!   Pinterest's 401 body, missing or malformed parameters its 400, the first
//!   analytics call its 429), follows `bookmark` pages, and lands totals in
//!   `/v1/insights` equal to sums computed from the fixtures; a restated day
//!   replaces the old figures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use adpipe::app::App;
use adpipe::auth::Role;
use adpipe::config::PullConfig;
use adpipe::plugin::bindings::adapter::adpipe::plugin::types as wit;
use adpipe::plugin::CallError;
use adpipe_plugin_pinterest::Pinterest;
use adpipe_plugin_sdk as sdk;
use adpipe_plugin_sdk::Adapter as _;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::common::*;
use crate::parity::*;

const ACCOUNT: &str = "549755885175";
const TOKEN: &str = "pin-token";

fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/adapters/pinterest/tests/fixtures")
}

fn fixture(name: &str) -> String {
    let path = fixtures_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_fixture_parses_identically_in_the_sandbox_and_natively() {
    let component = component("pinterest");
    describes_alike::<Pinterest>(&component, "pinterest", &["v5"]);

    // The first request of a pull, planned alike.
    let (since, until) = (
        sdk::Date::new(2026, 11, 1).expect("d"),
        sdk::Date::new(2026, 11, 14).expect("d"),
    );
    let native_plan = Pinterest::plan_pull(&sdk::PullRequest {
        account_id: ACCOUNT.into(),
        from: since,
        to: until,
        base_url: None,
        options: vec![],
    })
    .expect("plan");
    let wasm_plan = component
        .plan_pull(&adpipe::plugin::PullRequest {
            account_id: ACCOUNT.into(),
            since: wasm_date(since),
            until: wasm_date(until),
            base_url: None,
            options: vec![],
        })
        .expect("plan in the sandbox");
    assert_eq!(
        native_plan.iter().map(native_request).collect::<Vec<_>>(),
        wasm_plan.iter().map(wasm_request).collect::<Vec<_>>()
    );

    // Contexts: a pushed report, a listing page of a pull, an analytics page
    // of a pull (whose fragment continues the listing).
    let base = sdk::ParseContext {
        account_id: Some(ACCOUNT.into()),
        currency: Some("USD".into()),
        ..Default::default()
    };
    let listing_url = fetched_url(&native_plan[0]);
    let mut listing_ctx = base.clone();
    listing_ctx
        .options
        .push(("request.url".into(), listing_url));
    let analytics =
        Pinterest::parse_report(fixture("campaigns_page1.json").as_bytes(), &listing_ctx)
            .expect("listing")
            .next_page
            .expect("analytics request");
    let mut analytics_ctx = base.clone();
    analytics_ctx
        .options
        .push(("request.url".into(), fetched_url(&analytics)));
    let no_currency = sdk::ParseContext {
        currency: None,
        ..base.clone()
    };

    let mut parsed = 0;
    let mut next_pages = 0;
    for (name, bytes) in crate::parity::fixtures("pinterest", 10) {
        for ctx in [&base, &listing_ctx, &analytics_ctx, &no_currency] {
            let wasm_ctx = wit::ParseContext {
                options: ctx.options.clone(),
                account_id: ctx.account_id.clone(),
                currency: ctx.currency.clone(),
                received_at_ms: 0,
            };
            match (
                Pinterest::parse_report(&bytes, ctx),
                component.parse_report(&bytes, &wasm_ctx),
            ) {
                (Ok(n), Ok(w)) => {
                    parsed += n.rows.len();
                    next_pages += usize::from(n.next_page.is_some());
                    assert_eq!(
                        native_view(&n),
                        wasm_view(&w),
                        "{name} with {:?}",
                        ctx.options
                    );
                }
                (Err(n), Err(CallError::Rejected(w))) => {
                    assert_eq!(
                        (kind(n.kind), n.path, n.message),
                        (w.kind, w.path, w.message),
                        "{name} with {:?}",
                        ctx.options
                    );
                }
                (n, w) => panic!("{name}: native {n:?} vs wasm {w:?}"),
            }
        }
    }
    assert!(parsed > 30, "{parsed} rows");
    assert!(next_pages >= 4, "{next_pages} next pages");
}

// ---- a fake Pinterest API -------------------------------------------------------

/// Columns the fake knows (a subset of the documented `columns` enum, every
/// one the adapter may ask for); anything else is Pinterest's 400.
const COLUMNS: &[&str] = &[
    "AD_ACCOUNT_ID",
    "ADVERTISER_ID",
    "CAMPAIGN_ID",
    "CAMPAIGN_NAME",
    "AD_GROUP_ID",
    "AD_GROUP_NAME",
    "AD_ID",
    "AD_NAME",
    "PIN_ID",
    "SPEND_IN_MICRO_DOLLAR",
    "SPEND_IN_DOLLAR",
    "PAID_IMPRESSION",
    "IMPRESSION_1",
    "CLICKTHROUGH_1",
    "TOTAL_CLICKTHROUGH",
    "TOTAL_CONVERSIONS",
    "TOTAL_CHECKOUT",
    "TOTAL_CHECKOUT_VALUE_IN_MICRO_DOLLAR",
    "OUTBOUND_CLICK_1",
    "REPIN_1",
    "CTR",
];
const STATUSES: &[&str] = &["ACTIVE", "PAUSED", "ARCHIVED", "DRAFT", "DELETED_DRAFT"];

#[derive(Default)]
struct Fake {
    analytics_calls: AtomicU32,
    restated: AtomicBool,
    /// Raw query strings as they arrived: listings, analytics.
    listings: Mutex<Vec<String>>,
    analytics: Mutex<Vec<String>>,
}

type Shared = Arc<Fake>;

/// Query pairs, percent-decoded, repeated keys kept.
fn pairs(raw: &Option<String>) -> Vec<(String, String)> {
    let raw = raw.as_deref().unwrap_or("");
    reqwest::Url::parse(&format!("http://fake/?{raw}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn values<'a>(pairs: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn pinterest_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        json!({"code": code, "message": message}).to_string(),
    )
        .into_response()
}

/// Pinterest's refusals before any parameter is read: the token, the account.
fn refuse_caller(headers: &HeaderMap, account: &str) -> Option<Response> {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return Some(
            (StatusCode::UNAUTHORIZED, fixture("error_unauthorized.json")).into_response(),
        );
    }
    if account != ACCOUNT {
        return Some(pinterest_error(
            StatusCode::FORBIDDEN,
            29,
            "You are not permitted to access that resource.",
        ));
    }
    None
}

fn is_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 18 && id.bytes().all(|b| b.is_ascii_digit())
}

async fn campaigns(
    State(fake): State<Shared>,
    headers: HeaderMap,
    UrlPath(account): UrlPath<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Some(refusal) = refuse_caller(&headers, &account) {
        return refusal;
    }
    if let Ok(mut seen) = fake.listings.lock() {
        seen.push(raw.clone().unwrap_or_default());
    }
    let query = pairs(&raw);
    let bad = || {
        pinterest_error(
            StatusCode::BAD_REQUEST,
            400,
            "Invalid ad account campaign parameters.",
        )
    };
    if !values(&query, "entity_statuses")
        .iter()
        .all(|s| STATUSES.contains(s))
    {
        return bad();
    }
    match values(&query, "page_size").as_slice() {
        [] => {}
        [size] if size.parse::<u32>().is_ok_and(|n| (1..=250).contains(&n)) => {}
        _ => return bad(),
    }
    let page1 = fixture("campaigns_page1.json");
    let bookmark: Value = serde_json::from_str::<Value>(&page1).expect("json")["bookmark"].clone();
    match values(&query, "bookmark").as_slice() {
        [] => page1.into_response(),
        [b] if Some(*b) == bookmark.as_str() => fixture("campaigns_page2.json").into_response(),
        _ => bad(),
    }
}

/// The analytics rows of the fixture (restated when asked), as Pinterest
/// answers them: only the requested campaigns, only the requested columns.
async fn campaign_analytics(
    State(fake): State<Shared>,
    headers: HeaderMap,
    UrlPath(account): UrlPath<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Some(refusal) = refuse_caller(&headers, &account) {
        return refusal;
    }
    if fake.analytics_calls.fetch_add(1, Ordering::SeqCst) == 0 {
        let mut limited = (
            StatusCode::TOO_MANY_REQUESTS,
            fixture("error_rate_limited.json"),
        )
            .into_response();
        limited
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("0"));
        return limited;
    }
    if let Ok(mut seen) = fake.analytics.lock() {
        seen.push(raw.clone().unwrap_or_default());
    }
    let query = pairs(&raw);
    let bad = || {
        (
            StatusCode::BAD_REQUEST,
            fixture("error_invalid_parameters.json"),
        )
            .into_response()
    };
    let date = |key: &str| match values(&query, key).as_slice() {
        [d] => chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok(),
        _ => None,
    };
    let (Some(start), Some(end)) = (date("start_date"), date("end_date")) else {
        return bad();
    };
    if end < start || (end - start).num_days() >= 90 {
        return bad();
    }
    let ids = values(&query, "campaign_ids");
    if ids.is_empty() || ids.len() > 250 || !ids.iter().all(|id| is_id(id)) {
        return bad();
    }
    let columns: Vec<&str> = match values(&query, "columns").as_slice() {
        [c] => c.split(',').collect(),
        _ => return bad(),
    };
    if columns.is_empty() || !columns.iter().all(|c| COLUMNS.contains(c)) {
        return bad();
    }
    match values(&query, "granularity").as_slice() {
        ["TOTAL" | "DAY" | "HOUR" | "WEEK" | "MONTH"] => {}
        _ => return bad(),
    }
    let restated: Vec<Value> =
        serde_json::from_str(&fixture("analytics_restated.json")).expect("json");
    let rows: Vec<Value> =
        serde_json::from_str(&fixture("analytics_campaigns.json")).expect("json");
    let key = |r: &Value| (r["DATE"].clone(), r["CAMPAIGN_ID"].clone());
    let answer: Vec<Value> = rows
        .into_iter()
        .map(|r| match restated.iter().find(|s| key(s) == key(&r)) {
            Some(s) if fake.restated.load(Ordering::SeqCst) => s.clone(),
            _ => r,
        })
        .filter(|r| {
            r["CAMPAIGN_ID"]
                .as_str()
                .is_some_and(|id| ids.contains(&id))
        })
        .map(|r| {
            let kept: serde_json::Map<String, Value> = r
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| {
                    k.as_str() == "DATE"
                        || k.as_str() == "CAMPAIGN_ID"
                        || columns.contains(&k.as_str())
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Value::Object(kept)
        })
        .collect();
    Json(answer).into_response()
}

async fn start_fake() -> (Shared, String) {
    let fake: Shared = Arc::default();
    let router = Router::new()
        .route(
            "/v5/ad_accounts/{account}/campaigns",
            routing::get(campaigns),
        )
        .route(
            "/v5/ad_accounts/{account}/campaigns/analytics",
            routing::get(campaign_analytics),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (fake, base)
}

fn pull(base: &str, credential_env: &str) -> Option<PullConfig> {
    Some(PullConfig {
        accounts: vec![ACCOUNT.into()],
        every: None,
        lookback_days: None,
        base_url: Some(base.parse().expect("base url")),
        credential_env: Some(credential_env.into()),
        header_envs: Default::default(),
        max_pages: 10,
        max_response_bytes: 64 * 1024 * 1024,
    })
}

async fn insights(app: &App, query: &str) -> Vec<Value> {
    let viewer = token("demo", &[Role::Viewer], 60);
    let answer = send(app, get(&format!("/v1/insights?{query}"), Some(&viewer))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.json["rows"].as_array().cloned().unwrap_or_default()
}

/// Daily totals per campaign from `/v1/insights`, keyed by (date, campaign).
async fn daily(app: &App) -> BTreeMap<(String, String), Value> {
    insights(
        app,
        "from=2026-11-01&to=2026-11-02&granularity=day&group_by=campaign_id&platform=pinterest\
         &metrics=impressions,clicks,spend,conversions,conversion_value",
    )
    .await
    .into_iter()
    .map(|mut row| {
        let key = (
            row["date"].as_str().unwrap_or_default().to_owned(),
            row["campaign_id"].as_str().unwrap_or_default().to_owned(),
        );
        if let Some(r) = row.as_object_mut() {
            r.remove("campaign_name");
        }
        (key, row)
    })
    .collect()
}

/// Micros of a fixture value: a count or a decimal (`9.0`) times a million,
/// or a `*_IN_MICRO_DOLLAR` column as it is.
fn micros(row: &Value, column: &str) -> i64 {
    let v = row[column].as_f64().unwrap_or(0.0);
    if column.ends_with("_IN_MICRO_DOLLAR") {
        v as i64
    } else {
        (v * 1_000_000.0).round() as i64
    }
}

/// What `/v1/insights` must answer for `rows` (the analytics fixture, with
/// the restated day in place when `restated`), computed from the JSON itself.
fn expected(restated: bool) -> BTreeMap<(String, String), Value> {
    let mut rows: Vec<Value> =
        serde_json::from_str(&fixture("analytics_campaigns.json")).expect("json");
    if restated {
        let new: Vec<Value> =
            serde_json::from_str(&fixture("analytics_restated.json")).expect("json");
        for r in rows.iter_mut() {
            if let Some(s) = new
                .iter()
                .find(|s| s["DATE"] == r["DATE"] && s["CAMPAIGN_ID"] == r["CAMPAIGN_ID"])
            {
                *r = s.clone();
            }
        }
    }
    let mut sums: BTreeMap<(String, String), [i64; 5]> = BTreeMap::new();
    for r in &rows {
        let key = (
            r["DATE"].as_str().unwrap_or_default().to_owned(),
            r["CAMPAIGN_ID"].as_str().unwrap_or_default().to_owned(),
        );
        let s = sums.entry(key).or_default();
        s[0] += micros(r, "IMPRESSION_1") / 1_000_000;
        s[1] += micros(r, "CLICKTHROUGH_1") / 1_000_000;
        s[2] += micros(r, "SPEND_IN_MICRO_DOLLAR");
        s[3] += micros(r, "TOTAL_CONVERSIONS");
        s[4] += micros(r, "TOTAL_CHECKOUT_VALUE_IN_MICRO_DOLLAR");
    }
    let units = |m: i64| m as f64 / 1_000_000.0;
    sums.into_iter()
        .map(|((date, campaign), s)| {
            let row = json!({"date": date, "platform": "pinterest", "campaign_id": campaign, "currency": "USD",
                "impressions": s[0], "clicks": s[1], "spend": units(s[2]), "conversions": units(s[3]),
                "conversion_value": units(s[4])});
            ((date, campaign), row)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_list_campaigns_then_their_analytics_and_land_exact_totals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fake, base) = start_fake().await;

    // The fake refuses what Pinterest refuses.
    let client = reqwest::Client::new();
    let analytics_url = format!("{base}/v5/ad_accounts/{ACCOUNT}/campaigns/analytics");
    let answer = client
        .get(&analytics_url)
        .bearer_auth("wrong")
        .send()
        .await
        .expect("send");
    assert_eq!(answer.status(), 401);
    let body: Value = answer.json().await.expect("json");
    assert_eq!(
        body,
        json!({"code": 2, "message": "Authentication failed."})
    );
    let answer = client
        .get(&analytics_url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("send");
    assert_eq!(
        answer.status(),
        429,
        "the first analytics call is rate limited"
    );
    for query in [
        "",
        "start_date=2026-11-01&end_date=2026-11-14&columns=SPEND_IN_MICRO_DOLLAR&granularity=DAY",
        "start_date=2026-11-01&end_date=2027-02-01&campaign_ids=626744128982&columns=SPEND_IN_MICRO_DOLLAR&granularity=DAY",
        "start_date=2026-11-01&end_date=2026-11-14&campaign_ids=626744128982&columns=SPEND&granularity=DAY",
        "start_date=2026-11-01&end_date=2026-11-14&campaign_ids=626744128982&columns=SPEND_IN_MICRO_DOLLAR",
    ] {
        let answer = client.get(format!("{analytics_url}?{query}")).bearer_auth(TOKEN).send().await.expect("send");
        assert_eq!(answer.status(), 400, "{query}");
    }
    if let Ok(mut seen) = fake.analytics.lock() {
        seen.clear();
    }
    fake.analytics_calls.store(0, Ordering::SeqCst);

    std::env::set_var("ADPIPE_TEST_PIN_TOKEN", TOKEN);
    std::env::set_var("ADPIPE_TEST_PIN_REVOKED", "revoked-token");
    let mut pinterest = pipeline("pinterest", "demo", "pinterest");
    pinterest.pull = pull(&base, "ADPIPE_TEST_PIN_TOKEN");
    pinterest.currency = Some("USD".into());
    let mut revoked = pipeline("pinterest-revoked", "demo", "pinterest");
    revoked.pull = pull(&base, "ADPIPE_TEST_PIN_REVOKED");
    revoked.currency = Some("USD".into());
    let app = App::start(config(
        &dir,
        vec![plugin("pinterest")],
        vec![pinterest, revoked],
    ))
    .await
    .expect("start");

    // A wrong token: Pinterest's 401, and the run says so.
    let run = pull_now(&app, "pinterest-revoked").await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("401") && error.contains("Authentication failed."),
        "{run}"
    );

    // Listing page 1 → analytics of its 2 campaigns (after a 429, retried) →
    // listing page 2 (bookmark) → analytics of its campaign.
    let run = pull_now(&app, "pinterest").await;
    assert_eq!(
        (
            run["status"].as_str(),
            run["pages"].as_i64(),
            run["rows"].as_i64(),
            run["retries"].as_i64()
        ),
        (Some("ok"), Some(4), Some(6), Some(1)),
        "{run}"
    );
    let listings = fake.listings.lock().map(|l| l.clone()).unwrap_or_default();
    let analytics = fake.analytics.lock().map(|a| a.clone()).unwrap_or_default();
    // The revoked pipeline's call never got past the token.
    assert_eq!(listings.len(), 2, "{listings:?}");
    assert!(listings[0].ends_with("&page_size=250"), "{listings:?}");
    assert!(
        listings[1].contains("&bookmark=Y2FtcGFpZ25zOjYyNjc0NDEyODk4Mw%2B%2F%3D%3D"),
        "{listings:?}"
    );
    assert_eq!(analytics.len(), 2, "{analytics:?}");
    assert!(
        analytics[0].contains("&campaign_ids=626744128982&campaign_ids=626744128983&columns="),
        "{analytics:?}"
    );
    assert!(
        analytics[1].contains("&campaign_ids=626744128990&columns="),
        "{analytics:?}"
    );
    for query in &analytics {
        assert!(
            query.ends_with("&granularity=DAY") && !query.contains('#'),
            "{query}"
        );
        // The pull's window: the default 30-day lookback ending today.
        let q = pairs(&Some(query.clone()));
        let day = |k: &str| {
            chrono::NaiveDate::parse_from_str(values(&q, k)[0], "%Y-%m-%d").expect("date")
        };
        assert_eq!(
            (day("end_date") - day("start_date")).num_days(),
            29,
            "{query}"
        );
    }

    // Totals equal the sums computed from the fixture, campaign by campaign, day by day.
    assert_eq!(daily(&app).await, expected(false));
    let names = insights(&app, "from=2026-11-01&to=2026-11-02&granularity=total&group_by=campaign_id&platform=pinterest&metrics=spend").await;
    assert!(
        names.iter().any(|r| r["campaign_id"] == "626744128990"
            && r["campaign_name"] == "Brand Awareness – Video"),
        "{names:?}"
    );
    let extras = insights(&app, "from=2026-11-01&to=2026-11-02&granularity=total&platform=pinterest&metrics=outbound_clicks,saves").await;
    assert_eq!(
        (
            extras[0]["outbound_clicks"].clone(),
            extras[0]["saves"].clone()
        ),
        (json!(95 + 102 + 51 + 33), json!(41 + 37 + 6 + 3)),
        "{extras:?}"
    );

    // A restated day comes back in the window and replaces the old figures.
    fake.restated.store(true, Ordering::SeqCst);
    let run = pull_now(&app, "pinterest").await;
    assert_eq!(
        (run["status"].as_str(), run["rows"].as_i64()),
        (Some("ok"), Some(6)),
        "{run}"
    );
    let after = daily(&app).await;
    assert_eq!(after, expected(true));
    assert_ne!(after, expected(false));
}
