//! The newest part of the event log, in memory, complete and in sequence order.
//!
//! Invariant: the window holds every event with `floor < sequence <= last`, in order. It only
//! ever takes committed events: our own (straight from the writer when they follow `last`
//! directly) or events read back from the database (anything else: another replica's, or after a
//! gap). Reading back is always safe because the log becomes visible in sequence order (see
//! `store`), so once sequence N is visible nothing below N can still appear.

use std::{
    collections::VecDeque,
    sync::{Arc, OnceLock},
};

use bytes::Bytes;

use tokio::sync::{watch, Mutex};

use crate::{
    domain::PaymentEvent,
    store::{Store, StoreError},
};

/// How many recent events stay in memory for live subscribers.
const WINDOW: usize = 16_384;
/// Events read from the database per query when catching up.
const PAGE: u64 = 1_000;

/// An event of the log as streams share it: the event, and its encodings for subscribers, each
/// made once on first use (one slot per audience: without and with personal data), so a hundred
/// subscribers of one event cost one encoding, not a hundred.
pub struct Logged {
    pub event: PaymentEvent,
    encoded: [OnceLock<Bytes>; 2],
}

impl Logged {
    pub fn new(event: PaymentEvent) -> Self {
        Self {
            event,
            encoded: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// The encoding for `audience` (0 or 1), made by `encode` the first time it is asked for.
    pub fn encoded(&self, audience: usize, encode: impl FnOnce(&PaymentEvent) -> Bytes) -> Bytes {
        match self.encoded.get(audience) {
            Some(slot) => slot.get_or_init(|| encode(&self.event)).clone(),
            None => encode(&self.event),
        }
    }
}

struct Window {
    events: VecDeque<Arc<Logged>>,
    /// Every event above `floor` up to `last` is in `events`.
    floor: u64,
    last: u64,
}

struct Inner {
    window: std::sync::RwLock<Window>,
    latest: watch::Sender<u64>,
    store: Store,
    /// One catch-up at a time.
    catching_up: Mutex<()>,
}

/// Handle to the in-memory window; cheap to clone.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

impl Feed {
    /// Starts empty at the log's current end.
    pub async fn start(store: Store) -> Result<Self, StoreError> {
        let last = store.latest_sequence().await?;
        let (latest, _) = watch::channel(last);
        let feed = Self {
            inner: Arc::new(Inner {
                window: std::sync::RwLock::new(Window {
                    events: VecDeque::new(),
                    floor: last,
                    last,
                }),
                latest,
                store,
                catching_up: Mutex::new(()),
            }),
        };
        Ok(feed)
    }

    /// The highest sequence in the window (everything up to it is committed and known).
    pub fn latest(&self) -> u64 {
        *self.inner.latest.borrow()
    }

    /// Wakes when `latest` moves.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.latest.subscribe()
    }

    /// Takes events our writer just committed. If they do not follow the window directly
    /// (another replica wrote in between), the window is filled from the database instead.
    pub fn offer<'a>(&self, committed: impl Iterator<Item = &'a PaymentEvent>) {
        let mut gap = false;
        let mut last = None;
        if let Ok(mut w) = self.inner.window.write() {
            for event in committed {
                if event.sequence <= w.last {
                    continue;
                }
                if event.sequence != w.last + 1 {
                    gap = true;
                    break;
                }
                w.push(Arc::new(Logged::new(event.clone())));
                last = Some(w.last);
            }
        }
        if let Some(last) = last {
            self.inner.latest.send_replace(last);
        }
        if gap {
            let feed = self.clone();
            tokio::spawn(async move { feed.catch_up().await });
        }
    }

    /// Reads whatever the database has beyond the window into it.
    pub async fn catch_up(&self) {
        let _one = self.inner.catching_up.lock().await;
        loop {
            let after = self.window_last();
            let page = match self.inner.store.events_after(after, PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the event log failed; will retry");
                    return;
                }
            };
            let full = page.len() as u64 == PAGE;
            let mut last = None;
            if let Ok(mut w) = self.inner.window.write() {
                for event in page {
                    if event.sequence > w.last {
                        w.push(Arc::new(Logged::new(event)));
                        last = Some(w.last);
                    }
                }
            }
            if let Some(last) = last {
                self.inner.latest.send_replace(last);
            }
            if !full {
                return;
            }
        }
    }

    /// Removes phone number and Vipps `sub` from the snapshots of the recent events whose
    /// payment matches (erasure: a stream replayed from memory must not carry them any more).
    pub fn scrub(&self, matches: impl Fn(&crate::domain::Payment) -> bool) {
        let Ok(mut w) = self.inner.window.write() else {
            return;
        };
        for logged in w.events.iter_mut() {
            let Some(p) = logged.event.payment.as_ref().filter(|p| matches(p)) else {
                continue;
            };
            if p.phone_number.is_none() && p.profile_sub.is_none() {
                continue;
            }
            // A new entry: its encodings are made afresh, without the erased data.
            let mut scrubbed = logged.event.clone();
            if let Some(p) = scrubbed.payment.as_mut() {
                p.phone_number = None;
                p.profile_sub = None;
            }
            *logged = Arc::new(Logged::new(scrubbed));
        }
    }

    fn window_last(&self) -> u64 {
        self.inner.window.read().map(|w| w.last).unwrap_or(0)
    }

    /// Up to `max` events after `cursor` from memory, or None when `cursor` is older than the
    /// window (the caller then reads the database).
    pub fn read_after(&self, cursor: u64, max: usize) -> Option<Vec<Arc<Logged>>> {
        let w = self.inner.window.read().ok()?;
        if cursor < w.floor {
            return None;
        }
        let start = w.events.partition_point(|e| e.event.sequence <= cursor);
        Some(w.events.iter().skip(start).take(max).cloned().collect())
    }
}

impl Window {
    fn push(&mut self, event: Arc<Logged>) {
        self.last = event.event.sequence;
        self.events.push_back(event);
        while self.events.len() > WINDOW {
            if let Some(old) = self.events.pop_front() {
                self.floor = old.event.sequence;
            }
        }
    }
}
