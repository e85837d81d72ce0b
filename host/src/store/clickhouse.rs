//! The ClickHouse store (`store.kind = "clickhouse"`, `store.url =
//! "http://host:8123"`, `https://` for TLS), through the `clickhouse` crate
//! over HTTP with RowBinary. Same answers as the embedded store:
//!
//! - facts in a `ReplacingMergeTree(observed_at)` whose sorting key is the
//!   row identity, so a restated day replaces the older observation; reads
//!   use `FINAL`, so answers are exact before and after background merges;
//! - deltas in a `ReplacingMergeTree` keyed by `(tenant, platform,
//!   dedup_key)`: a delta applied twice (at-least-once delivery) counts once;
//! - the ad hierarchy in `adpipe_entities` (placing deltas is
//!   [`super::hierarchy`]'s, as for the embedded store);
//! - tables partitioned by month and ordered by tenant, campaign and date.
//!
//! The SQL keeps to what ClickHouse 18.16 (Debian's package) and current
//! releases both accept; compression and schema validation are off, as the
//! old server supports neither. Every query binds the tenant.

use std::collections::BTreeMap;

use clickhouse::{Client, Row as ChRow};
use serde::{Deserialize, Serialize};

use super::batch::{Batch, Item};
use super::hierarchy::{Entity, Known, StoredDelta};
use super::{AdapterRows, Campaign, Days, FactFilter, Result, StoreBackend, StoreError};
use crate::insights::Fact;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS adpipe_facts (
        tenant String, platform String, account_id String, campaign_id String,
        ad_group_id String, ad_id String, date Date, hour Int8, currency String,
        impressions Int64, clicks Int64, spend Int64, conversions Int64, conversion_value Int64,
        extras String, observed_at UInt64, pipeline String, adapter String, adapter_version String,
        breakdown String
    ) ENGINE = ReplacingMergeTree(observed_at)
    PARTITION BY toYYYYMM(date)
    ORDER BY (tenant, campaign_id, date, platform, account_id, ad_group_id, ad_id, hour, breakdown)",
    "CREATE TABLE IF NOT EXISTS adpipe_deltas (
        tenant String, platform String, dedup_key String, account_id String, campaign_id String,
        ad_group_id String, ad_id String, date Date, hour Int8, currency String,
        impressions Int64, clicks Int64, spend Int64, conversions Int64, conversion_value Int64,
        extras String, observed_at UInt64, pipeline String, adapter String, adapter_version String,
        breakdown String
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

/// Declares the row type of `adpipe_facts` or `adpipe_deltas`: the columns
/// both share, plus the table's own (`extra: type = |item| value`), and
/// `of`, which fills them from an [`Item`] with its row identity.
macro_rules! stored_row {
    ($name:ident { $($extra:ident: $ty:ty = $value:expr),* }) => {
        #[derive(ChRow, Serialize, Deserialize)]
        struct $name {
            tenant: String,
            platform: String,
            $($extra: $ty,)*
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
            breakdown: String,
        }

        impl $name {
            fn of(item: &Item<'_>) -> Result<$name> {
                let row = item.row;
                Ok($name {
                    tenant: item.tenant.to_owned(),
                    platform: row.platform.clone(),
                    $($extra: ($value)(item),)*
                    account_id: row.account_id.clone(),
                    campaign_id: item.campaign_id().to_owned(),
                    ad_group_id: item.ad_group_id().to_owned(),
                    ad_id: item.ad_id().to_owned(),
                    date: date_of(row.date)?,
                    hour: item.hour(),
                    currency: item.currency().to_owned(),
                    impressions: row.impressions,
                    clicks: row.clicks,
                    spend: row.spend_micros,
                    conversions: row.conversions_micros,
                    conversion_value: row.conversion_value_micros,
                    extras: item.extras_json().unwrap_or_default(),
                    observed_at: item.observed_at(),
                    pipeline: item.pipeline.to_owned(),
                    adapter: row.adapter.clone(),
                    adapter_version: row.adapter_version.clone(),
                    breakdown: item.breakdown().to_owned(),
                })
            }
        }
    };
}

stored_row!(FactRow {});
stored_row!(DeltaRow {
    dedup_key: String = |item: &Item<'_>| item.dedup_key().to_owned()
});

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
    breakdown: String,
}

