//! One subscriber of StreamPaymentEvents.
//!
//! The subscriber keeps a cursor: the sequence up to which it has seen (or filtered out) every
//! event. It reads forward from the cursor — from the in-memory feed when the cursor is inside
//! its window, from the database otherwise — so replay, the switch to live, and catching up
//! after falling behind are the same loop: no gap and no duplicate at any seam.
//! It writes into a small bounded channel: a slow client slows only its own task, and memory
//! per subscriber is bounded by that channel plus one page.

use std::{collections::HashSet, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::Feed;
use crate::{
    domain::{EventName, PaygateError, PaymentEvent},
    store::Store,
};

/// Items buffered per subscriber before its task waits for the client.
const CHANNEL: usize = 64;
/// Events read per step.
const PAGE: usize = 500;

/// Which events a subscriber wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Empty: every payment.
    pub references: HashSet<String>,
    /// Empty: every name.
    pub names: HashSet<EventName>,
    /// None: live only; Some(n): every event after n, then live.
    pub after_sequence: Option<u64>,
}

impl Filter {
    fn wants(&self, e: &PaymentEvent) -> bool {
        (self.references.is_empty() || self.references.contains(&e.event.reference))
            && (self.names.is_empty() || self.names.contains(&e.event.name))
    }
}

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum StreamItem {
    Event(Arc<PaymentEvent>),
    /// Every event up to `sequence` has been delivered or filtered out: a safe checkpoint.
    Heartbeat {
        sequence: u64,
        time: DateTime<Utc>,
    },
}

/// The cap on event streams open at once, over all connections (`PAYGATE_MAX_SUBSCRIBERS`):
/// each subscriber task holds one slot for as long as it lives, so memory stays bounded however
/// many streams clients open, and a closed (or keepalive-dropped) stream frees its slot.
#[derive(Clone)]
pub struct SubscriberSlots {
    slots: Arc<Semaphore>,
    max: u32,
}

/// One open stream's place under the cap, given back when dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl SubscriberSlots {
    pub fn new(max: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
        }
    }

    /// A slot, or RESOURCE_EXHAUSTED naming the limit when every one is taken.
    pub fn take(&self) -> Result<Slot, PaygateError> {
        Arc::clone(&self.slots)
            .try_acquire_owned()
            .map(|permit| Slot { _permit: permit })
            .map_err(|_| {
                PaygateError::ResourceExhausted(format!(
                    "{} event streams are open, the most this paygate serves \
                     (PAYGATE_MAX_SUBSCRIBERS); retry later or on another replica",
                    self.max
                ))
            })
    }
}

/// Starts a subscriber task, which holds `slot` while it runs; its items arrive on the returned
/// channel until the client goes away, or `shutdown` fires (then a final `Unavailable` tells the
/// client to reconnect).
pub fn subscribe(
    feed: Feed,
    store: Store,
    filter: Filter,
    heartbeat: Duration,
    shutdown: CancellationToken,
    slot: Slot,
) -> mpsc::Receiver<Result<StreamItem, PaygateError>> {
    let (tx, rx) = mpsc::channel(CHANNEL);
    tokio::spawn(async move {
        let _slot = slot;
        let _gauge = SubscriberGauge::new();
        let mut cursor = filter.after_sequence.unwrap_or_else(|| feed.latest());
        if filter.after_sequence.is_some() {
            // Even what the memory window still holds must not be served across the horizon.
            if let Err(e) = Box::pin(check_horizon(&store, cursor)).await {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
        let mut latest = feed.watch();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        loop {
            latest.borrow_and_update();
            // Deliver everything after the cursor that is known now.
            loop {
                let page = match feed.read_after(cursor, PAGE) {
                    Some(page) => page,
                    // Boxed: the database read is rare for a live stream, and inlining its large
                    // future would make every idle stream's task that much bigger.
                    None => match Box::pin(read_log(&store, cursor)).await {
                        Ok(page) => page,
                        Err(ReadError::Expired(e)) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                        Err(ReadError::Store(e)) => {
                            tracing::warn!(error = %e, "subscriber cannot read the log");
                            let _ = tx
                                .send(Err(PaygateError::Unavailable(
                                    "the event log is unavailable; reconnect with after_sequence"
                                        .into(),
                                )))
                                .await;
                            return;
                        }
                    },
                };
                let Some(last) = page.last().map(|e| e.sequence) else {
                    break;
                };
                for event in page {
                    if filter.wants(&event) && tx.send(Ok(StreamItem::Event(event))).await.is_err()
                    {
                        return;
                    }
                }
                cursor = last;
            }
            tokio::select! {
                () = shutdown.cancelled() => {
                    let _ = tx.send(Err(PaygateError::Unavailable(
                        "paygate is shutting down; reconnect with after_sequence".into(),
                    ))).await;
                    return;
                }
                changed = latest.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tick.tick() => {
                    let beat = StreamItem::Heartbeat { sequence: cursor, time: Utc::now() };
                    if tx.send(Ok(beat)).await.is_err() {
                        return;
                    }
                }
                () = tx.closed() => return,
            }
        }
    });
    rx
}

enum ReadError {
    /// Retention deleted events after the cursor: resuming there would leave a gap.
    Expired(PaygateError),
    Store(crate::store::StoreError),
}

/// A page of the log after `cursor`, read from the database; never across the retention horizon.
async fn read_log(store: &Store, cursor: u64) -> Result<Vec<Arc<PaymentEvent>>, ReadError> {
    let page = store
        .events_after(cursor, PAGE as u64)
        .await
        .map_err(ReadError::Store)?;
    // Checked after the read: a page read before a deletion is still whole.
    check_horizon(store, cursor).await.map_err(|e| match e {
        PaygateError::OutOfRange(_) => ReadError::Expired(e),
        other => ReadError::Store(crate::store::StoreError::Unavailable(other.to_string())),
    })?;
    Ok(page.into_iter().map(Arc::new).collect())
}

/// OUT_OF_RANGE when retention deleted events after `cursor`.
async fn check_horizon(store: &Store, cursor: u64) -> Result<(), PaygateError> {
    let horizon = store
        .log_horizon()
        .await
        .map_err(|_| PaygateError::Unavailable("the event log is unavailable; reconnect".into()))?;
    if cursor < horizon {
        return Err(PaygateError::OutOfRange(format!(
            "events up to sequence {horizon} were deleted by retention (PAYGATE_RETENTION); the \
             oldest available sequence is {}: resume with after_sequence >= {horizon} after \
             reloading state, not from cursor {cursor}",
            horizon + 1
        )));
    }
    Ok(())
}

/// Counts open streams in `paygate_stream_subscribers` for as long as it lives.
struct SubscriberGauge;

impl SubscriberGauge {
    fn new() -> Self {
        metrics::gauge!("paygate_stream_subscribers").increment(1.0);
        Self
    }
}

impl Drop for SubscriberGauge {
    fn drop(&mut self) {
        metrics::gauge!("paygate_stream_subscribers").decrement(1.0);
    }
}
