//! Kept payloads, group-committed: every accepted payload is kept for replay
//! (`server.keep_payloads`), and a commit per payload would cost every
//! request its own fsync (SQLite, `synchronous=FULL`) or WAL flush
//! (PostgreSQL). One writer task takes whatever is queued when it is free
//! and inserts it with one multi-row statement; each caller returns once the
//! statement holding its payload has committed, as with the embedded bus.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{on_pool, Pool};

/// Largest number of payloads committed together (9 parameters each: well
/// inside SQLite's 32,766 and PostgreSQL's 65,535 bound parameters).
const GROUP_COMMIT_MAX: usize = 256;

/// A payload ready to insert (already sealed when sealing is on).
pub(super) struct KeptRow {
    pub id: String,
    pub tenant: String,
    pub pipeline: String,
    pub source: String,
    pub received_at_ms: i64,
    pub account_id: Option<String>,
    pub currency: Option<String>,
    pub blob: Vec<u8>,
    pub key_id: Option<String>,
}

struct KeepRequest {
    row: KeptRow,
    done: oneshot::Sender<Result<(), Arc<sqlx::Error>>>,
}

/// Why a payload was not kept.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    #[error("committing kept payloads: {0}")]
    Commit(#[source] Arc<sqlx::Error>),
    #[error("the kept-payload writer has stopped")]
    Closed,
}

/// Handle to the writer task; cheap to clone.
#[derive(Clone)]
pub(super) struct PayloadWriter {
    queue: mpsc::Sender<KeepRequest>,
}

impl PayloadWriter {
    /// Start the writer task on `pool`.
    pub fn start(pool: Pool) -> PayloadWriter {
        let (queue, rx) = mpsc::channel(4096);
        tokio::spawn(writer_task(pool, rx));
        PayloadWriter { queue }
    }

    /// Insert `row`; returns once it is committed.
    pub async fn keep(&self, row: KeptRow) -> Result<(), KeepError> {
        let (done, wait) = oneshot::channel();
        self.queue
            .send(KeepRequest { row, done })
            .await
            .map_err(|_| KeepError::Closed)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(KeepError::Commit(error)),
            Err(_) => Err(KeepError::Closed),
        }
    }
}

async fn writer_task(pool: Pool, mut rx: mpsc::Receiver<KeepRequest>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < GROUP_COMMIT_MAX {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let result = commit(&pool, &batch).await.map_err(Arc::new);
        if let Err(error) = &result {
            tracing::error!("kept-payload commit failed: {error}");
        }
        for request in batch {
            let _ = request.done.send(result.clone());
        }
    }
}

/// One multi-row `INSERT` for the group (a single statement is atomic, and
/// crosses to SQLite's connection thread once rather than once per row).
async fn commit(pool: &Pool, batch: &[KeepRequest]) -> Result<(), sqlx::Error> {
    on_pool!(pool, pool => {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO payloads (id, tenant, pipeline, source, received_at_ms, account_id, currency, payload, key_id) ",
        );
        insert.push_values(batch, |mut values, KeepRequest { row, .. }| {
            values
                .push_bind(&row.id)
                .push_bind(&row.tenant)
                .push_bind(&row.pipeline)
                .push_bind(&row.source)
                .push_bind(row.received_at_ms)
                .push_bind(&row.account_id)
                .push_bind(&row.currency)
                .push_bind(&row.blob)
                .push_bind(&row.key_id);
        });
        insert.build().execute(pool).await.map(|_| ())
    })
}
