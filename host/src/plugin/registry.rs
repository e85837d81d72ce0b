//! The plugin registry: one slot per configured plugin, holding the version
//! that serves now. Reloads (file watcher, admin route, CLI) compile the new
//! bytes off the hot path, check them, and swap the slot atomically; calls
//! already running keep their `Adapter` (an `Arc`) and finish on the old
//! version. A rejected build leaves the old version serving, with the reason
//! recorded.
//!
//! Circuit breakers are per pipeline: a pipeline whose calls keep failing
//! (traps, timeouts, resource exhaustion) is quarantined until it cools down
//! or its plugin is reloaded, while other pipelines on the same plugin go on.
//! Every call takes one of the plugin's call slots ([`PluginSlot::call_slot`],
//! [`MetricSlot::call_slot`]); when none frees up within [`CALL_QUEUE_WAIT`]
//! the call is refused as back-pressure ([`Busy`]), never counted as a fault.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Adapter, Limits, LoadError, Runtime};
use crate::config::PluginConfig;

/// Consecutive plugin failures of one pipeline (traps, timeouts, resource
/// exhaustion) that open its breaker.
const BREAKER_THRESHOLD: u32 = 5;
/// How long an open breaker keeps the pipeline quarantined.
const BREAKER_COOLDOWN: Duration = Duration::from_secs(30);
/// How long a call waits for one of its plugin's call slots before it is
/// refused as busy (`503 plugin_busy` with `Retry-After`).
pub const CALL_QUEUE_WAIT: Duration = Duration::from_secs(1);

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// The new version serves now.
    Reloaded {
        version: String,
        content_hash: String,
    },
    /// The file has the bytes already serving.
    Unchanged {
        version: String,
        content_hash: String,
    },
    /// The new bytes failed a check; the old version keeps serving.
    Rejected {
        reason: String,
        serving_version: String,
    },
}

/// One version of a plugin, as loaded.
#[derive(Clone)]
pub struct Loaded {
    pub adapter: Adapter,
    pub loaded_at: DateTime<Utc>,
}

#[derive(Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

/// One pipeline's breaker, as `GET /v1/pipelines` and `GET /v1/plugins` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BreakerReport {
    /// `closed` (calls go through) or `open` (quarantined: refused without a call).
    pub state: &'static str,
    /// Plugin faults in a row (a success or a rejected payload resets it).
    pub consecutive_failures: u32,
    /// Seconds until an open breaker lets a call through again.
    pub retry_after_s: Option<u64>,
}

#[derive(Default)]
struct Status {
    reloads: u64,
    rejected_reloads: u64,
    last_error: Option<String>,
    /// Why the version loaded at start may not serve (it fails its own
    /// samples); a reload that passes the checks clears it.
    refused: Option<String>,
    /// Per pipeline (by name); a reload clears them all.
    breakers: HashMap<String, Breaker>,
}

/// A plugin's call slots: concurrent calls are bounded per plugin so a flood
/// of payloads cannot pin every blocking thread (and pooled instance) on it.
struct CallSlots {
    slots: Arc<tokio::sync::Semaphore>,
    size: usize,
}

impl CallSlots {
    fn new(configured: Option<u32>) -> CallSlots {
        let size = configured
            .map_or_else(default_call_slots, |n| n as usize)
            .max(1);
        CallSlots {
            slots: Arc::new(tokio::sync::Semaphore::new(size)),
            size,
        }
    }

    async fn acquire(&self, plugin: &str) -> Result<CallPermit, Busy> {
        match tokio::time::timeout(CALL_QUEUE_WAIT, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(CallPermit(permit)),
            // Timed out (or, never, closed): back-pressure, not a fault.
            _ => Err(Busy {
                plugin: plugin.to_owned(),
                slots: self.size,
                retry_after: 1,
            }),
        }
    }
}

/// Concurrent calls per plugin when `max_concurrent_calls` is unset.
fn default_call_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
}

