//! Configuration: `pipelines.toml` overlaid with `ADPIPE_<SECTION>__<KEY>`
//! environment variables (figment), read into typed values (addresses,
//! durations, URLs, kinds are parsed here, once) and validated without I/O
//! into a list of every mistake with its location and a hint (`adpipe check`).
//!
//! One file per section, each with its types and its own validation:
//! `server.rs` (`[server]`, including `run`), `auth.rs`, `bus.rs`,
//! `store.rs`, `metadata.rs`, `cache.rs`, `api.rs`, `sandbox.rs`,
//! `retention.rs` (`[retention]`), `encryption.rs` (`[encryption]`),
//! `telemetry.rs` (`[telemetry]`: trace export),
//! `plugins.rs` (`[[plugins]]`) and `pipelines.rs` (`[[pipelines]]`);
//! `env.rs` reads the environment overrides, `values.rs` the typed values
//! sections share, `check.rs` holds the checks they share. [`Config::validate`]
//! runs each section's validator and collects every mistake.
//!
//! `server.run` (`ADPIPE_SERVER__RUN`) chooses what a process runs: `all`
//! (the default: the HTTP API and the aggregation consumer), `api` (the HTTP
//! routes without the bus consumer) or `consumer` (the aggregation consumer,
//! serving only `/healthz`, `/readyz` and `/metrics`). `api` and `consumer`
//! need the Kafka bus, through which such processes meet.
//!
//! Secrets never appear in the file: pipelines name the environment variables
//! that hold them, and the JWT secret comes from `ADPIPE_AUTH__JWT_SECRET` /
//! `ADPIPE_JWT_SECRET` or a file generated once in the data directory.
//!
//! This module depends on no other module of adpipe; they depend on it.

mod api;
mod auth;
mod bus;
mod cache;
mod check;
mod encryption;
mod env;
mod metadata;
mod pipelines;
mod plugin_registry;
mod plugins;
mod retention;
mod sandbox;
mod server;
mod store;
mod telemetry;
mod values;

use std::fmt;
use std::path::{Path, PathBuf};

use figment::error::Kind;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Tag, Value};
use figment::{Figment, Profile, Provider};
use serde::{Deserialize, Serialize};

pub use api::{AnswerCacheConfig, ApiConfig, ClassLimits, Rate, RateLimitsConfig};
pub use auth::{AuthConfig, KeyAlgorithm, MIN_JWT_SECRET_BYTES};
pub use bus::{BusConfig, BusKind};
pub use cache::CacheConfig;
pub use check::{is_currency, is_slug};
pub use encryption::EncryptionConfig;
pub use metadata::{MetadataConfig, MetadataUrl, MetadataUrlError};
pub use pipelines::{
    canonical_account, OptionValue, PipelineConfig, PullConfig, WebhookAccounts,
    DEFAULT_MAX_RESPONSE_BYTES,
};
pub use plugin_registry::{decode_key, PluginRegistryConfig};
pub use plugins::{PluginConfig, PluginKind};
pub use retention::RetentionConfig;
pub use sandbox::SandboxConfig;
pub use server::{ServeRun, ServerConfig, TlsConfig};
pub use store::{StoreConfig, StoreKind};
pub use telemetry::TelemetryConfig;
pub use values::{parse_seconds, span_text};

use check::Issues;
use env::EnvOverrides;

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
    pub retention: RetentionConfig,
    #[serde(default)]
    pub encryption: EncryptionConfig,
    #[serde(default)]
    pub plugin_registry: PluginRegistryConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
    #[serde(default)]
    pub pipelines: Vec<PipelineConfig>,
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

/// Most values one load reports as unreadable before it stops reading.
const MAX_UNREADABLE: usize = 100;

