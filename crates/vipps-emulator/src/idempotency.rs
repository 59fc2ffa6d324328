//! Idempotency-Key bookkeeping per (MSN, operation, reference, key).
//!
//! Only successful answers are remembered: a refused call had no effect, so a
//! retry with the same key is evaluated afresh (e.g. a capture that failed
//! before authorization may succeed after it). A remembered answer is replayed
//! byte for byte, and the same key with a different body is a conflict.

use std::collections::HashMap;

use axum::http::StatusCode;
use serde_json::Value;

use super::problem::Problem;
use super::state::Operation;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    pub msn: String,
    pub operation: Operation,
    pub reference: String,
    pub key: String,
}

/// The first successful answer, kept for replay.
#[derive(Debug, Clone)]
pub struct StoredAnswer {
    /// The parsed request body; `Value` equality ignores key order and whitespace.
    fingerprint: Value,
    pub status: StatusCode,
    pub body: Value,
}

pub enum Lookup<'a> {
    /// Never seen: process the request.
    Fresh,
    /// Same key and body: answer exactly as before, with no new effect.
    Replay(&'a StoredAnswer),
    /// Same key, different body.
    Conflict,
}

#[derive(Debug, Default)]
pub struct IdempotencyStore {
    answers: HashMap<IdempotencyKey, StoredAnswer>,
}

impl IdempotencyStore {
    pub fn lookup(&self, key: &IdempotencyKey, fingerprint: &Value) -> Lookup<'_> {
        match self.answers.get(key) {
            None => Lookup::Fresh,
            Some(stored) if stored.fingerprint == *fingerprint => Lookup::Replay(stored),
            Some(_) => Lookup::Conflict,
        }
    }

    pub fn remember(
        &mut self,
        key: IdempotencyKey,
        fingerprint: Value,
        status: StatusCode,
        body: Value,
    ) {
        self.answers.entry(key).or_insert(StoredAnswer {
            fingerprint,
            status,
            body,
        });
    }
}

/// 409 for a key reused with another body, titled per operation like the FAQ.
pub fn conflict(key: &IdempotencyKey) -> Problem {
    let title = match key.operation {
        Operation::Capture => "Capture idempotency conflict".to_string(),
        Operation::Refund => "Refund idempotency conflict".to_string(),
        Operation::Cancel => "Cancel idempotency conflict".to_string(),
        Operation::Create => format!(
            "Idempotency error: Idempotency-Key {} already exists",
            key.key
        ),
    };
    Problem::conflict(
        title,
        "The Idempotency-Key was already used with a different request body",
    )
    .with_kind("idempotency-conflict")
}

/// 409 for creating a reference that exists under another Idempotency-Key.
pub fn reference_exists(reference: &str) -> Problem {
    Problem::conflict(
        format!("Idempotency error: Reference {reference} already exists"),
        "A payment with this reference was created with a different Idempotency-Key",
    )
    .with_kind("reference-already-exists")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;
    use serde_json::json;

    fn key(k: &str) -> IdempotencyKey {
        IdempotencyKey {
            msn: "123456".into(),
            operation: Operation::Capture,
            reference: "order-0001".into(),
            key: k.into(),
        }
    }

    #[test]
    fn replay_conflict_and_fresh() {
        let mut store = IdempotencyStore::default();
        let body = json!({"modificationAmount": {"currency": "NOK", "value": 100}});
        assert!(matches!(store.lookup(&key("a"), &body), Lookup::Fresh));
        store.remember(key("a"), body.clone(), StatusCode::OK, json!({"ok": 1}));
        // Key order in the JSON does not matter.
        let reordered: Value =
            serde_json::from_str(r#"{"modificationAmount":{"value":100,"currency":"NOK"}}"#)
                .unwrap();
        match store.lookup(&key("a"), &reordered) {
            Lookup::Replay(answer) => assert_eq!(answer.body, json!({"ok": 1})),
            _ => panic!("expected replay"),
        }
        let other = json!({"modificationAmount": {"currency": "NOK", "value": 200}});
        assert!(matches!(store.lookup(&key("a"), &other), Lookup::Conflict));
        assert!(matches!(store.lookup(&key("b"), &body), Lookup::Fresh));
        assert_eq!(conflict(&key("a")).status, StatusCode::CONFLICT);
    }
}
