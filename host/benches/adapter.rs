//! Hot paths, measured against baselines from the same run:
//! - `{meta,google,linkedin,tiktok}_parse/{native,wasm}/{1,100,5000}`: each
//!   adapter's report parser compiled natively vs the same parser as a
//!   sandboxed component (fresh instance per call, time and memory limits on,
//!   rows lifted back to the host).
//! - `meta_parse/wasm_0.1.0/{1,100,5000}`: the same pages through the Meta
//!   component built against WIT 0.1.0 (`host/tests/fixtures/plugins`), so
//!   the row-record and the columnar batch are compared in one run.
//! - `floor/{read_page,check_utf8}/{native,wasm}/{100,5000}`: the least
//!   work a JSON adapter does (serde_json reading the Meta page into
//!   borrowing structs; the UTF-8 check) natively vs as a bare core module in
//!   the same engine, the page already in its memory: the compiled code's own
//!   ratio, a floor under every `*_parse` ratio above.
//! - `component/{compile,from_cache}/<plugin>`: loading a component (compile,
//!   pre-instantiate, `describe`) without and with the artifact cache; the
//!   component sizes are printed so compile time per MB can be read off.
//! - `sandbox_call/*`: the fixed price of one call in a fresh instance.
//! - `e2e/embedded`: report pages posted through the router until their rows
//!   are applied in the embedded store (throughput in rows).
//!
//! Needs the plugins built (`scripts/build-plugins`). Run: `cargo bench -p adpipe`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use adpipe::plugin::{Limits, Runtime};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;

fn plugin_path(name: &str) -> PathBuf {
    std::env::var_os("ADPIPE_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist/plugins"))
        .join(format!("{name}.wasm"))
}

/// A level=ad insights page of `n` rows, shaped like Graph API v21 output.
fn meta_page(n: usize, day: &str) -> Vec<u8> {
    let rows: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "account_id": "1234567890", "account_currency": "USD",
                "campaign_id": format!("12021{:04}", i % 20), "campaign_name": format!("Prospecting {}", i % 20),
                "adset_id": format!("23850{:05}", i % 200), "ad_id": format!("23851{:06}", i),
                "date_start": day, "date_stop": day,
                "impressions": (1000 + i).to_string(), "clicks": (20 + i % 50).to_string(),
                "spend": format!("{}.{:02}", 10 + i % 90, i % 100),
                "cpc": "0.52", "ctr": "1.93", "reach": "950",
                "actions": [
                    {"action_type": "link_click", "value": (15 + i % 40).to_string()},
                    {"action_type": "landing_page_view", "value": (10 + i % 30).to_string()},
                    {"action_type": "offsite_conversion.fb_pixel_purchase", "value": (i % 4).to_string()},
                    {"action_type": "purchase", "value": (i % 4).to_string()}
                ],
                "action_values": [
                    {"action_type": "offsite_conversion.fb_pixel_purchase", "value": format!("{}.50", (i % 4) * 30)},
                    {"action_type": "purchase", "value": format!("{}.50", (i % 4) * 30)}
                ]
            })
        })
        .collect();
    json!({"data": rows, "paging": {"cursors": {"before": "MAZDZD", "after": "MjQZD"}}})
        .to_string()
        .into_bytes()
}

fn google_page(n: usize) -> Vec<u8> {
    let results: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "customer": {"resourceName": "customers/1234567890", "id": "1234567890", "currencyCode": "USD"},
                "campaign": {"resourceName": format!("customers/1234567890/campaigns/{}", 2000 + i % 20), "id": (2000 + i % 20).to_string(), "name": format!("Search {}", i % 20)},
                "adGroup": {"resourceName": format!("customers/1234567890/adGroups/{}", 15000 + i % 200), "id": (15000 + i % 200).to_string()},
                "adGroupAd": {"resourceName": format!("customers/1234567890/adGroupAds/{}~{}", 15000 + i % 200, 70000 + i), "ad": {"id": (70000 + i).to_string()}},
                "metrics": {"impressions": (1000 + i).to_string(), "clicks": (20 + i % 50).to_string(), "costMicros": (10_000_000 + i * 1234).to_string(), "conversions": (i % 7) as f64 / 3.0, "conversionsValue": (i % 7) as f64 * 12.5},
                "segments": {"date": "2026-11-01"}
            })
        })
        .collect();
    json!([{"results": results, "fieldMask": "customer.id,campaign.id", "requestId": "bench"}])
        .to_string()
        .into_bytes()
}

