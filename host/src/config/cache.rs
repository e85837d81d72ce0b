//! `[cache]`: unset url = in-process; `redis://` / `rediss://` = rate-limit
//! budgets and insights answers shared by every process using that Redis.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check::{scheme, Issues};

/// `[cache]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub url: Option<String>,
    /// PEM certificate(s) to trust for `rediss://` instead of the system roots.
    pub ca_file: Option<PathBuf>,
}

impl CacheConfig {
    /// `[cache]`'s mistakes.
    pub(super) fn validate(&self, issues: &mut Issues) {
        if let Some(url) = &self.url {
            if !matches!(scheme(url), Some("redis" | "rediss")) {
                issues.add(
                    "cache.url",
                    format!(
                        "unsupported cache URL scheme in `{}`",
                        scheme(url).unwrap_or(url)
                    ),
                    "use redis://HOST:6379 (rediss:// for TLS), or leave unset for in-process limits",
                );
            }
        }
        if let Some(path) = &self.ca_file {
            issues.file("cache.ca_file", path);
        }
    }
}
