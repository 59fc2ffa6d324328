//! The durable event log plus live fan-out to subscribers.
//!
//! The database is the truth; the broadcast channel only wakes live subscribers up faster.
//! A subscriber that falls behind the channel catches up from the log (see `stream`).

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::{
    domain::PaymentEvent,
    store::{Change, CommitResult, Store, StoreError},
};

/// How many events the live channel buffers before a slow subscriber must read from the log.
const LIVE_BUFFER: usize = 4096;

/// Writes changes and announces the events they appended.
#[derive(Clone)]
pub struct EventLog {
    store: Store,
    live: broadcast::Sender<Arc<PaymentEvent>>,
}

impl EventLog {
    pub fn new(store: Store) -> Self {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        Self { store, live }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Commits a change, then announces each appended event to live subscribers.
    pub async fn commit(&self, change: Change) -> Result<CommitResult, StoreError> {
        let result = self.store.commit(change).await?;
        for event in &result.appended {
            // No receivers is fine: nobody is listening live.
            let _ = self.live.send(Arc::new(event.clone()));
        }
        Ok(result)
    }

    /// A receiver of events committed from now on, in sequence order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<PaymentEvent>> {
        self.live.subscribe()
    }
}
