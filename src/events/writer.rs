//! Group commit: one task commits whatever work is pending as one transaction — journal
//! entries of money-moving operations and recorded changes alike.
//!
//! It does not wait for more work to arrive before committing (measured on this class of
//! machine: a writer that lingers for a fuller batch was 2.5× slower than one that takes what is
//! already queued); under load the queue fills while the previous commit's fsync runs, so batches
//! grow by themselves.
//!
//! A batch the database refuses (a constraint or trigger rejects one of its changes) is committed
//! again job by job, so only the job it refuses fails: otherwise one poison webhook, retried by
//! Vipps for days, would fail every batch it lands in.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};

use super::Feed;
use crate::store::{
    CommitResult, JournalEntry, Journaled, PaymentChange, Store, StoreError, Written,
};

/// Work that may wait for the writer; senders wait when it is full (back-pressure).
pub const QUEUE: usize = 8192;
/// The most jobs in one transaction.
const MAX_BATCH: usize = 512;

type JournalReply = oneshot::Sender<Result<Journaled, StoreError>>;
type CommitReply = oneshot::Sender<Result<CommitResult, StoreError>>;

/// One unit of work for the writer, with where its answer goes.
pub enum WriteJob {
    Commit(PaymentChange, CommitReply),
    Journal(JournalEntry, JournalReply),
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
        watch.started();
        commit(&store, &feed, batch.drain(..)).await;
        watch.finished();
    }
}

/// The work of a batch: journal entries, then changes (the order they are written in).
#[derive(Clone, Default)]
struct Work {
    entries: Vec<JournalEntry>,
    changes: Vec<PaymentChange>,
}

/// Where the answers of a batch's jobs go, in the order of its `Work`.
#[derive(Default)]
struct Replies {
    entries: Vec<JournalReply>,
    changes: Vec<CommitReply>,
}

fn split(jobs: impl Iterator<Item = WriteJob>) -> (Work, Replies) {
    let (mut work, mut replies) = (Work::default(), Replies::default());
    for job in jobs {
        match job {
            WriteJob::Commit(change, reply) => {
                work.changes.push(change);
                replies.changes.push(reply);
            }
            WriteJob::Journal(entry, reply) => {
                work.entries.push(entry);
                replies.entries.push(reply);
            }
        }
    }
    (work, replies)
}

/// Commits a batch as one transaction; when the database refuses it, commits its jobs one by one.
async fn commit(store: &Store, feed: &Feed, jobs: impl Iterator<Item = WriteJob>) {
    let (work, replies) = split(jobs);
    if work.entries.len() + work.changes.len() == 1 {
        let _ = attempt(store, feed, work, replies).await;
        return;
    }
    // Kept for a retry one by one: a failed transaction consumed the batch's own copy.
    let spare = work.clone();
    match store.write_batch(work.entries, work.changes).await {
        Ok(done) => answer(feed, replies, done),
        Err(e) if e.is_refusal() => {
            tracing::warn!(error = %e, "group commit refused; committing its jobs one by one");
            one_by_one(store, feed, spare, replies).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "group commit failed");
            fail(replies, &e);
        }
    }
}

/// Each job in its own transaction, so only the ones the database refuses fail. Once a job
/// fails for another reason (the database is down, a timeout) the rest fail with it at once:
/// trying them one by one would only make each wait for the same timeout.
async fn one_by_one(store: &Store, feed: &Feed, work: Work, replies: Replies) {
    let mut jobs = singles(work, replies).into_iter();
    for (work, replies) in jobs.by_ref() {
        if let Err(failed) = attempt(store, feed, work, replies).await {
            if !failed.refusal {
                for (_, replies) in jobs {
                    fail(replies, &failed.why);
                }
                return;
            }
        }
    }
}

/// A batch taken apart into single-job batches, journal entries first.
fn singles(work: Work, replies: Replies) -> Vec<(Work, Replies)> {
    let entries = work
        .entries
        .into_iter()
        .zip(replies.entries)
        .map(|(entry, reply)| {
            let work = Work {
                entries: vec![entry],
                ..Work::default()
            };
            let replies = Replies {
                entries: vec![reply],
                ..Replies::default()
            };
            (work, replies)
        });
    let changes = work
        .changes
        .into_iter()
        .zip(replies.changes)
        .map(|(change, reply)| {
            let work = Work {
                changes: vec![change],
                ..Work::default()
            };
            let replies = Replies {
                changes: vec![reply],
                ..Replies::default()
            };
            (work, replies)
        });
    entries.chain(changes).collect()
}

/// One transaction and its answers; on failure the jobs get the error, and the caller learns
/// whether the database refused the work or could not do it.
async fn attempt(store: &Store, feed: &Feed, work: Work, replies: Replies) -> Result<(), Failed> {
    match store.write_batch(work.entries, work.changes).await {
        Ok(done) => {
            answer(feed, replies, done);
            Ok(())
        }
        Err(e) => {
            let failed = Failed {
                refusal: e.is_refusal(),
                why: e.to_string(),
            };
            if failed.refusal {
                tracing::warn!(error = %e, "the database refused a change; it alone fails");
            } else {
                tracing::error!(error = %e, "commit failed");
            }
            fail(replies, &failed.why);
            Err(failed)
        }
    }
}

/// Why a transaction failed, kept after its error went to the jobs.
struct Failed {
    /// The database refused this work (rather than being unable to do any).
    refusal: bool,
    why: String,
}

/// Hands committed events to subscribers and answers every job.
fn answer(feed: &Feed, replies: Replies, (started, results): Written) {
    for event in results.iter().flat_map(|r| r.appended.iter()) {
        metrics::counter!("paygate_events_appended_total", "source" => event.event.source.as_str())
            .increment(1);
    }
    feed.offer(results.iter().flat_map(|r| r.appended.iter()));
    for (reply, outcome) in replies.entries.into_iter().zip(started) {
        let _ = reply.send(outcome);
    }
    for (reply, result) in replies.changes.into_iter().zip(results) {
        let _ = reply.send(Ok(result));
    }
}

/// Answers every job of a failed transaction with its error.
fn fail(replies: Replies, e: &impl std::fmt::Display) {
    let why = e.to_string();
    for reply in replies.entries {
        let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
    }
    for reply in replies.changes {
        let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
    }
}
