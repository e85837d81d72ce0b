//! The embedded store: aggregated facts in `<data_dir>/store.db` (SQLite).
//!
//! - snapshots upsert per identity, replacing only when the new
//!   `observed_at` is strictly newer (an `ON CONFLICT … WHERE`);
//! - deltas insert once per `(tenant, platform, dedup_key)` (`DO NOTHING`);
//! - rows, entities and the bus position are written in one transaction.

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Row as _, Sqlite};

use super::batch::{Batch, Item};
use super::hierarchy::{Entity, Known, StoredDelta};
use super::{AdapterRows, Campaign, Days, FactFilter, Result, StoreBackend};
use crate::insights::Fact;

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
        breakdown TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date, hour, breakdown)
    ) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS facts_by_campaign ON facts (tenant, campaign_id, date)",
    "CREATE INDEX IF NOT EXISTS facts_by_date ON facts (tenant, date)",
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

const CONSUMER: &str = "aggregator";

/// Handle to the embedded store; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    pool: SqlitePool,
    path: std::path::PathBuf,
}

impl EmbeddedStore {
    /// Open (or create) the store at `path`.
    pub async fn open(path: &Path) -> Result<EmbeddedStore> {
        let pool = crate::sqlite::open_file(path).await?;
        add_breakdown_column(&pool).await?;
        for statement in SCHEMA {
            sqlx::query(statement).execute(&pool).await?;
        }
        Ok(EmbeddedStore {
            pool,
            path: path.to_owned(),
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
        let columns = ROW_COLUMNS.trim_end_matches(", breakdown");
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
                "SELECT platform, level, id, account_id, campaign_id, ad_group_id, currency
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
                    name: None,
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
    let dedup_column = if deltas { ", dedup_key" } else { "" };
    let mut q = QueryBuilder::<Sqlite>::new(format!(
        "INSERT INTO {table} ({ROW_COLUMNS}{dedup_column}) "
    ));
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
        adapter = excluded.adapter, adapter_version = excluded.adapter_version
     WHERE excluded.observed_at > facts.observed_at";

/// A delta counts once per `(tenant, platform, dedup_key)`.
const DELTA_CONFLICT: &str = " ON CONFLICT (tenant, platform, dedup_key) DO NOTHING";
