//! The WASM plugin host: one wasmtime [`Engine`] with epoch interruption,
//! adapters compiled once and pre-instantiated, a fresh store per call batch
//! with a memory limit and a wall-clock deadline.
//!
//! A plugin sees only the WIT interface plus a locked-down WASI: no preopened
//! directories, no environment, no network, frozen clocks. A trap (panic,
//! deadline, memory limit) fails the one call; the instance is discarded and
//! the host carries on.

pub mod authoring;
pub mod bindings;
pub mod build;
mod compat;
pub mod metric;
pub mod options;
pub mod registry;
pub mod rollout;
pub mod signing;
pub mod watch;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder, Trap,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use bindings::adapter::adpipe::plugin::{log, types as wit};
use bindings::adapter::exports::adpipe::plugin::adapter as wit_adapter;
use bindings::{v0_1, v0_2};

pub use wit::{
    BucketKind, CredentialSlot, Date, ErrorKind, HttpRequest, ParseContext, PluginError, RowBatch,
    RowKind,
};
pub use wit_adapter::{
    AdapterInfo, ApiVersion, HandshakePlan, HmacSpec, OptionSpec, OptionType, PullRequest,
    SignatureScheme, WebhookRequest,
};

/// How often the epoch ticker advances; deadlines are multiples of it.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Concurrent plugin instances across the process (each call holds one).
const POOL_SLOTS: u32 = 256;
/// Upper bound of any plugin's memory limit (`memory_limit_mb` ≤ 4096).
const MAX_PLUGIN_MEMORY: usize = 4 << 30;
/// Linear memory kept mapped per slot between calls.
const KEEP_RESIDENT: usize = 64 << 20;

/// Loading a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading plugin `{name}` from {path}")]
    Read {
        name: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin `{name}` is not a valid adpipe adapter component: {reason}")]
    Invalid { name: String, reason: String },
}

/// Why `bytes` cannot be a WebAssembly component, told the way its author
/// can act on (the engine's own words dump the header bytes over lines),
/// or `None` when it may be one.
pub(crate) fn not_a_component(bytes: &[u8]) -> Option<String> {
    const MAGIC: &[u8; 4] = b"\0asm";
    // Binary format version and layer: core modules are 1, 0, 0, 0.
    const CORE_MODULE: [u8; 4] = [1, 0, 0, 0];
    if !bytes.starts_with(MAGIC) {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Some(format!(
            "not a WebAssembly file ({} bytes starting `{}`; a component starts `00 61 73 6d`, \"\\0asm\"): \
             point `path` at the built .wasm",
            bytes.len(),
            head.join(" ")
        ));
    }
    if bytes.get(4..8) == Some(&CORE_MODULE[..]) {
        return Some(
            "a core WebAssembly module, not a component: build for `wasm32-wasip2` \
             (`cargo build --target wasm32-wasip2 --release`, or `adpipe plugin new`'s scaffold)"
                .into(),
        );
    }
    None
}

/// An engine error on one line: its `Debug`-formatted parts span several.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A call into a plugin failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The plugin rejected the payload with a typed error.
    #[error("{}", describe_plugin_error(.0))]
    Rejected(PluginError),
    /// The plugin ran past its time limit.
    #[error("plugin `{plugin}` exceeded its time limit of {limit_ms} ms")]
    Timeout { plugin: String, limit_ms: u64 },
    /// The plugin used up its instruction budget.
    #[error("plugin `{plugin}` exceeded its fuel limit of {fuel} units")]
    OutOfFuel { plugin: String, fuel: u64 },
    /// The plugin tried to grow past its memory limit.
    #[error("plugin `{plugin}` exceeded its memory limit of {limit_mb} MiB")]
    OutOfMemory { plugin: String, limit_mb: u64 },
    /// The plugin trapped (a panic, an out-of-bounds access...).
    #[error("plugin `{plugin}` trapped: {detail}")]
    Trapped { plugin: String, detail: String },
    /// No instance could be had: the pool is full (back-pressure, not the plugin's fault).
    #[error("plugin `{plugin}` is busy: {detail}; retry shortly")]
    Busy { plugin: String, detail: String },
}

