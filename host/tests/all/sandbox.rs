//! Plugin isolation: a panicking, looping, memory-hungry or deeply recursive
//! plugin fails its call with a clear error and never takes the host down;
//! the next call on the same adapter works.

use std::time::{Duration, Instant};

use adpipe::auth::Role;
use adpipe::plugin::{Adapter, CallError, Limits, ParseContext, Runtime};
use axum::http::StatusCode;

use crate::common::*;

fn misbehaving(limits: Limits) -> Adapter {
    Runtime::new()
        .expect("engine")
        .load_adapter("misbehaving", &plugin_path("misbehaving"), limits)
        .expect("load misbehaving plugin")
}

fn limits() -> Limits {
    Limits {
        time_limit: Duration::from_millis(200),
        memory_bytes: 32 * 1024 * 1024,
        fuel: None,
    }
}

fn ctx() -> ParseContext {
    ParseContext {
        options: vec![],
        account_id: None,
        currency: None,
        received_at_ms: 0,
    }
}

fn assert_still_works(adapter: &Adapter) {
    let batch = adapter
        .parse_report(b"fine", &ctx())
        .expect("a good payload still parses");
    assert_eq!(batch.rows.kind.len(), 1);
    assert_eq!(batch.rows.impressions[0], 100);
}

#[test]
fn a_panic_fails_only_that_call() {
    let adapter = misbehaving(limits());
    match adapter.parse_report(b"panic", &ctx()) {
        Err(CallError::Trapped { detail, .. }) => assert!(detail.contains("panicked"), "{detail}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_still_works(&adapter);
    let counters = adapter.counters();
    assert_eq!(
        (counters.calls, counters.failures, counters.rejections),
        (3, 1, 0),
        "describe + panic + good call"
    );
}

#[test]
fn an_infinite_loop_hits_the_time_limit() {
    let adapter = misbehaving(limits());
    let started = Instant::now();
    let result = adapter.parse_report(b"loop", &ctx());
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(CallError::Timeout { limit_ms: 200, .. })),
        "{result:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(190),
        "stopped too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "deadline not enforced promptly: {elapsed:?}"
    );
    assert_still_works(&adapter);
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let adapter = misbehaving(limits());
    let result = adapter.parse_report(b"oom", &ctx());
    assert!(
        matches!(result, Err(CallError::OutOfMemory { limit_mb: 32, .. })),
        "{result:?}"
    );
    assert_still_works(&adapter);
}

#[test]
fn runaway_recursion_traps() {
    let adapter = misbehaving(limits());
    let result = adapter.parse_report(b"recurse", &ctx());
    assert!(
        matches!(result, Err(CallError::Trapped { .. })),
        "{result:?}"
    );
    assert_still_works(&adapter);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_answers_an_error_and_keeps_the_payload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bad = pipeline("bad", "demo", "misbehaving");
    bad.currency = Some("USD".into());
    let config = config(&dir, vec![plugin("misbehaving")], vec![bad]);
    let app = adpipe::app::App::start(config).await.expect("start");
    let token = token("demo", &[Role::Ingest, Role::Analyst], 60);

    for (payload, code) in [
        ("loop", "plugin_timeout"),
        ("panic", "plugin_failed"),
        ("oom", "plugin_out_of_memory"),
    ] {
        let answer = send(
            &app,
            post("/v1/pipelines/bad/reports", Some(&token), payload),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{payload}: {}",
            answer.text
        );
        assert_eq!(answer.code(), code, "{}", answer.text);
        assert!(
            answer.json["error"]["dead_letter_id"].is_string(),
            "{}",
            answer.text
        );
    }
    let ok = send(
        &app,
        post("/v1/pipelines/bad/reports", Some(&token), "fine"),
    )
    .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.text);
    assert_eq!(ok.json["accepted"], 1);

    let letters = send(&app, get("/v1/dead-letters", Some(&token))).await;
    assert_eq!(letters.status, StatusCode::OK);
    let list = letters.json["dead_letters"].as_array().expect("list");
    assert_eq!(list.len(), 3);
    let mut codes: Vec<_> = list
        .iter()
        .map(|l| l["code"].as_str().unwrap_or(""))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        ["plugin_failed", "plugin_out_of_memory", "plugin_timeout"]
    );
    assert!(list.iter().all(|l| l["size"].as_i64() >= Some(3)));
}

#[test]
fn fuel_budgets_stop_runaway_plugins() {
    let limits = Limits {
        fuel: Some(50_000_000),
        ..limits()
    };
    let adapter = Runtime::with_fuel(true)
        .expect("metered engine")
        .load_adapter("misbehaving", &plugin_path("misbehaving"), limits)
        .expect("load");
    let result = adapter.parse_report(b"loop", &ctx());
    assert!(
        matches!(
            result,
            Err(CallError::OutOfFuel {
                fuel: 50_000_000,
                ..
            })
        ),
        "{result:?}"
    );
    assert_still_works(&adapter);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_sets_its_own_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut strict = pipeline("strict", "demo", "misbehaving");
    strict.time_limit_ms = Some(50);
    strict.currency = Some("USD".into());
    let mut lenient = pipeline("lenient", "demo", "misbehaving");
    lenient.currency = Some("USD".into());
    let config = config(&dir, vec![plugin("misbehaving")], vec![strict, lenient]);
    let app = adpipe::app::App::start(config).await.expect("start");
    let token = token("demo", &[Role::Ingest], 60);
    let answer = send(
        &app,
        post("/v1/pipelines/strict/reports", Some(&token), "loop"),
    )
    .await;
    assert_eq!(answer.code(), "plugin_timeout");
    assert!(
        answer.json["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("50 ms"),
        "{}",
        answer.text
    );
    let answer = send(
        &app,
        post("/v1/pipelines/lenient/reports", Some(&token), "loop"),
    )
    .await;
    assert!(
        answer.json["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("500 ms"),
        "{}",
        answer.text
    );
}