impl Config {
    /// Load `path` (if it exists) overlaid with `ADPIPE_…` variables, then validate.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Self::load_with(path, Figment::new())
    }

    /// Like [`Config::load`], with extra overrides (command-line flags) merged last.
    pub fn load_with(path: &Path, overrides: Figment) -> Result<Config, ConfigErrors> {
        let env = std::env::vars_os().map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        });
        Self::load_with_env(path, overrides, env)
    }

    /// Like [`Config::load_with`], reading the `ADPIPE_…` overrides from
    /// `env` instead of the process environment.
    pub fn load_with_env<K, V>(
        path: &Path,
        overrides: Figment,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Config, ConfigErrors>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
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
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(path))
            .merge(EnvOverrides::new(env))
            .merge(overrides);
        let (config, mut issues) = extract(&figment, &file);
        let Some(mut config) = config else {
            return Err(ConfigErrors(issues));
        };
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        issues.extend(config.validate(&file));
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(issues))
        }
    }

    /// Paths in the file are relative to its directory.
    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        for plugin in &mut self.plugins {
            resolve(&mut plugin.path);
        }
        if let Some(p) = self.auth.public_key_file.as_mut() {
            resolve(p);
        }
        if let Some(p) = self.auth.jwks_file.as_mut() {
            resolve(p);
        }
        if let Some(tls) = self.server.tls.as_mut() {
            resolve(&mut tls.cert_file);
            resolve(&mut tls.key_file);
        }
        if let Some(p) = self.cache.ca_file.as_mut() {
            resolve(p);
        }
        let encryption = &mut self.encryption;
        for p in encryption
            .key_file
            .iter_mut()
            .chain(encryption.previous_key_files.iter_mut())
        {
            resolve(p);
        }
    }

    /// Every mistake a config has, section by section, without touching
    /// anything but the existence of the files it names.
    pub fn validate(&self, file: &str) -> Vec<ConfigIssue> {
        let mut issues = Issues::new(file);
        self.server.validate(self.bus.kind, &mut issues);
        self.auth.validate(&mut issues);
        self.cache.validate(&mut issues);
        self.api.validate(&mut issues);
        self.retention.validate(&mut issues);
        self.plugin_registry.validate(&mut issues);
        self.telemetry.validate(&mut issues);
        self.encryption.validate(&mut issues);
        self.bus.validate(self.store.kind, &mut issues);
        self.store.validate(&mut issues);
        plugins::validate(&self.plugins, self.sandbox.fuel, &mut issues);
        pipelines::validate(
            &self.pipelines,
            &self.plugins,
            self.sandbox.fuel,
            &mut issues,
        );
        issues.list
    }
}

/// Read the merged sources into a [`Config`], reporting every value that
/// does not fit its type (not only the first, where serde would stop): a
/// value that does not fit is reported at its key and set aside, so the rest
/// is still read, and then validated. `None` when what is left cannot be
/// read (a required key is missing, the TOML does not parse).
fn extract(figment: &Figment, file: &str) -> (Option<Config>, Vec<ConfigIssue>) {
    let mut tree = match figment.data() {
        // Figment's own order: the default profile, then the global one
        // (where key-value overrides such as `serve --listen` land) over it.
        Ok(mut data) => {
            let mut tree = data.remove(&Profile::Default).unwrap_or_default();
            if let Some(global) = data.remove(&Profile::Global) {
                merge_over(&mut tree, global);
            }
            tree
        }
        Err(errors) => {
            let issues = errors
                .into_iter()
                .map(|e| {
                    let source = e.metadata.as_ref().and_then(|m| m.source.as_ref());
                    issue(&e, source.map(|s| s.to_string()), file)
                })
                .collect();
            return (None, issues);
        }
    };
    let original = tree.clone();
    let mut set_aside: Vec<Vec<String>> = Vec::new();
    let mut issues = Vec::new();
    while issues.len() < MAX_UNREADABLE {
        let error = match Config::deserialize(&Value::Dict(Tag::Default, tree.clone())) {
            Ok(config) => return (Some(config), issues),
            Err(error) => error,
        };
        let mut read_on = false;
        for e in error {
            if let Kind::MissingField(field) = &e.kind {
                let mut key = e.path.clone();
                key.push(field.to_string());
                if set_aside.contains(&key) {
                    // Already reported as unreadable.
                    return (None, issues);
                }
            }
            let source = source_of(figment, &original, &e.path);
            issues.push(issue(&e, source, file));
            if !matches!(e.kind, Kind::MissingField(_)) && remove(&mut tree, &e.path) {
                set_aside.push(e.path);
                read_on = true;
            }
        }
        if !read_on {
            return (None, issues);
        }
    }
    (None, issues)
}

/// Put `over`'s values into `tree`, table by table, as figment merges.
fn merge_over(tree: &mut Dict, over: Dict) {
    for (key, value) in over {
        match (tree.get_mut(&key), value) {
            (Some(Value::Dict(_, inner)), Value::Dict(_, over_inner)) => {
                merge_over(inner, over_inner)
            }
            (_, value) => {
                tree.insert(key, value);
            }
        }
    }
}

