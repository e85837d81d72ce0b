//! Rollups: turn stored facts into insights answers (pure, no I/O).
//!
//! - Buckets by `day`, ISO `week` (Monday), `month` or `total`.
//! - Groups by any of `platform, account_id, campaign_id, ad_group_id, ad_id`;
//!   `currency` is always part of a group (currencies are never summed
//!   together) and `platform` joins any id grouping (ids are platform-scoped).
//! - Never double counts levels: when one campaign-day holds rows of several
//!   levels (a campaign-level report and an ad-level report of the same
//!   campaign), only the coarsest level fine enough for the grouping is
//!   summed, and daily rows win over hourly ones.
//! - Ratios come from summed components; a zero denominator gives `null`.

pub mod cache;
pub mod catalog;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, NaiveDate};
use serde_json::{Map, Number, Value};

/// One stored fact (snapshot) or resolved delta, as the query layer returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fact {
    pub platform: String,
    pub account_id: String,
    pub campaign_id: String,
    pub ad_group_id: Option<String>,
    pub ad_id: Option<String>,
    /// Days since 1970-01-01.
    pub date: i32,
    pub hour: Option<u8>,
    pub currency: String,
    pub impressions: i64,
    pub clicks: i64,
    pub spend_micros: i64,
    pub conversions_micros: i64,
    pub conversion_value_micros: i64,
    pub extras: BTreeMap<String, i64>,
    /// Canonical breakdown key (`age=18-24|gender=female`); empty for a row
    /// without a breakdown.
    pub breakdown: String,
}

/// Time bucket size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    Day,
    Week,
    Month,
    Total,
}

impl Granularity {
    pub fn parse(s: &str) -> Option<Granularity> {
        match s {
            "day" => Some(Granularity::Day),
            "week" => Some(Granularity::Week),
            "month" => Some(Granularity::Month),
            "total" => Some(Granularity::Total),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
            Granularity::Total => "total",
        }
    }
}

/// A grouping dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    Platform,
    AccountId,
    CampaignId,
    AdGroupId,
    AdId,
}

impl Dimension {
    pub const ALL: [Dimension; 5] = [
        Dimension::Platform,
        Dimension::AccountId,
        Dimension::CampaignId,
        Dimension::AdGroupId,
        Dimension::AdId,
    ];

    pub fn parse(s: &str) -> Option<Dimension> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Platform => "platform",
            Dimension::AccountId => "account_id",
            Dimension::CampaignId => "campaign_id",
            Dimension::AdGroupId => "ad_group_id",
            Dimension::AdId => "ad_id",
        }
    }
}

/// Built-in metrics: summed components and ratios of sums.
pub const BASE_METRICS: [&str; 5] = [
    "impressions",
    "clicks",
    "spend",
    "conversions",
    "conversion_value",
];
pub const RATIO_METRICS: [&str; 6] = ["ctr", "cpc", "cpm", "cpa", "cvr", "roas"];

/// What to compute.
#[derive(Clone, Debug)]
pub struct Rollup {
    pub granularity: Granularity,
    pub group_by: Vec<Dimension>,
    /// Metric names to output, in order (base, ratio or extra names).
    pub metrics: Vec<String>,
}

/// Summed components of one answer row: counts as counts, money and
/// conversions in micros, extras as stored (millionths).
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct Sums {
    pub impressions: i64,
    pub clicks: i64,
    pub spend: i64,
    pub conversions: i64,
    pub conversion_value: i64,
    pub extras: HashMap<String, i64>,
}

impl Sums {
    /// A component in millionths, as metric plugins receive it: counts × 10⁶,
    /// money in micros, extras as stored; unknown names are 0.
    pub fn component(&self, name: &str) -> i64 {
        match name {
            "impressions" => self.impressions.saturating_mul(1_000_000),
            "clicks" => self.clicks.saturating_mul(1_000_000),
            "spend" => self.spend,
            "conversions" => self.conversions,
            "conversion_value" => self.conversion_value,
            extra => self.extras.get(extra).copied().unwrap_or(0),
        }
    }

    /// Add `other` into these sums.
    pub fn merge(&mut self, other: Sums) {
        self.impressions += other.impressions;
        self.clicks += other.clicks;
        self.spend += other.spend;
        self.conversions += other.conversions;
        self.conversion_value += other.conversion_value;
        for (k, v) in other.extras {
            *self.extras.entry(k).or_default() += v;
        }
    }