/// A held call slot; dropping it frees the slot.
pub struct CallPermit(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

/// Every call slot of a plugin stayed taken for [`CALL_QUEUE_WAIT`].
#[derive(Clone, Debug, thiserror::Error)]
#[error("plugin `{plugin}` is busy: its {slots} call slots stayed taken; retry in {retry_after} s")]
pub struct Busy {
    pub plugin: String,
    pub slots: usize,
    pub retry_after: u64,
}

/// Why a pipeline's payload is refused without calling its plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// The plugin failed its own samples at start and serves nothing until a
    /// build that passes them is reloaded (the other plugins serve on).
    Refused { plugin: String, reason: String },
    /// The pipeline's breaker is open for this many more seconds.
    Quarantined { plugin: String, retry_after: u64 },
}

impl Unavailable {
    /// The API error code.
    pub fn code(&self) -> &'static str {
        match self {
            Unavailable::Refused { .. } => "plugin_refused",
            Unavailable::Quarantined { .. } => "plugin_quarantined",
        }
    }

    /// Seconds a client should wait (`Retry-After`), when waiting helps.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Unavailable::Refused { .. } => None,
            Unavailable::Quarantined { retry_after, .. } => Some(*retry_after),
        }
    }

    /// What the client and the dead letter are told, for `pipeline`.
    pub fn message(&self, pipeline: &str) -> String {
        match self {
            Unavailable::Refused { plugin, reason } => format!(
                "plugin `{plugin}` of pipeline `{pipeline}` was refused at start: {reason}; fix it and reload the plugin"
            ),
            Unavailable::Quarantined { plugin, retry_after } => format!(
                "pipeline `{pipeline}` is quarantined after repeated failures of plugin `{plugin}`; retry in {retry_after} s, or fix and reload the plugin"
            ),
        }
    }
}

/// A configured plugin and the version serving it.
pub struct PluginSlot {
    pub config: PluginConfig,
    limits: Limits,
    current: RwLock<Loaded>,
    /// Versions pinned to one pipeline each (canaries from the registry).
    pins: RwLock<HashMap<String, Loaded>>,
    status: Mutex<Status>,
    calls: CallSlots,
    /// Serializes reloads of this plugin.
    reloading: tokio::sync::Mutex<()>,
}

/// A plugin's state for the plugin list.
#[derive(Clone, Debug, Serialize)]
pub struct SlotReport {
    pub name: String,
    pub kind: &'static str,
    pub platform: String,
    pub version: String,
    pub content_hash: String,
    /// `active`; `degraded` while the breaker of one of its pipelines is open;
    /// `refused` when it failed its own samples at start (`last_error` says
    /// how) and serves nothing until a reload passes.
    pub state: &'static str,
    /// Pipelines whose breaker is open now.
    pub quarantined_pipelines: Vec<String>,
    /// Concurrent calls allowed (`max_concurrent_calls`).
    pub call_slots: usize,
    pub loaded_at: String,
    pub calls: u64,
    /// Payloads the plugin refused as not its platform's data (its own error).
    pub rejections: u64,
    /// Calls that trapped, panicked or hit a limit (what the breaker counts).
    pub failures: u64,
    pub reloads: u64,
    pub rejected_reloads: u64,
    pub last_error: Option<String>,
    pub path: String,
    /// Pipelines served by a pinned (canary) version: version and content hash.
    pub pinned: BTreeMap<String, PinReport>,
}

