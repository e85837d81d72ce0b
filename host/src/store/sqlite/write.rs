//! How the embedded store writes one batch, in one transaction: facts, their
//! rollups, the report chosen per campaign-day, deltas, the ad hierarchy and
//! the bus position.
//!
//! The rollups are kept here, not by triggers. Per row identity the batch's
//! winning row (its newest observation, the first of equal ones: what the
//! upsert rule would leave) is compared with the stored row, read with one
//! key seek (only in campaign-days whose rollups say they hold facts); only
//! a new or strictly newer row is written, and each
//! rollup row receives, summed, the new values minus those they replace. A
//! duplicate or older row changes nothing, so a batch delivered again leaves
//! facts and rollups as they were.
//!
//! The write runs on the store's own writer connection (rusqlite), in the
//! calling thread: one cached prepared statement per kind of row, each row
//! bound straight from the batch. Through sqlx every statement was a round
//! trip to its connection thread with every text argument copied, so the
//! two sides took turns instead of the write running at SQLite's speed.

use std::collections::hash_map::Entry;
use std::collections::BTreeMap;

use foldhash::HashMap;

use rusqlite::{
    params, params_from_iter, OptionalExtension as _, ToSql, Transaction, TransactionBehavior,
};

use super::schema::{chosen_from_days, ACCOUNT_DAY, ROLLUP_KEY};
use super::CONSUMER;
use crate::store::batch::{Batch, Item};
use crate::store::hierarchy::{EntityKey, Learned};
use crate::store::Result;

/// Write `batch` in one transaction on the store's writer connection.
pub(super) fn write(conn: &mut rusqlite::Connection, batch: &Batch<'_>) -> Result<()> {
    // IMMEDIATE: the write lock is taken at BEGIN, so a reader's snapshot
    // can never make this transaction fail halfway.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let written = write_snapshots(&tx, &batch.snapshots)?;
    choose_reports(&tx, &written)?;
    {
        let mut insert = tx.prepare_cached(&insert_sql("deltas", DELTA_CONFLICT))?;
        for delta in &batch.deltas {
            insert_row(&mut insert, delta, delta.dedup_key())?;
        }
    }
    write_entities(&tx, &batch.entities)?;
    {
        let mut insert = tx
            .prepare_cached("INSERT OR IGNORE INTO extra_metrics (tenant, name) VALUES (?1, ?2)")?;
        for (tenant, name) in &batch.extra_metrics {
            insert.execute(params![tenant, name])?;
        }
    }
    if let Some(through) = batch.through {
        tx.prepare_cached(
            "INSERT INTO consumer_offsets (consumer, offset) VALUES (?1, ?2)
             ON CONFLICT (consumer) DO UPDATE SET offset = MAX(offset, excluded.offset)",
        )?
        .execute(params![CONSUMER, through as i64])?;
    }
    tx.commit()?;
    Ok(())
}

/// A fact's identity: the primary key of `facts`, its fields in the key's
/// order (so identities sort as the table does).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Identity<'a> {
    tenant: &'a str,
    date: i32,
    campaign_id: &'a str,
    platform: &'a str,
    account_id: &'a str,
    ad_group_id: &'a str,
    ad_id: &'a str,
    hour: i8,
    breakdown: &'a str,
}

impl<'a> Identity<'a> {
    fn of(item: &Item<'a>) -> Identity<'a> {
        Identity {
            tenant: item.tenant,
            date: item.row.date,
            campaign_id: item.campaign_id(),
            platform: &item.row.platform,
            account_id: &item.row.account_id,
            ad_group_id: item.ad_group_id(),
            ad_id: item.ad_id(),
            hour: item.hour(),
            breakdown: item.breakdown(),
        }
    }
}

/// Per identity, the row the upsert rule would leave after applying `items`
/// in order: the newest observation, the first of equal ones.
fn winners<'a>(items: &[Item<'a>]) -> Vec<Item<'a>> {
    let mut at: HashMap<Identity<'a>, usize> =
        HashMap::with_capacity_and_hasher(items.len(), Default::default());
    let mut winners: Vec<Item<'a>> = Vec::with_capacity(items.len());
    for item in items {
        match at.entry(Identity::of(item)) {
            Entry::Occupied(seen) => {
                let winner = &mut winners[*seen.get()];
                if item.row.observed_at_us > winner.row.observed_at_us {
                    *winner = *item;
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(winners.len());
                winners.push(*item);
            }
        }
    }
    winners
}