    fn add(&mut self, f: &Fact) {
        self.impressions += f.impressions;
        self.clicks += f.clicks;
        self.spend += f.spend_micros;
        self.conversions += f.conversions_micros;
        self.conversion_value += f.conversion_value_micros;
        for (k, v) in &f.extras {
            *self.extras.entry(k.clone()).or_default() += v;
        }
    }
}

/// Which report a row belongs to, as a key that sorts coarsest first: its
/// entity level (`0` campaign, `1` ad group, `2` ad), `0` daily or `1`
/// hourly, then its breakdown dimensions (none before any). Per campaign-day
/// only the first present is summed, so a campaign report and an ad report, a
/// daily and an hourly one, or an unbroken-down report and an age (or a
/// gender) breakdown of the same spend never count twice. The stores keep
/// this key with every fact and rollup row and choose with `MIN` in SQL.
pub fn report_key(ad_group: bool, ad: bool, hourly: bool, breakdown: &str) -> String {
    let entity = if ad {
        '2'
    } else if ad_group {
        '1'
    } else {
        '0'
    };
    let mut key = String::with_capacity(2 + breakdown.len());
    key.push(entity);
    key.push(if hourly { '1' } else { '0' });
    key.push_str(&breakdown_dimensions(breakdown));
    key
}

/// The finest entity level a grouping needs (`'0'` campaign, `'1'` ad
/// group, `'2'` ad): reports coarser than it cannot answer.
pub fn needed_level(group_by: &[Dimension]) -> char {
    if group_by.contains(&Dimension::AdId) {
        '2'
    } else if group_by.contains(&Dimension::AdGroupId) {
        '1'
    } else {
        '0'
    }
}

/// Whether a grouping can be answered from the campaign-day rollups (it
/// names no ad group or ad).
pub fn rollup_answers(group_by: &[Dimension]) -> bool {
    needed_level(group_by) == '0'
}

/// The dimensions an answer carries: the requested ones, sorted, with
/// `platform` joining any id (ids are platform-scoped).
pub fn answer_dimensions(group_by: &[Dimension]) -> Vec<Dimension> {
    let mut dims = group_by.to_vec();
    if dims.iter().any(|d| *d != Dimension::Platform) && !dims.contains(&Dimension::Platform) {
        dims.push(Dimension::Platform);
    }
    dims.sort();
    dims.dedup();
    dims
}

fn level(f: &Fact) -> String {
    report_key(
        f.ad_group_id.is_some(),
        f.ad_id.is_some(),
        f.hour.is_some(),
        &f.breakdown,
    )
}

/// The dimension names of a breakdown key: `age=18-24|gender=female` →
/// `age|gender`; empty without a breakdown.
fn breakdown_dimensions(key: &str) -> Cow<'_, str> {
    if !key.contains('|') {
        return Cow::Borrowed(key.split('=').next().unwrap_or_default());
    }
    Cow::Owned(
        key.split('|')
            .map(|part| part.split('=').next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("|"),
    )
}

/// A campaign-day: platform, account, campaign, day.
type Cell<'a> = (&'a str, &'a str, &'a str, i32);
/// One answer row as a store sums it: bucket start (`None` for `total`),
/// the values of [`answer_dimensions`] in order (`None` where a row has no
/// ad group or ad), currency, and the sums.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summed {
    pub bucket: Option<i32>,
    pub values: Vec<Option<String>>,
    pub currency: String,
    pub sums: Sums,
}

type GroupKey = (Option<i32>, Vec<Option<String>>, String);

/// One answer row before its metrics: bucket, dimensions, currency; and its sums.
#[derive(Clone, Debug)]
pub struct Group {
    pub keys: Map<String, Value>,
    pub sums: Sums,
}

/// Roll `snapshots` (level-selected) and `deltas` (always added) up into answer rows.
pub fn rollup(snapshots: &[Fact], deltas: &[Fact], spec: &Rollup) -> Vec<Map<String, Value>> {
    render(
        rollup_groups(snapshots, deltas, spec),
        &spec.metrics,
        &HashMap::new(),
    )
}