/// The error code of a payload the plugin refused with `kind`.
pub fn rejection_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Malformed => "malformed_payload",
        ErrorKind::InvalidShape => "invalid_shape",
        ErrorKind::InvalidValue => "invalid_value",
        ErrorKind::PlatformError => "platform_error",
        ErrorKind::MissingContext => "missing_context",
        ErrorKind::Unsupported => "unsupported_payload",
    }
}

impl CallError {
    /// The stable snake_case code of this outcome: the API's error code and
    /// what `adpipe plugin test` shows (never a Rust type name).
    pub fn code(&self) -> &'static str {
        match self {
            CallError::Rejected(e) => rejection_code(e.kind),
            CallError::Busy { .. } => "plugin_busy",
            CallError::Timeout { .. } => "plugin_timeout",
            CallError::OutOfFuel { .. } => "plugin_out_of_fuel",
            CallError::OutOfMemory { .. } => "plugin_out_of_memory",
            CallError::Trapped { .. } => "plugin_failed",
        }
    }
}

fn describe_plugin_error(e: &PluginError) -> String {
    if e.path.is_empty() {
        e.message.clone()
    } else {
        format!("{}: {}", e.path, e.message)
    }
}

/// Sandbox limits of one plugin.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub time_limit: Duration,
    pub memory_bytes: usize,
    /// Instruction budget per call (needs `sandbox.fuel = true`; `None` = unmetered).
    pub fuel: Option<u64>,
}

impl crate::config::PluginConfig {
    /// The sandbox limits this plugin's calls run under.
    pub fn limits(&self) -> Limits {
        Limits {
            time_limit: Duration::from_millis(self.time_limit_ms),
            memory_bytes: (self.memory_limit_mb * 1024 * 1024) as usize,
            fuel: self.fuel,
        }
    }
}

/// The process-wide engine and its epoch ticker.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<PluginState>>,
    metric_linker: Arc<Linker<PluginState>>,
}

impl Runtime {
    /// An engine with epoch interruption, and a thread that ticks it.
    pub fn new() -> Result<Runtime, LoadError> {
        Self::with_fuel(false)
    }

    /// The shared engine with fuel metering on or off (metering costs every
    /// call some speed, so it is opt-in: `[sandbox] fuel = true`).
    pub fn with_fuel(fuel: bool) -> Result<Runtime, LoadError> {
        static PLAIN: OnceLock<Result<Runtime, String>> = OnceLock::new();
        static METERED: OnceLock<Result<Runtime, String>> = OnceLock::new();
        let shared = if fuel { &METERED } else { &PLAIN };
        Self::shared(shared, fuel, true)
    }

    /// The engine itself, for loading a bare core module compiled with the
    /// same settings (the adapter benchmark's `floor`).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// An engine without epoch interruption: calls cannot be stopped by a
    /// deadline. Only for measuring what the time limit costs; never serve with it.
    pub fn without_deadlines() -> Result<Runtime, LoadError> {
        static UNBOUNDED: OnceLock<Result<Runtime, String>> = OnceLock::new();
        Self::shared(&UNBOUNDED, false, false)
    }

