//! The embedded store: aggregated facts in `<data_dir>/store.db` (SQLite).
//!
//! - snapshots replace the values of their identity only when strictly
//!   newer (`observed_at`); deltas count once per `(tenant, platform,
//!   dedup_key)`;
//! - rows, rollups, entities and the bus position are written in one
//!   transaction ([`write`]);
//! - `rollup_days` holds snapshot sums per (tenant, day, campaign, report,
//!   currency) and `rollup_extras` the extra metrics, changed by each write
//!   by exactly what it changed in the facts; `rollup_chosen` keeps, per
//!   campaign-day, the sums of the report a campaign-grouped answer uses,
//!   and `rollup_accounts` their sums per account-day. Queries that group by
//!   campaign or coarser are answered from the rollups with one `GROUP BY`
//!   (by account or coarser with no campaign filter, from the account-days);
//!   by ad group or ad, from the facts, with the same report choice;
//! - the tables, and how an older store is brought to them, are in [`schema`].

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Row as _, Sqlite};

mod schema;
mod write;

use super::batch::Batch;
use super::hierarchy::{Entity, Known, StoredDelta};
use super::{AdapterRows, Aggregate, Campaign, Days, FactFilter, Result, StoreBackend};
use crate::insights::{self, Dimension, Fact, Granularity, Summed, Sums};

/// The consumer whose bus position the store keeps.
const CONSUMER: &str = "aggregator";

/// Handle to the embedded store; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    pool: SqlitePool,
    /// The one connection that writes batches ([`write`]); reads use `pool`.
    writer: std::sync::Arc<std::sync::Mutex<rusqlite::Connection>>,
    path: std::path::PathBuf,
    /// When the write-ahead log was last checkpointed and truncated.
    checkpointed: std::sync::Arc<std::sync::Mutex<std::time::Instant>>,
}

