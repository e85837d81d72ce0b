//! Hot paths, measured against baselines from the same run:
//! - `meta_parse/{native,wasm}/{1,100,5000}`: the Meta insights parser compiled
//!   natively vs the same parser as a sandboxed component (fresh instance per
//!   call, time and memory limits on, rows lifted back to the host).
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

fn meta_parse(c: &mut Criterion) {
    let adapter = Runtime::new()
        .expect("engine")
        .load_adapter(
            "meta",
            &plugin_path("meta"),
            Limits {
                time_limit: Duration::from_secs(10),
                memory_bytes: 512 * 1024 * 1024,
            },
        )
        .expect("load meta component (run scripts/build-plugins)");
    let wasm_ctx = adpipe::plugin::ParseContext {
        options: vec![],
        account_id: None,
        currency: None,
        received_at_ms: 0,
    };
    let native_ctx = adpipe_plugin_sdk::ParseContext::default();
    let mut group = c.benchmark_group("meta_parse");
    for n in [1usize, 100, 5000] {
        let page = meta_page(n, "2026-11-01");
        let rows = adpipe_plugin_meta::parse_report(&page, &native_ctx)
            .expect("native parse")
            .rows
            .len();
        assert_eq!(rows, n);
        assert_eq!(
            adapter
                .parse_report(&page, &wasm_ctx)
                .expect("wasm parse")
                .rows
                .len(),
            n
        );
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("native", n), &page, |b, page| {
            b.iter(|| adpipe_plugin_meta::parse_report(page, &native_ctx).map(|r| r.rows.len()))
        });
        group.bench_with_input(BenchmarkId::new("wasm", n), &page, |b, page| {
            b.iter(|| adapter.parse_report(page, &wasm_ctx).map(|r| r.rows.len()))
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
                    }];
                    config.pipelines = vec![toml::from_str(
                        "name = \"meta\"\ntenant = \"bench\"\nadapter = \"meta\"",
                    )
                    .expect("pipeline")];
                    let app = adpipe::app::App::start(config).await.expect("start");
                    let token = JwtKeys::hs256(SECRET.as_bytes(), None).mint(&Claims {
                        sub: "bench".into(),
                        tenant: "bench".into(),
                        roles: vec![Role::Ingest],
                        exp: now_unix() + 3600,
                        iat: None,
                        iss: None,
                    });
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
                    assert!(
                        app.store
                            .wait_applied(app.bus.head(), Duration::from_secs(120))
                            .await
                    );
                    elapsed += started.elapsed();
                }
                elapsed
            })
        })
    });
    group.finish();
}

criterion_group!(benches, meta_parse, e2e_embedded);
criterion_main!(benches);
