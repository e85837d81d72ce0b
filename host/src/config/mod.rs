//! Configuration: `pipelines.toml` overlaid with `ADPIPE_<SECTION>__<KEY>`
//! environment variables (figment), then validated without I/O into a list of
//! every mistake with its location and a hint (`adpipe check`).
//!
//! Secrets never appear in the file: pipelines name the environment variables
//! that hold them, and the JWT secret comes from `ADPIPE_AUTH__JWT_SECRET` /
//! `ADPIPE_JWT_SECRET` or a file generated once in the data directory.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub bus: BusConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub metadata: MetadataConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub sandbox: SandboxConfig,
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
    #[serde(default)]
    pub pipelines: Vec<PipelineConfig>,
}

/// `[server]`: where adpipe listens and keeps its files.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    /// Largest accepted request body (413 beyond).
    pub max_body_bytes: usize,
    /// Reload plugins when their files change.
    pub watch_plugins: bool,
    /// Longest a request may take before it is answered `503 timeout`.
    pub request_timeout_ms: u64,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsConfig>,
    /// Browser origins allowed to call the API (CORS); empty = CORS off.
    pub cors_allowed_origins: Vec<String>,
    /// Keep accepted payloads in metadata so `adpipe replay` can re-derive
    /// their rows through a newer adapter.
    pub keep_payloads: bool,
    /// Largest accepted webhook delivery body (413 beyond); platforms send
    /// small notifications, so this is far below `max_body_bytes`.
    pub max_webhook_body_bytes: usize,
    /// Requests served at once, all routes together; beyond it `503 overloaded`
    /// with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Time a client has to send a request's line and headers (and, on the
    /// TLS port, to finish the handshake) before its connection is closed.
    pub header_read_timeout_ms: u64,
}

/// `[server.tls]`: HTTPS with rustls.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            max_body_bytes: 10 * 1024 * 1024,
            watch_plugins: true,
            request_timeout_ms: 30_000,
            tls: None,
            cors_allowed_origins: Vec::new(),
            keep_payloads: true,
            max_webhook_body_bytes: 1024 * 1024,
            max_concurrent_requests: 1024,
            header_read_timeout_ms: 10_000,
        }
    }
}

/// `[auth]`: JWT verification.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 secret; prefer the environment form `ADPIPE_AUTH__JWT_SECRET`.
    pub jwt_secret: Option<String>,
    /// Expected `iss`, when set.
    pub issuer: Option<String>,
    /// Expected `aud`, when set.
    pub audience: Option<String>,
    /// Verify with this public key (PEM) instead of a secret.
    pub public_key_file: Option<PathBuf>,
    /// Algorithm of `public_key_file`: RS256 (default), RS384, RS512, PS256, ES256, ES384, EdDSA.
    pub algorithm: Option<String>,
    /// The `kid` tokens signed by `public_key_file` carry, if any.
    pub public_key_id: Option<String>,
    /// Verify with the keys of this JWKS document (each selected by `kid`).
    pub jwks_file: Option<PathBuf>,
    /// Longest lifetime `adpipe token --ttl` may give a token (`30d`, `12h`...).
    pub max_token_ttl: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_secret: None,
            issuer: None,
            audience: None,
            public_key_file: None,
            algorithm: None,
            public_key_id: None,
            jwks_file: None,
            max_token_ttl: "30d".into(),
        }
    }
}

/// Fewest bytes an HS256 secret may have (RFC 7518 §3.2: at least the hash size).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

impl fmt::Debug for RedactedSecret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "<redacted>"
        } else {
            "<unset>"
        })
    }
}
struct RedactedSecret<'a>(&'a Option<String>);

impl AuthConfig {
    /// Tokens are verified with public keys (RS256/ES256/JWKS), not a secret.
    pub fn uses_public_keys(&self) -> bool {
        self.public_key_file.is_some() || self.jwks_file.is_some()
    }

    /// `max_token_ttl` in seconds (`None` when it does not parse).
    pub fn max_token_ttl_secs(&self) -> Option<u64> {
        crate::auth::parse_ttl(&self.max_token_ttl)
    }

    /// For logs: never the secret itself.
    pub fn describe(&self) -> String {
        format!(
            "jwt_secret={:?} issuer={:?} audience={:?} public_key_file={:?} jwks_file={:?}",
            RedactedSecret(&self.jwt_secret),
            self.issuer,
            self.audience,
            self.public_key_file,
            self.jwks_file
        )
    }
}