/// What `facts` holds for an identity, as far as the rollups need it.
struct Stored {
    observed_at: i64,
    report: String,
    currency: String,
    sums: RollupSums,
    extras: BTreeMap<String, i64>,
}

/// A campaign-day: `(tenant, date, platform, account_id)` and the campaign.
type Cell<'a> = (AccountDay<'a>, &'a str);

/// The campaign-days `items` fall in, each once, in key order (so the
/// statements that seek them walk the B-tree forward). Deduplicated by hash
/// first: a batch has ten or more rows per campaign-day, and sorting every
/// row's cell was 6% of the write.
fn cells<'a>(items: &[Item<'a>]) -> Vec<Cell<'a>> {
    let unique: foldhash::HashSet<Cell<'a>> = items.iter().map(cell_of).collect();
    let mut cells: Vec<Cell<'a>> = unique.into_iter().collect();
    cells.sort_unstable();
    cells
}

/// The campaign-days of `items` that hold facts already. Every fact counts
/// one row in its campaign-day's rollups, so this reads one rollup seek per
/// campaign-day instead of one fact seek per row: a report of new days looks
/// nothing else up.
fn cells_with_facts<'a>(
    tx: &Transaction<'_>,
    items: &[Item<'a>],
) -> Result<foldhash::HashSet<Cell<'a>>> {
    let mut found = foldhash::HashSet::default();
    let mut holds = tx.prepare_cached(
        "SELECT 1 FROM rollup_days WHERE tenant = ?1 AND date = ?2 AND campaign_id = ?3
           AND platform = ?4 AND account_id = ?5 AND rows > 0 LIMIT 1",
    )?;
    for cell in cells(items) {
        let ((tenant, date, platform, account_id), campaign) = cell;
        if holds.exists(params![tenant, date, campaign, platform, account_id])? {
            found.insert(cell);
        }
    }
    Ok(found)
}

/// The cell an item falls in.
fn cell_of<'a>(item: &Item<'a>) -> Cell<'a> {
    (
        (
            item.tenant,
            item.row.date,
            item.row.platform.as_str(),
            item.row.account_id.as_str(),
        ),
        item.campaign_id(),
    )
}

/// The stored rows of `winners`' identities, in their order (`None`: new).
/// Only identities in a campaign-day that holds facts are looked up, each
/// with one seek on the facts' key.
fn stored(tx: &Transaction<'_>, winners: &[Item<'_>]) -> Result<Vec<Option<Stored>>> {
    let mut out: Vec<Option<Stored>> = winners.iter().map(|_| None).collect();
    let cells = cells_with_facts(tx, winners)?;
    let mut lookup = tx.prepare_cached(
        "SELECT observed_at, report, currency, impressions, clicks, spend, conversions,
                conversion_value, extras
         FROM facts WHERE tenant = ?1 AND campaign_id = ?2 AND platform = ?3
           AND account_id = ?4 AND date = ?5 AND ad_group_id = ?6 AND ad_id = ?7
           AND hour = ?8 AND breakdown = ?9",
    )?;
    for (item, slot) in winners.iter().zip(out.iter_mut()) {
        if !cells.contains(&cell_of(item)) {
            continue;
        }
        let id = Identity::of(item);
        let found = lookup
            .query_row(
                params![
                    id.tenant,
                    id.campaign_id,
                    id.platform,
                    id.account_id,
                    id.date,
                    id.ad_group_id,
                    id.ad_id,
                    id.hour,
                    id.breakdown
                ],
                |row| {
                    let extras: Option<String> = row.get(8)?;
                    Ok(Stored {
                        observed_at: row.get(0)?,
                        report: row.get(1)?,
                        currency: row.get(2)?,
                        sums: RollupSums {
                            rows: 1,
                            impressions: row.get(3)?,
                            clicks: row.get(4)?,
                            spend: row.get(5)?,
                            conversions: row.get(6)?,
                            conversion_value: row.get(7)?,
                        },
                        extras: extras
                            .and_then(|e| serde_json::from_str(&e).ok())
                            .unwrap_or_default(),
                    })
                },
            )
            .optional()?;
        *slot = found;
    }
    Ok(out)
}

