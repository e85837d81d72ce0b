//! Traces across the pipeline, as an OpenTelemetry backend sees them: a real
//! `adpipe serve` exports to an OTLP/HTTP receiver run by the test, which
//! decodes the protobuf requests (`opentelemetry-proto`). One report push
//! must be one trace: the caller's `traceparent` → the request's server span
//! → `plugin.parse` and `bus.publish` → the consumer's `store.apply`, on the
//! embedded log and on Kafka (there across two processes: `run = "api"` and
//! `run = "consumer"`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adpipe::auth::Role;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;

use crate::api::{meta_row, page};
use crate::common::*;

/// One span as the receiver got it (ids in lowercase hex, as in `traceparent`).
#[derive(Clone, Debug)]
struct Seen {
    /// `service.instance.id` of the process that exported it.
    instance: String,
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_span_id: String,
    kind: SpanKind,
}

/// An OTLP/HTTP traces receiver on 127.0.0.1: `POST /v1/traces` with a
/// protobuf `ExportTraceServiceRequest`, as a collector takes it.
struct Receiver {
    base: String,
    spans: Arc<Mutex<Vec<Seen>>>,
    /// Requests that were not OTLP protobuf (must stay 0).
    refused: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        use axum::http::{header, HeaderMap, StatusCode};
        let spans: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let (seen, bad) = (spans.clone(), refused.clone());
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (seen, bad) = (seen.clone(), bad.clone());
                async move {
                    let content_type = headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    if content_type != "application/x-protobuf" {
                        bad.lock()
                            .expect("receiver lock")
                            .push(format!("content-type {content_type:?}"));
                        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
                    }
                    match ExportTraceServiceRequest::decode(body) {
                        Ok(request) => seen
                            .lock()
                            .expect("receiver lock")
                            .extend(spans_of(request)),
                        Err(e) => {
                            bad.lock()
                                .expect("receiver lock")
                                .push(format!("undecodable: {e}"));
                            return (StatusCode::BAD_REQUEST, Vec::new());
                        }
                    }
                    (
                        StatusCode::OK,
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            base,
            spans,
            refused,
        }
    }

    /// The spans of `trace_id` once every name of `names` is among them
    /// (`store.apply` `applies` times), or a panic listing what came.
    async fn trace(&self, trace_id: &str, names: &[&str], applies: usize) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans: Vec<Seen> = self
                .spans
                .lock()
                .expect("receiver lock")
                .iter()
                .filter(|s| s.trace_id == trace_id)
                .cloned()
                .collect();
            let complete = names.iter().all(|n| spans.iter().any(|s| s.name == *n))
                && spans.iter().filter(|s| s.name == "store.apply").count() >= applies;
            if complete {
                assert!(
                    self.refused.lock().expect("receiver lock").is_empty(),
                    "{:?}",
                    self.refused
                );
                return spans;
            }
            if Instant::now() > deadline {
                panic!(
                    "trace {trace_id}: wanted {names:?} and {applies} store.apply, got {:#?}",
                    spans
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn spans_of(request: ExportTraceServiceRequest) -> Vec<Seen> {
    let mut seen = Vec::new();
    for resource_spans in request.resource_spans {
        let attribute = |key: &str| {
            resource_spans
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == key))
                .and_then(|a| a.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    any_value::Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default()
        };
        let (instance, service) = (attribute("service.instance.id"), attribute("service.name"));
        for scope in &resource_spans.scope_spans {
            for span in &scope.spans {
                seen.push(Seen {
                    instance: instance.clone(),
                    service: service.clone(),
                    name: span.name.clone(),
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                });
            }
        }
    }
    seen
}

fn one<'a>(spans: &'a [Seen], name: &str) -> &'a Seen {
    let found: Vec<&Seen> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one `{name}` span in {spans:#?}");
    found[0]
}

fn random_hex(bytes: usize) -> String {
    let mut id = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::thread_rng(), id.as_mut_slice());
    hex::encode(id)
}

