//! The embedded bus: a durable, append-only log of accepted payloads' rows in
//! `<data_dir>/bus.db` (SQLite in WAL mode, `synchronous=FULL`, so a commit is
//! on disk before it returns).
//!
//! Appends go through one writer thread that owns the log's only writing
//! connection and commits everything queued in one transaction
//! ([`writer`]); [`EmbeddedBus::append`] returns only after that commit,
//! which is what lets the API answer `202`. Offsets are strictly increasing;
//! the consumer's position lives in the store, written in the same
//! transaction as the rows it applied, and records the store has applied are
//! trimmed from the log. What was just committed is also kept in memory
//! ([`feed`]), where a caught-up reader finds it without reading it back.
//!
//! Each record keeps the context of the span that published it (a W3C
//! `traceparent`, column `traceparent`, NULL when traces are not exported),
//! so the consumer's span joins the payload's trace, and may carry the
//! payload's kept copy (column `kept`, [`EmbeddedBus::append`]): one commit
//! makes both durable, and the consumer moves the copy to metadata.

mod feed;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use sqlx::Row as _;
use tokio::sync::{mpsc, oneshot, watch};

use super::{BusBackend, BusError, BusReader, CatchUp, DeadLetter, Record};
use crate::row::RowEnvelope;
use crate::store::Store;
use crate::telemetry::trace::TraceParent;
use crate::telemetry::BusConsumerMetrics;
use feed::Feed;
use writer::{Appended, Command};

/// Handle to the embedded log; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedBus {
    /// Reads (what the feed cannot answer) and checks.
    pool: SqlitePool,
    writer: mpsc::Sender<Command>,
    feed: Arc<Feed>,
    head: watch::Receiver<u64>,
    path: std::path::PathBuf,
}

impl EmbeddedBus {
    /// Open (or create) the log at `path` and start its writer thread.
    pub async fn open(path: &Path) -> Result<EmbeddedBus, BusError> {
        let pool = crate::sqlite::open_file(path).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS log (
                offset INTEGER PRIMARY KEY AUTOINCREMENT,
                appended_at_ms INTEGER NOT NULL,
                payload BLOB NOT NULL,
                traceparent TEXT,
                kept BLOB
            )",
        )
        .execute(&pool)
        .await?;
        // Logs written before records kept their trace context, or carried
        // kept payloads.
        for (column, kind) in [("traceparent", "TEXT"), ("kept", "BLOB")] {
            let present: i64 =
                sqlx::query("SELECT COUNT(*) FROM pragma_table_info('log') WHERE name = ?")
                    .bind(column)
                    .fetch_one(&pool)
                    .await?
                    .get(0);
            if present == 0 {
                sqlx::query(&format!("ALTER TABLE log ADD COLUMN {column} {kind}"))
                    .execute(&pool)
                    .await?;
            }
        }
        // AUTOINCREMENT keeps offsets increasing even after the log is trimmed empty.
        let head: i64 =
            sqlx::query("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'log'), 0)")
                .fetch_one(&pool)
                .await?
                .get(0);
        let (head_tx, head_rx) = watch::channel(head as u64);
        let feed = Arc::new(Feed::default());
        let writer = writer::start(path, head_tx, feed.clone()).map_err(BusError::Writer)?;
        Ok(EmbeddedBus {
            pool,
            writer,
            feed,
            head: head_rx,
            path: path.to_owned(),
        })
    }

    /// Append one record (published in the span `trace` names, carrying
    /// `kept`, a payload's kept copy, when given); returns its offset once it
    /// is durable on disk.
    pub async fn append(
        &self,
        payload: Vec<u8>,
        trace: Option<&TraceParent>,
        kept: Option<Vec<u8>>,
    ) -> Result<u64, BusError> {
        let record = Appended {
            payload,
            trace: trace.cloned(),
            kept,
        };
        self.ask(|reply| Command::Append(record, reply)).await
    }

    /// Send the writer a command and wait for its answer.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, writer::WriteError>>) -> Command,
    ) -> Result<T, BusError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(command(reply))
            .await
            .map_err(|_| BusError::Closed)?;
        answer
            .await
            .map_err(|_| BusError::Closed)?
            .map_err(BusError::Commit)
    }

    /// Offset of the newest durable record (0 when none was ever appended).
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// Wait until the head moves past `offset` (or `timeout` passes).
    pub async fn wait_beyond(&self, offset: u64, timeout: Duration) {
        let mut head = self.head.clone();
        let waited = tokio::time::timeout(timeout, head.wait_for(|&h| h > offset)).await;
        drop(waited);
    }

    /// Up to `limit` records after `offset`, oldest first, and no more of
    /// them than fit in [`READ_BYTES`] (always at least one).
    ///
    /// The byte budget is counted on the records' lengths alone (SQLite reads
    /// a blob's length from its header), and the records are then read as
    /// one range of the key. Counting with the blobs in the window's rows
    /// copied every record into SQLite's sorter first: a sixth of the
    /// scale benchmark's bus thread. Records still in the [`feed`] come from
    /// there, the same way.
    pub async fn read_after(&self, offset: u64, limit: u32) -> Result<Vec<Logged>, BusError> {
        if let Some(records) = self.feed.read_after(offset, limit, READ_BYTES as usize) {
            return Ok(records);
        }
        let rows = sqlx::query(
            "SELECT offset, payload, traceparent, kept FROM log
             WHERE offset > ?1 AND offset <= (
                SELECT MAX(offset) FROM (
                    SELECT offset, SUM(size) OVER (ORDER BY offset) - size AS before
                    FROM (SELECT offset, LENGTH(payload) + COALESCE(LENGTH(kept), 0) AS size
                          FROM log WHERE offset > ?1 ORDER BY offset LIMIT ?2))
                WHERE before < ?3)
             ORDER BY offset",
        )
        .bind(offset as i64)
        .bind(i64::from(limit))
        .bind(READ_BYTES)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Logged {
                offset: r.get::<i64, _>(0) as u64,
                payload: r.get(1),
                trace: r.get::<Option<String>, _>(2).map(TraceParent::from_record),
                kept: r.get(3),
            })
            .collect())
    }

    /// Drop records up to and including `offset` (the store has applied them).
    pub async fn trim_through(&self, offset: u64) -> Result<(), BusError> {
        self.ask(|reply| Command::Trim(offset, reply)).await
    }
}

