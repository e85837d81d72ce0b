//! Plugin lifecycle: hot reload under steady load (file watcher and admin
//! route, including a broken build), the precompiled-artifact cache, imports
//! refused at load, and the circuit breaker with dead-letter retry.

use std::path::Path;
use std::time::Duration;

use adpipe::app::App;
use adpipe::auth::Role;
use adpipe::plugin::{Limits, Runtime};
use axum::http::StatusCode;
use serde_json::Value;

use crate::common::*;

/// Copy atomically, as a deploy would (write aside, rename over).
fn deploy(from: &Path, to: &Path) {
    let partial = to.with_extension("partial");
    std::fs::copy(from, &partial).expect("copy plugin");
    std::fs::rename(&partial, to).expect("rename plugin");
}

async fn plugin_entry(app: &App, name: &str) -> Value {
    let admin = token("demo", &[Role::Admin, Role::Operator], 60);
    let list = send(app, get("/v1/plugins", Some(&admin))).await;
    list.json["plugins"]
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

async fn wait_for_version(app: &App, name: &str, version: &str) {
    for _ in 0..200 {
        if plugin_entry(app, name).await["version"] == version {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{name} never served {version}: {}",
        plugin_entry(app, name).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load_fails_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("mkdir");
    let live = plugins.join("adapter.wasm");
    deploy(&plugin_path("misbehaving"), &live);
    let mut plugin = plugin("misbehaving");
    plugin.path = live.clone();
    let mut p = pipeline("load", "demo", "misbehaving");
    p.currency = Some("USD".into());
    let mut config = config(&dir, vec![plugin], vec![p]);
    config.server.watch_plugins = true;
    let app = App::start(config).await.expect("start");
    let ingest = token("demo", &[Role::Ingest], 600);

    // Steady load: 4 writers posting distinct campaigns while the adapter is replaced.
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let (app, ingest) = (app.clone(), ingest.clone());
        writers.spawn(async move {
            let mut failures = Vec::new();
            for i in 0..60 {
                let answer = send(
                    &app,
                    post(
                        "/v1/pipelines/load/reports",
                        Some(&ingest),
                        format!("fine:w{w}-{i}"),
                    ),
                )
                .await;
                if answer.status != StatusCode::ACCEPTED {
                    failures.push(answer.text);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failures
        });
    }
    let admin = token("demo", &[Role::Admin, Role::Operator], 600);
    // 1. A new release through the file watcher.
    deploy(&plugin_path("misbehaving-v2"), &live);
    wait_for_version(&app, "misbehaving", "0.0.2").await;
    // 2. A broken build: rejected, the new release keeps serving.
    std::fs::write(&live, b"\0asm but not really a component").expect("write broken");
    let answer = send(
        &app,
        post("/v1/plugins/misbehaving/reload", Some(&admin), ""),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.text
    );
    assert_eq!(answer.json["result"]["outcome"], "rejected");
    assert_eq!(answer.json["result"]["serving_version"], "0.0.2");
    // 3. Back to the first release, through the route.
    deploy(&plugin_path("misbehaving"), &live);
    let answer = send(
        &app,
        post("/v1/plugins/misbehaving/reload", Some(&admin), ""),
    )
    .await;
    let outcome = answer.json["result"]["outcome"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        outcome == "reloaded" || outcome == "unchanged",
        "{}",
        answer.text
    ); // the watcher may have been first
    wait_for_version(&app, "misbehaving", "0.0.1").await;
    // 4. And once more to the new release.
    deploy(&plugin_path("misbehaving-v2"), &live);
    wait_for_version(&app, "misbehaving", "0.0.2").await;

    for failures in writers.join_all().await {
        assert!(
            failures.is_empty(),
            "requests failed during reloads: {failures:?}"
        );
    }
    // Nothing lost: every request's row is stored, each with the version that produced it.
    assert!(app.bus.settled(&app.store, Duration::from_secs(10)).await);
    let versions = app.store.adapter_versions("demo").await.expect("versions");
    let total: i64 = versions.iter().map(|v| v.rows).sum();
    assert_eq!(total, 240, "{versions:?}");
    assert!(
        versions
            .iter()
            .all(|v| v.adapter == "misbehaving" && (v.version == "0.0.1" || v.version == "0.0.2")),
        "{versions:?}"
    );
    let entry = plugin_entry(&app, "misbehaving").await;
    assert!(entry["reloads"].as_u64() >= Some(3), "{entry}");
    assert!(entry["rejected_reloads"].as_u64() >= Some(1), "{entry}");
    assert_eq!(entry["state"], "active");
    let metrics = send(&app, get("/metrics", Some(&admin))).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .text
            .contains("adpipe_plugin_reloads_total{plugin=\"misbehaving\",result=\"rejected\"} 1"),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains("adpipe_plugin_quarantined{plugin=\"misbehaving\"} 0"),
        "{}",
        metrics.text
    );
}

#[test]
fn precompiled_artifacts_are_reused() {
    let cache = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new().expect("engine");
    let limits = Limits {
        time_limit: Duration::from_secs(1),
        memory_bytes: 64 << 20,
        fuel: None,
    };
    let first = runtime
        .load_adapter_cached("meta", &plugin_path("meta"), limits, Some(cache.path()))
        .expect("compile");
    assert!(!first.from_cache());
    let artifacts: Vec<_> = std::fs::read_dir(cache.path())
        .expect("cache")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(artifacts.len(), 1);
    let name = artifacts[0].file_name().to_string_lossy().into_owned();
    assert!(
        name.starts_with(first.content_hash()) && name.ends_with(".cwasm"),
        "{name}"
    );
    let second = runtime
        .load_adapter_cached("meta", &plugin_path("meta"), limits, Some(cache.path()))
        .expect("from cache");
    assert!(second.from_cache());
    assert_eq!(second.info().version, first.info().version);
    // A corrupt artifact is ignored (recompiled), never trusted blindly.
    std::fs::write(artifacts[0].path(), b"garbage").expect("corrupt");
    let third = runtime
        .load_adapter_cached("meta", &plugin_path("meta"), limits, Some(cache.path()))
        .expect("recompile");
    assert!(!third.from_cache());
}

#[test]
fn a_plugin_importing_the_network_is_refused_at_load() {
    let error = Runtime::new()
        .expect("engine")
        .load_adapter(
            "sneaky",
            &plugin_path("sneaky"),
            Limits {
                time_limit: Duration::from_secs(1),
                memory_bytes: 64 << 20,
                fuel: None,
            },
        )
        .expect_err("refused");
    let text = error.to_string();
    assert!(text.contains("`wasi:sockets/"), "{text}");
    assert!(text.contains("plugins get no network"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_is_quarantined_and_its_payloads_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bad = pipeline("bad", "demo", "misbehaving");
    bad.currency = Some("USD".into());
    let mut good = pipeline("good", "demo", "meta");
    good.currency = Some("USD".into());
    let app = App::start(config(
        &dir,
        vec![plugin("misbehaving"), plugin("meta")],
        vec![bad, good],
    ))
    .await
    .expect("start");
    let token = token("demo", &[Role::Admin, Role::Operator], 60);
    for _ in 0..5 {
        let answer = send(
            &app,
            post("/v1/pipelines/bad/reports", Some(&token), "panic"),
        )
        .await;
        assert_eq!(answer.code(), "plugin_failed");
    }
    // Open breaker: refused without calling the plugin, kept, told when to retry.
    let answer = send(
        &app,
        post("/v1/pipelines/bad/reports", Some(&token), "fine:c-late"),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "plugin_quarantined"),
        "{}",
        answer.text
    );
    assert!(answer.headers.contains_key("retry-after"));
    let dead_letter = answer.json["error"]["dead_letter_id"]
        .as_str()
        .expect("kept")
        .to_owned();
    // Only this pipeline is quarantined; the plugin serves on for others.
    let entry = plugin_entry(&app, "misbehaving").await;
    assert_eq!(entry["state"], "degraded", "{entry}");
    assert_eq!(
        entry["quarantined_pipelines"],
        serde_json::json!(["bad"]),
        "{entry}"
    );
    // Other pipelines are unaffected.
    let answer = send(
        &app,
        post("/v1/pipelines/good/reports", Some(&token), "{\"data\": []}"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    // Retrying the kept payload while quarantined is refused the same way.
    let retried = send(
        &app,
        post(
            &format!("/v1/dead-letters/{dead_letter}/retry"),
            Some(&token),
            "",
        ),
    )
    .await;
    assert_eq!(
        retried.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        retried.text
    );
    // An operator's reload (here of unchanged bytes) closes the breaker; the payload goes through.
    let answer = send(
        &app,
        post("/v1/plugins/misbehaving/reload", Some(&token), ""),
    )
    .await;
    assert_eq!(
        answer.json["result"]["outcome"], "unchanged",
        "{}",
        answer.text
    );
    assert_eq!(plugin_entry(&app, "misbehaving").await["state"], "active");
    let retried = send(
        &app,
        post(
            &format!("/v1/dead-letters/{dead_letter}/retry"),
            Some(&token),
            "",
        ),
    )
    .await;
    assert_eq!(
        (retried.status, retried.json["accepted"].as_i64()),
        (StatusCode::ACCEPTED, Some(1)),
        "{}",
        retried.text
    );
    let again = send(
        &app,
        post(
            &format!("/v1/dead-letters/{dead_letter}/retry"),
            Some(&token),
            "",
        ),
    )
    .await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "already_retried"),
        "{}",
        again.text
    );
    assert_eq!(plugin_entry(&app, "misbehaving").await["state"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_failing_its_own_samples_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("adapter.wasm");
    let samples = dir.path().join("adapter.samples");
    std::fs::create_dir_all(&samples).expect("mkdir");
    std::fs::write(samples.join("report.json"), "fine:sample").expect("sample");
    deploy(&plugin_path("misbehaving"), &live);
    let mut plugin = plugin("misbehaving");
    plugin.path = live.clone();
    let mut config = config(&dir, vec![plugin], vec![]);
    config.server.watch_plugins = false;
    let app = App::start(config)
        .await
        .expect("a build passing its samples loads");
    // The new build ships a sample it cannot parse: refused, the old version serves on.
    std::fs::write(samples.join("report.json"), "panic").expect("sample");
    deploy(&plugin_path("misbehaving-v2"), &live);
    let admin = token("demo", &[Role::Admin, Role::Operator], 60);
    let answer = send(
        &app,
        post("/v1/plugins/misbehaving/reload", Some(&admin), ""),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.text
    );
    let reason = answer.json["result"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("its own sample report.json fails"),
        "{reason}"
    );
    assert_eq!(plugin_entry(&app, "misbehaving").await["version"], "0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_failing_its_samples_is_refused_alone_and_a_passing_reload_restores_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("acme.wasm");
    deploy(&plugin_path("meta"), &live);
    let samples = dir.path().join("acme.samples");
    std::fs::create_dir_all(&samples).expect("mkdir");
    let page = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/adapters/meta/tests/fixtures/insights_ad_page1.json");
    std::fs::copy(&page, samples.join("page.json")).expect("copy sample");
    // `plugin test --bless` writes the expected rows beside the sample.
    adpipe::plugin::authoring::test_fixtures(
        &live,
        &samples,
        &adpipe::plugin::authoring::FixtureRun {
            bless: true,
            ..Default::default()
        },
    )
    .expect("bless");
    let expected = samples.join("page.expected.json");
    assert!(expected.is_file());
    // `acme` (a copy of Meta with samples) beside `meta`, which has none:
    // a plugin failing its samples is refused alone; the server starts.
    let start = |dir: &tempfile::TempDir| {
        let mut acme = plugin("meta");
        acme.name = "acme".into();
        acme.path = live.clone();
        let pipelines = vec![
            pipeline("acme", "demo", "acme"),
            pipeline("meta", "demo", "meta"),
        ];
        let mut config = config(dir, vec![acme, plugin("meta")], pipelines);
        config.server.watch_plugins = false;
        App::start(config)
    };
    let refusal = |app: App| async move {
        let entry = plugin_entry(&app, "acme").await;
        (entry["state"].as_str() == Some("refused"))
            .then(|| entry["last_error"].as_str().unwrap_or_default().to_owned())
    };
    // A sample the platform may send that is not data must be refused.
    std::fs::write(samples.join("truncated.fail.json"), "{\"data\": [").expect("write");
    let app = start(&dir).await.expect("samples parse as expected");
    assert_eq!(plugin_entry(&app, "acme").await["state"], "active");
    drop(app);
    // Rows that differ from the blessed ones: refused, saying which.
    let blessed = std::fs::read_to_string(&expected).expect("read");
    std::fs::write(
        &expected,
        blessed.replacen("\"clicks\": ", "\"clicks\": 1", 1),
    )
    .expect("write");
    let app = start(&dir).await.expect("the server starts without acme");
    let entry = plugin_entry(&app, "acme").await;
    assert_eq!(entry["state"], "refused", "{entry}");
    let reason = entry["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason.contains("page.json parses into other rows than"),
        "{reason}"
    );
    // Its pipeline answers 503 plugin_refused (kept as a dead letter); the
    // other plugin's pipeline ingests; /readyz stays ready and names it.
    let admin = token("demo", &[Role::Admin, Role::Operator], 60);
    let body = std::fs::read_to_string(&page).expect("page");
    let refused = send(
        &app,
        post("/v1/pipelines/acme/reports", Some(&admin), body.clone()),
    )
    .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "plugin_refused"),
        "{}",
        refused.text
    );
    assert!(
        refused.text.contains("page.json parses into other rows"),
        "{}",
        refused.text
    );
    let letters = send(&app, get("/v1/dead-letters", Some(&admin))).await;
    assert!(letters.text.contains("plugin_refused"), "{}", letters.text);
    let served = send(&app, post("/v1/pipelines/meta/reports", Some(&admin), body)).await;
    assert_eq!(served.status, StatusCode::ACCEPTED, "{}", served.text);
    let ready = send(&app, get("/readyz", None)).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert!(
        ready.json["refused_plugins"]["acme"]
            .as_str()
            .is_some_and(|r| r.contains("other rows")),
        "{}",
        ready.text
    );
    let metrics = send(&app, get("/metrics", Some(&admin))).await;
    assert!(
        metrics
            .text
            .contains("adpipe_plugin_refused{plugin=\"acme\"} 1"),
        "{}",
        metrics.text
    );
    // Fixed samples and a reload: the same build serves.
    std::fs::write(&expected, &blessed).expect("restore");
    let reloaded = send(&app, post("/v1/plugins/acme/reload", Some(&admin), "")).await;
    assert_eq!(reloaded.status, StatusCode::OK, "{}", reloaded.text);
    assert_eq!(plugin_entry(&app, "acme").await["state"], "active");
    let page_body = std::fs::read_to_string(&page).expect("page");
    let accepted = send(
        &app,
        post("/v1/pipelines/acme/reports", Some(&admin), page_body),
    )
    .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text);
    drop(app);
    // A `.fail.json` sample that parses is a mistake too.
    std::fs::copy(&page, samples.join("page.fail.json")).expect("copy");
    let error = refusal(start(&dir).await.expect("starts"))
        .await
        .expect("refused");
    assert!(
        error.contains("page.fail.json should be refused but parsed into"),
        "{error}"
    );
    std::fs::remove_file(samples.join("page.fail.json")).expect("remove");
    // The folder named after the whole file is refused with the name to use.
    std::fs::create_dir_all(dir.path().join("acme.wasm.samples")).expect("mkdir");
    let error = refusal(start(&dir).await.expect("starts"))
        .await
        .expect("refused");
    assert!(
        error.contains("samples belong in") && error.contains("acme.samples"),
        "{error}"
    );
}
