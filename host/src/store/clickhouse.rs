//! The ClickHouse store (`store.kind = "clickhouse"`, `store.url =
//! "http://host:8123"`, `https://` for TLS), through the `clickhouse` crate
//! over HTTP with RowBinary. Same answers as the embedded store:
//!
//! - facts in a `ReplacingMergeTree(observed_at)` whose sorting key is the
//!   row identity, so a restated day replaces the older observation; reads
//!   use `FINAL`, so answers are exact before and after background merges;
//! - deltas in a `ReplacingMergeTree` keyed by `(tenant, platform,
//!   dedup_key)`: a delta applied twice (at-least-once delivery) counts once;
//! - the ad hierarchy in `adpipe_entities`, resolved for deltas at read time;
//! - tables partitioned by month and ordered by tenant, campaign and date.
//!
//! The SQL keeps to what ClickHouse 18.16 (Debian's package) and current
//! releases both accept; compression and schema validation are off, as the
//! old server supports neither. Every query binds the tenant.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use clickhouse::{Client, Row as ChRow};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{collect_hierarchy, Campaign, Entity, EntityKey, FactFilter, StoreError};
use crate::insights::Fact;
use crate::row::{RowEnvelope, RowKind};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS adpipe_facts (
        tenant String, platform String, account_id String, campaign_id String,
        ad_group_id String, ad_id String, date Date, hour Int8, currency String,
        impressions Int64, clicks Int64, spend Int64, conversions Int64, conversion_value Int64,
        extras String, observed_at UInt64, pipeline String, adapter String, adapter_version String
    ) ENGINE = ReplacingMergeTree(observed_at)
    PARTITION BY toYYYYMM(date)
    ORDER BY (tenant, campaign_id, date, platform, account_id, ad_group_id, ad_id, hour)",
    "CREATE TABLE IF NOT EXISTS adpipe_deltas (
        tenant String, platform String, dedup_key String, account_id String, campaign_id String,
        ad_group_id String, ad_id String, date Date, hour Int8, currency String,
        impressions Int64, clicks Int64, spend Int64, conversions Int64, conversion_value Int64,
        extras String, observed_at UInt64, pipeline String, adapter String, adapter_version String
    ) ENGINE = ReplacingMergeTree()
    PARTITION BY toYYYYMM(date)
    ORDER BY (tenant, platform, dedup_key)",
    "CREATE TABLE IF NOT EXISTS adpipe_entities (
        tenant String, platform String, level String, id String, account_id String,
        campaign_id String, ad_group_id String, campaign_name String, currency String,
        version UInt64
    ) ENGINE = ReplacingMergeTree(version)
    ORDER BY (tenant, platform, level, id)",
    "CREATE TABLE IF NOT EXISTS adpipe_extra_metrics (tenant String, name String)
    ENGINE = ReplacingMergeTree() ORDER BY (tenant, name)",
    "CREATE TABLE IF NOT EXISTS adpipe_offsets (consumer String, offset UInt64)
    ENGINE = ReplacingMergeTree(offset) ORDER BY consumer",
];

const CONSUMER: &str = "aggregator";

#[derive(ChRow, Serialize, Deserialize)]
struct FactRow {
    tenant: String,
    platform: String,
    account_id: String,
    campaign_id: String,
    ad_group_id: String,
    ad_id: String,
    /// Days since 1970-01-01 (ClickHouse `Date`).
    date: u16,
    hour: i8,
    currency: String,
    impressions: i64,
    clicks: i64,
    spend: i64,
    conversions: i64,
    conversion_value: i64,
    extras: String,
    observed_at: u64,
    pipeline: String,
    adapter: String,
    adapter_version: String,
}

#[derive(ChRow, Serialize, Deserialize)]
struct DeltaRow {
    tenant: String,
    platform: String,
    dedup_key: String,
    account_id: String,
    campaign_id: String,
    ad_group_id: String,
    ad_id: String,
    date: u16,
    hour: i8,
    currency: String,
    impressions: i64,
    clicks: i64,
    spend: i64,
    conversions: i64,
    conversion_value: i64,
    extras: String,
    observed_at: u64,
    pipeline: String,
    adapter: String,
    adapter_version: String,
}