fn linkedin_page(n: usize) -> Vec<u8> {
    let elements: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "dateRange": {"start": {"year": 2026, "month": 11, "day": 1}, "end": {"year": 2026, "month": 11, "day": 1}},
                "pivotValues": [format!("urn:li:sponsoredCampaign:{}", 600000 + i % 20), format!("urn:li:sponsoredCreative:{}", 880000 + i)],
                "impressions": 1000 + i, "clicks": 20 + i % 50,
                "costInLocalCurrency": format!("{}.{:02}", 10 + i % 90, i % 100), "costInUsd": "1.00",
                "externalWebsiteConversions": i % 4, "conversionValueInLocalCurrency": format!("{}.50", (i % 4) * 30)
            })
        })
        .collect();
    json!({"paging": {"start": 0, "count": n, "links": []}, "elements": elements})
        .to_string()
        .into_bytes()
}

fn tiktok_page(n: usize) -> Vec<u8> {
    let list: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "dimensions": {"ad_id": (1790000000000000u64 + i as u64).to_string(), "stat_time_day": "2026-11-01 00:00:00"},
                "metrics": {"campaign_id": (1780000000000000u64 + (i % 20) as u64).to_string(), "adgroup_id": (1785000000000000u64 + (i % 200) as u64).to_string(),
                    "campaign_name": format!("Spark {}", i % 20), "currency": "USD",
                    "spend": format!("{}.{:02}", 10 + i % 90, i % 100), "impressions": (1000 + i).to_string(), "clicks": (20 + i % 50).to_string(),
                    "conversion": (i % 4).to_string(), "total_complete_payment_rate": format!("{}.50", (i % 4) * 30), "complete_payment": (i % 4).to_string()}
            })
        })
        .collect();
    json!({"code": 0, "message": "OK", "request_id": "bench", "data": {"list": list, "page_info": {"page": 1, "total_page": 1}}}).to_string().into_bytes()
}

const PARSE_LIMITS: Limits = Limits {
    time_limit: Duration::from_secs(10),
    memory_bytes: 512 * 1024 * 1024,
    fuel: None,
};

/// The Meta component built against WIT 0.1.0 (a committed test fixture).
fn meta_0_1_0_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plugins/meta-0.1.0.wasm")
}

