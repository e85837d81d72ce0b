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
