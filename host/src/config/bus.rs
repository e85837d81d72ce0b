//! `[bus]`: where normalized rows are made durable (an embedded log, or Kafka).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::check::Issues;
use super::StoreKind;

/// `[bus]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    pub kind: BusKind,
    /// Kafka bootstrap servers, `host:port,...`.
    pub brokers: Option<String>,
    /// Topic of normalized rows (its dead letters go to `<topic>.dead-letters`).
    pub topic: String,
    /// Consumer group of the aggregation workers (one per deployment).
    pub group: String,
    /// Partitions of the rows topic when adpipe creates it.
    pub partitions: i32,
    /// Replicas of each topic adpipe creates (fewer, with a warning, when
    /// the cluster has fewer brokers); `min.insync.replicas` is one less.
    pub replication_factor: i32,
    /// How long a publish may wait for the brokers' acknowledgement.
    pub timeout_ms: u64,
    /// Extra librdkafka settings, e.g. `"security.protocol" = "ssl"`.
    pub client: BTreeMap<String, String>,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            kind: BusKind::Embedded,
            brokers: None,
            topic: "adpipe.rows".into(),
            group: "adpipe-aggregators".into(),
            partitions: 6,
            replication_factor: 3,
            timeout_ms: 5000,
            client: BTreeMap::new(),
        }
    }
}

/// `bus.kind`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    Embedded,
    Kafka,
}

impl BusConfig {
    /// `[bus]`'s mistakes; Kafka is consumed by several processes, which
    /// need a store they share.
    pub(super) fn validate(&self, store: StoreKind, issues: &mut Issues) {
        if self.kind == BusKind::Kafka {
            if self.brokers.as_deref().is_none_or(|b| b.trim().is_empty()) {
                issues.add(
                    "bus.brokers",
                    "bus.kind = \"kafka\" needs bootstrap servers",
                    "e.g. brokers = \"127.0.0.1:9092\" (or ADPIPE_BUS__BROKERS)",
                );
            }
            if store != StoreKind::Clickhouse {
                issues.add(
                    "store.kind",
                    "the Kafka bus needs a shared store",
                    "several processes consume the topic: use store.kind = \"clickhouse\"",
                );
            }
        }
        issues.within(
            "bus.partitions",
            self.partitions,
            1..=1000,
            "the default is 6",
        );
        issues.within(
            "bus.replication_factor",
            self.replication_factor,
            1..=32,
            "the default is 3",
        );
        issues.at_least(
            "bus.timeout_ms",
            self.timeout_ms,
            100,
            "the default is 5000",
        );
    }
}
