//! PostgreSQL only: LISTEN for other replicas' commits and pull them into the feed.
//! The notification is only a wake-up; the events themselves are read from the log.
//! SQLite has a single replica, so nothing runs there.

use std::time::Duration;

use super::Feed;
use crate::store::{read_commit_notice, Store, NOTIFY_CHANNEL};

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
                            if !needs_reading(note.payload(), store.origin(), feed.latest()) {
                                continue;
                            }
                            feed.catch_up().await;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot connect the event listener"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

/// Whether a commit notification (`store::read_commit_notice`) needs the log read: not for our
/// own commits (the writer hands them to the feed, and a gap there reads the log itself; were
/// they read here too, nearly every batch would be read back, since the notification arrives
/// before the writer's answer), nor for what the feed already holds. A payload it cannot read
/// (another version's) is read for safety.
fn needs_reading(payload: &str, own: &str, latest: u64) -> bool {
    let (sequence, origin) = read_commit_notice(payload);
    origin != own && sequence.is_none_or(|sequence| sequence > latest)
}

#[cfg(test)]
mod tests {
    use super::needs_reading;

    #[test]
    fn reads_only_what_other_replicas_committed_beyond_the_feed() {
        assert!(!needs_reading("120 us", "us", 100), "our own commit");
        assert!(needs_reading("120 them", "us", 100));
        assert!(!needs_reading("90 them", "us", 100), "already in the feed");
        assert!(
            needs_reading("120", "us", 100),
            "a payload without an origin"
        );
        assert!(needs_reading("garbage", "us", 100));
    }
}