#[async_trait::async_trait]
impl BusBackend for EmbeddedBus {
    async fn publish(
        &self,
        envelope: &RowEnvelope,
        trace: Option<&TraceParent>,
    ) -> Result<(), BusError> {
        self.append(super::record::encode_envelope(envelope), trace, None)
            .await
            .map(|_| ())
    }

    fn carries_payloads(&self) -> bool {
        true
    }

    async fn publish_carrying(
        &self,
        envelope: &RowEnvelope,
        trace: Option<&TraceParent>,
        kept: Vec<u8>,
    ) -> Result<(), BusError> {
        self.append(super::record::encode_envelope(envelope), trace, Some(kept))
            .await
            .map(|_| ())
    }

    /// Dead letters live in the metadata store only.
    async fn dead_letter(&self, _: DeadLetter<'_>) -> Result<(), BusError> {
        Ok(())
    }

    async fn ping(&self) -> Result<(), BusError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn lag(&self, store: &Store) -> Result<u64, BusError> {
        Ok(self.head().saturating_sub(store.applied_position()))
    }

    async fn catch_up(&self, store: &Store, wait: CatchUp<'_>) -> (bool, String) {
        let caught_up = store.wait_applied(self.head(), wait.timeout).await;
        let version = wait.versions.get(wait.tenant);
        let caught_up = caught_up && store.wait_applied(version, wait.timeout).await;
        (caught_up, version.to_string())
    }

    fn reader(
        &self,
        store: &Store,
        metrics: BusConsumerMetrics,
    ) -> Result<Box<dyn BusReader>, BusError> {
        Ok(Box::new(LogReader::new(
            self.clone(),
            store.clone(),
            metrics,
        )))
    }

    fn scope(&self) -> String {
        format!("embedded|{}", self.path.display())
    }
}

/// Records read per store transaction.
const READ_BATCH: u32 = 64;

/// Record bytes read per store transaction: under a backlog of large reports
/// (5,000 rows a record), 64 records decoded at once held hundreds of MB.
const READ_BYTES: i64 = 8 * 1024 * 1024;

