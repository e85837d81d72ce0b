//! Wiring: open the bus, store and metadata in the data directory, load the
//! plugins, bind pipelines to their adapters and secrets, and run the
//! aggregation consumer (bus → store) in the background.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::JwtKeys;
use crate::bus::{Bus, EmbeddedBus};
use crate::config::{Config, PipelineConfig, PluginKind};
use crate::insights::cache::{AnswerCache, DataVersions};
use crate::metadata::Metadata;
use crate::pipeline::normalize::Stamp;
use crate::plugin::metric::MetricPlugin;
use crate::plugin::registry::{MetricSlot, PluginSlot};
use crate::plugin::{Adapter, Runtime};
use crate::ratelimit::RateLimits;
use crate::row::RowEnvelope;
use crate::store::{EmbeddedStore, Store};
use crate::telemetry::Telemetry;

/// Starting adpipe failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating the data directory {0}")]
    DataDir(String, #[source] std::io::Error),
    #[error("opening the embedded bus")]
    Bus(#[from] crate::bus::BusError),
    #[error("opening the store")]
    Store(#[from] crate::store::StoreError),
    #[error("opening the metadata database")]
    Metadata(#[from] crate::metadata::MetadataError),
    #[error("loading plugins")]
    Plugin(#[from] crate::plugin::LoadError),
    #[error("loading the JWT keys")]
    Keys(#[from] crate::auth::KeyError),
    #[error("connecting to Kafka (bus.brokers): {0}")]
    Kafka(String),
    #[error("connecting to Redis (cache.url): {0}")]
    Cache(String),
    #[error("building the HTTP client: {0}")]
    Http(String),
}

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
    /// Credentials of scheduled pulls, read from the environment.
    pub pull_secrets: PullSecrets,
}

/// Secrets a pull injects into requests.
#[derive(Clone, Debug, Default)]
pub struct PullSecrets {
    pub credential: Option<Secret>,
    /// Header name → value.
    pub headers: Vec<(String, Secret)>,
}

impl AppInner {
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
        let adapter = self.plugin.adapter();
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

impl App {
    /// Open everything and start the consumer.
    pub async fn start(config: Config) -> Result<App, StartError> {
        let data_dir = config.server.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| StartError::DataDir(data_dir.display().to_string(), e))?;
        let bus = match config.bus.kind {
            crate::config::BusKind::Kafka => Bus::Kafka(Box::new(
                crate::bus::kafka::KafkaBus::open(&config.bus)
                    .await
                    .map_err(|e| StartError::Kafka(e.to_string()))?,
            )),
            crate::config::BusKind::Embedded => {
                Bus::Embedded(EmbeddedBus::open(&data_dir.join("bus.db")).await?)
            }
        };
        let store = match (config.store.kind, &config.store.url) {
            (crate::config::StoreKind::Clickhouse, Some(url)) => Store::ClickHouse(Box::new(
                crate::store::clickhouse::ClickHouseStore::open(
                    url,
                    config.store.database.as_deref(),
                )
                .await?,
            )),
            _ => Store::Embedded(EmbeddedStore::open(&data_dir.join("store.db")).await?),
        };
        let metadata = Metadata::open(&config.metadata.url_or_default(&data_dir)).await?;
        let keys = JwtKeys::from_config(&config.auth, &data_dir)?;

        let (rate_limits, answers) = match &config.cache.url {
            None => (
                RateLimits::new(&config.api.rate_limits),
                AnswerCache::new(&config.api.cache),
            ),
            Some(url) => {
                let client = match &config.cache.ca_file {
                    None => redis::Client::open(url.as_str()),
                    Some(ca) => {
                        let root = std::fs::read(ca).map_err(|e| {
                            StartError::Cache(format!("cache.ca_file {}: {e}", ca.display()))
                        })?;
                        redis::Client::build_with_tls(
                            url.as_str(),
                            redis::TlsCertificates {
                                client_tls: None,
                                root_cert: Some(root),
                            },
                        )
                    }
                };
                let connection = client
                    .map_err(|e| StartError::Cache(e.to_string()))?
                    .get_connection_manager()
                    .await
                    .map_err(|e| StartError::Cache(e.to_string()))?;
                (
                    RateLimits::shared(&config.api.rate_limits, connection.clone()),
                    AnswerCache::new(&config.api.cache).with_redis(
                        connection,
                        match config.bus.kind {
                            // Shared data: every process of the deployment agrees.
                            crate::config::BusKind::Kafka => format!(
                                "kafka|{}|{}|{:?}|{:?}",
                                config.bus.brokers.as_deref().unwrap_or(""),
                                config.bus.topic,
                                config.store.url,
                                config.store.database
                            ),
                            // Embedded data belongs to one data directory.
                            crate::config::BusKind::Embedded => {
                                format!("embedded|{}", data_dir.display())
                            }
                        },
                    ),
                )
            }
        };
        let runtime = Runtime::with_fuel(config.sandbox.fuel)?;
        let plugin_cache = data_dir.join("plugin-cache");
        let mut plugins = BTreeMap::new();
        let mut metric_plugins = BTreeMap::new();
        for plugin in config
            .plugins
            .iter()
            .filter(|p| p.kind == PluginKind::Metric)
        {
            let (runtime, plugin_config) = (runtime.clone(), plugin.clone());
            let metric =
                tokio::task::spawn_blocking(move || MetricSlot::load(&runtime, &plugin_config))
                    .await
                    .map_err(|e| crate::plugin::LoadError::Invalid {
                        name: plugin.name.clone(),
                        reason: e.to_string(),
                    })??;
            let names: Vec<String> = metric
                .plugin()
                .info()
                .metrics
                .iter()
                .map(|m| m.name.clone())
                .collect();
            tracing::info!(plugin = %plugin.name, metrics = ?names, "metric plugin loaded");
            let metric = Arc::new(metric);
            metric_plugins.insert(plugin.name.clone(), metric);
        }
        for plugin in config
            .plugins
            .iter()
            .filter(|p| p.kind == PluginKind::Adapter)
        {
            let (runtime, plugin_config, cache) =
                (runtime.clone(), plugin.clone(), plugin_cache.clone());
            let slot = tokio::task::spawn_blocking(move || {
                PluginSlot::load(&runtime, &plugin_config, Some(&cache))
            })
            .await
            .map_err(|e| crate::plugin::LoadError::Invalid {
                name: plugin.name.clone(),
                reason: e.to_string(),
            })??;
            let adapter = slot.adapter();
            tracing::info!(
                plugin = %plugin.name,
                platform = %adapter.info().platform,
                version = %adapter.info().version,
                hash = %&adapter.content_hash()[..12],
                from_cache = adapter.from_cache(),
                "plugin loaded"
            );
            plugins.insert(plugin.name.clone(), Arc::new(slot));
        }

        let mut pipelines = HashMap::new();
        for p in &config.pipelines {
            let Some(slot) = plugins.get(&p.adapter) else {
                continue;
            };
            let webhook_secret = Secret::from_env(p.webhook_secret_env.as_deref());
            if p.webhook_secret_env.is_some() && webhook_secret.is_none() {
                tracing::warn!(
                    pipeline = %p.name,
                    variable = p.webhook_secret_env.as_deref().unwrap_or(""),
                    "webhook secret variable is not set: webhooks of this pipeline will be refused"
                );
            }
            let pull_secrets = match &p.pull {
                None => PullSecrets::default(),
                Some(pull) => PullSecrets {
                    credential: Secret::from_env(pull.credential_env.as_deref()),
                    headers: pull
                        .header_envs
                        .iter()
                        .filter_map(|(header, var)| {
                            Some((header.clone(), Secret::from_env(Some(var))?))
                        })
                        .collect(),
                },
            };
            pipelines.insert(
                p.name.clone(),
                Pipeline {
                    pull_secrets,
                    config: p.clone(),
                    plugin: slot.clone(),
                    webhook_secret,
                    verify_token: Secret::from_env(p.verify_token_env.as_deref()),
                    options: p
                        .options
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_string()))
                        .collect(),
                },
            );
        }

        let app = App(Arc::new(AppInner {
            pipelines,
            plugins,
            metric_plugins,
            runtime,
            plugin_cache,
            bus,
            store,
            metadata,
            keys,
            rate_limits,
            answers,
            data_versions: Arc::new(DataVersions::default()),
            telemetry: Telemetry::default(),
            stamp: Stamp::default(),
            http: reqwest::Client::builder()
                .user_agent(concat!("adpipe/", env!("CARGO_PKG_VERSION")))
                .timeout(Duration::from_secs(120))
                // Pulls follow redirects themselves, each target allow-listed
                // and without the host's secrets off the original origin.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| StartError::Http(e.to_string()))?,
            started: Instant::now(),
            config,
        }));
        let applier = crate::pipeline::consume::Applier {
            store: app.store.clone(),
            metadata: app.metadata.clone(),
            kafka: match &app.bus {
                Bus::Kafka(bus) => Some((**bus).clone()),
                Bus::Embedded(_) => None,
            },
            dead_letters: app.telemetry.dead_letters.clone(),
        };
        match &app.bus {
            Bus::Embedded(bus) => {
                tokio::spawn(consume(bus.clone(), applier, app.data_versions.clone()));
            }
            Bus::Kafka(bus) => {
                let consumer = bus
                    .consumer(&app.config.bus)
                    .map_err(|e| StartError::Kafka(e.to_string()))?;
                tokio::spawn(crate::bus::kafka::consume(
                    Arc::new(consumer),
                    applier,
                    app.config.bus.topic.clone(),
                    (**bus).clone(),
                    app.telemetry.bus_consumer.clone(),
                ));
            }
        }
        let forget = app.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                forget.rate_limits.forget_idle();
            }
        });
        crate::pipeline::pull::spawn_schedules(&app);
        if app.config.server.watch_plugins {
            if let Err(e) = crate::plugin::watch::spawn(&app) {
                tracing::warn!("watching plugin files failed, reload them with POST /v1/plugins/{{name}}/reload: {e}");
            }
        }
        Ok(app)
    }
}

