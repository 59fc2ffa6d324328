//! Group commit: one task commits whatever work is pending as one transaction — journal
//! entries of money-moving operations and recorded changes alike.
//!
//! It does not wait for more work to arrive before committing (measured on this class of
//! machine: a writer that lingers for a fuller batch was 2.5× slower than one that takes what is
//! already queued); under load the queue fills while the previous commit's fsync runs, so batches
//! grow by themselves.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};

use super::Feed;
use crate::store::{CommitResult, JournalEntry, Journaled, PaymentChange, Store, StoreError};

/// Work that may wait for the writer; senders wait when it is full (back-pressure).
pub const QUEUE: usize = 8192;
/// The most jobs in one transaction.
const MAX_BATCH: usize = 512;

/// One unit of work for the writer, with where its answer goes.
pub enum WriteJob {
    Commit(
        PaymentChange,
        oneshot::Sender<Result<CommitResult, StoreError>>,
    ),
    Journal(JournalEntry, oneshot::Sender<Result<Journaled, StoreError>>),
}

/// Whether the writer is stuck: the time since it started the commit it is working on, if any.
/// A commit that never finishes (a hung connection, a lock held elsewhere) stops every write
/// while the database still answers pings, so readiness asks this too.
#[derive(Clone)]
pub struct WriterWatch {
    origin: Instant,
    /// Milliseconds from `origin` to the start of the current commit, plus one; 0 while idle.
    busy_since: Arc<AtomicU64>,
}

impl WriterWatch {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            busy_since: Arc::default(),
        }
    }

    /// How long the current commit has been running (None while the writer waits for work).
    pub fn busy_for(&self) -> Option<Duration> {
        match self.busy_since.load(Ordering::Acquire) {
            0 => None,
            since => {
                let started = Duration::from_millis(since - 1);
                Some(self.origin.elapsed().saturating_sub(started))
            }
        }
    }

    fn started(&self) {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.busy_since.store(now + 1, Ordering::Release);
    }

    fn finished(&self) {
        self.busy_since.store(0, Ordering::Release);
    }
}

pub async fn run(
    store: Store,
    mut queue: mpsc::Receiver<WriteJob>,
    feed: Feed,
    watch: WriterWatch,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (mut entries, mut entry_replies, mut changes, mut change_replies) =
            (vec![], vec![], vec![], vec![]);
        for job in batch.drain(..) {
            match job {
                WriteJob::Commit(change, reply) => {
                    changes.push(change);
                    change_replies.push(reply);
                }
                WriteJob::Journal(entry, reply) => {
                    entries.push(entry);
                    entry_replies.push(reply);
                }
            }
        }
        watch.started();
        let written = store.write_batch(entries, changes).await;
        watch.finished();
        match written {
            Ok((started, results)) => {
                for event in results.iter().flat_map(|r| r.appended.iter()) {
                    metrics::counter!("paygate_events_appended_total", "source" => event.event.source.as_str())
                        .increment(1);
                }
                feed.offer(results.iter().flat_map(|r| r.appended.iter()));
                for (reply, outcome) in entry_replies.into_iter().zip(started) {
                    let _ = reply.send(outcome);
                }
                for (reply, result) in change_replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed");
                let why = e.to_string();
                for reply in entry_replies {
                    let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
                }
                for reply in change_replies {
                    let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
                }
            }
        }
    }
}
