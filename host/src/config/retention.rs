//! `[retention]`: how long kept payloads, dead letters, audit rows and pull
//! runs stay in metadata before the background pruner deletes them, and how
//! often it runs. A retention of `0` days keeps those rows forever.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::Issues;

/// Longest retention accepted (100 years): beyond it, use 0 (forever).
const MAX_DAYS: u32 = 36_500;

/// `[retention]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days an accepted payload is kept for `adpipe replay` (0 = forever).
    pub payloads_days: u32,
    /// Days a dead letter is kept (0 = forever).
    pub dead_letters_days: u32,
    /// Days an audit-log row is kept (0 = forever).
    pub audit_days: u32,
    /// Days a pull-run record is kept (0 = forever).
    pub pull_runs_days: u32,
    /// How often the pruner runs (`15m`, `1h`, ...; at least a minute).
    #[serde(with = "super::values::prune_interval")]
    pub prune_every: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            payloads_days: 35,
            dead_letters_days: 30,
            audit_days: 400,
            pull_runs_days: 90,
            prune_every: Duration::from_secs(3600),
        }
    }
}

impl RetentionConfig {
    /// `[retention]`'s mistakes.
    pub(super) fn validate(&self, issues: &mut Issues) {
        for (key, days) in [
            ("payloads_days", self.payloads_days),
            ("dead_letters_days", self.dead_letters_days),
            ("audit_days", self.audit_days),
            ("pull_runs_days", self.pull_runs_days),
        ] {
            if days > MAX_DAYS {
                issues.add(
                    format!("retention.{key}"),
                    format!("must be at most {MAX_DAYS} days"),
                    "use 0 to keep these rows forever",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::load;
    use super::*;

    #[test]
    fn retention_has_defaults_env_overrides_and_bounds() {
        let config = load("", &[]).expect("valid");
        assert_eq!(config.retention, RetentionConfig::default());
        assert_eq!(
            (
                config.retention.payloads_days,
                config.retention.dead_letters_days,
                config.retention.audit_days,
                config.retention.pull_runs_days
            ),
            (35, 30, 400, 90)
        );
        let config = load(
            "[retention]\npayloads_days = 7\nprune_every = \"15m\"\n",
            &[("ADPIPE_RETENTION__AUDIT_DAYS", "0")],
        )
        .expect("valid");
        assert_eq!(config.retention.payloads_days, 7);
        assert_eq!(config.retention.audit_days, 0);
        assert_eq!(config.retention.prune_every, Duration::from_secs(900));
        let text = load(
            "[retention]\ndead_letters_days = 40000\nprune_every = \"10s\"\npayloads_days = -1\n",
            &[],
        )
        .expect_err("invalid")
        .to_string();
        for expected in [
            "retention.dead_letters_days: must be at most 36500 days",
            "retention.prune_every: `10s` is not an interval of at least a minute",
            "retention.payloads_days: invalid",
        ] {
            assert!(text.contains(expected), "`{expected}` missing in {text}");
        }
    }
}
