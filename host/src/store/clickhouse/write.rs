//! The ClickHouse store's write path: per batch, the facts that are new or
//! strictly newer than the stored ones, the rollup changes they make and the
//! changes to each touched campaign-day's chosen sums, all in one insert
//! into `adpipe_writes`; then deltas, the hierarchy, metric names and the
//! bus position.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::BTreeMap;
use std::ops::Range;

use clickhouse::{Client, Row as ChRow};
use foldhash::HashMap;
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
/// (`'rollup'`), an extra metric's rollup change (`'extra'`) or a change to
/// a campaign-day's chosen sums (`'chosen'`); columns another target uses are
/// left empty. It borrows from the batch and the rows read back, so a batch
/// of tens of thousands of rows copies no strings to be written.
#[derive(ChRow, Serialize, Default)]
pub(super) struct WriteRow<'a> {
    target: &'a str,
    tenant: &'a str,
    platform: &'a str,
    account_id: &'a str,
    campaign_id: &'a str,
    ad_group_id: &'a str,
    ad_id: &'a str,
    date: u16,
    hour: i8,
    currency: &'a str,
    impressions: i64,
    clicks: i64,
    spend: i64,
    conversions: i64,
    conversion_value: i64,
    extras: &'a str,
    observed_at: u64,
    pipeline: &'a str,
    adapter: &'a str,
    adapter_version: &'a str,
    breakdown: &'a str,
    report: &'a str,
    rows: i64,
    name: &'a str,
    value: i64,
}

impl<'a> WriteRow<'a> {
    /// This row carrying `sums`: the number of facts and the five sums, in
    /// [`Contribution::sums`]'s order.
    fn with_sums(self, sums: [i64; 6]) -> WriteRow<'a> {
        let [rows, impressions, clicks, spend, conversions, conversion_value] = sums;
        WriteRow {
            rows,
            impressions,
            clicks,
            spend,
            conversions,
            conversion_value,
            ..self
        }
    }
}

/// Insert `rows` into `adpipe_writes` in one exchange.
pub(super) async fn insert_writes(client: &Client, rows: &[WriteRow<'_>]) -> Result<()> {
    insert_rows::<WriteRow<'_>>(client, "adpipe_writes", rows).await
}

/// A fact's identity: tenant, platform, account, campaign, ad group, ad,
/// day, hour, breakdown.
type Identity<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    u16,
    i8,
    &'a str,
);

/// A campaign-day: tenant, day, campaign, platform, account.
type Cell<'a> = (&'a str, u16, &'a str, &'a str, &'a str);

/// A rollup row's key: tenant, day, campaign, platform, account, report,
/// currency.
type RollupKey<'a> = (&'a str, u16, &'a str, &'a str, &'a str, &'a str, &'a str);

/// The campaign-day of a rollup key.
fn cell_of<'a>(key: &RollupKey<'a>) -> Cell<'a> {
    (key.0, key.1, key.2, key.3, key.4)
}

/// The campaign-day of an identity.
fn cell_of_identity<'a>(id: &Identity<'a>) -> Cell<'a> {
    (id.0, id.6, id.3, id.1, id.2)
}

/// What the rollups hold of one stored fact, as read back.
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
    fn identity(&self) -> Identity<'_> {
        (
            &self.tenant,
            &self.platform,
            &self.account_id,
            &self.campaign_id,
            &self.ad_group_id,
            &self.ad_id,
            self.date,
            self.hour,
            &self.breakdown,
        )
    }

    /// The rollup key this contribution adds to.
    fn rollup_key(&self) -> RollupKey<'_> {
        (
            &self.tenant,
            self.date,
            &self.campaign_id,
            &self.platform,
            &self.account_id,
            &self.report,
            &self.currency,
        )
    }

    /// The extra metrics as stored (JSON text).
    pub(super) fn extras(&self) -> &str {
        &self.extras
    }

    /// One fact and its five sums.
    fn sums(&self) -> [i64; 6] {
        [
            1,
            self.impressions,
            self.clicks,
            self.spend,
            self.conversions,
            self.conversion_value,
        ]
    }
}

