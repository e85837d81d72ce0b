//! Kept payloads, group-committed: every accepted payload is kept for replay
//! (`server.keep_payloads`), and a commit per payload would cost every
//! request its own fsync (SQLite, `synchronous=FULL`) or WAL flush
//! (PostgreSQL). A [`GroupCommit`] writer inserts whatever is queued with one
//! multi-row statement; each caller returns once the statement holding its
//! payload has committed, as with the embedded bus.
//!
//! On the embedded bus a payload does not take that second commit at all: it
//! travels with its rows in the bus log's commit ([`carried`]), and the
//! consumer keeps it ([`insert`], already-kept ones left alone) before it
//! applies the rows, so a crash in between keeps it on the next delivery.

use super::{on_pool, Pool};
use crate::group_commit::GroupCommit;

/// Largest number of payloads committed together (10 parameters each: well
/// inside SQLite's 32,766 and PostgreSQL's 65,535 bound parameters).
pub(super) const GROUP_COMMIT_MAX: usize = 256;

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
            insert(&pool, &rows, Existing::Refuse).await?;
            Ok(vec![(); rows.len()])
        }
    })
}

/// What an insert does with a payload whose id is already kept.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Existing {
    /// Fail the statement (a new id is never kept yet).
    Refuse,
    /// Leave it (a carried payload delivered again).
    Keep,
}

/// One multi-row `INSERT` for the group (a single statement is atomic, and
/// crosses to SQLite's connection thread once rather than once per row).
pub(super) async fn insert(
    pool: &Pool,
    batch: &[KeptRow],
    existing: Existing,
) -> Result<(), sqlx::Error> {
    if batch.is_empty() {
        return Ok(());
    }
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
        if existing == Existing::Keep {
            insert.push(" ON CONFLICT (id) DO NOTHING");
        }
        insert.build().execute(pool).await.map(|_| ())
    })
}

/// A kept payload as it travels on the bus: a protobuf message (the
/// embedded log's `kept` column; no other reader).
#[derive(Clone, PartialEq, prost::Message)]
struct CarriedPayload {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    tenant: String,
    #[prost(string, tag = "3")]
    pipeline: String,
    #[prost(string, tag = "4")]
    source: String,
    #[prost(int64, tag = "5")]
    received_at_ms: i64,
    #[prost(string, optional, tag = "6")]
    account_id: Option<String>,
    #[prost(string, optional, tag = "7")]
    currency: Option<String>,
    #[prost(bytes = "vec", tag = "8")]
    blob: Vec<u8>,
    #[prost(string, optional, tag = "9")]
    key_id: Option<String>,
    #[prost(string, optional, tag = "10")]
    encoding: Option<String>,
}

/// `row`, encoded to travel with its rows.
pub(super) fn carried(row: KeptRow) -> Vec<u8> {
    use prost::Message as _;
    CarriedPayload {
        id: row.id,
        tenant: row.tenant,
        pipeline: row.pipeline,
        source: row.source,
        received_at_ms: row.received_at_ms,
        account_id: row.account_id,
        currency: row.currency,
        blob: row.blob,
        key_id: row.key_id,
        encoding: row.encoding.map(str::to_owned),
    }
    .encode_to_vec()
}

/// The row [`carried`] encoded.
pub(super) fn from_carried(bytes: &[u8]) -> Result<KeptRow, super::MetadataError> {
    use prost::Message as _;
    let carried = CarriedPayload::decode(bytes)
        .map_err(|e| super::MetadataError::Encoding(format!("a carried payload: {e}")))?;
    let encoding = match carried.encoding.as_deref() {
        None => None,
        Some(super::LZ4) => Some(super::LZ4),
        Some(other) => {
            return Err(super::MetadataError::Encoding(format!(
                "a carried payload encoded as `{other}`, which this adpipe does not know"
            )))
        }
    };
    Ok(KeptRow {
        id: carried.id,
        tenant: carried.tenant,
        pipeline: carried.pipeline,
        source: carried.source,
        received_at_ms: carried.received_at_ms,
        account_id: carried.account_id,
        currency: carried.currency,
        blob: carried.blob,
        key_id: carried.key_id,
        encoding,
    })
}