/// One adapter: native vs sandboxed, at 1, 100 and 5000 rows per page
/// (and, when given, the same adapter built against an older interface).
fn adapter_parse<A: adpipe_plugin_sdk::Adapter>(
    c: &mut Criterion,
    plugin: &str,
    page: fn(usize) -> Vec<u8>,
    older: Option<(&str, PathBuf)>,
) {
    let runtime = Runtime::new().expect("engine");
    let adapter = runtime
        .load_adapter(plugin, &plugin_path(plugin), PARSE_LIMITS)
        .expect("load component (run scripts/build-plugins)");
    let older = older.map(|(label, path)| {
        let adapter = runtime
            .load_adapter(plugin, &path, PARSE_LIMITS)
            .expect("load the older component");
        (label, adapter)
    });
    let context = |account: &str| adpipe::plugin::ParseContext {
        options: vec![],
        account_id: Some(account.into()),
        currency: Some("USD".into()),
        received_at_ms: 0,
    };
    let wasm_ctx = context("1");
    let native_ctx = adpipe_plugin_sdk::ParseContext {
        account_id: Some("1".into()),
        currency: Some("USD".into()),
        ..Default::default()
    };
    let mut group = c.benchmark_group(format!("{plugin}_parse"));
    for n in [1usize, 100, 5000] {
        let body = page(n);
        assert_eq!(
            A::parse_report(&body, &native_ctx)
                .expect("native parse")
                .rows
                .len(),
            n
        );
        assert_eq!(
            adapter
                .parse_report(&body, &wasm_ctx)
                .expect("wasm parse")
                .rows
                .kind
                .len(),
            n
        );
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("native", n), &body, |b, body| {
            b.iter(|| A::parse_report(body, &native_ctx).map(|r| r.rows.len()))
        });
        group.bench_with_input(BenchmarkId::new("wasm", n), &body, |b, body| {
            b.iter(|| {
                adapter
                    .parse_report(body, &wasm_ctx)
                    .map(|r| r.rows.kind.len())
            })
        });
        if let Some((label, older)) = &older {
            assert_eq!(
                older
                    .parse_report(&body, &wasm_ctx)
                    .expect("older wasm parse")
                    .rows
                    .kind
                    .len(),
                n
            );
            group.bench_with_input(BenchmarkId::new(*label, n), &body, |b, body| {
                b.iter(|| {
                    older
                        .parse_report(body, &wasm_ctx)
                        .map(|r| r.rows.kind.len())
                })
            });
        }
    }
    group.finish();
}

fn meta_parse(c: &mut Criterion) {
    adapter_parse::<adpipe_plugin_meta::Meta>(
        c,
        "meta",
        |n| meta_page(n, "2026-11-01"),
        Some(("wasm_0.1.0", meta_0_1_0_path())),
    );
}

fn other_parsers(c: &mut Criterion) {
    adapter_parse::<adpipe_plugin_google::Google>(c, "google", google_page, None);
    adapter_parse::<adpipe_plugin_linkedin::LinkedIn>(c, "linkedin", linkedin_page, None);
    adapter_parse::<adpipe_plugin_tiktok::TikTok>(c, "tiktok", tiktok_page, None);
}

/// The floor under every sandbox ratio (`plugins/test-guests/json-floor`):
/// serde_json reading the Meta page into borrowing structs with nothing done
/// per row, and the standard library's UTF-8 check over the same bytes,
/// natively and as a bare core module in the host's engine (epoch
/// interruption on, one instance, the page already in its memory). What is
/// left is the compiled code's own ratio: no host call, copy or instance
/// set-up is in it.
fn floor(c: &mut Criterion) {
    let path = plugin_path("json-floor");
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!(
            "floor: {} is missing (run scripts/build-plugins); skipped",
            path.display()
        );
        return;
    };
    let runtime = Runtime::new().expect("engine");
    let engine = runtime.engine();
    let module = wasmtime::Module::new(engine, &bytes).expect("compile the floor module");
    let mut store = wasmtime::Store::new(engine, ());
    store.set_epoch_deadline(1 << 40);
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).expect("instantiate");
    let alloc = instance
        .get_typed_func::<u32, u32>(&mut store, "floor_alloc")
        .expect("floor_alloc");
    let kernels = [
        (
            "read_page",
            adpipe_test_json_floor::read_page as fn(&[u8]) -> u64,
            "floor_read_page",
        ),
        (
            "check_utf8",
            adpipe_test_json_floor::check_utf8,
            "floor_check_utf8",
        ),
    ];
    let memory = instance
        .get_memory(&mut store, "memory")
        .expect("exported memory");
    let mut group = c.benchmark_group("floor");
    for n in [100usize, 5000] {
        let body = meta_page(n, "2026-11-01");
        let len = u32::try_from(body.len()).expect("page under 4 GiB");
        let ptr = alloc.call(&mut store, len).expect("floor_alloc");
        memory
            .write(&mut store, ptr as usize, &body)
            .expect("page into the instance");
        group.throughput(Throughput::Elements(n as u64));
        for (name, native, export) in kernels {
            let wasm = instance
                .get_typed_func::<(u32, u32), u64>(&mut store, export)
                .expect("kernel export");
            let expected = native(&body);
            assert!(expected > 0, "{name} read nothing");
            assert_eq!(wasm.call(&mut store, (ptr, len)).expect("call"), expected);
            group.bench_with_input(
                BenchmarkId::new(format!("{name}/native"), n),
                &body,
                |b, body| b.iter(|| native(body)),
            );
            group.bench_function(BenchmarkId::new(format!("{name}/wasm"), n), |b| {
                b.iter(|| wasm.call(&mut store, (ptr, len)).expect("call"))
            });
        }
    }
    group.finish();
}

