//! The access token: parsing `/accesstoken/get` answers and caching the token, with one
//! refresh at a time however many calls need it.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use super::error::VippsError;
use crate::config::Secret;

/// Used when the answer carries neither `expires_in` nor `expires_on`: short, so a wrong guess
/// costs one extra token call, and a 401 forces a refresh anyway.
const FALLBACK_LIFETIME: Duration = Duration::from_secs(300);
/// Tokens live 1 h (test) or 24 h (production); anything longer is treated as this, which also
/// keeps `Instant` arithmetic far from overflow.
const MAX_LIFETIME: Duration = Duration::from_secs(48 * 3600);
/// Refresh this long before expiry at the latest ...
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// ... and after a failed refresh, try again no sooner than this while the old token still works.
const RETRY_REFRESH_AFTER: Duration = Duration::from_secs(10);

/// A token and how long it is good for, as read from the token endpoint.
pub(crate) struct FetchedToken {
    pub(crate) token: Secret,
    pub(crate) lifetime: Duration,
}

/// `/accesstoken/get` answer. Every value is documented as a JSON string (`"expires_in":
/// "3600"`); numbers are accepted too in case that ever gets fixed.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Value>,
    #[serde(default)]
    expires_on: Option<Value>,
}

/// Reads a token answer. The error text never contains the body, which holds the token.
pub(crate) fn parse_token_response(body: &[u8], now: SystemTime) -> Result<FetchedToken, String> {
    let resp: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        // Category and position only: serde's message can quote values, i.e. the token.
        format!(
            "token response is not the expected JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    if resp.access_token.trim().is_empty() {
        return Err("token response has an empty access_token".to_owned());
    }
    let from_expires_in = resp.expires_in.as_ref().and_then(as_u64).filter(|s| *s > 0);
    let from_expires_on = || {
        let on = resp.expires_on.as_ref().and_then(as_u64)?;
        let now = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
        on.checked_sub(now).filter(|s| *s > 0)
    };
    let lifetime = match from_expires_in.or_else(from_expires_on) {
        Some(secs) => Duration::from_secs(secs).min(MAX_LIFETIME),
        None => {
            tracing::warn!("Vipps token response has no usable expiry; assuming 5 minutes");
            FALLBACK_LIFETIME
        }
    };
    Ok(FetchedToken {
        token: Secret::new(resp.access_token),
        lifetime,
    })
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        // `as u64` on a float saturates, which the MAX_LIFETIME cap then handles.
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        _ => None,
    }
}