/// How often a writing store folds its write-ahead log into the database
/// and truncates it: SQLite's own (passive) checkpoints cannot finish while
/// queries keep reading, so under steady ingest the log would only grow.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl EmbeddedStore {
    /// Open (or create) the store at `path`.
    pub async fn open(path: &Path) -> Result<EmbeddedStore> {
        let pool = crate::sqlite::open_file_for_bulk_writes(path).await?;
        schema::add_breakdown_column(&pool).await?;
        for statement in schema::SCHEMA {
            sqlx::query(statement).execute(&pool).await?;
        }
        schema::add_reports(&pool).await?;
        schema::add_rollups(&pool).await?;
        schema::key_facts_by_day(&pool).await?;
        let writer = crate::sqlite::open_writer(path)?;
        Ok(EmbeddedStore {
            pool,
            writer: std::sync::Arc::new(std::sync::Mutex::new(writer)),
            path: path.to_owned(),
            checkpointed: std::sync::Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
        })
    }

    /// Fold the write-ahead log into the database and truncate it, when
    /// [`CHECKPOINT_EVERY`] has passed since the last time (or `now`).
    async fn checkpoint(&self, now: bool) -> Result<()> {
        let due = self
            .checkpointed
            .lock()
            .map(|mut at| {
                let due = now || at.elapsed() >= CHECKPOINT_EVERY;
                if due {
                    *at = std::time::Instant::now();
                }
                due
            })
            .unwrap_or(false);
        if due {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

/// Run `f`, which blocks on SQLite, without stalling the runtime's other
/// tasks: on a multi-threaded runtime they move to another worker meanwhile;
/// a current-thread runtime (tests) just runs it.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[async_trait::async_trait]
impl StoreBackend for EmbeddedStore {
    async fn stored_position(&self) -> Result<u64> {
        let offset: Option<i64> =
            sqlx::query("SELECT offset FROM consumer_offsets WHERE consumer = ?")
                .bind(CONSUMER)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.get(0));
        Ok(offset.map_or(0, |o| o.max(0) as u64))
    }

    async fn write(&self, batch: &Batch<'_>) -> Result<()> {
        blocking(|| {
            let mut writer = self
                .writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            write::write(&mut writer, batch)
        })?;
        self.checkpoint(false).await
    }

    async fn snapshots(&self, tenant: &str, days: Days, filter: &FactFilter) -> Result<Vec<Fact>> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT platform, account_id, campaign_id, ad_group_id, ad_id, date, hour, currency,
                    impressions, clicks, spend, conversions, conversion_value, extras, breakdown
             FROM facts AS s",
        );
        push_filter(&mut q, tenant, days, filter);
        let rows = q.build().fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|r| Fact {
                platform: r.get(0),
                account_id: r.get(1),
                campaign_id: r.get(2),
                ..fact_from_row(r)
            })
            .collect())
    }

    async fn aggregate(&self, tenant: &str, query: &Aggregate<'_>) -> Result<Vec<Summed>> {
        let dims = query.dimensions();
        let from_facts = !insights::rollup_answers(query.group_by);
        let source = if from_facts { "facts" } else { "rollup_days" };
        let key_of = |r: &sqlx::sqlite::SqliteRow| -> (Option<i32>, Vec<Option<String>>, String) {
            let values = (0..dims.len())
                .map(|i| r.get::<Option<String>, _>(1 + i).filter(|v| !v.is_empty()))
                .collect();
            (r.get(0), values, r.get(1 + dims.len()))
        };

        // By campaign or coarser without a currency filter, the chosen
        // reports' sums are stored: no choice to make (a currency filter may
        // leave a campaign-day another report, so it chooses in the query).
        let chosen = !from_facts && query.filter.currencies.is_none();
        let mut q = QueryBuilder::<Sqlite>::new("");
        if !chosen {
            push_cells(&mut q, tenant, query);
        }
        q.push(format!(
            "SELECT {bucket} AS bucket, {dims}s.currency,
                    SUM(s.impressions), SUM(s.clicks), SUM(s.spend), SUM(s.conversions),
                    SUM(s.conversion_value)",
            bucket = bucket_sql(query.granularity),
            dims = dims_sql(&dims),
        ));
        if from_facts {
            for name in query.extras {
                q.push(", SUM(COALESCE(json_extract(s.extras, ")
                    .push_bind(format!("$.\"{name}\""))
                    .push("), 0))");
            }
        }
        if chosen {
            let table = if by_account(query) {
                "rollup_accounts"
            } else {
                "rollup_chosen"
            };
            q.push(format!(" FROM {table} AS s"));
            push_filter(&mut q, tenant, query.days, query.filter);
        } else {
            q.push(format!(" FROM {source} AS s"));
            push_chosen(&mut q, tenant, query);
        }
        push_group(&mut q, query.granularity, &dims, "");
        if !from_facts {
            // Rollup rows whose facts all moved away (to another currency) hold zeros.
            q.push(" HAVING SUM(s.rows) > 0");
        }
        let rows = q.build().fetch_all(&self.pool).await?;
        let base = 2 + dims.len();
        let mut out: Vec<Summed> = rows
            .iter()
            .map(|r| {
                let (bucket, values, currency) = key_of(r);
                let mut sums = Sums {
                    impressions: r.get(base),
                    clicks: r.get(base + 1),
                    spend: r.get(base + 2),
                    conversions: r.get(base + 3),
                    conversion_value: r.get(base + 4),
                    ..Sums::default()
                };
                if from_facts {
                    for (i, name) in query.extras.iter().enumerate() {
                        let value: i64 = r.get(base + 5 + i);
                        if value != 0 {
                            sums.extras.insert(name.clone(), value);
                        }
                    }
                }
                Summed {
                    bucket,
                    values,
                    currency,
                    sums,
                }
            })
            .collect();
        if from_facts || query.extras.is_empty() {
            return Ok(out);
        }

        // Extra metrics from their rollup, with the same choice of report.
        let mut q = QueryBuilder::<Sqlite>::new("");
        push_cells(&mut q, tenant, query);
        q.push(format!(
            "SELECT {bucket} AS bucket, {dims}s.currency, s.name, SUM(s.value)
             FROM rollup_extras AS s",
            bucket = bucket_sql(query.granularity),
            dims = dims_sql(&dims),
        ));
        push_chosen(&mut q, tenant, query);
        q.push(" AND s.name IN (");
        let mut names = q.separated(", ");
        for name in query.extras {
            names.push_bind(name.as_str());
        }
        q.push(")");
        push_group(&mut q, query.granularity, &dims, ", s.name");
        let rows = q.build().fetch_all(&self.pool).await?;
        super::add_extras(
            &mut out,
            rows.iter()
                .map(|r| (key_of(r), r.get(base), r.get::<i64, _>(base + 1))),
        );
        Ok(out)
    }

    async fn stored_deltas(&self, tenant: &str, days: Days) -> Result<Vec<StoredDelta>> {
        let rows = sqlx::query(
            "SELECT platform, account_id, campaign_id, ad_group_id, ad_id, date, hour, currency,
                    impressions, clicks, spend, conversions, conversion_value, extras, breakdown
             FROM deltas WHERE tenant = ? AND date BETWEEN ? AND ?",
        )
        .bind(tenant)
        .bind(days.from)
        .bind(days.to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| StoredDelta {
                account_id: r.get(1),
                campaign_id: r.get(2),
                currency: r.get(7),
                fact: Fact {
                    platform: r.get(0),
                    ..fact_from_row(r)
                },
            })
            .collect())
    }

    async fn known(&self, tenant: &str, level: &str, ids: &[String]) -> Result<Vec<Known>> {
        let mut rows = Vec::new();
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT platform, level, id, account_id, campaign_id, ad_group_id, currency,
                        campaign_name
                 FROM entities WHERE tenant = ",
            );
            q.push_bind(tenant).push(" AND level = ").push_bind(level);
            q.push(" AND id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id.as_str());
            }
            q.push(")");
            rows.extend(q.build().fetch_all(&self.pool).await?);
        }
        Ok(rows
            .iter()
            .map(|r| Known {
                platform: r.get(0),
                level: r.get(1),
                id: r.get(2),
                entity: Entity {
                    account_id: r.get(3),
                    campaign_id: r.get(4),
                    ad_group_id: r.get(5),
                    name: r.get(7),
                    currency: r.get(6),
                },
            })
            .collect())
    }

    async fn extra_metric_names(&self, tenant: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT name FROM extra_metrics WHERE tenant = ? ORDER BY name")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn campaigns(&self, tenant: &str) -> Result<Vec<Campaign>> {
        let rows = sqlx::query(
            "SELECT platform, account_id, id, campaign_name, currency FROM entities
             WHERE tenant = ? AND level = 'campaign' ORDER BY platform, account_id, id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Campaign {
                platform: r.get(0),
                account_id: r.get(1),
                campaign_id: r.get(2),
                name: r.get(3),
                currency: r.get(4),
            })
            .collect())
    }

    async fn adapter_versions(&self, tenant: &str) -> Result<Vec<AdapterRows>> {
        let rows = sqlx::query(
            "SELECT adapter, adapter_version, SUM(n) FROM (
                SELECT adapter, adapter_version, COUNT(*) AS n FROM facts WHERE tenant = ? GROUP BY 1, 2
                UNION ALL
                SELECT adapter, adapter_version, COUNT(*) AS n FROM deltas WHERE tenant = ? GROUP BY 1, 2
             ) GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(tenant)
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| AdapterRows {
                adapter: r.get(0),
                version: r.get(1),
                rows: r.get(2),
            })
            .collect())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn settle(&self) -> Result<()> {
        self.checkpoint(true).await
    }

    fn scope(&self) -> String {
        format!("sqlite|{}", self.path.display())
    }
}