fn date_of(days: i32) -> Result<u16> {
    u16::try_from(days).map_err(|_| StoreError::DayOutOfRange(days))
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

/// Handle to the ClickHouse store; cheap to clone.
#[derive(Clone)]
pub struct ClickHouseStore {
    client: Client,
    /// `url|database`, naming the data for shared caches.
    scope: String,
}

impl ClickHouseStore {
    /// Connect to `url` and create the tables if missing.
    pub async fn open(url: &str, database: Option<&str>) -> Result<ClickHouseStore> {
        let plain = || {
            Client::default()
                .with_url(url)
                .with_validation(false)
                .with_compression(clickhouse::Compression::None)
        };
        // Feature detection: LZ4-compressed HTTP exchanges where the server
        // supports them (not 18.16, Debian's package).
        let version: String = plain().query("SELECT version()").fetch_one().await?;
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
                .await?;
            client = client.with_database(db);
        }
        for statement in SCHEMA {
            client.query(statement).execute().await?;
        }
        add_breakdown_column(&client).await?;
        Ok(ClickHouseStore {
            client,
            scope: format!("clickhouse|{url}|{}", database.unwrap_or("")),
        })
    }
}

/// Tables made before breakdown keys get the column, in the facts' sorting
/// key too (a column added in the same ALTER may extend it; 18.16 accepts it
/// when the column has no default expression).
async fn add_breakdown_column(client: &Client) -> Result<()> {
    let missing: Vec<String> = client
        .query(
            "SELECT name FROM system.tables WHERE database = currentDatabase()
               AND name IN ('adpipe_facts', 'adpipe_deltas')
               AND name NOT IN (SELECT table FROM system.columns
                                WHERE database = currentDatabase() AND name = 'breakdown')",
        )
        .fetch_all()
        .await?;
    for table in missing {
        tracing::info!(%table, "store: adding breakdown keys");
        let statement = if table == "adpipe_facts" {
            "ALTER TABLE adpipe_facts ADD COLUMN breakdown String, MODIFY ORDER BY              (tenant, campaign_id, date, platform, account_id, ad_group_id, ad_id, hour, breakdown)"
        } else {
            "ALTER TABLE adpipe_deltas ADD COLUMN breakdown String"
        };
        client.query(statement).execute().await?;
    }
    Ok(())
}

impl ClickHouseStore {
    async fn insert<T>(&self, table: &str, rows: &[T]) -> Result<()>
    where
        for<'a> T: ChRow<Value<'a> = T> + Serialize,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert::<T>(table).await?;
        for row in rows {
            insert.write(row).await?;
        }
        Ok(insert.end().await?)
    }
}

impl FactRead {
    /// The columns every read shares; platform, account, campaign and
    /// currency are set by the caller (deltas may lack them).
    fn into_fact(self) -> Fact {
        Fact {
            platform: self.platform,
            account_id: self.account_id,
            campaign_id: self.campaign_id,
            ad_group_id: non_empty(self.ad_group_id),
            ad_id: non_empty(self.ad_id),
            date: i32::from(self.date),
            hour: u8::try_from(self.hour).ok(),
            currency: self.currency,
            impressions: self.impressions,
            clicks: self.clicks,
            spend_micros: self.spend,
            conversions_micros: self.conversions,
            conversion_value_micros: self.conversion_value,
            extras: extras_of(&self.extras),
            breakdown: self.breakdown,
        }
    }
}

/// Columns of a fact or delta as read back.
const READ_COLUMNS: &str = "platform, account_id, campaign_id, ad_group_id, ad_id, date, hour, \
     currency, impressions, clicks, spend, conversions, conversion_value, extras, breakdown";

#[async_trait::async_trait]
impl StoreBackend for ClickHouseStore {
    /// One batched insert per table, then the position. A crash in between
    /// replays the batch, which the replacing tables absorb.
    async fn write(&self, batch: &Batch<'_>) -> Result<()> {
        let facts = batch
            .snapshots
            .iter()
            .map(FactRow::of)
            .collect::<Result<Vec<_>, _>>()?;
        let deltas = batch
            .deltas
            .iter()
            .map(DeltaRow::of)
            .collect::<Result<Vec<_>, _>>()?;
        self.insert("adpipe_facts", &facts).await?;
        self.insert("adpipe_deltas", &deltas).await?;
        let entity_rows: Vec<EntityRow> = batch
            .entities
            .iter()
            .map(|((tenant, platform, level, id), e)| EntityRow {
                tenant: tenant.clone(),
                platform: platform.clone(),
                level: (*level).to_owned(),
                id: id.clone(),
                account_id: e.account_id.clone(),
                campaign_id: e.campaign_id.clone(),
                ad_group_id: e.ad_group_id.clone().unwrap_or_default(),
                campaign_name: e.name.clone().unwrap_or_default(),
                currency: e.currency.clone(),
                version: batch.newest_observed_at,
            })
            .collect();
        self.insert("adpipe_entities", &entity_rows).await?;
        let name_rows: Vec<NameRow> = batch
            .extra_metrics
            .iter()
            .map(|(tenant, name)| NameRow {
                tenant: (*tenant).to_owned(),
                name: (*name).to_owned(),
            })
            .collect();
        self.insert("adpipe_extra_metrics", &name_rows).await?;
        if let Some(through) = batch.through {
            self.insert(
                "adpipe_offsets",
                &[OffsetRow {
                    consumer: CONSUMER.into(),
                    offset: through,
                }],
            )
            .await?;
        }
        Ok(())
    }

