//! The embedded store's tables, and the one-time changes that bring a store
//! made by an earlier adpipe to them.

use sqlx::sqlite::SqlitePool;
use sqlx::Row as _;

use crate::store::Result;

pub(super) const SCHEMA: &[&str] = &[
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
        PRIMARY KEY (tenant, date, campaign_id, platform, account_id, ad_group_id, ad_id, hour, breakdown)
    ) WITHOUT ROWID",
    // Account-wide reads go to the rollups now; the index only cost space.
    "DROP INDEX IF EXISTS facts_by_date",
    // Facts and rollups are keyed by day, then campaign (FACTS_KEY): a
    // campaign's reads seek its days on the key, and no second, per-campaign
    // index spreads every report page's writes across the whole index.
    "DROP INDEX IF EXISTS facts_by_campaign",
    "DROP INDEX IF EXISTS rollup_days_by_campaign",
    "DROP INDEX IF EXISTS rollup_chosen_by_campaign",
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
pub(super) const ROLLUP_SCHEMA: &[&str] = &[
    "CREATE TABLE rollup_days (
        tenant TEXT NOT NULL, date INTEGER NOT NULL, campaign_id TEXT NOT NULL,
        platform TEXT NOT NULL, account_id TEXT NOT NULL, report TEXT NOT NULL,
        currency TEXT NOT NULL, rows INTEGER NOT NULL,
        impressions INTEGER NOT NULL, clicks INTEGER NOT NULL, spend INTEGER NOT NULL,
        conversions INTEGER NOT NULL, conversion_value INTEGER NOT NULL,
        PRIMARY KEY (tenant, date, campaign_id, platform, account_id, report, currency)
    ) WITHOUT ROWID",
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
pub(super) const CHOSEN_SCHEMA: &str = "CREATE TABLE rollup_chosen (
        tenant TEXT NOT NULL, date INTEGER NOT NULL, campaign_id TEXT NOT NULL,
        platform TEXT NOT NULL, account_id TEXT NOT NULL, currency TEXT NOT NULL,
        rows INTEGER NOT NULL, impressions INTEGER NOT NULL, clicks INTEGER NOT NULL,
        spend INTEGER NOT NULL, conversions INTEGER NOT NULL, conversion_value INTEGER NOT NULL,
        PRIMARY KEY (tenant, date, campaign_id, platform, account_id, currency)
    ) WITHOUT ROWID";

/// `rollup_accounts`: per account-day and currency, the sums of its
/// campaigns' chosen reports (`rollup_chosen` summed), so an account-wide
/// answer by day, week or month (a dashboard's first screen) sums one row a
/// day instead of one a campaign-day. Each write adds to it what it changed
/// in `rollup_chosen` (see `choose_reports`); an older store gets it summed
/// from `rollup_chosen` once.
pub(super) const ACCOUNTS_SCHEMA: &str = "CREATE TABLE rollup_accounts (
        tenant TEXT NOT NULL, date INTEGER NOT NULL, platform TEXT NOT NULL,
        account_id TEXT NOT NULL, currency TEXT NOT NULL,
        rows INTEGER NOT NULL, impressions INTEGER NOT NULL, clicks INTEGER NOT NULL,
        spend INTEGER NOT NULL, conversions INTEGER NOT NULL, conversion_value INTEGER NOT NULL,
        PRIMARY KEY (tenant, date, platform, account_id, currency)
    ) WITHOUT ROWID";

/// The account-day columns, in `rollup_accounts`' key order.
pub(super) const ACCOUNT_DAY: &str = "tenant, date, platform, account_id";

/// Fill `rollup_accounts` from `rollup_chosen` (a store made before it).
const ACCOUNTS_FROM_CHOSEN: &str = "INSERT INTO rollup_accounts (tenant, date, platform,
        account_id, currency, rows, impressions, clicks, spend, conversions, conversion_value)
     SELECT tenant, date, platform, account_id, currency, SUM(rows), SUM(impressions),
            SUM(clicks), SUM(spend), SUM(conversions), SUM(conversion_value)
     FROM rollup_chosen GROUP BY tenant, date, platform, account_id, currency";

/// The campaign-day columns, in `rollup_chosen`'s key order.
pub(super) const CELL: &str = "tenant, date, campaign_id, platform, account_id";

