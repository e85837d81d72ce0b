//! Wiring: open the bus, store and metadata in the data directory, load the
//! plugins, bind pipelines to their adapters and secrets, and run the
//! aggregation consumer (bus → store), the pull schedules, the retention
//! pruner and the plugin watcher in the background. The data directory is
//! created readable by its owner only (0700), and the key that seals kept
//! payloads and dead letters is loaded (or generated) before anything opens.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{App, AppInner, Pipeline, PullSecrets, Secret};
use crate::auth::JwtKeys;
use crate::bus::Bus;
use crate::config::{Config, PluginKind, ServeRun};
use crate::insights::cache::{AnswerCache, DataVersions};
use crate::metadata::Metadata;
use crate::pipeline::normalize::Stamp;
use crate::plugin::registry::{MetricSlot, PluginSlot};
use crate::plugin::Runtime;
use crate::ratelimit::RateLimits;
use crate::seal::{KeyOrigin, Sealer};
use crate::store::Store;
use crate::telemetry::Telemetry;

/// Starting adpipe failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating the data directory {0}")]
    DataDir(String, #[source] std::io::Error),
    #[error("opening the bus")]
    Bus(#[from] crate::bus::BusError),
    #[error("opening the store")]
    Store(#[from] crate::store::StoreError),
    #[error("opening the metadata database")]
    Metadata(#[from] crate::metadata::MetadataError),
    #[error("loading the encryption keys ([encryption])")]
    Seal(#[from] crate::seal::SealError),
    #[error("loading plugins")]
    Plugin(#[from] crate::plugin::LoadError),
    #[error("loading the JWT keys")]
    Keys(#[from] crate::auth::KeyError),
    #[error("reading cache.ca_file {0}")]
    CacheCa(String, #[source] std::io::Error),
    #[error("connecting to Redis (cache.url)")]
    Cache(#[from] redis::RedisError),
    #[error("building the HTTP client")]
    Http(#[from] reqwest::Error),
    #[error("pipeline `{pipeline}`: {}", issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Options {
        pipeline: String,
        issues: Vec<crate::plugin::options::OptionIssue>,
    },
}

impl App {
    /// Open everything and start the background work this process runs.
    pub async fn start(config: Config) -> Result<App, StartError> {
        let data_dir = config.server.data_dir.clone();
        crate::auth::create_private_dir(&data_dir)
            .map_err(|e| StartError::DataDir(data_dir.display().to_string(), e))?;
        warn_if_shared(&data_dir);
        let sealer = load_sealer(&config, &data_dir)?;
        let bus = Bus::open(&config.bus, &data_dir, sealer.clone()).await?;
        let store = Store::open(&config.store, &data_dir).await?;
        let metadata = Metadata::open(&config.metadata.url_or_default(&data_dir))
            .await?
            .with_sealer(sealer.clone());
        let keys = JwtKeys::from_config(&config.auth, &data_dir)?;
        // Shared data: every process of the deployment agrees on its scope.
        let scope = format!("{}|{}", bus.scope(), store.scope());
        let (rate_limits, answers) = limits_and_answers(&config, scope).await?;
        let runtime = Runtime::with_fuel(config.sandbox.fuel)?;
        let plugin_cache = data_dir.join("plugin-cache");
        let metric_plugins = load_metric_plugins(&config, &runtime).await?;
        let plugins = load_adapters(&config, &runtime, &plugin_cache).await?;
        let pipelines = bind_pipelines(&config, &plugins)?;
        let app = App(Arc::new(AppInner {
            pipelines,
            plugins,
            metric_plugins,
            runtime,
            plugin_cache,
            bus,
            store,
            metadata,
            sealer,
            keys,
            rate_limits,
            answers,
            data_versions: Arc::new(DataVersions::default()),
            telemetry: Telemetry::default(),
            stamp: Stamp::default(),
            http: pull_client()?,
            started: Instant::now(),
            config,
        }));
        app.spawn_background()?;
        Ok(app)
    }

    /// The consumer (unless API-only), pull schedules (unless
    /// consumer-only), the rate limiter's cleanup and the plugin watcher.
    fn spawn_background(&self) -> Result<(), StartError> {
        let run = self.config.server.run;
        if run != ServeRun::Api {
            let applier = crate::pipeline::consume::Applier {
                store: self.store.clone(),
                metadata: self.metadata.clone(),
                bus: self.bus.clone(),
                dead_letters: self.telemetry.dead_letters.clone(),
            };
            let reader = self
                .bus
                .reader(&self.store, self.telemetry.bus_consumer.clone())?;
            tokio::spawn(crate::pipeline::consume::run(
                reader,
                applier,
                self.data_versions.clone(),
            ));
        }
        // Retention: where the consumer runs (one pruner per deployment
        // role; several only repeat each other's deletes).
        if run != ServeRun::Api {
            tokio::spawn(prune_forever(self.clone()));
        }
        let forget = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                forget.rate_limits.forget_idle();
            }
        });
        // Pulls ingest: processes that serve the API run them.
        if run != ServeRun::Consumer {
            crate::pipeline::pull::spawn_schedules(self);
        }
        // The plugin registry: converge on the versions deployed to the fleet.
        crate::plugin::rollout::spawn(self);
        if self.config.server.watch_plugins {
            if let Err(e) = crate::plugin::watch::spawn(self) {
                tracing::warn!("watching plugin files failed, reload them with POST /v1/plugins/{{name}}/reload: {e}");
            }
        }
        Ok(())
    }
}

/// The sealing keys `[encryption]` names (or the data directory's), said
/// at start without the key itself.
fn load_sealer(config: &Config, data_dir: &std::path::Path) -> Result<Sealer, StartError> {
    let (sealer, origin) = Sealer::load(&config.encryption, data_dir, |name| {
        std::env::var(name).ok()
    })?;
    let key_id = sealer.current_key_id();
    match origin {
        KeyOrigin::Configured(from) => {
            tracing::info!(key_id, "payloads at rest are sealed with the key from the {from}")
        }
        KeyOrigin::Generated(path) => tracing::warn!(
            key_id,
            "no encryption key configured ([encryption] key_env or key_file): generated {} to seal payloads at rest; back it up with the data directory, or configure a key",
            path.display()
        ),
        KeyOrigin::DataDir(path) => tracing::info!(
            key_id,
            "payloads at rest are sealed with the key generated in {}",
            path.display()
        ),
    }
    Ok(sealer)
}

/// Say so when an existing data directory is readable by others (adpipe
/// creates it 0700 but leaves an operator's directory as it is).
fn warn_if_shared(data_dir: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(data_dir) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "the data directory {} is mode {mode:o}: other users may read its files; chmod 700 it",
                    data_dir.display()
                );
            }
        }
    }
}

/// Delete what `[retention]` no longer keeps, now and every `prune_every`,
/// counting the rows per kind.
async fn prune_forever(app: App) {
    let retention = app.config.retention.clone();
    let mut every = tokio::time::interval(retention.prune_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now_ms = chrono::Utc::now().timestamp_millis();
        match app.metadata.prune(&retention, now_ms).await {
            Ok(pruned) => {
                for (kind, rows) in pruned {
                    app.telemetry.pruned(kind.label(), rows);
                    if rows > 0 {
                        tracing::info!(kind = kind.label(), rows, "retention: old rows deleted");
                    }
                }
            }
            Err(e) => tracing::warn!(
                "retention: pruning old metadata rows failed, trying again later: {e}"
            ),
        }
    }
}

/// Rate limits and the answer cache: in process, or shared through Redis
/// (`cache.url`) under `scope`.
async fn limits_and_answers(
    config: &Config,
    scope: String,
) -> Result<(RateLimits, AnswerCache), StartError> {
    let Some(url) = &config.cache.url else {
        return Ok((
            RateLimits::new(&config.api.rate_limits),
            AnswerCache::new(&config.api.cache),
        ));
    };
    let client = match &config.cache.ca_file {
        None => redis::Client::open(url.as_str()),
        Some(ca) => {
            let root =
                std::fs::read(ca).map_err(|e| StartError::CacheCa(ca.display().to_string(), e))?;
            redis::Client::build_with_tls(
                url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root),
                },
            )
        }
    };
    let connection = client?.get_connection_manager().await?;
    Ok((
        RateLimits::shared(&config.api.rate_limits, connection.clone()),
        AnswerCache::new(&config.api.cache).with_redis(connection, scope),
    ))
}