/// Write the snapshots that change a stored fact (new, or strictly newer
/// than the stored one) and their rollup changes; returns those written.
fn write_snapshots<'a>(tx: &Transaction<'_>, items: &[Item<'a>]) -> Result<Vec<Item<'a>>> {
    let winners = winners(items);
    let stored = stored(tx, &winners)?;
    let reports: Vec<std::borrow::Cow<'static, str>> = winners.iter().map(Item::report).collect();
    let mut changes = RollupChanges::default();
    let mut written = Vec::with_capacity(winners.len());
    for ((item, old), report) in winners.iter().zip(&stored).zip(&reports) {
        let cell = |report, currency| RollupKey {
            tenant: item.tenant,
            date: item.row.date,
            campaign_id: item.campaign_id(),
            platform: &item.row.platform,
            account_id: &item.row.account_id,
            report,
            currency,
        };
        if let Some(old) = old {
            if old.observed_at >= item.row.observed_at_us {
                continue;
            }
            changes.add(cell(&old.report, &old.currency), &old.sums, &old.extras, -1);
        }
        let sums = RollupSums {
            rows: 1,
            impressions: item.row.impressions,
            clicks: item.row.clicks,
            spend: item.row.spend_micros,
            conversions: item.row.conversions_micros,
            conversion_value: item.row.conversion_value_micros,
        };
        changes.add(cell(report, item.currency()), &sums, &item.row.extras, 1);
        written.push((*item, report.as_ref()));
    }
    // In key order, so the inserts walk the table's B-tree forward. A batch
    // is a few records, each mostly in order already: the stable sort merges
    // those runs (the unstable one sorted them from scratch, 5% of a write).
    written.sort_by(|(a, _), (b, _)| Identity::of(a).cmp(&Identity::of(b)));
    {
        let mut insert = tx.prepare_cached(&insert_sql("facts", SNAPSHOT_CONFLICT))?;
        for (item, report) in &written {
            insert_row(&mut insert, item, report)?;
        }
    }
    changes.write(tx)?;
    Ok(written.into_iter().map(|(item, _)| item).collect())
}

/// A rollup row's key, in `ROLLUP_KEY` order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct RollupKey<'a> {
    tenant: &'a str,
    date: i32,
    campaign_id: &'a str,
    platform: &'a str,
    account_id: &'a str,
    report: &'a str,
    currency: &'a str,
}

impl RollupKey<'_> {
    /// The key's values in `ROLLUP_KEY` order: an upsert's first parameters.
    fn values(&self) -> [&dyn ToSql; 7] {
        [
            &self.tenant,
            &self.date,
            &self.campaign_id,
            &self.platform,
            &self.account_id,
            &self.report,
            &self.currency,
        ]
    }
}

/// The summed columns of a rollup row (`rows` counts facts).
#[derive(Clone, Copy, Default)]
struct RollupSums {
    rows: i64,
    impressions: i64,
    clicks: i64,
    spend: i64,
    conversions: i64,
    conversion_value: i64,
}

/// What one write adds to (or takes from) each rollup row.
#[derive(Default)]
struct RollupChanges<'a> {
    days: HashMap<RollupKey<'a>, RollupSums>,
    extras: HashMap<(RollupKey<'a>, &'a str), i64>,
}