/// `rollup_chosen`'s rows from `rollup_days` rows `r` (filtered by the caller).
pub(super) fn chosen_from_days(filter: &str) -> String {
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

/// The key columns of a rollup row, in table order.
pub(super) const ROLLUP_KEY: &str =
    "tenant, date, campaign_id, platform, account_id, report, currency";

/// Stores made before breakdown keys: `facts` gets `breakdown` in its key (a
/// WITHOUT ROWID table's key cannot change in place, so it is rebuilt in one
/// transaction), `deltas` gets the column.
pub(super) async fn add_breakdown_column(pool: &SqlitePool) -> Result<()> {
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
pub(super) async fn add_reports(pool: &SqlitePool) -> Result<()> {
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

/// Whether the store has the table `name`.
async fn has_table(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, name: &str) -> Result<bool> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(found.is_some())
}

/// The rollup tables; a store that had facts before them
/// gets its rollups computed from the facts, in the same transaction.
pub(super) async fn add_rollups(pool: &SqlitePool) -> Result<()> {
    let mut tx = pool.begin().await?;
    if !has_table(&mut tx, "rollup_days").await? {
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
    // Rollups were kept by triggers before the write path kept them (one
    // summed change per rollup row instead of two statements per fact).
    for trigger in ["facts_roll_up_insert", "facts_roll_up_update"] {
        sqlx::query(&format!("DROP TRIGGER IF EXISTS {trigger}"))
            .execute(&mut *tx)
            .await?;
    }
    if !has_table(&mut tx, "rollup_chosen").await? {
        sqlx::query(CHOSEN_SCHEMA).execute(&mut *tx).await?;
        sqlx::query(&chosen_from_days("1"))
            .execute(&mut *tx)
            .await?;
    }
    if !has_table(&mut tx, "rollup_accounts").await? {
        sqlx::query(ACCOUNTS_SCHEMA).execute(&mut *tx).await?;
        sqlx::query(ACCOUNTS_FROM_CHOSEN).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The key of `facts` (`SCHEMA`): day first, then campaign. A report page
/// holds one or a few days across many campaigns, so its rows land in a few
/// neighbouring pages (new days at the end of the table) instead of one page
/// per campaign across the whole table; a campaign's reads list its days
/// (see `push_days` in the store). Measured with SQLite alone on the scale
/// benchmark's pages (1 M rows, half a day of 500 campaigns per page,
/// `synchronous=FULL`): 176 k rows/s written keyed by day, 66 k by campaign,
/// 71 k by day with a second, per-campaign index.
pub(super) const FACTS_KEY: &str =
    "tenant, date, campaign_id, platform, account_id, ad_group_id, ad_id, hour, breakdown";

/// Stores made before facts were keyed by day: `facts` is rebuilt once (in
/// one transaction) with the key `SCHEMA` gives it, and any per-campaign or
/// per-day index of an older layout is dropped.
pub(super) async fn key_facts_by_day(pool: &SqlitePool) -> Result<()> {
    let sql: Option<String> =
        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'facts'")
            .fetch_optional(pool)
            .await?;
    if sql.is_none_or(|sql| sql.contains(&format!("PRIMARY KEY ({FACTS_KEY})"))) {
        return Ok(());
    }
    tracing::info!("store: keying facts by day (rebuilding the table once)");
    let columns = "tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date, hour, \
        currency, impressions, clicks, spend, conversions, conversion_value, extras, \
        observed_at, pipeline, adapter, adapter_version, breakdown, report";
    let mut tx = pool.begin().await?;
    let create = SCHEMA[0].replace("IF NOT EXISTS facts (", "facts_rekeyed (");
    for statement in [
        create.as_str(),
        // In the old key's order: an ORDER BY would sort the whole table in
        // memory first (temp_store=MEMORY), which a large store cannot afford.
        &format!("INSERT INTO facts_rekeyed ({columns}) SELECT {columns} FROM facts"),
        "DROP TABLE facts",
        "ALTER TABLE facts_rekeyed RENAME TO facts",
    ] {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_facts_table_is_keyed_by_facts_key() {
        assert!(super::SCHEMA[0].contains(&format!("PRIMARY KEY ({})", super::FACTS_KEY)));
    }
}