/// A pipeline's pinned version in the plugin list.
#[derive(Clone, Debug, Serialize)]
pub struct PinReport {
    pub version: String,
    pub content_hash: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PluginSlot {
    /// Load the configured file. A component that fails its own samples is
    /// loaded *refused*: the server starts, the other plugins serve, and this
    /// one's pipelines answer `503 plugin_refused` until a reload passes.
    pub fn load(
        runtime: &Runtime,
        config: &PluginConfig,
        cache_dir: Option<&Path>,
    ) -> Result<PluginSlot, LoadError> {
        let limits = config.limits();
        let adapter = runtime.load_adapter_cached(&config.name, &config.path, limits, cache_dir)?;
        let mut status = Status::default();
        if let Err(e) = check_samples(&adapter, &config.path) {
            let reason = e.to_string();
            tracing::error!(plugin = %config.name, "plugin refused, its pipelines serve nothing until a reload passes: {reason}");
            status.last_error = Some(reason.clone());
            status.refused = Some(reason);
        }
        Ok(PluginSlot {
            config: config.clone(),
            limits,
            current: RwLock::new(Loaded {
                adapter,
                loaded_at: Utc::now(),
            }),
            pins: RwLock::new(HashMap::new()),
            status: Mutex::new(status),
            calls: CallSlots::new(config.max_concurrent_calls),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// Why the plugin was refused, while it is.
    pub fn refused(&self) -> Option<String> {
        lock(&self.status).refused.clone()
    }

    /// `Some` when `pipeline`'s payloads must be refused without a call:
    /// the plugin is refused, or the pipeline's breaker is open.
    pub fn unavailable(&self, pipeline: &str) -> Option<Unavailable> {
        if let Some(reason) = self.refused() {
            return Some(Unavailable::Refused {
                plugin: self.config.name.clone(),
                reason,
            });
        }
        self.quarantined(pipeline)
            .map(|retry_after| Unavailable::Quarantined {
                plugin: self.config.name.clone(),
                retry_after,
            })
    }

    /// Wait (at most [`CALL_QUEUE_WAIT`]) for a call slot; hold it for the call.
    pub async fn call_slot(&self) -> Result<CallPermit, Busy> {
        self.calls.acquire(&self.config.name).await
    }

    /// The version serving now.
    pub fn adapter(&self) -> Adapter {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .adapter
            .clone()
    }

    /// The version serving `pipeline`: its pin, else the plugin's.
    pub fn adapter_for(&self, pipeline: &str) -> Adapter {
        if let Some(pinned) = self
            .pins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(pipeline)
        {
            return pinned.adapter.clone();
        }
        self.adapter()
    }

    /// The pinned versions, by pipeline.
    pub fn pins(&self) -> HashMap<String, Loaded> {
        self.pins.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serve `adapter` (checked with [`PluginSlot::candidate`]) on `pipeline` only.
    pub fn pin(&self, pipeline: &str, adapter: Adapter) {
        tracing::info!(plugin = %self.config.name, pipeline, version = %adapter.info().version,
            hash = %&adapter.content_hash()[..12], "pipeline pinned to a canary version");
        self.pins.write().unwrap_or_else(|p| p.into_inner()).insert(
            pipeline.to_owned(),
            Loaded {
                adapter,
                loaded_at: Utc::now(),
            },
        );
    }

    /// Drop the pins of pipelines not in `keep`.
    pub fn unpin_except(&self, keep: &[&str]) {
        self.pins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|pipeline, _| keep.contains(&pipeline.as_str()));
    }

    /// The version serving now, with its load time.
    pub fn loaded(&self) -> Loaded {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Load the file again; swap if it is new and passes the checks.
    pub async fn reload(
        self: &Arc<Self>,
        runtime: &Runtime,
        cache_dir: Option<PathBuf>,
    ) -> ReloadOutcome {
        let bytes = match tokio::fs::read(&self.config.path).await {
            Ok(bytes) => bytes,
            Err(e) => {
                let current = self.adapter();
                return self.reject(
                    &current,
                    format!("reading {}: {e}", self.config.path.display()),
                );
            }
        };
        self.install(runtime, cache_dir, bytes).await
    }

    /// Compile `bytes` off the async threads and check them as a reload
    /// does: a valid component of a supported interface that describes
    /// itself, the platform of the version serving, the samples beside the
    /// plugin's file.
    pub async fn candidate(
        &self,
        runtime: &Runtime,
        cache_dir: Option<PathBuf>,
        bytes: Vec<u8>,
    ) -> Result<Adapter, String> {
        let (runtime, name, limits, path) = (
            runtime.clone(),
            self.config.name.clone(),
            self.limits,
            self.config.path.clone(),
        );
        let platform = self.adapter().info().platform.clone();
        // Compiling is CPU-heavy: never on the async workers.
        tokio::task::spawn_blocking(move || -> Result<Adapter, String> {
            let adapter = runtime
                .load_adapter_bytes_cached(&name, &bytes, limits, cache_dir.as_deref())
                .map_err(|e| e.to_string())?;
            if adapter.info().platform != platform {
                return Err(format!(
                    "the new build says platform `{}`, the serving one `{platform}`: a reload cannot change platforms",
                    adapter.info().platform
                ));
            }
            check_samples(&adapter, &path).map_err(|e| e.to_string())?;
            Ok(adapter)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
    }

    /// Swap to `bytes` if they are new and pass the checks of
    /// [`PluginSlot::candidate`]; calls already running finish on the old version.
    pub async fn install(
        self: &Arc<Self>,
        runtime: &Runtime,
        cache_dir: Option<PathBuf>,
        bytes: Vec<u8>,
    ) -> ReloadOutcome {
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.adapter();
        let hash = super::content_hash(&bytes);
        if hash == current.content_hash() && self.refused().is_some() {
            // Same build, refused at start: its samples may have been fixed.
            let (adapter, path) = (current.clone(), self.config.path.clone());
            let checked = tokio::task::spawn_blocking(move || check_samples(&adapter, &path))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            if let Err(reason) = checked {
                return self.reject(&current, reason);
            }
            let mut status = lock(&self.status);
            status.refused = None;
            status.last_error = None;
            tracing::info!(plugin = %self.config.name, "plugin passes its samples now and serves");
            return ReloadOutcome::Reloaded {
                version: current.info().version.clone(),
                content_hash: hash,
            };
        }
        if hash == current.content_hash() {
            // An operator asking again after fixing what the plugin depends on: let it try.
            lock(&self.status).breakers.clear();
            return ReloadOutcome::Unchanged {
                version: current.info().version.clone(),
                content_hash: hash,
            };
        }
        let candidate = self.candidate(runtime, cache_dir, bytes).await;
        match candidate {
            Ok(adapter) => {
                let outcome = ReloadOutcome::Reloaded {
                    version: adapter.info().version.clone(),
                    content_hash: adapter.content_hash().to_owned(),
                };
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Loaded {
                    adapter,
                    loaded_at: Utc::now(),
                };
                let mut status = lock(&self.status);
                status.reloads += 1;
                status.last_error = None;
                status.refused = None;
                status.breakers.clear();
                tracing::info!(plugin = %self.config.name, ?outcome, "plugin reloaded");
                outcome
            }
            Err(reason) => self.reject(&current, reason),
        }
    }

    fn reject(&self, current: &Adapter, reason: String) -> ReloadOutcome {
        tracing::warn!(plugin = %self.config.name, "reload rejected, the old version keeps serving: {reason}");
        let mut status = lock(&self.status);
        status.rejected_reloads += 1;
        status.last_error = Some(reason.clone());
        ReloadOutcome::Rejected {
            reason,
            serving_version: current.info().version.clone(),
        }
    }

    /// `Some(seconds until retry)` while `pipeline`'s breaker is open.
    pub fn quarantined(&self, pipeline: &str) -> Option<u64> {
        let mut status = lock(&self.status);
        let breaker = status.breakers.get_mut(pipeline)?;
        match breaker.open_until {
            Some(until) if until > Instant::now() => {
                Some((until - Instant::now()).as_secs().max(1))
            }
            Some(_) => {
                // Half-open: let the next call through; one more failure re-opens.
                breaker.open_until = None;
                breaker.consecutive_failures = BREAKER_THRESHOLD - 1;
                None
            }
            None => None,
        }
    }

    /// Record the outcome of a call for `pipeline` (`plugin_fault`: a trap,
    /// timeout or exhausted limit; not a rejected payload, not a busy plugin).
    pub fn record(&self, pipeline: &str, plugin_fault: bool) {
        let mut status = lock(&self.status);
        if !plugin_fault {
            if let Some(breaker) = status.breakers.get_mut(pipeline) {
                breaker.consecutive_failures = 0;
            }
            return;
        }
        let breaker = status.breakers.entry(pipeline.to_owned()).or_default();
        breaker.consecutive_failures += 1;
        if breaker.consecutive_failures >= BREAKER_THRESHOLD && breaker.open_until.is_none() {
            breaker.open_until = Some(Instant::now() + BREAKER_COOLDOWN);
            tracing::error!(plugin = %self.config.name, pipeline, "pipeline quarantined after {BREAKER_THRESHOLD} consecutive plugin failures");
        }
    }

    /// `pipeline`'s breaker now.
    pub fn breaker(&self, pipeline: &str) -> BreakerReport {
        let retry_after_s = self.quarantined(pipeline);
        let status = lock(&self.status);
        let consecutive_failures = status
            .breakers
            .get(pipeline)
            .map_or(0, |b| b.consecutive_failures);
        BreakerReport {
            state: if retry_after_s.is_some() {
                "open"
            } else {
                "closed"
            },
            consecutive_failures,
            retry_after_s,
        }
    }

    /// Breakers of the pipelines that have had a failure since the last reload.
    pub fn breakers(&self) -> BTreeMap<String, BreakerReport> {
        let names: Vec<String> = lock(&self.status).breakers.keys().cloned().collect();
        names
            .into_iter()
            .map(|name| {
                let report = self.breaker(&name);
                (name, report)
            })
            .collect()
    }

    /// The plugin list entry.
    pub fn report(&self) -> SlotReport {
        let loaded = self.loaded();
        let quarantined_pipelines: Vec<String> = self
            .breakers()
            .into_iter()
            .filter(|(_, b)| b.state == "open")
            .map(|(name, _)| name)
            .collect();
        let status = lock(&self.status);
        let counters = loaded.adapter.counters();
        let info = loaded.adapter.info();
        SlotReport {
            name: self.config.name.clone(),
            kind: "adapter",
            platform: info.platform.clone(),
            version: info.version.clone(),
            content_hash: loaded.adapter.content_hash().to_owned(),
            state: if status.refused.is_some() {
                "refused"
            } else if quarantined_pipelines.is_empty() {
                "active"
            } else {
                "degraded"
            },
            quarantined_pipelines,
            call_slots: self.calls.size,
            loaded_at: loaded.loaded_at.to_rfc3339(),
            calls: counters.calls,
            rejections: counters.rejections,
            failures: counters.failures,
            reloads: status.reloads,
            rejected_reloads: status.rejected_reloads,
            last_error: status.last_error.clone(),
            path: self.config.path.display().to_string(),
            pinned: self
                .pins()
                .into_iter()
                .map(|(pipeline, loaded)| {
                    let pin = PinReport {
                        version: loaded.adapter.info().version.clone(),
                        content_hash: loaded.adapter.content_hash().to_owned(),
                    };
                    (pipeline, pin)
                })
                .collect(),
        }
    }
}

/// A plugin may ship sample payloads beside it, in the folder named like the
/// component without `.wasm` (`dist/plugins/acme.wasm` → `dist/plugins/acme.samples/`):
/// - `*.json` must parse (`webhook*.json` as webhook bodies); where
///   `<sample>.expected.json` exists (what `adpipe plugin test --bless`
///   writes), the rows must equal it;
/// - `*.fail.json` must be refused by the plugin with its own error (a
///   payload the platform may send that is not data).
///
/// A folder named after the whole file (`acme.wasm.samples/`) is refused with
/// the name to use, so a misplaced folder never passes silently.
pub fn check_samples(adapter: &Adapter, wasm: &Path) -> Result<(), LoadError> {
    let invalid = |reason: String| LoadError::Invalid {
        name: adapter.name().to_owned(),
        reason,
    };
    let dir = wasm.with_extension("samples");
    let misplaced = wasm.with_file_name(format!(
        "{}.samples",
        wasm.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    if misplaced != dir && misplaced.is_dir() {
        return Err(invalid(format!(
            "samples belong in {}, not {}",
            dir.display(),
            misplaced.display()
        )));
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let context = super::ParseContext {
        options: vec![],
        account_id: None,
        currency: None,
        received_at_ms: 0,
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && !n.ends_with(".expected.json"))
        .collect();
    names.sort();
    for name in &names {
        let path = dir.join(name);
        let body = std::fs::read(&path)
            .map_err(|e| invalid(format!("reading sample {}: {e}", path.display())))?;
        let result = super::authoring::parse_sample(adapter, name, body, &context);
        if name.ends_with(".fail.json") {
            match result {
                Err(super::CallError::Rejected(_)) => continue,
                Err(e) => return Err(invalid(format!("its own sample {name} fails: {e}"))),
                Ok(batch) => {
                    return Err(invalid(format!(
                        "its own sample {name} should be refused but parsed into {} rows",
                        batch.rows.kind.len()
                    )))
                }
            }
        }
        let batch = result.map_err(|e| invalid(format!("its own sample {name} fails: {e}")))?;
        let expected = path.with_extension("expected.json");
        if let Ok(text) = std::fs::read_to_string(&expected) {
            let want: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| invalid(format!("reading {}: {e}", expected.display())))?;
            if super::authoring::rows_json(&batch) != want {
                return Err(invalid(format!(
                    "its own sample {name} parses into other rows than {} (rerun `adpipe plugin test --bless` if the change is meant)",
                    expected.display()
                )));
            }
        }
    }
    if !names.is_empty() {
        tracing::info!(plugin = adapter.name(), samples = names.len(), dir = %dir.display(), "samples parsed as expected");
    }
    Ok(())
}

/// A configured metric plugin and the version serving it (reloads swap it).
pub struct MetricSlot {
    pub config: PluginConfig,
    current: RwLock<super::metric::MetricPlugin>,
    status: Mutex<Status>,
    calls: CallSlots,
    reloading: tokio::sync::Mutex<()>,
}

impl MetricSlot {
    /// Load the configured file.
    pub fn load(runtime: &Runtime, config: &PluginConfig) -> Result<MetricSlot, LoadError> {
        let plugin = runtime.load_metric(&config.name, &config.path, config.limits())?;
        Ok(MetricSlot {
            config: config.clone(),
            current: RwLock::new(plugin),
            status: Mutex::new(Status::default()),
            calls: CallSlots::new(config.max_concurrent_calls),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// Wait (at most [`CALL_QUEUE_WAIT`]) for a call slot; hold it for the call.
    pub async fn call_slot(&self) -> Result<CallPermit, Busy> {
        self.calls.acquire(&self.config.name).await
    }

    /// The version serving now.
    pub fn plugin(&self) -> super::metric::MetricPlugin {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Load the file again; swap if it is new and passes the checks.
    pub async fn reload(self: &Arc<Self>, runtime: &Runtime) -> ReloadOutcome {
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.plugin();
        let (runtime, config) = (runtime.clone(), self.config.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            runtime.load_metric(&config.name, &config.path, config.limits())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        let mut status = lock(&self.status);
        match loaded {
            Ok(plugin) if plugin.content_hash() == current.content_hash() => {
                ReloadOutcome::Unchanged {
                    version: current.info().version.clone(),
                    content_hash: current.content_hash().to_owned(),
                }
            }
            Ok(plugin) => {
                let outcome = ReloadOutcome::Reloaded {
                    version: plugin.info().version.clone(),
                    content_hash: plugin.content_hash().to_owned(),
                };
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = plugin;
                status.reloads += 1;
                status.last_error = None;
                outcome
            }
            Err(reason) => {
                tracing::warn!(plugin = %self.config.name, "metric plugin reload rejected: {reason}");
                status.rejected_reloads += 1;
                status.last_error = Some(reason.clone());
                ReloadOutcome::Rejected {
                    reason,
                    serving_version: current.info().version.clone(),
                }
            }
        }
    }

    /// Reload counters and the last error, for the plugin list.
    pub fn reload_status(&self) -> (u64, u64, Option<String>) {
        let status = lock(&self.status);
        (
            status.reloads,
            status.rejected_reloads,
            status.last_error.clone(),
        )
    }
}
