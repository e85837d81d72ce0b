//! The embedded store: aggregated facts in `<data_dir>/store.db` (SQLite).
//!
//! - snapshots upsert per identity, replacing only when the new
//!   `observed_at` is strictly newer (an `ON CONFLICT … WHERE`);
//! - deltas insert once per `(tenant, platform, dedup_key)` (`DO NOTHING`);
//! - rows, entities and the bus position are written in one transaction;
//! - `rollup_days` holds snapshot sums per (tenant, day, campaign, report,
//!   currency), kept by triggers on `facts` in the same transaction: an
//!   inserted fact adds itself, a replaced one subtracts its old values and
//!   adds its new ones, a duplicate (not newer) changes nothing. Extra
//!   metrics roll up in `rollup_extras`. Queries that group by campaign or
//!   coarser are answered from the rollups with one `GROUP BY`; by ad group
//!   or ad, from the facts, with the same report choice.

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Row as _, Sqlite};

use super::batch::{Batch, Item};
use super::hierarchy::{Entity, Known, StoredDelta};
use super::{AdapterRows, Aggregate, Campaign, Days, FactFilter, Result, StoreBackend};
use crate::insights::{self, Dimension, Fact, Granularity, Summed, Sums};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS facts (
        tenant TEXT NOT NULL, platform TEXT NOT NULL, account_id TEXT NOT NULL,
        campaign_id TEXT NOT NULL, ad_group_id TEXT NOT NULL, ad_id TEXT NOT NULL,
        date INTEGER NOT NULL, hour INTEGER NOT NULL,
        currency TEXT NOT NULL,
        impressions INTEGER NOT NULL, clicks INTEGER NOT NULL, spend INTEGER NOT NULL,
        conversions INTEGER NOT NULL, conversion_value INTEGER NOT NULL,
        extras TEXT, observed_at INTEGER NOT NULL,
        pipeline TEXT NOT NULL, adapter TEXT NOT NULL, adapter_version TEXT NOT NULL,
        breakdown TEXT NOT NULL DEFAULT '', report TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date, hour, breakdown)
    ) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS facts_by_campaign ON facts (tenant, campaign_id, date)",
    // Account-wide reads go to the rollups now; the index only cost space.
    "DROP INDEX IF EXISTS facts_by_date",
    "CREATE TABLE IF NOT EXISTS deltas (
        tenant TEXT NOT NULL, platform TEXT NOT NULL, dedup_key TEXT NOT NULL,
        account_id TEXT NOT NULL, campaign_id TEXT, ad_group_id TEXT, ad_id TEXT,
        date INTEGER NOT NULL, hour INTEGER NOT NULL, currency TEXT,
        impressions INTEGER NOT NULL, clicks INTEGER NOT NULL, spend INTEGER NOT NULL,
        conversions INTEGER NOT NULL, conversion_value INTEGER NOT NULL,
        extras TEXT, observed_at INTEGER NOT NULL,
        pipeline TEXT NOT NULL, adapter TEXT NOT NULL, adapter_version TEXT NOT NULL,
        breakdown TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (tenant, platform, dedup_key)
    ) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS deltas_by_date ON deltas (tenant, date)",
    "CREATE TABLE IF NOT EXISTS entities (
        tenant TEXT NOT NULL, platform TEXT NOT NULL, level TEXT NOT NULL, id TEXT NOT NULL,
        account_id TEXT NOT NULL, campaign_id TEXT NOT NULL, ad_group_id TEXT,
        campaign_name TEXT, currency TEXT NOT NULL,
        PRIMARY KEY (tenant, platform, level, id)
    ) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS extra_metrics (
        tenant TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (tenant, name)
    ) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS consumer_offsets (
        consumer TEXT PRIMARY KEY, offset INTEGER NOT NULL
    )",
];

