//! Rate limits (GCRA through `governor`), per caller and per tenant, by
//! route class: reads, ingestion (report pushes and webhooks, limited
//! separately from reads) and admin actions. In-process by default; with
//! `cache.url = "redis://…"` (or `rediss://` for TLS) the budgets live in
//! Redis, so every adpipe process sharing it draws from the same budget
//! (the same GCRA, run atomically by a Lua script on Redis' clock). When
//! Redis cannot be reached a request is judged by the in-process budget,
//! never let through unlimited. The answer carries `RateLimit-Limit`,
//! `RateLimit-Remaining`, `RateLimit-Reset` and `RateLimit-Policy`, and a
//! refusal `Retry-After`.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::{Rate, RateLimitsConfig};

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// Which budget a route draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteClass {
    Read,
    Ingest,
    Admin,
}

impl RouteClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Read => "read",
            RouteClass::Ingest => "ingest",
            RouteClass::Admin => "admin",
        }
    }
}

/// What the tighter of the two budgets says after a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitState {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the budget is whole again.
    pub reset_secs: u64,
    /// `RateLimit-Policy`, e.g. `200;w=2`.
    pub policy: String,
}

/// A request's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed(LimitState),
    Limited {
        state: LimitState,
        retry_after_secs: u64,
        /// `caller` or `tenant`.
        scope: &'static str,
    },
}

struct Budget {
    limiter: Keyed,
    rate: Rate,
}

