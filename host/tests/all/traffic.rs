//! Genuine platform traffic the 0.2.0 interface carries: breakdown rows that
//! sum without double counting, leads filed in the pipeline's time zone, and
//! pipeline options and API versions checked against what the adapter declares
//! (at start, by `adpipe check`, in `/readyz` and the metrics).

use std::process::{Command, Stdio};

use adpipe::app::App;
use adpipe::auth::Role;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::api::{leadgen, meta_row, page, signed, webhook};
use crate::common::*;

async fn insights(app: &App, query: &str) -> Vec<Value> {
    let viewer = token("demo", &[Role::Viewer], 60);
    let answer = send(app, get(&format!("/v1/insights?{query}"), Some(&viewer))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.json["rows"].as_array().cloned().unwrap_or_default()
}

async fn push(app: &App, body: String) -> Value {
    let ingest = token("demo", &[Role::Ingest], 60);
    let answer = send(app, post("/v1/pipelines/meta/reports", Some(&ingest), body)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    answer.json
}

fn with_breakdown(mut row: Value, dimension: &str, value: &str) -> Value {
    row[dimension] = json!(value);
    row
}

/// The issue's own example: ad 30 on 2026-11-01 reported by age, 18-24 (100
/// impressions, 1 click, 1.00 spend) and 25-34 (300, 3, 3.00), answers
/// 400/4/4.00, across pages, restated per breakdown row, and never double
/// counted with the same day's unbroken-down or gender report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakdown_rows_are_each_kept_and_sum_without_double_counting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = meta_app(&dir).await;
    let day = "2026-11-01";
    let query = "from=2026-11-01&to=2026-11-01&granularity=day&group_by=campaign_id&metrics=impressions,clicks,spend";
    let young = with_breakdown(
        meta_row("c3", "s3", "30", day, 100, 1, "1.00", 0),
        "age",
        "18-24",
    );
    let older = with_breakdown(
        meta_row("c3", "s3", "30", day, 300, 3, "3.00", 0),
        "age",
        "25-34",
    );
    // Two pages of one breakdown report: page 2 does not replace page 1.
    assert_eq!(push(&app, page(vec![young.clone()])).await["accepted"], 1);
    assert_eq!(push(&app, page(vec![older])).await["accepted"], 1);
    let totals = |rows: &[Value]| {
        (
            rows[0]["impressions"].as_i64(),
            rows[0]["clicks"].as_i64(),
            rows[0]["spend"].as_f64(),
        )
    };
    let rows = insights(&app, query).await;
    assert_eq!(totals(&rows), (Some(400), Some(4), Some(4.0)), "{rows:?}");

    // A restated 18-24 row replaces only itself.
    let restated = with_breakdown(
        meta_row("c3", "s3", "30", day, 150, 2, "1.50", 0),
        "age",
        "18-24",
    );
    push(&app, page(vec![restated])).await;
    let rows = insights(&app, query).await;
    assert_eq!(totals(&rows), (Some(450), Some(5), Some(4.5)), "{rows:?}");

    // A gender breakdown of the same spend: one breakdown counts, not both.
    let female = with_breakdown(
        meta_row("c3", "s3", "30", day, 200, 2, "2.00", 0),
        "gender",
        "female",
    );
    let male = with_breakdown(
        meta_row("c3", "s3", "30", day, 250, 3, "2.50", 0),
        "gender",
        "male",
    );
    push(&app, page(vec![female, male])).await;
    let rows = insights(&app, query).await;
    assert_eq!(totals(&rows), (Some(450), Some(5), Some(4.5)), "{rows:?}");

    // The unbroken-down row of the same ad-day wins over every breakdown.
    push(
        &app,
        page(vec![meta_row("c3", "s3", "30", day, 460, 6, "4.60", 0)]),
    )
    .await;
    let rows = insights(&app, query).await;
    assert_eq!(totals(&rows), (Some(460), Some(6), Some(4.6)), "{rows:?}");
}

/// A lead created at 23:30 in New York (04:30 UTC the next day) lands on the
/// New York day of its spend when the pipeline says `timezone =
/// "America/New_York"`, and on the UTC day without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leads_are_filed_under_the_day_of_the_pipeline_time_zone() {
    let secret = "tz-app-secret";
    std::env::set_var("ADPIPE_TEST_TZ_APP_SECRET", secret);
    for (zone, expected_day) in [("America/New_York", "2025-10-31"), ("UTC", "2025-11-01")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut meta = pipeline("meta", "demo", "meta");
        meta.webhook_secret_env = Some("ADPIPE_TEST_TZ_APP_SECRET".into());
        meta.timezone = zone.parse().expect("zone");
        let app = App::start(config(&dir, vec![plugin("meta")], vec![meta]))
            .await
            .expect("start");
        // The ad's report, so the lead can be placed (its campaign comes from reports).
        push(
            &app,
            page(vec![
                meta_row("c7", "s7", "a7", "2025-10-31", 1000, 10, "10.00", 0),
                meta_row("c7", "s7", "a7", "2025-11-01", 1000, 10, "10.00", 0),
            ]),
        )
        .await;
        // created_time 2025-11-01T03:30:00Z = 23:30 on 2025-10-31 in New York (EDT).
        let body = leadgen("TZ1", "a7", "a7").replace("1761998400", "1761967800");
        assert!(body.contains("1761967800"), "{body}");
        let answer = send(&app, webhook(&body, Some(&signed(secret, &body)))).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
        let rows = insights(
            &app,
            "from=2025-10-31&to=2025-11-01&granularity=day&group_by=campaign_id&metrics=leads,spend",
        )
        .await;
        let leads: Vec<(String, f64)> = rows
            .iter()
            .filter(|r| r["leads"].as_f64().unwrap_or(0.0) > 0.0)
            .map(|r| {
                (
                    r["date"].as_str().unwrap_or("").to_owned(),
                    r["leads"].as_f64().unwrap_or(0.0),
                )
            })
            .collect();
        assert_eq!(
            leads,
            vec![(expected_day.to_owned(), 1.0)],
            "{zone}: {rows:?}"
        );
    }
}

