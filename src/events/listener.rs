//! PostgreSQL only: LISTEN for other replicas' commits and pull them into the feed.
//! The notification is only a wake-up; the events themselves are read from the log.
//! SQLite has a single replica, so nothing runs there.

use std::time::Duration;

use super::Feed;
use crate::store::{Store, NOTIFY_CHANNEL};

pub fn spawn(store: Store, feed: Feed) {
    let Some(pool) = store.postgres_pool() else {
        return; // SQLite: one replica, whose own commits reach the feed directly.
    };
    // A safety net for notifications lost while the listener reconnects: look now and then.
    let (poll_store, poll_feed) = (store.clone(), feed.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while !poll_store.is_closed() {
            tick.tick().await;
            poll_feed.catch_up().await;
        }
    });
    tokio::spawn(async move {
        while !store.is_closed() {
            match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(mut listener) => {
                    if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
                        tracing::warn!(error = %e, "LISTEN failed");
                    } else {
                        // Anything committed while we were not listening.
                        feed.catch_up().await;
                        while let Ok(note) = listener.recv().await {
                            if store.is_closed() {
                                break;
                            }
                            // The payload is the batch's latest sequence: our own commits (and
                            // anything already read) are in the feed, so only read when behind.
                            let behind = note
                                .payload()
                                .parse::<u64>()
                                .map_or(true, |sequence| sequence > feed.latest());
                            if behind {
                                feed.catch_up().await;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot connect the event listener"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}
