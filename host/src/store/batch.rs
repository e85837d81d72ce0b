//! The one place that turns bus records into what a store writes: snapshots,
//! deltas, the ad hierarchy they teach, and the extra metric names they use.
//! Both stores write exactly what [`classify`] returns, with the same row
//! identity ([`Item`]'s accessors), so they hold the same data.
//!
//! A row the ingest path should never have let through (a snapshot without
//! campaign or currency, a delta without dedup key) is counted as
//! incomplete, logged, and left out.

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::hierarchy::{self, EntityKey, Learned};
use crate::row::{Row, RowEnvelope, RowKind};

/// One row to write, with the record it came in.
#[derive(Clone, Copy, Debug)]
pub struct Item<'a> {
    pub tenant: &'a str,
    pub pipeline: &'a str,
    pub row: &'a Row,
}

impl<'a> Item<'a> {
    /// The campaign id; empty for a delta that names none (the hierarchy places it).
    pub fn campaign_id(&self) -> &'a str {
        self.row.campaign_id.as_deref().unwrap_or("")
    }

    /// The ad group id; empty when the row is not at ad-group level or finer.
    pub fn ad_group_id(&self) -> &'a str {
        self.row.ad_group_id.as_deref().unwrap_or("")
    }

    /// The ad id; empty when the row is not at ad level.
    pub fn ad_id(&self) -> &'a str {
        self.row.ad_id.as_deref().unwrap_or("")
    }

    /// The row's breakdown key; empty without one (part of the row identity).
    pub fn breakdown(&self) -> &'a str {
        self.row.breakdown.as_deref().unwrap_or("")
    }

    /// Which report the row belongs to ([`crate::insights::report_key`]):
    /// rollups keep it in their key, and queries choose by it.
    pub fn report(&self) -> Cow<'static, str> {
        let (ad_group, ad, hourly) = (
            !self.ad_group_id().is_empty(),
            !self.ad_id().is_empty(),
            self.hour() >= 0,
        );
        if self.breakdown().is_empty() {
            // The keys of rows without a breakdown, without an allocation each.
            const PLAIN: [[&str; 2]; 3] = [["00", "01"], ["10", "11"], ["20", "21"]];
            let level = if ad { 2 } else { usize::from(ad_group) };
            return Cow::Borrowed(PLAIN[level][usize::from(hourly)]);
        }
        Cow::Owned(crate::insights::report_key(
            ad_group,
            ad,
            hourly,
            self.breakdown(),
        ))
    }

    /// The hour of an hourly row; -1 for a daily row (part of the row identity).
    pub fn hour(&self) -> i8 {
        self.row
            .hour
            .and_then(|h| i8::try_from(h).ok())
            .unwrap_or(-1)
    }

    /// The currency; empty only for a delta that names none.
    pub fn currency(&self) -> &'a str {
        self.row.currency.as_deref().unwrap_or("")
    }

    /// The delta's dedup key; empty for snapshots.
    pub fn dedup_key(&self) -> &'a str {
        self.row.dedup_key.as_deref().unwrap_or("")
    }

    /// Extra metrics as stored: a JSON object, or `None` when there are none.
    pub fn extras_json(&self) -> Option<String> {
        if self.row.extras.is_empty() {
            None
        } else {
            serde_json::to_string(&self.row.extras).ok()
        }
    }

    /// When the platform observed the values (µs since the epoch; never negative).
    pub fn observed_at(&self) -> u64 {
        u64::try_from(self.row.observed_at_us).unwrap_or(0)
    }
}

/// What one store write holds.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    /// Rows that replace the values of their identity when newer.
    pub snapshots: Vec<Item<'a>>,
    /// Rows that add once per `(tenant, platform, dedup_key)`.
    pub deltas: Vec<Item<'a>>,
    /// The ad hierarchy the snapshots name, each entity once.
    /// A hash map: three entities a row went through a `BTreeMap` of string
    /// keys at 7% of the embedded consumer's time; a store sorts what it needs.
    pub entities: foldhash::HashMap<EntityKey<'a>, Learned<'a>>,
    /// `(tenant, name)` of every extra metric the rows carry.
    pub extra_metrics: BTreeSet<(&'a str, &'a str)>,
    /// The newest observation in the batch (versions the hierarchy's rows).
    pub newest_observed_at: u64,
    /// Rows left out as incomplete.
    pub incomplete: usize,
    /// The embedded log's position to record with the rows, when the store
    /// keeps the bus's position (see [`crate::bus`]).
    pub through: Option<u64>,
}

impl Batch<'_> {
    /// Nothing to write but, maybe, a position.
    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty() && self.deltas.is_empty() && self.extra_metrics.is_empty()
    }
}

