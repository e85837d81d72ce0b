//! The ClickHouse store (`store.kind = "clickhouse"`, `store.url =
//! "http://host:8123"`, `https://` for TLS), through the `clickhouse` crate
//! over HTTP with RowBinary. Same answers as the embedded store:
//!
//! - facts in a `ReplacingMergeTree(observed_at)` whose sorting key is the
//!   row identity, so a restated day replaces the older observation; reads
//!   of facts take each identity's newest observation with `argMax` (exact
//!   before and after background merges, and through `Distributed` tables,
//!   where 18.16 cannot apply `FINAL`);
//! - snapshot sums per (tenant, campaign, day, report, currency) in the
//!   `SummingMergeTree` `adpipe_rollup` (extra metrics in
//!   `adpipe_rollup_extras`), read with `sum()` and no `FINAL`. The writer
//!   knows the old values: before a batch it reads the rollup of the
//!   campaign-days the batch touches and, for those holding facts, the
//!   stored observation of every identity the batch names; it keeps only
//!   strictly newer rows and writes each change as the new fact plus rollup
//!   rows that subtract the old values and add the new ones;
//! - per campaign-day and currency, the sums of its chosen report (the
//!   coarsest holding facts) in the `SummingMergeTree`
//!   `adpipe_rollup_chosen`, which campaign-grouped queries read with no
//!   choice left to make: the writer works out each touched campaign-day's
//!   chosen report before and after its changes and writes the difference
//!   (in [`write`]). Facts and all rollup rows go in *one*
//!   insert into the `Null` table `adpipe_writes`, whose materialized views
//!   route them, so a consumer killed mid-batch leaves both or neither; a
//!   redelivered batch then finds its rows already stored (not newer) and
//!   writes nothing;
//! - deltas in a `ReplacingMergeTree` keyed by `(tenant, platform,
//!   dedup_key)`: a delta applied twice (at-least-once delivery) counts once;
//! - the ad hierarchy in `adpipe_entities` (placing deltas is
//!   [`super::hierarchy`]'s, as for the embedded store);
//! - tables partitioned by month and ordered by tenant, campaign and date.
//!
//! The SQL keeps to what ClickHouse 18.16 (Debian's package) and current
//! releases both accept; compression and schema validation are off, as the
//! old server supports neither. Every query binds the tenant.

mod schema;
mod write;

use std::collections::BTreeMap;

use clickhouse::{Client, Row as ChRow};
use serde::Deserialize;

use super::batch::Batch;
use super::hierarchy::{Entity, Known, StoredDelta};
use super::{
    AdapterRows, Aggregate, Campaign, Days, FactFilter, Result, StoreBackend, StoreError, SumKey,
};
use crate::insights::{self, Dimension, Fact, Granularity, Summed, Sums};
use schema::{
    add_breakdown_column, add_chosen, add_report_column, add_rollups, shard_schema, SCHEMA,
    SHARDED_TABLES,
};

const CONSUMER: &str = "aggregator";

/// The newest observation of every fact identity that `filter` (on identity
/// columns only: tenant, platform, account, campaign, day) selects, with the
/// fact columns' names. `argMax` rather than `FINAL`: ClickHouse 18.16
/// cannot apply `FINAL` through a `Distributed` table, and the grouping is
/// exact before and after merges either way.
fn latest_facts_sql(filter: &str) -> String {
    format!(
        "(SELECT tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date, hour,
                breakdown, l_currency AS currency, l_report AS report,
                l_impressions AS impressions, l_clicks AS clicks, l_spend AS spend,
                l_conversions AS conversions, l_conversion_value AS conversion_value,
                l_extras AS extras, l_observed_at AS observed_at, l_adapter AS adapter,
                l_adapter_version AS adapter_version
         FROM (SELECT tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date, hour,
                      breakdown, argMax(currency, observed_at) AS l_currency,
                      argMax(report, observed_at) AS l_report,
                      argMax(impressions, observed_at) AS l_impressions,
                      argMax(clicks, observed_at) AS l_clicks,
                      argMax(spend, observed_at) AS l_spend,
                      argMax(conversions, observed_at) AS l_conversions,
                      argMax(conversion_value, observed_at) AS l_conversion_value,
                      argMax(extras, observed_at) AS l_extras,
                      max(observed_at) AS l_observed_at,
                      argMax(adapter, observed_at) AS l_adapter,
                      argMax(adapter_version, observed_at) AS l_adapter_version
               FROM adpipe_facts WHERE {filter}
               GROUP BY tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date,
                        hour, breakdown))"
    )
}