/// An option the adapter does not declare (a misspelling) is an error in
/// `adpipe check`, naming the option and the closest declared one; at start
/// it is a warning — the pipeline serves without it and `/readyz` and
/// `GET /v1/pipelines` say so. A declared option with a bad value stops the start.
/// An API version past its sunset fails `check`; one near it is a warning in
/// `check`, in `/readyz` and in the sunset metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_and_api_versions_are_checked_against_the_adapter() {
    // At start.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut meta = pipeline("meta", "demo", "meta");
    meta.options.insert(
        "conversion_action_type".into(),
        adpipe::config::OptionValue::Text("purchase".into()),
    );
    let app = App::start(config(&dir, vec![plugin("meta")], vec![meta.clone()]))
        .await
        .expect("an undeclared option is a warning at start");
    let ready = send(&app, get("/readyz", None)).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert!(
        ready.text.contains("option `conversion_action_type`")
            && ready
                .text
                .contains("did you mean `conversion_action_types`")
            && ready.text.contains("(ignored)"),
        "{}",
        ready.text
    );
    let admin = token("demo", &[Role::Admin], 60);
    let listed = send(&app, get("/v1/pipelines", Some(&admin))).await;
    assert!(
        listed.json["pipelines"][0]["unknown_options"][0]
            .as_str()
            .is_some_and(|w| w.contains("conversion_action_type")),
        "{}",
        listed.text
    );
    // The pipeline serves without it: a Meta page lands.
    let page = send(
        &app,
        post(
            "/v1/pipelines/meta/reports",
            Some(&admin),
            std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../plugins/adapters/meta/tests/fixtures/insights_campaign.json"),
            )
            .expect("fixture"),
        ),
    )
    .await;
    assert_eq!(page.status, StatusCode::ACCEPTED, "{}", page.text);
    drop(app);
    // A declared option with a value the adapter cannot take still stops the start.
    let dir = tempfile::tempdir().expect("tempdir");
    meta.options.clear();
    meta.options.insert(
        "api_version".into(),
        adpipe::config::OptionValue::Text("v1".into()),
    );
    match App::start(config(&dir, vec![plugin("meta")], vec![meta])).await {
        Ok(_) => panic!("an API version Meta does not speak must stop the start"),
        Err(e) => assert!(
            e.to_string().contains("`v1` is not a meta API version"),
            "{e}"
        ),
    }

    // Through `adpipe check` and a running server.
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |extra: &str| {
        let path = dir.path().join("adpipe.toml");
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nwatch_plugins = false\n\n\
                 [[plugins]]\nname = \"google\"\npath = \"{}\"\n\n\
                 [[pipelines]]\nname = \"google\"\ntenant = \"demo\"\nadapter = \"google\"\n{extra}",
                dir.path().join("data").display(),
                plugin_path("google").display()
            ),
        )
        .expect("write config");
        path
    };
    let check = |path: &std::path::Path| {
        let output = Command::new(env!("CARGO_BIN_EXE_adpipe"))
            .args(["check", "--config"])
            .arg(path)
            .env("ADPIPE_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run adpipe check");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (code, text) = check(&write("[pipelines.options]\nlevel = \"ad_group\"\n"));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("plugins loaded"), "{text}");
    let (code, text) = check(&write("[pipelines.options]\nlevl = \"ad_group\"\n"));
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("options.levl") && text.contains("did you mean `level`"),
        "{text}"
    );
    let (code, text) = check(&write("[pipelines.options]\napi_version = \"v21\"\n"));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("`v21` is not a google API version"), "{text}");

    // A file that is no component: one line that says what to do, no hex dump.
    for (bytes, says) in [
        (
            b"\x8f\x5e\x73\x27 not wasm at all".to_vec(),
            "not a WebAssembly file",
        ),
        (
            b"\0asm\x01\0\0\0".to_vec(),
            "a core WebAssembly module, not a component",
        ),
    ] {
        let junk = dir.path().join("junk.wasm");
        std::fs::write(&junk, bytes).expect("write junk");
        let config = dir.path().join("junk.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\ndata_dir = \"{}\"\n\n[[plugins]]\nname = \"junk\"\npath = \"{}\"\n",
                dir.path().join("data").display(),
                junk.display()
            ),
        )
        .expect("write config");
        let (code, text) = check(&config);
        assert_eq!(code, Some(2), "{text}");
        let problem: Vec<&str> = text.lines().filter(|l| l.contains("`junk`")).collect();
        assert_eq!(problem.len(), 1, "{text}");
        assert!(problem[0].contains(says), "{text}");
        assert!(!text.contains("0x"), "no hex dump: {text}");
    }

    // v23's (projected) sunset, 2027-02-01: today is within 60 days of it
    // until then, past it afterwards; either way the operator hears of it.
    let today = chrono::Utc::now().date_naive();
    let sunset = chrono::NaiveDate::from_ymd_opt(2027, 2, 1).expect("date");
    let days_left = sunset.signed_duration_since(today).num_days();
    let (code, text) = check(&write("[pipelines.options]\napi_version = \"v23\"\n"));
    if days_left > 0 && days_left <= 60 {
        assert_eq!(code, Some(0), "{text}");
        assert!(
            text.contains("warning") && text.contains("sunsets on 2027-02-01"),
            "{text}"
        );
        assert!(text.contains("api_version = \"v26\""), "{text}");
    } else if days_left <= 0 {
        assert_eq!(code, Some(2), "{text}");
        assert!(text.contains("reached its sunset on 2027-02-01"), "{text}");
    }
    let config = write("[pipelines.options]\napi_version = \"v23\"\n");
    let server = Server::spawn(&config, &[("ADPIPE_JWT_SECRET", JWT_SECRET)], &[]);
    let client = reqwest::Client::new();
    let ready: Value = client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    let warnings = ready["warnings"].as_array().cloned().unwrap_or_default();
    if days_left <= 60 {
        assert!(
            warnings.iter().any(|w| w
                .as_str()
                .is_some_and(|w| w.contains("google API version v23"))),
            "{ready}"
        );
    }
    let operator = token("demo", &[Role::Operator], 60);
    let metrics = client
        .get(format!("{}/metrics", server.base))
        .bearer_auth(&operator)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(&format!(
            "adpipe_platform_api_sunset_days{{pipeline=\"google\",platform=\"google\",api_version=\"v23\"}} {days_left}"
        )),
        "{metrics}"
    );
}
