//! Microsoft Advertising through wasmtime and against a fake of its
//! Reporting API v13.
//!
//! - Every fixture (report files as CSV, TSV and the ZIP download, Submit and
//!   Poll answers, REST and SOAP faults) parses to the same rows, extras,
//!   notices and next page in the sandbox as natively, also as a page of a
//!   pull (whose URL drives the next poll); rejections keep their kind, path
//!   and message; the planned Submit is the same.
//! - A pull runs Submit → Poll (Pending) → Poll (Success) → download against a
//!   fake that refuses what the service refuses (no bearer token or developer
//!   token: its `AdApiFaultDetail` 105; a report request it would not accept:
//!   its `ApiFaultDetail`; an unknown report request id; a download carrying
//!   the OAuth token), and lands totals in `/v1/insights` equal to sums
//!   computed from the fixture; a restated day replaces the old figures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use adpipe::app::App;
use adpipe::auth::Role;
use adpipe::config::{OptionValue, PullConfig};
use adpipe::plugin::bindings::adapter::adpipe::plugin::types as wit;
use adpipe::plugin::CallError;
use adpipe_plugin_microsoft::Microsoft;
use adpipe_plugin_sdk as sdk;
use adpipe_plugin_sdk::Adapter as _;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing;
use axum::Router;
use serde_json::{json, Value};

use crate::common::*;
use crate::parity::*;

const ACCOUNT: &str = "187654321";
const CUSTOMER: &str = "251186883";
const TOKEN: &str = "ms-token";
const DEV_TOKEN: &str = "ms-dev-token";

fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/adapters/microsoft/tests/fixtures")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_fixture_parses_identically_in_the_sandbox_and_natively() {
    let component = component("microsoft");
    describes_alike::<Microsoft>(&component, "microsoft", &["v13"]);
    let info = component.info();
    assert_eq!(
        info.extra_metrics,
        vec!["all_conversions", "view_through_conversions"]
    );

    // The Submit of a pull, planned alike.
    let options = vec![
        ("customer_id".to_owned(), CUSTOMER.to_owned()),
        ("level".to_owned(), "ad".to_owned()),
    ];
    let (since, until) = (
        sdk::Date::new(2026, 11, 1).expect("d"),
        sdk::Date::new(2026, 11, 14).expect("d"),
    );
    let native_plan = Microsoft::plan_pull(&sdk::PullRequest {
        account_id: ACCOUNT.into(),
        from: since,
        to: until,
        base_url: None,
        options: options.clone(),
    })
    .expect("plan");
    let wasm_plan = component
        .plan_pull(&adpipe::plugin::PullRequest {
            account_id: ACCOUNT.into(),
            since: wasm_date(since),
            until: wasm_date(until),
            base_url: None,
            options: options.clone(),
        })
        .expect("plan in the sandbox");
    assert_eq!(
        native_plan.iter().map(native_request).collect::<Vec<_>>(),
        wasm_plan.iter().map(wasm_request).collect::<Vec<_>>()
    );

    // Contexts: a pushed report; the Submit's answer as a page of a pull; a
    // Poll's answer as a page of a pull (its URL carries the request id).
    let pushed = sdk::ParseContext {
        account_id: Some(ACCOUNT.into()),
        currency: Some("USD".into()),
        ..Default::default()
    };
    let mut submitted = pushed.clone();
    submitted.options = options.clone();
    submitted
        .options
        .push(("request.url".into(), fetched_url(&native_plan[0])));
    let poll = Microsoft::parse_report(&fixture("submit_response.json"), &submitted)
        .expect("submit answer")
        .next_page
        .expect("poll");
    let mut polled = pushed.clone();
    polled.options = options;
    polled
        .options
        .push(("request.url".into(), fetched_url(&poll)));
    let no_account = sdk::ParseContext {
        account_id: None,
        ..pushed.clone()
    };

    let (mut parsed, mut next_pages, mut refused) = (0, 0, 0);
    for (name, bytes) in crate::parity::fixtures("microsoft", 15) {
        for ctx in [&pushed, &submitted, &polled, &no_account] {
            let wasm_ctx = wit::ParseContext {
                options: ctx.options.clone(),
                account_id: ctx.account_id.clone(),
                currency: ctx.currency.clone(),
                received_at_ms: 0,
            };
            match (
                Microsoft::parse_report(&bytes, ctx),
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
                    refused += 1;
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
    assert!(parsed > 60, "{parsed} rows");
    assert!(next_pages >= 9, "{next_pages} next pages");
    assert!(refused >= 16, "{refused} refusals");
}

// ---- a fake Reporting API -------------------------------------------------------

/// What the fake counts and serves.
#[derive(Default)]
struct Fake {
    base: std::sync::OnceLock<String>,
    /// Report request ids handed out, with the polls each has had.
    requests: Mutex<BTreeMap<String, u32>>,
    next_id: AtomicU32,
    /// Serve the restated report (later figures for 2026-11-01).
    restated: AtomicBool,
    /// Whether the developer token reached the storage host too (it must
    /// not: the download asks for no credential).
    developer_token_at_download: AtomicBool,
    /// When each poll arrived (the host waits before polling again).
    poll_times: Mutex<Vec<std::time::Instant>>,
    downloads: AtomicU32,
}

type Shared = Arc<Fake>;

/// `AdApiFaultDetail` as the REST endpoints return it.
fn ad_api_fault(status: StatusCode, code: u32, error_code: &str, message: &str) -> Response {
    let body = json!({"Errors": [{"Code": code, "Detail": null, "ErrorCode": error_code, "Message": message}],
                      "TrackingId": "00000000-0000-0000-0000-000000000001", "Type": "AdApiFaultDetail"});
    (status, body.to_string()).into_response()
}

/// `ApiFaultDetail` with one operation error.
fn api_fault(code: u32, error_code: &str, message: &str) -> Response {
    let body = json!({"OperationErrors": [{"Code": code, "ErrorCode": error_code, "Details": null, "Message": message}],
                      "BatchErrors": [], "TrackingId": "00000000-0000-0000-0000-000000000002", "Type": "ApiFaultDetail"});
    (StatusCode::BAD_REQUEST, body.to_string()).into_response()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The service's authentication: OAuth bearer token and developer token.
fn unauthenticated(headers: &HeaderMap) -> Option<Response> {
    if header(headers, "authorization") != format!("Bearer {TOKEN}")
        || header(headers, "developertoken") != DEV_TOKEN
    {
        return Some(ad_api_fault(
            StatusCode::UNAUTHORIZED,
            105,
            "InvalidCredentials",
            "Authentication failed. Either supplied credentials are invalid or the account is inactive",
        ));
    }
    if header(headers, "customerid") != CUSTOMER || header(headers, "customeraccountid") != ACCOUNT
    {
        return Some(ad_api_fault(
            StatusCode::UNAUTHORIZED,
            106,
            "UserIsNotAuthorized",
            "The user does not represent a authorized developer.",
        ));
    }
    None
}

/// Why the service would not accept this report request, if it would not.
fn bad_report_request(body: &Value) -> Option<String> {
    let r = &body["ReportRequest"];
    let report = r["Type"].as_str().unwrap_or("");
    if ![
        "CampaignPerformanceReportRequest",
        "AdGroupPerformanceReportRequest",
        "AdPerformanceReportRequest",
    ]
    .contains(&report)
    {
        return Some(format!("unexpected report type `{report}`"));
    }
    if r["Format"] != "Csv" || !matches!(r["Aggregation"].as_str(), Some("Daily" | "Hourly")) {
        return Some(format!(
            "format {} aggregation {}",
            r["Format"], r["Aggregation"]
        ));
    }
    let columns: Vec<&str> = r["Columns"]
        .as_array()
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for required in ["TimePeriod", "CampaignId", "Impressions", "Spend"] {
        if !columns.contains(&required) {
            return Some(format!("column {required} missing"));
        }
    }
    if r["Scope"]["AccountIds"] != json!([ACCOUNT.parse::<u64>().unwrap_or(0)]) {
        return Some(format!("scope {}", r["Scope"]));
    }
    let day = |d: &Value| {
        Some((
            d["Year"].as_u64()?,
            d["Month"].as_u64()?,
            d["Day"].as_u64()?,
        ))
    };
    match (
        day(&r["Time"]["CustomDateRangeStart"]),
        day(&r["Time"]["CustomDateRangeEnd"]),
    ) {
        (Some(start), Some(end)) if start <= end => None,
        _ => Some(format!("time {}", r["Time"])),
    }
}

async fn submit(State(fake): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Some(refusal) = unauthenticated(&headers) {
        return refusal;
    }
    let Ok(body) = serde_json::from_str::<Value>(&body) else {
        return api_fault(100, "NullRequest", "The request message is null.");
    };
    if let Some(why) = bad_report_request(&body) {
        return api_fault(2001, "InvalidReportRequest", &why);
    }
    let id = format!(
        "3000000026362{:04}",
        fake.next_id.fetch_add(1, Ordering::SeqCst)
    );
    if let Ok(mut requests) = fake.requests.lock() {
        requests.insert(id.clone(), 0);
    }
    json!({"ReportRequestId": id}).to_string().into_response()
}

async fn poll(State(fake): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Some(refusal) = unauthenticated(&headers) {
        return refusal;
    }
    let id = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|b| b["ReportRequestId"].as_str().map(str::to_owned))
        .unwrap_or_default();
    if let Ok(mut times) = fake.poll_times.lock() {
        times.push(std::time::Instant::now());
    }
    let polls = fake.requests.lock().ok().and_then(|mut r| {
        let polls = r.get_mut(&id)?;
        *polls += 1;
        Some(*polls)
    });
    match polls {
        None => api_fault(
            2100,
            "InvalidReportRequestId",
            "The specified report request identifier is not valid.",
        ),
        // Reports take a while: the first poll finds it pending.
        Some(1) => json!({"ReportRequestStatus": {"ReportDownloadUrl": null, "Status": "Pending"}})
            .to_string()
            .into_response(),
        Some(_) => {
            let base = fake.base.get().cloned().unwrap_or_default();
            let url = format!(
                "{base}/download-reportdownload/{id}.zip?sv=2021-08-06&sr=b&sp=r&sig=c2lnbmF0dXJl%2BZmFrZQ%3D%3D"
            );
            json!({"ReportRequestStatus": {"ReportDownloadUrl": url, "Status": "Success"}})
                .to_string()
                .into_response()
        }
    }
}

async fn download(
    State(fake): State<Shared>,
    UrlPath(file): UrlPath<String>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    // Pre-signed blob storage: the signature is the query; an OAuth token
    // does not belong here.
    if query.get("sig").map(String::as_str) != Some("c2lnbmF0dXJl+ZmFrZQ==")
        || headers.contains_key("authorization")
    {
        return (
            StatusCode::FORBIDDEN,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code></Error>",
        )
            .into_response();
    }
    assert!(file.ends_with(".zip"), "{file}");
    fake.downloads.fetch_add(1, Ordering::SeqCst);
    if headers.contains_key("developertoken") {
        fake.developer_token_at_download
            .store(true, Ordering::SeqCst);
    }
    let zip = if fake.restated.load(Ordering::SeqCst) {
        adpipe_plugin_microsoft::zip::archive(
            "30000000263620150.csv",
            &fixture("campaign_restated.csv"),
            true,
        )
    } else {
        fixture("campaign_daily.zip")
    };
    ([("content-type", "application/octet-stream")], zip).into_response()
}

async fn start_fake() -> (Shared, String) {
    let fake: Shared = Arc::default();
    let router = Router::new()
        .route(
            "/Reporting/v13/GenerateReport/Submit",
            routing::post(submit),
        )
        .route("/Reporting/v13/GenerateReport/Poll", routing::post(poll))
        .route("/download-reportdownload/{file}", routing::get(download))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let _ = fake.base.set(base.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (fake, base)
}

fn pipeline_against(
    name: &str,
    base: &str,
    developer_token_env: &str,
) -> adpipe::config::PipelineConfig {
    let mut p = pipeline(name, "demo", "microsoft");
    p.pull = Some(PullConfig {
        accounts: vec![ACCOUNT.into()],
        every: None,
        lookback_days: None,
        base_url: Some(base.parse().expect("base url")),
        credential_env: Some("ADPIPE_TEST_MS_TOKEN".into()),
        header_envs: [("DeveloperToken".to_owned(), developer_token_env.to_owned())]
            .into_iter()
            .collect(),
        max_pages: 10,
        max_response_bytes: 64 * 1024 * 1024,
    });
    p.options
        .insert("customer_id".into(), OptionValue::Text(CUSTOMER.into()));
    p
}

async fn totals(app: &App) -> Vec<Value> {
    let viewer = token("demo", &[Role::Viewer], 60);
    let uri = "/v1/insights?from=2026-11-01&to=2026-11-02&granularity=day&group_by=campaign_id&platform=microsoft&metrics=impressions,clicks,spend,conversions,conversion_value";
    let answer = send(app, get(uri, Some(&viewer))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let mut rows = answer.json["rows"].as_array().cloned().unwrap_or_default();
    for row in rows.iter_mut() {
        if let Some(r) = row.as_object_mut() {
            r.remove("campaign_name");
        }
    }
    rows
}

/// Impressions, clicks, spend, conversions, conversion value (micros) and currency.
type Figures = (u64, u64, i64, i64, i64, String);

/// `/v1/insights` rows (day × campaign) computed from a report fixture.
fn expected(files: &[&str]) -> Vec<Value> {
    let ctx = sdk::ParseContext {
        account_id: Some(ACCOUNT.into()),
        ..Default::default()
    };
    let mut sums: BTreeMap<(String, String), Figures> = BTreeMap::new();
    for file in files {
        let b = Microsoft::parse_report(&fixture(file), &ctx).expect("fixture parses");
        for r in &b.rows {
            let campaign = b.str(r.campaign_id.expect("campaign")).to_owned();
            // A later file's row replaces the earlier one (a newer snapshot).
            sums.insert(
                (r.date.to_string(), campaign),
                (
                    r.impressions,
                    r.clicks,
                    r.spend_micros,
                    r.conversions_micros,
                    r.conversion_value_micros,
                    b.str(r.currency.expect("currency")).to_owned(),
                ),
            );
        }
    }
    let major = |micros: i64| micros as f64 / 1e6;
    sums.into_iter()
        .map(|((date, campaign), (imp, clicks, spend, conv, value, currency))| {
            json!({"date": date, "platform": "microsoft", "campaign_id": campaign, "currency": currency,
                   "impressions": imp, "clicks": clicks, "spend": major(spend),
                   "conversions": major(conv), "conversion_value": major(value)})
        })
        .collect()
}

fn sorted(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|r| (r["date"].to_string(), r["campaign_id"].to_string()));
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_submits_polls_downloads_and_lands_exact_totals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fake, base) = start_fake().await;
    std::env::set_var("ADPIPE_TEST_MS_TOKEN", TOKEN);
    std::env::set_var("ADPIPE_TEST_MS_DEV_TOKEN", DEV_TOKEN);
    std::env::set_var("ADPIPE_TEST_MS_WRONG_DEV_TOKEN", "not-the-developer-token");
    let good = pipeline_against("microsoft", &base, "ADPIPE_TEST_MS_DEV_TOKEN");
    let wrong = pipeline_against("microsoft-wrong", &base, "ADPIPE_TEST_MS_WRONG_DEV_TOKEN");
    let app = App::start(config(&dir, vec![plugin("microsoft")], vec![good, wrong]))
        .await
        .expect("start");

    // Submit, a Pending poll, a Success poll, the download.
    let run = pull_now(&app, "microsoft").await;
    assert_eq!(
        (
            run["status"].as_str(),
            run["pages"].as_i64(),
            run["rows"].as_i64(),
            run["retries"].as_i64()
        ),
        (Some("ok"), Some(4), Some(4), Some(0)),
        "{run}"
    );
    assert_eq!(run["account"], ACCOUNT);
    assert_eq!(fake.downloads.load(Ordering::SeqCst), 1);
    // The second poll (the same request again) came after the host's wait.
    let times = fake.poll_times.lock().expect("poll times").clone();
    assert_eq!(times.len(), 2);
    assert!(
        times[1] - times[0] >= std::time::Duration::from_millis(950),
        "polled again after {:?}",
        times[1] - times[0]
    );
    let first = sorted(totals(&app).await);
    assert_eq!(first, sorted(expected(&["campaign_daily.csv"])));
    assert_eq!(
        first[0],
        json!({"date": "2026-11-01", "platform": "microsoft", "campaign_id": "514000101", "currency": "USD",
               "impressions": 12_840, "clicks": 963, "spend": 412.37, "conversions": 41.5,
               "conversion_value": 3120.4})
    );

    // A later report restates 2026-11-01: its figures replace the old ones,
    // 2026-11-02 keeps the first pull's.
    fake.restated.store(true, Ordering::SeqCst);
    let run = pull_now(&app, "microsoft").await;
    assert_eq!(
        (
            run["status"].as_str(),
            run["pages"].as_i64(),
            run["rows"].as_i64()
        ),
        (Some("ok"), Some(4), Some(2)),
        "{run}"
    );
    let restated = sorted(totals(&app).await);
    assert_eq!(
        restated,
        sorted(expected(&["campaign_daily.csv", "campaign_restated.csv"]))
    );
    assert_eq!(restated[0]["spend"], json!(415.02));
    assert_eq!(restated[2], first[2], "2026-11-02 unchanged");

    // A wrong developer token: the service's 401 fails the run, and says why.
    let run = pull_now(&app, "microsoft-wrong").await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or("");
    assert!(
        error.contains("401") && error.contains("InvalidCredentials"),
        "{run}"
    );
    // The pipeline's secret headers go only with requests that ask for the
    // credential: never to the pre-signed download host.
    assert!(
        !fake.developer_token_at_download.load(Ordering::SeqCst),
        "the developer token reached the download host"
    );
}