/// The rollup tables; a store that lacked them gets them filled from its
/// facts once ([`add_rollups`]).
const ROLLUP_SCHEMA: &[&str] = &[
    "CREATE TABLE rollup_days (
        tenant TEXT NOT NULL, date INTEGER NOT NULL, campaign_id TEXT NOT NULL,
        platform TEXT NOT NULL, account_id TEXT NOT NULL, report TEXT NOT NULL,
        currency TEXT NOT NULL, rows INTEGER NOT NULL,
        impressions INTEGER NOT NULL, clicks INTEGER NOT NULL, spend INTEGER NOT NULL,
        conversions INTEGER NOT NULL, conversion_value INTEGER NOT NULL,
        PRIMARY KEY (tenant, date, campaign_id, platform, account_id, report, currency)
    ) WITHOUT ROWID",
    "CREATE INDEX rollup_days_by_campaign ON rollup_days (tenant, campaign_id, date)",
    "CREATE TABLE rollup_extras (
        tenant TEXT NOT NULL, date INTEGER NOT NULL, campaign_id TEXT NOT NULL,
        platform TEXT NOT NULL, account_id TEXT NOT NULL, report TEXT NOT NULL,
        currency TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL,
        PRIMARY KEY (tenant, date, campaign_id, platform, account_id, report, currency, name)
    ) WITHOUT ROWID",
];

/// Per campaign-day and currency, the sums of the report a campaign-grouped
/// answer uses (the coarsest present): what most queries read, with no
/// choice left to make. Recomputed for the campaign-days a write touches.
const CHOSEN_SCHEMA: &[&str] = &[
    "CREATE TABLE rollup_chosen (
        tenant TEXT NOT NULL, date INTEGER NOT NULL, campaign_id TEXT NOT NULL,
        platform TEXT NOT NULL, account_id TEXT NOT NULL, currency TEXT NOT NULL,
        rows INTEGER NOT NULL, impressions INTEGER NOT NULL, clicks INTEGER NOT NULL,
        spend INTEGER NOT NULL, conversions INTEGER NOT NULL, conversion_value INTEGER NOT NULL,
        PRIMARY KEY (tenant, date, campaign_id, platform, account_id, currency)
    ) WITHOUT ROWID",
    "CREATE INDEX rollup_chosen_by_campaign ON rollup_chosen (tenant, campaign_id, date)",
];

/// The campaign-day columns, in `rollup_chosen`'s key order.
const CELL: &str = "tenant, date, campaign_id, platform, account_id";

/// `rollup_chosen`'s rows from `rollup_days` rows `r` (filtered by the caller).
fn chosen_from_days(filter: &str) -> String {
    format!(
        "INSERT INTO rollup_chosen ({CELL}, currency, rows, impressions, clicks, spend, conversions,
                                    conversion_value)
         SELECT {CELL}, currency, rows, impressions, clicks, spend, conversions, conversion_value
         FROM rollup_days AS r
         WHERE r.rows > 0 AND ({filter}) AND r.report = (
             SELECT MIN(m.report) FROM rollup_days AS m
             WHERE m.tenant = r.tenant AND m.date = r.date AND m.campaign_id = r.campaign_id
               AND m.platform = r.platform AND m.account_id = r.account_id AND m.rows > 0)"
    )
}

/// Cells per statement when recomputing chosen rows (5 binds each).
const CELLS_PER_STATEMENT: usize = 150;

/// The key columns of a rollup row, in table order.
const ROLLUP_KEY: &str = "tenant, date, campaign_id, platform, account_id, report, currency";

