//! Distributed-mode hot paths against running engines (scripts/services.sh up),
//! each beside its baseline measured in the same run:
//!
//! - `kafka_publish/adpipe_report_to_ack`: a 500-row Meta report posted
//!   through the router until `202` (broker acknowledged), vs
//!   `kafka_publish/bare_rdkafka`: the same messages (bus record format 2) sent by a bare rdkafka
//!   producer with the same settings to the same broker, acks awaited.
//! - `clickhouse_write/adpipe_apply`: 5,000 rows applied by the store, vs
//!   `clickhouse_write/clickhouse_client`: the same rows (TSV) inserted in
//!   one batch by `clickhouse-client`.
//! - `insights/adpipe_clickhouse`: `/v1/insights` (cache off, 30 days, one
//!   campaign) through ClickHouse, vs `insights/clickhouse_client_x20`: the
//!   same SQL run 20 times in one `clickhouse-client --multiquery` session
//!   (divide by 20; one process start included).

use std::io::Write as _;
use std::time::{Duration, Instant};

use adpipe::auth::{now_unix, Claims, JwtKeys, Role};
use axum::body::Body;
use axum::http::Request;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::json;
use tower::ServiceExt;

const SECRET: &str = "bench-secret-bench-secret-bench-secret-00";

fn plugin_path(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../dist/plugins/{name}.wasm"))
}

fn meta_page(n: usize, day: &str, campaigns: usize) -> String {
    let rows: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "account_id": "1234567890", "account_currency": "USD",
                "campaign_id": format!("c{:04}", i % campaigns), "campaign_name": "Bench",
                "adset_id": format!("s{:05}", i % 200), "ad_id": format!("a{:06}", i),
                "date_start": day, "date_stop": day,
                "impressions": (1000 + i).to_string(), "clicks": (20 + i % 50).to_string(),
                "spend": format!("{}.{:02}", 10 + i % 90, i % 100),
            })
        })
        .collect();
    json!({"data": rows, "paging": {}}).to_string()
}

fn token(role: Role) -> String {
    JwtKeys::hs256(SECRET.as_bytes(), None)
        .mint(&Claims {
            sub: "bench".into(),
            tenant: "bench".into(),
            roles: vec![role],
            exp: now_unix() + 3600,
            iat: None,
            nbf: None,
            iss: None,
            aud: None,
        })
        .expect("mint")
}