/// Whether `rollup_accounts` holds what `query` sums: grouped by platform
/// or account at most, filtered by neither campaign nor currency (the
/// caller checks the currency: without one, the chosen reports' sums).
fn by_account(query: &Aggregate<'_>) -> bool {
    query.filter.campaign_ids.is_none()
        && query
            .group_by
            .iter()
            .all(|d| matches!(d, Dimension::Platform | Dimension::AccountId))
}

/// `WITH cells AS (…)`: per campaign-day that `query` selects, the coarsest
/// report present that is fine enough for its grouping (see
/// [`crate::insights::report_key`]).
fn push_cells(q: &mut QueryBuilder<'_, Sqlite>, tenant: &str, query: &Aggregate<'_>) {
    q.push(
        "WITH cells AS (SELECT platform, account_id, campaign_id, date, MIN(report) AS report
         FROM rollup_days AS s",
    );
    push_filter(q, tenant, query.days, query.filter);
    q.push(" AND s.rows > 0 AND s.report >= ")
        .push_bind(insights::needed_level(query.group_by).to_string())
        .push(" GROUP BY platform, account_id, campaign_id, date) ");
}

/// `WHERE` on the tenant, the days and the filters, for rows `s`.
fn push_filter(q: &mut QueryBuilder<'_, Sqlite>, tenant: &str, days: Days, filter: &FactFilter) {
    q.push(" WHERE s.tenant = ").push_bind(tenant.to_owned());
    push_days(q, days, filter.campaign_ids.as_ref().map_or(0, Vec::len));
    for (column, values) in filter.columns() {
        q.push(format!(" AND s.{column} IN ("));
        let mut list = q.separated(", ");
        for v in values {
            list.push_bind(v.clone());
        }
        q.push(")");
    }
}