    fn shared(
        cell: &'static OnceLock<Result<Runtime, String>>,
        fuel: bool,
        epochs: bool,
    ) -> Result<Runtime, LoadError> {
        cell.get_or_init(|| Self::build(fuel, epochs).map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(|reason| LoadError::Invalid {
                name: "(engine)".into(),
                reason,
            })
    }

    fn build(fuel: bool, epochs: bool) -> wasmtime::Result<Runtime> {
        let mut config = Config::new();
        config.epoch_interruption(epochs);
        config.consume_fuel(fuel);
        config.wasm_component_model(true);
        // Pooled instance slots whose linear memory stays resident (reset with
        // memset): a fresh instance per call then reuses warm pages instead of
        // taking a page fault for every page the parser touches. Where Linux
        // has PAGEMAP_SCAN (6.7+), only the pages the last call wrote are
        // reset: without it, every call paid a memset of the whole initial
        // memory (the guest's 1 MiB stack and more), about half of the price
        // of a trivial call (measured: 27 µs, 47% in memset).
        let mut pool = PoolingAllocationConfig::default();
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        pool.total_component_instances(POOL_SLOTS)
            .total_core_instances(POOL_SLOTS)
            .total_memories(POOL_SLOTS)
            .total_tables(POOL_SLOTS)
            .max_memory_size(MAX_PLUGIN_MEMORY)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 * 1024);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        #[cfg(feature = "wasm-profiling")]
        if std::env::var("ADPIPE_WASM_PROFILER").as_deref() == Ok("perfmap") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("adpipe-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(wasmtime::Error::from)?;
        // One linker per world, each offering every interface version the host loads.
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        v0_2::adapter::AdapterPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut linker,
            |s| s,
        )?;
        v0_1::adapter::AdapterPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut linker,
            |s| s,
        )?;
        let mut metric_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut metric_linker)?;
        v0_2::metric::MetricPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut metric_linker,
            |s| s,
        )?;
        v0_1::metric::MetricPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut metric_linker,
            |s| s,
        )?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            metric_linker: Arc::new(metric_linker),
        })
    }

    /// Compile and pre-instantiate the adapter at `path`, then ask it what it is.
    pub fn load_adapter(
        &self,
        name: &str,
        path: &Path,
        limits: Limits,
    ) -> Result<Adapter, LoadError> {
        self.load_adapter_cached(name, path, limits, None)
    }

    /// Like [`Runtime::load_adapter`], reusing (and filling) a cache of
    /// precompiled artifacts keyed by content hash and engine settings.
    pub fn load_adapter_cached(
        &self,
        name: &str,
        path: &Path,
        limits: Limits,
        cache_dir: Option<&Path>,
    ) -> Result<Adapter, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            name: name.into(),
            path: path.display().to_string(),
            source,
        })?;
        self.load_adapter_bytes_cached(name, &bytes, limits, cache_dir)
    }

    /// Compile (or take from the cache), check imports and interface version,
    /// pre-instantiate, and ask the plugin what it is.
    pub fn load_adapter_bytes_cached(
        &self,
        name: &str,
        bytes: &[u8],
        limits: Limits,
        cache_dir: Option<&Path>,
    ) -> Result<Adapter, LoadError> {
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            name: name.into(),
            reason: one_line(&format!("{e:#}")),
        };
        if let Some(reason) = not_a_component(bytes) {
            return Err(LoadError::Invalid {
                name: name.into(),
                reason,
            });
        }
        let hash = content_hash(bytes);
        let (component, from_cache) = self.compile(bytes, &hash, cache_dir).map_err(invalid)?;
        check_imports(&self.engine, &component).map_err(|reason| LoadError::Invalid {
            name: name.into(),
            reason,
        })?;
        let abi = check_export(&self.engine, &component, "adapter").map_err(|reason| {
            LoadError::Invalid {
                name: name.into(),
                reason,
            }
        })?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(invalid)?;
        let pre = match abi {
            Abi::V0_2 => AdapterPre::Current(
                v0_2::adapter::AdapterPluginPre::new(instance_pre).map_err(invalid)?,
            ),
            Abi::V0_1 => AdapterPre::V0_1(
                v0_1::adapter::AdapterPluginPre::new(instance_pre).map_err(invalid)?,
            ),
        };
        let mut adapter = Adapter {
            limits,
            inner: Arc::new(AdapterInner {
                name: name.to_owned(),
                engine: self.engine.clone(),
                pre,
                info: AdapterInfo {
                    name: String::new(),
                    version: String::new(),
                    platform: String::new(),
                    signature: SignatureScheme::None,
                    allowed_hosts: Vec::new(),
                    default_lookback_days: 0,
                    options: Vec::new(),
                    api_versions: Vec::new(),
                    extra_metrics: Vec::new(),
                },
                content_hash: hash,
                from_cache,
                calls: AtomicU64::new(0),
                rejections: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            }),
        };
        let info = adapter
            .call("describe", |plugin, store| match plugin {
                Guest::Current(p) => p.call_describe(store),
                Guest::V0_1(p) => p.call_describe(store).map(compat::info),
            })
            .map_err(|e| LoadError::Invalid {
                name: name.into(),
                reason: format!("describe failed: {e}"),
            })?;
        if info.name.is_empty() || info.platform.is_empty() || info.version.is_empty() {
            return Err(LoadError::Invalid {
                name: name.into(),
                reason: "describe returned an empty name, platform or version".into(),
            });
        }
        match Arc::get_mut(&mut adapter.inner) {
            Some(inner) => inner.info = info,
            None => unreachable!("adapter not shared yet"),
        }
        Ok(adapter)
    }
}