/// Loading a component: compiled from its bytes (what a first load or a
/// reload of a changed file costs) and from the artifact cache (a restart,
/// or a reload of a version compiled before).
fn component_load(c: &mut Criterion) {
    let runtime = Runtime::new().expect("engine");
    let cache = tempfile::tempdir().expect("cache dir");
    let mut group = c.benchmark_group("component");
    group.sample_size(10);
    for plugin in ["meta", "google", "linkedin", "tiktok"] {
        let bytes =
            std::fs::read(plugin_path(plugin)).expect("component (run scripts/build-plugins)");
        eprintln!(
            "component {plugin}: {} bytes ({:.2} MB)",
            bytes.len(),
            bytes.len() as f64 / 1e6
        );
        group.bench_function(BenchmarkId::new("compile", plugin), |b| {
            b.iter(|| {
                runtime
                    .load_adapter_bytes_cached(plugin, &bytes, PARSE_LIMITS, None)
                    .expect("load")
            })
        });
        let warm = runtime
            .load_adapter_bytes_cached(plugin, &bytes, PARSE_LIMITS, Some(cache.path()))
            .expect("fill the cache");
        drop(warm);
        group.bench_function(BenchmarkId::new("from_cache", plugin), |b| {
            b.iter(|| {
                let adapter = runtime
                    .load_adapter_bytes_cached(plugin, &bytes, PARSE_LIMITS, Some(cache.path()))
                    .expect("load");
                assert!(adapter.from_cache());
                adapter
            })
        });
    }
    group.finish();
}

fn e2e_embedded(c: &mut Criterion) {
    use adpipe::auth::{now_unix, Claims, JwtKeys, Role};
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    const SECRET: &str = "bench-secret-bench-secret-bench-secret-00";
    const PAGES: usize = 10;
    const ROWS: usize = 500;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("e2e");
    group.sample_size(10);
    group.throughput(Throughput::Elements((PAGES * ROWS) as u64));
    group.bench_function("embedded_report_to_queryable", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iterations {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let mut config = adpipe::config::Config::default();
                    config.server.data_dir = dir.path().to_path_buf();
                    config.auth.jwt_secret = Some(SECRET.into());
                    config.plugins = vec![adpipe::config::PluginConfig {
                        name: "meta".into(),
                        path: plugin_path("meta"),
                        time_limit_ms: 10_000,
                        memory_limit_mb: 512,
                        kind: adpipe::config::PluginKind::Adapter,
                        fuel: None,
                        max_concurrent_calls: None,
                    }];
                    config.pipelines = vec![toml::from_str(
                        "name = \"meta\"\ntenant = \"bench\"\nadapter = \"meta\"",
                    )
                    .expect("pipeline")];
                    let app = adpipe::app::App::start(config).await.expect("start");
                    let token = JwtKeys::hs256(SECRET.as_bytes(), None)
                        .mint(&Claims {
                            sub: "bench".into(),
                            tenant: "bench".into(),
                            roles: vec![Role::Ingest],
                            exp: now_unix() + 3600,
                            iat: None,
                            nbf: None,
                            iss: None,
                            aud: None,
                        })
                        .expect("mint");
                    let pages: Vec<_> = (0..PAGES)
                        .map(|p| meta_page(ROWS, &format!("2026-10-{:02}", p + 1)))
                        .collect();
                    let router = adpipe::api::router(app.clone());
                    let started = Instant::now();
                    let mut posts = tokio::task::JoinSet::new();
                    for page in pages {
                        let request = Request::post("/v1/pipelines/meta/reports")
                            .header("authorization", format!("Bearer {token}"))
                            .body(Body::from(page))
                            .expect("request");
                        let router = router.clone();
                        posts.spawn(async move {
                            router.oneshot(request).await.map(|r| r.status().as_u16())
                        });
                    }
                    for status in posts.join_all().await {
                        assert_eq!(status.ok(), Some(202));
                    }
                    assert!(app.bus.settled(&app.store, Duration::from_secs(120)).await);
                    elapsed += started.elapsed();
                }
                elapsed
            })
        })
    });
    group.finish();
}