/// `[bus]`: where normalized rows are made durable.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    pub kind: BusKind,
    /// Kafka bootstrap servers, `host:port,...`.
    pub brokers: Option<String>,
    /// Topic of normalized rows (its dead letters go to `<topic>.dead-letters`).
    pub topic: String,
    /// Consumer group of the aggregation workers (one per deployment).
    pub group: String,
    /// Partitions of the rows topic when adpipe creates it.
    pub partitions: i32,
    /// Replicas of each topic adpipe creates (fewer, with a warning, when
    /// the cluster has fewer brokers); `min.insync.replicas` is one less.
    pub replication_factor: i32,
    /// How long a publish may wait for the brokers' acknowledgement.
    pub timeout_ms: u64,
    /// Extra librdkafka settings, e.g. `"security.protocol" = "ssl"`.
    pub client: BTreeMap<String, String>,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            kind: BusKind::Embedded,
            brokers: None,
            topic: "adpipe.rows".into(),
            group: "adpipe-aggregators".into(),
            partitions: 6,
            replication_factor: 3,
            timeout_ms: 5000,
            client: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    Embedded,
    Kafka,
}

/// `[store]`: where aggregated facts live.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// ClickHouse HTTP endpoint, `http://host:8123` (`https://` for TLS).
    pub url: Option<String>,
    /// ClickHouse database (created if missing); the server's default if unset.
    pub database: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Embedded,
            url: None,
            database: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Embedded,
    Clickhouse,
}

/// `[metadata]`: dead letters, pull runs, API keys, the audit log.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    /// `sqlite://…` or `postgres://…`; default `sqlite://<data_dir>/metadata.db`.
    pub url: Option<String>,
}

/// `[cache]`: unset url = in-process; `redis://` / `rediss://` = rate-limit
/// budgets shared by every process using that Redis.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub url: Option<String>,
    /// PEM certificate(s) to trust for `rediss://` instead of the system roots.
    pub ca_file: Option<PathBuf>,
}

/// `[api]`: query limits, rate limits and the answer cache.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Longest `from..to` range `/v1/insights` accepts, in days.
    pub max_range_days: u32,
    /// Most rows one `/v1/insights` page holds (`limit` defaults to it).
    pub max_page_rows: u32,
    pub rate_limits: RateLimitsConfig,
    pub cache: AnswerCacheConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_range_days: 731,
            max_page_rows: 10_000,
            rate_limits: RateLimitsConfig::default(),
            cache: AnswerCacheConfig::default(),
        }
    }
}

/// `[api.rate_limits]`: GCRA limits per caller (token subject or API key) and
/// per tenant, by route class. Webhooks count as `ingest`, keyed by pipeline.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    pub enabled: bool,
    pub read: ClassLimits,
    pub ingest: ClassLimits,
    pub admin: ClassLimits,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        let limits = |caller, tenant| ClassLimits {
            caller: Rate {
                per_second: caller,
                burst: caller * 2,
            },
            tenant: Rate {
                per_second: tenant,
                burst: tenant * 2,
            },
        };
        RateLimitsConfig {
            enabled: true,
            read: limits(100, 400),
            ingest: limits(50, 200),
            admin: limits(10, 40),
        }
    }
}

/// One route class's limits.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClassLimits {
    pub caller: Rate,
    pub tenant: Rate,
}

/// A sustained rate with a burst allowance.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

/// `[api.cache]`: insights answers kept in memory, keyed by tenant, query and
/// the tenant's data version (so new data is never hidden by the cache).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerCacheConfig {
    pub enabled: bool,
    pub max_entries: u64,
    pub ttl_seconds: u64,
}

impl Default for AnswerCacheConfig {
    fn default() -> Self {
        AnswerCacheConfig {
            enabled: true,
            max_entries: 10_000,
            ttl_seconds: 300,
        }
    }
}

/// `[sandbox]`: engine-wide plugin settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Meter instructions, so plugins and pipelines may set `fuel` budgets
    /// (costs every call some speed; off by default).
    pub fuel: bool,
}

/// `[[plugins]]`: a WASM component and its sandbox limits.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    pub name: String,
    /// Path to the `.wasm` component, relative to the config file.
    pub path: PathBuf,
    /// Wall-clock limit of one call.
    #[serde(default = "default_time_limit_ms")]
    pub time_limit_ms: u64,
    /// Linear-memory limit of one instance.
    #[serde(default = "default_memory_limit_mb")]
    pub memory_limit_mb: u64,
    /// Instruction budget per call (needs `sandbox.fuel = true`).
    #[serde(default)]
    pub fuel: Option<u64>,
    /// `adapter` (platform payloads → rows) or `metric` (derived metrics).
    #[serde(default)]
    pub kind: PluginKind,
}

