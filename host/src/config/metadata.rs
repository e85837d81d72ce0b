//! `[metadata]`: where dead letters, pull runs, API keys and the audit log
//! live: SQLite (by default in the data directory) or PostgreSQL.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::check::scheme;
use super::values::invalid;

/// `[metadata]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    /// `sqlite://…` or `postgres://…`; default `sqlite://<data_dir>/metadata.db`.
    pub url: Option<MetadataUrl>,
}

impl MetadataConfig {
    /// The configured database, or the data directory's SQLite file.
    pub fn url_or_default(&self, data_dir: &Path) -> MetadataUrl {
        self.url.clone().unwrap_or_else(|| {
            MetadataUrl::Sqlite(format!(
                "sqlite://{}",
                data_dir.join("metadata.db").display()
            ))
        })
    }
}

/// `metadata.url`: the whole URL, by the database it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataUrl {
    /// `sqlite://PATH`.
    Sqlite(String),
    /// `postgres://…` or `postgresql://…` (`?sslmode=require` for TLS).
    Postgres(String),
}

impl MetadataUrl {
    pub fn as_str(&self) -> &str {
        match self {
            MetadataUrl::Sqlite(url) | MetadataUrl::Postgres(url) => url,
        }
    }
}

impl fmt::Display for MetadataUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is not a metadata URL (its scheme, or the whole text).
#[derive(Debug, thiserror::Error)]
#[error("unsupported metadata URL scheme in `{0}`")]
pub struct MetadataUrlError(String);

impl FromStr for MetadataUrl {
    type Err = MetadataUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        match scheme(url) {
            Some("sqlite") => Ok(MetadataUrl::Sqlite(url.to_owned())),
            Some("postgres" | "postgresql") => Ok(MetadataUrl::Postgres(url.to_owned())),
            other => Err(MetadataUrlError(other.unwrap_or(url).to_owned())),
        }
    }
}

impl<'de> Deserialize<'de> for MetadataUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|e: MetadataUrlError| {
            invalid(
                e,
                "use sqlite://PATH or postgres://USER@HOST:PORT/DB (add ?sslmode=require for TLS), or leave unset for the data directory",
            )
        })
    }
}

impl Serialize for MetadataUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}