fn engines(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tag = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = adpipe::config::Config::default();
    config.server.data_dir = dir.path().to_path_buf();
    config.server.watch_plugins = false;
    config.server.keep_payloads = false;
    config.auth.jwt_secret = Some(SECRET.into());
    config.api.rate_limits.enabled = false;
    config.api.cache.enabled = false;
    config.bus.kind = adpipe::config::BusKind::Kafka;
    config.bus.brokers = Some("127.0.0.1:9092".into());
    config.bus.topic = format!("adpipe.{tag}");
    config.bus.group = format!("adpipe-{tag}");
    config.store.kind = adpipe::config::StoreKind::Clickhouse;
    config.store.url = Some("http://127.0.0.1:8123".into());
    config.store.database = Some(tag.clone());
    config.plugins = vec![adpipe::config::PluginConfig {
        name: "meta".into(),
        path: plugin_path("meta"),
        time_limit_ms: 10_000,
        memory_limit_mb: 512,
        kind: adpipe::config::PluginKind::Adapter,
        fuel: None,
        max_concurrent_calls: None,
    }];
    config.pipelines =
        vec![
            toml::from_str("name = \"meta\"\ntenant = \"bench\"\nadapter = \"meta\"")
                .expect("pipeline"),
        ];
    let config_partitions = config.bus.partitions;
    let app = runtime
        .block_on(adpipe::app::App::start(config))
        .expect("start (scripts/services.sh up)");
    let router = adpipe::api::router(app.clone());
    let ingest = token(Role::Ingest);
    const ROWS: usize = 500;
    const CAMPAIGNS: usize = 20;

    let mut group = c.benchmark_group("kafka_publish");
    group.sample_size(20);
    group.throughput(Throughput::Elements(ROWS as u64));
    let page = meta_page(ROWS, "2026-10-01", CAMPAIGNS);
    group.bench_function("adpipe_report_to_ack", |b| {
        b.to_async(&runtime).iter(|| async {
            let request = Request::post("/v1/pipelines/meta/reports")
                .header("authorization", format!("Bearer {ingest}"))
                .body(Body::from(page.clone()))
                .expect("request");
            let status = router
                .clone()
                .oneshot(request)
                .await
                .expect("answer")
                .status();
            assert_eq!(status.as_u16(), 202);
        })
    });
    // The same messages adpipe sends: one per partition the campaigns map to,
    // the rows in the bus record format (docs/bus-record.md).
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9092")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set(
            "batch.num.messages",
            adpipe::bus::kafka::PRODUCER_BATCH_MESSAGES.to_string(),
        )
        .create()
        .expect("producer");
    let rows: Vec<_> = (0..CAMPAIGNS)
        .flat_map(|c| {
            (0..ROWS / CAMPAIGNS).map(move |i| json!({"kind": "snapshot", "platform": "meta", "account_id": "1234567890",
                "campaign_id": format!("c{c:04}"), "ad_id": format!("a{i:06}"), "date": 20362,
                "currency": "USD", "impressions": 1000 + i, "clicks": 20, "spend_micros": 10_000_000,
                "conversions_micros": 0, "conversion_value_micros": 0, "observed_at_us": 1,
                "adapter": "meta", "adapter_version": "0.1.0"}))
        })
        .collect();
    let envelope: adpipe::row::RowEnvelope =
        serde_json::from_value(json!({"tenant": "bench", "pipeline": "meta", "rows": rows}))
            .expect("envelope");
    let partitions = config_partitions;
    let messages = adpipe::bus::kafka::partition_records(&envelope, partitions);
    let bare_topic = format!("adpipe.{tag}.bare");
    {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9092")
            .create()
            .expect("admin");
        runtime
            .block_on(admin.create_topics(
                &[NewTopic::new(
                    &bare_topic,
                    partitions,
                    TopicReplication::Fixed(1),
                )],
                &AdminOptions::new(),
            ))
            .expect("create topic");
    }
    group.bench_function("bare_rdkafka", |b| {
        b.to_async(&runtime).iter(|| async {
            let deliveries: Vec<_> = messages
                .iter()
                .map(|(partition, payload)| {
                    producer
                        .send_result(
                            FutureRecord::to(&bare_topic)
                                .partition(*partition)
                                .key("bench")
                                .payload(payload),
                        )
                        .map_err(|(e, _)| e)
                        .expect("enqueue")
                })
                .collect();
            for d in deliveries {
                d.await.expect("delivery").expect("ack");
            }
        })
    });
    group.finish();

    // ClickHouse write path.
    let mut group = c.benchmark_group("clickhouse_write");
    group.sample_size(10);
    const WRITE_ROWS: usize = 5000;
    group.throughput(Throughput::Elements(WRITE_ROWS as u64));
    let envelope: adpipe::row::RowEnvelope = serde_json::from_value(json!({
        "tenant": "bench-write", "pipeline": "meta",
        "rows": (0..WRITE_ROWS).map(|i| json!({"kind": "snapshot", "platform": "meta",
            "account_id": "1234567890", "campaign_id": format!("c{:04}", i % 100),
            "ad_group_id": format!("s{:05}", i % 500), "ad_id": format!("a{i:06}"), "date": 20362 + (i % 30) as i32,
            "currency": "USD", "impressions": 1000 + i, "clicks": 20, "spend_micros": 10_000_000,
            "conversions_micros": 0, "conversion_value_micros": 0, "observed_at_us": 1,
            "adapter": "meta", "adapter_version": "0.1.0"})).collect::<Vec<_>>()
    }))
    .expect("envelope");
    group.bench_function("adpipe_apply", |b| {
        b.to_async(&runtime)
            .iter(|| async { app.store.apply(&[&envelope], None).await.expect("apply") })
    });
    let tsv: String = envelope
        .rows
        .iter()
        .map(|r| {
            format!(
                // The table's columns in order; the last (empty) one is the breakdown.
                "bench-write\tmeta\t{}\t{}\t{}\t{}\t{}\t-1\tUSD\t{}\t{}\t{}\t0\t0\t\t1\tmeta\tmeta\t0.1.0\t\n",
                r.account_id,
                r.campaign_id.as_deref().unwrap_or(""),
                r.ad_group_id.as_deref().unwrap_or(""),
                r.ad_id.as_deref().unwrap_or(""),
                chrono::NaiveDate::from_num_days_from_ce_opt(r.date + 719_163).expect("date"),
                r.impressions,
                r.clicks,
                r.spend_micros
            )
        })
        .collect();
    group.bench_function("clickhouse_client", |b| {
        b.iter(|| {
            let mut child = std::process::Command::new("clickhouse-client")
                .args([
                    "--database",
                    &tag,
                    "--query",
                    "INSERT INTO adpipe_facts FORMAT TabSeparated",
                ])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("clickhouse-client");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(tsv.as_bytes())
                .expect("write");
            assert!(child.wait().expect("wait").success());
        })
    });
    group.finish();

    // Insights through ClickHouse: 30 days of one campaign over the rows above.
    for day in 0..30 {
        let page = meta_page(1000, &format!("2026-09-{:02}", day + 1), 50);
        let request = Request::post("/v1/pipelines/meta/reports")
            .header("authorization", format!("Bearer {ingest}"))
            .body(Body::from(page))
            .expect("request");
        let status = runtime
            .block_on(router.clone().oneshot(request))
            .expect("answer")
            .status();
        assert_eq!(status.as_u16(), 202);
    }
    let viewer = token(Role::Viewer);
    let uri = "/v1/insights?from=2026-09-01&to=2026-09-30&granularity=day&campaign_id=c0007";
    let mut group = c.benchmark_group("insights");
    group.sample_size(20);
    group.bench_function("adpipe_clickhouse", |b| {
        b.to_async(&runtime).iter(|| async {
            let request = Request::get(uri)
                .header("authorization", format!("Bearer {viewer}"))
                .body(Body::empty())
                .expect("request");
            let status = router
                .clone()
                .oneshot(request)
                .await
                .expect("answer")
                .status();
            assert_eq!(status.as_u16(), 200);
        })
    });
    let sql =
        "SELECT platform, account_id, campaign_id, ad_group_id, ad_id, date, hour, currency, \
               impressions, clicks, spend, conversions, conversion_value, extras \
               FROM adpipe_facts FINAL WHERE tenant = 'bench' AND date >= toDate('2026-09-01') \
               AND date <= toDate('2026-09-30') AND has(['c0007'], campaign_id) FORMAT Null;\n";
    let script = sql.repeat(20);
    group.bench_function("clickhouse_client_x20", |b| {
        b.iter(|| {
            let mut child = std::process::Command::new("clickhouse-client")
                .args(["--database", &tag, "--multiquery"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("clickhouse-client");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(script.as_bytes())
                .expect("write");
            assert!(child.wait().expect("wait").success());
        })
    });
    group.bench_function("clickhouse_client_start_only", |b| {
        b.iter(|| {
            let started = Instant::now();
            let status = std::process::Command::new("clickhouse-client")
                .args(["--query", "SELECT 1 FORMAT Null"])
                .status()
                .expect("clickhouse-client");
            assert!(status.success());
            started.elapsed() < Duration::from_secs(60)
        })
    });
    group.finish();
}

criterion_group!(benches, engines);
criterion_main!(benches);