impl PluginConfig {
    /// The sandbox limits this plugin's calls run under.
    pub fn limits(&self) -> crate::plugin::Limits {
        crate::plugin::Limits {
            time_limit: std::time::Duration::from_millis(self.time_limit_ms),
            memory_bytes: (self.memory_limit_mb * 1024 * 1024) as usize,
            fuel: self.fuel,
        }
    }
}

/// What a plugin does.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    #[default]
    Adapter,
    Metric,
}

fn default_time_limit_ms() -> u64 {
    2_000
}
fn default_memory_limit_mb() -> u64 {
    128
}

/// `[[pipelines]]`: one tenant's feed from one platform through one adapter.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub name: String,
    pub tenant: String,
    /// Name of an adapter in `[[plugins]]`.
    pub adapter: String,
    /// Environment variable holding the webhook signing secret (app secret).
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    /// Environment variable holding the webhook verify token (handshake).
    #[serde(default)]
    pub verify_token_env: Option<String>,
    /// Account to assume when payloads do not name one.
    #[serde(default)]
    pub account_id: Option<String>,
    /// Currency to assume when payloads do not name one (ISO 4217).
    #[serde(default)]
    pub currency: Option<String>,
    /// Metric plugins applied to this pipeline's answers.
    #[serde(default)]
    pub metrics: Vec<String>,
    /// Overrides of the adapter's per-call time limit for this pipeline.
    #[serde(default)]
    pub time_limit_ms: Option<u64>,
    /// Override of the adapter's memory limit for this pipeline.
    #[serde(default)]
    pub memory_limit_mb: Option<u64>,
    /// Override of the adapter's fuel budget (needs `sandbox.fuel = true`).
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Scheduled pulls from the platform's report API.
    #[serde(default)]
    pub pull: Option<PullConfig>,
    /// Platform options handed to the adapter (as strings; numbers and
    /// booleans are accepted and passed in their TOML spelling).
    #[serde(default)]
    pub options: BTreeMap<String, OptionValue>,
}

/// `[pipelines.pull]`: fetch reports on a schedule; the plugin plans and
/// parses, the host does the I/O with credentials the plugin never sees.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PullConfig {
    /// Accounts to pull (platform account / customer / advertiser ids).
    pub accounts: Vec<String>,
    /// Interval between pulls (`30m`, `1h`, `1d`); unset = only on demand
    /// (`POST /v1/pipelines/{name}/pull`).
    #[serde(default)]
    pub every: Option<String>,
    /// Days re-fetched each time so restated figures are corrected; default:
    /// the plugin's (Meta 28, Google 14, LinkedIn 14, TikTok 7).
    #[serde(default)]
    pub lookback_days: Option<u32>,
    /// Base URL replacing the platform's (a proxy, or a local fake in tests);
    /// its host joins the plugin's allow-list.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Environment variable holding the API token the host injects.
    #[serde(default)]
    pub credential_env: Option<String>,
    /// Further secret headers: header name → environment variable.
    #[serde(default)]
    pub header_envs: BTreeMap<String, String>,
    /// Safety bound on pages followed per account and run.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// Largest response body read per page, enforced while reading; a larger
    /// one fails the run and nothing of it is ingested.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
}

fn default_max_pages() -> u32 {
    1000
}

/// Default of `pull.max_response_bytes`: 64 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

fn default_max_response_bytes() -> u64 {
    DEFAULT_MAX_RESPONSE_BYTES
}

/// A pipeline option's value: any TOML scalar, handed to plugins as text.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OptionValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Text(s) => f.write_str(s),
            OptionValue::Integer(i) => write!(f, "{i}"),
            OptionValue::Float(x) => write!(f, "{x}"),
            OptionValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// One configuration mistake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where: `file: key.path`.
    pub location: String,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)?;
        if !self.hint.is_empty() {
            write!(f, "\n    hint: {}", self.hint)?;
        }
        Ok(())
    }
}

/// Loading failed: every mistake found.
#[derive(Debug, thiserror::Error)]
#[error("{} configuration problem(s):\n{}", .0.len(), .0.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigIssue>);