/// SQL that adds (`sign` = "") or subtracts (`sign` = "-") the fact `row`
/// (`NEW` or `OLD` in a trigger) to or from the rollups.
fn rollup_change(row: &str, sign: &str) -> String {
    let key = ROLLUP_KEY
        .split(", ")
        .map(|c| format!("{row}.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO rollup_days ({ROLLUP_KEY}, rows, impressions, clicks, spend, conversions, conversion_value)
         VALUES ({key}, {sign}1, {sign}{row}.impressions, {sign}{row}.clicks, {sign}{row}.spend,
                 {sign}{row}.conversions, {sign}{row}.conversion_value)
         ON CONFLICT ({ROLLUP_KEY}) DO UPDATE SET rows = rows + excluded.rows,
            impressions = impressions + excluded.impressions, clicks = clicks + excluded.clicks,
            spend = spend + excluded.spend, conversions = conversions + excluded.conversions,
            conversion_value = conversion_value + excluded.conversion_value;
         INSERT INTO rollup_extras ({ROLLUP_KEY}, name, value)
         SELECT {key}, j.key, {sign}j.value FROM json_each({row}.extras) AS j WHERE true
         ON CONFLICT ({ROLLUP_KEY}, name) DO UPDATE SET value = value + excluded.value;"
    )
}

/// The triggers that keep the rollups with the facts (an upsert that
/// replaces a fact fires the update trigger; one that keeps it, none).
fn rollup_triggers() -> [String; 2] {
    [
        format!(
            "CREATE TRIGGER IF NOT EXISTS facts_roll_up_insert AFTER INSERT ON facts BEGIN {} END",
            rollup_change("NEW", "")
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS facts_roll_up_update AFTER UPDATE ON facts BEGIN {} {} END",
            rollup_change("OLD", "-"),
            rollup_change("NEW", "")
        ),
    ]
}

const CONSUMER: &str = "aggregator";

/// Handle to the embedded store; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    pool: SqlitePool,
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
        add_breakdown_column(&pool).await?;
        for statement in SCHEMA {
            sqlx::query(statement).execute(&pool).await?;
        }
        add_reports(&pool).await?;
        add_rollups(&pool).await?;
        Ok(EmbeddedStore {
            pool,
            path: path.to_owned(),
            checkpointed: std::sync::Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
        })
    }
}

