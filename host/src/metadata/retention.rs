//! Retention: deleting kept payloads, dead letters, audit rows and pull runs
//! older than `[retention]` allows. Rows go in batches of [`BATCH`] (short
//! transactions: ingestion writing beside the pruner never waits long), by
//! the time indexes of migration 6; the same statements run on SQLite and
//! PostgreSQL. Several processes pruning at once only repeat each other's
//! deletes.

use std::time::Duration;

use super::{on_pool, Metadata, MetadataError, Pool};
use crate::config::RetentionConfig;

/// Rows one delete statement removes at most.
pub const BATCH: i64 = 1000;

/// What the pruner deletes: the label of its counter, the table and the
/// column that dates a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Payloads,
    DeadLetters,
    Audit,
    PullRuns,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Payloads,
        Kind::DeadLetters,
        Kind::Audit,
        Kind::PullRuns,
    ];

    /// The metric label (`kind="payloads"`).
    pub fn label(self) -> &'static str {
        match self {
            Kind::Payloads => "payloads",
            Kind::DeadLetters => "dead_letters",
            Kind::Audit => "audit",
            Kind::PullRuns => "pull_runs",
        }
    }

    fn table_and_time(self) -> (&'static str, &'static str) {
        match self {
            Kind::Payloads => ("payloads", "received_at_ms"),
            Kind::DeadLetters => ("dead_letters", "received_at_ms"),
            Kind::Audit => ("audit_log", "at_ms"),
            Kind::PullRuns => ("pull_runs", "started_at_ms"),
        }
    }

    /// Days rows of this kind are kept (0 = forever).
    pub fn days(self, retention: &RetentionConfig) -> u32 {
        match self {
            Kind::Payloads => retention.payloads_days,
            Kind::DeadLetters => retention.dead_letters_days,
            Kind::Audit => retention.audit_days,
            Kind::PullRuns => retention.pull_runs_days,
        }
    }
}

impl Metadata {
    /// Delete every row of `kind` dated before `before_ms`; returns how many.
    pub async fn prune_before(&self, kind: Kind, before_ms: i64) -> Result<u64, MetadataError> {
        let (table, time) = kind.table_and_time();
        let sql = format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {time} < $1 LIMIT $2)"
        );
        let mut total = 0;
        loop {
            let deleted = on_pool!(&self.pool, pool => {
                sqlx::query(&sql)
                    .bind(before_ms)
                    .bind(BATCH)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
            total += deleted;
            if deleted < BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Delete what `retention` no longer keeps at `now_ms`; rows deleted per
    /// kind (kinds kept forever are left out).
    pub async fn prune(
        &self,
        retention: &RetentionConfig,
        now_ms: i64,
    ) -> Result<Vec<(Kind, u64)>, MetadataError> {
        let mut pruned = Vec::new();
        for kind in Kind::ALL {
            let days = kind.days(retention);
            if days == 0 {
                continue;
            }
            let age = Duration::from_secs(u64::from(days) * 86_400).as_millis() as i64;
            pruned.push((kind, self.prune_before(kind, now_ms - age).await?));
        }
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MetadataUrl;

    #[tokio::test]
    async fn batches_delete_everything_older_and_nothing_newer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = MetadataUrl::Sqlite(format!(
            "sqlite://{}",
            dir.path().join("metadata.db").display()
        ));
        let metadata = Metadata::open(&url).await.expect("open");
        let Pool::Sqlite(pool) = &metadata.pool else {
            panic!("sqlite")
        };
        let old = BATCH + 5;
        for i in 0..old + 3 {
            let at = if i < old { 1_000 } else { 5_000 };
            sqlx::query(
                "INSERT INTO audit_log (id, at_ms, tenant, actor, action, target, status) VALUES ($1, $2, 'demo', 'cli', 'x', 'y', 0)",
            )
            .bind(format!("a{i}"))
            .bind(at)
            .execute(pool)
            .await
            .expect("insert");
        }
        let deleted = metadata
            .prune_before(Kind::Audit, 5_000)
            .await
            .expect("prune");
        assert_eq!(deleted, old as u64);
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(pool)
            .await
            .expect("count");
        assert_eq!(left, 3);
    }
}