impl<'a> RollupChanges<'a> {
    /// Add `sign` (1 or -1) times a fact's values to its rollup row.
    fn add(
        &mut self,
        key: RollupKey<'a>,
        sums: &RollupSums,
        extras: &'a BTreeMap<String, i64>,
        sign: i64,
    ) {
        let total = self.days.entry(key).or_default();
        total.rows += sign * sums.rows;
        total.impressions += sign * sums.impressions;
        total.clicks += sign * sums.clicks;
        total.spend += sign * sums.spend;
        total.conversions += sign * sums.conversions;
        total.conversion_value += sign * sums.conversion_value;
        for (name, value) in extras {
            *self.extras.entry((key, name)).or_default() += sign * value;
        }
    }

    fn write(&self, tx: &Transaction<'_>) -> Result<()> {
        let mut days = tx.prepare_cached(&format!(
            "INSERT INTO rollup_days ({ROLLUP_KEY}, rows, impressions, clicks, spend,
                                      conversions, conversion_value)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT ({ROLLUP_KEY}) DO UPDATE SET rows = rows + excluded.rows,
                impressions = impressions + excluded.impressions,
                clicks = clicks + excluded.clicks, spend = spend + excluded.spend,
                conversions = conversions + excluded.conversions,
                conversion_value = conversion_value + excluded.conversion_value"
        ))?;
        for (key, sums) in &self.days {
            let sums: [&dyn ToSql; 6] = [
                &sums.rows,
                &sums.impressions,
                &sums.clicks,
                &sums.spend,
                &sums.conversions,
                &sums.conversion_value,
            ];
            days.execute(params_from_iter(key.values().into_iter().chain(sums)))?;
        }
        let mut extras = tx.prepare_cached(&format!(
            "INSERT INTO rollup_extras ({ROLLUP_KEY}, name, value)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT ({ROLLUP_KEY}, name) DO UPDATE SET value = value + excluded.value"
        ))?;
        for ((key, name), value) in self.extras.iter().filter(|(_, v)| **v != 0) {
            let named: [&dyn ToSql; 2] = [name, value];
            extras.execute(params_from_iter(key.values().into_iter().chain(named)))?;
        }
        Ok(())
    }
}

/// Recompute `rollup_chosen` for the campaign-days `items` touch: per
/// campaign-day one delete and one insert, each a seek on the primary key.
/// What they take out and put in (`RETURNING`) is the change to the
/// account-day sums in `rollup_accounts`, added with one upsert per
/// account-day and currency.
fn choose_reports(tx: &Transaction<'_>, items: &[Item<'_>]) -> Result<()> {
    let filter = "r.tenant = ?1 AND r.date = ?2 AND r.campaign_id = ?3 AND r.platform = ?4 \
                  AND r.account_id = ?5";
    let returning = " RETURNING currency, rows, impressions, clicks, spend, conversions, \
                     conversion_value";
    let mut delete = tx.prepare_cached(&format!(
        "DELETE FROM rollup_chosen WHERE tenant = ?1 AND date = ?2 AND campaign_id = ?3
           AND platform = ?4 AND account_id = ?5{returning}"
    ))?;
    let mut insert = tx.prepare_cached(&format!("{}{returning}", chosen_from_days(filter)))?;
    let mut changes: HashMap<(AccountDay<'_>, String), [i64; 6]> = HashMap::default();
    for (account_day, campaign) in cells(items) {
        let (tenant, date, platform, account_id) = account_day;
        let cell = params![tenant, date, campaign, platform, account_id];
        for (statement, sign) in [(&mut delete, -1), (&mut insert, 1)] {
            let mut rows = statement.query(cell)?;
            while let Some(row) = rows.next()? {
                let total = changes.entry((account_day, row.get(0)?)).or_default();
                for (i, sum) in total.iter_mut().enumerate() {
                    *sum += sign * row.get::<_, i64>(i + 1)?;
                }
            }
        }
    }
    let mut upsert = tx.prepare_cached(&format!(
        "INSERT INTO rollup_accounts ({ACCOUNT_DAY}, currency, rows, impressions, clicks, spend,
                                      conversions, conversion_value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT ({ACCOUNT_DAY}, currency) DO UPDATE SET rows = rows + excluded.rows,
            impressions = impressions + excluded.impressions,
            clicks = clicks + excluded.clicks, spend = spend + excluded.spend,
            conversions = conversions + excluded.conversions,
            conversion_value = conversion_value + excluded.conversion_value"
    ))?;
    let mut changes: Vec<_> = changes
        .into_iter()
        .filter(|(_, sums)| sums.iter().any(|v| *v != 0))
        .collect();
    // In key order, so the upserts walk the table's B-tree forward.
    changes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (((tenant, date, platform, account_id), currency), sums) in changes {
        let key: [&dyn ToSql; 5] = [&tenant, &date, &platform, &account_id, &currency];
        let sums = sums.iter().map(|v| v as &dyn ToSql);
        upsert.execute(params_from_iter(key.into_iter().chain(sums)))?;
    }
    Ok(())
}

/// An account-day: `(tenant, date, platform, account_id)`.
type AccountDay<'a> = (&'a str, i32, &'a str, &'a str);