/// How long a reader that has caught up with the log waits before reading
/// what came since: a trickle of small records (webhooks, one row each) is
/// then applied a few dozen records to a store transaction instead of one or
/// two. Measured with signed webhooks at 16 connections (embedded, payloads
/// kept), four rounds each: 6.3–6.5 context switches and 376–386 µs of
/// server CPU per request instead of 7.8–8.0 and 427–470 µs (README).
/// A backlog is read without waiting, and so is the tail while a query waits
/// for what was acknowledged before it (`Store::applied_awaited`).
const LINGER: Duration = Duration::from_millis(10);

/// Batches between trims of what the store has applied.
const TRIM_EVERY: u32 = 16;

/// Reads the log from the store's position on, one batch ahead: while the
/// consumer applies a batch, the next one is read and decoded on another
/// task (the log only grows past what was read, so reading ahead is safe;
/// the store's position still says what is applied).
struct LogReader {
    bus: EmbeddedBus,
    store: Store,
    metrics: BusConsumerMetrics,
    /// Records the last [`BusReader::next`] returned.
    read: u64,
    since_trim: u32,
    /// The newest offset returned so far.
    returned: u64,
    /// The batch after it, being read.
    ahead: Option<tokio::task::JoinHandle<Result<Read, BusError>>>,
    /// Records returned since the store and the allocator were last tidied.
    unsettled: u64,
    settled_at: std::time::Instant,
    /// See [`LINGER`].
    linger: Duration,
}

/// How often, at most, a caught-up reader has the store and the allocator
/// tidy up after what it read.
const SETTLE_EVERY: Duration = Duration::from_secs(5);

impl LogReader {
    fn new(bus: EmbeddedBus, store: Store, metrics: BusConsumerMetrics) -> LogReader {
        LogReader {
            bus,
            store,
            metrics,
            read: 0,
            since_trim: 0,
            returned: 0,
            ahead: None,
            unsettled: 0,
            settled_at: std::time::Instant::now(),
            linger: LINGER,
        }
    }

    /// Caught up: when records came since the last time and [`SETTLE_EVERY`]
    /// has passed, the store tidies up (see [`Store::settle`]) and what a
    /// backlog took from the allocator goes back to the system.
    async fn settle_when_due(&mut self) {
        if self.unsettled == 0 || self.settled_at.elapsed() < SETTLE_EVERY {
            return;
        }
        self.unsettled = 0;
        self.settled_at = std::time::Instant::now();
        // Memory first: the store's checkpoint waits for the queries reading
        // it, and those should not run beside a backlog's leftover heap.
        crate::allocator::release_free_memory();
        if let Err(error) = self.store.settle().await {
            tracing::warn!("tidying the store after a backlog failed: {error}");
        }
    }

    /// Wait [`LINGER`] for more records, unless a query waits for the
    /// records already there.
    async fn linger(&self) {
        let _ = tokio::time::timeout(self.linger, self.store.applied_awaited()).await;
    }

    /// Hand out `records` and start reading the ones after them.
    fn returning(&mut self, records: Vec<Record>) -> Vec<Record> {
        self.read = records.len() as u64;
        self.unsettled += self.read;
        if let Some(last) = records.iter().filter_map(|r| r.position).max() {
            self.returned = self.returned.max(last);
        }
        let (bus, after) = (self.bus.clone(), self.returned);
        self.ahead = Some(tokio::spawn(async move { read_records(&bus, after).await }));
        records
    }
}

/// A batch of records read from the log, decoded.
struct Read {
    records: Vec<Record>,
    /// The batch stopped at [`READ_BATCH`] records or at [`READ_BYTES`]
    /// (bytes counted as [`EmbeddedBus::read_after`] counts them).
    full: bool,
}

/// The records after `offset` (a batch's worth), decoded.
async fn read_records(bus: &EmbeddedBus, offset: u64) -> Result<Read, BusError> {
    let records = bus.read_after(offset, READ_BATCH).await?;
    let bytes: usize = records
        .iter()
        .map(|r| r.payload.len() + r.kept.as_ref().map_or(0, Vec::len))
        .sum();
    // A batch cut by the byte budget holds at least the budget: the record
    // left out is the first to start past it.
    let full = records.len() >= READ_BATCH as usize || bytes as i64 >= READ_BYTES;
    let records = records
        .into_iter()
        .map(
            |Logged {
                 offset,
                 payload,
                 trace,
                 kept,
             }| Record {
                position: Some(offset),
                trace,
                kept,
                envelope: super::record::decode(&payload).unwrap_or_else(|error| {
                    // Only adpipe writes the log; keep going, but say so loudly.
                    tracing::error!(offset, "undecodable bus record skipped: {error}");
                    RowEnvelope::default()
                }),
            },
        )
        .collect();
    Ok(Read { records, full })
}