/// When to refresh a token of the given lifetime: at 80 % of it or 5 minutes before expiry,
/// whichever is sooner, but not before half of it (so short test tokens still get cached).
pub(crate) fn refresh_after(lifetime: Duration) -> Duration {
    let eighty = lifetime.mul_f64(0.8);
    let margin = lifetime.saturating_sub(REFRESH_MARGIN).max(lifetime / 2);
    eighty.min(margin)
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

/// Why the last refresh failed, shared with the calls that queued behind it.
struct Failure {
    at: Instant,
    status: Option<u16>,
    message: String,
}

#[derive(Default)]
struct Slot {
    current: Option<Cached>,
    last_failure: Option<Failure>,
}

/// Holds the current token. The lock is held across a refresh, so concurrent callers wait for
/// that one request instead of sending their own (single flight).
#[derive(Default)]
pub(crate) struct TokenCache {
    slot: Mutex<Slot>,
}

impl TokenCache {
    /// A usable token, fetched through `fetch` when there is none or it is due for refresh.
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<Secret, VippsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<FetchedToken, VippsError>>,
    {
        let queued_at = Instant::now();
        let mut slot = self.slot.lock().await;
        let now = Instant::now();
        if let Some(c) = &slot.current {
            if now < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        // A refresh that failed while we waited would fail again now: share its answer
        // rather than queue another full retry budget behind it.
        if let Some(f) = &slot.last_failure {
            if f.at >= queued_at {
                return Err(VippsError::Auth {
                    status: f.status,
                    message: f.message.clone(),
                });
            }
        }
        // Measured before the request goes out, so the expiry we compute is never late.
        let requested_at = Instant::now();
        match fetch().await {
            Ok(fetched) => {
                let token = fetched.token.clone();
                slot.current = Some(Cached {
                    token: fetched.token,
                    refresh_at: requested_at + refresh_after(fetched.lifetime),
                    expires_at: requested_at + fetched.lifetime,
                });
                slot.last_failure = None;
                Ok(token)
            }
            Err(err) => {
                let now = Instant::now();
                let (status, message) = match &err {
                    VippsError::Auth { status, message } => (*status, message.clone()),
                    other => (other.status(), other.to_string()),
                };
                slot.last_failure = Some(Failure {
                    at: now,
                    status,
                    message,
                });
                match &mut slot.current {
                    // Refresh failed early: the old token is still valid, keep using it and
                    // retry the refresh a little later (never past expiry).
                    Some(c) if now < c.expires_at => {
                        tracing::warn!(error = %err, "Vipps token refresh failed; using the current token until it expires");
                        let left = c.expires_at - now;
                        c.refresh_at = now + RETRY_REFRESH_AFTER.min(left / 2);
                        Ok(c.token.clone())
                    }
                    _ => {
                        slot.current = None;
                        Err(err)
                    }
                }
            }
        }
    }

    /// Forgets `token` after the API answered 401 to it. A token already replaced by another
    /// caller's refresh is left alone, so a burst of 401s causes one refresh, not many.
    pub(crate) async fn invalidate(&self, token: &Secret) {
        let mut slot = self.slot.lock().await;
        if slot.current.as_ref().is_some_and(|c| &c.token == token) {
            slot.current = None;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    #[test]
    fn string_values_are_parsed() {
        let body = br#"{"token_type":"Bearer","expires_in":"3600","ext_expires_in":"0","expires_on":"1495271273","not_before":"1495267373","resource":"00000002-0000-0000-c000-000000000000","access_token":"eyJ0eXAi.x.y"}"#;
        let t = parse_token_response(body, SystemTime::now()).unwrap();
        assert_eq!(t.token.expose(), "eyJ0eXAi.x.y");
        assert_eq!(t.lifetime, Duration::from_secs(3600));
    }

    #[test]
    fn numbers_and_expires_on_are_accepted() {
        let t = parse_token_response(
            br#"{"access_token":"a","expires_in":86398}"#,
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(t.lifetime, Duration::from_secs(86398));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let t =
            parse_token_response(br#"{"access_token":"a","expires_on":"1000600"}"#, now).unwrap();
        assert_eq!(t.lifetime, Duration::from_secs(600));
        let t = parse_token_response(br#"{"access_token":"a"}"#, now).unwrap();
        assert_eq!(t.lifetime, FALLBACK_LIFETIME);
    }

    #[test]
    fn bad_bodies_do_not_echo_the_body() {
        let err = parse_token_response(
            br#"{"access_token":"secret-token","expires_in":[]}"#,
            SystemTime::now(),
        );
        assert!(err.is_ok(), "odd expiry falls back rather than failing");
        let err = parse_token_response(b"secret-token", SystemTime::now())
            .err()
            .unwrap();
        assert!(!err.contains("secret-token"));
        assert!(parse_token_response(br#"{"access_token":""}"#, SystemTime::now()).is_err());
    }

    #[test]
    fn refresh_point() {
        let s = Duration::from_secs;
        assert_eq!(refresh_after(s(3600)), s(2880)); // 80 %
        assert_eq!(refresh_after(s(86_400)), s(69_120));
        assert_eq!(refresh_after(s(1000)), s(700)); // 5 min before
        assert_eq!(refresh_after(s(300)), s(150)); // never before half-life
    }

    #[tokio::test]
    async fn cached_then_invalidated() {
        let cache = TokenCache::default();
        let fetch = |name: &'static str| {
            move || async move {
                Ok(FetchedToken {
                    token: Secret::new(name),
                    lifetime: Duration::from_secs(3600),
                })
            }
        };
        assert_eq!(cache.get(fetch("a")).await.unwrap().expose(), "a");
        assert_eq!(cache.get(fetch("b")).await.unwrap().expose(), "a");
        cache.invalidate(&Secret::new("other")).await;
        assert_eq!(cache.get(fetch("b")).await.unwrap().expose(), "a");
        cache.invalidate(&Secret::new("a")).await;
        assert_eq!(cache.get(fetch("b")).await.unwrap().expose(), "b");
    }

    #[tokio::test]
    async fn failed_refresh_keeps_a_valid_token() {
        let cache = TokenCache::default();
        // A token that is due for refresh but not yet expired.
        {
            let mut slot = cache.slot.lock().await;
            let now = Instant::now();
            slot.current = Some(Cached {
                token: Secret::new("old"),
                refresh_at: now,
                expires_at: now + Duration::from_secs(60),
            });
        }
        let failing = || async {
            Err(VippsError::Auth {
                status: Some(500),
                message: "down".into(),
            })
        };
        assert_eq!(cache.get(failing).await.unwrap().expose(), "old");
    }
}
