//! `[api]`: query limits, rate limits and the insights answer cache.

use serde::{Deserialize, Serialize};

use super::check::Issues;

/// `[api]`.
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

impl ApiConfig {
    /// `[api]`'s mistakes.
    pub(super) fn validate(&self, issues: &mut Issues) {
        issues.at_least(
            "api.max_page_rows",
            self.max_page_rows,
            1,
            "the default is 10000",
        );
        let limits = &self.rate_limits;
        if limits.enabled {
            for (class, limits) in [
                ("read", &limits.read),
                ("ingest", &limits.ingest),
                ("admin", &limits.admin),
            ] {
                for (scope, rate) in [("caller", limits.caller), ("tenant", limits.tenant)] {
                    if rate.per_second == 0 || rate.burst == 0 {
                        issues.add(
                            format!("api.rate_limits.{class}.{scope}"),
                            "per_second and burst must be at least 1",
                            "set api.rate_limits.enabled = false to turn limits off",
                        );
                    }
                }
            }
        }
    }
}