impl Runtime {
    /// The component for `bytes`: from `cache_dir` when a precompiled artifact
    /// for these bytes and this engine's settings is there, else compiled (and cached).
    fn compile(
        &self,
        bytes: &[u8],
        hash: &str,
        cache_dir: Option<&Path>,
    ) -> wasmtime::Result<(Component, bool)> {
        let Some(dir) = cache_dir else {
            return Ok((Component::new(&self.engine, bytes)?, false));
        };
        let engine_key = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            self.engine
                .precompile_compatibility_hash()
                .hash(&mut hasher);
            hasher.finish()
        };
        let artifact = dir.join(format!("{hash}-{engine_key:016x}.cwasm"));
        if artifact.exists() {
            match deserialize_own_artifact(&self.engine, &artifact) {
                Ok(component) => return Ok((component, true)),
                Err(e) => {
                    tracing::warn!(path = %artifact.display(), "ignoring unusable plugin artifact: {e:#}")
                }
            }
        }
        let component = Component::new(&self.engine, bytes)?;
        let serialized = component.serialize()?;
        std::fs::create_dir_all(dir)?;
        let partial = artifact.with_extension("cwasm.partial");
        std::fs::write(&partial, serialized)?;
        std::fs::rename(&partial, &artifact)?;
        Ok((component, false))
    }
}

/// Load a precompiled artifact that this process (or an earlier run with the
/// same engine settings) wrote into adpipe's own data directory.
#[allow(unsafe_code)]
fn deserialize_own_artifact(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // Read into memory rather than map the file: a mapped artifact truncated
    // underneath a running instance would fault the whole process.
    let bytes = std::fs::read(path)?;
    // SAFETY: wasmtime requires that deserialized bytes come from
    // `Component::serialize` of a compatible engine. The file name carries the
    // content hash and the engine's compatibility hash, and only adpipe writes
    // this directory (atomically, via rename); wasmtime also checks the header.
    unsafe { Component::deserialize(engine, &bytes) }
}

/// SHA-256 of a component, hex.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Imports a plugin may have: the adpipe interface, and the WASI parts Rust's
/// standard library links against, which adpipe backs with nothing (no
/// preopened directories, no environment, no sockets, frozen clocks).
const ALLOWED_IMPORTS: &[&str] = &[
    "adpipe:plugin/",
    "wasi:io/",
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
];

fn check_imports(engine: &Engine, component: &Component) -> Result<(), String> {
    let ty = component.component_type();
    let refused: Vec<&str> = ty
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| {
            !ALLOWED_IMPORTS
                .iter()
                .any(|prefix| name.starts_with(prefix))
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "it imports {}, which adpipe does not provide: plugins get no network, files, environment or \
             host access except the adpipe:plugin interface",
            refused.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ))
    }
}