/// Classify the rows of `envelopes`; `through` is the bus position they end at.
pub fn classify<'a>(envelopes: &[&'a RowEnvelope], through: Option<u64>) -> Batch<'a> {
    let mut batch = Batch {
        through,
        ..Batch::default()
    };
    for envelope in envelopes {
        for row in &envelope.rows {
            let item = Item {
                tenant: &envelope.tenant,
                pipeline: &envelope.pipeline,
                row,
            };
            match row.kind {
                RowKind::Snapshot if row.campaign_id.is_some() && row.currency.is_some() => {
                    hierarchy::collect(&mut batch.entities, &envelope.tenant, row);
                    batch.snapshots.push(item);
                }
                RowKind::Delta if row.dedup_key.is_some() => batch.deltas.push(item),
                // The ingest path guarantees these fields; say so loudly if not.
                _ => {
                    batch.incomplete += 1;
                    tracing::error!(tenant = %envelope.tenant, pipeline = %envelope.pipeline, "incomplete row skipped");
                    continue;
                }
            }
            batch.newest_observed_at = batch.newest_observed_at.max(item.observed_at());
            for name in row.extras.keys() {
                batch.extra_metrics.insert((&envelope.tenant, name));
            }
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn row(kind: RowKind) -> Row {
        Row {
            kind,
            platform: "meta".into(),
            account_id: "act".into(),
            campaign_id: Some("c1".into()),
            campaign_name: Some("Spring".into()),
            ad_group_id: Some("g1".into()),
            ad_id: Some("a1".into()),
            ad_group_name: None,
            ad_name: None,
            breakdown: None,
            date: 20_000,
            hour: None,
            currency: Some("EUR".into()),
            impressions: 10,
            clicks: 1,
            spend_micros: 1_000_000,
            conversions_micros: 0,
            conversion_value_micros: 0,
            extras: BTreeMap::new(),
            observed_at_us: 5,
            dedup_key: None,
            adapter: "meta".into(),
            adapter_version: "0.1.0".into(),
        }
    }

    #[test]
    fn rows_are_split_by_kind_and_incomplete_ones_left_out() {
        let mut lead = row(RowKind::Delta);
        lead.dedup_key = Some("lead-1".into());
        lead.campaign_id = None;
        lead.extras.insert("leads".into(), 1_000_000);
        lead.observed_at_us = 9;
        let no_key = row(RowKind::Delta);
        let mut no_currency = row(RowKind::Snapshot);
        no_currency.currency = None;
        let envelope = RowEnvelope {
            tenant: "t".into(),
            pipeline: "p".into(),
            rows: vec![row(RowKind::Snapshot), lead, no_key, no_currency],
        };
        let batch = classify(&[&envelope], Some(4));
        assert_eq!(batch.snapshots.len(), 1);
        assert_eq!(batch.deltas.len(), 1);
        assert_eq!(batch.incomplete, 2);
        assert_eq!(batch.through, Some(4));
        assert_eq!(batch.newest_observed_at, 9);
        assert_eq!(batch.deltas[0].campaign_id(), "");
        assert_eq!(batch.deltas[0].dedup_key(), "lead-1");
        assert_eq!(batch.snapshots[0].hour(), -1);
        assert!(batch.extra_metrics.contains(&("t", "leads")));
        // campaign, ad group and ad, once each.
        assert_eq!(batch.entities.len(), 3);
    }

    #[test]
    fn a_rows_report_is_the_insights_report_key() {
        for (ad_group, ad, hour, breakdown) in [
            (None, None, None, None),
            (None, None, Some(3), None),
            (Some("g1"), None, None, None),
            (Some("g1"), None, Some(0), None),
            (Some("g1"), Some("a1"), None, None),
            (Some("g1"), Some("a1"), Some(23), None),
            (
                Some("g1"),
                Some("a1"),
                None,
                Some("age=18-24|gender=female"),
            ),
            (None, None, Some(1), Some("country=DE")),
        ] {
            let mut r = row(RowKind::Snapshot);
            r.ad_group_id = ad_group.map(Into::into);
            r.ad_id = ad.map(Into::into);
            r.hour = hour;
            r.breakdown = breakdown.map(Into::into);
            let item = Item {
                tenant: "t",
                pipeline: "p",
                row: &r,
            };
            let want = crate::insights::report_key(
                ad_group.is_some(),
                ad.is_some(),
                hour.is_some(),
                breakdown.unwrap_or(""),
            );
            assert_eq!(
                item.report(),
                want,
                "{ad_group:?} {ad:?} {hour:?} {breakdown:?}"
            );
        }
    }
}