/// Compile every metric plugin, off the async threads.
async fn load_metric_plugins(
    config: &Config,
    runtime: &Runtime,
) -> Result<BTreeMap<String, Arc<MetricSlot>>, StartError> {
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
        metric_plugins.insert(plugin.name.clone(), Arc::new(metric));
    }
    Ok(metric_plugins)
}

/// Compile (or take from `cache`) every adapter, off the async threads.
async fn load_adapters(
    config: &Config,
    runtime: &Runtime,
    cache: &std::path::Path,
) -> Result<BTreeMap<String, Arc<PluginSlot>>, StartError> {
    let mut plugins = BTreeMap::new();
    for plugin in config
        .plugins
        .iter()
        .filter(|p| p.kind == PluginKind::Adapter)
    {
        let (runtime, plugin_config, cache) = (runtime.clone(), plugin.clone(), cache.to_owned());
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
    Ok(plugins)
}

/// Each configured pipeline with its adapter's slot and its secrets from
/// the environment.
fn bind_pipelines(
    config: &Config,
    plugins: &BTreeMap<String, Arc<PluginSlot>>,
) -> Result<HashMap<String, Pipeline>, StartError> {
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
        let given: Vec<(String, String)> = p
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        let info = slot.adapter().info().clone();
        let resolved = crate::plugin::options::resolve(&info, &given).map_err(|issues| {
            StartError::Options {
                pipeline: p.name.clone(),
                issues,
            }
        })?;
        let unknown_options: Vec<String> =
            resolved.unknown.iter().map(ToString::to_string).collect();
        for issue in &unknown_options {
            tracing::warn!(pipeline = %p.name, "{issue} (ignored; `adpipe check` refuses it)");
        }
        let options = resolved.options;
        let today = chrono::Utc::now().with_timezone(&p.timezone).date_naive();
        if let Some(advice) =
            crate::plugin::options::api_version(&info, &options, today).and_then(|u| {
                u.advice(
                    &info.platform,
                    info.api_versions.first().map_or("", |v| v.name.as_str()),
                )
            })
        {
            tracing::warn!(pipeline = %p.name, "{advice}");
        }
        pipelines.insert(
            p.name.clone(),
            Pipeline {
                pull_secrets,
                config: p.clone(),
                plugin: slot.clone(),
                webhook_secret,
                verify_token: Secret::from_env(p.verify_token_env.as_deref()),
                options,
                unknown_options,
                stats: Arc::default(),
            },
        );
    }
    Ok(pipelines)
}

/// The client of scheduled pulls.
fn pull_client() -> Result<reqwest::Client, StartError> {
    Ok(reqwest::Client::builder()
        .user_agent(concat!("adpipe/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(120))
        // Pulls follow redirects themselves, each target allow-listed
        // and without the host's secrets off the original origin.
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}
