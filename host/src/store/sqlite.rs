//! The embedded store: aggregated facts in `<data_dir>/store.db` (SQLite).
//!
//! Exactly-once in effect (DESIGN.md §2):
//! - snapshots upsert per entity and bucket, replacing only when the new
//!   `observed_at` is strictly newer;
//! - deltas insert once per `(tenant, platform, dedup_key)`;
//! - the ad hierarchy (ad → ad group → campaign → account, currency) learned
//!   from snapshots resolves deltas that only name an ad, at query time, so a
//!   lead that arrives before its ad is known shows up once it is;
//! - the bus offset a batch came from is written in the same transaction, so a
//!   crash between apply and commit replays the batch, harmlessly.
//!
//! Every query binds the tenant: scoping lives in the query layer.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Row as _, Sqlite};
use tokio::sync::watch;

use super::{collect_hierarchy, Campaign, Entity, EntityKey, FactFilter, StoreError};
use crate::insights::Fact;
use crate::row::{Row, RowEnvelope, RowKind};

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
        PRIMARY KEY (tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date, hour)
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
    applied: watch::Sender<u64>,
}

impl EmbeddedStore {
    /// Open (or create) the store at `path`.
    pub async fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        let pool = crate::sqlite::open_file(path).await?;
        for statement in SCHEMA {
            sqlx::query(statement).execute(&pool).await?;
        }
        let offset: Option<i64> =
            sqlx::query("SELECT offset FROM consumer_offsets WHERE consumer = ?")
                .bind(CONSUMER)
                .fetch_optional(&pool)
                .await?
                .map(|r| r.get(0));
        let (applied, _) = watch::channel(offset.unwrap_or(0) as u64);
        Ok(EmbeddedStore { pool, applied })
    }

    /// Bus offset of the last applied record.
    pub fn applied_offset(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Wait until records through `offset` are applied, at most `timeout`; true if they are.
    pub async fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|&a| a >= offset))
            .await
            .is_ok();
        reached
    }

    /// Apply records (bus offset, rows) in one transaction that also records the offset.
    pub async fn apply(&self, records: &[(u64, RowEnvelope)]) -> Result<(), StoreError> {
        let Some(last) = records.last().map(|r| r.0) else {
            return Ok(());
        };
        let mut tx = self.pool.begin().await?;
        // Hierarchy facts repeat across rows (every ad row names its campaign): upsert each once.
        let mut entities: BTreeMap<EntityKey, Entity> = BTreeMap::new();
        let mut extra_names: BTreeMap<(String, String), ()> = BTreeMap::new();
        let mut snapshots: Vec<(&str, &str, &Row)> = Vec::new();
        let mut deltas: Vec<(&str, &str, &Row)> = Vec::new();
        for (_, envelope) in records {
            for row in &envelope.rows {
                let item = (envelope.tenant.as_str(), envelope.pipeline.as_str(), row);
                match row.kind {
                    RowKind::Snapshot if row.campaign_id.is_some() && row.currency.is_some() => {
                        snapshots.push(item);
                        collect_hierarchy(&mut entities, &envelope.tenant, row);
                    }
                    RowKind::Delta if row.dedup_key.is_some() => deltas.push(item),
                    // The ingest path guarantees these fields; say so loudly if not.
                    _ => {
                        tracing::error!(tenant = %envelope.tenant, pipeline = %envelope.pipeline, "incomplete row skipped")
                    }
                }
                for name in row.extras.keys() {
                    extra_names.insert((envelope.tenant.clone(), name.clone()), ());
                }
            }
        }
        // Multi-row statements: SQLite applies VALUES rows in order, so a key
        // repeated within one statement still obeys the observed_at rule.
        for chunk in snapshots.chunks(ROWS_PER_STATEMENT) {
            upsert_snapshots(&mut tx, chunk).await?;
        }
        for chunk in deltas.chunks(ROWS_PER_STATEMENT) {
            insert_deltas(&mut tx, chunk).await?;
        }
        for ((tenant, platform, level, id), entity) in &entities {
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
            .bind(&entity.campaign_name)
            .bind(&entity.currency)
            .execute(&mut *tx)
            .await?;
        }
        for (tenant, name) in extra_names.keys() {
            sqlx::query("INSERT OR IGNORE INTO extra_metrics (tenant, name) VALUES (?, ?)")
                .bind(tenant)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO consumer_offsets (consumer, offset) VALUES (?, ?)
             ON CONFLICT (consumer) DO UPDATE SET offset = MAX(offset, excluded.offset)",
        )
        .bind(CONSUMER)
        .bind(last as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.applied.send_modify(|a| *a = (*a).max(last));
        Ok(())
    }

    /// Snapshot facts of `tenant` in `[from, to]` (day numbers) matching `filter`.
    pub async fn snapshots(
        &self,
        tenant: &str,
        from: i32,
        to: i32,
        filter: &FactFilter,
    ) -> Result<Vec<Fact>, StoreError> {
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
                    impressions, clicks, spend, conversions, conversion_value, extras
             FROM facts {index} WHERE tenant = "
        ));
        q.push_bind(tenant)
            .push(" AND date BETWEEN ")
            .push_bind(from)
            .push(" AND ")
            .push_bind(to);
        push_filters(&mut q, filter);
        let rows = q.build().fetch_all(&self.pool).await?;
        Ok(rows.iter().map(fact_from_row).collect())
    }

    /// Deltas of `tenant` in `[from, to]`, with campaign, account and currency
    /// resolved through the ad hierarchy; deltas it cannot place yet are left out.
    pub async fn deltas(
        &self,
        tenant: &str,
        from: i32,
        to: i32,
        filter: &FactFilter,
    ) -> Result<Vec<Fact>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT platform, account_id, campaign_id, ad_group_id, ad_id, date, hour, currency,
                    impressions, clicks, spend, conversions, conversion_value, extras
             FROM (SELECT d.platform AS platform,
                     COALESCE(NULLIF(d.account_id, ''), ad.account_id, ag.account_id) AS account_id,
                     COALESCE(d.campaign_id, ad.campaign_id, ag.campaign_id) AS campaign_id,
                     COALESCE(d.ad_group_id, ad.ad_group_id) AS ad_group_id,
                     d.ad_id AS ad_id, d.date AS date, d.hour AS hour,
                     COALESCE(d.currency, ad.currency, ag.currency) AS currency,
                     d.impressions AS impressions, d.clicks AS clicks, d.spend AS spend,
                     d.conversions AS conversions, d.conversion_value AS conversion_value, d.extras AS extras
                   FROM deltas d
                   LEFT JOIN entities ad ON ad.tenant = d.tenant AND ad.platform = d.platform
                        AND ad.level = 'ad' AND ad.id = d.ad_id
                   LEFT JOIN entities ag ON ag.tenant = d.tenant AND ag.platform = d.platform
                        AND ag.level = 'ad_group' AND ag.id = COALESCE(d.ad_group_id, ad.ad_group_id)
                   WHERE d.tenant = ",
        );
        q.push_bind(tenant)
            .push(" AND d.date BETWEEN ")
            .push_bind(from)
            .push(" AND ")
            .push_bind(to);
        q.push(
            ") WHERE campaign_id IS NOT NULL AND currency IS NOT NULL AND account_id IS NOT NULL",
        );
        push_filters(&mut q, filter);
        let rows = q.build().fetch_all(&self.pool).await?;
        Ok(rows.iter().map(fact_from_row).collect())
    }

    /// Extra metric names seen for `tenant`.
    pub async fn extra_metric_names(&self, tenant: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT name FROM extra_metrics WHERE tenant = ? ORDER BY name")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Campaigns of `tenant`.
    pub async fn campaigns(&self, tenant: &str) -> Result<Vec<Campaign>, StoreError> {
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

    /// Stored rows of `tenant` per producing adapter and version.
    pub async fn adapter_versions(
        &self,
        tenant: &str,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
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
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// The database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

fn push_filters(q: &mut QueryBuilder<'_, Sqlite>, filter: &FactFilter) {
    for (column, values) in [
        ("platform", &filter.platforms),
        ("account_id", &filter.account_ids),
        ("campaign_id", &filter.campaign_ids),
    ] {
        if let Some(values) = values {
            q.push(format!(" AND {column} IN ("));
            let mut list = q.separated(", ");
            for v in values {
                list.push_bind(v.clone());
            }
            q.push(")");
        }
    }
}

fn fact_from_row(r: &sqlx::sqlite::SqliteRow) -> Fact {
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let hour: i64 = r.get(6);
    let extras: Option<String> = r.get(13);
    Fact {
        platform: r.get(0),
        account_id: r.get(1),
        campaign_id: r.get(2),
        ad_group_id: non_empty(r.get(3)),
        ad_id: non_empty(r.get(4)),
        date: r.get(5),
        hour: u8::try_from(hour).ok(),
        currency: r.get(7),
        impressions: r.get(8),
        clicks: r.get(9),
        spend_micros: r.get(10),
        conversions_micros: r.get(11),
        conversion_value_micros: r.get(12),
        extras: extras
            .and_then(|e| serde_json::from_str::<BTreeMap<String, i64>>(&e).ok())
            .unwrap_or_default(),
    }
}

/// Rows per multi-row INSERT (20 binds each, well under SQLite's bind limit).
const ROWS_PER_STATEMENT: usize = 200;

fn extras_json(row: &Row) -> Option<String> {
    if row.extras.is_empty() {
        None
    } else {
        serde_json::to_string(&row.extras).ok()
    }
}

async fn upsert_snapshots(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    rows: &[(&str, &str, &Row)],
) -> Result<(), StoreError> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO facts (tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date, hour,
            currency, impressions, clicks, spend, conversions, conversion_value, extras, observed_at,
            pipeline, adapter, adapter_version) ",
    );
    q.push_values(rows, |mut b, (tenant, pipeline, row)| {
        b.push_bind(*tenant)
            .push_bind(row.platform.as_str())
            .push_bind(row.account_id.as_str())
            .push_bind(row.campaign_id.as_deref().unwrap_or(""))
            .push_bind(row.ad_group_id.as_deref().unwrap_or(""))
            .push_bind(row.ad_id.as_deref().unwrap_or(""))
            .push_bind(row.date)
            .push_bind(row.hour.map(i64::from).unwrap_or(-1))
            .push_bind(row.currency.as_deref().unwrap_or(""))
            .push_bind(row.impressions)
            .push_bind(row.clicks)
            .push_bind(row.spend_micros)
            .push_bind(row.conversions_micros)
            .push_bind(row.conversion_value_micros)
            .push_bind(extras_json(row))
            .push_bind(row.observed_at_us)
            .push_bind(*pipeline)
            .push_bind(row.adapter.as_str())
            .push_bind(row.adapter_version.as_str());
    });
    q.push(
        " ON CONFLICT (tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date, hour)
         DO UPDATE SET currency = excluded.currency, impressions = excluded.impressions,
            clicks = excluded.clicks, spend = excluded.spend, conversions = excluded.conversions,
            conversion_value = excluded.conversion_value, extras = excluded.extras,
            observed_at = excluded.observed_at, pipeline = excluded.pipeline,
            adapter = excluded.adapter, adapter_version = excluded.adapter_version
         WHERE excluded.observed_at > facts.observed_at",
    );
    q.build().execute(&mut **tx).await?;
    Ok(())
}

async fn insert_deltas(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    rows: &[(&str, &str, &Row)],
) -> Result<(), StoreError> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO deltas (tenant, platform, dedup_key, account_id, campaign_id, ad_group_id, ad_id,
            date, hour, currency, impressions, clicks, spend, conversions, conversion_value, extras,
            observed_at, pipeline, adapter, adapter_version) ",
    );
    q.push_values(rows, |mut b, (tenant, pipeline, row)| {
        b.push_bind(*tenant)
            .push_bind(row.platform.as_str())
            .push_bind(row.dedup_key.as_deref().unwrap_or(""))
            .push_bind(row.account_id.as_str())
            .push_bind(row.campaign_id.as_deref())
            .push_bind(row.ad_group_id.as_deref())
            .push_bind(row.ad_id.as_deref())
            .push_bind(row.date)
            .push_bind(row.hour.map(i64::from).unwrap_or(-1))
            .push_bind(row.currency.as_deref())
            .push_bind(row.impressions)
            .push_bind(row.clicks)
            .push_bind(row.spend_micros)
            .push_bind(row.conversions_micros)
            .push_bind(row.conversion_value_micros)
            .push_bind(extras_json(row))
            .push_bind(row.observed_at_us)
            .push_bind(*pipeline)
            .push_bind(row.adapter.as_str())
            .push_bind(row.adapter_version.as_str());
    });
    q.push(" ON CONFLICT (tenant, platform, dedup_key) DO NOTHING");
    q.build().execute(&mut **tx).await?;
    Ok(())
}
