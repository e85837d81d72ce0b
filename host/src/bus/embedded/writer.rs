//! The log's writer: one thread that owns the log's only writing connection.
//!
//! Appends queue up while a commit runs; the thread then takes everything
//! waiting (up to [`GROUP_COMMIT_MAX`]), inserts it in one transaction with
//! one sync, hands the records to the [`Feed`], moves the head and answers
//! each caller with its offset. Trims run on the same connection.
//!
//! Why a thread of its own: through sqlx, each commit went from the writer
//! task to the connection's worker thread and back, and SQLite threads
//! parking and waking were the largest cost of a webhook (README, webhook
//! benchmark). Here a commit is one wake-up of this thread; and with every
//! write on one connection, its page cache is never invalidated by another
//! connection's write (the consumer's trims were).

use std::path::Path;
use std::sync::Arc;

use rusqlite::{params, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, watch};

use super::feed::Feed;
use super::Logged;
use crate::telemetry::trace::TraceParent;

/// Largest number of appends committed together.
const GROUP_COMMIT_MAX: usize = 512;

/// Appends and trims waiting for the thread (senders wait when it is full).
const QUEUE: usize = 4096;

/// Why the writer could not do what it was asked.
pub(super) type WriteError = Arc<rusqlite::Error>;

/// A record waiting for the group commit.
pub(super) struct Appended {
    pub payload: Vec<u8>,
    /// The publishing span's trace context.
    pub trace: Option<TraceParent>,
    /// The payload's kept copy, when it travels with the rows.
    pub kept: Option<Vec<u8>>,
}

/// What the thread is asked to do.
pub(super) enum Command {
    Append(Appended, oneshot::Sender<Result<u64, WriteError>>),
    /// Delete records up to and including this offset.
    Trim(u64, oneshot::Sender<Result<(), WriteError>>),
}

/// Start the writer of the log at `path` (its table exists); it stops when
/// every sender is dropped.
pub(super) fn start(
    path: &Path,
    head: watch::Sender<u64>,
    feed: Arc<Feed>,
) -> std::io::Result<mpsc::Sender<Command>> {
    let connection = crate::sqlite::open_writer(path).map_err(std::io::Error::other)?;
    let (queue, commands) = mpsc::channel(QUEUE);
    std::thread::Builder::new()
        .name("adpipe-bus-writer".into())
        .spawn(move || run(connection, commands, head, feed))?;
    Ok(queue)
}

fn run(
    mut connection: rusqlite::Connection,
    mut commands: mpsc::Receiver<Command>,
    head: watch::Sender<u64>,
    feed: Arc<Feed>,
) {
    let mut appends = Vec::new();
    let mut trims = Vec::new();
    while let Some(first) = commands.blocking_recv() {
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Append(record, reply) => appends.push((record, reply)),
                Command::Trim(offset, reply) => trims.push((offset, reply)),
            }
            if appends.len() < GROUP_COMMIT_MAX {
                next = commands.try_recv().ok();
            }
        }
        if !appends.is_empty() {
            commit_group(&mut connection, std::mem::take(&mut appends), &head, &feed);
        }
        for (offset, reply) in trims.drain(..) {
            let trimmed = connection
                .execute("DELETE FROM log WHERE offset <= ?1", params![offset as i64])
                .map(|_| feed.trim_through(offset))
                .map_err(Arc::new);
            let _ = reply.send(trimmed);
        }
    }
}

/// Commit `group`, then feed, move the head, and answer every caller.
fn commit_group(
    connection: &mut rusqlite::Connection,
    group: Vec<(Appended, oneshot::Sender<Result<u64, WriteError>>)>,
    head: &watch::Sender<u64>,
    feed: &Feed,
) {
    match commit(connection, &group) {
        Ok(offsets) => {
            let mut replies = Vec::with_capacity(group.len());
            let mut committed = Vec::with_capacity(group.len());
            for ((record, reply), offset) in group.into_iter().zip(offsets) {
                replies.push((reply, offset));
                committed.push(Logged {
                    offset,
                    payload: record.payload,
                    trace: record.trace,
                    kept: record.kept,
                });
            }
            let last = committed.last().map(|r| r.offset);
            // The feed first: a reader woken by the head finds them there.
            feed.push(committed);
            if let Some(last) = last {
                head.send_replace(last);
            }
            for (reply, offset) in replies {
                let _ = reply.send(Ok(offset));
            }
        }
        Err(error) => {
            tracing::error!("committing to the bus log failed: {error}");
            let error = Arc::new(error);
            for (_, reply) in group {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// One transaction for the whole group (one sync); offsets in the group's order.
fn commit(
    connection: &mut rusqlite::Connection,
    group: &[(Appended, oneshot::Sender<Result<u64, WriteError>>)],
) -> rusqlite::Result<Vec<u64>> {
    let now = chrono::Utc::now().timestamp_millis();
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut offsets = Vec::with_capacity(group.len());
    {
        let mut insert = transaction.prepare_cached(
            "INSERT INTO log (appended_at_ms, payload, traceparent, kept) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (record, _) in group {
            let trace = record.trace.as_ref().map(TraceParent::as_str);
            insert.execute(params![now, record.payload, trace, record.kept])?;
            offsets.push(transaction.last_insert_rowid() as u64);
        }
    }
    transaction.commit()?;
    Ok(offsets)
}
