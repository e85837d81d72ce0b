//! Prometheus metrics (`GET /metrics`, OpenMetrics text) through
//! `prometheus-client`: one registry per running adpipe, no globals.
//!
//! Request counts and latency by route and status, ingested rows by pipeline
//! and platform, dead letters, plugin calls/failures/latency/reloads, bus lag,
//! the insights cache, rate limiting and rows deleted by retention.
//!
//! Traces (OpenTelemetry, exported over OTLP when configured) are in [`trace`].

pub mod trace;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteTimingLabels {
    pub route: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabels {
    pub pipeline: String,
    pub platform: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    pub pipeline: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginVersionLabels {
    pub plugin: String,
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub plugin: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PullRunLabels {
    pub pipeline: String,
    /// `ok` or `failed`.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiVersionLabels {
    pub pipeline: String,
    pub platform: String,
    pub api_version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrunedLabels {
    /// `payloads`, `dead_letters`, `audit` or `pull_runs`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabels {
    pub pipeline: String,
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub class: String,
    pub scope: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs .. ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The Kafka consumer's series (cheap to clone: the consumer task keeps one).
#[derive(Clone, Debug, Default)]
pub struct BusConsumerMetrics {
    /// Bus records this process applied to the store.
    pub applied_records: Counter,
    /// Partitions read again because the broker skipped records.
    pub rewinds: Counter,
    /// Records the broker skipped and no longer held when read again.
    pub skipped_records: Counter,
}

/// Every series adpipe exports.
pub struct Telemetry {
    registry: Registry,
    pub http_requests: Family<RouteLabels, Counter>,
    pub http_duration: HistogramFamily<RouteTimingLabels>,
    pub ingested_rows: Family<PipelineLabels, Counter>,
    pub dead_letters: Family<DeadLetterLabels, Counter>,
    pub plugin_call_duration: HistogramFamily<PluginLabels>,
    pub plugin_calls: Family<PluginVersionLabels, Counter>,
    pub plugin_rejections: Family<PluginVersionLabels, Counter>,
    pub plugin_failures: Family<PluginVersionLabels, Counter>,
    pub plugin_reloads: Family<ReloadLabels, Counter>,
    pub plugin_quarantined: Family<PluginLabels, Gauge>,
    pub plugin_refused: Family<PluginLabels, Gauge>,
    pub pipeline_quarantined: Family<BreakerLabels, Gauge>,
    pub bus_lag: Gauge,
    pub bus_consumer: BusConsumerMetrics,
    pub cache_requests: Family<CacheLabels, Counter>,
    pub cache_hit_ratio: Gauge<f64, AtomicU64>,
    pub rate_limited: Family<LimitLabels, Counter>,
    pub pull_runs: Family<PullRunLabels, Counter>,
    pub api_sunset_days: Family<ApiVersionLabels, Gauge>,
    pub pruned_rows: Family<PrunedLabels, Counter>,
}

impl Default for Telemetry {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("adpipe");
        let t = Telemetry {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            ingested_rows: Family::default(),
            dead_letters: Family::default(),
            plugin_call_duration: Family::new_with_constructor(latency_histogram),
            plugin_calls: Family::default(),
            plugin_rejections: Family::default(),
            plugin_failures: Family::default(),
            plugin_reloads: Family::default(),
            plugin_quarantined: Family::default(),
            plugin_refused: Family::default(),
            pipeline_quarantined: Family::default(),
            bus_lag: Gauge::default(),
            bus_consumer: BusConsumerMetrics::default(),
            cache_requests: Family::default(),
            cache_hit_ratio: Gauge::default(),
            rate_limited: Family::default(),
            pull_runs: Family::default(),
            api_sunset_days: Family::default(),
            pruned_rows: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            t.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by route template and method",
            t.http_duration.clone(),
        );
        registry.register(
            "ingested_rows",
            "Normalized rows made durable on the bus, by pipeline and platform",
            t.ingested_rows.clone(),
        );
        registry.register(
            "dead_letters",
            "Payloads kept in the dead-letter store, by pipeline and error code",
            t.dead_letters.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "Time of adapter plugin calls (parse), by plugin",
            t.plugin_call_duration.clone(),
        );
        registry.register(
            "plugin_calls",
            "Calls into the plugin version serving now",
            t.plugin_calls.clone(),
        );
        registry.register(
            "plugin_rejections",
            "Payloads the plugin refused as not its platform's data (its own error answer)",
            t.plugin_rejections.clone(),
        );
        registry.register(
            "plugin_failures",
            "Plugin calls that failed in the sandbox (traps, panics, time, memory or fuel limits)",
            t.plugin_failures.clone(),
        );
        registry.register(
            "plugin_reloads",
            "Plugin reloads by result",
            t.plugin_reloads.clone(),
        );
        registry.register(
            "plugin_quarantined",
            "Pipelines on the plugin whose circuit breaker is open (0: none quarantined)",
            t.plugin_quarantined.clone(),
        );
        registry.register(
            "plugin_refused",
            "1 while the plugin is refused (it failed its own samples at start; a passing reload clears it)",
            t.plugin_refused.clone(),
        );
        registry.register(
            "pipeline_quarantined",
            "1 while the pipeline's circuit breaker is open (its plugin's calls keep failing)",
            t.pipeline_quarantined.clone(),
        );
        registry.register(
            "bus_lag_records",
            "Durable bus records not yet applied to the store",
            t.bus_lag.clone(),
        );
        registry.register(
            "bus_applied_records",
            "Bus records this process's consumer applied to the store (Kafka mode)",
            t.bus_consumer.applied_records.clone(),
        );
        registry.register(
            "bus_rewinds",
            "Partitions read again from an earlier offset because the broker skipped records",
            t.bus_consumer.rewinds.clone(),
        );
        registry.register(
            "bus_skipped_records",
            "Records the broker skipped and no longer held when read again (lost upstream of adpipe)",
            t.bus_consumer.skipped_records.clone(),
        );
        registry.register(
            "insights_cache_requests",
            "Insights answers looked up in the cache, by result (hit, miss)",
            t.cache_requests.clone(),
        );
        registry.register(
            "insights_cache_hit_ratio",
            "Share of insights lookups answered from the cache since start",
            t.cache_hit_ratio.clone(),
        );
        registry.register(
            "rate_limited_requests",
            "Requests refused with 429, by route class and limit scope",
            t.rate_limited.clone(),
        );
        registry.register(
            "pull_runs",
            "Scheduled or manual pulls of one account, by pipeline and outcome (ok, failed)",
            t.pull_runs.clone(),
        );
        registry.register(
            "platform_api_sunset_days",
            "Days until the platform API version a pipeline speaks reaches its announced sunset (negative: past it)",
            t.api_sunset_days.clone(),
        );
        registry.register(
            "retention_pruned_rows",
            "Metadata rows deleted by the retention pruner, by kind (payloads, dead_letters, audit, pull_runs)",
            t.pruned_rows.clone(),
        );
        Telemetry { registry, ..t }
    }
}

impl Telemetry {
    /// Count one answered request.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteTimingLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Count rows made durable.
    pub fn ingested(&self, pipeline: &str, platform: &str, rows: u64) {
        self.ingested_rows
            .get_or_create(&PipelineLabels {
                pipeline: pipeline.to_owned(),
                platform: platform.to_owned(),
            })
            .inc_by(rows);
    }

    /// Count one finished pull of one account.
    pub fn pull_run(&self, pipeline: &str, status: &str) {
        self.pull_runs
            .get_or_create(&PullRunLabels {
                pipeline: pipeline.to_owned(),
                status: status.to_owned(),
            })
            .inc();
    }

    /// Count a kept dead letter.
    pub fn dead_letter(&self, pipeline: &str, code: &str) {
        self.dead_letters
            .get_or_create(&DeadLetterLabels {
                pipeline: pipeline.to_owned(),
                code: code.to_owned(),
            })
            .inc();
    }

    /// Time one plugin call.
    pub fn plugin_call(&self, plugin: &str, elapsed: Duration) {
        self.plugin_call_duration
            .get_or_create(&PluginLabels {
                plugin: plugin.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Count a cache lookup.
    pub fn cache_lookup(&self, hit: bool, hits: u64, total: u64) {
        self.cache_requests
            .get_or_create(&CacheLabels {
                result: if hit { "hit" } else { "miss" }.into(),
            })
            .inc();
        if total > 0 {
            self.cache_hit_ratio.set(hits as f64 / total as f64);
        }
    }

    /// Count rows the retention pruner deleted.
    pub fn pruned(&self, kind: &str, rows: u64) {
        self.pruned_rows
            .get_or_create(&PrunedLabels {
                kind: kind.to_owned(),
            })
            .inc_by(rows);
    }

    /// Count a refused request.
    pub fn limited(&self, class: &str, scope: &str) {
        self.rate_limited
            .get_or_create(&LimitLabels {
                class: class.to_owned(),
                scope: scope.to_owned(),
            })
            .inc();
    }

    /// Set a counter that is kept elsewhere (plugin slots) to its value.
    pub fn set_counter(counter: &Counter, value: u64) {
        counter.inner().store(value, Ordering::Relaxed);
    }

    /// The OpenMetrics text of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