/// ` AND` the days. Facts and rollups are keyed (tenant, date, campaign, …):
/// with a filter of `campaigns` campaigns, a range is listed (`date IN (…)`)
/// when its (day, campaign) pairs are at most [`LISTED_SEEKS`] and its days
/// at most [`LISTED_DAYS`], so SQLite seeks each pair instead of reading
/// every campaign's rows of the range (it does not skip-scan a key without
/// statistics); past that, one range of the key reads less. The days are
/// integers this function writes, not input text.
fn push_days(q: &mut QueryBuilder<'_, Sqlite>, days: Days, campaigns: usize) {
    let listed = i64::from(days.to) - i64::from(days.from) + 1;
    let seeks = listed.saturating_mul(i64::try_from(campaigns).unwrap_or(i64::MAX));
    if campaigns > 0 && (1..=LISTED_DAYS).contains(&listed) && seeks <= LISTED_SEEKS {
        let listed: Vec<String> = (days.from..=days.to).map(|d| d.to_string()).collect();
        q.push(format!(" AND s.date IN ({})", listed.join(", ")));
    } else {
        q.push(" AND s.date BETWEEN ")
            .push_bind(days.from)
            .push(" AND ")
            .push_bind(days.to);
    }
}

/// The longest range [`push_days`] lists day by day (about three years).
const LISTED_DAYS: i64 = 1100;

/// The most (day, campaign) seeks [`push_days`] has SQLite make: about what
/// a range read of a few hundred campaigns' month costs.
const LISTED_SEEKS: i64 = 20_000;

/// Join rows `s` to their campaign-day's chosen report, and filter them.
fn push_chosen(q: &mut QueryBuilder<'_, Sqlite>, tenant: &str, query: &Aggregate<'_>) {
    q.push(
        " JOIN cells AS c ON s.platform = c.platform AND s.account_id = c.account_id
          AND s.campaign_id = c.campaign_id AND s.date = c.date AND s.report = c.report",
    );
    push_filter(q, tenant, query.days, query.filter);
}

/// `GROUP BY` bucket, dimensions, currency (and `more`).
fn push_group(
    q: &mut QueryBuilder<'_, Sqlite>,
    granularity: Granularity,
    dims: &[Dimension],
    more: &str,
) {
    let bucket = match granularity {
        Granularity::Total => String::new(),
        _ => format!("{}, ", bucket_sql(granularity)),
    };
    q.push(format!(
        " GROUP BY {bucket}{}s.currency{more}",
        dims_sql(dims)
    ));
}

