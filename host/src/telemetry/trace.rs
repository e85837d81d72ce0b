//! Traces: OpenTelemetry spans made from adpipe's `tracing` spans
//! (`tracing-opentelemetry`) and exported as OTLP/HTTP protobuf
//! (`opentelemetry-otlp`) when `[telemetry] otlp_endpoint` or the standard
//! `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` variable names a receiver; off
//! otherwise (and with `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`).
//! The SDK reads the other standard variables itself: `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_…`,
//! `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` and `…_TIMEOUT`.
//!
//! One trace per payload, across processes:
//! - the HTTP request's server span (`POST /v1/pipelines/{pipeline}/reports`),
//!   a child of the caller's W3C `traceparent` when it sends one;
//! - `plugin.parse` (the sandboxed call) and `bus.publish` under it;
//! - the `bus.publish` span's context travels with the rows as a W3C
//!   `traceparent` ([`TraceParent`]): a header of each Kafka record, a column
//!   of the embedded log (`docs/bus-record.md`);
//! - the consumer's `store.apply` span for that record is its child, in the
//!   same trace, whichever process applies it.
//!
//! Spans go out through adpipe's own HTTP client on the server's runtime
//! ([`RuntimeClient`]), so the exporter brings no second HTTP stack.

use std::fmt;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

use crate::config::TelemetryConfig;

/// The W3C header (and Kafka record header, and embedded log column) that
/// carries a span's context.
pub const TRACEPARENT: &str = "traceparent";

/// Trace export could not start.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("the HTTP client for the OTLP exporter: {0}")]
    Client(#[from] reqwest::Error),
}

/// Where spans go, when anywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Export {
    /// No receiver named: spans are not exported.
    Off,
    /// `[telemetry] otlp_endpoint`'s traces URL.
    Configured(String),
    /// The `OTEL_EXPORTER_OTLP_…` variables name it (the exporter reads them).
    FromEnvironment,
}

impl Export {
    /// What `config` and the environment `var` reads ask for.
    pub fn decide(config: &TelemetryConfig, var: impl Fn(&str) -> Option<String>) -> Export {
        let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
        let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim() == "true")
            || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none");
        if disabled {
            Export::Off
        } else if let Some(url) = config.traces_url() {
            Export::Configured(url)
        } else if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Export::FromEnvironment
        } else {
            Export::Off
        }
    }
}

/// The process's logging and tracing; flush with [`Tracing::shutdown`]
/// before the runtime stops.
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    /// Log to stderr (filtered by `ADPIPE_LOG`, default info with quieter
    /// dependencies; JSON lines when `json`) and, when `config` or the
    /// environment names a receiver, export adpipe's spans. Exporting
    /// needs the server's runtime (`runtime`): spans are sent on it.
    pub fn init(
        config: &TelemetryConfig,
        json: bool,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Tracing, TraceError> {
        let filter = EnvFilter::try_from_env("ADPIPE_LOG")
            .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,wasmtime=warn,cranelift=warn"));
        let logs = if json {
            tracing_subscriber::fmt::layer().json().boxed()
        } else {
            tracing_subscriber::fmt::layer().boxed()
        }
        .with_filter(filter);
        let export = Export::decide(config, |name| std::env::var(name).ok());
        let provider = match &export {
            Export::Off => None,
            Export::Configured(_) | Export::FromEnvironment => {
                Some(provider(&export, runtime.clone())?)
            }
        };
        // adpipe's own spans, whatever ADPIPE_LOG keeps in the logs.
        let spans = provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("adpipe"))
                .with_filter(Targets::new().with_target("adpipe", LevelFilter::INFO))
        });
        tracing_subscriber::registry().with(logs).with(spans).init();
        if let Export::Configured(url) = &export {
            tracing::info!(%url, "exporting traces (OTLP/HTTP)");
        } else if export == Export::FromEnvironment {
            tracing::info!("exporting traces (OTLP/HTTP, to the OTEL_EXPORTER_OTLP_… endpoint)");
        }
        Ok(Tracing { provider })
    }

    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Send the spans not yet sent, then stop exporting.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // Blocks until the exporter's last request (sent on this runtime) is answered.
            let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(error)) = flushed {
                tracing::warn!("flushing the last spans failed: {error}");
            }
        }
    }
}

fn provider(
    export: &Export,
    runtime: tokio::runtime::Handle,
) -> Result<SdkTracerProvider, TraceError> {
    let client = RuntimeClient {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        runtime,
        failing: Default::default(),
    };
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(client);
    if let Export::Configured(url) = export {
        exporter = exporter.with_endpoint(url.clone());
    }
    let resource = Resource::builder()
        .with_service_name(
            std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "adpipe".to_owned()),
        )
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", uuid::Uuid::new_v4().to_string()),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter.build()?)
        .with_resource(resource)
        .build())
}