#[derive(ChRow, Serialize, Deserialize)]
struct EntityRow {
    tenant: String,
    platform: String,
    level: String,
    id: String,
    account_id: String,
    campaign_id: String,
    ad_group_id: String,
    campaign_name: String,
    currency: String,
    version: u64,
}

#[derive(ChRow, Serialize, Deserialize)]
struct NameRow {
    tenant: String,
    name: String,
}

#[derive(ChRow, Serialize, Deserialize)]
struct OffsetRow {
    consumer: String,
    offset: u64,
}

/// Columns of a fact as read back.
#[derive(ChRow, Deserialize)]
struct FactRead {
    platform: String,
    account_id: String,
    campaign_id: String,
    ad_group_id: String,
    ad_id: String,
    date: u16,
    hour: i8,
    currency: String,
    impressions: i64,
    clicks: i64,
    spend: i64,
    conversions: i64,
    conversion_value: i64,
    extras: String,
}

fn date_of(days: i32) -> Result<u16, StoreError> {
    u16::try_from(days).map_err(|_| {
        StoreError::Engine(format!(
            "day {days} is outside ClickHouse's Date range (1970..2149)"
        ))
    })
}

fn day_text(days: i32) -> String {
    chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163)
        .map(|d| d.to_string())
        .unwrap_or_else(|| "1970-01-01".into())
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn extras_of(text: &str) -> BTreeMap<String, i64> {
    if text.is_empty() {
        BTreeMap::new()
    } else {
        serde_json::from_str(text).unwrap_or_default()
    }
}