impl Budget {
    fn new(rate: Rate) -> Budget {
        let per_second = NonZeroU32::new(rate.per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(rate.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Budget {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
                .with_middleware::<StateInformationMiddleware>(),
            rate,
        }
    }

    fn policy(&self) -> String {
        let window = (f64::from(self.rate.burst) / f64::from(self.rate.per_second.max(1))).ceil();
        format!("{};w={}", self.rate.burst, window as u64)
    }

    fn check(&self, key: &str, clock: &DefaultClock) -> Result<LimitState, (LimitState, u64)> {
        let interval = Duration::from_secs_f64(1.0 / f64::from(self.rate.per_second.max(1)));
        match self.limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = self.rate.burst.saturating_sub(remaining);
                Ok(LimitState {
                    limit: self.rate.burst,
                    remaining,
                    reset_secs: (interval * used).as_secs_f64().ceil() as u64,
                    policy: self.policy(),
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(clock.now());
                let retry = wait.as_secs_f64().ceil().max(1.0) as u64;
                Err((
                    LimitState {
                        limit: self.rate.burst,
                        remaining: 0,
                        reset_secs: retry,
                        policy: self.policy(),
                    },
                    retry,
                ))
            }
        }
    }
}

/// GCRA on Redis: KEYS[1] holds the theoretical arrival time (µs).
/// ARGV: emission interval (µs), burst. Returns {allowed, retry_after_µs,
/// remaining, reset_µs}.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tolerance = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, allow_at - now, 0, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(tolerance / 1000) + 1)
return {1, 0, math.floor((now + tolerance - new_tat) / interval), new_tat - now}
";

/// Budgets kept in Redis.
struct SharedBudgets {
    connection: redis::aio::ConnectionManager,
    script: redis::Script,
}

/// All budgets of a running adpipe.
pub struct RateLimits {
    enabled: bool,
    clock: DefaultClock,
    /// (caller, tenant) budgets of read, ingest, admin.
    budgets: [(Budget, Budget); 3],
    shared: Option<SharedBudgets>,
}

impl RateLimits {
    pub fn new(config: &RateLimitsConfig) -> RateLimits {
        let pair = |c: &crate::config::ClassLimits| (Budget::new(c.caller), Budget::new(c.tenant));
        RateLimits {
            enabled: config.enabled,
            clock: DefaultClock::default(),
            budgets: [
                pair(&config.read),
                pair(&config.ingest),
                pair(&config.admin),
            ],
            shared: None,
        }
    }

    /// Keep the budgets in Redis (connected from `cache.url`).
    pub fn shared(
        config: &RateLimitsConfig,
        connection: redis::aio::ConnectionManager,
    ) -> RateLimits {
        RateLimits {
            shared: Some(SharedBudgets {
                connection,
                script: redis::Script::new(GCRA_SCRIPT),
            }),
            ..RateLimits::new(config)
        }
    }

    /// Whether budgets are shared through Redis.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Draw from the shared budget `key`; `None` when Redis failed.
    async fn check_shared(
        &self,
        key: &str,
        rate: Rate,
    ) -> Option<Result<LimitState, (LimitState, u64)>> {
        let shared = self.shared.as_ref()?;
        let interval_us = 1_000_000 / u64::from(rate.per_second.max(1));
        let mut connection = shared.connection.clone();
        let reply: Result<(i64, i64, i64, i64), _> = shared
            .script
            .key(format!("adpipe:ratelimit:{key}"))
            .arg(interval_us)
            .arg(rate.burst.max(1))
            .invoke_async(&mut connection)
            .await;
        let (allowed, retry_us, remaining, reset_us) = match reply {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("shared rate limit unavailable, using the local budget: {e}");
                return None;
            }
        };
        let window = (f64::from(rate.burst) / f64::from(rate.per_second.max(1))).ceil() as u64;
        let state = LimitState {
            limit: rate.burst,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(0),
            reset_secs: (reset_us.max(0) as u64).div_ceil(1_000_000),
            policy: format!("{};w={window}", rate.burst),
        };
        Some(if allowed == 1 {
            Ok(state)
        } else {
            let retry = (retry_us.max(1) as u64).div_ceil(1_000_000).max(1);
            Err((
                LimitState {
                    reset_secs: retry,
                    ..state
                },
                retry,
            ))
        })
    }

    /// Draw one request from `caller`'s and `tenant`'s budgets of `class`.
    pub async fn check(&self, class: RouteClass, caller: &str, tenant: &str) -> Option<Verdict> {
        if !self.enabled {
            return None;
        }
        let (by_caller, by_tenant) = &self.budgets[class as usize];
        let caller_key = format!("{tenant}\u{1f}{caller}");
        let class_name = class.as_str();
        let caller_result = match self
            .check_shared(&format!("{class_name}:caller:{caller_key}"), by_caller.rate)
            .await
        {
            Some(result) => result,
            None => by_caller.check(&caller_key, &self.clock),
        };
        let caller_state = match caller_result {
            Ok(state) => state,
            Err((state, retry_after_secs)) => {
                return Some(Verdict::Limited {
                    state,
                    retry_after_secs,
                    scope: "caller",
                })
            }
        };
        let tenant_result = match self
            .check_shared(&format!("{class_name}:tenant:{tenant}"), by_tenant.rate)
            .await
        {
            Some(result) => result,
            None => by_tenant.check(tenant, &self.clock),
        };
        let tenant_state = match tenant_result {
            Ok(state) => state,
            Err((state, retry_after_secs)) => {
                return Some(Verdict::Limited {
                    state,
                    retry_after_secs,
                    scope: "tenant",
                })
            }
        };
        Some(Verdict::Allowed(
            if tenant_state.remaining < caller_state.remaining {
                tenant_state
            } else {
                caller_state
            },
        ))
    }

    /// Forget keys whose budgets are whole again (bounded memory).
    pub fn forget_idle(&self) {
        for (a, b) in &self.budgets {
            a.limiter.retain_recent();
            b.limiter.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClassLimits;

    fn limits(burst: u32) -> RateLimitsConfig {
        let class = ClassLimits {
            caller: Rate {
                per_second: 1,
                burst,
            },
            tenant: Rate {
                per_second: 1,
                burst: burst * 2,
            },
        };
        RateLimitsConfig {
            enabled: true,
            read: class.clone(),
            ingest: class.clone(),
            admin: class,
        }
    }

    #[tokio::test]
    async fn caller_budget_runs_out_then_tenant_budget() {
        let limits = RateLimits::new(&limits(3));
        for remaining in [2, 1, 0] {
            match limits.check(RouteClass::Read, "a", "t").await {
                Some(Verdict::Allowed(s)) => {
                    assert_eq!((s.limit, s.remaining), (3, remaining));
                }
                other => panic!("expected allowed, got {other:?}"),
            }
        }
        assert!(matches!(
            limits.check(RouteClass::Read, "a", "t").await,
            Some(Verdict::Limited {
                scope: "caller",
                retry_after_secs: 1,
                ..
            })
        ));
        // Ingestion has its own budget.
        assert!(matches!(
            limits.check(RouteClass::Ingest, "a", "t").await,
            Some(Verdict::Allowed(_))
        ));
        // Another caller of the same tenant: 3 of the tenant's 6 are used.
        for _ in 0..3 {
            assert!(matches!(
                limits.check(RouteClass::Read, "b", "t").await,
                Some(Verdict::Allowed(_))
            ));
        }
        assert!(matches!(
            limits.check(RouteClass::Read, "c", "t").await,
            Some(Verdict::Limited {
                scope: "tenant",
                ..
            })
        ));
        // Another tenant is untouched.
        assert!(matches!(
            limits.check(RouteClass::Read, "a", "u").await,
            Some(Verdict::Allowed(_))
        ));
    }
}