#[async_trait::async_trait]
impl BusReader for LogReader {
    async fn next(&mut self) -> Vec<Record> {
        // The batch read ahead goes out at once when it is full or more
        // records wait beyond it (a backlog). Otherwise it reached the tail
        // of the log: the reader lingers, and reads it again with what came
        // meanwhile. (Counting records alone, a backlog of large reports,
        // fewer records than a batch but many times its bytes, was lingered
        // over and read twice, batch after batch.)
        let mut lingered = false;
        if let Some(ahead) = self.ahead.take() {
            match ahead.await {
                Ok(Ok(read)) if !read.records.is_empty() => {
                    let last = read.records.iter().filter_map(|r| r.position).max();
                    if read.full || last.is_some_and(|last| self.bus.head() > last) {
                        return self.returning(read.records);
                    }
                    self.linger().await;
                    lingered = true;
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::error!("reading the bus failed, retrying: {error}"),
                Err(error) => tracing::error!("reading the bus ahead failed, retrying: {error}"),
            }
        }
        loop {
            let from = self.store.applied_position().max(self.returned);
            let read = match read_records(&self.bus, from).await {
                Ok(read) => read,
                Err(error) => {
                    tracing::error!("reading the bus failed, retrying: {error}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if read.records.is_empty() {
                self.settle_when_due().await;
                self.bus.wait_beyond(from, Duration::from_secs(1)).await;
                self.linger().await;
                lingered = true;
                continue;
            }
            if !lingered && !read.full {
                // Records came at the tail: wait for more to join them.
                self.linger().await;
                lingered = true;
                continue;
            }
            return self.returning(read.records);
        }
    }

    async fn done(&mut self) {
        self.metrics.applied_records.inc_by(self.read);
        self.since_trim += 1;
        if self.since_trim >= TRIM_EVERY {
            self.since_trim = 0;
            if let Err(error) = self.bus.trim_through(self.store.applied_position()).await {
                tracing::warn!("trimming the bus failed: {error}");
            }
        }
    }
}

/// A record as the log holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Logged {
    pub offset: u64,
    /// The encoded rows ([`super::record`]).
    pub payload: Vec<u8>,
    pub trace: Option<TraceParent>,
    /// See [`Appended::kept`].
    pub kept: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_survive_reopen_and_offsets_keep_increasing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bus.db");
        let bus = EmbeddedBus::open(&path).await.expect("open");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50u8 {
            let bus = bus.clone();
            tasks.spawn(async move { bus.append(vec![i], None, None).await.expect("append") });
        }
        let mut offsets = tasks.join_all().await;
        offsets.sort_unstable();
        assert_eq!(
            offsets,
            (1..=50).collect::<Vec<u64>>(),
            "concurrent appends get distinct offsets"
        );
        bus.trim_through(40).await.expect("trim");
        // Read back from memory (after 40) and, since the feed no longer
        // holds 1, from the log (after 0): the same records.
        let from_feed = bus.read_after(40, 100).await.expect("read");
        assert_eq!(
            from_feed.iter().map(|r| r.offset).collect::<Vec<_>>(),
            (41..=50).collect::<Vec<_>>()
        );
        assert_eq!(bus.read_after(0, 100).await.expect("read"), from_feed);
        drop(bus);
        let bus = EmbeddedBus::open(&path).await.expect("reopen");
        assert_eq!(bus.head(), 50);
        let rest = bus.read_after(0, 100).await.expect("read");
        assert_eq!(
            rest.iter().map(|r| r.offset).collect::<Vec<_>>(),
            (41..=50).collect::<Vec<_>>()
        );
        bus.trim_through(50).await.expect("trim all");
        let parent =
            TraceParent::from_record("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        bus.append(vec![2], Some(&parent), Some(b"kept".to_vec()))
            .await
            .expect("append traced");
        let traced = bus.read_after(50, 10).await.expect("read traced");
        assert_eq!(
            traced,
            vec![Logged {
                offset: 51,
                payload: vec![2],
                trace: Some(parent),
                kept: Some(b"kept".to_vec())
            }],
            "the trace context and the carried payload are kept with the record"
        );
        assert_eq!(bus.append(vec![1], None, None).await.expect("append"), 52);
    }

    /// A read stops at the record that starts past [`READ_BYTES`] (kept
    /// payloads count), and always takes at least one record.
    #[tokio::test]
    async fn a_read_takes_what_fits_in_its_byte_budget_and_at_least_one_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bus = EmbeddedBus::open(&dir.path().join("bus.db"))
            .await
            .expect("open");
        let third = READ_BYTES as usize / 3;
        // Bytes before each record: 0, 1/3, 3/3 (just under the budget), 4/3.
        bus.append(vec![1; third], None, None)
            .await
            .expect("append");
        bus.append(vec![2; third], None, Some(vec![0; third]))
            .await
            .expect("append");
        bus.append(vec![3; third], None, None)
            .await
            .expect("append");
        bus.append(vec![4; 1], None, None).await.expect("append");
        let offsets = |records: &[Logged]| records.iter().map(|r| r.offset).collect::<Vec<_>>();
        let first = bus.read_after(0, 64).await.expect("read");
        assert_eq!(offsets(&first), vec![1, 2, 3]);
        assert_eq!(first[1].kept.as_ref().map(Vec::len), Some(third));
        assert_eq!(first[2].payload, vec![3; third]);
        assert_eq!(
            offsets(&bus.read_after(3, 64).await.expect("read")),
            vec![4]
        );
        assert_eq!(
            offsets(&bus.read_after(0, 2).await.expect("read")),
            vec![1, 2]
        );
        // One record larger than the budget still comes, alone.
        bus.append(vec![5; 2 * READ_BYTES as usize], None, None)
            .await
            .expect("append");
        bus.append(vec![6; 1], None, None).await.expect("append");
        let big = bus.read_after(4, 64).await.expect("read");
        assert_eq!(offsets(&big), vec![5]);
        assert!(bus.read_after(6, 64).await.expect("read").is_empty());
    }

    /// A fresh bus and embedded store in a temporary directory (kept while
    /// the returned guard lives).
    async fn bus_and_store() -> (tempfile::TempDir, EmbeddedBus, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let bus = EmbeddedBus::open(&dir.path().join("bus.db"))
            .await
            .expect("bus");
        let store = Store::open(&crate::config::StoreConfig::default(), dir.path())
            .await
            .expect("store");
        (dir, bus, store)
    }

    /// The reader hands out every record once, in order, across many batches
    /// (each read ahead while the one before is applied), and records that
    /// arrive while it waits are read too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reading_ahead_hands_out_every_record_once_in_order() {
        let (_dir, bus, store) = bus_and_store().await;
        let record = |i: u64| {
            super::super::record::encode_envelope(&RowEnvelope {
                tenant: format!("t{i}"),
                pipeline: "p".into(),
                rows: vec![],
            })
        };
        let total = 3 * u64::from(READ_BATCH) + 7;
        for i in 1..=total {
            bus.append(record(i), None, None).await.expect("append");
        }
        let mut reader = bus
            .reader(&store, BusConsumerMetrics::default())
            .expect("reader");
        let mut seen: Vec<u64> = Vec::new();
        let late = total + 5;
        while seen.len() < late as usize {
            if seen.len() == total as usize {
                for i in total + 1..=late {
                    bus.append(record(i), None, None)
                        .await
                        .expect("append late");
                }
            }
            let records = tokio::time::timeout(Duration::from_secs(10), reader.next())
                .await
                .expect("a batch");
            assert!(records.len() <= READ_BATCH as usize);
            for r in &records {
                let position = r.position.expect("position");
                assert_eq!(r.envelope.tenant, format!("t{position}"));
                seen.push(position);
            }
            let envelopes: Vec<&RowEnvelope> = records.iter().map(|r| &r.envelope).collect();
            let through = records.iter().filter_map(|r| r.position).max();
            store.apply(&envelopes, through).await.expect("apply");
            reader.done().await;
        }
        assert_eq!(seen, (1..=late).collect::<Vec<_>>());
    }