/// An interface version the host loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    /// `adpipe:plugin@0.2.x`, the current one.
    V0_2,
    /// `adpipe:plugin@0.1.x`, loaded through [`compat`].
    V0_1,
}

impl Abi {
    /// The version as the WIT package writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Abi::V0_2 => "0.2",
            Abi::V0_1 => "0.1",
        }
    }
}

/// Which version of `adpipe:plugin/<interface>` the plugin exports (0.2.x or 0.1.x).
fn check_export(engine: &Engine, component: &Component, interface: &str) -> Result<Abi, String> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let wanted = format!("adpipe:plugin/{interface}@");
    for (prefix, abi) in [("0.2.", Abi::V0_2), ("0.1.", Abi::V0_1)] {
        if exports.iter().any(|e| {
            e.strip_prefix(&wanted)
                .is_some_and(|v| v.starts_with(prefix))
        }) {
            return Ok(abi);
        }
    }
    match exports.iter().find(|e| e.starts_with(&wanted)) {
        Some(other) => Err(format!(
            "it exports `{other}`; this host speaks {wanted}0.2 and {wanted}0.1"
        )),
        None => Err(format!(
            "it does not export {wanted}0.2 or {wanted}0.1 (exports: {})",
            if exports.is_empty() {
                "none".into()
            } else {
                exports.join(", ")
            }
        )),
    }
}

/// Per-store state: WASI (locked down), limits, the plugin's name for logs.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    plugin: String,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for PluginState {}
impl v0_1::adapter::adpipe::plugin::types::Host for PluginState {}

impl PluginState {
    fn log(&self, level: tracing::Level, message: &str) {
        let message: String = message.chars().take(2_000).collect();
        match level {
            tracing::Level::DEBUG | tracing::Level::TRACE => {
                tracing::debug!(plugin = %self.plugin, "{message}")
            }
            tracing::Level::INFO => tracing::info!(plugin = %self.plugin, "{message}"),
            tracing::Level::WARN => tracing::warn!(plugin = %self.plugin, "{message}"),
            tracing::Level::ERROR => tracing::error!(plugin = %self.plugin, "{message}"),
        }
    }
}

impl log::Host for PluginState {
    fn emit(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Debug => tracing::Level::DEBUG,
            log::Level::Info => tracing::Level::INFO,
            log::Level::Warn => tracing::Level::WARN,
            log::Level::Error => tracing::Level::ERROR,
        };
        self.log(level, &message);
    }
}

impl v0_1::adapter::adpipe::plugin::log::Host for PluginState {
    fn emit(&mut self, level: v0_1::adapter::adpipe::plugin::log::Level, message: String) {
        use v0_1::adapter::adpipe::plugin::log::Level as L;
        let level = match level {
            L::Debug => tracing::Level::DEBUG,
            L::Info => tracing::Level::INFO,
            L::Warn => tracing::Level::WARN,
            L::Error => tracing::Level::ERROR,
        };
        self.log(level, &message);
    }
}

/// A clock frozen at the epoch: plugins get no time source but the interface.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A pre-instantiated adapter of one interface version.
enum AdapterPre {
    Current(v0_2::adapter::AdapterPluginPre<PluginState>),
    V0_1(v0_1::adapter::AdapterPluginPre<PluginState>),
}

/// The exports of one fresh instance.
enum Guest<'a> {
    Current(&'a wit_adapter::Guest),
    V0_1(&'a v0_1::adapter::exports::adpipe::plugin::adapter::Guest),
}

struct AdapterInner {
    name: String,
    engine: Engine,
    pre: AdapterPre,
    info: AdapterInfo,
    content_hash: String,
    from_cache: bool,
    calls: AtomicU64,
    rejections: AtomicU64,
    failures: AtomicU64,
}

/// What calls into one loaded plugin version came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallCounters {
    /// Every call, answered or not.
    pub calls: u64,
    /// Calls the plugin answered with its own error: the payload is not its
    /// platform's data (malformed, wrong shape, a platform error body). The
    /// plugin did its job; the breaker does not count these.
    pub rejections: u64,
    /// Calls that failed in the sandbox: traps, panics, time, memory or fuel
    /// limits, broken answers. These feed the breaker.
    pub failures: u64,
}

