//! Group commit: one task commits whatever changes are pending as one transaction.
//!
//! It does not wait for more work to arrive before committing (measured on this class of
//! machine: a writer that lingers for a fuller batch was 2.5× slower than one that takes what is
//! already queued); under load the queue fills while the previous commit's fsync runs, so batches
//! grow by themselves.

use tokio::sync::mpsc;

use super::{Feed, Job};
use crate::store::{Store, StoreError};

/// Changes that may wait for the writer; senders wait when it is full (back-pressure).
pub const QUEUE: usize = 8192;
/// The most changes in one transaction.
const MAX_BATCH: usize = 512;

pub async fn run(store: Store, mut queue: mpsc::Receiver<Job>, feed: Feed) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (changes, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        match store.commit_batch(changes).await {
            Ok(results) => {
                for event in results.iter().flat_map(|r| r.appended.iter()) {
                    metrics::counter!("paygate_events_appended_total", "source" => event.event.source.as_str())
                        .increment(1);
                }
                feed.offer(results.iter().flat_map(|r| r.appended.iter()));
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed");
                let why = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
                }
            }
        }
    }
}
