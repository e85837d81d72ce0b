//! The running application's shared state ([`App`]): configuration,
//! pipelines bound to their adapters and secrets, the plugins, and handles
//! to the bus, store, metadata, caches and telemetry. [`start`] opens and
//! wires them.

mod start;

pub use start::StartError;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::JwtKeys;
use crate::bus::Bus;
use crate::config::{Config, PipelineConfig};
use crate::insights::cache::{AnswerCache, DataVersions};
use crate::metadata::Metadata;
use crate::pipeline::normalize::Stamp;
use crate::plugin::metric::MetricPlugin;
use crate::plugin::options::ApiVersionUse;
use crate::plugin::registry::{MetricSlot, PluginSlot};
use crate::plugin::{Adapter, Runtime};
use crate::ratelimit::RateLimits;
use crate::store::Store;
use crate::telemetry::Telemetry;

/// A secret read from the environment; never printed.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
    fn from_env(name: Option<&str>) -> Option<Secret> {
        let value = std::env::var(name?).ok()?;
        (!value.is_empty()).then(|| Secret(value.into()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A configured pipeline bound to its adapter and secrets.
#[derive(Clone)]
pub struct Pipeline {
    pub config: PipelineConfig,
    /// The adapter's slot: the version serving now (reloads swap it).
    pub plugin: Arc<PluginSlot>,
    pub webhook_secret: Option<Secret>,
    pub verify_token: Option<Secret>,
    /// `[pipelines.options]` as the plugin receives them.
    pub options: Vec<(String, String)>,
    /// Options the adapter does not declare, left out (logged at start,
    /// listed in `/readyz` and `GET /v1/pipelines`; `adpipe check` refuses them).
    pub unknown_options: Vec<String>,
    /// Credentials of scheduled pulls, read from the environment.
    pub pull_secrets: PullSecrets,
    /// What this process accepted for the pipeline (the dashboard's view).
    pub stats: Arc<PipelineStats>,
}

/// Payloads a process accepted for one pipeline: when the last one was, and
/// the rows accepted today (UTC), as `GET /v1/pipelines` shows them.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// (UTC day number, rows accepted that day, last accepted at ms).
    state: std::sync::Mutex<(i64, u64, Option<i64>)>,
}

impl PipelineStats {
    const DAY_MS: i64 = 86_400_000;

    /// Count `rows` accepted at `now_ms`.
    pub fn accepted(&self, rows: u64, now_ms: i64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let day = now_ms.div_euclid(Self::DAY_MS);
        if state.0 != day {
            *state = (day, 0, state.2);
        }
        state.1 += rows;
        state.2 = Some(now_ms);
    }

    /// (rows accepted on the UTC day of `now_ms`, last accepted at ms).
    pub fn snapshot(&self, now_ms: i64) -> (u64, Option<i64>) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let today = if state.0 == now_ms.div_euclid(Self::DAY_MS) {
            state.1
        } else {
            0
        };
        (today, state.2)
    }
}

/// Secrets a pull injects into requests.
#[derive(Clone, Debug, Default)]
pub struct PullSecrets {
    pub credential: Option<Secret>,
    /// Header name → value.
    pub headers: Vec<(String, Secret)>,
}

impl AppInner {
    /// Extra metric names the tenant's pipelines declare, sorted, once each.
    pub fn declared_extra_metrics(&self, tenant: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .pipelines
            .values()
            .filter(|p| p.config.tenant == tenant)
            .flat_map(Pipeline::declared_extra_metrics)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The platforms the loaded adapters speak, sorted, once each: the
    /// values `platform=` filters may name.
    pub fn platforms(&self) -> Vec<String> {
        let mut platforms: Vec<String> = self
            .plugins
            .values()
            .map(|slot| slot.adapter().info().platform.clone())
            .collect();
        platforms.sort();
        platforms.dedup();
        platforms
    }

    /// Metric plugins the tenant's pipelines use, by metric name.
    pub fn tenant_metrics(&self, tenant: &str) -> BTreeMap<String, MetricPlugin> {
        let mut out = BTreeMap::new();
        for pipeline in self
            .pipelines
            .values()
            .filter(|p| p.config.tenant == tenant)
        {
            for name in &pipeline.config.metrics {
                if let Some(slot) = self.metric_plugins.get(name) {
                    let plugin = slot.plugin();
                    for metric in &plugin.info().metrics {
                        out.insert(metric.name.clone(), plugin.clone());
                    }
                }
            }
        }
        out
    }
}

impl Pipeline {
    /// The adapter version serving now, under this pipeline's limits; a call
    /// keeps it to its end.
    pub fn adapter(&self) -> Adapter {
        let adapter = self.plugin.adapter_for(&self.config.name);
        let c = &self.config;
        if c.time_limit_ms.is_none() && c.memory_limit_mb.is_none() && c.fuel.is_none() {
            return adapter;
        }
        let mut limits = adapter.limits();
        if let Some(ms) = c.time_limit_ms {
            limits.time_limit = Duration::from_millis(ms);
        }
        if let Some(mb) = c.memory_limit_mb {
            limits.memory_bytes = (mb * 1024 * 1024) as usize;
        }
        if c.fuel.is_some() {
            limits.fuel = c.fuel;
        }
        adapter.with_limits(limits)
    }

    /// Extra metrics this pipeline's adapter declares it may emit: its fixed
    /// list, and the names in its `extra_metrics` option when it declares one
    /// (metrics kept under their own names, as TikTok's are).
    pub fn declared_extra_metrics(&self) -> Vec<String> {
        let adapter = self.plugin.adapter_for(&self.config.name);
        let info = adapter.info();
        let mut names = info.extra_metrics.clone();
        if info.options.iter().any(|o| o.name == "extra_metrics") {
            if let Some((_, list)) = self.options.iter().find(|(k, _)| k == "extra_metrics") {
                names.extend(
                    list.split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned),
                );
            }
        }
        names
    }

    /// The platform API version this pipeline speaks, with its sunset as of
    /// today in the pipeline's time zone, and a sentence when it needs action.
    pub fn api_version(&self) -> Option<(ApiVersionUse, Option<String>)> {
        let adapter = self.plugin.adapter_for(&self.config.name);
        let info = adapter.info();
        let today = chrono::Utc::now()
            .with_timezone(&self.config.timezone)
            .date_naive();
        let used = crate::plugin::options::api_version(info, &self.options, today)?;
        let newest = info.api_versions.first().map_or("", |v| v.name.as_str());
        let advice = used.advice(&info.platform, newest);
        Some((used, advice))
    }
}

impl fmt::Debug for Adapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adapter")
            .field("name", &self.name())
            .field("version", &self.info().version)
            .finish()
    }
}

