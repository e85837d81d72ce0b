//! The bus: where an accepted payload's rows become durable before the API
//! answers `202`, and where the aggregation consumer reads them back in order.
//!
//! [`BusBackend`] is the contract and [`Bus`] the handle the rest of adpipe
//! holds; [`embedded`] (a SQLite log in the data directory) and [`kafka`]
//! (topics on a Kafka-protocol cluster) implement it. Nothing outside this
//! folder names a bus kind.
//!
//! Positions: the embedded log keeps its read position in the store, written
//! in the same transaction as the rows (so each [`Record`] carries
//! `Some(offset)`); Kafka keeps it in the consumer group's committed offsets
//! (so records carry `None` and [`BusReader::done`] commits).

pub mod embedded;
pub mod kafka;
pub mod record;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{BusConfig, BusKind};
use crate::insights::cache::DataVersions;
use crate::row::RowEnvelope;
use crate::seal::Sealer;
use crate::store::Store;
use crate::telemetry::trace::TraceParent;
use crate::telemetry::BusConsumerMetrics;

pub use embedded::EmbeddedBus;

/// The bus could not take or give records.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus log: {0}")]
    Log(#[from] sqlx::Error),
    #[error("committing to the bus log: {0}")]
    Commit(#[source] Arc<rusqlite::Error>),
    #[error("starting the bus log's writer: {0}")]
    Writer(#[source] std::io::Error),
    #[error("the bus writer has stopped")]
    Closed,
    #[error("this bus does not carry kept payloads with their rows")]
    CannotCarry,
    #[error("{0}")]
    Kafka(#[from] kafka::KafkaError),
}

/// One record read from the bus.
#[derive(Clone, Debug)]
pub struct Record {
    /// Where the record sits, when the store keeps the bus's position
    /// (the embedded log); `None` when the bus keeps it (Kafka).
    pub position: Option<u64>,
    pub envelope: RowEnvelope,
    /// The context of the span that published it, when traces are exported.
    pub trace: Option<TraceParent>,
    /// The accepted payload's kept copy, when it travelled with its rows
    /// ([`BusBackend::publish_carrying`]); the consumer keeps it in
    /// metadata before it applies the rows.
    pub kept: Option<Vec<u8>>,
}

/// A payload that could not be processed, as the bus keeps it beside the
/// metadata store's copy (Kafka: `<topic>.dead-letters`, sealed, reason in
/// headers; the embedded bus keeps none: metadata has the copy).
#[derive(Clone, Copy, Debug)]
pub struct DeadLetter<'a> {
    pub tenant: &'a str,
    pub pipeline: &'a str,
    pub code: &'a str,
    pub message: &'a str,
    pub payload: &'a [u8],
}

/// A reader's wait for the data acknowledged so far ([`Bus::catch_up`]).
#[derive(Clone, Copy)]
pub struct CatchUp<'a> {
    /// Per-tenant versions of the embedded log's data.
    pub versions: &'a DataVersions,
    pub tenant: &'a str,
    pub timeout: Duration,
}

/// What every bus does.
#[async_trait::async_trait]
pub trait BusBackend: Send + Sync {
    /// Make an accepted payload's rows durable; `Ok` only once they are
    /// (fsync'd to the log, or acknowledged by the brokers). `trace`, the
    /// publishing span's context, is kept with each record.
    async fn publish(
        &self,
        envelope: &RowEnvelope,
        trace: Option<&TraceParent>,
    ) -> Result<(), BusError>;
    /// Whether [`Self::publish_carrying`] commits a payload's kept copy
    /// with its rows (one commit for both where the bus and metadata are
    /// local files, instead of one each).
    fn carries_payloads(&self) -> bool {
        false
    }
    /// [`Self::publish`], with the payload's kept copy (already sealed and
    /// encoded, [`crate::metadata::Metadata::carry_payload`]) in the same
    /// commit; the reader hands it back in [`Record::kept`].
    async fn publish_carrying(
        &self,
        _envelope: &RowEnvelope,
        _trace: Option<&TraceParent>,
        _kept: Vec<u8>,
    ) -> Result<(), BusError> {
        Err(BusError::CannotCarry)
    }
    /// Keep a dead letter on the bus too, where the bus has a place for it.
    async fn dead_letter(&self, letter: DeadLetter<'_>) -> Result<(), BusError>;
    /// The bus answers.
    async fn ping(&self) -> Result<(), BusError>;
    /// Records durable on the bus but not yet applied to `store`.
    async fn lag(&self, store: &Store) -> Result<u64, BusError>;
    /// Wait until everything acknowledged before this call is applied to
    /// `store`; returns whether it was (within the wait's timeout) and the
    /// version of the tenant's data answers computed now may be cached under.
    async fn catch_up(&self, store: &Store, wait: CatchUp<'_>) -> (bool, String);
    /// The aggregation consumer's reader, applying to `store`.
    fn reader(
        &self,
        store: &Store,
        metrics: BusConsumerMetrics,
    ) -> Result<Box<dyn BusReader>, BusError>;
    /// Names the data this bus carries, so that caches shared by several
    /// deployments (one Redis) never mix their answers.
    fn scope(&self) -> String;
}

/// Reads records in order for the one consumer loop
/// ([`crate::pipeline::consume`]).
#[async_trait::async_trait]
pub trait BusReader: Send {
    /// The next records to apply, oldest first; waits until the bus
    /// delivers something (which may turn out to be only records already
    /// applied, read again: then the list is empty, and [`Self::done`] still
    /// moves past them).
    async fn next(&mut self) -> Vec<Record>;
    /// The records [`Self::next`] returned last are in the store (or set
    /// aside as dead letters): move past them.
    async fn done(&mut self);
}

/// The configured bus; cheap to clone.
#[derive(Clone)]
pub struct Bus(Arc<dyn BusBackend>);

impl Bus {
    /// Open the bus `config` names (the embedded log in `data_dir`); dead
    /// letters the bus keeps are sealed with `sealer`.
    pub async fn open(
        config: &BusConfig,
        data_dir: &Path,
        sealer: Sealer,
    ) -> Result<Bus, BusError> {
        let backend: Arc<dyn BusBackend> = match config.kind {
            BusKind::Embedded => Arc::new(EmbeddedBus::open(&data_dir.join("bus.db")).await?),
            BusKind::Kafka => Arc::new(kafka::KafkaBus::open(config, sealer).await?),
        };
        Ok(Bus(backend))
    }

    /// Make an accepted payload's rows durable, with the context of the
    /// span publishing them (`None` when traces are not exported).
    pub async fn publish(
        &self,
        envelope: &RowEnvelope,
        trace: Option<&TraceParent>,
    ) -> Result<(), BusError> {
        self.0.publish(envelope, trace).await
    }

    /// See [`BusBackend::carries_payloads`].
    pub fn carries_payloads(&self) -> bool {
        self.0.carries_payloads()
    }

    /// [`Self::publish`] with the payload's kept copy in the same commit
    /// (only where [`Self::carries_payloads`]).
    pub async fn publish_carrying(
        &self,
        envelope: &RowEnvelope,
        trace: Option<&TraceParent>,
        kept: Vec<u8>,
    ) -> Result<(), BusError> {
        self.0.publish_carrying(envelope, trace, kept).await
    }

    /// Keep a dead letter on the bus too, where the bus has a place for it.
    pub async fn dead_letter(&self, letter: DeadLetter<'_>) -> Result<(), BusError> {
        self.0.dead_letter(letter).await
    }

    /// The bus answers.
    pub async fn ping(&self) -> Result<(), BusError> {
        self.0.ping().await
    }

    /// Records durable on the bus but not yet applied to `store` (0 when
    /// the bus cannot say).
    pub async fn lag(&self, store: &Store) -> u64 {
        self.0.lag(store).await.unwrap_or(0)
    }

    /// See [`BusBackend::catch_up`].
    pub async fn catch_up(
        &self,
        store: &Store,
        versions: &DataVersions,
        tenant: &str,
        timeout: Duration,
    ) -> (bool, String) {
        let wait = CatchUp {
            versions,
            tenant,
            timeout,
        };
        self.0.catch_up(store, wait).await
    }

    /// Wait until everything acknowledged so far is applied to `store`.
    pub async fn settled(&self, store: &Store, timeout: Duration) -> bool {
        let versions = DataVersions::default();
        let wait = CatchUp {
            versions: &versions,
            tenant: "",
            timeout,
        };
        self.0.catch_up(store, wait).await.0
    }

    /// The aggregation consumer's reader.
    pub fn reader(
        &self,
        store: &Store,
        metrics: BusConsumerMetrics,
    ) -> Result<Box<dyn BusReader>, BusError> {
        self.0.reader(store, metrics)
    }

    /// See [`BusBackend::scope`].
    pub fn scope(&self) -> String {
        self.0.scope()
    }
}
