//! The durable event log, group commit, and live fan-out to subscribers.
//!
//! - `writer`: every change goes through one task that commits whatever is pending as ONE
//!   transaction (group commit), so many concurrent webhooks cost one fsync.
//! - `feed`: an in-memory window of the newest log entries, in sequence order, filled only from
//!   committed data (our own commits, or read back from the database when another replica wrote).
//! - `stream`: one subscriber: replay from the log, then live from the feed, without gap or
//!   duplicate, heartbeats, and catch-up from the log when it falls behind the window.
//!
//! The database is the truth everywhere; the feed and notifications only make it fast.

mod feed;
mod listener;
pub mod stream;
mod writer;

use tokio::sync::{mpsc, oneshot};
use writer::WriteJob;

pub use feed::Feed;
pub use stream::{Filter, StreamItem, SubscriberSlots};
pub use writer::WriterWatch;

use crate::store::{CommitResult, JournalEntry, Journaled, PaymentChange, Store, StoreError};

/// Writes changes (through the group-commit writer) and feeds subscribers.
#[derive(Clone)]
pub struct EventLog {
    store: Store,
    jobs: mpsc::Sender<WriteJob>,
    feed: Feed,
    writer: WriterWatch,
}

impl EventLog {
    /// Starts the writer and the feed (and, on PostgreSQL, the cross-replica listener).
    pub async fn start(store: Store) -> Result<Self, StoreError> {
        let feed = Feed::start(store.clone()).await?;
        let (jobs, queue) = mpsc::channel(writer::QUEUE);
        let watch = WriterWatch::new();
        tokio::spawn(writer::run(
            store.clone(),
            queue,
            feed.clone(),
            watch.clone(),
        ));
        listener::spawn(store.clone(), feed.clone());
        Ok(Self {
            store,
            jobs,
            feed,
            writer: watch,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Whether the group-commit writer is stuck in a commit (for readiness).
    pub fn writer(&self) -> &WriterWatch {
        &self.writer
    }

    /// Commits a change durably (grouped with concurrent ones) and returns what it did.
    pub async fn commit(&self, change: PaymentChange) -> Result<CommitResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(WriteJob::Commit(change, reply)).await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Journals an operation before its upstream call (grouped with concurrent work).
    pub async fn journal(&self, entry: JournalEntry) -> Result<Journaled, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(WriteJob::Journal(entry, reply)).await?;
        answer.await.map_err(|_| stopped())?
    }

    async fn send(&self, job: WriteJob) -> Result<(), StoreError> {
        self.jobs.send(job).await.map_err(|_| stopped())
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the event writer has stopped".into())
}