/// SQL text with its `?` binds in order of appearance.
#[derive(Default)]
struct Sql {
    text: String,
    binds: Vec<String>,
}

impl Sql {
    fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    fn bind(&mut self, value: impl Into<String>) -> &mut Sql {
        self.text.push('?');
        self.binds.push(value.into());
        self
    }

    /// `?, ?, …` for `values`.
    fn bind_list(&mut self, values: impl IntoIterator<Item = impl AsRef<str>>) -> &mut Sql {
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(v.as_ref());
        }
        self
    }

    /// Append `other` (text and binds).
    fn append(&mut self, other: &Sql) -> &mut Sql {
        self.text.push_str(&other.text);
        self.binds.extend(other.binds.iter().cloned());
        self
    }

    fn query(&self, client: &Client) -> clickhouse::query::Query {
        let mut query = client.query(&self.text);
        for b in &self.binds {
            query = query.bind(b.as_str());
        }
        query
    }
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

/// A ClickHouse cluster the store shards its facts and rollups across
/// (`[store] cluster` and `shards`).
#[derive(Clone, Debug)]
pub struct Sharding {
    /// The cluster's name in the servers' `remote_servers` configuration.
    pub cluster: String,
    /// Every shard's HTTP URL (the tables each holds are created there).
    pub shards: Vec<String>,
}

/// A client of the server at `url`, with compression where it supports it
/// (not 18.16, Debian's package), and its version.
async fn client_for(url: &str) -> Result<Client> {
    let plain = Client::default()
        .with_url(url)
        .with_validation(false)
        .with_compression(clickhouse::Compression::None);
    let version: String = plain.query("SELECT version()").fetch_one().await?;
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
    tracing::info!(%url, %version, ?compression, "ClickHouse server");
    Ok(plain.with_compression(compression))
}