/// A batch's newest observation of one identity, about to be written when
/// strictly newer than the stored one (`stored`: its index in the stored
/// contributions).
struct Winner<'a> {
    item: &'a Item<'a>,
    date: u16,
    report: Cow<'static, str>,
    /// Where its extra metrics' JSON is in the write's [`ExtrasText`].
    extras: Option<Range<usize>>,
    stored: Option<usize>,
}

impl Winner<'_> {
    fn rollup_key(&self) -> RollupKey<'_> {
        let item = self.item;
        (
            item.tenant,
            self.date,
            item.campaign_id(),
            &item.row.platform,
            &item.row.account_id,
            &self.report,
            item.currency(),
        )
    }

    fn sums(&self) -> [i64; 6] {
        let row = self.item.row;
        [
            1,
            row.impressions,
            row.clicks,
            row.spend_micros,
            row.conversions_micros,
            row.conversion_value_micros,
        ]
    }

    /// The fact's row of `adpipe_writes` (its extras in `extras`).
    fn fact<'b>(&'b self, extras: &'b ExtrasText) -> WriteRow<'b> {
        let (item, row) = (self.item, self.item.row);
        WriteRow {
            target: "fact",
            tenant: item.tenant,
            platform: &row.platform,
            account_id: &row.account_id,
            campaign_id: item.campaign_id(),
            ad_group_id: item.ad_group_id(),
            ad_id: item.ad_id(),
            date: self.date,
            hour: item.hour(),
            currency: item.currency(),
            impressions: row.impressions,
            clicks: row.clicks,
            spend: row.spend_micros,
            conversions: row.conversions_micros,
            conversion_value: row.conversion_value_micros,
            extras: self.extras.clone().map_or("", |at| extras.get(at)),
            observed_at: item.observed_at(),
            pipeline: item.pipeline,
            adapter: &row.adapter,
            adapter_version: &row.adapter_version,
            breakdown: item.breakdown(),
            report: &self.report,
            ..WriteRow::default()
        }
    }
}

/// The extra metrics of a write's facts as stored (JSON objects), in one
/// buffer: a row's text is a range of it, not a string of its own.
#[derive(Default)]
struct ExtrasText(String);

impl ExtrasText {
    /// Append `extras` as the JSON object `serde_json` writes for the map
    /// (`{"name":value,…}` in name order); where it is.
    fn push(&mut self, extras: &BTreeMap<String, i64>) -> Range<usize> {
        let out = &mut self.0;
        let start = out.len();
        out.push('{');
        for (i, (name, value)) in extras.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let plain = name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b' '));
            if plain {
                out.push('"');
                out.push_str(name);
                out.push('"');
            } else {
                out.push_str(&serde_json::to_string(name).unwrap_or_default());
            }
            out.push(':');
            out.push_str(itoa::Buffer::new().format(*value));
        }
        out.push('}');
        start..out.len()
    }

    fn get(&self, at: Range<usize>) -> &str {
        self.0.get(at).unwrap_or_default()
    }
}

/// A rollup key's net change in one write: rows and the five sums, and
/// the extra metrics' values by name.
#[derive(Default)]
struct Totals<'a> {
    sums: [i64; 6],
    extras: Vec<(&'a str, i64)>,
}

/// Net rollup changes of one write, per key in the order keys were first
/// changed. Rows arrive grouped by campaign-day, so most changes are to the
/// key changed last, which is compared instead of hashed.
#[derive(Default)]
struct RollupChanges<'a> {
    keys: Vec<(RollupKey<'a>, Totals<'a>)>,
    index: HashMap<RollupKey<'a>, usize>,
}