/// Records applied per store transaction.
const CONSUME_BATCH: u32 = 64;

/// The aggregation consumer: applies bus records to the store, in order, forever.
async fn consume(
    bus: EmbeddedBus,
    applier: crate::pipeline::consume::Applier,
    versions: Arc<DataVersions>,
) {
    let store = applier.store.clone();
    let mut since_trim = 0u32;
    loop {
        let from = store.applied_offset();
        let records = match bus.read_after(from, CONSUME_BATCH).await {
            Ok(records) => records,
            Err(error) => {
                tracing::error!("reading the bus failed, retrying: {error}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if records.is_empty() {
            bus.wait_beyond(from, Duration::from_secs(1)).await;
            continue;
        }
        let mut decoded = Vec::with_capacity(records.len());
        for (offset, payload) in records {
            match serde_json::from_slice::<RowEnvelope>(&payload) {
                Ok(envelope) => decoded.push((offset, envelope)),
                Err(error) => {
                    // Only adpipe writes the log; keep going, but say so loudly.
                    tracing::error!(offset, "undecodable bus record skipped: {error}");
                    decoded.push((
                        offset,
                        RowEnvelope {
                            tenant: String::new(),
                            pipeline: String::new(),
                            rows: vec![],
                        },
                    ));
                }
            }
        }
        // Raise versions first: see crate::insights::cache for why this order is safe.
        for (offset, envelope) in &decoded {
            versions.advance(&envelope.tenant, *offset);
        }
        applier.apply(&decoded).await;

        since_trim += 1;
        if since_trim >= 16 {
            since_trim = 0;
            if let Err(error) = bus.trim_through(store.applied_offset()).await {
                tracing::warn!("trimming the bus failed: {error}");
            }
        }
    }
}
