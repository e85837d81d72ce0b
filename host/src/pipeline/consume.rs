//! Applying bus records to the store, for both consumers (embedded and
//! Kafka), without letting one record stop aggregation for everyone.
//!
//! A batch the store refuses is retried. While the store does not answer
//! (an outage) the consumer waits, keeps everything and commits nothing, for
//! as long as it takes. When the store answers but keeps refusing the batch,
//! the batch is applied record by record, and a record refused
//! [`REFUSALS_BEFORE_DEAD_LETTER`] times becomes a dead letter (kept in
//! metadata with the store's reason, and on the Kafka dead-letter topic in
//! Kafka mode); consumption goes on past it.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::bus::kafka::KafkaBus;
use crate::metadata::{Metadata, NewDeadLetter};
use crate::row::RowEnvelope;
use crate::store::{Store, StoreError};
use crate::telemetry::DeadLetterLabels;

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
    /// Kafka mode: refused records also go to the dead-letter topic.
    pub kafka: Option<KafkaBus>,
    pub dead_letters: Family<DeadLetterLabels, Counter>,
}

impl Applier {
    /// Apply `records` (offset, rows) in order; returns once every record is
    /// either in the store or kept as a dead letter. Embedded mode: the
    /// store records each applied offset, so a set-aside record is applied
    /// as an empty one (its offset done, its rows not).
    pub async fn apply(&self, records: &[(u64, RowEnvelope)]) {
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

    /// Apply, waiting out outages; `Err` after the store answered and
    /// refused [`REFUSALS_BEFORE_DEAD_LETTER`] times.
    async fn apply_retrying(&self, records: &[(u64, RowEnvelope)]) -> Result<(), StoreError> {
        let mut delay = Duration::from_millis(100);
        let mut refusals = 0;
        loop {
            let error = match self.store.apply(records).await {
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
    async fn set_aside(&self, record: &(u64, RowEnvelope), error: &StoreError) {
        let (offset, envelope) = record;
        let payload = serde_json::to_vec(envelope).unwrap_or_default();
        let message = format!(
            "the store refused these {} normalized rows {REFUSALS_BEFORE_DEAD_LETTER} times: {error}",
            envelope.rows.len()
        );
        tracing::error!(tenant = %envelope.tenant, pipeline = %envelope.pipeline, "bus record set aside as a dead letter: {message}");
        if let Some(kafka) = &self.kafka {
            if let Err(e) = kafka
                .dead_letter(
                    &envelope.tenant,
                    &envelope.pipeline,
                    CODE,
                    &message,
                    &payload,
                )
                .await
            {
                tracing::warn!(
                    "publishing the dead letter to Kafka failed (it is kept in metadata): {e}"
                );
            }
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
        let done = RowEnvelope {
            tenant: envelope.tenant.clone(),
            pipeline: envelope.pipeline.clone(),
            rows: vec![],
        };
        // An empty record only moves the embedded store's offset (a no-op on ClickHouse).
        let _ = self.apply_retrying(&[(*offset, done)]).await;
    }
}