impl<'a> RollupChanges<'a> {
    /// Add (`sign` 1) or subtract (`sign` -1) one fact's `sums` and `extras`.
    fn add(
        &mut self,
        key: RollupKey<'a>,
        sums: [i64; 6],
        extras: impl Iterator<Item = (&'a str, i64)>,
        sign: i64,
    ) {
        let at = match self.keys.last() {
            Some((last, _)) if *last == key => self.keys.len() - 1,
            _ => *self.index.entry(key).or_insert_with(|| {
                self.keys.push((key, Totals::default()));
                self.keys.len() - 1
            }),
        };
        let totals = &mut self.keys[at].1;
        for (total, value) in totals.sums.iter_mut().zip(sums) {
            *total += sign * value;
        }
        for (name, value) in extras {
            match totals.extras.iter_mut().find(|(n, _)| *n == name) {
                Some((_, total)) => *total += sign * value,
                None => totals.extras.push((name, sign * value)),
            }
        }
    }

    /// Each changed key and its net sums.
    fn sums(&self) -> impl Iterator<Item = (&RollupKey<'a>, &[i64; 6])> {
        self.keys.iter().map(|(key, totals)| (key, &totals.sums))
    }

    /// As rows of `adpipe_writes`, leaving out changes that cancel.
    fn rows(&self, rows: &mut Vec<WriteRow<'a>>) {
        let base = |target, key: &RollupKey<'a>| WriteRow {
            target,
            tenant: key.0,
            date: key.1,
            campaign_id: key.2,
            platform: key.3,
            account_id: key.4,
            report: key.5,
            currency: key.6,
            ..WriteRow::default()
        };
        for (key, totals) in &self.keys {
            let s = totals.sums;
            if s.iter().any(|v| *v != 0) {
                rows.push(base("rollup", key).with_sums(s));
            }
        }
        for (key, totals) in &self.keys {
            for &(name, value) in &totals.extras {
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
}

/// The extra metrics' rollup rows of `contributions` (stored facts being
/// rolled up for the first time), with the parsed `extras` of each.
pub(super) fn extras_rollup_rows<'a>(
    contributions: &'a [Contribution],
    extras: &'a [BTreeMap<String, i64>],
) -> Vec<WriteRow<'a>> {
    let mut changes = RollupChanges::default();
    for (c, extras) in contributions.iter().zip(extras) {
        let named = extras.iter().map(|(name, value)| (name.as_str(), *value));
        changes.add(c.rollup_key(), [0; 6], named, 1);
    }
    // Only extras were added: every key's sums are zero and left out.
    let mut rows = Vec::new();
    changes.rows(&mut rows);
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

/// What the rollup holds of one campaign-day: per (report, currency), the
/// number of facts and the five sums (ordered by report, so the first
/// report with facts is the chosen one).
type CellSums<'a> = BTreeMap<(&'a str, &'a str), [i64; 6]>;

/// A campaign-day's chosen report: the coarsest (smallest key) that holds
/// facts, as [`crate::insights::report_key`] orders them.
fn chosen_report<'a>(sums: &CellSums<'a>) -> Option<&'a str> {
    let mut facts: BTreeMap<&str, i64> = BTreeMap::new();
    for ((report, _), s) in sums {
        *facts.entry(report).or_default() += s[0];
    }
    facts
        .into_iter()
        .find(|(_, rows)| *rows > 0)
        .map(|(report, _)| report)
}