/// A loaded adapter: cheap to clone, safe to call from many threads (each
/// call gets its own store and instance).
#[derive(Clone)]
pub struct Adapter {
    inner: Arc<AdapterInner>,
    /// Limits of calls through this handle (a pipeline may tighten or relax the plugin's).
    limits: Limits,
}

impl Adapter {
    /// What the plugin said of itself.
    pub fn info(&self) -> &AdapterInfo {
        &self.inner.info
    }

    /// Configured name of the plugin.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// SHA-256 of the component bytes, hex.
    pub fn content_hash(&self) -> &str {
        &self.inner.content_hash
    }

    /// The same plugin version, called under other limits.
    pub fn with_limits(&self, limits: Limits) -> Adapter {
        Adapter {
            inner: self.inner.clone(),
            limits,
        }
    }

    /// The limits calls through this handle run under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether the compiled code came from the artifact cache.
    pub fn from_cache(&self) -> bool {
        self.inner.from_cache
    }

    /// Calls, rejected payloads and failed calls so far.
    pub fn counters(&self) -> CallCounters {
        CallCounters {
            calls: self.inner.calls.load(Ordering::Relaxed),
            rejections: self.inner.rejections.load(Ordering::Relaxed),
            failures: self.inner.failures.load(Ordering::Relaxed),
        }
    }

    /// The interface version the component was built against.
    pub fn abi(&self) -> Abi {
        match self.inner.pre {
            AdapterPre::Current(_) => Abi::V0_2,
            AdapterPre::V0_1(_) => Abi::V0_1,
        }
    }

    /// Parse one report page. Blocking: run it off the async runtime.
    pub fn parse_report(&self, body: &[u8], context: &ParseContext) -> Result<RowBatch, CallError> {
        self.call("parse-report", |plugin, store| match plugin {
            Guest::Current(p) => p.call_parse_report(store, body, context),
            Guest::V0_1(p) => p
                .call_parse_report(store, body, &compat::context(context))
                .map(|r| r.map(compat::batch).map_err(compat::error)),
        })?
        .map_err(|e| self.rejected(e))
    }

    /// Parse one verified webhook delivery. Blocking.
    pub fn parse_webhook(
        &self,
        request: &WebhookRequest,
        context: &ParseContext,
    ) -> Result<RowBatch, CallError> {
        self.call("parse-webhook", |plugin, store| match plugin {
            Guest::Current(p) => p.call_parse_webhook(store, request, context),
            Guest::V0_1(p) => p
                .call_parse_webhook(
                    store,
                    &compat::webhook_request(request),
                    &compat::context(context),
                )
                .map(|r| r.map(compat::batch).map_err(compat::error)),
        })?
        .map_err(|e| self.rejected(e))
    }

    /// Plan the first requests of a scheduled pull. Blocking.
    pub fn plan_pull(&self, request: &PullRequest) -> Result<Vec<HttpRequest>, CallError> {
        self.call("plan-pull", |plugin, store| match plugin {
            Guest::Current(p) => p.call_plan_pull(store, request),
            Guest::V0_1(p) => p
                .call_plan_pull(store, &compat::pull_request(request))
                .map(|r| {
                    r.map(|list| list.into_iter().map(compat::http_request).collect())
                        .map_err(compat::error)
                }),
        })?
        .map_err(|e| self.rejected(e))
    }

    /// Plan a verification handshake answer. Blocking.
    pub fn handshake(&self, query: &[(String, String)]) -> Result<HandshakePlan, CallError> {
        self.call("handshake", |plugin, store| match plugin {
            Guest::Current(p) => p.call_handshake(store, query),
            Guest::V0_1(p) => p.call_handshake(store, query).map(compat::handshake),
        })
    }

