//! The aggregation consumer: one loop, for every bus, that reads records
//! ([`crate::bus::BusReader`]), applies them to the store, and moves the
//! reader past them — without letting one record stop aggregation for
//! everyone.
//!
//! A batch the store refuses is retried. While the store does not answer
//! (an outage) the consumer waits, keeps everything and commits nothing, for
//! as long as it takes. When the store answers but keeps refusing the batch,
//! the batch is applied record by record, and a record refused
//! [`REFUSALS_BEFORE_DEAD_LETTER`] times becomes a dead letter (kept in
//! metadata with the store's reason, and on the bus where the bus keeps
//! dead letters); consumption goes on past it.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::bus::{Bus, BusReader, DeadLetter, Record};
use crate::insights::cache::DataVersions;
use crate::metadata::{Metadata, MetadataError, NewDeadLetter};
use crate::row::RowEnvelope;
use crate::store::{Store, StoreError};
use crate::telemetry::trace;
use crate::telemetry::DeadLetterLabels;

/// Apply what `reader` delivers to the applier's store, in order, forever.
pub async fn run(mut reader: Box<dyn BusReader>, applier: Applier, versions: Arc<DataVersions>) {
    let mut crash = CrashPoint::from_env();
    loop {
        let records = reader.next().await;
        // Raise versions first: see crate::insights::cache for why this order is safe.
        for record in &records {
            if let Some(position) = record.position {
                versions.advance(&record.envelope.tenant, position);
            }
        }
        let spans = store_spans(&records);
        applier.apply(&records).await;
        drop(spans);
        if !records.is_empty() {
            crash.passed();
        }
        reader.done().await;
    }
}

/// One `store.apply` span per record that carries its publisher's trace
/// context, as that span's child: the payload's trace ends where its rows
/// reach the store. The spans last while the batch is applied (dropped
/// after).
fn store_spans(records: &[Record]) -> Vec<tracing::Span> {
    records
        .iter()
        .filter_map(|record| {
            let parent = record.trace.as_ref()?;
            let span = tracing::info_span!(
                "store.apply",
                otel.kind = "consumer",
                tenant = %record.envelope.tenant,
                pipeline = %record.envelope.pipeline,
                rows = record.envelope.rows.len(),
                batch_records = records.len(),
            );
            trace::continue_record(&span, parent);
            Some(span)
        })
        .collect()
}

/// A test's way to kill the consumer at the worst moment for exactly-once:
/// with `ADPIPE_TEST_ABORT_AFTER_APPLIES=N`, the process aborts right after
/// its Nth batch is in the store and before the bus hears it is done, so the
/// batch is delivered again after a restart. Unset (always, outside tests):
/// nothing happens.
struct CrashPoint {
    remaining: Option<u64>,
}

impl CrashPoint {
    const VARIABLE: &'static str = "ADPIPE_TEST_ABORT_AFTER_APPLIES";

    fn from_env() -> CrashPoint {
        let remaining = std::env::var(Self::VARIABLE)
            .ok()
            .and_then(|n| n.parse().ok());
        CrashPoint { remaining }
    }

    fn passed(&mut self) {
        if let Some(n) = self.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                eprintln!(
                    "{}: aborting after a store write, before its commit",
                    Self::VARIABLE
                );
                std::process::abort();
            }
        }
    }
}

/// Refusals by an answering store before a record is set aside.
pub const REFUSALS_BEFORE_DEAD_LETTER: u32 = 3;

/// The dead-letter `source` of records the store refused.
pub const SOURCE: &str = "bus";

/// The dead-letter code of records the store refused.
pub const CODE: &str = "store_refused";

/// Applies bus records to the store; cheap to clone.
#[derive(Clone)]
pub struct Applier {
    pub store: Store,
    pub metadata: Metadata,
    /// Refused records are kept on the bus too, where it has a place for them.
    pub bus: Bus,
    pub dead_letters: Family<DeadLetterLabels, Counter>,
}