impl Config {
    /// Load `path` (if it exists) overlaid with `ADPIPE_…` variables, then validate.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Self::load_with(path, Figment::new())
    }

    /// Like [`Config::load`], with extra overrides (command-line flags) merged last.
    pub fn load_with(path: &Path, overrides: Figment) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        if !path.exists() {
            return Err(ConfigErrors(vec![ConfigIssue {
                location: file,
                message: "configuration file not found".into(),
                hint:
                    "pass --config PATH, or run from the repository root where pipelines.toml lives"
                        .into(),
            }]));
        }
        let mut figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(path))
            .merge(
                Env::prefixed("ADPIPE_")
                    .filter(|key| key.as_str().contains("__"))
                    .split("__"),
            );
        if let Ok(secret) = std::env::var("ADPIPE_JWT_SECRET") {
            if std::env::var("ADPIPE_AUTH__JWT_SECRET").is_err() {
                figment = figment.merge(("auth.jwt_secret", secret));
            }
        }
        figment = figment.merge(overrides);
        let mut config: Config = figment.extract().map_err(|errors| {
            ConfigErrors(
                errors
                    .into_iter()
                    .map(|e| {
                        let key = if e.path.is_empty() {
                            "(top level)".to_owned()
                        } else {
                            key_path(&e.path)
                        };
                        let source = e
                            .metadata
                            .as_ref()
                            .and_then(|m| m.source.as_ref().map(|s| s.to_string()))
                            .unwrap_or_else(|| file.clone());
                        ConfigIssue {
                            location: format!("{source}: {key}"),
                            message: e.kind.to_string(),
                            hint: hint_for_kind(&e.kind),
                        }
                    })
                    .collect(),
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for plugin in &mut config.plugins {
            if plugin.path.is_relative() {
                plugin.path = base.join(&plugin.path);
            }
        }
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        if let Some(p) = config.auth.public_key_file.as_mut() {
            resolve(p);
        }
        if let Some(p) = config.auth.jwks_file.as_mut() {
            resolve(p);
        }
        if let Some(tls) = config.server.tls.as_mut() {
            resolve(&mut tls.cert_file);
            resolve(&mut tls.key_file);
        }
        if let Some(p) = config.cache.ca_file.as_mut() {
            resolve(p);
        }
        let issues = config.validate(&file);
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(issues))
        }
    }

    /// Every mistake a config has, without touching anything but the plugin files' existence.
    pub fn validate(&self, file: &str) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut issue = |key: String, message: String, hint: &str| {
            issues.push(ConfigIssue {
                location: format!("{file}: {key}"),
                message,
                hint: hint.to_owned(),
            })
        };
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            issue(
                "server.listen".into(),
                format!("`{}` is not a socket address", self.server.listen),
                "use host:port, e.g. 127.0.0.1:8080",
            );
        }
        if self.server.max_body_bytes < 1024 {
            issue(
                "server.max_body_bytes".into(),
                "must be at least 1024".into(),
                "the default is 10485760 (10 MiB)",
            );
        }
        if self.server.request_timeout_ms < 100 {
            issue(
                "server.request_timeout_ms".into(),
                "must be at least 100".into(),
                "the default is 30000 (30 s)",
            );
        }
        if self.server.max_webhook_body_bytes < 1024 {
            issue(
                "server.max_webhook_body_bytes".into(),
                "must be at least 1024".into(),
                "the default is 1048576 (1 MiB)",
            );
        }
        if self.server.max_concurrent_requests == 0 {
            issue(
                "server.max_concurrent_requests".into(),
                "must be at least 1".into(),
                "the default is 1024",
            );
        }
        if !(100..=600_000).contains(&self.server.header_read_timeout_ms) {
            issue(
                "server.header_read_timeout_ms".into(),
                "must be between 100 and 600000".into(),
                "the default is 10000 (10 s)",
            );
        }
        let asymmetric = self.auth.uses_public_keys();
        if asymmetric
            && self
                .auth
                .audience
                .as_deref()
                .is_none_or(|a| a.trim().is_empty())
        {
            let key = if self.auth.public_key_file.is_some() {
                "auth.public_key_file"
            } else {
                "auth.jwks_file"
            };
            issue(
                "auth.audience".into(),
                format!("{key} is set (public-key mode) but no audience is"),
                "set audience = \"<the aud your identity provider puts in adpipe's tokens>\": a token the provider issued for another application must not be accepted here",
            );
        }
        if self.auth.max_token_ttl_secs().is_none() {
            issue(
                "auth.max_token_ttl".into(),
                format!("`{}` is not a lifetime", self.auth.max_token_ttl),
                "use e.g. 12h, 7d or 30d (the default)",
            );
        }
        if asymmetric && self.auth.jwt_secret.is_some() {
            issue(
                "auth.jwt_secret".into(),
                "a JWT secret and public keys are both configured".into(),
                "choose one: HS256 with a secret, or RS256/ES256 with public_key_file / jwks_file",
            );
        }
        if let Some(alg) = &self.auth.algorithm {
            let known = [
                "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
            ];
            if !known.contains(&alg.as_str()) {
                issue(
                    "auth.algorithm".into(),
                    format!("`{alg}` is not a public-key algorithm adpipe accepts"),
                    "one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA",
                );
            }
            if self.auth.public_key_file.is_none() {
                issue(
                    "auth.algorithm".into(),
                    "is set but auth.public_key_file is not".into(),
                    "the algorithm applies to public_key_file (JWKS keys carry their own)",
                );
            }
        }
        for (name, path) in [
            ("auth.public_key_file", &self.auth.public_key_file),
            ("auth.jwks_file", &self.auth.jwks_file),
            ("cache.ca_file", &self.cache.ca_file),
        ] {
            if let Some(path) = path {
                if !path.is_file() {
                    issue(
                        name.into(),
                        format!("{} does not exist", path.display()),
                        "paths are relative to the configuration file",
                    );
                }
            }
        }
        if let Some(tls) = &self.server.tls {
            for (name, path) in [
                ("server.tls.cert_file", &tls.cert_file),
                ("server.tls.key_file", &tls.key_file),
            ] {
                if !path.is_file() {
                    issue(
                        name.into(),
                        format!("{} does not exist", path.display()),
                        "paths are relative to the configuration file",
                    );
                }
            }
        }
        if self.api.max_page_rows == 0 {
            issue(
                "api.max_page_rows".into(),
                "must be at least 1".into(),
                "the default is 10000",
            );
        }
        if self.api.rate_limits.enabled {
            for (class, limits) in [
                ("read", &self.api.rate_limits.read),
                ("ingest", &self.api.rate_limits.ingest),
                ("admin", &self.api.rate_limits.admin),
            ] {
                for (scope, rate) in [("caller", limits.caller), ("tenant", limits.tenant)] {
                    if rate.per_second == 0 || rate.burst == 0 {
                        issue(
                            format!("api.rate_limits.{class}.{scope}"),
                            "per_second and burst must be at least 1".into(),
                            "set api.rate_limits.enabled = false to turn limits off",
                        );
                    }
                }
            }
        }
        if self.bus.kind == BusKind::Kafka {
            if self
                .bus
                .brokers
                .as_deref()
                .is_none_or(|b| b.trim().is_empty())
            {
                issue(
                    "bus.brokers".into(),
                    "bus.kind = \"kafka\" needs bootstrap servers".into(),
                    "e.g. brokers = \"127.0.0.1:9092\" (or ADPIPE_BUS__BROKERS)",
                );
            }
            if self.store.kind != StoreKind::Clickhouse {
                issue(
                    "store.kind".into(),
                    "the Kafka bus needs a shared store".into(),
                    "several processes consume the topic: use store.kind = \"clickhouse\"",
                );
            }
        }
        if !(1..=1000).contains(&self.bus.partitions) {
            issue(
                "bus.partitions".into(),
                "must be from 1 to 1000".into(),
                "the default is 6",
            );
        }
        if !(1..=32).contains(&self.bus.replication_factor) {
            issue(
                "bus.replication_factor".into(),
                "must be from 1 to 32".into(),
                "the default is 3",
            );
        }
        if self.bus.timeout_ms < 100 {
            issue(
                "bus.timeout_ms".into(),
                "must be at least 100".into(),
                "the default is 5000",
            );
        }
        if self.store.kind == StoreKind::Clickhouse {
            match &self.store.url {
                None => issue(
                    "store.url".into(),
                    "store.kind = \"clickhouse\" needs the server's HTTP URL".into(),
                    "e.g. url = \"http://127.0.0.1:8123\" (https:// for TLS)",
                ),
                Some(url) if !url.starts_with("http://") && !url.starts_with("https://") => issue(
                    "store.url".into(),
                    format!("`{url}` is not an http:// or https:// URL"),
                    "ClickHouse is reached over its HTTP interface, e.g. http://127.0.0.1:8123",
                ),
                Some(_) => {}
            }
        }
        if let Some(db) = &self.store.database {
            if db.is_empty() || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                issue(
                    "store.database".into(),
                    format!("`{db}` is not a plain database name"),
                    "letters, digits and underscores",
                );
            }
        }
        if let Some(url) = &self.metadata.url {
            let scheme = url.split("://").next().unwrap_or("");
            if !["sqlite", "postgres", "postgresql"].contains(&scheme) || !url.contains("://") {
                issue(
                    "metadata.url".into(),
                    format!("unsupported metadata URL scheme in `{scheme}`"),
                    "use sqlite://PATH or postgres://USER@HOST:PORT/DB (add ?sslmode=require for TLS), or leave unset for the data directory",
                );
            }
        }
        if let Some(url) = &self.cache.url {
            let scheme = url.split("://").next().unwrap_or("");
            if !["redis", "rediss"].contains(&scheme) || !url.contains("://") {
                issue(
                    "cache.url".into(),
                    format!("unsupported cache URL scheme in `{scheme}`"),
                    "use redis://HOST:6379 (rediss:// for TLS), or leave unset for in-process limits",
                );
            }
        }
        if let Some(secret) = &self.auth.jwt_secret {
            if secret.len() < MIN_JWT_SECRET_BYTES {
                issue(
                    "auth.jwt_secret".into(),
                    format!(
                        "the JWT secret (from auth.jwt_secret, ADPIPE_AUTH__JWT_SECRET or ADPIPE_JWT_SECRET) is {} bytes; at least {MIN_JWT_SECRET_BYTES} are needed",
                        secret.len()
                    ),
                    "generate one with `openssl rand -hex 32` and pass it as ADPIPE_AUTH__JWT_SECRET",
                );
            }
        }
        let mut plugin_names = HashSet::new();
        for (i, plugin) in self.plugins.iter().enumerate() {
            let at = |k: &str| format!("plugins[{i}].{k}");
            if !is_slug(&plugin.name) {
                issue(
                    at("name"),
                    format!("`{}` is not a valid name", plugin.name),
                    "use lowercase letters, digits, '-' and '_'",
                );
            }
            if !plugin_names.insert(plugin.name.as_str()) {
                issue(
                    at("name"),
                    format!("plugin `{}` is declared twice", plugin.name),
                    "give each plugin a unique name",
                );
            }
            if !plugin.path.exists() {
                issue(
                    at("path"),
                    format!("`{}` does not exist", plugin.path.display()),
                    "build the plugins first: scripts/build-plugins (or use the README's run command)",
                );
            }
            if !(10..=600_000).contains(&plugin.time_limit_ms) {
                issue(
                    at("time_limit_ms"),
                    "must be between 10 and 600000".into(),
                    "the default is 2000",
                );
            }
            if plugin.fuel.is_some() && !self.sandbox.fuel {
                issue(
                    at("fuel"),
                    "a fuel budget needs fuel metering".into(),
                    "set [sandbox] fuel = true, or remove fuel",
                );
            }
            if !(1..=4096).contains(&plugin.memory_limit_mb) {
                issue(
                    at("memory_limit_mb"),
                    "must be between 1 and 4096".into(),
                    "the default is 128",
                );
            }
        }
        let mut pipeline_names = HashSet::new();
        for (i, pipeline) in self.pipelines.iter().enumerate() {
            let at = |k: &str| format!("pipelines[{i}].{k}");
            if !is_slug(&pipeline.name) {
                issue(
                    at("name"),
                    format!("`{}` is not a valid name", pipeline.name),
                    "use lowercase letters, digits, '-' and '_' (it appears in URLs)",
                );
            }
            if !pipeline_names.insert(pipeline.name.as_str()) {
                issue(
                    at("name"),
                    format!("pipeline `{}` is declared twice", pipeline.name),
                    "give each pipeline a unique name",
                );
            }
            if !is_slug(&pipeline.tenant) {
                issue(
                    at("tenant"),
                    format!("`{}` is not a valid tenant id", pipeline.tenant),
                    "use lowercase letters, digits, '-' and '_'",
                );
            }
            if !self
                .plugins
                .iter()
                .any(|p| p.name == pipeline.adapter && p.kind == PluginKind::Adapter)
            {
                let known: Vec<_> = self
                    .plugins
                    .iter()
                    .filter(|p| p.kind == PluginKind::Adapter)
                    .map(|p| p.name.as_str())
                    .collect();
                issue(
                    at("adapter"),
                    format!("no plugin named `{}`", pipeline.adapter),
                    &format!(
                        "declare it in [[plugins]] (known: {})",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
            for (key, value) in [
                ("webhook_secret_env", &pipeline.webhook_secret_env),
                ("verify_token_env", &pipeline.verify_token_env),
            ] {
                if let Some(name) = value {
                    if !is_env_name(name) {
                        issue(
                            at(key),
                            format!("`{}` is not an environment variable name", redact_if_secretish(name)),
                            "name the variable that holds the secret (e.g. META_APP_SECRET), never the secret itself",
                        );
                    }
                }
            }
            if let Some(currency) = &pipeline.currency {
                if !is_currency(currency) {
                    issue(
                        at("currency"),
                        format!("`{currency}` is not an ISO 4217 code"),
                        "use three capital letters, e.g. USD",
                    );
                }
            }
            if pipeline
                .time_limit_ms
                .is_some_and(|t| !(10..=600_000).contains(&t))
            {
                issue(
                    at("time_limit_ms"),
                    "must be between 10 and 600000".into(),
                    "leave unset for the plugin's limit",
                );
            }
            if pipeline
                .memory_limit_mb
                .is_some_and(|m| !(1..=4096).contains(&m))
            {
                issue(
                    at("memory_limit_mb"),
                    "must be between 1 and 4096".into(),
                    "leave unset for the plugin's limit",
                );
            }
            if pipeline.fuel.is_some() && !self.sandbox.fuel {
                issue(
                    at("fuel"),
                    "a fuel budget needs fuel metering".into(),
                    "set [sandbox] fuel = true, or remove fuel",
                );
            }
            if let Some(pull) = &pipeline.pull {
                if pull.accounts.is_empty() || pull.accounts.iter().any(|a| a.trim().is_empty()) {
                    issue(
                        at("pull.accounts"),
                        "name at least one account, none empty".into(),
                        "e.g. accounts = [\"1234567890\"]",
                    );
                }
                if let Some(every) = &pull.every {
                    if crate::auth::parse_ttl(every).is_none_or(|s| s < 60) {
                        issue(
                            at("pull.every"),
                            format!("`{every}` is not an interval of at least a minute"),
                            "use e.g. 30m, 1h or 1d",
                        );
                    }
                }
                if pull.lookback_days.is_some_and(|d| !(1..=400).contains(&d)) {
                    issue(
                        at("pull.lookback_days"),
                        "must be between 1 and 400".into(),
                        "leave unset for the platform's default",
                    );
                }
                if let Some(url) = &pull.base_url {
                    if reqwest::Url::parse(url)
                        .map(|u| !matches!(u.scheme(), "http" | "https") || u.host_str().is_none())
                        .unwrap_or(true)
                    {
                        issue(
                            at("pull.base_url"),
                            format!("`{url}` is not an http(s) URL"),
                            "e.g. http://127.0.0.1:9000",
                        );
                    }
                }
                let envs = pull
                    .credential_env
                    .iter()
                    .map(|e| ("pull.credential_env".to_owned(), e));
                let headers = pull
                    .header_envs
                    .iter()
                    .map(|(h, e)| (format!("pull.header_envs.{h}"), e));
                for (key, name) in envs.chain(headers) {
                    if !is_env_name(name) {
                        issue(
                            at(&key),
                            format!(
                                "`{}` is not an environment variable name",
                                redact_if_secretish(name)
                            ),
                            "name the variable that holds the token, never the token itself",
                        );
                    }
                }
                if pull.max_pages == 0 {
                    issue(
                        at("pull.max_pages"),
                        "must be at least 1".into(),
                        "the default is 1000",
                    );
                }
                if !(1024..=(4u64 << 30)).contains(&pull.max_response_bytes) {
                    issue(
                        at("pull.max_response_bytes"),
                        "must be between 1024 and 4294967296 (4 GiB)".into(),
                        "the default is 67108864 (64 MiB)",
                    );
                }
            }
            for name in &pipeline.metrics {
                if !self
                    .plugins
                    .iter()
                    .any(|p| &p.name == name && p.kind == PluginKind::Metric)
                {
                    issue(
                        at("metrics"),
                        format!("no metric plugin named `{name}`"),
                        "declare it in [[plugins]] with kind = \"metric\"; ratios (ctr, cpc, cpm, cpa, cvr, roas) are built in",
                    );
                }
            }
        }
        issues
    }

    /// The pipeline named `name`.
    pub fn pipeline(&self, name: &str) -> Option<&PipelineConfig> {
        self.pipelines.iter().find(|p| p.name == name)
    }
}

/// `pipelines.0.adapter` → `pipelines[0].adapter`.
fn key_path(parts: &[String]) -> String {
    let mut out = String::new();
    for part in parts {
        if part.bytes().all(|b| b.is_ascii_digit()) && !out.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

fn hint_for_kind(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::UnknownField(_, expected) => format!("expected one of: {}", expected.join(", ")),
        Kind::MissingField(_) => "add the key; see the README's configuration section".into(),
        Kind::UnknownVariant(_, expected) => format!("expected one of: {}", expected.join(", ")),
        Kind::InvalidType(..) => "check the value's type (quoted string, number, table)".into(),
        _ => String::new(),
    }
}

/// Lowercase letters, digits, `-`, `_`; 1..=64 chars.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Three ASCII capital letters.
pub fn is_currency(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// A value in an env-name slot that is not a name may be a pasted secret: don't echo it.
fn redact_if_secretish(s: &str) -> String {
    if s.len() > 12 {
        format!("{}…", &s.chars().take(3).collect::<String>())
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("pipelines.toml");
        std::fs::write(&path, text).expect("write config");
        std::fs::write(dir.join("meta.wasm"), b"").expect("write plugin");
        path
    }

    #[test]
    fn reports_every_mistake_with_location_and_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            r#"
[[plugins]]
name = "meta"
path = "meta.wasm"

[[pipelines]]
name = "Meta Ads"
tenant = "demo"
adapter = "metaa"
webhook_secret_env = "abcdefghijklmnopqrstuvwxyz123456"
currency = "usd"
"#,
        );
        let errors = Config::load(&path).expect_err("invalid config");
        let text = errors.to_string();
        assert_eq!(errors.0.len(), 4, "{text}");
        assert!(text.contains("pipelines[0].name"), "{text}");
        assert!(
            text.contains("pipelines[0].adapter: no plugin named `metaa`"),
            "{text}"
        );
        assert!(text.contains("known: meta"), "{text}");
        assert!(text.contains("pipelines[0].currency"), "{text}");
        assert!(
            !text.contains("abcdefghijklmnop"),
            "a pasted secret must not be echoed: {text}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_expected_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n",
        );
        let text = Config::load(&path).expect_err("unknown key").to_string();
        assert!(
            text.contains("server.lisen") || text.contains("lisen"),
            "{text}"
        );
        assert!(text.contains("expected one of"), "{text}");
    }

    #[test]
    fn public_key_mode_needs_an_audience_and_lifetimes_must_parse() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("idp.pem"), "-----").expect("write key");
        let path = write(
            dir.path(),
            "[auth]\npublic_key_file = \"idp.pem\"\nmax_token_ttl = \"1y\"\n",
        );
        let errors = Config::load(&path).expect_err("no audience");
        let text = errors.to_string();
        assert_eq!(errors.0.len(), 2, "{text}");
        assert!(
            text.contains("pipelines.toml: auth.audience: auth.public_key_file is set"),
            "{text}"
        );
        assert!(
            text.contains("auth.max_token_ttl: `1y` is not a lifetime"),
            "{text}"
        );
        let path = write(
            dir.path(),
            "[auth]\npublic_key_file = \"idp.pem\"\naudience = \"adpipe\"\nmax_token_ttl = \"12h\"\n",
        );
        let config = Config::load(&path).expect("valid");
        assert_eq!(config.auth.max_token_ttl_secs(), Some(12 * 3600));
    }

    #[test]
    fn server_limits_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "[server]\nmax_webhook_body_bytes = 10\nmax_concurrent_requests = 0\nheader_read_timeout_ms = 5\n",
        );
        let text = Config::load(&path).expect_err("invalid").to_string();
        for key in [
            "server.max_webhook_body_bytes: must be at least 1024",
            "server.max_concurrent_requests: must be at least 1",
            "server.header_read_timeout_ms: must be between 100 and 600000",
        ] {
            assert!(text.contains(key), "`{key}` missing in {text}");
        }
        let config = Config::default();
        assert_eq!(config.server.max_webhook_body_bytes, 1024 * 1024);
        assert_eq!(config.server.header_read_timeout_ms, 10_000);
        assert_eq!(config.auth.max_token_ttl_secs(), Some(30 * 86_400));
    }

    #[test]
    fn pull_response_limit_is_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pipeline = "[[plugins]]\nname = \"meta\"\npath = \"meta.wasm\"\n[[pipelines]]\nname = \"meta\"\ntenant = \"demo\"\nadapter = \"meta\"\n[pipelines.pull]\naccounts = [\"1\"]\n";
        let path = write(dir.path(), &format!("{pipeline}max_response_bytes = 10\n"));
        let text = Config::load(&path).expect_err("invalid").to_string();
        assert!(
            text.contains("pipelines[0].pull.max_response_bytes: must be between 1024"),
            "{text}"
        );
        let path = write(dir.path(), pipeline);
        let config = Config::load(&path).expect("valid");
        let pull = config.pipelines[0].pull.as_ref().expect("pull");
        assert_eq!(pull.max_response_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn a_valid_config_loads_with_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "[[plugins]]\nname = \"meta\"\npath = \"meta.wasm\"\n[[pipelines]]\nname = \"meta\"\ntenant = \"demo\"\nadapter = \"meta\"\n[pipelines.options]\nconversion_action_types = \"purchase\"\n",
        );
        let config = Config::load(&path).expect("valid");
        assert_eq!(config.bus.kind, BusKind::Embedded);
        assert_eq!(config.plugins[0].time_limit_ms, 2_000);
        assert_eq!(config.plugins[0].path, dir.path().join("meta.wasm"));
        assert_eq!(
            config.pipelines[0].options["conversion_action_types"].to_string(),
            "purchase"
        );
    }
}