    fn rejected(&self, e: PluginError) -> CallError {
        self.inner.rejections.fetch_add(1, Ordering::Relaxed);
        CallError::Rejected(e)
    }

    /// Run `f` against a fresh instance with the sandbox limits.
    fn call<R>(
        &self,
        what: &str,
        f: impl FnOnce(Guest<'_>, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let inner = &self.inner;
        inner.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = self.call_inner(f);
        let elapsed = started.elapsed();
        match result {
            Ok(value) => {
                tracing::trace!(plugin = %inner.name, call = what, ?elapsed, "plugin call");
                Ok(value)
            }
            Err(error) => {
                let error = self.classify(error);
                // A full instance pool is back-pressure, not a failure of the plugin.
                if !matches!(error, CallError::Busy { .. }) {
                    inner.failures.fetch_add(1, Ordering::Relaxed);
                }
                tracing::warn!(plugin = %inner.name, call = what, ?elapsed, "plugin call failed: {error}");
                Err(error)
            }
        }
    }

    fn call_inner<R>(
        &self,
        f: impl FnOnce(Guest<'_>, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> wasmtime::Result<R> {
        let inner = &self.inner;
        let mut store = sandboxed_store(&inner.engine, &inner.name, self.limits);
        match &inner.pre {
            AdapterPre::Current(pre) => {
                let plugin = pre.instantiate(&mut store)?;
                f(Guest::Current(plugin.adpipe_plugin_adapter()), &mut store)
            }
            AdapterPre::V0_1(pre) => {
                let plugin = pre.instantiate(&mut store)?;
                f(Guest::V0_1(plugin.adpipe_plugin_adapter()), &mut store)
            }
        }
    }

    fn classify(&self, error: wasmtime::Error) -> CallError {
        classify(error, &self.inner.name, self.limits)
    }
}

/// A fresh store: locked-down WASI, memory limit (trapping on failed growth),
/// wall-clock deadline through epoch interruption.
fn sandboxed_store(engine: &Engine, plugin: &str, limits: Limits) -> Store<PluginState> {
    let wasi = WasiCtx::builder()
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .build();
    let store_limits = StoreLimitsBuilder::new()
        .memory_size(limits.memory_bytes)
        .trap_on_grow_failure(true)
        .instances(16)
        .build();
    let state = PluginState {
        wasi,
        table: ResourceTable::new(),
        limits: store_limits,
        plugin: plugin.to_owned(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    let ticks = (limits.time_limit.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1;
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
    // Errors only when the engine does not meter fuel: then there is nothing to set.
    let _ = store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
    store
}

/// Turn a wasmtime error into what the plugin did wrong.
fn classify(error: wasmtime::Error, plugin: &str, limits: Limits) -> CallError {
    let plugin = plugin.to_owned();
    if let Some(full) = error
        .chain()
        .find(|e| e.is::<wasmtime::PoolConcurrencyLimitError>())
    {
        return CallError::Busy {
            plugin,
            detail: full.to_string(),
        };
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => CallError::Timeout {
                plugin,
                limit_ms: limits.time_limit.as_millis() as u64,
            },
            Trap::OutOfFuel => CallError::OutOfFuel {
                plugin,
                fuel: limits.fuel.unwrap_or(u64::MAX),
            },
            Trap::UnreachableCodeReached => CallError::Trapped {
                plugin,
                detail: "the plugin panicked (unreachable code reached)".into(),
            },
            other => CallError::Trapped {
                plugin,
                detail: other.to_string(),
            },
        };
    }
    let text = format!("{error:#}");
    if text.contains("forcing trap when growing memory") {
        return CallError::OutOfMemory {
            plugin,
            limit_mb: (limits.memory_bytes / (1024 * 1024)) as u64,
        };
    }
    CallError::Trapped {
        plugin,
        detail: text,
    }
}