/// The `adpipe_rollup_chosen` changes that `changes` (to the rollup) make:
/// per touched campaign-day, its chosen report's sums before (`stored`) are
/// taken away and the chosen report's sums after are added, per currency.
fn chosen_changes<'a, 'k>(
    stored: &HashMap<Cell<'a>, CellSums<'a>>,
    changes: impl IntoIterator<Item = (&'k RollupKey<'a>, &'k [i64; 6])>,
) -> Vec<WriteRow<'a>>
where
    'a: 'k,
{
    let mut after: HashMap<Cell<'a>, CellSums<'a>> = HashMap::default();
    for (key, change) in changes {
        let sums = after
            .entry(cell_of(key))
            .or_insert_with_key(|cell| stored.get(cell).cloned().unwrap_or_default())
            .entry((key.5, key.6))
            .or_default();
        for (total, value) in sums.iter_mut().zip(change) {
            *total += value;
        }
    }
    let empty = CellSums::new();
    let mut rows = vec![];
    for (cell, now) in after {
        let before = stored.get(&cell).unwrap_or(&empty);
        let mut diff: BTreeMap<&'a str, [i64; 6]> = BTreeMap::new();
        for (sums, sign) in [(before, -1), (&now, 1)] {
            let Some(report) = chosen_report(sums) else {
                continue;
            };
            for ((_, currency), s) in sums.iter().filter(|((r, _), _)| *r == report) {
                let total = diff.entry(currency).or_default();
                for (t, v) in total.iter_mut().zip(s) {
                    *t += sign * v;
                }
            }
        }
        for (currency, s) in diff {
            if s.iter().all(|v| *v == 0) {
                continue;
            }
            let (tenant, date, campaign_id, platform, account_id) = cell;
            rows.push(
                WriteRow {
                    target: "chosen",
                    tenant,
                    date,
                    campaign_id,
                    platform,
                    account_id,
                    currency,
                    ..WriteRow::default()
                }
                .with_sums(s),
            );
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

/// What `rows` say the rollup holds, per campaign-day.
fn cells_of(rows: &[RollupRead]) -> HashMap<Cell<'_>, CellSums<'_>> {
    let mut cells: HashMap<Cell<'_>, CellSums<'_>> = HashMap::default();
    for r in rows {
        cells
            .entry((
                r.tenant.as_str(),
                r.date,
                r.campaign_id.as_str(),
                r.platform.as_str(),
                r.account_id.as_str(),
            ))
            .or_default()
            .insert(
                (r.report.as_str(), r.currency.as_str()),
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
    cells
}

/// `tenant = ? AND campaign_id IN (…) AND date` within `from..=to`.
fn campaigns_filter(tenant: &str, campaigns: &[&str], from: u16, to: u16) -> Sql {
    let mut filter = Sql::default();
    filter
        .push("tenant = ")
        .bind(tenant)
        .push(" AND campaign_id IN (")
        .bind_list(campaigns)
        .push(") AND date >= toDate(")
        .bind(day_text(i32::from(from)))
        .push(") AND date <= toDate(")
        .bind(day_text(i32::from(to)))
        .push(")");
    filter
}

/// Per tenant, the campaigns of the `(tenant, campaign, day)`s wanted and
/// the days they span, in chunks of [`CAMPAIGNS_PER_LOOKUP`] campaigns: the
/// filters of the lookups.
fn lookup_filters<'a>(wanted: impl Iterator<Item = (&'a str, &'a str, u16)>) -> Vec<Sql> {
    let mut scopes: BTreeMap<&str, (std::collections::BTreeSet<&str>, u16, u16)> = BTreeMap::new();
    // Rows come grouped by campaign: a campaign like the last is not looked up again.
    let mut last = None;
    for (tenant, campaign, date) in wanted {
        let scope = scopes
            .entry(tenant)
            .or_insert_with(|| (Default::default(), u16::MAX, 0));
        if last != Some((tenant, campaign)) {
            scope.0.insert(campaign);
            last = Some((tenant, campaign));
        }
        scope.1 = scope.1.min(date);
        scope.2 = scope.2.max(date);
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

/// The identity of `item`, the row it would be stored as.
fn identity_of<'a>(item: &Item<'a>) -> Result<Identity<'a>> {
    let row = item.row;
    Ok((
        item.tenant,
        &row.platform,
        &row.account_id,
        item.campaign_id(),
        item.ad_group_id(),
        item.ad_id(),
        date_of(row.date)?,
        item.hour(),
        item.breakdown(),
    ))
}

impl ClickHouseStore {
    /// Write the snapshots `items`: per identity the newest observation (the
    /// first of equals, as the embedded store keeps), when strictly newer
    /// than the stored one, as a fact plus the rollup changes from the stored
    /// observation to it, and the changes to the chosen reports' sums of the
    /// campaign-days it touches, all in one insert into `adpipe_writes`.
    async fn write_snapshots(&self, items: &[Item<'_>]) -> Result<()> {
        // Per identity the newest observation, identities in the order they
        // first appear (so a report's rows stay grouped by campaign-day).
        let mut first_at: HashMap<Identity<'_>, usize> =
            HashMap::with_capacity_and_hasher(items.len(), Default::default());
        let mut newest: Vec<(Identity<'_>, &Item<'_>)> = Vec::with_capacity(items.len());
        for item in items {
            let identity = identity_of(item)?;
            match first_at.entry(identity) {
                Entry::Occupied(e) => {
                    let kept = &mut newest[*e.get()].1;
                    if item.observed_at() > kept.observed_at() {
                        *kept = item;
                    }
                }
                Entry::Vacant(e) => {
                    e.insert(newest.len());
                    newest.push((identity, item));
                }
            }
        }
        drop(first_at);
        // The rollup says which campaign-days hold facts: only their facts
        // are read (a report of new days reads no facts at all).
        let rollup = self
            .stored_cells(newest.iter().map(|(id, _)| (id.0, id.3, id.6)))
            .await?;
        let cells = cells_of(&rollup);
        let stored = self
            .stored_contributions(
                newest
                    .iter()
                    .filter(|(id, _)| {
                        !cells.is_empty() && cells.contains_key(&cell_of_identity(id))
                    })
                    .map(|(id, _)| (id.0, id.3, id.6)),
            )
            .await?;
        let stored_extras: Vec<BTreeMap<String, i64>> =
            stored.iter().map(|c| extras_of(&c.extras)).collect();
        let stored_at: HashMap<Identity<'_>, usize> = stored
            .iter()
            .enumerate()
            .map(|(i, c)| (c.identity(), i))
            .collect();

        let mut extras = ExtrasText::default();
        let mut winners = Vec::with_capacity(newest.len());
        for (identity, item) in newest {
            let at = if stored_at.is_empty() {
                None
            } else {
                stored_at.get(&identity).copied()
            };
            if at.is_some_and(|i| item.observed_at() <= stored[i].observed_at) {
                continue; // a duplicate, a replay, or older than what is stored
            }
            let row_extras = &item.row.extras;
            winners.push(Winner {
                item,
                date: identity.6,
                report: item.report(),
                extras: (!row_extras.is_empty()).then(|| extras.push(row_extras)),
                stored: at,
            });
        }
        let mut changes = RollupChanges::default();
        let mut rows = Vec::with_capacity(winners.len() + winners.len() / 4);
        for winner in &winners {
            if let Some(i) = winner.stored {
                let old = &stored[i];
                let named = stored_extras[i].iter().map(|(n, v)| (n.as_str(), *v));
                changes.add(old.rollup_key(), old.sums(), named, -1);
            }
            let named = winner.item.row.extras.iter().map(|(n, v)| (n.as_str(), *v));
            changes.add(winner.rollup_key(), winner.sums(), named, 1);
            rows.push(winner.fact(&extras));
        }
        rows.extend(chosen_changes(&cells, changes.sums()));
        changes.rows(&mut rows);
        insert_writes(&self.client, &rows).await
    }

    /// What the rollup holds of the campaign-days of the `(tenant, campaign,
    /// day)`s wanted (and of others of the same campaigns and days), for
    /// those holding facts.
    async fn stored_cells<'a>(
        &self,
        wanted: impl Iterator<Item = (&'a str, &'a str, u16)>,
    ) -> Result<Vec<RollupRead>> {
        let mut rows = vec![];
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
            rows.extend(sql.query(&self.client).fetch_all::<RollupRead>().await?);
        }
        Ok(rows)
    }

    /// The stored observation of each identity of the `(tenant, campaign,
    /// day)`s wanted (and of others of the same campaigns and days, which
    /// the caller ignores).
    async fn stored_contributions<'a>(
        &self,
        wanted: impl Iterator<Item = (&'a str, &'a str, u16)>,
    ) -> Result<Vec<Contribution>> {
        let mut stored = vec![];
        for filter in lookup_filters(wanted) {
            let mut sql = Sql::default();
            sql.push(&format!(
                "SELECT {CONTRIBUTION_COLUMNS} FROM {}",
                latest_facts_sql(&filter.text)
            ));
            sql.binds = filter.binds;
            stored.extend(sql.query(&self.client).fetch_all::<Contribution>().await?);
        }
        Ok(stored)
    }

    async fn insert<T>(&self, table: &str, rows: &[T]) -> Result<()>
    where
        for<'a> T: ChRow<Value<'a> = T> + Serialize,
    {
        insert_rows::<T>(&self.client, table, rows).await
    }

    /// One batched insert per table, sent at once (they are independent:
    /// the snapshots' reads look only at facts and rollups), then the
    /// position. A crash in between replays the batch, which the replacing
    /// tables absorb.
    pub(super) async fn write_batch(&self, batch: &Batch<'_>) -> Result<()> {
        let deltas = batch
            .deltas
            .iter()
            .map(DeltaRow::of)
            .collect::<Result<Vec<_>, _>>()?;
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
        let name_rows: Vec<NameRow> = batch
            .extra_metrics
            .iter()
            .map(|(tenant, name)| NameRow {
                tenant: (*tenant).to_owned(),
                name: (*name).to_owned(),
            })
            .collect();
        tokio::try_join!(
            self.write_snapshots(&batch.snapshots),
            self.insert("adpipe_deltas", &deltas),
            self.insert("adpipe_entities", &entity_rows),
            self.insert("adpipe_extra_metrics", &name_rows),
        )?;
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

    fn key<'a>(report: &'a str, currency: &'a str) -> RollupKey<'a> {
        ("t", 10, "c1", "meta", "act_1", report, currency)
    }

    fn stored<'a>(sums: &[(&'a str, &'a str, [i64; 6])]) -> HashMap<Cell<'a>, CellSums<'a>> {
        let sums = sums
            .iter()
            .map(|(report, currency, s)| ((*report, *currency), *s))
            .collect();
        HashMap::from_iter([(cell_of(&key("", "")), sums)])
    }

    fn changes<'a>(sums: &[(&'a str, &'a str, [i64; 6])]) -> HashMap<RollupKey<'a>, [i64; 6]> {
        sums.iter()
            .map(|(report, currency, s)| (key(report, currency), *s))
            .collect()
    }

    /// (currency, rows, impressions) of each chosen change, by currency.
    fn summary(mut rows: Vec<WriteRow<'_>>) -> Vec<(String, i64, i64)> {
        rows.sort_by(|a, b| a.currency.cmp(b.currency));
        rows.into_iter()
            .map(|r| {
                assert_eq!(r.target, "chosen");
                (r.currency.to_owned(), r.rows, r.impressions)
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
            summary(chosen_changes(&HashMap::default(), &batch)),
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

    #[test]
    fn extras_text_is_what_serde_json_writes() {
        let maps: Vec<BTreeMap<String, i64>> = vec![
            BTreeMap::new(),
            BTreeMap::from([("leads".into(), 1_000_000)]),
            BTreeMap::from([
                ("actions_link_click".into(), 15),
                ("actions_offsite_conversion.fb_pixel_purchase".into(), -3),
                ("a b-c".into(), i64::MIN),
                ("z".into(), i64::MAX),
            ]),
            BTreeMap::from([("quote\"back\\slash".into(), 1), ("tab\tü✓".into(), 0)]),
        ];
        let mut text = ExtrasText::default();
        let ranges: Vec<Range<usize>> = maps.iter().map(|m| text.push(m)).collect();
        for (map, at) in maps.iter().zip(ranges) {
            assert_eq!(text.get(at), serde_json::to_string(map).expect("json"));
        }
    }

    #[test]
    fn rollup_changes_sum_per_key_whatever_the_order() {
        let (a, b) = (key("20", "USD"), key("20", "EUR"));
        let mut changes = RollupChanges::default();
        for (k, n, extras) in [
            (a, 1, vec![("leads", 2), ("clicks_x", 1)]),
            (a, 2, vec![("leads", 3)]),
            (b, 4, vec![]),
            (a, 8, vec![("clicks_x", 5)]),
            (b, -4, vec![("leads", 7)]),
        ] {
            changes.add(k, [1, n, 0, 0, 0, 0], extras.into_iter(), 1);
        }
        let sums: Vec<_> = changes.sums().map(|(k, s)| (*k, *s)).collect();
        assert_eq!(
            sums,
            vec![(a, [3, 11, 0, 0, 0, 0]), (b, [2, 0, 0, 0, 0, 0])]
        );
        let mut rows = vec![];
        changes.rows(&mut rows);
        let extras: Vec<(&str, &str, i64)> = rows
            .iter()
            .filter(|r| r.target == "extra")
            .map(|r| (r.currency, r.name, r.value))
            .collect();
        assert_eq!(
            extras,
            vec![
                ("USD", "leads", 5),
                ("USD", "clicks_x", 6),
                ("EUR", "leads", 7)
            ]
        );
        assert_eq!(rows.iter().filter(|r| r.target == "rollup").count(), 2);
    }
}