/// Rows with their metrics; `derived` holds metric plugins' values, one per row.
pub fn render(
    groups: Vec<Group>,
    metrics: &[String],
    derived: &HashMap<String, Vec<Option<f64>>>,
) -> Vec<Map<String, Value>> {
    groups
        .into_iter()
        .enumerate()
        .map(|(i, group)| {
            let mut row = group.keys;
            for metric in metrics {
                let value = match derived.get(metric) {
                    Some(values) => values
                        .get(i)
                        .copied()
                        .flatten()
                        .map(float)
                        .unwrap_or(Value::Null),
                    None => metric_value(&group.sums, metric),
                };
                row.insert(metric.clone(), value);
            }
            row
        })
        .collect()
}

/// Group and sum facts in memory, without metrics: the reference the
/// stores' SQL answers are tested against.
pub fn rollup_groups(snapshots: &[Fact], deltas: &[Fact], spec: &Rollup) -> Vec<Group> {
    let needed = needed_level(&spec.group_by);
    // Per campaign-day cell, the coarsest report present that is fine enough.
    let mut chosen: HashMap<Cell<'_>, String> = HashMap::new();
    let mut reports = Vec::with_capacity(snapshots.len());
    for f in snapshots {
        let report = level(f);
        if report.starts_with(|c: char| c >= needed) {
            match chosen.get_mut(&cell(f)) {
                Some(c) if report < *c => c.clone_from(&report),
                Some(_) => {}
                None => {
                    chosen.insert(cell(f), report.clone());
                }
            }
        }
        reports.push(report);
    }
    let selected = snapshots
        .iter()
        .zip(reports)
        .filter(|(f, report)| chosen.get(&cell(f)) == Some(report))
        .map(|(f, _)| f);
    groups(sum_facts(selected, spec), deltas, spec)
}

/// The campaign-day of a fact.
fn cell(f: &Fact) -> Cell<'_> {
    (
        f.platform.as_str(),
        f.account_id.as_str(),
        f.campaign_id.as_str(),
        f.date,
    )
}

/// Sum `facts` per answer row of `spec`.
fn sum_facts<'a>(facts: impl Iterator<Item = &'a Fact>, spec: &Rollup) -> Vec<Summed> {
    let dims = answer_dimensions(&spec.group_by);
    let mut sums: BTreeMap<GroupKey, Sums> = BTreeMap::new();
    for f in facts {
        let key = (
            bucket(f.date, spec.granularity),
            dims.iter().map(|d| dimension_value(f, *d)).collect(),
            f.currency.clone(),
        );
        sums.entry(key).or_default().add(f);
    }
    sums.into_iter()
        .map(|((bucket, values, currency), sums)| Summed {
            bucket,
            values,
            currency,
            sums,
        })
        .collect()
}

/// Answer rows: `summed` (snapshot sums, as a store or [`rollup_groups`]
/// computed them) plus `deltas` (placed deltas, always added), in
/// (bucket, dimensions, currency) order.
pub fn groups(summed: Vec<Summed>, deltas: &[Fact], spec: &Rollup) -> Vec<Group> {
    let dims = answer_dimensions(&spec.group_by);
    let mut groups: BTreeMap<GroupKey, Sums> = BTreeMap::new();
    for row in summed {
        groups
            .entry((row.bucket, row.values, row.currency))
            .or_default()
            .merge(row.sums);
    }
    for row in sum_facts(deltas.iter(), spec) {
        groups
            .entry((row.bucket, row.values, row.currency))
            .or_default()
            .merge(row.sums);
    }
    groups
        .into_iter()
        .map(|((bucket_start, values, currency), sums)| {
            let mut keys = Map::new();
            if let Some(days) = bucket_start {
                keys.insert("date".into(), Value::String(date_string(days)));
            }
            for (d, v) in dims.iter().zip(values) {
                keys.insert(
                    d.as_str().into(),
                    v.map(Value::String).unwrap_or(Value::Null),
                );
            }
            keys.insert("currency".into(), Value::String(currency));
            Group { keys, sums }
        })
        .collect()
}

fn dimension_value(f: &Fact, d: Dimension) -> Option<String> {
    match d {
        Dimension::Platform => Some(f.platform.clone()),
        Dimension::AccountId => Some(f.account_id.clone()),
        Dimension::CampaignId => Some(f.campaign_id.clone()),
        Dimension::AdGroupId => f.ad_group_id.clone(),
        Dimension::AdId => f.ad_id.clone(),
    }
}