    async fn stored_position(&self) -> Result<u64> {
        Ok(self
            .client
            .query("SELECT max(offset) FROM adpipe_offsets WHERE consumer = ?")
            .bind(CONSUMER)
            .fetch_one()
            .await?)
    }

    async fn snapshots(&self, tenant: &str, days: Days, filter: &FactFilter) -> Result<Vec<Fact>> {
        let mut sql = format!(
            "SELECT {READ_COLUMNS} FROM adpipe_facts FINAL
             WHERE tenant = ? AND date >= toDate(?) AND date <= toDate(?)"
        );
        for (column, _) in filter.columns() {
            sql.push_str(&format!(" AND has(?, {column})"));
        }
        let mut query = self
            .client
            .query(&sql)
            .bind(tenant)
            .bind(day_text(days.from))
            .bind(day_text(days.to));
        for (_, values) in filter.columns() {
            query = query.bind(values);
        }
        let rows: Vec<FactRead> = query.fetch_all().await?;
        Ok(rows.into_iter().map(FactRead::into_fact).collect())
    }

    async fn stored_deltas(&self, tenant: &str, days: Days) -> Result<Vec<StoredDelta>> {
        let rows: Vec<FactRead> = self
            .client
            .query(&format!(
                "SELECT {READ_COLUMNS} FROM adpipe_deltas FINAL
                 WHERE tenant = ? AND date >= toDate(?) AND date <= toDate(?)"
            ))
            .bind(tenant)
            .bind(day_text(days.from))
            .bind(day_text(days.to))
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredDelta {
                account_id: non_empty(r.account_id.clone()),
                campaign_id: non_empty(r.campaign_id.clone()),
                currency: non_empty(r.currency.clone()),
                fact: r.into_fact(),
            })
            .collect())
    }

    async fn known(&self, tenant: &str, level: &str, ids: &[String]) -> Result<Vec<Known>> {
        let rows: Vec<EntityRow> = self
            .client
            .query(
                "SELECT tenant, platform, level, id, account_id, campaign_id, ad_group_id,
                        campaign_name, currency, version
                 FROM adpipe_entities FINAL WHERE tenant = ? AND level = ? AND has(?, id)",
            )
            .bind(tenant)
            .bind(level)
            .bind(ids)
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(|e| Known {
                platform: e.platform,
                level: e.level,
                id: e.id,
                entity: Entity {
                    account_id: e.account_id,
                    campaign_id: e.campaign_id,
                    ad_group_id: non_empty(e.ad_group_id),
                    name: None,
                    currency: e.currency,
                },
            })
            .collect())
    }

    async fn extra_metric_names(&self, tenant: &str) -> Result<Vec<String>> {
        Ok(self
            .client
            .query("SELECT DISTINCT name FROM adpipe_extra_metrics WHERE tenant = ? ORDER BY name")
            .bind(tenant)
            .fetch_all::<String>()
            .await?)
    }

    async fn campaigns(&self, tenant: &str) -> Result<Vec<Campaign>> {
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
            .await?;
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

    async fn adapter_versions(&self, tenant: &str) -> Result<Vec<AdapterRows>> {
        #[derive(ChRow, Deserialize)]
        struct VersionRead {
            adapter: String,
            adapter_version: String,
            rows: u64,
        }
        let rows: Vec<VersionRead> = self
            .client
            .query(
                "SELECT adapter, adapter_version, sum(n) AS rows FROM (
                    SELECT adapter, adapter_version, count() AS n FROM adpipe_facts FINAL
                    WHERE tenant = ? GROUP BY adapter, adapter_version
                    UNION ALL
                    SELECT adapter, adapter_version, count() AS n FROM adpipe_deltas FINAL
                    WHERE tenant = ? GROUP BY adapter, adapter_version
                 ) GROUP BY adapter, adapter_version ORDER BY adapter, adapter_version",
            )
            .bind(tenant)
            .bind(tenant)
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| AdapterRows {
                adapter: r.adapter,
                version: r.adapter_version,
                rows: i64::try_from(r.rows).unwrap_or(i64::MAX),
            })
            .collect())
    }

    async fn ping(&self) -> Result<()> {
        self.client.query("SELECT 1").fetch_one::<u8>().await?;
        Ok(())
    }

    fn scope(&self) -> String {
        self.scope.clone()
    }
}