/// Where the value at `path` (or its nearest enclosing table) came from.
fn source_of(figment: &Figment, tree: &Dict, path: &[String]) -> Option<String> {
    let mut tag = None;
    let mut dict = tree;
    let mut array: Option<&[Value]> = None;
    for part in path {
        let value = match array {
            Some(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            None => dict.get(part),
        };
        let Some(value) = value else { break };
        tag = Some(value.tag());
        match value {
            Value::Dict(_, inner) => (dict, array) = (inner, None),
            Value::Array(_, items) => array = Some(items),
            _ => break,
        }
    }
    let source = figment.get_metadata(tag?)?.source.as_ref()?;
    Some(source.to_string())
}

/// Remove the table entry at `path`; `false` when there is none (or it is
/// an array element, whose removal would renumber its neighbours).
fn remove(tree: &mut Dict, path: &[String]) -> bool {
    match path {
        [] => false,
        [key] => tree.remove(key).is_some(),
        [first, rest @ ..] => match tree.get_mut(first) {
            Some(Value::Dict(_, inner)) => remove(inner, rest),
            Some(Value::Array(_, items)) => {
                let Some((index, rest)) = rest.split_first() else {
                    return false;
                };
                match index.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                    Some(Value::Dict(_, inner)) if !rest.is_empty() => remove(inner, rest),
                    _ => false,
                }
            }
            _ => false,
        },
    }
}