/// The exporter's HTTP client: adpipe's `reqwest` client, run on the
/// server's runtime (the SDK's batch thread has none of its own).
struct RuntimeClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// The last export failed: said once in the log, and again when it recovers.
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl fmt::Debug for RuntimeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RuntimeClient")
    }
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let response = client.execute(request).await?;
            let mut answer = Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = response.bytes().await?;
            Ok::<_, HttpError>(answer.body(body)?)
        });
        let outcome = sent.await?;
        let failed = !matches!(&outcome, Ok(response) if response.status().is_success());
        if failed
            != self
                .failing
                .swap(failed, std::sync::atomic::Ordering::Relaxed)
        {
            match &outcome {
                Ok(response) if failed => tracing::warn!(status = %response.status(), "the trace receiver refuses spans; they are dropped until it takes them"),
                Err(error) => tracing::warn!("the trace receiver cannot be reached ({error}); spans are dropped until it answers"),
                Ok(_) => tracing::info!("the trace receiver takes spans again"),
            }
        }
        outcome
    }
}

/// A span's context as a W3C `traceparent` value
/// (`00-<trace id>-<span id>-<flags>`), carried with a payload's rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceParent(String);

impl TraceParent {
    /// `span`'s context, when spans are exported and it has one.
    pub fn of(span: &tracing::Span) -> Option<TraceParent> {
        let context = span.context();
        if !context.span().span_context().is_valid() {
            return None;
        }
        let mut carrier = std::collections::HashMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        carrier.remove(TRACEPARENT).map(TraceParent)
    }

    /// A value read back from a bus record (checked when it is used).
    pub fn from_record(value: impl Into<String>) -> TraceParent {
        TraceParent(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The remote context to continue, `None` when the value is not a
    /// valid `traceparent`.
    fn context(&self) -> Option<Context> {
        remote_context(Some(self.as_str()))
    }
}

/// The context a caller's `traceparent` header names (`None` when it sends
/// none or one that does not parse: a new trace starts).
fn remote_context(traceparent: Option<&str>) -> Option<Context> {
    let mut carrier = std::collections::HashMap::new();
    carrier.insert(TRACEPARENT.to_owned(), traceparent?.to_owned());
    let context = TraceContextPropagator::new().extract(&carrier);
    context.span().span_context().is_valid().then_some(context)
}

/// Make `span` a child of the caller's `traceparent` (an HTTP header value),
/// when there is a valid one and spans are exported.
pub fn continue_caller(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(context) = remote_context(traceparent) {
        let _ = span.set_parent(context);
    }
}

/// Name a span that may already have started (a request's server span is
/// named by its route only once routed, after it took the caller's parent).
/// `name` is only made when spans are exported.
pub fn rename(span: &tracing::Span, name: impl FnOnce() -> String) {
    let context = span.context();
    let exported = context.span();
    if exported.span_context().is_valid() {
        exported.update_name(name());
    }
}

/// Make `span` a child of the span that published a bus record.
pub fn continue_record(span: &tracing::Span, parent: &TraceParent) {
    if let Some(context) = parent.context() {
        let _ = span.set_parent(context);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_is_off_unless_configured_or_named_by_otel_variables() {
        let none = |_: &str| None;
        let configured = TelemetryConfig {
            otlp_endpoint: Some("http://collector:4318".into()),
        };
        assert_eq!(
            Export::decide(&TelemetryConfig::default(), none),
            Export::Off
        );
        assert_eq!(
            Export::decide(&configured, none),
            Export::Configured("http://collector:4318/v1/traces".into())
        );
        let env =
            |name: &str| (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://c:4318".into());
        assert_eq!(
            Export::decide(&TelemetryConfig::default(), env),
            Export::FromEnvironment
        );
        let blank = |name: &str| (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| " ".into());
        assert_eq!(
            Export::decide(&TelemetryConfig::default(), blank),
            Export::Off
        );
        let disabled = |name: &str| (name == "OTEL_SDK_DISABLED").then(|| "true".into());
        assert_eq!(Export::decide(&configured, disabled), Export::Off);
        let none_exporter = |name: &str| (name == "OTEL_TRACES_EXPORTER").then(|| "none".into());
        assert_eq!(Export::decide(&configured, none_exporter), Export::Off);
    }

    #[test]
    fn only_a_valid_traceparent_continues_a_trace() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = remote_context(Some(valid)).expect("a valid traceparent");
        let span = context.span();
        let ids = span.span_context();
        assert_eq!(
            ids.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(ids.span_id().to_string(), "00f067aa0ba902b7");
        assert!(ids.is_remote() && ids.is_sampled());
        for invalid in [
            "",
            "junk",
            // all-zero trace id and span id are invalid by the W3C spec
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(remote_context(Some(invalid)).is_none(), "{invalid:?}");
        }
        assert!(remote_context(None).is_none());
    }

    #[test]
    fn without_an_exporter_a_span_has_no_traceparent_to_carry() {
        let span = tracing::info_span!("bus.publish");
        assert_eq!(TraceParent::of(&span), None);
    }
}
