//! Kept payloads, group-committed: every accepted payload is kept for replay
//! (`server.keep_payloads`), and a commit per payload would cost every
//! request its own fsync (SQLite, `synchronous=FULL`) or WAL flush
//! (PostgreSQL). A [`GroupCommit`] writer inserts whatever is queued with one
//! multi-row statement; each caller returns once the statement holding its
//! payload has committed, as with the embedded bus.

use super::{on_pool, Pool};
use crate::group_commit::GroupCommit;

/// Largest number of payloads committed together (10 parameters each: well
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
    /// How `blob` (opened) is encoded: `lz4`, or `None` as received.
    pub encoding: Option<&'static str>,
}

/// Start the writer of kept payloads on `pool`.
pub(super) fn writer(pool: Pool) -> GroupCommit<KeptRow, ()> {
    GroupCommit::start(GROUP_COMMIT_MAX, move |rows: Vec<KeptRow>| {
        let pool = pool.clone();
        async move {
            commit(&pool, &rows).await?;
            Ok(vec![(); rows.len()])
        }
    })
}

/// One multi-row `INSERT` for the group (a single statement is atomic, and
/// crosses to SQLite's connection thread once rather than once per row).
async fn commit(pool: &Pool, batch: &[KeptRow]) -> Result<(), sqlx::Error> {
    on_pool!(pool, pool => {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO payloads (id, tenant, pipeline, source, received_at_ms, account_id, currency, payload, key_id, encoding) ",
        );
        insert.push_values(batch, |mut values, row| {
            values
                .push_bind(&row.id)
                .push_bind(&row.tenant)
                .push_bind(&row.pipeline)
                .push_bind(&row.source)
                .push_bind(row.received_at_ms)
                .push_bind(&row.account_id)
                .push_bind(&row.currency)
                .push_bind(&row.blob)
                .push_bind(&row.key_id)
                .push_bind(row.encoding);
        });
        insert.build().execute(pool).await.map(|_| ())
    })
}