/// What the sandbox costs per call: a trivial export (`handshake`) natively,
/// in a fresh sandboxed instance with the time limit (epoch interruption),
/// and without it; and a reload (compile, check, swap) of a changed plugin.
fn sandbox_overhead(c: &mut Criterion) {
    use adpipe_plugin_sdk::Adapter as _;
    let limits = Limits {
        time_limit: Duration::from_secs(10),
        memory_bytes: 64 << 20,
        fuel: None,
    };
    let limited = Runtime::new()
        .expect("engine")
        .load_adapter("meta", &plugin_path("meta"), limits)
        .expect("load");
    let unlimited = Runtime::without_deadlines()
        .expect("engine")
        .load_adapter(
            "meta",
            &plugin_path("meta"),
            Limits {
                memory_bytes: 4 << 30,
                ..limits
            },
        )
        .expect("load");
    let query = vec![("hub.mode".to_owned(), "subscribe".to_owned())];
    let mut group = c.benchmark_group("sandbox_call");
    group.bench_function("native", |b| {
        b.iter(|| adpipe_plugin_meta::Meta::handshake(&query))
    });
    group.bench_function("wasm_limited", |b| b.iter(|| limited.handshake(&query)));
    group.bench_function("wasm_no_deadline", |b| {
        b.iter(|| unlimited.handshake(&query))
    });
    group.finish();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("adapter.wasm");
    std::fs::copy(plugin_path("misbehaving"), &live).expect("copy");
    let config = adpipe::config::PluginConfig {
        name: "misbehaving".into(),
        path: live.clone(),
        time_limit_ms: 1000,
        memory_limit_mb: 64,
        fuel: None,
        kind: adpipe::config::PluginKind::Adapter,
        max_concurrent_calls: None,
    };
    let engine = Runtime::new().expect("engine");
    let slot = std::sync::Arc::new(
        adpipe::plugin::registry::PluginSlot::load(&engine, &config, None).expect("slot"),
    );
    let versions = [plugin_path("misbehaving-v2"), plugin_path("misbehaving")];
    let mut group = c.benchmark_group("reload");
    group.sample_size(10);
    group.bench_function("changed_plugin_to_serving", |b| {
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                // Always deploy the version that is not serving.
                let next = usize::from(slot.adapter().info().version != "0.0.1");
                std::fs::copy(&versions[next], &live).expect("deploy");
                let started = Instant::now();
                let outcome = runtime.block_on(slot.reload(&engine, None));
                elapsed += started.elapsed();
                assert!(
                    matches!(
                        outcome,
                        adpipe::plugin::registry::ReloadOutcome::Reloaded { .. }
                    ),
                    "{outcome:?}"
                );
            }
            elapsed
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    meta_parse,
    other_parsers,
    floor,
    component_load,
    sandbox_overhead,
    e2e_embedded
);
criterion_main!(benches);