fn metric_value(s: &Sums, metric: &str) -> Value {
    let ratio = |num: f64, den: f64| {
        if den == 0.0 {
            Value::Null
        } else {
            float(num / den)
        }
    };
    let units = |micros: i64| micros as f64 / 1_000_000.0;
    match metric {
        "impressions" => Value::from(s.impressions),
        "clicks" => Value::from(s.clicks),
        "spend" => float(units(s.spend)),
        "conversions" => float(units(s.conversions)),
        "conversion_value" => float(units(s.conversion_value)),
        "ctr" => ratio(s.clicks as f64, s.impressions as f64),
        "cpc" => ratio(units(s.spend), s.clicks as f64),
        "cpm" => ratio(units(s.spend) * 1000.0, s.impressions as f64),
        "cpa" => ratio(s.spend as f64, s.conversions as f64),
        "cvr" => ratio(units(s.conversions), s.clicks as f64),
        "roas" => ratio(s.conversion_value as f64, s.spend as f64),
        extra => {
            let micros = s.extras.get(extra).copied().unwrap_or(0);
            if micros % 1_000_000 == 0 {
                Value::from(micros / 1_000_000)
            } else {
                float(units(micros))
            }
        }
    }
}

fn float(x: f64) -> Value {
    Number::from_f64(x)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Start of the bucket holding `days`, or `None` for `total`.
pub fn bucket(days: i32, granularity: Granularity) -> Option<i32> {
    match granularity {
        Granularity::Day => Some(days),
        // 1970-01-01 was a Thursday: Monday-based weekday = (days + 3) mod 7.
        Granularity::Week => Some(days - (days + 3).rem_euclid(7)),
        Granularity::Month => {
            let date = naive(days);
            Some(days - (date.day() as i32 - 1))
        }
        Granularity::Total => None,
    }
}

/// Last day of the bucket starting on `start`, or `None` for `total`.
pub fn bucket_end(start: i32, granularity: Granularity) -> Option<i32> {
    match granularity {
        Granularity::Day => Some(start),
        Granularity::Week => Some(start + 6),
        Granularity::Month => {
            let first = naive(start);
            let next = first.checked_add_months(chrono::Months::new(1))?;
            Some(start + (next - first).num_days() as i32 - 1)
        }
        Granularity::Total => None,
    }
}

const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => panic!("valid epoch"),
};

fn naive(days: i32) -> NaiveDate {
    EPOCH + chrono::Duration::days(i64::from(days))
}

/// `YYYY-MM-DD` of a day number.
pub fn date_string(days: i32) -> String {
    naive(days).format("%Y-%m-%d").to_string()
}

