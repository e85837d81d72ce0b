//! How the embedded store writes one batch, in one transaction: facts, their
//! rollups, the report chosen per campaign-day, deltas, the ad hierarchy and
//! the bus position.
//!
//! The rollups are kept here, not by triggers. Per row identity the batch's
//! winning row (its newest observation, the first of equal ones: what the
//! upsert rule would leave) is compared with the stored row, read with one
//! join per chunk; only a new or strictly newer row is written, and each
//! rollup row receives, summed, the new values minus those they replace. A
//! duplicate or older row changes nothing, so a batch delivered again leaves
//! facts and rollups as they were. Every statement is a multi-row one: a
//! statement is a round trip to SQLite's connection thread.

use std::collections::hash_map::Entry;
use std::collections::BTreeMap;

use foldhash::HashMap;

use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Row as _, Sqlite};

use super::schema::{chosen_from_days, ROLLUP_KEY};
use super::CONSUMER;
use crate::store::batch::{Batch, Item};
use crate::store::hierarchy::{EntityKey, Learned};
use crate::store::Result;

type Tx<'c> = sqlx::Transaction<'c, Sqlite>;

/// Write `batch` in one transaction.
pub(super) async fn write(pool: &SqlitePool, batch: &Batch<'_>) -> Result<()> {
    let mut tx = pool.begin().await?;
    let written = write_snapshots(&mut tx, &batch.snapshots).await?;
    choose_reports(&mut tx, &written).await?;
    let deltas: Vec<_> = batch.deltas.iter().map(|d| (*d, d.dedup_key())).collect();
    for chunk in deltas.chunks(ROWS_PER_STATEMENT) {
        insert(&mut tx, "deltas", chunk, DELTA_CONFLICT).await?;
    }
    write_entities(&mut tx, &batch.entities).await?;
    if !batch.extra_metrics.is_empty() {
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT OR IGNORE INTO extra_metrics (tenant, name) ");
        q.push_values(&batch.extra_metrics, |mut b, (tenant, name)| {
            b.push_bind(*tenant).push_bind(*name);
        });
        q.build().execute(&mut *tx).await?;
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

/// A fact's identity: the primary key of `facts`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Identity<'a> {
    tenant: &'a str,
    date: i32,
    platform: &'a str,
    account_id: &'a str,
    campaign_id: &'a str,
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
            platform: &item.row.platform,
            account_id: &item.row.account_id,
            campaign_id: item.campaign_id(),
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

/// Identities looked up per statement (10 binds each).
const LOOKUPS_PER_STATEMENT: usize = 300;

/// A campaign-day: `(tenant, date, platform, account_id)` and the campaign.
type Cell<'a> = ((&'a str, i32, &'a str, &'a str), &'a str);

/// The campaign-days `items` fall in, by `(tenant, date, platform,
/// account_id)`: each such group is one seek per campaign on the rollup keys.
fn cells_by_day<'a>(
    items: &[Item<'a>],
) -> BTreeMap<(&'a str, i32, &'a str, &'a str), Vec<&'a str>> {
    let mut cells: BTreeMap<_, Vec<&str>> = BTreeMap::new();
    for item in items {
        let (day, campaign) = cell_of(item);
        cells.entry(day).or_default().push(campaign);
    }
    for campaigns in cells.values_mut() {
        campaigns.sort_unstable();
        campaigns.dedup();
    }
    cells
}

/// Campaigns per statement when reading or recomputing campaign-days.
const CAMPAIGNS_PER_STATEMENT: usize = 500;

/// `tenant = ? AND date = ? AND platform = ? AND account_id = ? AND
/// campaign_id IN (…)` on rows `row` (a prefix such as `r.`, or empty).
fn push_cells<'q>(
    q: &mut QueryBuilder<'q, Sqlite>,
    row: &str,
    (tenant, date, platform, account_id): (&str, i32, &str, &str),
    campaigns: &[&str],
) {
    q.push(format!("{row}tenant = "))
        .push_bind(tenant.to_owned())
        .push(format!(" AND {row}date = "))
        .push_bind(date)
        .push(format!(" AND {row}platform = "))
        .push_bind(platform.to_owned())
        .push(format!(" AND {row}account_id = "))
        .push_bind(account_id.to_owned())
        .push(format!(" AND {row}campaign_id IN ("));
    let mut list = q.separated(", ");
    for campaign in campaigns {
        list.push_bind(campaign.to_string());
    }
    q.push(")");
}

/// The campaign-days of `items` that hold facts already. Every fact counts
/// one row in its campaign-day's rollups, so this reads one rollup seek per
/// campaign-day instead of one fact seek per row: a report of new days looks
/// nothing else up.
async fn cells_with_facts<'a>(
    tx: &mut Tx<'_>,
    items: &[Item<'a>],
) -> Result<foldhash::HashSet<Cell<'a>>> {
    let mut found = foldhash::HashSet::default();
    for (day, campaigns) in cells_by_day(items) {
        for chunk in campaigns.chunks(CAMPAIGNS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT DISTINCT campaign_id FROM rollup_days WHERE rows > 0 AND ",
            );
            push_cells(&mut q, "", day, chunk);
            // The chunk is sorted: each stored campaign is found by search.
            for row in q.build().fetch_all(&mut **tx).await? {
                let stored: &str = row.get(0);
                if let Ok(at) = chunk.binary_search(&stored) {
                    found.insert((day, chunk[at]));
                }
            }
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
/// Only identities in a campaign-day that holds facts are looked up.
async fn stored(tx: &mut Tx<'_>, winners: &[Item<'_>]) -> Result<Vec<Option<Stored>>> {
    let mut out: Vec<Option<Stored>> = winners.iter().map(|_| None).collect();
    let cells = cells_with_facts(tx, winners).await?;
    let candidates: Vec<(usize, &Item<'_>)> = winners
        .iter()
        .enumerate()
        .filter(|(_, item)| cells.contains(&cell_of(item)))
        .collect();
    for chunk in candidates.chunks(LOOKUPS_PER_STATEMENT) {
        // A join, not `(…) IN (VALUES …)`: SQLite scans the table for the latter.
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT v.column1, f.observed_at, f.report, f.currency, f.impressions, f.clicks,
                    f.spend, f.conversions, f.conversion_value, f.extras
             FROM (",
        );
        q.push_values(chunk, |mut b, (i, item)| {
            let id = Identity::of(item);
            b.push_bind(*i as i64)
                .push_bind(id.tenant)
                .push_bind(id.date)
                .push_bind(id.platform)
                .push_bind(id.account_id)
                .push_bind(id.campaign_id)
                .push_bind(id.ad_group_id)
                .push_bind(id.ad_id)
                .push_bind(id.hour)
                .push_bind(id.breakdown);
        });
        q.push(
            ") AS v JOIN facts AS f ON f.tenant = v.column2 AND f.date = v.column3
                AND f.platform = v.column4 AND f.account_id = v.column5
                AND f.campaign_id = v.column6 AND f.ad_group_id = v.column7
                AND f.ad_id = v.column8 AND f.hour = v.column9 AND f.breakdown = v.column10",
        );
        for row in q.build().fetch_all(&mut **tx).await? {
            let Some(slot) = usize::try_from(row.get::<i64, _>(0))
                .ok()
                .and_then(|i| out.get_mut(i))
            else {
                continue;
            };
            let extras: Option<String> = row.get(9);
            *slot = Some(Stored {
                observed_at: row.get(1),
                report: row.get(2),
                currency: row.get(3),
                sums: RollupSums {
                    rows: 1,
                    impressions: row.get(4),
                    clicks: row.get(5),
                    spend: row.get(6),
                    conversions: row.get(7),
                    conversion_value: row.get(8),
                },
                extras: extras
                    .and_then(|e| serde_json::from_str(&e).ok())
                    .unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// Write the snapshots that change a stored fact (new, or strictly newer
/// than the stored one) and their rollup changes; returns those written.
async fn write_snapshots<'a>(tx: &mut Tx<'_>, items: &[Item<'a>]) -> Result<Vec<Item<'a>>> {
    let winners = winners(items);
    let stored = stored(tx, &winners).await?;
    let reports: Vec<String> = winners.iter().map(Item::report).collect();
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
        written.push((*item, report.as_str()));
    }
    for chunk in written.chunks(ROWS_PER_STATEMENT) {
        insert(tx, "facts", chunk, SNAPSHOT_CONFLICT).await?;
    }
    changes.write(tx).await?;
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

/// Rollup rows per statement (13 binds each).
const ROLLUPS_PER_STATEMENT: usize = 200;

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

    async fn write(&self, tx: &mut Tx<'_>) -> Result<()> {
        let days: Vec<_> = self.days.iter().collect();
        for chunk in days.chunks(ROLLUPS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "INSERT INTO rollup_days ({ROLLUP_KEY}, rows, impressions, clicks, spend,
                                          conversions, conversion_value) "
            ));
            q.push_values(chunk, |mut b, (key, sums)| {
                push_key(&mut b, key);
                b.push_bind(sums.rows)
                    .push_bind(sums.impressions)
                    .push_bind(sums.clicks)
                    .push_bind(sums.spend)
                    .push_bind(sums.conversions)
                    .push_bind(sums.conversion_value);
            });
            q.push(format!(
                " ON CONFLICT ({ROLLUP_KEY}) DO UPDATE SET rows = rows + excluded.rows,
                    impressions = impressions + excluded.impressions,
                    clicks = clicks + excluded.clicks, spend = spend + excluded.spend,
                    conversions = conversions + excluded.conversions,
                    conversion_value = conversion_value + excluded.conversion_value"
            ));
            q.build().execute(&mut **tx).await?;
        }
        let extras: Vec<_> = self.extras.iter().filter(|(_, v)| **v != 0).collect();
        for chunk in extras.chunks(ROLLUPS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "INSERT INTO rollup_extras ({ROLLUP_KEY}, name, value) "
            ));
            q.push_values(chunk, |mut b, ((key, name), value)| {
                push_key(&mut b, key);
                b.push_bind(*name).push_bind(**value);
            });
            q.push(format!(
                " ON CONFLICT ({ROLLUP_KEY}, name) DO UPDATE SET value = value + excluded.value"
            ));
            q.build().execute(&mut **tx).await?;
        }
        Ok(())
    }
}

fn push_key<'q>(
    b: &mut sqlx::query_builder::Separated<'_, 'q, Sqlite, &'static str>,
    key: &RollupKey<'q>,
) {
    b.push_bind(key.tenant)
        .push_bind(key.date)
        .push_bind(key.campaign_id)
        .push_bind(key.platform)
        .push_bind(key.account_id)
        .push_bind(key.report)
        .push_bind(key.currency);
}

/// Recompute `rollup_chosen` for the campaign-days `items` touch: per
/// (tenant, day, platform, account), one delete and one insert for up to
/// [`CAMPAIGNS_PER_STATEMENT`] campaigns, each a seek on the primary key.
async fn choose_reports(tx: &mut Tx<'_>, items: &[Item<'_>]) -> Result<()> {
    // The filter goes where chosen_from_days puts it.
    let sql = chosen_from_days("\u{0}");
    let (head, tail) = sql.split_once('\u{0}').unwrap_or((&sql, ""));
    for (day, campaigns) in cells_by_day(items) {
        for chunk in campaigns.chunks(CAMPAIGNS_PER_STATEMENT) {
            let mut delete = QueryBuilder::<Sqlite>::new("DELETE FROM rollup_chosen WHERE ");
            push_cells(&mut delete, "", day, chunk);
            delete.build().execute(&mut **tx).await?;
            let mut insert = QueryBuilder::<Sqlite>::new(head.to_owned());
            push_cells(&mut insert, "r.", day, chunk);
            insert.push(tail.to_owned());
            insert.build().execute(&mut **tx).await?;
        }
    }
    Ok(())
}

