//! The ClickHouse store's write path: per batch, the facts that are new or
//! strictly newer than the stored ones, and the rollup changes they make,
//! all in one insert into `adpipe_writes`.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use clickhouse::Row as ChRow;
use serde::{Deserialize, Serialize};

use super::{
    date_of, day_text, extras_of, insert_rows, latest_facts_sql, ClickHouseStore, Sql, CONSUMER,
};
use crate::store::batch::{Batch, Item};
use crate::store::Result;

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
pub(super) struct WriteRow {
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
pub(super) struct Contribution {
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

    /// The campaign-day this contribution belongs to.
    fn cell(&self) -> Cell {
        (
            self.tenant.clone(),
            self.date,
            self.campaign_id.clone(),
            self.platform.clone(),
            self.account_id.clone(),
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
pub(super) type RollupKey = (String, u16, String, String, String, String, String);

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

/// The extra metrics' rollup rows of `contributions` (stored facts being
/// rolled up for the first time).
pub(super) fn extras_rollup_rows(contributions: &[Contribution]) -> Vec<WriteRow> {
    let mut changes = RollupChanges::default();
    for c in contributions {
        changes.add(c, 1);
    }
    changes.sums.clear();
    let mut rows = Vec::new();
    changes.into_rows(&mut rows);
    rows
}

#[derive(ChRow, Serialize, Deserialize)]
pub(super) struct EntityRow {
    pub(super) tenant: String,
    pub(super) platform: String,
    pub(super) level: String,
    pub(super) id: String,
    pub(super) account_id: String,
    pub(super) campaign_id: String,
    pub(super) ad_group_id: String,
    pub(super) campaign_name: String,
    pub(super) currency: String,
    pub(super) version: u64,
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

/// Campaigns per lookup of stored observations.
const CAMPAIGNS_PER_LOOKUP: usize = 500;

/// The columns of a [`Contribution`], as `adpipe_facts` holds them.
pub(super) const CONTRIBUTION_COLUMNS: &str =
    "tenant, platform, account_id, campaign_id, ad_group_id, ad_id, \
     date, hour, breakdown, report, currency, impressions, clicks, spend, conversions, \
     conversion_value, extras, observed_at";

/// A campaign-day: tenant, day, campaign, platform, account.
type Cell = (String, u16, String, String, String);

/// What the rollup holds of one campaign-day: per (report, currency), the
/// number of facts and the five sums (ordered by report, so the first
/// report with facts is the chosen one).
type CellSums = BTreeMap<(String, String), [i64; 6]>;

/// The campaign-day of a rollup key.
fn cell_of(key: &RollupKey) -> Cell {
    let (tenant, date, campaign_id, platform, account_id, _, _) = key;
    (
        tenant.clone(),
        *date,
        campaign_id.clone(),
        platform.clone(),
        account_id.clone(),
    )
}

/// A campaign-day's chosen report: the coarsest (smallest key) that holds
/// facts, as [`crate::insights::report_key`] orders them.
fn chosen_report(sums: &CellSums) -> Option<&str> {
    let mut facts: BTreeMap<&str, i64> = BTreeMap::new();
    for ((report, _), s) in sums {
        *facts.entry(report.as_str()).or_default() += s[0];
    }
    facts
        .into_iter()
        .find(|(_, rows)| *rows > 0)
        .map(|(report, _)| report)
}

/// The `adpipe_rollup_chosen` changes that `changes` (to the rollup) make:
/// per touched campaign-day, its chosen report's sums before (`stored`) are
/// taken away and the chosen report's sums after are added, per currency.
fn chosen_changes(
    stored: &HashMap<Cell, CellSums>,
    changes: &HashMap<RollupKey, [i64; 6]>,
) -> Vec<WriteRow> {
    let mut after: HashMap<Cell, CellSums> = HashMap::new();
    for (key, change) in changes {
        let cell = cell_of(key);
        let sums = after
            .entry(cell)
            .or_insert_with_key(|cell| stored.get(cell).cloned().unwrap_or_default())
            .entry((key.5.clone(), key.6.clone()))
            .or_default();
        for (total, value) in sums.iter_mut().zip(change) {
            *total += value;
        }
    }
    let empty = CellSums::new();
    let mut rows = vec![];
    for (cell, now) in after {
        let before = stored.get(&cell).unwrap_or(&empty);
        let mut diff: BTreeMap<&str, [i64; 6]> = BTreeMap::new();
        for (sums, sign) in [(before, -1), (&now, 1)] {
            let Some(report) = chosen_report(sums) else {
                continue;
            };
            for ((_, currency), s) in sums.iter().filter(|((r, _), _)| r == report) {
                let total = diff.entry(currency.as_str()).or_default();
                for (t, v) in total.iter_mut().zip(s) {
                    *t += sign * v;
                }
            }
        }
        for (currency, s) in diff {
            if s.iter().all(|v| *v == 0) {
                continue;
            }
            let (tenant, date, campaign_id, platform, account_id) = cell.clone();
            rows.push(WriteRow {
                target: "chosen",
                tenant,
                date,
                campaign_id,
                platform,
                account_id,
                currency: currency.to_owned(),
                rows: s[0],
                impressions: s[1],
                clicks: s[2],
                spend: s[3],
                conversions: s[4],
                conversion_value: s[5],
                ..WriteRow::default()
            });
        }
    }
    rows
}

/// A rollup row as the writer reads it back (summed over its parts).
#[derive(ChRow, Deserialize)]
struct RollupRead {
    tenant: String,
    date: u16,
    campaign_id: String,
    platform: String,
    account_id: String,
    report: String,
    currency: String,
    s_rows: i64,
    s_impressions: i64,
    s_clicks: i64,
    s_spend: i64,
    s_conversions: i64,
    s_conversion_value: i64,
}

/// `tenant = ? AND campaign_id IN (…) AND date` within `from..=to`.
fn campaigns_filter(tenant: &str, campaigns: &[&str], from: u16, to: u16) -> Sql {
    let mut filter = Sql::default();
    filter
        .push("tenant = ")
        .bind(tenant)
        .push(" AND campaign_id IN (");
    for (i, campaign) in campaigns.iter().enumerate() {
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
    filter
}

/// Per tenant, the campaigns `wanted` names and the days they span, in
/// chunks of [`CAMPAIGNS_PER_LOOKUP`] campaigns: the filters of the lookups.
fn lookup_filters<'a>(wanted: impl Iterator<Item = &'a Contribution>) -> Vec<Sql> {
    let mut scopes: BTreeMap<&str, (std::collections::BTreeSet<&str>, u16, u16)> = BTreeMap::new();
    for c in wanted {
        let scope = scopes
            .entry(c.tenant.as_str())
            .or_insert_with(|| (Default::default(), u16::MAX, 0));
        scope.0.insert(c.campaign_id.as_str());
        scope.1 = scope.1.min(c.date);
        scope.2 = scope.2.max(c.date);
    }
    let mut filters = vec![];
    for (tenant, (campaigns, from, to)) in scopes {
        let campaigns: Vec<&str> = campaigns.into_iter().collect();
        for chunk in campaigns.chunks(CAMPAIGNS_PER_LOOKUP) {
            filters.push(campaigns_filter(tenant, chunk, from, to));
        }
    }
    filters
}

impl ClickHouseStore {
    /// The `adpipe_writes` rows of `items`: per identity the newest
    /// observation (the first of equals, as the embedded store keeps), when
    /// strictly newer than the stored one, as a fact plus the rollup changes
    /// from the stored observation to it, and the changes to the chosen
    /// reports' sums of the campaign-days it touches.
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
        // The rollup says which campaign-days hold facts: only their facts
        // are read (a report of new days reads no facts at all).
        let cells = self.stored_cells(newest.values().map(|(c, _)| c)).await?;
        let stored = self
            .stored_contributions(
                newest
                    .values()
                    .map(|(c, _)| c)
                    .filter(|c| cells.contains_key(&c.cell())),
            )
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
        rows.extend(chosen_changes(&cells, &changes.sums));
        changes.into_rows(&mut rows);
        Ok(rows)
    }

    /// What the rollup holds of the campaign-days `wanted` names (and of
    /// others of the same campaigns and days), for those holding facts.
    async fn stored_cells<'a>(
        &self,
        wanted: impl Iterator<Item = &'a Contribution>,
    ) -> Result<HashMap<Cell, CellSums>> {
        let mut cells: HashMap<Cell, CellSums> = HashMap::new();
        for filter in lookup_filters(wanted) {
            let mut sql = Sql::default();
            sql.push(
                "SELECT tenant, date, campaign_id, platform, account_id, report, currency,
                        sum(rows) AS s_rows, sum(impressions) AS s_impressions,
                        sum(clicks) AS s_clicks, sum(spend) AS s_spend,
                        sum(conversions) AS s_conversions,
                        sum(conversion_value) AS s_conversion_value
                 FROM adpipe_rollup WHERE ",
            )
            .append(&filter)
            .push(
                " GROUP BY tenant, date, campaign_id, platform, account_id, report, currency
                 HAVING s_rows > 0",
            );
            let rows: Vec<RollupRead> = sql.query(&self.client).fetch_all().await?;
            for r in rows {
                cells
                    .entry((r.tenant, r.date, r.campaign_id, r.platform, r.account_id))
                    .or_default()
                    .insert(
                        (r.report, r.currency),
                        [
                            r.s_rows,
                            r.s_impressions,
                            r.s_clicks,
                            r.s_spend,
                            r.s_conversions,
                            r.s_conversion_value,
                        ],
                    );
            }
        }
        Ok(cells)
    }

    /// The stored observation of each identity `wanted` names (and of others
    /// of the same campaigns and days, which the caller ignores).
    async fn stored_contributions<'a>(
        &self,
        wanted: impl Iterator<Item = &'a Contribution>,
    ) -> Result<HashMap<Identity, Contribution>> {
        let mut stored = HashMap::new();
        for filter in lookup_filters(wanted) {
            let mut sql = Sql::default();
            sql.push(&format!(
                "SELECT {CONTRIBUTION_COLUMNS} FROM {}",
                latest_facts_sql(&filter.text)
            ));
            sql.binds = filter.binds;
            let rows: Vec<Contribution> = sql.query(&self.client).fetch_all().await?;
            stored.extend(rows.into_iter().map(|c| (c.identity(), c)));
        }
        Ok(stored)
    }

    async fn insert<T>(&self, table: &str, rows: &[T]) -> Result<()>
    where
        for<'a> T: ChRow<Value<'a> = T> + Serialize,
    {
        insert_rows(&self.client, table, rows).await
    }

    /// One batched insert per table, then the position. A crash in between
    /// replays the batch, which the replacing tables absorb.
    pub(super) async fn write_batch(&self, batch: &Batch<'_>) -> Result<()> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(report: &str, currency: &str) -> RollupKey {
        (
            "t".into(),
            10,
            "c1".into(),
            "meta".into(),
            "act_1".into(),
            report.into(),
            currency.into(),
        )
    }

    fn stored(sums: &[(&str, &str, [i64; 6])]) -> HashMap<Cell, CellSums> {
        let cell = cell_of(&key("", ""));
        let sums = sums
            .iter()
            .map(|(report, currency, s)| (((*report).to_owned(), (*currency).to_owned()), *s))
            .collect();
        HashMap::from([(cell, sums)])
    }

    fn changes(sums: &[(&str, &str, [i64; 6])]) -> HashMap<RollupKey, [i64; 6]> {
        sums.iter()
            .map(|(report, currency, s)| (key(report, currency), *s))
            .collect()
    }

    /// (currency, rows, impressions) of each chosen change, by currency.
    fn summary(mut rows: Vec<WriteRow>) -> Vec<(String, i64, i64)> {
        rows.sort_by(|a, b| a.currency.cmp(&b.currency));
        rows.into_iter()
            .map(|r| {
                assert_eq!(r.target, "chosen");
                (r.currency, r.rows, r.impressions)
            })
            .collect()
    }

    #[test]
    fn a_coarser_report_arriving_replaces_the_chosen_sums() {
        // Stored: two ad rows; the batch brings the campaign's own row.
        let before = stored(&[("20", "USD", [2, 100, 0, 0, 0, 0])]);
        let batch = changes(&[("00", "USD", [1, 120, 0, 0, 0, 0])]);
        assert_eq!(
            summary(chosen_changes(&before, &batch)),
            vec![("USD".into(), 1 - 2, 120 - 100)]
        );
    }

    #[test]
    fn a_new_campaign_day_adds_its_coarsest_report_only() {
        let batch = changes(&[
            ("20", "USD", [3, 90, 0, 0, 0, 0]),
            ("10", "USD", [2, 80, 0, 0, 0, 0]),
        ]);
        assert_eq!(
            summary(chosen_changes(&HashMap::new(), &batch)),
            vec![("USD".into(), 2, 80)]
        );
    }

    #[test]
    fn changes_to_a_finer_report_leave_the_chosen_sums_alone() {
        let before = stored(&[
            ("00", "USD", [1, 50, 0, 0, 0, 0]),
            ("20", "USD", [2, 60, 0, 0, 0, 0]),
        ]);
        let batch = changes(&[("20", "USD", [1, 30, 0, 0, 0, 0])]);
        assert!(chosen_changes(&before, &batch).is_empty());
    }

    #[test]
    fn a_restatement_into_another_currency_moves_the_chosen_sums() {
        let before = stored(&[("00", "USD", [1, 50, 0, 0, 0, 0])]);
        let batch = changes(&[
            ("00", "USD", [-1, -50, 0, 0, 0, 0]),
            ("00", "EUR", [1, 70, 0, 0, 0, 0]),
        ]);
        assert_eq!(
            summary(chosen_changes(&before, &batch)),
            vec![("EUR".into(), 1, 70), ("USD".into(), -1, -50)]
        );
    }
}
