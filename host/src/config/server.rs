//! `[server]`: where adpipe listens, what it serves, and where it keeps its files.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check::Issues;
use super::BusKind;

/// `[server]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    #[serde(with = "socket_addr")]
    pub listen: SocketAddr,
    /// What this process runs (`all`, `api` or `consumer`).
    pub run: ServeRun,
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
    pub cors_allowed_origins: Vec<CorsOrigin>,
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

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            run: ServeRun::All,
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

/// `server.run`: which parts of adpipe this process runs.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServeRun {
    /// The HTTP API and the aggregation consumer (one process does everything).
    #[default]
    All,
    /// The HTTP API without the bus consumer.
    Api,
    /// The aggregation consumer, with only `/healthz`, `/readyz` and `/metrics`.
    Consumer,
}

/// `[server.tls]`: HTTPS with rustls.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl ServerConfig {
    /// `[server]`'s mistakes; splitting the API from the consumer needs a
    /// bus other processes share.
    pub(super) fn validate(&self, bus: BusKind, issues: &mut Issues) {
        if self.run != ServeRun::All && bus != BusKind::Kafka {
            issues.add(
                "server.run",
                format!("`{}` needs a bus other processes share", self.run),
                "use bus.kind = \"kafka\" (with store.kind = \"clickhouse\") so api and consumer processes meet, or run = \"all\"",
            );
        }
        issues.at_least(
            "server.max_body_bytes",
            self.max_body_bytes,
            1024,
            "the default is 10485760 (10 MiB)",
        );
        issues.at_least(
            "server.request_timeout_ms",
            self.request_timeout_ms,
            100,
            "the default is 30000 (30 s)",
        );
        issues.at_least(
            "server.max_webhook_body_bytes",
            self.max_webhook_body_bytes,
            1024,
            "the default is 1048576 (1 MiB)",
        );
        issues.at_least(
            "server.max_concurrent_requests",
            self.max_concurrent_requests,
            1,
            "the default is 1024",
        );
        issues.within(
            "server.header_read_timeout_ms",
            self.header_read_timeout_ms,
            100..=600_000,
            "the default is 10000 (10 s)",
        );
        if let Some(tls) = &self.tls {
            issues.file("server.tls.cert_file", &tls.cert_file);
            issues.file("server.tls.key_file", &tls.key_file);
        }
    }
}

/// As TOML spells it.
impl fmt::Display for ServeRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServeRun::All => "all",
            ServeRun::Api => "api",
            ServeRun::Consumer => "consumer",
        })
    }
}

/// `server.listen`: `host:port`.
mod socket_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|_| {
            super::super::values::invalid(
                format_args!("`{text}` is not a socket address"),
                "use host:port, e.g. 127.0.0.1:8080",
            )
        })
    }

    pub fn serialize<S: Serializer>(addr: &SocketAddr, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(addr)
    }
}

/// A browser origin allowed to call the API (`scheme://host[:port]`, as
/// browsers send it in `Origin`), checked when the configuration loads and
/// kept as the header value CORS answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsOrigin(axum::http::HeaderValue);

impl CorsOrigin {
    /// The value of `Access-Control-Allow-Origin` for this origin.
    pub fn header_value(&self) -> &axum::http::HeaderValue {
        &self.0
    }
}

impl std::str::FromStr for CorsOrigin {
    type Err = String;

    fn from_str(text: &str) -> Result<CorsOrigin, String> {
        let refused = || {
            format!("`{text}` is not an origin: write scheme://host[:port], e.g. https://dash.example.com, without a path")
        };
        let url = reqwest::Url::parse(text).map_err(|_| refused())?;
        let origin = url.origin().ascii_serialization();
        if !matches!(url.scheme(), "http" | "https") || origin != text {
            return Err(refused());
        }
        axum::http::HeaderValue::from_str(text)
            .map(CorsOrigin)
            .map_err(|_| refused())
    }
}

impl fmt::Display for CorsOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.to_str().unwrap_or_default())
    }
}

impl Serialize for CorsOrigin {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CorsOrigin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<CorsOrigin, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;
    use super::*;

    #[test]
    fn cors_origins_are_checked_when_the_config_loads() {
        let config = load(
            "[server]\ncors_allowed_origins = [\"https://dash.example\", \"http://127.0.0.1:3000\"]\n",
            &[],
        )
        .expect("valid");
        let origins: Vec<String> = config
            .server
            .cors_allowed_origins
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(origins, ["https://dash.example", "http://127.0.0.1:3000"]);
        for bad in [
            "https://dash.example/app",
            "dash.example",
            "ftp://dash.example",
            "*",
        ] {
            let text = load(
                &format!("[server]\ncors_allowed_origins = [\"{bad}\"]\n"),
                &[],
            )
            .expect_err(bad)
            .to_string();
            assert!(
                text.contains("server.cors_allowed_origins"),
                "{bad}: {text}"
            );
            assert!(text.contains("is not an origin"), "{bad}: {text}");
        }
    }

    const DISTRIBUTED: &str = "[bus]\nkind = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\n[store]\nkind = \"clickhouse\"\nurl = \"http://127.0.0.1:8123\"\n";

    #[test]
    fn run_is_all_unless_set_and_splits_only_over_a_shared_bus() {
        assert_eq!(load("", &[]).expect("valid").server.run, ServeRun::All);
        for (text, run) in [("api", ServeRun::Api), ("consumer", ServeRun::Consumer)] {
            let file = format!("[server]\nrun = \"{text}\"\n{DISTRIBUTED}");
            assert_eq!(load(&file, &[]).expect("valid").server.run, run);
            assert_eq!(run.to_string(), text);
            let env = [("ADPIPE_SERVER__RUN", text)];
            assert_eq!(load(DISTRIBUTED, &env).expect("valid").server.run, run);
            let errors = load(&format!("[server]\nrun = \"{text}\"\n"), &[])
                .expect_err("the embedded bus is one process's");
            let issue = &errors.0[..];
            assert_eq!(issue.len(), 1, "{errors}");
            assert!(
                issue[0].location.ends_with("pipelines.toml: server.run"),
                "{errors}"
            );
            assert!(issue[0].hint.contains("bus.kind = \"kafka\""), "{errors}");
        }
        let text = load("[server]\nrun = \"both\"\n", &[])
            .expect_err("unknown")
            .to_string();
        assert!(text.contains("server.run: unknown variant"), "{text}");
        assert!(
            text.contains("expected one of: all, api, consumer"),
            "{text}"
        );
    }
}