/// The first day of the bucket holding `s.date`; NULL for `total`.
fn bucket_sql(granularity: Granularity) -> &'static str {
    match granularity {
        Granularity::Day => "s.date",
        // 1970-01-01 was a Thursday: Monday-based weekday = (date + 3) mod 7.
        Granularity::Week => "(s.date - (((s.date + 3) % 7) + 7) % 7)",
        Granularity::Month => {
            "(s.date + 1 - CAST(strftime('%d', s.date * 86400, 'unixepoch') AS INTEGER))"
        }
        Granularity::Total => "NULL",
    }
}

/// `s.<dimension>, ` for each answer dimension, in order.
fn dims_sql(dims: &[Dimension]) -> String {
    dims.iter().map(|d| format!("s.{}, ", d.as_str())).collect()
}

/// The columns every read shares (platform, account, campaign and currency
/// are set by the caller: facts have them, deltas may not).
fn fact_from_row(r: &sqlx::sqlite::SqliteRow) -> Fact {
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let hour: i64 = r.get(6);
    let extras: Option<String> = r.get(13);
    Fact {
        platform: String::new(),
        account_id: String::new(),
        campaign_id: String::new(),
        ad_group_id: non_empty(r.get(3)),
        ad_id: non_empty(r.get(4)),
        date: r.get(5),
        hour: u8::try_from(hour).ok(),
        currency: r.get::<Option<String>, _>(7).unwrap_or_default(),
        impressions: r.get(8),
        clicks: r.get(9),
        spend_micros: r.get(10),
        conversions_micros: r.get(11),
        conversion_value_micros: r.get(12),
        extras: extras
            .and_then(|e| serde_json::from_str::<BTreeMap<String, i64>>(&e).ok())
            .unwrap_or_default(),
        breakdown: r.get(14),
    }
}

/// Ids per lookup statement.
const IDS_PER_STATEMENT: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;

    /// How SQLite reads `table` for `filter` over `days`.
    async fn plan(store: &EmbeddedStore, table: &str, days: Days, filter: &FactFilter) -> String {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "EXPLAIN QUERY PLAN SELECT COUNT(s.currency) FROM {table} AS s"
        ));
        push_filter(&mut q, "t", days, filter);
        let rows = q.build().fetch_all(&store.pool).await.expect("plan");
        rows.iter()
            .map(|r| r.get::<String, _>(3))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Facts and rollups are keyed by day first: a campaign's days are seeks
    /// on the key, a whole account's days one range of it.
    #[tokio::test]
    async fn campaign_reads_seek_each_day_and_account_reads_scan_one_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(&dir.path().join("store.db"))
            .await
            .expect("store");
        let month = Days {
            from: 20_000,
            to: 20_029,
        };
        let decade = Days {
            from: 20_000,
            to: 23_650,
        };
        let one = FactFilter {
            campaign_ids: Some(vec!["c1".into()]),
            ..FactFilter::default()
        };
        let seek = "PRIMARY KEY (tenant=? AND date=? AND campaign_id=?)";
        let range = "PRIMARY KEY (tenant=? AND date>? AND date<?)";
        for table in ["facts", "rollup_days", "rollup_chosen", "rollup_extras"] {
            let one_month = plan(&store, table, month, &one).await;
            assert!(one_month.contains(seek), "{table}: {one_month}");
            let all_month = plan(&store, table, month, &FactFilter::default()).await;
            assert!(all_month.contains(range), "{table}: {all_month}");
            // Longer than the days worth listing: one range, still on the key.
            let one_decade = plan(&store, table, decade, &one).await;
            assert!(one_decade.contains(range), "{table}: {one_decade}");
            // More (day, campaign) pairs than seeks worth making: one range.
            let many = FactFilter {
                campaign_ids: Some((0..1_000).map(|c| format!("c{c}")).collect()),
                ..FactFilter::default()
            };
            let many_month = plan(&store, table, month, &many).await;
            assert!(many_month.contains(range), "{table}: {many_month}");
        }
    }
}