/// Two campaigns, so Kafka carries the payload as two records.
/// Two campaigns that land on different partitions of a two-partition
/// topic, so on Kafka the page is two records.
const CAMPAIGNS: [&str; 2] = ["c1", "c4"];

fn two_campaign_page() -> String {
    page(vec![
        meta_row(CAMPAIGNS[0], "s1", "a1", "2026-10-05", 1000, 20, "12.50", 0),
        meta_row(CAMPAIGNS[1], "s2", "a2", "2026-10-05", 500, 5, "3.25", 0),
    ])
}

async fn push(base: &str, traceparent: Option<&str>) {
    let ingest = token("demo", &[Role::Ingest], 600);
    let mut request = reqwest::Client::new()
        .post(format!("{base}/v1/pipelines/meta/reports"))
        .bearer_auth(ingest)
        .body(two_campaign_page());
    if let Some(value) = traceparent {
        request = request.header("traceparent", value);
    }
    let response = request.send().await.expect("push");
    assert_eq!(
        response.status(),
        202,
        "{}",
        response.text().await.unwrap_or_default()
    );
}

/// The links every push's trace must have: the server span under the
/// caller's span (or a root), the plugin call and the publish under it, and
/// each `store.apply` under the publish. Returns the publish span.
fn check_links(spans: &[Seen], caller_span: Option<&str>, applies: usize) -> Seen {
    print_tree(spans, caller_span.unwrap_or(""), 0);
    let request = one(spans, "POST /v1/pipelines/{pipeline}/reports");
    assert_eq!(request.kind, SpanKind::Server);
    assert_eq!(
        request.parent_span_id,
        caller_span.unwrap_or(""),
        "the request's parent"
    );
    assert_eq!(request.service, "adpipe");
    let parse = one(spans, "plugin.parse");
    assert_eq!(
        parse.parent_span_id, request.span_id,
        "plugin.parse under the request"
    );
    let publish = one(spans, "bus.publish");
    assert_eq!(publish.kind, SpanKind::Producer);
    assert_eq!(
        publish.parent_span_id, request.span_id,
        "bus.publish under the request"
    );
    let applies_seen: Vec<&Seen> = spans.iter().filter(|s| s.name == "store.apply").collect();
    assert_eq!(applies_seen.len(), applies, "{spans:#?}");
    for apply in applies_seen {
        assert_eq!(apply.kind, SpanKind::Consumer);
        assert_eq!(
            apply.parent_span_id, publish.span_id,
            "store.apply under bus.publish"
        );
    }
    publish.clone()
}

/// The trace as a tree (`--nocapture` shows it): name, kind, ids, process.
fn print_tree(spans: &[Seen], parent: &str, depth: usize) {
    for span in spans.iter().filter(|s| s.parent_span_id == parent) {
        let instance = &span.instance[..span.instance.len().min(8)];
        println!(
            "{:indent$}{} [{:?}] trace {} span {} parent {} (process {instance})",
            "",
            span.name,
            span.kind,
            span.trace_id,
            span.span_id,
            if span.parent_span_id.is_empty() {
                "-"
            } else {
                &span.parent_span_id
            },
            indent = depth * 2
        );
        print_tree(spans, &span.span_id, depth + 1);
    }
}

