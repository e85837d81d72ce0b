//! The bus: where an accepted payload's rows become durable before the API
//! answers `202`, and where the aggregation consumer reads them back in order.
//!
//! [`Bus`] is the contract; [`embedded`] (a SQLite log in the data directory)
//! and [`kafka`] (topics on a Kafka-protocol cluster) implement it. Nothing
//! outside this folder names a bus kind.

pub mod embedded;
pub mod kafka;

use std::time::Duration;

pub use embedded::EmbeddedBus;

/// The bus could not take or give records.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus storage error")]
    Storage(#[from] sqlx::Error),
    #[error("the bus writer has stopped")]
    Closed,
}

/// The configured bus: the embedded log or Kafka.
#[derive(Clone)]
pub enum Bus {
    Embedded(EmbeddedBus),
    Kafka(Box<crate::bus::kafka::KafkaBus>),
}

impl Bus {
    /// Make an accepted payload's rows durable; `Ok` only once they are
    /// (fsync'd to the log, or acknowledged by the brokers).
    pub async fn publish(&self, envelope: &crate::row::RowEnvelope) -> Result<(), String> {
        match self {
            Bus::Embedded(bus) => {
                let record = serde_json::to_vec(envelope).map_err(|e| e.to_string())?;
                bus.append(record)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Bus::Kafka(bus) => bus.publish(envelope).await.map_err(|e| e.to_string()),
        }
    }

    /// The bus answers.
    pub async fn ping(&self) -> Result<(), String> {
        match self {
            Bus::Embedded(bus) => bus.ping().await.map_err(|e| e.to_string()),
            Bus::Kafka(bus) => bus.ping().await.map_err(|e| e.to_string()),
        }
    }

    /// Records durable on the bus but not yet applied to the store.
    pub async fn lag(&self, store: &crate::store::Store) -> u64 {
        match self {
            Bus::Embedded(bus) => bus.head().saturating_sub(store.applied_offset()),
            Bus::Kafka(bus) => bus.lag().await.map(|l| l as u64).unwrap_or(0),
        }
    }

    /// The embedded log, when that is the bus.
    pub fn embedded(&self) -> Option<&EmbeddedBus> {
        match self {
            Bus::Embedded(bus) => Some(bus),
            Bus::Kafka(_) => None,
        }
    }

    /// Wait until everything acknowledged before this call is applied to the
    /// store; returns whether it was (within `timeout`) and the consistency
    /// version answers computed now may be cached under.
    pub async fn catch_up(
        &self,
        store: &crate::store::Store,
        versions: &crate::insights::cache::DataVersions,
        tenant: &str,
        timeout: Duration,
    ) -> (bool, String) {
        match self {
            Bus::Embedded(bus) => {
                let caught_up = store.wait_applied(bus.head(), timeout).await;
                let version = versions.get(tenant);
                let caught_up = caught_up && store.wait_applied(version, timeout).await;
                (caught_up, version.to_string())
            }
            Bus::Kafka(bus) => match bus.fence().await {
                Ok(fence) => (bus.wait_committed(&fence, timeout).await, fence.key()),
                Err(e) => {
                    tracing::warn!("reading the bus position failed: {e}");
                    (false, String::new())
                }
            },
        }
    }
}