/// Day number of a date.
pub fn days_of(date: NaiveDate) -> i32 {
    (date - EPOCH).num_days() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(
        campaign: &str,
        ad_group: Option<&str>,
        ad: Option<&str>,
        day: i32,
        impressions: i64,
        spend: i64,
    ) -> Fact {
        Fact {
            platform: "meta".into(),
            account_id: "1".into(),
            campaign_id: campaign.into(),
            ad_group_id: ad_group.map(Into::into),
            ad_id: ad.map(Into::into),
            date: day,
            hour: None,
            currency: "USD".into(),
            impressions,
            clicks: impressions / 10,
            spend_micros: spend,
            conversions_micros: 0,
            conversion_value_micros: 0,
            extras: BTreeMap::new(),
            breakdown: String::new(),
        }
    }

    fn spec(granularity: Granularity, group_by: &[Dimension]) -> Rollup {
        Rollup {
            granularity,
            group_by: group_by.to_vec(),
            metrics: ["impressions", "spend", "cpa", "ctr"]
                .map(String::from)
                .to_vec(),
        }
    }

    #[test]
    fn breakdowns_sum_and_never_double_count_with_the_unbroken_report() {
        let with = |b: &str, impressions, spend| Fact {
            breakdown: b.into(),
            ..fact("c1", None, None, 100, impressions, spend)
        };
        let by_campaign = spec(Granularity::Day, &[Dimension::CampaignId]);
        // An age breakdown alone: its rows sum (100 + 300 impressions, 1.00 + 3.00 spend).
        let ages = vec![
            with("age=18-24", 100, 1_000_000),
            with("age=25-34", 300, 3_000_000),
        ];
        let rows = rollup(&ages, &[], &by_campaign);
        assert_eq!(
            (rows[0]["impressions"].as_i64(), rows[0]["spend"].as_f64()),
            (Some(400), Some(4.0))
        );
        // The same day without a breakdown, plus a gender breakdown: only the
        // unbroken row counts.
        let mut all = ages.clone();
        all.push(with("", 400, 4_000_000));
        all.push(with("gender=female", 250, 2_500_000));
        all.push(with("gender=male", 150, 1_500_000));
        let rows = rollup(&all, &[], &by_campaign);
        assert_eq!(
            (rows[0]["impressions"].as_i64(), rows[0]["spend"].as_f64()),
            (Some(400), Some(4.0))
        );
        // Age and gender breakdowns of the same spend: one report counts, not both.
        let mut two = ages;
        two.push(with("gender=female", 250, 2_500_000));
        two.push(with("gender=male", 150, 1_500_000));
        let rows = rollup(&two, &[], &by_campaign);
        assert_eq!(rows[0]["impressions"].as_i64(), Some(400));
        // Two dimensions: the key's names pick the report.
        let multi = vec![
            with("age=18-24|gender=female", 10, 0),
            with("age=18-24|gender=male", 20, 0),
            with("age=25-34|gender=female", 30, 0),
        ];
        assert_eq!(
            rollup(&multi, &[], &by_campaign)[0]["impressions"].as_i64(),
            Some(60)
        );
    }

    #[test]
    fn levels_are_not_double_counted() {
        let facts = vec![
            fact("c1", None, None, 100, 1000, 5_000_000),
            fact("c1", Some("g1"), Some("a1"), 100, 600, 3_000_000),
            fact("c1", Some("g1"), Some("a2"), 100, 300, 1_500_000),
            // Another day with ad-level rows only.
            fact("c1", Some("g1"), Some("a1"), 101, 50, 250_000),
        ];
        let by_campaign = rollup(
            &facts,
            &[],
            &spec(Granularity::Day, &[Dimension::CampaignId]),
        );
        assert_eq!(by_campaign.len(), 2);
        assert_eq!(
            by_campaign[0]["impressions"], 1000,
            "campaign-level row wins on day 100"
        );
        assert_eq!(by_campaign[0]["platform"], "meta");
        assert_eq!(
            by_campaign[1]["impressions"], 50,
            "ad rows sum where no campaign row exists"
        );
        let by_ad = rollup(&facts, &[], &spec(Granularity::Total, &[Dimension::AdId]));
        assert_eq!(by_ad.len(), 2);
        assert_eq!(by_ad[0]["impressions"], 650);
        assert_eq!(by_ad[0]["spend"], 3.25);
        assert!(by_ad[0].get("date").is_none());
        assert_eq!(
            by_ad[0]["cpa"],
            Value::Null,
            "zero conversions: cpa is null"
        );
        assert_eq!(by_ad[0]["ctr"], 0.1);
    }

    #[test]
    fn currencies_are_never_summed_together() {
        let mut eur = fact("c2", None, None, 100, 10, 1_000_000);
        eur.currency = "EUR".into();
        let rows = rollup(
            &[fact("c1", None, None, 100, 10, 1_000_000), eur],
            &[],
            &spec(Granularity::Total, &[]),
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["currency"], "EUR");
        assert_eq!(rows[1]["currency"], "USD");
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let monday = days_of(NaiveDate::from_ymd_opt(2026, 11, 23).expect("date"));
        for offset in 0..7 {
            assert_eq!(bucket(monday + offset, Granularity::Week), Some(monday));
        }
        assert_eq!(bucket(monday - 1, Granularity::Week), Some(monday - 7));
        let first = days_of(NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"));
        assert_eq!(bucket(monday, Granularity::Month), Some(first));
        assert_eq!(bucket_end(monday, Granularity::Week), Some(monday + 6));
        let february = days_of(NaiveDate::from_ymd_opt(2028, 2, 1).expect("date"));
        assert_eq!(
            bucket_end(february, Granularity::Month),
            Some(february + 28)
        );
        assert_eq!(bucket_end(first, Granularity::Total), None);
        assert_eq!(date_string(first), "2026-11-01");
    }
}