/// Shared state of a running adpipe.
pub struct AppInner {
    pub config: Config,
    pub pipelines: HashMap<String, Pipeline>,
    pub plugins: BTreeMap<String, Arc<PluginSlot>>,
    /// Metric plugins by name.
    pub metric_plugins: BTreeMap<String, Arc<MetricSlot>>,
    /// The engine plugins are compiled with (reloads use it too).
    pub runtime: Runtime,
    /// Precompiled plugin artifacts (`<data_dir>/plugin-cache`).
    pub plugin_cache: std::path::PathBuf,
    pub bus: Bus,
    pub store: Store,
    pub metadata: Metadata,
    /// Seals payloads at rest (metadata and the Kafka dead-letter topic);
    /// never handed to a plugin.
    pub sealer: crate::seal::Sealer,
    pub keys: JwtKeys,
    pub rate_limits: RateLimits,
    pub answers: AnswerCache,
    /// Bumped per tenant whenever rows of that tenant are applied.
    pub data_versions: Arc<DataVersions>,
    pub telemetry: Telemetry,
    pub stamp: Stamp,
    /// Client of scheduled pulls.
    pub http: reqwest::Client,
    pub started: Instant,
}

/// Cheap-to-clone handle to the running application.
#[derive(Clone)]
pub struct App(pub Arc<AppInner>);

impl std::ops::Deref for App {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}