    /// Apply `records` and every batch after them until the store has
    /// applied the log's head (each batch within 10 s); every record handed
    /// out.
    async fn drain(
        reader: &mut LogReader,
        store: &Store,
        bus: &EmbeddedBus,
        mut records: Vec<Record>,
    ) -> Vec<Record> {
        let mut drained = Vec::new();
        loop {
            let through = records.iter().filter_map(|r| r.position).max();
            store.apply(&[], through).await.expect("apply");
            reader.done().await;
            drained.append(&mut records);
            if through == Some(bus.head()) {
                return drained;
            }
            records = tokio::time::timeout(Duration::from_secs(10), reader.next())
                .await
                .expect("a backlog is read without lingering");
        }
    }

    /// A reader at the tail waits before reading, so records that arrive
    /// meanwhile go to the store in the same batch; a backlog is read at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_at_the_tail_lingers_and_takes_what_came_meanwhile() {
        let (_dir, bus, store) = bus_and_store().await;
        let record = super::super::record::encode_envelope(&RowEnvelope::default());
        let mut reader = LogReader::new(bus.clone(), store.clone(), BusConsumerMetrics::default());
        reader.linger = Duration::from_secs(1);
        bus.append(record.clone(), None, None)
            .await
            .expect("append");
        let started = std::time::Instant::now();
        let reading = tokio::spawn(async move { (reader.next().await, reader) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..4 {
            bus.append(record.clone(), None, None)
                .await
                .expect("append meanwhile");
        }
        let (records, mut reader) = reading.await.expect("reader");
        let positions = |records: &[Record]| {
            records
                .iter()
                .filter_map(|r| r.position)
                .collect::<Vec<_>>()
        };
        assert_eq!(positions(&records), vec![1, 2, 3, 4, 5], "one batch");
        assert!(started.elapsed() >= reader.linger);
        store.apply(&[], Some(5)).await.expect("apply");
        reader.done().await;

        // A backlog (a full batch and more waiting) is not lingered over.
        for _ in 0..2 * READ_BATCH {
            bus.append(record.clone(), None, None)
                .await
                .expect("append backlog");
        }
        reader.linger = Duration::from_secs(30);
        let records = tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .expect("a backlog is read without lingering");
        assert_eq!(positions(&records).first(), Some(&6));

        // Nor is a backlog of large records, fewer than a batch but more
        // than its bytes.
        let large = super::super::record::encode_envelope(&RowEnvelope {
            tenant: "x".repeat(READ_BYTES as usize / 2),
            ..RowEnvelope::default()
        });
        for _ in 0..6 {
            bus.append(large.clone(), None, None)
                .await
                .expect("append a large record");
        }
        let started = std::time::Instant::now();
        let drained = drain(&mut reader, &store, &bus, records).await;
        let large_read = drained
            .iter()
            .filter(|r| r.envelope.tenant.len() > 1)
            .count();
        assert_eq!(large_read, 6, "each large record once");
        let head = bus.head();
        assert_eq!(
            positions(&drained),
            (6..=head).collect::<Vec<_>>(),
            "in order, once"
        );
        assert!(started.elapsed() < Duration::from_secs(10));

        // Caught up again, with a query waiting for the newest record: no lingering.
        reader.linger = Duration::from_secs(30);
        assert_eq!(store.applied_position(), bus.head());
        let newest = bus
            .append(record.clone(), None, None)
            .await
            .expect("append");
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { store.wait_applied(newest, Duration::from_secs(20)).await })
        };
        let records = tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .expect("a waiting query ends the lingering");
        assert_eq!(positions(&records), vec![newest]);
        store.apply(&[], Some(newest)).await.expect("apply");
        assert!(waiter.await.expect("waiter"), "the query's wait ended");
    }

    #[tokio::test]
    async fn a_log_written_before_trace_contexts_opens_and_drains() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bus.db");
        let pool = crate::sqlite::open_file(&path).await.expect("pool");
        for statement in [
            "CREATE TABLE log (offset INTEGER PRIMARY KEY AUTOINCREMENT, appended_at_ms INTEGER NOT NULL, payload BLOB NOT NULL)",
            "INSERT INTO log (appended_at_ms, payload) VALUES (1, x'07')",
        ] {
            sqlx::query(statement).execute(&pool).await.expect("old log");
        }
        pool.close().await;
        let bus = EmbeddedBus::open(&path).await.expect("open an old log");
        assert_eq!(
            bus.read_after(0, 10).await.expect("read"),
            vec![Logged {
                offset: 1,
                payload: vec![7],
                trace: None,
                kept: None
            }]
        );
        assert_eq!(bus.append(vec![8], None, None).await.expect("append"), 2);
    }
}
