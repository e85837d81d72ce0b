//! The normalized row as the host carries it on the bus and applies it to the
//! store (docs/contracts.md §2): owned strings, integer micros, the producing adapter.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Snapshot (latest `observed_at` wins) or delta (applied once per `dedup_key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowKind {
    Snapshot,
    Delta,
}

/// One entity's metrics for one bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub kind: RowKind,
    pub platform: String,
    /// Empty only for deltas whose account the hierarchy will tell.
    pub account_id: String,
    /// `None` only for deltas whose campaign the hierarchy will tell.
    pub campaign_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_group_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_name: Option<String>,
    /// Canonical breakdown key (`age=18-24|gender=female`), part of the row's
    /// identity; `None` for a row without a breakdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<String>,
    /// Days since 1970-01-01.
    pub date: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour: Option<u8>,
    /// `None` only for deltas without money whose currency the hierarchy will tell.
    pub currency: Option<String>,
    pub impressions: i64,
    pub clicks: i64,
    pub spend_micros: i64,
    pub conversions_micros: i64,
    pub conversion_value_micros: i64,
    /// Extra additive metrics in millionths, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extras: BTreeMap<String, i64>,
    /// Observation time in microseconds since the Unix epoch.
    pub observed_at_us: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    /// Adapter name and version that produced the row.
    pub adapter: String,
    pub adapter_version: String,
}

/// What one bus record carries: one accepted payload's rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowEnvelope {
    pub tenant: String,
    pub pipeline: String,
    pub rows: Vec<Row>,
}