/// Upsert the hierarchy `entities` teach; a row that would not change is
/// left alone (no page written for the same ad seen again).
fn write_entities(
    tx: &Transaction<'_>,
    entities: &HashMap<EntityKey<'_>, Learned<'_>>,
) -> Result<()> {
    // In key order, so the upserts walk the table's B-tree forward.
    let mut entities: Vec<_> = entities.iter().collect();
    entities.sort_unstable_by_key(|(key, _)| **key);
    let mut upsert = tx.prepare_cached(
        "INSERT INTO entities (tenant, platform, level, id, account_id, campaign_id,
                               ad_group_id, campaign_name, currency)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (tenant, platform, level, id) DO UPDATE SET
            account_id = excluded.account_id, campaign_id = excluded.campaign_id,
            ad_group_id = COALESCE(excluded.ad_group_id, entities.ad_group_id),
            campaign_name = COALESCE(excluded.campaign_name, entities.campaign_name),
            currency = excluded.currency
          WHERE entities.account_id IS NOT excluded.account_id
            OR entities.campaign_id IS NOT excluded.campaign_id
            OR (excluded.ad_group_id IS NOT NULL
                AND entities.ad_group_id IS NOT excluded.ad_group_id)
            OR (excluded.campaign_name IS NOT NULL
                AND entities.campaign_name IS NOT excluded.campaign_name)
            OR entities.currency IS NOT excluded.currency",
    )?;
    for ((tenant, platform, level, id), entity) in entities {
        upsert.execute(params![
            tenant,
            platform,
            level,
            id,
            entity.account_id,
            entity.campaign_id,
            entity.ad_group_id,
            entity.name,
            entity.currency
        ])?;
    }
    Ok(())
}

/// The columns facts and deltas share, in the order [`insert_row`] binds them.
const ROW_COLUMNS: &str = "tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date, \
     hour, currency, impressions, clicks, spend, conversions, conversion_value, extras, \
     observed_at, pipeline, adapter, adapter_version, breakdown";

/// The one-row insert into `table` (`facts`, whose own column is the row's
/// report key, or `deltas`, whose own column is its dedup key), with
/// `on_conflict` deciding what a repeated identity does.
fn insert_sql(table: &str, on_conflict: &str) -> String {
    let own_column = if table == "deltas" {
        "dedup_key"
    } else {
        "report"
    };
    let slots = (1..=21)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("INSERT INTO {table} ({ROW_COLUMNS}, {own_column}) VALUES ({slots}){on_conflict}")
}

/// Run `insert` (from [`insert_sql`]) for `item`, `own` being its own column.
fn insert_row(
    insert: &mut rusqlite::CachedStatement<'_>,
    item: &Item<'_>,
    own: &str,
) -> Result<()> {
    let row = item.row;
    insert.execute(params![
        item.tenant,
        row.platform,
        row.account_id,
        item.campaign_id(),
        item.ad_group_id(),
        item.ad_id(),
        row.date,
        item.hour(),
        item.currency(),
        row.impressions,
        row.clicks,
        row.spend_micros,
        row.conversions_micros,
        row.conversion_value_micros,
        item.extras_json(),
        row.observed_at_us,
        item.pipeline,
        row.adapter,
        row.adapter_version,
        item.breakdown(),
        own
    ])?;
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