/// `client` in `database` (created if missing).
async fn in_database(client: Client, database: Option<&str>) -> Result<Client> {
    match database {
        None => Ok(client),
        Some(db) => {
            client
                .query(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
                .execute()
                .await?;
            Ok(client.with_database(db))
        }
    }
}

impl ClickHouseStore {
    /// Connect to `url` and create the tables if missing.
    pub async fn open(url: &str, database: Option<&str>) -> Result<ClickHouseStore> {
        ClickHouseStore::open_with(url, database, None).await
    }

    /// Connect to `url`, the server that takes queries and inserts, and
    /// create the tables if missing: with `sharding`, facts and rollups are
    /// created on every shard (`<name>_local`) and reached through
    /// `Distributed` tables on `url` that shard them by campaign; the
    /// smaller tables (deltas, hierarchy, names, positions) live on `url`.
    pub async fn open_with(
        url: &str,
        database: Option<&str>,
        sharding: Option<&Sharding>,
    ) -> Result<ClickHouseStore> {
        let mut client = in_database(client_for(url).await?, database).await?;
        for statement in SCHEMA {
            client.query(statement).execute().await?;
        }
        match sharding {
            None => {
                let schema = shard_schema("");
                // Facts first, brought up to date, then what reads from them.
                client.query(&schema[0]).execute().await?;
                add_breakdown_column(&client).await?;
                add_report_column(&client).await?;
                for statement in &schema[1..] {
                    client.query(statement).execute().await?;
                }
            }
            Some(sharding) => {
                let db = database.ok_or(StoreError::ShardsNeedDatabase)?;
                let mut hosts: Vec<&str> = sharding.shards.iter().map(String::as_str).collect();
                if !hosts.contains(&url) {
                    hosts.push(url); // `AS <local>` below needs the local tables here too
                }
                for host in hosts {
                    let shard = in_database(client_for(host).await?, Some(db)).await?;
                    for statement in shard_schema("_local") {
                        shard.query(&statement).execute().await?;
                    }
                }
                for table in SHARDED_TABLES {
                    client
                        .query(&format!(
                            "CREATE TABLE IF NOT EXISTS {table} AS {table}_local
                             ENGINE = Distributed({cluster}, {db}, {table}_local, cityHash64(campaign_id))",
                            cluster = sharding.cluster
                        ))
                        .execute()
                        .await?;
                }
                // An insert returns once every shard has its rows, as the
                // consumer's commit requires.
                client = client.with_setting("insert_distributed_sync", "1");
            }
        }
        add_rollups(&client).await?;
        // The queries' `IN (SELECT … FROM adpipe_rollup)` runs on each shard
        // against its own rollups (a campaign-day lives on one shard).
        let client = client.with_setting("distributed_product_mode", "local");
        add_chosen(&client).await?;
        let shards = sharding.map_or(String::new(), |s| s.shards.join(","));
        Ok(ClickHouseStore {
            client,
            scope: format!("clickhouse|{url}|{}|{shards}", database.unwrap_or("")),
        })
    }
}
/// Insert `rows` into `table` in one exchange (owned rows, or rows that
/// borrow, such as [`write::WriteRow`]).
async fn insert_rows<T: clickhouse::RowWrite>(
    client: &Client,
    table: &str,
    rows: &[T::Value<'_>],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = client.insert::<T>(table).await?;
    for row in rows {
        insert.write(row).await?;
    }
    Ok(insert.end().await?)
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

/// Declares an aggregate answer row type: the key columns (`''` for
/// dimensions the answer does not carry; aliases differ from column names,
/// as ClickHouse aliases are visible in `WHERE`), plus its own.
macro_rules! sum_row {
    ($name:ident { $($field:ident: $ty:ty),* }) => {
        #[derive(ChRow, Deserialize)]
        struct $name {
            bucket: u16,
            d_platform: String,
            d_account_id: String,
            d_campaign_id: String,
            d_ad_group_id: String,
            d_ad_id: String,
            currency: String,
            $($field: $ty,)*
        }

        impl $name {
            /// Bucket, dimension values and currency, as [`Summed`] holds them.
            fn key(&self, granularity: Granularity, dims: &[Dimension]) -> SumKey {
                let values = dims
                    .iter()
                    .map(|d| {
                        non_empty(match d {
                            Dimension::Platform => self.d_platform.clone(),
                            Dimension::AccountId => self.d_account_id.clone(),
                            Dimension::CampaignId => self.d_campaign_id.clone(),
                            Dimension::AdGroupId => self.d_ad_group_id.clone(),
                            Dimension::AdId => self.d_ad_id.clone(),
                        })
                    })
                    .collect();
                let bucket = (granularity != Granularity::Total).then_some(i32::from(self.bucket));
                (bucket, values, self.currency.clone())
            }
        }
    };
}

sum_row!(SumRead {
    s_impressions: i64,
    s_clicks: i64,
    s_spend: i64,
    s_conversions: i64,
    s_conversion_value: i64,
    s_extras: Vec<i64>
});
sum_row!(ExtraRead {
    name: String,
    s_value: i64
});

/// The dimension aliases, all grouped by (unused ones are constant).
const GROUPED_DIMS: &str = "d_platform, d_account_id, d_campaign_id, d_ad_group_id, d_ad_id";

/// The first day of the bucket holding `date` (day 0 for `total`).
fn bucket_sql(granularity: Granularity) -> &'static str {
    match granularity {
        Granularity::Day => "date",
        Granularity::Week => "toMonday(date)",
        Granularity::Month => "toStartOfMonth(date)",
        Granularity::Total => "toDate(0)",
    }
}

/// Each dimension's column, or `''` when the answer does not carry it.
fn dims_sql(dims: &[Dimension]) -> String {
    Dimension::ALL
        .iter()
        .map(|d| {
            let column = if dims.contains(d) { d.as_str() } else { "''" };
            format!("{column} AS d_{}", d.as_str())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The tenant, days and filters of a query (`currency` too when
/// `with_currency`: it is not part of a fact's identity, so it may only
/// filter newest observations, not raw rows).
fn filter_sql(tenant: &str, days: Days, filter: &FactFilter, with_currency: bool) -> Sql {
    let mut sql = Sql::default();
    sql.push("tenant = ")
        .bind(tenant)
        .push(" AND date >= toDate(")
        .bind(day_text(days.from))
        .push(") AND date <= toDate(")
        .bind(day_text(days.to))
        .push(")");
    for (column, values) in filter.columns() {
        if column == "currency" && !with_currency {
            continue;
        }
        sql.push(&format!(" AND {column} IN ("))
            .bind_list(values)
            .push(")");
    }
    sql
}

/// Rows of each campaign-day's chosen report: the coarsest present that is
/// fine enough for the grouping (see [`crate::insights::report_key`]).
fn cells_sql(filter: &Sql, query: &Aggregate<'_>) -> Sql {
    let mut sql = Sql::default();
    sql.push(
        "(platform, account_id, campaign_id, date, report) IN (
            SELECT platform, account_id, campaign_id, date, min(report) FROM (
                SELECT platform, account_id, campaign_id, date, report FROM adpipe_rollup
                WHERE ",
    )
    .append(filter)
    .push(" AND report >= ")
    .bind(insights::needed_level(query.group_by).to_string())
    .push(
        " GROUP BY platform, account_id, campaign_id, date, report HAVING sum(rows) > 0)
            GROUP BY platform, account_id, campaign_id, date)",
    );
    sql
}

/// Columns of a fact or delta as read back.
const READ_COLUMNS: &str = "platform, account_id, campaign_id, ad_group_id, ad_id, date, hour, \
     currency, impressions, clicks, spend, conversions, conversion_value, extras, breakdown";

#[async_trait::async_trait]
impl StoreBackend for ClickHouseStore {
    async fn write(&self, batch: &Batch<'_>) -> Result<()> {
        self.write_batch(batch).await
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
        let identity = filter_sql(tenant, days, filter, false);
        let mut sql = Sql::default();
        sql.push(&format!(
            "SELECT {READ_COLUMNS} FROM {} WHERE ",
            latest_facts_sql(&identity.text)
        ));
        sql.binds.extend(identity.binds);
        sql.append(&filter_sql(tenant, days, filter, true));
        let query = sql.query(&self.client);
        let rows: Vec<FactRead> = query.fetch_all().await?;
        Ok(rows.into_iter().map(FactRead::into_fact).collect())
    }

    async fn aggregate(&self, tenant: &str, query: &Aggregate<'_>) -> Result<Vec<Summed>> {
        let dims = query.dimensions();
        let from_facts = !insights::rollup_answers(query.group_by);
        let filter = filter_sql(tenant, query.days, query.filter, true);
        let cells = cells_sql(&filter, query);
        let selected = format!(
            "{bucket} AS bucket, {dims}, currency",
            bucket = bucket_sql(query.granularity),
            dims = dims_sql(&dims)
        );
        let group = format!("bucket, {}, currency", GROUPED_DIMS);
        let mut sql = Sql::default();
        sql.push(&format!(
            "SELECT {selected}, sum(impressions) AS s_impressions, sum(clicks) AS s_clicks,
                    sum(spend) AS s_spend, sum(conversions) AS s_conversions,
                    sum(conversion_value) AS s_conversion_value, "
        ));
        if from_facts && !query.extras.is_empty() {
            sql.push("[");
            for (i, name) in query.extras.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.push("sum(visitParamExtractInt(extras, ")
                    .bind(name.as_str())
                    .push("))");
            }
            sql.push("]");
        } else {
            sql.push("emptyArrayInt64()");
        }
        sql.push(" AS s_extras FROM ");
        // Grouped by campaign or coarser and filtered by no currency, the
        // answer reads `adpipe_rollup_chosen`, where each campaign-day's
        // report is already chosen (as the embedded store's `rollup_chosen`).
        let chosen = !from_facts && query.filter.currencies.is_none();
        if from_facts {
            let identity = filter_sql(tenant, query.days, query.filter, false);
            sql.push(&latest_facts_sql(&identity.text));
            sql.binds.extend(identity.binds);
        } else if chosen {
            sql.push("adpipe_rollup_chosen");
        } else {
            sql.push("adpipe_rollup");
        }
        sql.push(" WHERE ").append(&filter);
        if !chosen {
            sql.push(" AND ").append(&cells);
        }
        sql.push(&format!(" GROUP BY {group}"));
        if !from_facts {
            // Rollup rows whose facts all moved away (to another currency) hold zeros.
            sql.push(" HAVING sum(rows) > 0");
        }
        let q = sql.query(&self.client);
        let rows: Vec<SumRead> = q.fetch_all().await?;
        let mut out: Vec<Summed> = rows
            .into_iter()
            .map(|r| {
                let mut sums = Sums {
                    impressions: r.s_impressions,
                    clicks: r.s_clicks,
                    spend: r.s_spend,
                    conversions: r.s_conversions,
                    conversion_value: r.s_conversion_value,
                    ..Sums::default()
                };
                for (name, value) in query.extras.iter().zip(&r.s_extras) {
                    if *value != 0 {
                        sums.extras.insert(name.clone(), *value);
                    }
                }
                let (bucket, values, currency) = r.key(query.granularity, &dims);
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
        let mut sql = Sql::default();
        sql.push(&format!(
            "SELECT {selected}, name, sum(value) AS s_value FROM adpipe_rollup_extras WHERE "
        ))
        .append(&filter)
        .push(" AND name IN (")
        .bind_list(query.extras)
        .push(") AND ")
        .append(&cells)
        .push(&format!(" GROUP BY {group}, name"));
        let q = sql.query(&self.client);
        let rows: Vec<ExtraRead> = q.fetch_all().await?;
        super::add_extras(
            &mut out,
            rows.into_iter().map(|r| {
                let key = r.key(query.granularity, &dims);
                (key, r.name, r.s_value)
            }),
        );
        Ok(out)
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
        // The newest version of each entity, keeping the last ad group and
        // name reported (a row without them does not erase them), as the
        // embedded store's upsert does. The ids arrive as one array,
        // unnested into a set: ClickHouse 18.16 took 80-130 ms to evaluate
        // `has(array, id)` per row, and 20 ms only to parse `IN ('…', …)`,
        // for 1,000 campaigns (a page grouped by campaign); ~20 ms this way
        // (26-33 ms with `FINAL` instead of `argMax`).
        #[derive(ChRow, Deserialize)]
        struct KnownRead {
            platform: String,
            level: String,
            id: String,
            account_id: String,
            campaign_id: String,
            ad_group_id: String,
            campaign_name: String,
            currency: String,
        }
        let rows: Vec<KnownRead> = self
            .client
            .query(
                "SELECT platform, level, id,
                        argMax(account_id, version) AS account_id,
                        argMax(campaign_id, version) AS campaign_id,
                        argMaxIf(ad_group_id, version, ad_group_id != '') AS ad_group_id,
                        argMaxIf(campaign_name, version, campaign_name != '') AS campaign_name,
                        argMax(currency, version) AS currency
                 FROM adpipe_entities
                 WHERE tenant = ? AND level = ? AND id IN (SELECT arrayJoin(?))
                 GROUP BY platform, level, id",
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
                    name: non_empty(e.campaign_name),
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
            .query(&format!(
                "SELECT adapter, adapter_version, sum(n) AS rows FROM (
                    SELECT adapter, adapter_version, count() AS n FROM {}
                    GROUP BY adapter, adapter_version
                    UNION ALL
                    SELECT adapter, adapter_version, count() AS n FROM adpipe_deltas FINAL
                    WHERE tenant = ? GROUP BY adapter, adapter_version
                 ) GROUP BY adapter, adapter_version ORDER BY adapter, adapter_version",
                latest_facts_sql("tenant = ?")
            ))
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
