//! One subscriber of StreamPaymentEvents.
//!
//! The subscriber keeps a cursor: the sequence up to which it has seen (or filtered out) every
//! event. It reads forward from the cursor — from the in-memory feed when the cursor is inside
//! its window, from the database otherwise — so replay, the switch to live, and catching up
//! after falling behind are the same loop: no gap and no duplicate at any seam.
//! It is a stream polled by the client's connection: a slow client slows only its own stream,
//! and memory per subscriber is bounded by one page.

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::Stream;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{feed::Logged, Feed};
use crate::{
    domain::{EventName, PaygateError, PaymentEvent},
    store::Store,
};

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
#[derive(Clone)]
pub enum StreamItem {
    Event(Arc<Logged>),
    /// Every event up to `sequence` has been delivered or filtered out: a safe checkpoint.
    Heartbeat {
        sequence: u64,
        time: DateTime<Utc>,
    },
}

/// The cap on event streams open at once, over all connections (`PAYGATE_MAX_SUBSCRIBERS`):
/// each subscriber stream holds one slot for as long as it lives, so memory stays bounded however
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

/// A subscriber's stream: items until the client goes away (the stream is dropped), or
/// `shutdown` fires (then a final `Unavailable` tells the client to reconnect). It holds `slot`
/// while it lives.
///
/// There is no task and no channel per subscriber: the stream is polled by the connection that
/// sends it, so an idle subscriber costs only its small state, a slow client is back-pressured
/// by HTTP/2 flow control, and an event reaches the connection without a hop between tasks.
pub fn subscribe(
    feed: Feed,
    store: Store,
    filter: Filter,
    heartbeat: Duration,
    shutdown: CancellationToken,
    slot: Slot,
) -> impl Stream<Item = Result<StreamItem, PaygateError>> + Send + 'static {
    let state = Subscriber {
        cursor: filter.after_sequence.unwrap_or_else(|| feed.latest()),
        opening: match filter.after_sequence {
            Some(_) => Opening::CheckHorizon,
            None => Opening::Heartbeat,
        },
        latest: feed.watch(),
        tick: tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat),
        pending: VecDeque::new(),
        done: false,
        feed,
        store,
        filter,
        shutdown,
        _slot: slot,
        _gauge: SubscriberGauge::new(),
    };
    futures::stream::unfold(state, |mut s| async move {
        let item = s.next().await?;
        Some((item, s))
    })
}

/// How a stream starts.
enum Opening {
    /// A live stream opens with a heartbeat: the subscriber's resume point from the first
    /// moment, so a disconnect before any event or periodic heartbeat cannot leave a gap.
    Heartbeat,
    /// A resumed stream first checks its cursor against the retention horizon.
    CheckHorizon,
    Done,
}

/// One subscriber's state between items.
struct Subscriber {
    /// Every event up to here has been delivered or filtered out.
    cursor: u64,
    /// What the first call does before reading; `Done` afterwards.
    opening: Opening,
    latest: watch::Receiver<u64>,
    tick: tokio::time::Interval,
    /// Wanted events read but not yet sent.
    pending: VecDeque<Arc<Logged>>,
    /// A final error was sent; the stream ends.
    done: bool,
    feed: Feed,
    store: Store,
    filter: Filter,
    shutdown: CancellationToken,
    _slot: Slot,
    _gauge: SubscriberGauge,
}

impl Subscriber {
    /// The next item, or None when the stream ends.
    async fn next(&mut self) -> Option<Result<StreamItem, PaygateError>> {
        if self.done {
            return None;
        }
        match std::mem::replace(&mut self.opening, Opening::Done) {
            Opening::Heartbeat => {
                return Some(Ok(StreamItem::Heartbeat {
                    sequence: self.cursor,
                    time: Utc::now(),
                }));
            }
            Opening::CheckHorizon => {
                // Even what the memory window still holds must not be served across the horizon.
                if let Err(e) = Box::pin(check_horizon(&self.store, self.cursor)).await {
                    return self.fail(e);
                }
            }
            Opening::Done => {}
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(StreamItem::Event(event)));
            }
            self.latest.borrow_and_update();
            match self.read().await {
                Err(e) => return self.fail(e),
                Ok(true) => continue,
                Ok(false) => {}
            }
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    return self.fail(PaygateError::Unavailable(
                        "paygate is shutting down; reconnect with after_sequence".into(),
                    ));
                }
                changed = self.latest.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = self.tick.tick() => {
                    return Some(Ok(StreamItem::Heartbeat { sequence: self.cursor, time: Utc::now() }));
                }
            }
        }
    }

    /// Reads the next page after the cursor (memory while it is recent, else the database) and
    /// keeps the wanted events; false when nothing new is known.
    async fn read(&mut self) -> Result<bool, PaygateError> {
        let page = match self.feed.read_after(self.cursor, PAGE) {
            Some(page) => page,
            // Boxed: the database read is rare for a live stream, and inlining its large
            // future would make every idle stream's state that much bigger.
            None => match Box::pin(read_log(&self.store, self.cursor)).await {
                Ok(page) => page,
                Err(ReadError::Expired(e)) => return Err(e),
                Err(ReadError::Store(e)) => {
                    tracing::warn!(error = %e, "subscriber cannot read the log");
                    return Err(PaygateError::Unavailable(
                        "the event log is unavailable; reconnect with after_sequence".into(),
                    ));
                }
            },
        };
        let Some(last) = page.last().map(|e| e.event.sequence) else {
            return Ok(false);
        };
        self.cursor = last;
        let filter = &self.filter;
        self.pending
            .extend(page.into_iter().filter(|e| filter.wants(&e.event)));
        Ok(true)
    }

    fn fail(&mut self, e: PaygateError) -> Option<Result<StreamItem, PaygateError>> {
        self.done = true;
        Some(Err(e))
    }
}

enum ReadError {
    /// Retention deleted events after the cursor: resuming there would leave a gap.
    Expired(PaygateError),
    Store(crate::store::StoreError),
}

/// A page of the log after `cursor`, read from the database; never across the retention horizon.
async fn read_log(store: &Store, cursor: u64) -> Result<Vec<Arc<Logged>>, ReadError> {
    let page = store
        .events_after(cursor, PAGE as u64)
        .await
        .map_err(ReadError::Store)?;
    // Checked after the read: a page read before a deletion is still whole.
    check_horizon(store, cursor).await.map_err(|e| match e {
        PaygateError::OutOfRange(_) => ReadError::Expired(e),
        other => ReadError::Store(crate::store::StoreError::Unavailable(other.to_string())),
    })?;
    Ok(page
        .into_iter()
        .map(|event| Arc::new(Logged::new(event)))
        .collect())
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
