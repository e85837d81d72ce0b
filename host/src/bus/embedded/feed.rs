//! What the writer committed lately, kept in memory for the reader.
//!
//! A caught-up consumer asks next for the records just appended; reading
//! them back from SQLite cost a query per batch and the WAL page reads under
//! it, on another connection. The writer hands each committed group to the
//! [`Feed`] before it moves the head, so the reader finds them here. The feed
//! holds one contiguous run of offsets, at most [`FEED_BYTES`] of them (the
//! oldest go first), and is trimmed with the log. The log stays the truth: a
//! read the feed cannot answer from its first record on goes to SQLite.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::Logged;

/// Record bytes (payloads and kept copies) the feed holds at most.
const FEED_BYTES: usize = 16 * 1024 * 1024;

/// The newest committed records, oldest first, offsets contiguous.
#[derive(Default)]
pub(super) struct Feed {
    run: Mutex<Run>,
}

#[derive(Default)]
struct Run {
    records: VecDeque<Logged>,
    bytes: usize,
}

/// A record's size as a read's byte budget counts it.
pub(super) fn size(record: &Logged) -> usize {
    record.payload.len() + record.kept.as_ref().map_or(0, Vec::len)
}

impl Feed {
    /// Records just committed, in offset order.
    pub(super) fn push(&self, committed: Vec<Logged>) {
        let mut run = self.lock();
        for record in committed {
            if run
                .records
                .back()
                .is_some_and(|last| last.offset + 1 != record.offset)
            {
                // Not the next offset (never expected with one writer): start over.
                run.records.clear();
                run.bytes = 0;
            }
            run.bytes += size(&record);
            run.records.push_back(record);
        }
        while run.bytes > FEED_BYTES && run.records.len() > 1 {
            if let Some(oldest) = run.records.pop_front() {
                run.bytes -= size(&oldest);
            }
        }
    }

    /// The records after `offset`, as [`super::EmbeddedBus::read_after`]
    /// reads them (at most `limit`, each starting before `budget` bytes, at
    /// least one), when the feed holds the one right after `offset`; `None`
    /// when only the log can answer. Empty when nothing newer was committed.
    pub(super) fn read_after(&self, offset: u64, limit: u32, budget: usize) -> Option<Vec<Logged>> {
        let run = self.lock();
        let first = run.records.front()?.offset;
        let start = usize::try_from(offset.checked_add(1)?.checked_sub(first)?).ok()?;
        let mut read = Vec::new();
        let mut before = 0;
        for record in run.records.iter().skip(start) {
            if read.len() >= limit as usize || (before >= budget && !read.is_empty()) {
                break;
            }
            before += size(record);
            read.push(record.clone());
        }
        if read.is_empty() && start > run.records.len() {
            // The reader is past what the feed holds: let the log answer.
            return None;
        }
        Some(read)
    }

    /// Forget records up to and including `offset` (trimmed from the log).
    pub(super) fn trim_through(&self, offset: u64) {
        let mut run = self.lock();
        while run.records.front().is_some_and(|r| r.offset <= offset) {
            if let Some(oldest) = run.records.pop_front() {
                run.bytes -= size(&oldest);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Run> {
        // A panic while holding the lock left a consistent run (every
        // change above is complete before anything can panic).
        self.run
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: u64, bytes: usize) -> Logged {
        Logged {
            offset,
            payload: vec![offset as u8; bytes],
            trace: None,
            kept: None,
        }
    }

    fn offsets(records: Option<Vec<Logged>>) -> Option<Vec<u64>> {
        records.map(|r| r.iter().map(|r| r.offset).collect())
    }

    #[test]
    fn answers_from_the_record_after_the_offset_or_not_at_all() {
        let feed = Feed::default();
        assert_eq!(
            offsets(feed.read_after(0, 10, 100)),
            None,
            "empty: the log answers"
        );
        feed.push((5..=8).map(|o| record(o, 10)).collect());
        assert_eq!(offsets(feed.read_after(4, 10, 100)), Some(vec![5, 6, 7, 8]));
        assert_eq!(offsets(feed.read_after(6, 10, 100)), Some(vec![7, 8]));
        assert_eq!(
            offsets(feed.read_after(8, 10, 100)),
            Some(vec![]),
            "caught up"
        );
        assert_eq!(
            offsets(feed.read_after(3, 10, 100)),
            None,
            "4 is only in the log"
        );
        assert_eq!(offsets(feed.read_after(9, 10, 100)), None, "past the feed");
        assert_eq!(
            offsets(feed.read_after(4, 2, 100)),
            Some(vec![5, 6]),
            "limit"
        );
        // Budget: a record comes when the bytes before it are under 25.
        assert_eq!(offsets(feed.read_after(4, 10, 25)), Some(vec![5, 6, 7]));
        assert_eq!(
            offsets(feed.read_after(4, 10, 1)),
            Some(vec![5]),
            "at least one"
        );
        feed.trim_through(6);
        assert_eq!(offsets(feed.read_after(6, 10, 100)), Some(vec![7, 8]));
        assert_eq!(offsets(feed.read_after(5, 10, 100)), None, "6 was trimmed");
    }

    #[test]
    fn keeps_a_contiguous_run_within_its_byte_cap() {
        let feed = Feed::default();
        feed.push(vec![record(1, 10), record(2, 10)]);
        feed.push(vec![record(7, 10)]);
        assert_eq!(
            offsets(feed.read_after(0, 10, 100)),
            None,
            "the gap reset it"
        );
        assert_eq!(offsets(feed.read_after(6, 10, 100)), Some(vec![7]));
        feed.push(vec![record(8, FEED_BYTES), record(9, 1)]);
        assert_eq!(
            offsets(feed.read_after(6, 10, usize::MAX)),
            None,
            "7 and 8 made room"
        );
        assert_eq!(offsets(feed.read_after(8, 10, usize::MAX)), Some(vec![9]));
    }
}
