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
//!   knows the old values: before a batch it reads the stored observation of
//!   every identity the batch names, keeps only strictly newer rows, and
//!   writes each change as the new fact plus rollup rows that subtract the
//!   old values and add the new ones. Facts and rollup rows go in *one*
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

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use clickhouse::{Client, Row as ChRow};
use serde::{Deserialize, Serialize};

use super::batch::{Batch, Item};
use super::hierarchy::{Entity, Known, StoredDelta};
use super::{
    AdapterRows, Aggregate, Campaign, Days, FactFilter, Result, StoreBackend, StoreError, SumKey,
};
use crate::insights::{self, Dimension, Fact, Granularity, Summed, Sums};

const SCHEMA: &[&str] = &[
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

/// The tables a shard holds — facts, the rollups, and the `Null` table
/// `adpipe_writes` whose materialized views route one insert into facts and
/// rollups — named with `suffix` (`""` on a single node; `"_local"` on each
/// shard, behind `Distributed` tables of the plain names).
fn shard_schema(suffix: &str) -> Vec<String> {
    let s = suffix;
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS adpipe_facts{s} (
        tenant String, platform String, account_id String, campaign_id String,
        ad_group_id String, ad_id String, date Date, hour Int8, currency String,
        impressions Int64, clicks Int64, spend Int64, conversions Int64, conversion_value Int64,
        extras String, observed_at UInt64, pipeline String, adapter String, adapter_version String,
        breakdown String, report String
    ) ENGINE = ReplacingMergeTree(observed_at)
    PARTITION BY toYYYYMM(date)
    ORDER BY (tenant, campaign_id, date, platform, account_id, ad_group_id, ad_id, hour, breakdown)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS adpipe_rollup{s} (
        tenant String, date Date, campaign_id String, platform String, account_id String,
        report String, currency String, rows Int64,
        impressions Int64, clicks Int64, spend Int64, conversions Int64, conversion_value Int64
    ) ENGINE = SummingMergeTree((rows, impressions, clicks, spend, conversions, conversion_value))
    PARTITION BY toYYYYMM(date)
    ORDER BY (tenant, campaign_id, date, platform, account_id, report, currency)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS adpipe_rollup_extras{s} (
        tenant String, date Date, campaign_id String, platform String, account_id String,
        report String, currency String, name String, value Int64
    ) ENGINE = SummingMergeTree(value)
    PARTITION BY toYYYYMM(date)
    ORDER BY (tenant, campaign_id, date, platform, account_id, report, currency, name)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS adpipe_writes{s} (
        target String, tenant String, platform String, account_id String, campaign_id String,
        ad_group_id String, ad_id String, date Date, hour Int8, currency String,
        impressions Int64, clicks Int64, spend Int64, conversions Int64, conversion_value Int64,
        extras String, observed_at UInt64, pipeline String, adapter String, adapter_version String,
        breakdown String, report String, rows Int64, name String, value Int64
    ) ENGINE = Null"
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS adpipe_writes_facts{s} TO adpipe_facts{s} AS
    SELECT tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date, hour, currency,
        impressions, clicks, spend, conversions, conversion_value, extras, observed_at, pipeline,
        adapter, adapter_version, breakdown, report
    FROM adpipe_writes{s} WHERE target = 'fact'"
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS adpipe_writes_rollup{s} TO adpipe_rollup{s} AS
    SELECT tenant, date, campaign_id, platform, account_id, report, currency, rows,
        impressions, clicks, spend, conversions, conversion_value
    FROM adpipe_writes{s} WHERE target = 'rollup'"
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS adpipe_writes_extras{s} TO adpipe_rollup_extras{s} AS
    SELECT tenant, date, campaign_id, platform, account_id, report, currency, name, value
    FROM adpipe_writes{s} WHERE target = 'extra'"
        ),
    ]
}