/// What the test's servers need to export quickly.
const EXPORT_ENV: [(&str, &str); 2] = [
    ("ADPIPE_JWT_SECRET", JWT_SECRET),
    // Send batches every 100 ms instead of every 5 s (a standard OTEL_ variable).
    ("OTEL_BSP_SCHEDULE_DELAY", "100"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_report_push_is_one_trace_through_the_embedded_log() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("pipelines.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{data}\"\nwatch_plugins = false\n\n\
             [telemetry]\notlp_endpoint = \"{otlp}\"\n\n\
             [[plugins]]\nname = \"meta\"\npath = \"{plugin}\"\n\n\
             [[pipelines]]\nname = \"meta\"\ntenant = \"demo\"\nadapter = \"meta\"\n",
            data = dir.path().join("data").display(),
            otlp = receiver.base,
            plugin = plugin_path("meta").display(),
        ),
    )
    .expect("write config");
    let server = Server::spawn(&config, &EXPORT_ENV, &[]);

    // The caller's trace is continued.
    let (trace_id, caller_span) = (random_hex(16), random_hex(8));
    push(
        &server.base,
        Some(&format!("00-{trace_id}-{caller_span}-01")),
    )
    .await;
    let names = [
        "POST /v1/pipelines/{pipeline}/reports",
        "plugin.parse",
        "bus.publish",
    ];
    let spans = receiver.trace(&trace_id, &names, 1).await;
    check_links(&spans, Some(&caller_span), 1);
    let instances: BTreeSet<&str> = spans.iter().map(|s| s.instance.as_str()).collect();
    assert_eq!(instances.len(), 1, "one process: {instances:?}");

    // No traceparent (or one that does not parse): a trace of its own, still whole.
    for caller in [None, Some("00-not-a-trace-01")] {
        let before: BTreeSet<String> = receiver
            .spans
            .lock()
            .expect("receiver lock")
            .iter()
            .map(|s| s.trace_id.clone())
            .collect();
        push(&server.base, caller).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let trace_id = loop {
            let fresh = receiver
                .spans
                .lock()
                .expect("receiver lock")
                .iter()
                .find(|s| s.name == "bus.publish" && !before.contains(&s.trace_id))
                .map(|s| s.trace_id.clone());
            if let Some(id) = fresh {
                break id;
            }
            assert!(Instant::now() < deadline, "no new trace for {caller:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let spans = receiver.trace(&trace_id, &names, 1).await;
        check_links(&spans, None, 1);
    }
}

#[test]
fn one_report_push_is_one_trace_across_kafka_from_the_api_process_to_the_consumer() {
    if !engines_available(&DISTRIBUTED_ENGINES) {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let receiver = Receiver::start().await;
        let database = crate::engines::TempDatabase::create().await;
        let tag = crate::distributed::unique("traces");
        let dir = tempfile::tempdir().expect("tempdir");
        let telemetry = format!("[telemetry]\notlp_endpoint = \"{}\"\n", receiver.base);
        let config_for = |name: &str| {
            crate::distributed::serve_config(&dir, name, &tag, &database.url, 2, &telemetry)
        };
        let with_run = |run: &'static str| {
            let mut env = EXPORT_ENV.to_vec();
            env.push(("ADPIPE_SERVER__RUN", run));
            env
        };
        let api = Server::spawn(&config_for("api"), &with_run("api"), &[]);
        let consumer = Server::spawn(&config_for("consumer"), &with_run("consumer"), &[]);

        let (trace_id, caller_span) = (random_hex(16), random_hex(8));
        push(&api.base, Some(&format!("00-{trace_id}-{caller_span}-01"))).await;
        let names = [
            "POST /v1/pipelines/{pipeline}/reports",
            "plugin.parse",
            "bus.publish",
        ];
        // One Kafka record per partition: two records, two store.apply spans.
        let [a, b] = CAMPAIGNS.map(|c| adpipe::bus::kafka::partition_of("demo", c, 2));
        assert_ne!(a, b, "the page's campaigns share a partition");
        let spans = receiver.trace(&trace_id, &names, 2).await;
        let publish = check_links(&spans, Some(&caller_span), 2);
        let applier: BTreeSet<&str> = spans
            .iter()
            .filter(|s| s.name == "store.apply")
            .map(|s| s.instance.as_str())
            .collect();
        assert_eq!(applier.len(), 1, "{applier:?}");
        assert_ne!(
            applier.first().copied(),
            Some(publish.instance.as_str()),
            "the consumer process applies what the API process published"
        );
        drop((api, consumer, database));
    });
}