/// Entities per statement (9 binds each).
const ENTITIES_PER_STATEMENT: usize = 200;

/// Upsert the hierarchy `entities` teach; a row that would not change is
/// left alone (no page written for the same ad seen again).
async fn write_entities(
    tx: &mut Tx<'_>,
    entities: &BTreeMap<EntityKey<'_>, Learned<'_>>,
) -> Result<()> {
    let entities: Vec<_> = entities.iter().collect();
    for chunk in entities.chunks(ENTITIES_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO entities (tenant, platform, level, id, account_id, campaign_id,
                                   ad_group_id, campaign_name, currency) ",
        );
        q.push_values(chunk, |mut b, ((tenant, platform, level, id), entity)| {
            b.push_bind(*tenant)
                .push_bind(*platform)
                .push_bind(*level)
                .push_bind(*id)
                .push_bind(entity.account_id)
                .push_bind(entity.campaign_id)
                .push_bind(entity.ad_group_id)
                .push_bind(entity.name)
                .push_bind(entity.currency);
        });
        q.push(
            " ON CONFLICT (tenant, platform, level, id) DO UPDATE SET
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
        );
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Rows per multi-row INSERT (21 binds each, well under SQLite's bind limit).
const ROWS_PER_STATEMENT: usize = 200;

/// The columns facts and deltas share, in the order [`insert`] binds them.
const ROW_COLUMNS: &str = "tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date, \
     hour, currency, impressions, clicks, spend, conversions, conversion_value, extras, \
     observed_at, pipeline, adapter, adapter_version, breakdown";

/// Insert `items` into `table` (`facts` with each row's report key, or
/// `deltas` with its dedup key: the value paired with the item), with the row
/// identity of [`Item`] and `on_conflict` deciding what a repeated identity
/// does.
async fn insert(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    table: &str,
    items: &[(Item<'_>, &str)],
    on_conflict: &str,
) -> Result<()> {
    let deltas = table == "deltas";
    // Deltas carry their dedup key; facts, their report key.
    let own_column = if deltas { ", dedup_key" } else { ", report" };
    let mut q =
        QueryBuilder::<Sqlite>::new(format!("INSERT INTO {table} ({ROW_COLUMNS}{own_column}) "));
    q.push_values(items, |mut b, (item, own)| {
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
            .push_bind(item.breakdown())
            .push_bind(*own);
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