/// A figment error as a [`ConfigIssue`], located in `source` (else `file`).
fn issue(e: &figment::Error, source: Option<String>, file: &str) -> ConfigIssue {
    let key = if e.path.is_empty() {
        "(top level)".to_owned()
    } else {
        key_path(&e.path)
    };
    let (message, hint) = match &e.kind {
        // A typed value's own explanation (see `values::invalid`).
        Kind::Message(text) => match text.split_once(values::HINT_MARK) {
            Some((message, hint)) => (message.to_owned(), hint.to_owned()),
            None => (text.clone(), String::new()),
        },
        kind => (kind.to_string(), hint_for_kind(kind)),
    };
    ConfigIssue {
        location: format!("{}: {key}", source.as_deref().unwrap_or(file)),
        message,
        hint,
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

fn hint_for_kind(kind: &Kind) -> String {
    match kind {
        Kind::UnknownField(_, expected) => format!("expected one of: {}", expected.join(", ")),
        Kind::MissingField(_) => "add the key; see the README's configuration section".into(),
        Kind::UnknownVariant(_, expected) => format!("expected one of: {}", expected.join(", ")),
        Kind::InvalidType(..) => "check the value's type (quoted string, number, table)".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// `pipelines.toml` holding `text` in `dir`, next to an (empty) `meta.wasm`.
    pub(super) fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("pipelines.toml");
        std::fs::write(&path, text).expect("write config");
        std::fs::write(dir.join("meta.wasm"), b"").expect("write plugin");
        path
    }

    /// Load `text` as a configuration file, with `env` as the whole
    /// environment (the process's is not read, so tests do not race on it).
    pub(super) fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let dir = tempfile::tempdir().expect("tempdir");
        load_in(dir.path(), text, env)
    }

    /// Like [`load`], in `dir` (where other files the configuration names live).
    pub(super) fn load_in(
        dir: &Path,
        text: &str,
        env: &[(&str, &str)],
    ) -> Result<Config, ConfigErrors> {
        let path = write(dir, text);
        Config::load_with_env(&path, Figment::new(), env.iter().copied())
    }

    /// A pipeline `meta` of tenant `demo` through the adapter `meta`.
    pub(super) const META: &str = "[[plugins]]\nname = \"meta\"\npath = \"meta.wasm\"\n[[pipelines]]\nname = \"meta\"\ntenant = \"demo\"\nadapter = \"meta\"\n";

    #[test]
    fn command_line_overrides_win_over_the_file_and_the_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            &format!("[server]\nlisten = \"127.0.0.1:8080\"\ndata_dir = \"file-dir\"\n{META}"),
        );
        let overrides = Figment::new()
            .merge(("server.listen", "127.0.0.1:0"))
            .merge(("server.data_dir", "/tmp/from-the-flag"));
        let env = [("ADPIPE_SERVER__DATA_DIR", "env-dir")];
        let config = Config::load_with_env(&path, overrides, env).expect("loads");
        assert_eq!(config.server.listen.port(), 0);
        assert_eq!(config.server.data_dir, PathBuf::from("/tmp/from-the-flag"));
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
        assert_eq!(config.auth.max_token_ttl, Duration::from_secs(12 * 3600));
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
        assert_eq!(config.auth.max_token_ttl, Duration::from_secs(30 * 86_400));
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

#[cfg(test)]
mod typed_values {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::tests::{load, load_in, META};
    use super::*;

    #[test]
    fn values_are_parsed_into_their_types() {
        let config = load(
            &format!(
                "[server]\nlisten = \"0.0.0.0:9000\"\n[metadata]\nurl = \"postgresql://adpipe@db:5432/adpipe\"\n\
                 {META}[pipelines.pull]\naccounts = [\"1\"]\nevery = \"2h\"\nbase_url = \"http://127.0.0.1:9000/graph\"\n"
            ),
            &[],
        )
        .expect("valid");
        assert_eq!(config.server.listen, SocketAddr::from(([0, 0, 0, 0], 9000)));
        assert_eq!(
            config.metadata.url,
            Some(MetadataUrl::Postgres(
                "postgresql://adpipe@db:5432/adpipe".into()
            ))
        );
        let pull = config.pipelines[0].pull.as_ref().expect("pull");
        assert_eq!(pull.every, Some(Duration::from_secs(7200)));
        let base = pull.base_url.as_ref().expect("base url");
        assert_eq!(
            (base.host_str(), base.port()),
            (Some("127.0.0.1"), Some(9000))
        );
        let data_dir = Path::new("/var/lib/adpipe");
        assert_eq!(
            Config::default().metadata.url_or_default(data_dir),
            MetadataUrl::Sqlite("sqlite:///var/lib/adpipe/metadata.db".into())
        );
    }

    #[test]
    fn the_key_algorithm_is_one_jwt_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("idp.pem"), "-----").expect("write key");
        let auth = "[auth]\npublic_key_file = \"idp.pem\"\naudience = \"adpipe\"\n";
        let config =
            load_in(dir.path(), &format!("{auth}algorithm = \"EdDSA\"\n"), &[]).expect("valid");
        assert_eq!(config.auth.algorithm, Some(KeyAlgorithm::EdDsa));
        assert_eq!(
            config.auth.algorithm.map(KeyAlgorithm::jwt),
            Some(jsonwebtoken::Algorithm::EdDSA)
        );
        assert_eq!(
            KeyAlgorithm::default().jwt(),
            jsonwebtoken::Algorithm::RS256
        );
        let text = load_in(dir.path(), &format!("{auth}algorithm = \"HS256\"\n"), &[])
            .expect_err("a secret algorithm")
            .to_string();
        assert!(text.contains("auth.algorithm: unknown variant"), "{text}");
        assert!(text.contains("hint: expected one of: RS256"), "{text}");
    }

    #[test]
    fn unreadable_values_are_reported_with_every_other_mistake() {
        let errors = load(
            &format!(
                "[server]\nlisten = \"localhost\"\n[auth]\nmax_token_ttl = \"1y\"\n\
                 [metadata]\nurl = \"mysql://db/adpipe\"\n\
                 {META}currency = \"usd\"\n[pipelines.pull]\naccounts = [\"1\"]\nevery = \"30s\"\nbase_url = \"ftp://example.com\"\n"
            ),
            &[],
        )
        .expect_err("invalid");
        let text = errors.to_string();
        for expected in [
            "server.listen: `localhost` is not a socket address\n    hint: use host:port",
            "auth.max_token_ttl: `1y` is not a lifetime\n    hint: use e.g. 12h",
            "metadata.url: unsupported metadata URL scheme in `mysql`\n    hint: use sqlite://PATH",
            "pipelines[0].pull.every: `30s` is not an interval of at least a minute\n    hint: use e.g. 30m",
            "pipelines[0].pull.base_url: `ftp://example.com` is not an http(s) URL",
            "pipelines[0].currency: `usd` is not an ISO 4217 code",
        ] {
            assert!(text.contains(expected), "`{expected}` missing in {text}");
        }
        assert_eq!(errors.0.len(), 6, "{text}");
    }

    #[test]
    fn an_unreadable_required_value_is_reported_once() {
        let errors =
            load(&META.replace("tenant = \"demo\"", "tenant = 5"), &[]).expect_err("invalid");
        let text = errors.to_string();
        assert_eq!(errors.0.len(), 1, "{text}");
        assert!(text.contains("pipelines[0].tenant: invalid type"), "{text}");
    }

    #[test]
    fn an_unreadable_value_from_the_environment_is_located_at_its_key() {
        let text = load("", &[("ADPIPE_SERVER__LISTEN", "nowhere")])
            .expect_err("invalid")
            .to_string();
        assert!(
            text.contains("server.listen: `nowhere` is not a socket address"),
            "{text}"
        );
    }
}
