//! Group commit: many concurrent writers, one commit for all of them.
//!
//! Each durable write the API waits for (here: a kept payload) would
//! otherwise cost its request its own fsync. A [`GroupCommit`] queues the
//! items; one writer task takes whatever is waiting when it is free (up to a
//! maximum), commits them together, and answers each caller with its own
//! result once that commit returned. Used by the kept payloads
//! ([`crate::metadata`]); the embedded bus has a writer thread of its own
//! (`bus::embedded::writer`), which commits the same way.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

/// Why an item was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GroupCommitError {
    #[error("{0}")]
    Commit(#[source] Arc<sqlx::Error>),
    #[error("the writer has stopped")]
    Closed,
}

type Reply<R> = oneshot::Sender<Result<R, Arc<sqlx::Error>>>;

/// Handle to a writer task; cheap to clone.
pub struct GroupCommit<T, R> {
    queue: mpsc::Sender<(T, Reply<R>)>,
}

impl<T, R> Clone for GroupCommit<T, R> {
    fn clone(&self) -> Self {
        GroupCommit {
            queue: self.queue.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// Start the writer task: `commit` gets up to `max` items at once and
    /// answers one result per item, in order (or fails them all).
    pub fn start<F, Fut>(max: usize, mut commit: F) -> GroupCommit<T, R>
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<R>, sqlx::Error>> + Send + 'static,
    {
        let (queue, mut rx) = mpsc::channel::<(T, Reply<R>)>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut waiting = vec![first];
                while waiting.len() < max {
                    match rx.try_recv() {
                        Ok(next) => waiting.push(next),
                        Err(_) => break,
                    }
                }
                let (items, replies): (Vec<T>, Vec<Reply<R>>) = waiting.into_iter().unzip();
                let count = items.len();
                match commit(items).await {
                    Ok(results) if results.len() == count => {
                        for (reply, result) in replies.into_iter().zip(results) {
                            let _ = reply.send(Ok(result));
                        }
                    }
                    outcome => {
                        let error = Arc::new(match outcome {
                            Err(error) => error,
                            Ok(results) => sqlx::Error::Protocol(format!(
                                "a commit of {count} items answered {} results",
                                results.len()
                            )),
                        });
                        tracing::error!("group commit failed: {error}");
                        for reply in replies {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                }
            }
        });
        GroupCommit { queue }
    }

    /// Queue `item`; returns its result once the commit holding it returned.
    pub async fn submit(&self, item: T) -> Result<R, GroupCommitError> {
        let (reply, wait) = oneshot::channel();
        self.queue
            .send((item, reply))
            .await
            .map_err(|_| GroupCommitError::Closed)?;
        match wait.await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(error)) => Err(GroupCommitError::Commit(error)),
            Err(_) => Err(GroupCommitError::Closed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_items_share_commits_and_each_gets_its_own_result() {
        let commits = Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
        let seen = commits.clone();
        let writer = GroupCommit::start(8, move |items: Vec<u32>| {
            let seen = seen.clone();
            async move {
                // A slow commit, so that callers pile up behind it.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                seen.lock().expect("lock").push(items.len());
                Ok(items.into_iter().map(|i| i * 10).collect())
            }
        });
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..40u32 {
            let writer = writer.clone();
            calls.spawn(async move { (i, writer.submit(i).await) });
        }
        for (i, result) in calls.join_all().await {
            assert_eq!(result.expect("committed"), i * 10);
        }
        let commits = commits.lock().expect("lock").clone();
        assert_eq!(commits.iter().sum::<usize>(), 40);
        assert!(commits.iter().all(|&n| n <= 8), "{commits:?}");
        assert!(
            commits.len() < 40,
            "no two items shared a commit: {commits:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_item_in_it() {
        let writer: GroupCommit<u32, u32> = GroupCommit::start(8, |_items| async {
            Err(sqlx::Error::Protocol("disk full".into()))
        });
        let error = writer.submit(1).await.expect_err("failed");
        assert!(error.to_string().contains("disk full"), "{error}");
        // A commit answering the wrong number of results fails too.
        let short: GroupCommit<u32, u32> = GroupCommit::start(8, |_items| async { Ok(vec![]) });
        assert!(matches!(
            short.submit(1).await,
            Err(GroupCommitError::Commit(_))
        ));
    }
}
