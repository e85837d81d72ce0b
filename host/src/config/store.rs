//! `[store]`: where aggregated facts live (embedded SQLite, or ClickHouse).

use serde::{Deserialize, Serialize};

use super::check::{scheme, Issues};

/// `[store]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// ClickHouse HTTP endpoint, `http://host:8123` (`https://` for TLS).
    pub url: Option<String>,
    /// ClickHouse database (created if missing); the server's default if unset.
    pub database: Option<String>,
    /// A ClickHouse cluster (its name in the servers' `remote_servers`) to
    /// shard facts and rollups across, by campaign; `url` takes queries.
    pub cluster: Option<String>,
    /// The HTTP URL of every shard of `cluster`.
    pub shards: Vec<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Embedded,
            url: None,
            database: None,
            cluster: None,
            shards: Vec::new(),
        }
    }
}

/// `store.kind`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Embedded,
    Clickhouse,
}

impl StoreConfig {
    /// `[store]`'s mistakes.
    pub(super) fn validate(&self, issues: &mut Issues) {
        if self.kind == StoreKind::Clickhouse {
            match &self.url {
                None => issues.add(
                    "store.url",
                    "store.kind = \"clickhouse\" needs the server's HTTP URL",
                    "e.g. url = \"http://127.0.0.1:8123\" (https:// for TLS)",
                ),
                Some(url) if !matches!(scheme(url), Some("http" | "https")) => issues.add(
                    "store.url",
                    format!("`{url}` is not an http:// or https:// URL"),
                    "ClickHouse is reached over its HTTP interface, e.g. http://127.0.0.1:8123",
                ),
                Some(_) => {}
            }
        }
        match (&self.cluster, self.shards.is_empty()) {
            (Some(_), _) if self.kind != StoreKind::Clickhouse => issues.add(
                "store.cluster",
                "only a ClickHouse store is sharded",
                "set store.kind = \"clickhouse\", or remove store.cluster",
            ),
            (Some(_), true) => issues.add(
                "store.shards",
                "store.cluster needs the HTTP URL of every shard",
                "e.g. shards = [\"http://10.0.0.1:8123\", \"http://10.0.0.2:8123\"]",
            ),
            (Some(_), false) if self.database.is_none() => issues.add(
                "store.database",
                "a sharded store needs a database name (the Distributed tables name it)",
                "e.g. database = \"adpipe\"",
            ),
            (None, false) => issues.add(
                "store.shards",
                "shards are only used with store.cluster",
                "name the cluster from the servers' remote_servers, or remove store.shards",
            ),
            _ => {}
        }
        for shard in &self.shards {
            if !matches!(scheme(shard), Some("http" | "https")) {
                issues.add(
                    "store.shards",
                    format!("`{shard}` is not an http:// or https:// URL"),
                    "each shard's HTTP interface, e.g. http://10.0.0.1:8123",
                );
            }
        }
        if let Some(cluster) = &self.cluster {
            if cluster.is_empty()
                || !cluster
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                issues.add(
                    "store.cluster",
                    format!("`{cluster}` is not a plain cluster name"),
                    "letters, digits and underscores",
                );
            }
        }
        if let Some(db) = &self.database {
            if db.is_empty() || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                issues.add(
                    "store.database",
                    format!("`{db}` is not a plain database name"),
                    "letters, digits and underscores",
                );
            }
        }
    }
}