/// The tables sharded across a cluster, by campaign (the rollups' and the
/// facts' rows of one campaign-day live on one shard, which the queries'
/// `IN` subqueries rely on, with `distributed_product_mode = 'local'`).
const SHARDED_TABLES: [&str; 4] = [
    "adpipe_facts",
    "adpipe_rollup",
    "adpipe_rollup_extras",
    "adpipe_writes",
];

/// A fact's report key in SQL, for facts stored before the column existed
/// (the same key as [`crate::insights::report_key`]).
const REPORT_SQL: &str = "concat(multiIf(ad_id != '', '2', ad_group_id != '', '1', '0'), \
     if(hour >= 0, '1', '0'), replaceRegexpAll(breakdown, '=[^|]*', ''))";

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
    fn bind_list<'a>(&mut self, values: impl IntoIterator<Item = &'a String>) -> &mut Sql {
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(v.as_str());
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

/// A row of `adpipe_deltas`.
#[derive(ChRow, Serialize, Deserialize)]
struct DeltaRow {
    tenant: String,
    platform: String,
    dedup_key: String,
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

impl DeltaRow {
    fn of(item: &Item<'_>) -> Result<DeltaRow> {
        let row = item.row;
        Ok(DeltaRow {
            tenant: item.tenant.to_owned(),
            platform: row.platform.clone(),
            dedup_key: item.dedup_key().to_owned(),
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

/// A row of `adpipe_writes`: a fact (`target = 'fact'`), a rollup change
/// (`'rollup'`) or an extra metric's rollup change (`'extra'`); columns
/// another target uses are left empty.
#[derive(ChRow, Serialize, Deserialize, Default)]
struct WriteRow {
    target: &'static str,
    tenant: String,
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
    observed_at: u64,
    pipeline: String,
    adapter: String,
    adapter_version: String,
    breakdown: String,
    report: String,
    rows: i64,
    name: String,
    value: i64,
}

/// A fact's identity: tenant, platform, account, campaign, ad group, ad,
/// day, hour, breakdown.
type Identity = (
    String,
    String,
    String,
    String,
    String,
    String,
    u16,
    i8,
    String,
);

/// What the rollups hold of one stored (or about to be stored) fact.
#[derive(Clone, Debug, ChRow, Deserialize)]
struct Contribution {
    tenant: String,
    platform: String,
    account_id: String,
    campaign_id: String,
    ad_group_id: String,
    ad_id: String,
    date: u16,
    hour: i8,
    breakdown: String,
    report: String,
    currency: String,
    impressions: i64,
    clicks: i64,
    spend: i64,
    conversions: i64,
    conversion_value: i64,
    extras: String,
    observed_at: u64,
}

impl Contribution {
    fn of(item: &Item<'_>) -> Result<Contribution> {
        let row = item.row;
        Ok(Contribution {
            tenant: item.tenant.to_owned(),
            platform: row.platform.clone(),
            account_id: row.account_id.clone(),
            campaign_id: item.campaign_id().to_owned(),
            ad_group_id: item.ad_group_id().to_owned(),
            ad_id: item.ad_id().to_owned(),
            date: date_of(row.date)?,
            hour: item.hour(),
            breakdown: item.breakdown().to_owned(),
            report: item.report(),
            currency: item.currency().to_owned(),
            impressions: row.impressions,
            clicks: row.clicks,
            spend: row.spend_micros,
            conversions: row.conversions_micros,
            conversion_value: row.conversion_value_micros,
            extras: item.extras_json().unwrap_or_default(),
            observed_at: item.observed_at(),
        })
    }

    fn identity(&self) -> Identity {
        (
            self.tenant.clone(),
            self.platform.clone(),
            self.account_id.clone(),
            self.campaign_id.clone(),
            self.ad_group_id.clone(),
            self.ad_id.clone(),
            self.date,
            self.hour,
            self.breakdown.clone(),
        )
    }

    /// The rollup key this contribution adds to.
    fn rollup_key(&self) -> RollupKey {
        (
            self.tenant.clone(),
            self.date,
            self.campaign_id.clone(),
            self.platform.clone(),
            self.account_id.clone(),
            self.report.clone(),
            self.currency.clone(),
        )
    }
}

/// tenant, day, campaign, platform, account, report, currency.
type RollupKey = (String, u16, String, String, String, String, String);

/// Net rollup changes of one write: per key, rows and the five sums; per
/// key and extra metric name, the value.
#[derive(Default)]
struct RollupChanges {
    sums: HashMap<RollupKey, [i64; 6]>,
    extras: HashMap<(RollupKey, String), i64>,
}

impl RollupChanges {
    /// Add (`sign` 1) or subtract (`sign` -1) `c`.
    fn add(&mut self, c: &Contribution, sign: i64) {
        let key = c.rollup_key();
        let sums = self.sums.entry(key.clone()).or_default();
        for (total, value) in sums.iter_mut().zip([
            1,
            c.impressions,
            c.clicks,
            c.spend,
            c.conversions,
            c.conversion_value,
        ]) {
            *total += sign * value;
        }
        for (name, value) in extras_of(&c.extras) {
            *self.extras.entry((key.clone(), name)).or_default() += sign * value;
        }
    }

    /// As rows of `adpipe_writes`, leaving out changes that cancel.
    fn into_rows(self, rows: &mut Vec<WriteRow>) {
        let base = |target, key: RollupKey| {
            let (tenant, date, campaign_id, platform, account_id, report, currency) = key;
            WriteRow {
                target,
                tenant,
                date,
                campaign_id,
                platform,
                account_id,
                report,
                currency,
                ..WriteRow::default()
            }
        };
        for (key, s) in self.sums {
            if s.iter().all(|v| *v == 0) {
                continue;
            }
            rows.push(WriteRow {
                rows: s[0],
                impressions: s[1],
                clicks: s[2],
                spend: s[3],
                conversions: s[4],
                conversion_value: s[5],
                ..base("rollup", key)
            });
        }
        for ((key, name), value) in self.extras {
            if value != 0 {
                rows.push(WriteRow {
                    name,
                    value,
                    ..base("extra", key)
                });
            }
        }
    }
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
        let shards = sharding.map_or(String::new(), |s| s.shards.join(","));
        Ok(ClickHouseStore {
            client,
            scope: format!("clickhouse|{url}|{}|{shards}", database.unwrap_or("")),
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

/// Fact tables made before report keys get the column, computed from each
/// row for the parts written before it.
async fn add_report_column(client: &Client) -> Result<()> {
    let has: u64 = client
        .query(
            "SELECT count() FROM system.columns
             WHERE database = currentDatabase() AND table = 'adpipe_facts' AND name = 'report'",
        )
        .fetch_one()
        .await?;
    if has == 0 {
        tracing::info!("store: adding report keys to adpipe_facts");
        client
            .query(&format!(
                "ALTER TABLE adpipe_facts ADD COLUMN report String DEFAULT {REPORT_SQL}"
            ))
            .execute()
            .await?;
    }
    Ok(())
}

/// The rollups; a deployment that had facts before them gets them computed
/// from its facts, once: the host whose `CREATE TABLE adpipe_rollup_filled`
/// succeeds does it (hosts starting together do not both count).
async fn add_rollups(client: &Client) -> Result<()> {
    let claimed = client
        .query("CREATE TABLE adpipe_rollup_filled (at DateTime) ENGINE = TinyLog")
        .execute()
        .await
        .is_ok();
    if !claimed {
        return Ok(());
    }
    let filled = fill_rollups(client).await;
    if filled.is_err() {
        // Let the next start try again.
        let _ = client
            .query("DROP TABLE IF EXISTS adpipe_rollup_filled")
            .execute()
            .await;
    }
    filled
}

/// Compute the rollups of the stored facts (see [`add_rollups`]).
async fn fill_rollups(client: &Client) -> Result<()> {
    let facts: u64 = client
        .query("SELECT count() FROM adpipe_facts")
        .fetch_one()
        .await?;
    if facts == 0 {
        return Ok(());
    }
    tracing::info!(
        facts,
        "store: computing rollups from the stored facts (once)"
    );
    client
        .query(&format!(
            "INSERT INTO adpipe_rollup
             SELECT tenant, date, campaign_id, platform, account_id, report, currency,
                    count(), sum(impressions), sum(clicks), sum(spend), sum(conversions),
                    sum(conversion_value)
             FROM {}
             GROUP BY tenant, date, campaign_id, platform, account_id, report, currency",
            latest_facts_sql("1")
        ))
        .execute()
        .await?;
    // Extra metrics: their names are only known per row, so Rust sums them.
    let with_extras: Vec<Contribution> = client
        .query(&format!(
            "SELECT {CONTRIBUTION_COLUMNS} FROM {} WHERE extras != ''",
            latest_facts_sql("1")
        ))
        .fetch_all()
        .await?;
    let mut changes = RollupChanges::default();
    for c in &with_extras {
        changes.add(c, 1);
    }
    changes.sums.clear();
    let mut rows = Vec::new();
    changes.into_rows(&mut rows);
    insert_rows(client, "adpipe_writes", &rows).await
}

/// Campaigns per lookup of stored observations.
const CAMPAIGNS_PER_LOOKUP: usize = 500;

/// The columns of a [`Contribution`], as `adpipe_facts` holds them.
const CONTRIBUTION_COLUMNS: &str =
    "tenant, platform, account_id, campaign_id, ad_group_id, ad_id, \
     date, hour, breakdown, report, currency, impressions, clicks, spend, conversions, \
     conversion_value, extras, observed_at";

/// Insert `rows` into `table` in one exchange.
async fn insert_rows<T>(client: &Client, table: &str, rows: &[T]) -> Result<()>
where
    for<'a> T: ChRow<Value<'a> = T> + Serialize,
{
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = client.insert::<T>(table).await?;
    for row in rows {
        insert.write(row).await?;
    }
    Ok(insert.end().await?)
}

impl ClickHouseStore {
    /// The `adpipe_writes` rows of `items`: per identity the newest
    /// observation (the first of equals, as the embedded store keeps), when
    /// strictly newer than the stored one, as a fact plus the rollup changes
    /// from the stored observation to it.
    async fn snapshot_writes(&self, items: &[Item<'_>]) -> Result<Vec<WriteRow>> {
        let mut newest: HashMap<Identity, (Contribution, &Item<'_>)> = HashMap::new();
        for item in items {
            let c = Contribution::of(item)?;
            match newest.entry(c.identity()) {
                Entry::Occupied(mut e) => {
                    if c.observed_at > e.get().0.observed_at {
                        e.insert((c, item));
                    }
                }
                Entry::Vacant(e) => {
                    e.insert((c, item));
                }
            }
        }
        let stored = self
            .stored_contributions(newest.values().map(|(c, _)| c))
            .await?;
        let mut changes = RollupChanges::default();
        let mut rows = Vec::with_capacity(newest.len());
        for (identity, (c, item)) in newest {
            let old = stored.get(&identity);
            if old.is_some_and(|o| c.observed_at <= o.observed_at) {
                continue; // a duplicate, a replay, or older than what is stored
            }
            if let Some(old) = old {
                changes.add(old, -1);
            }
            changes.add(&c, 1);
            rows.push(WriteRow {
                target: "fact",
                pipeline: item.pipeline.to_owned(),
                adapter: item.row.adapter.clone(),
                adapter_version: item.row.adapter_version.clone(),
                tenant: c.tenant,
                platform: c.platform,
                account_id: c.account_id,
                campaign_id: c.campaign_id,
                ad_group_id: c.ad_group_id,
                ad_id: c.ad_id,
                date: c.date,
                hour: c.hour,
                currency: c.currency,
                impressions: c.impressions,
                clicks: c.clicks,
                spend: c.spend,
                conversions: c.conversions,
                conversion_value: c.conversion_value,
                extras: c.extras,
                observed_at: c.observed_at,
                breakdown: c.breakdown,
                report: c.report,
                ..WriteRow::default()
            });
        }
        changes.into_rows(&mut rows);
        Ok(rows)
    }

    /// The stored observation of each identity `wanted` names (and of others
    /// of the same campaigns and days, which the caller ignores).
    async fn stored_contributions<'a>(
        &self,
        wanted: impl Iterator<Item = &'a Contribution>,
    ) -> Result<HashMap<Identity, Contribution>> {
        // Per tenant: its campaigns and the days they span.
        let mut scopes: BTreeMap<&str, (std::collections::BTreeSet<&str>, u16, u16)> =
            BTreeMap::new();
        for c in wanted {
            let scope = scopes
                .entry(c.tenant.as_str())
                .or_insert_with(|| (Default::default(), u16::MAX, 0));
            scope.0.insert(c.campaign_id.as_str());
            scope.1 = scope.1.min(c.date);
            scope.2 = scope.2.max(c.date);
        }
        let mut stored = HashMap::new();
        for (tenant, (campaigns, from, to)) in scopes {
            let campaigns: Vec<&str> = campaigns.into_iter().collect();
            for chunk in campaigns.chunks(CAMPAIGNS_PER_LOOKUP) {
                let mut filter = Sql::default();
                filter
                    .push("tenant = ")
                    .bind(tenant)
                    .push(" AND campaign_id IN (");
                for (i, campaign) in chunk.iter().enumerate() {
                    if i > 0 {
                        filter.push(", ");
                    }
                    filter.bind(*campaign);
                }
                filter
                    .push(") AND date >= toDate(")
                    .bind(day_text(i32::from(from)))
                    .push(") AND date <= toDate(")
                    .bind(day_text(i32::from(to)))
                    .push(")");
                let mut sql = Sql::default();
                sql.push(&format!(
                    "SELECT {CONTRIBUTION_COLUMNS} FROM {}",
                    latest_facts_sql(&filter.text)
                ));
                sql.binds = filter.binds;
                let rows: Vec<Contribution> = sql.query(&self.client).fetch_all().await?;
                stored.extend(rows.into_iter().map(|c| (c.identity(), c)));
            }
        }
        Ok(stored)
    }

    async fn insert<T>(&self, table: &str, rows: &[T]) -> Result<()>
    where
        for<'a> T: ChRow<Value<'a> = T> + Serialize,
    {
        insert_rows(&self.client, table, rows).await
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
    /// One batched insert per table, then the position. A crash in between
    /// replays the batch, which the replacing tables absorb.
    async fn write(&self, batch: &Batch<'_>) -> Result<()> {
        let writes = self.snapshot_writes(&batch.snapshots).await?;
        let deltas = batch
            .deltas
            .iter()
            .map(DeltaRow::of)
            .collect::<Result<Vec<_>, _>>()?;
        self.insert("adpipe_writes", &writes).await?;
        self.insert("adpipe_deltas", &deltas).await?;
        let entity_rows: Vec<EntityRow> = batch
            .entities
            .iter()
            .map(|((tenant, platform, level, id), e)| EntityRow {
                tenant: (*tenant).to_owned(),
                platform: (*platform).to_owned(),
                level: (*level).to_owned(),
                id: (*id).to_owned(),
                account_id: e.account_id.to_owned(),
                campaign_id: e.campaign_id.to_owned(),
                ad_group_id: e.ad_group_id.unwrap_or_default().to_owned(),
                campaign_name: e.name.unwrap_or_default().to_owned(),
                currency: e.currency.to_owned(),
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
        if from_facts {
            let identity = filter_sql(tenant, query.days, query.filter, false);
            sql.push(&latest_facts_sql(&identity.text));
            sql.binds.extend(identity.binds);
        } else {
            sql.push("adpipe_rollup");
        }
        sql.push(" WHERE ")
            .append(&filter)
            .push(" AND ")
            .append(&cells)
            .push(&format!(" GROUP BY {group}"));
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