fn engine(e: clickhouse::error::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

/// Handle to the ClickHouse store; cheap to clone.
#[derive(Clone)]
pub struct ClickHouseStore {
    client: Client,
    applied: watch::Sender<u64>,
}

impl ClickHouseStore {
    /// Connect to `url`, create the tables if missing, read the applied offset.
    pub async fn open(url: &str, database: Option<&str>) -> Result<ClickHouseStore, StoreError> {
        let plain = || {
            Client::default()
                .with_url(url)
                .with_validation(false)
                .with_compression(clickhouse::Compression::None)
        };
        // Feature detection: LZ4-compressed HTTP exchanges where the server
        // supports them (not 18.16, Debian's package).
        let version: String = plain()
            .query("SELECT version()")
            .fetch_one()
            .await
            .map_err(engine)?;
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let compression = if major >= 20 {
            clickhouse::Compression::Lz4
        } else {
            clickhouse::Compression::None
        };
        tracing::info!(%version, ?compression, "ClickHouse store");
        let mut client = plain().with_compression(compression);
        if let Some(db) = database {
            plain()
                .query(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
                .execute()
                .await
                .map_err(engine)?;
            client = client.with_database(db);
        }
        for statement in SCHEMA {
            client.query(statement).execute().await.map_err(engine)?;
        }
        let offset: u64 = client
            .query("SELECT max(offset) FROM adpipe_offsets WHERE consumer = ?")
            .bind(CONSUMER)
            .fetch_one()
            .await
            .map_err(engine)?;
        let (applied, _) = watch::channel(offset);
        Ok(ClickHouseStore { client, applied })
    }

    pub fn applied_offset(&self) -> u64 {
        *self.applied.borrow()
    }

    pub async fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|&a| a >= offset))
            .await
            .is_ok();
        reached
    }

    /// Apply records (bus offset, rows): one batched insert per table, then
    /// the offset. A crash in between replays the batch, which the
    /// replacing tables absorb.
    pub async fn apply(&self, records: &[(u64, RowEnvelope)]) -> Result<(), StoreError> {
        let Some(last) = records.last().map(|r| r.0) else {
            return Ok(());
        };
        let mut entities: BTreeMap<EntityKey, Entity> = BTreeMap::new();
        let mut names: BTreeMap<(String, String), ()> = BTreeMap::new();
        let mut facts = Vec::new();
        let mut deltas = Vec::new();
        let mut version = 0u64;
        for (_, envelope) in records {
            for row in &envelope.rows {
                version = version.max(row.observed_at_us.max(0) as u64);
                let extras = if row.extras.is_empty() {
                    String::new()
                } else {
                    serde_json::to_string(&row.extras).unwrap_or_default()
                };
                match row.kind {
                    RowKind::Snapshot if row.campaign_id.is_some() && row.currency.is_some() => {
                        collect_hierarchy(&mut entities, &envelope.tenant, row);
                        facts.push(FactRow {
                            tenant: envelope.tenant.clone(),
                            platform: row.platform.clone(),
                            account_id: row.account_id.clone(),
                            campaign_id: row.campaign_id.clone().unwrap_or_default(),
                            ad_group_id: row.ad_group_id.clone().unwrap_or_default(),
                            ad_id: row.ad_id.clone().unwrap_or_default(),
                            date: date_of(row.date)?,
                            hour: row.hour.map(|h| h as i8).unwrap_or(-1),
                            currency: row.currency.clone().unwrap_or_default(),
                            impressions: row.impressions,
                            clicks: row.clicks,
                            spend: row.spend_micros,
                            conversions: row.conversions_micros,
                            conversion_value: row.conversion_value_micros,
                            extras,
                            observed_at: row.observed_at_us.max(0) as u64,
                            pipeline: envelope.pipeline.clone(),
                            adapter: row.adapter.clone(),
                            adapter_version: row.adapter_version.clone(),
                        });
                    }
                    RowKind::Delta if row.dedup_key.is_some() => deltas.push(DeltaRow {
                        tenant: envelope.tenant.clone(),
                        platform: row.platform.clone(),
                        dedup_key: row.dedup_key.clone().unwrap_or_default(),
                        account_id: row.account_id.clone(),
                        campaign_id: row.campaign_id.clone().unwrap_or_default(),
                        ad_group_id: row.ad_group_id.clone().unwrap_or_default(),
                        ad_id: row.ad_id.clone().unwrap_or_default(),
                        date: date_of(row.date)?,
                        hour: row.hour.map(|h| h as i8).unwrap_or(-1),
                        currency: row.currency.clone().unwrap_or_default(),
                        impressions: row.impressions,
                        clicks: row.clicks,
                        spend: row.spend_micros,
                        conversions: row.conversions_micros,
                        conversion_value: row.conversion_value_micros,
                        extras,
                        observed_at: row.observed_at_us.max(0) as u64,
                        pipeline: envelope.pipeline.clone(),
                        adapter: row.adapter.clone(),
                        adapter_version: row.adapter_version.clone(),
                    }),
                    _ => {
                        tracing::error!(tenant = %envelope.tenant, pipeline = %envelope.pipeline, "incomplete row skipped")
                    }
                }
                for name in row.extras.keys() {
                    names.insert((envelope.tenant.clone(), name.clone()), ());
                }
            }
        }
        self.insert("adpipe_facts", &facts).await?;
        self.insert("adpipe_deltas", &deltas).await?;
        let entity_rows: Vec<EntityRow> = entities
            .into_iter()
            .map(|((tenant, platform, level, id), e)| EntityRow {
                tenant,
                platform,
                level: level.to_owned(),
                id,
                account_id: e.account_id,
                campaign_id: e.campaign_id,
                ad_group_id: e.ad_group_id.unwrap_or_default(),
                campaign_name: e.campaign_name.unwrap_or_default(),
                currency: e.currency,
                version,
            })
            .collect();
        self.insert("adpipe_entities", &entity_rows).await?;
        let name_rows: Vec<NameRow> = names
            .into_keys()
            .map(|(tenant, name)| NameRow { tenant, name })
            .collect();
        self.insert("adpipe_extra_metrics", &name_rows).await?;
        if last == 0 {
            // Kafka mode: positions are the consumer group's committed offsets.
            return Ok(());
        }
        self.insert(
            "adpipe_offsets",
            &[OffsetRow {
                consumer: CONSUMER.into(),
                offset: last,
            }],
        )
        .await?;
        self.applied.send_modify(|a| *a = (*a).max(last));
        Ok(())
    }

    async fn insert<T>(&self, table: &str, rows: &[T]) -> Result<(), StoreError>
    where
        for<'a> T: ChRow<Value<'a> = T> + Serialize,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert::<T>(table).await.map_err(engine)?;
        for row in rows {
            insert.write(row).await.map_err(engine)?;
        }
        insert.end().await.map_err(engine)
    }

    fn filtered(sql: &str, filter: &FactFilter) -> String {
        let mut sql = sql.to_owned();
        for (column, values) in [
            ("platform", &filter.platforms),
            ("account_id", &filter.account_ids),
            ("campaign_id", &filter.campaign_ids),
        ] {
            if values.is_some() {
                sql.push_str(&format!(" AND has(?, {column})"));
            }
        }
        sql
    }

    fn bind_filters(
        mut query: clickhouse::query::Query,
        filter: &FactFilter,
    ) -> clickhouse::query::Query {
        for values in [&filter.platforms, &filter.account_ids, &filter.campaign_ids]
            .into_iter()
            .flatten()
        {
            query = query.bind(values.as_slice());
        }
        query
    }

    /// Snapshot facts of `tenant` in `[from, to]` matching `filter`.
    pub async fn snapshots(
        &self,
        tenant: &str,
        from: i32,
        to: i32,
        filter: &FactFilter,
    ) -> Result<Vec<Fact>, StoreError> {
        let sql = Self::filtered(
            "SELECT platform, account_id, campaign_id, ad_group_id, ad_id, date, hour, currency,
                    impressions, clicks, spend, conversions, conversion_value, extras
             FROM adpipe_facts FINAL
             WHERE tenant = ? AND date >= toDate(?) AND date <= toDate(?)",
            filter,
        );
        let query = self
            .client
            .query(&sql)
            .bind(tenant)
            .bind(day_text(from))
            .bind(day_text(to));
        let rows: Vec<FactRead> = Self::bind_filters(query, filter)
            .fetch_all()
            .await
            .map_err(engine)?;
        Ok(rows
            .into_iter()
            .map(|r| Fact {
                platform: r.platform,
                account_id: r.account_id,
                campaign_id: r.campaign_id,
                ad_group_id: non_empty(r.ad_group_id),
                ad_id: non_empty(r.ad_id),
                date: i32::from(r.date),
                hour: u8::try_from(r.hour).ok(),
                currency: r.currency,
                impressions: r.impressions,
                clicks: r.clicks,
                spend_micros: r.spend,
                conversions_micros: r.conversions,
                conversion_value_micros: r.conversion_value,
                extras: extras_of(&r.extras),
            })
            .collect())
    }

    /// Deltas of `tenant` in `[from, to]`, placed through the ad hierarchy;
    /// deltas it cannot place yet are left out (as in the embedded store).
    pub async fn deltas(
        &self,
        tenant: &str,
        from: i32,
        to: i32,
        filter: &FactFilter,
    ) -> Result<Vec<Fact>, StoreError> {
        let rows: Vec<FactRead> = self
            .client
            .query(
                "SELECT platform, account_id, campaign_id, ad_group_id, ad_id, date, hour, currency,
                        impressions, clicks, spend, conversions, conversion_value, extras
                 FROM adpipe_deltas FINAL
                 WHERE tenant = ? AND date >= toDate(?) AND date <= toDate(?)",
            )
            .bind(tenant)
            .bind(day_text(from))
            .bind(day_text(to))
            .fetch_all()
            .await
            .map_err(engine)?;
        if rows.is_empty() {
            return Ok(vec![]);
        }
        let entities: Vec<EntityRow> = self
            .client
            .query(
                "SELECT tenant, platform, level, id, account_id, campaign_id, ad_group_id,
                        campaign_name, currency, version
                 FROM adpipe_entities FINAL WHERE tenant = ? AND level != 'campaign'",
            )
            .bind(tenant)
            .fetch_all()
            .await
            .map_err(engine)?;
        let known: HashMap<(&str, &str, &str), &EntityRow> = entities
            .iter()
            .map(|e| ((e.platform.as_str(), e.level.as_str(), e.id.as_str()), e))
            .collect();
        let keep = |values: &Option<Vec<String>>, v: &str| {
            values
                .as_ref()
                .is_none_or(|list| list.iter().any(|x| x == v))
        };
        let mut out = Vec::new();
        for r in rows {
            let ad = known.get(&(r.platform.as_str(), "ad", r.ad_id.as_str()));
            let group_id = non_empty(r.ad_group_id.clone())
                .or_else(|| ad.and_then(|a| non_empty(a.ad_group_id.clone())));
            let group = group_id
                .as_deref()
                .and_then(|g| known.get(&(r.platform.as_str(), "ad_group", g)));
            let pick = |own: &str, f: fn(&EntityRow) -> &str| {
                non_empty(own.to_owned())
                    .or_else(|| ad.map(|a| f(a).to_owned()).and_then(non_empty))
                    .or_else(|| group.map(|g| f(g).to_owned()).and_then(non_empty))
            };
            let (Some(account_id), Some(campaign_id), Some(currency)) = (
                pick(&r.account_id, |e| &e.account_id),
                pick(&r.campaign_id, |e| &e.campaign_id),
                pick(&r.currency, |e| &e.currency),
            ) else {
                continue;
            };
            if !keep(&filter.platforms, &r.platform)
                || !keep(&filter.account_ids, &account_id)
                || !keep(&filter.campaign_ids, &campaign_id)
            {
                continue;
            }
            out.push(Fact {
                platform: r.platform,
                account_id,
                campaign_id,
                ad_group_id: group_id,
                ad_id: non_empty(r.ad_id),
                date: i32::from(r.date),
                hour: u8::try_from(r.hour).ok(),
                currency,
                impressions: r.impressions,
                clicks: r.clicks,
                spend_micros: r.spend,
                conversions_micros: r.conversions,
                conversion_value_micros: r.conversion_value,
                extras: extras_of(&r.extras),
            });
        }
        Ok(out)
    }

    /// Extra metric names seen for `tenant`.
    pub async fn extra_metric_names(&self, tenant: &str) -> Result<Vec<String>, StoreError> {
        self.client
            .query("SELECT DISTINCT name FROM adpipe_extra_metrics WHERE tenant = ? ORDER BY name")
            .bind(tenant)
            .fetch_all::<String>()
            .await
            .map_err(engine)
    }

    /// Campaigns of `tenant`.
    pub async fn campaigns(&self, tenant: &str) -> Result<Vec<Campaign>, StoreError> {
        #[derive(ChRow, Deserialize)]
        struct CampaignRead {
            platform: String,
            account_id: String,
            id: String,
            campaign_name: String,
            currency: String,
        }
        let rows: Vec<CampaignRead> = self
            .client
            .query(
                "SELECT platform, argMax(account_id, version) AS account_id, id,
                        argMaxIf(campaign_name, version, campaign_name != '') AS campaign_name,
                        argMax(currency, version) AS currency
                 FROM adpipe_entities WHERE tenant = ? AND level = 'campaign'
                 GROUP BY platform, id ORDER BY platform, account_id, id",
            )
            .bind(tenant)
            .fetch_all()
            .await
            .map_err(engine)?;
        Ok(rows
            .into_iter()
            .map(|r| Campaign {
                platform: r.platform,
                account_id: r.account_id,
                campaign_id: r.id,
                name: non_empty(r.campaign_name),
                currency: r.currency,
            })
            .collect())
    }

    /// The server answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .query("SELECT 1")
            .fetch_one::<u8>()
            .await
            .map(|_| ())
            .map_err(engine)
    }
}