impl Applier {
    /// Apply `records` in order; returns once every record is either in
    /// the store or kept as a dead letter. Where the store keeps the bus's
    /// position, a set-aside record is applied as an empty one (its
    /// position done, its rows not).
    pub async fn apply(&self, records: &[Record]) {
        if records.is_empty() {
            return;
        }
        self.keep_carried(records).await;
        if self.apply_retrying(records).await.is_ok() {
            return;
        }
        tracing::warn!(
            records = records.len(),
            "the store keeps refusing a batch; applying its records one by one"
        );
        for record in records {
            if let Err(error) = self.apply_retrying(std::slice::from_ref(record)).await {
                self.set_aside(record, &error).await;
            }
        }
    }

    /// Keep the payloads that travelled with `records`' rows
    /// ([`Record::kept`]) before the rows are applied, so a crash in between
    /// keeps them on the next delivery (keeping one twice leaves the first).
    /// A metadata outage pauses consumption until it ends, as a store outage
    /// does; a copy that does not decode (never written by this adpipe) is
    /// reported and left out, and never stops the others.
    async fn keep_carried(&self, records: &[Record]) {
        let carried: Vec<&[u8]> = records.iter().filter_map(|r| r.kept.as_deref()).collect();
        if carried.is_empty() {
            return;
        }
        let mut delay = Duration::from_millis(100);
        loop {
            match self.metadata.keep_carried(&carried).await {
                Ok(()) => return,
                Err(MetadataError::Encoding(_)) => {
                    for one in &carried {
                        if let Err(e) = self.metadata.keep_carried(std::slice::from_ref(one)).await
                        {
                            tracing::error!(
                                "a payload carried on the bus was not kept for replay: {e}"
                            );
                        }
                    }
                    return;
                }
                Err(e) => {
                    tracing::error!("keeping the payloads carried on the bus failed; consumption paused, retrying: {e}");
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Apply, waiting out outages; `Err` after the store answered and
    /// refused [`REFUSALS_BEFORE_DEAD_LETTER`] times.
    async fn apply_retrying(&self, records: &[Record]) -> Result<(), StoreError> {
        let envelopes: Vec<&RowEnvelope> = records.iter().map(|r| &r.envelope).collect();
        let through = records.iter().filter_map(|r| r.position).max();
        let mut delay = Duration::from_millis(100);
        let mut refusals = 0;
        loop {
            let error = match self.store.apply(&envelopes, through).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if self.store.ping().await.is_ok() {
                refusals += 1;
                tracing::error!(refusals, "the store refused rows: {error}");
                if refusals >= REFUSALS_BEFORE_DEAD_LETTER {
                    return Err(error);
                }
            } else {
                tracing::error!(
                    "applying rows to the store failed; consumption paused, retrying: {error}"
                );
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Keep a refused record as a dead letter, then mark its offset done.
    async fn set_aside(&self, record: &Record, error: &StoreError) {
        let envelope = &record.envelope;
        let payload = serde_json::to_vec(envelope).unwrap_or_default();
        let message = format!(
            "the store refused these {} normalized rows {REFUSALS_BEFORE_DEAD_LETTER} times: {error}",
            envelope.rows.len()
        );
        tracing::error!(tenant = %envelope.tenant, pipeline = %envelope.pipeline, "bus record set aside as a dead letter: {message}");
        let on_bus = DeadLetter {
            tenant: &envelope.tenant,
            pipeline: &envelope.pipeline,
            code: CODE,
            message: &message,
            payload: &payload,
        };
        if let Err(e) = self.bus.dead_letter(on_bus).await {
            tracing::warn!(
                "keeping the dead letter on the bus failed (it is kept in metadata): {e}"
            );
        }
        let mut delay = Duration::from_millis(100);
        loop {
            let letter = NewDeadLetter {
                tenant: &envelope.tenant,
                pipeline: &envelope.pipeline,
                source: SOURCE,
                code: CODE,
                message: &message,
                payload: &payload,
                account_id: None,
                currency: None,
            };
            match self.metadata.add_dead_letter(letter).await {
                Ok(_) => break,
                // Never drop it: wait for metadata to come back.
                Err(e) => tracing::error!("keeping a refused bus record failed, retrying: {e}"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        self.dead_letters
            .get_or_create(&DeadLetterLabels {
                pipeline: envelope.pipeline.clone(),
                code: CODE.into(),
            })
            .inc();
        // An empty record only moves the position where the store keeps it.
        let done = Record {
            position: record.position,
            envelope: RowEnvelope::default(),
            trace: None,
            kept: None,
        };
        let _ = self.apply_retrying(&[done]).await;
    }
}