/// Stores made before breakdown keys: `facts` gets `breakdown` in its key (a
/// WITHOUT ROWID table's key cannot change in place, so it is rebuilt in one
/// transaction), `deltas` gets the column.
async fn add_breakdown_column(pool: &SqlitePool) -> Result<()> {
    let has = |table: &'static str| async move {
        let columns = sqlx::query(&format!("PRAGMA table_info({table})"))
            .fetch_all(pool)
            .await?;
        let exists = !columns.is_empty();
        let has = columns.iter().any(|c| c.get::<String, _>(1) == "breakdown");
        Ok::<_, sqlx::Error>((exists, has))
    };
    let mut tx = pool.begin().await?;
    if let (true, false) = has("facts").await? {
        tracing::info!("store: adding breakdown keys to facts (rebuilding the table once)");
        sqlx::query("ALTER TABLE facts RENAME TO facts_before_breakdown")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DROP INDEX IF EXISTS facts_by_campaign")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DROP INDEX IF EXISTS facts_by_date")
            .execute(&mut *tx)
            .await?;
        sqlx::query(SCHEMA[0]).execute(&mut *tx).await?;
        let columns = "tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date, \
            hour, currency, impressions, clicks, spend, conversions, conversion_value, extras, \
            observed_at, pipeline, adapter, adapter_version";
        sqlx::query(&format!(
            "INSERT INTO facts ({columns}) SELECT {columns} FROM facts_before_breakdown"
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DROP TABLE facts_before_breakdown")
            .execute(&mut *tx)
            .await?;
    }
    if let (true, false) = has("deltas").await? {
        sqlx::query("ALTER TABLE deltas ADD COLUMN breakdown TEXT NOT NULL DEFAULT ''")
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Stores made before report keys: `facts` gets its `report` column, filled
/// from each row's level, hour and breakdown (rows with an empty key).
async fn add_reports(pool: &SqlitePool) -> Result<()> {
    let columns = sqlx::query("PRAGMA table_info(facts)")
        .fetch_all(pool)
        .await?;
    let mut tx = pool.begin().await?;
    if !columns.iter().any(|c| c.get::<String, _>(1) == "report") {
        sqlx::query("ALTER TABLE facts ADD COLUMN report TEXT NOT NULL DEFAULT ''")
            .execute(&mut *tx)
            .await?;
    }
    let breakdowns: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT breakdown FROM facts WHERE report = ''")
            .fetch_all(&mut *tx)
            .await?;
    if !breakdowns.is_empty() {
        tracing::info!("store: adding report keys to facts (once)");
    }
    for breakdown in breakdowns {
        // The entity and hour digits from the row, the dimensions from Rust.
        let dimensions = &crate::insights::report_key(false, false, false, &breakdown)[2..];
        sqlx::query(
            "UPDATE facts SET report =
                (CASE WHEN ad_id != '' THEN '2' WHEN ad_group_id != '' THEN '1' ELSE '0' END)
                || (CASE WHEN hour >= 0 THEN '1' ELSE '0' END) || ?
             WHERE breakdown = ? AND report = ''",
        )
        .bind(dimensions)
        .bind(&breakdown)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The rollup tables and their triggers; a store that had facts before them
/// gets its rollups computed from the facts, in the same transaction.
async fn add_rollups(pool: &SqlitePool) -> Result<()> {
    let mut tx = pool.begin().await?;
    let exists: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'rollup_days'",
    )
    .fetch_optional(&mut *tx)
    .await?;
    if exists.is_none() {
        for statement in ROLLUP_SCHEMA {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        let filled = sqlx::query(&format!(
            "INSERT INTO rollup_days ({ROLLUP_KEY}, rows, impressions, clicks, spend, conversions, conversion_value)
             SELECT {ROLLUP_KEY}, COUNT(*), SUM(impressions), SUM(clicks), SUM(spend),
                    SUM(conversions), SUM(conversion_value)
             FROM facts GROUP BY {ROLLUP_KEY}"
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "INSERT INTO rollup_extras ({ROLLUP_KEY}, name, value)
             SELECT {key}, j.key, SUM(j.value) FROM facts AS f, json_each(f.extras) AS j
             GROUP BY {key}, j.key",
            key = ROLLUP_KEY
                .split(", ")
                .map(|c| format!("f.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .execute(&mut *tx)
        .await?;
        if filled.rows_affected() > 0 {
            tracing::info!(
                rows = filled.rows_affected(),
                "store: rollups computed from the stored facts (once)"
            );
        }
    }
    for trigger in rollup_triggers() {
        sqlx::query(&trigger).execute(&mut *tx).await?;
    }
    let chosen: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'rollup_chosen'",
    )
    .fetch_optional(&mut *tx)
    .await?;
    if chosen.is_none() {
        for statement in CHOSEN_SCHEMA {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query(&chosen_from_days("1"))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Recompute `rollup_chosen` for the campaign-days `items` touch.
async fn choose_reports(tx: &mut sqlx::Transaction<'_, Sqlite>, items: &[Item<'_>]) -> Result<()> {
    let cells: std::collections::BTreeSet<(&str, i32, &str, &str, &str)> = items
        .iter()
        .map(|i| {
            (
                i.tenant,
                i.row.date,
                i.campaign_id(),
                i.row.platform.as_str(),
                i.row.account_id.as_str(),
            )
        })
        .collect();
    let cells: Vec<_> = cells.into_iter().collect();
    for chunk in cells.chunks(CELLS_PER_STATEMENT) {
        let list = |q: &mut QueryBuilder<'_, Sqlite>| {
            q.push(format!("({CELL}) IN (VALUES "));
            let mut values = q.separated(", ");
            for (v_tenant, date, v_campaign, v_platform, v_account) in chunk {
                values.push("(");
                values.push_bind_unseparated(v_tenant.to_string());
                values.push_unseparated(", ");
                values.push_bind_unseparated(*date);
                values.push_unseparated(", ");
                values.push_bind_unseparated(v_campaign.to_string());
                values.push_unseparated(", ");
                values.push_bind_unseparated(v_platform.to_string());
                values.push_unseparated(", ");
                values.push_bind_unseparated(v_account.to_string());
                values.push_unseparated(")");
            }
            q.push(")");
        };
        let mut delete = QueryBuilder::<Sqlite>::new("DELETE FROM rollup_chosen WHERE ");
        list(&mut delete);
        delete.build().execute(&mut **tx).await?;
        // The cell list goes where chosen_from_days puts its filter.
        let sql = chosen_from_days("\u{0}");
        let (head, tail) = sql.split_once('\u{0}').unwrap_or((&sql, ""));
        let mut insert = QueryBuilder::<Sqlite>::new(head.to_owned());
        list(&mut insert);
        insert.push(tail.to_owned());
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
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
        let mut tx = self.pool.begin().await?;
        // Multi-row statements: SQLite applies VALUES rows in order, so a key
        // repeated within one statement still obeys the observed_at rule.
        for chunk in batch.snapshots.chunks(ROWS_PER_STATEMENT) {
            insert(&mut tx, "facts", chunk, SNAPSHOT_CONFLICT).await?;
        }
        choose_reports(&mut tx, &batch.snapshots).await?;
        for chunk in batch.deltas.chunks(ROWS_PER_STATEMENT) {
            insert(&mut tx, "deltas", chunk, DELTA_CONFLICT).await?;
        }
        for ((tenant, platform, level, id), entity) in &batch.entities {
            sqlx::query(
                "INSERT INTO entities (tenant, platform, level, id, account_id, campaign_id, ad_group_id, campaign_name, currency)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (tenant, platform, level, id) DO UPDATE SET
                    account_id = excluded.account_id, campaign_id = excluded.campaign_id,
                    ad_group_id = COALESCE(excluded.ad_group_id, entities.ad_group_id),
                    campaign_name = COALESCE(excluded.campaign_name, entities.campaign_name),
                    currency = excluded.currency",
            )
            .bind(tenant)
            .bind(platform)
            .bind(level)
            .bind(id)
            .bind(&entity.account_id)
            .bind(&entity.campaign_id)
            .bind(&entity.ad_group_id)
            .bind(&entity.name)
            .bind(&entity.currency)
            .execute(&mut *tx)
            .await?;
        }
        for (tenant, name) in &batch.extra_metrics {
            sqlx::query("INSERT OR IGNORE INTO extra_metrics (tenant, name) VALUES (?, ?)")
                .bind(tenant)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(through) = batch.through {
            sqlx::query(
                "INSERT INTO consumer_offsets (consumer, offset) VALUES (?, ?)
                 ON CONFLICT (consumer) DO UPDATE SET offset = MAX(offset, excluded.offset)",
            )
            .bind(CONSUMER)
            .bind(through as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let due = self
            .checkpointed
            .lock()
            .map(|mut at| {
                let due = at.elapsed() >= CHECKPOINT_EVERY;
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

    async fn snapshots(&self, tenant: &str, days: Days, filter: &FactFilter) -> Result<Vec<Fact>> {
        // Without statistics SQLite prefers the (tenant, date) index, which
        // reads every campaign's rows of the range; a campaign filter should
        // seek (tenant, campaign_id, date) instead.
        let index = if filter.campaign_ids.is_some() {
            "INDEXED BY facts_by_campaign"
        } else {
            ""
        };
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT platform, account_id, campaign_id, ad_group_id, ad_id, date, hour, currency,
                    impressions, clicks, spend, conversions, conversion_value, extras, breakdown
             FROM facts {index} WHERE tenant = "
        ));
        q.push_bind(tenant)
            .push(" AND date BETWEEN ")
            .push_bind(days.from)
            .push(" AND ")
            .push_bind(days.to);
        for (column, values) in filter.columns() {
            q.push(format!(" AND {column} IN ("));
            let mut list = q.separated(", ");
            for v in values {
                list.push_bind(v.clone());
            }
            q.push(")");
        }
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
            q.push(" FROM rollup_chosen AS s");
            push_filter(&mut q, tenant, query);
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
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
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

    fn scope(&self) -> String {
        format!("sqlite|{}", self.path.display())
    }
}

/// `WITH cells AS (…)`: per campaign-day that `query` selects, the coarsest
/// report present that is fine enough for its grouping (see
/// [`crate::insights::report_key`]).
fn push_cells(q: &mut QueryBuilder<'_, Sqlite>, tenant: &str, query: &Aggregate<'_>) {
    q.push(
        "WITH cells AS (SELECT platform, account_id, campaign_id, date, MIN(report) AS report
         FROM rollup_days AS s",
    );
    push_filter(q, tenant, query);
    q.push(" AND s.rows > 0 AND s.report >= ")
        .push_bind(insights::needed_level(query.group_by).to_string())
        .push(" GROUP BY platform, account_id, campaign_id, date) ");
}

/// `WHERE` on the tenant, the days and the filters of `query`, for rows `s`.
fn push_filter(q: &mut QueryBuilder<'_, Sqlite>, tenant: &str, query: &Aggregate<'_>) {
    // A campaign filter seeks the per-campaign index; without statistics
    // SQLite would rather scan the days.
    q.push(" WHERE s.tenant = ")
        .push_bind(tenant.to_owned())
        .push(" AND s.date BETWEEN ")
        .push_bind(query.days.from)
        .push(" AND ")
        .push_bind(query.days.to);
    for (column, values) in query.filter.columns() {
        q.push(format!(" AND s.{column} IN ("));
        let mut list = q.separated(", ");
        for v in values {
            list.push_bind(v.clone());
        }
        q.push(")");
    }
}

/// Join rows `s` to their campaign-day's chosen report, and filter them.
fn push_chosen(q: &mut QueryBuilder<'_, Sqlite>, tenant: &str, query: &Aggregate<'_>) {
    q.push(
        " JOIN cells AS c ON s.platform = c.platform AND s.account_id = c.account_id
          AND s.campaign_id = c.campaign_id AND s.date = c.date AND s.report = c.report",
    );
    push_filter(q, tenant, query);
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

/// Rows per multi-row INSERT (21 binds each, well under SQLite's bind limit).
const ROWS_PER_STATEMENT: usize = 200;

/// The columns facts and deltas share, in the order [`insert`] binds them.
const ROW_COLUMNS: &str = "tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date, \
     hour, currency, impressions, clicks, spend, conversions, conversion_value, extras, \
     observed_at, pipeline, adapter, adapter_version, breakdown";

/// Insert `items` into `table` (`facts`, or `deltas` with their dedup key),
/// with the row identity of [`Item`] and `on_conflict` deciding what a
/// repeated identity does.
async fn insert(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    table: &str,
    items: &[Item<'_>],
    on_conflict: &str,
) -> Result<()> {
    let deltas = table == "deltas";
    // Deltas carry their dedup key; facts, their report key.
    let own_column = if deltas { ", dedup_key" } else { ", report" };
    let mut q =
        QueryBuilder::<Sqlite>::new(format!("INSERT INTO {table} ({ROW_COLUMNS}{own_column}) "));
    q.push_values(items, |mut b, item| {
        let row = item.row;
        b.push_bind(item.tenant)
            .push_bind(row.platform.as_str())
            .push_bind(row.account_id.as_str())
            .push_bind(item.campaign_id())
            .push_bind(item.ad_group_id())
            .push_bind(item.ad_id())
            .push_bind(row.date)
            .push_bind(item.hour())
            .push_bind(item.currency())
            .push_bind(row.impressions)
            .push_bind(row.clicks)
            .push_bind(row.spend_micros)
            .push_bind(row.conversions_micros)
            .push_bind(row.conversion_value_micros)
            .push_bind(item.extras_json())
            .push_bind(row.observed_at_us)
            .push_bind(item.pipeline)
            .push_bind(row.adapter.as_str())
            .push_bind(row.adapter_version.as_str())
            .push_bind(item.breakdown());
        if deltas {
            b.push_bind(item.dedup_key());
        } else {
            b.push_bind(item.report());
        }
    });
    q.push(on_conflict);
    q.build().execute(&mut **tx).await?;
    Ok(())
}

/// A snapshot replaces the values of its identity only when strictly newer.
const SNAPSHOT_CONFLICT: &str =
    " ON CONFLICT (tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date, hour, breakdown)
     DO UPDATE SET currency = excluded.currency, impressions = excluded.impressions,
        clicks = excluded.clicks, spend = excluded.spend, conversions = excluded.conversions,
        conversion_value = excluded.conversion_value, extras = excluded.extras,
        observed_at = excluded.observed_at, pipeline = excluded.pipeline,
        adapter = excluded.adapter, adapter_version = excluded.adapter_version,
        report = excluded.report
     WHERE excluded.observed_at > facts.observed_at";

/// A delta counts once per `(tenant, platform, dedup_key)`.
const DELTA_CONFLICT: &str = " ON CONFLICT (tenant, platform, dedup_key) DO NOTHING";
