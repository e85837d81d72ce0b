//! The ClickHouse store's tables, and the one-time changes that bring a
//! database made by an earlier adpipe to them.

use clickhouse::Client;

use super::write::{extras_rollup_rows, insert_writes, Contribution, CONTRIBUTION_COLUMNS};
use super::{extras_of, latest_facts_sql};
use crate::store::Result;

pub(super) const SCHEMA: &[&str] = &[
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
pub(super) fn shard_schema(suffix: &str) -> Vec<String> {
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
            "CREATE TABLE IF NOT EXISTS adpipe_rollup_chosen{s} (
        tenant String, date Date, campaign_id String, platform String, account_id String,
        currency String, rows Int64,
        impressions Int64, clicks Int64, spend Int64, conversions Int64, conversion_value Int64
    ) ENGINE = SummingMergeTree((rows, impressions, clicks, spend, conversions, conversion_value))
    PARTITION BY toYYYYMM(date)
    ORDER BY (tenant, campaign_id, date, platform, account_id, currency)"
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
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS adpipe_writes_chosen{s} TO adpipe_rollup_chosen{s} AS
    SELECT tenant, date, campaign_id, platform, account_id, currency, rows,
        impressions, clicks, spend, conversions, conversion_value
    FROM adpipe_writes{s} WHERE target = 'chosen'"
        ),
    ]
}

/// The tables sharded across a cluster, by campaign (the rollups' and the
/// facts' rows of one campaign-day live on one shard, which the queries'
/// `IN` subqueries rely on, with `distributed_product_mode = 'local'`).
pub(super) const SHARDED_TABLES: [&str; 5] = [
    "adpipe_facts",
    "adpipe_rollup",
    "adpipe_rollup_extras",
    "adpipe_rollup_chosen",
    "adpipe_writes",
];

/// A fact's report key in SQL, for facts stored before the column existed
/// (the same key as [`crate::insights::report_key`]).
const REPORT_SQL: &str = "concat(multiIf(ad_id != '', '2', ad_group_id != '', '1', '0'), \
     if(hour >= 0, '1', '0'), replaceRegexpAll(breakdown, '=[^|]*', ''))";

/// Tables made before breakdown keys get the column, in the facts' sorting
/// key too (a column added in the same ALTER may extend it; 18.16 accepts it
/// when the column has no default expression).
pub(super) async fn add_breakdown_column(client: &Client) -> Result<()> {
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
pub(super) async fn add_report_column(client: &Client) -> Result<()> {
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

/// Run `fill` once per database: the host whose `CREATE TABLE <marker>`
/// succeeds does it (hosts starting together do not both count); when it
/// fails the marker goes, so the next start tries again.
async fn once(
    client: &Client,
    marker: &str,
    fill: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    let claimed = client
        .query(&format!(
            "CREATE TABLE {marker} (at DateTime) ENGINE = TinyLog"
        ))
        .execute()
        .await
        .is_ok();
    if !claimed {
        return Ok(());
    }
    let filled = fill.await;
    if filled.is_err() {
        let _ = client
            .query(&format!("DROP TABLE IF EXISTS {marker}"))
            .execute()
            .await;
    }
    filled
}

/// The rollups; a deployment that had facts before them gets them computed
/// from its facts, once.
pub(super) async fn add_rollups(client: &Client) -> Result<()> {
    once(client, "adpipe_rollup_filled", fill_rollups(client)).await
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
    let extras: Vec<_> = with_extras.iter().map(|c| extras_of(c.extras())).collect();
    insert_writes(client, &extras_rollup_rows(&with_extras, &extras)).await
}

/// The chosen reports' sums (`adpipe_rollup_chosen`); a deployment whose
/// rollups predate the table gets them computed from its rollups, once. As
/// with [`add_rollups`], hosts of the older version should not be writing
/// while it runs.
pub(super) async fn add_chosen(client: &Client) -> Result<()> {
    let fill = async { Ok(client.query(FILL_CHOSEN).execute().await?) };
    once(client, "adpipe_rollup_chosen_filled", fill).await
}

/// Per campaign-day and currency, the sums of its chosen report (the
/// smallest report key holding facts), through `adpipe_writes`.
const FILL_CHOSEN: &str = "INSERT INTO adpipe_writes (target, tenant, date, campaign_id, platform,
        account_id, currency, rows, impressions, clicks, spend, conversions, conversion_value)
    SELECT 'chosen', tenant, date, campaign_id, platform, account_id, currency, sum(rows),
        sum(impressions), sum(clicks), sum(spend), sum(conversions), sum(conversion_value)
    FROM adpipe_rollup
    WHERE (tenant, date, campaign_id, platform, account_id, report) IN (
        SELECT tenant, date, campaign_id, platform, account_id, min(report) FROM (
            SELECT tenant, date, campaign_id, platform, account_id, report FROM adpipe_rollup
            GROUP BY tenant, date, campaign_id, platform, account_id, report
            HAVING sum(rows) > 0)
        GROUP BY tenant, date, campaign_id, platform, account_id)
    GROUP BY tenant, date, campaign_id, platform, account_id, currency
    HAVING sum(rows) != 0";
