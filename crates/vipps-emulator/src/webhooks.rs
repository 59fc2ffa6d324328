//! Webhooks API v1: register, list and delete webhook registrations.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand::Rng as _;
use serde_json::{json, Value};
use uuid::Uuid;

use super::auth::{optional_merchant_serial_number, require_json_content_type, require_token};
use super::epayment::json_response;
use super::problem::{ApiError, Problem};
use super::validate;
use super::Emulator;

/// Registrations allowed per event type and MSN (newer docs; the old spec said 5).
const MAX_PER_EVENT_TYPE: usize = 25;

/// Event types the Webhooks API accepts. Only the ePayment ones are ever sent here.
const KNOWN_EVENT_TYPES: [&str; 18] = [
    "epayments.payment.created.v1",
    "epayments.payment.aborted.v1",
    "epayments.payment.expired.v1",
    "epayments.payment.cancelled.v1",
    "epayments.payment.captured.v1",
    "epayments.payment.refunded.v1",
    "epayments.payment.authorized.v1",
    "epayments.payment.terminated.v1",
    "recurring.agreement-activated.v1",
    "recurring.agreement-rejected.v1",
    "recurring.agreement-stopped.v1",
    "recurring.agreement-expired.v1",
    "recurring.charge-reserved.v1",
    "recurring.charge-captured.v1",
    "recurring.charge-canceled.v1",
    "recurring.charge-failed.v1",
    "user.checked-in.v1",
    "login.merchant-initiated.ping.v1",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub id: Uuid,
    pub url: url::Url,
    pub events: Vec<String>,
    /// Used as UTF-8 bytes for the HMAC key, never Base64-decoded.
    pub secret: String,
    /// The sales unit it was registered for; `None` (a partner without MSN) hears all.
    pub msn: Option<String>,
}

#[derive(Debug, Default)]
pub struct Registry {
    registrations: Vec<Registration>,
}

impl Registry {
    pub fn register(
        &mut self,
        msn: Option<String>,
        url: url::Url,
        events: Vec<String>,
    ) -> Result<Registration, Problem> {
        for event in &events {
            let taken = self
                .registrations
                .iter()
                .filter(|r| r.msn == msn && r.events.contains(event))
                .count();
            if taken >= MAX_PER_EVENT_TYPE {
                return Err(Problem::bad_request(
                    "Too many webhooks",
                    format!("At most {MAX_PER_EVENT_TYPE} webhooks may be registered for {event}"),
                ));
            }
        }
        let registration = Registration {
            id: Uuid::new_v4(),
            url,
            events,
            secret: new_secret(),
            msn,
        };
        self.registrations.push(registration.clone());
        Ok(registration)
    }

    /// Registrations visible to a caller with this MSN header.
    pub fn visible<'a>(
        &'a self,
        msn: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Registration> + 'a {
        self.registrations
            .iter()
            .filter(move |r| r.msn.as_deref() == msn)
    }

    pub fn delete(&mut self, id: Uuid, msn: Option<&str>) -> bool {
        let before = self.registrations.len();
        self.registrations
            .retain(|r| !(r.id == id && r.msn.as_deref() == msn));
        self.registrations.len() != before
    }

    pub fn get(&self, id: Uuid) -> Option<&Registration> {
        self.registrations.iter().find(|r| r.id == id)
    }

    /// Who should hear about an event of this type for this MSN's payment.
    pub fn subscribers(&self, msn: &str, event_type: &str) -> Vec<Uuid> {
        self.registrations
            .iter()
            .filter(|r| {
                r.msn.as_deref().is_none_or(|m| m == msn)
                    && r.events.iter().any(|e| e == event_type)
            })
            .map(|r| r.id)
            .collect()
    }
}

/// 64 random bytes in standard Base64, shaped like the secrets Vipps hands out.
fn new_secret() -> String {
    let mut bytes = [0u8; 64];
    rand::rng().fill(&mut bytes[..]);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `POST /webhooks/v1/webhooks` with `{url, events}` (no other properties).
pub async fn register(
    State(emulator): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_token(&emulator, &headers)?;
    let msn = optional_merchant_serial_number(&headers)?;
    require_json_content_type(&headers, &body)?;
    let request = validate::json_body(&body)?;
    let (url, events) = parse_registration(&request)?;
    let mut registry = emulator.webhook_registry();
    let registration = registry.register(msn, url, events)?;
    let answer = json!({ "id": registration.id, "secret": registration.secret });
    Ok(json_response(StatusCode::CREATED, &answer))
}

/// `GET /webhooks/v1/webhooks`.
pub async fn list(
    State(emulator): State<Emulator>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_token(&emulator, &headers)?;
    let msn = optional_merchant_serial_number(&headers)?;
    let registry = emulator.webhook_registry();
    let webhooks: Vec<Value> = registry
        .visible(msn.as_deref())
        .map(|r| json!({ "id": r.id, "url": r.url.as_str(), "events": r.events }))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "webhooks": webhooks }),
    ))
}

/// `DELETE /webhooks/v1/webhooks/{id}`: 204, or 404 for an unknown id.
pub async fn delete(
    State(emulator): State<Emulator>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_token(&emulator, &headers)?;
    let msn = optional_merchant_serial_number(&headers)?;
    let id = Uuid::parse_str(&id)
        .map_err(|_| Problem::bad_request("Invalid webhook id", "The id must be a UUID"))?;
    if emulator.webhook_registry().delete(id, msn.as_deref()) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Problem::new(
            StatusCode::NOT_FOUND,
            "Webhook not found",
            format!("No webhook with id {id}"),
        )
        .into())
    }
}

fn parse_registration(request: &Value) -> Result<(url::Url, Vec<String>), Problem> {
    let obj = request.as_object().ok_or_else(|| {
        Problem::bad_request("Invalid request body", "The body must be a JSON object")
    })?;
    if let Some(extra) = obj.keys().find(|k| *k != "url" && *k != "events") {
        return Err(Problem::bad_request(
            "Invalid request body",
            format!("Unknown property '{extra}'"),
        ));
    }
    let url_text = obj
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| Problem::missing("url"))?;
    // Vipps demands public HTTPS; plain http is allowed here so local receivers work.
    let url = url::Url::parse(url_text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| {
            Problem::bad_request("Invalid URL", "url must be an absolute http(s) URL")
        })?;
    let events = obj
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| Problem::missing("events"))?;
    if events.is_empty() {
        return Err(Problem::bad_request(
            "Invalid events",
            "events must name at least one event type",
        ));
    }
    let mut names = Vec::with_capacity(events.len());
    for event in events {
        match event.as_str() {
            Some(name) if KNOWN_EVENT_TYPES.contains(&name) => {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
            _ => {
                return Err(Problem::bad_request(
                    "Invalid events",
                    format!("Unknown event type {event}"),
                ))
            }
        }
    }
    Ok((url, names))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    fn url() -> url::Url {
        url::Url::parse("https://example.com/hook").unwrap()
    }

    #[test]
    fn limit_per_event_type_and_msn() {
        let mut registry = Registry::default();
        let captured = vec!["epayments.payment.captured.v1".to_string()];
        for _ in 0..MAX_PER_EVENT_TYPE {
            registry
                .register(Some("123456".into()), url(), captured.clone())
                .unwrap();
        }
        let refused = registry
            .register(Some("123456".into()), url(), captured.clone())
            .unwrap_err();
        assert_eq!(refused.title, "Too many webhooks");
        assert!(registry
            .register(Some("654321".into()), url(), captured)
            .is_ok());
    }

    #[test]
    fn subscribers_by_msn_and_type() {
        let mut registry = Registry::default();
        let mine = registry
            .register(
                Some("123456".into()),
                url(),
                vec!["epayments.payment.captured.v1".into()],
            )
            .unwrap()
            .id;
        let partner = registry
            .register(None, url(), vec!["epayments.payment.captured.v1".into()])
            .unwrap()
            .id;
        let secret = &registry.get(mine).unwrap().secret;
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(secret)
                .unwrap()
                .len(),
            64
        );
        assert_eq!(
            registry.subscribers("123456", "epayments.payment.captured.v1"),
            [mine, partner]
        );
        assert_eq!(
            registry.subscribers("999999", "epayments.payment.captured.v1"),
            [partner]
        );
        assert!(registry
            .subscribers("123456", "epayments.payment.created.v1")
            .is_empty());
        assert!(!registry.delete(mine, None));
        assert!(registry.delete(mine, Some("123456")));
    }

    #[test]
    fn registration_body_rules() {
        let ok = json!({"url": "http://127.0.0.1:9/x", "events": ["epayments.payment.created.v1"]});
        assert!(parse_registration(&ok).is_ok());
        let bad = [
            json!({"url": "http://127.0.0.1:9/x", "events": ["epayments.payment.created.v1"], "secret": "x"}),
            json!({"url": "ftp://example.com", "events": ["epayments.payment.created.v1"]}),
            json!({"url": "http://127.0.0.1:9/x", "events": []}),
            json!({"url": "http://127.0.0.1:9/x", "events": ["epayments.payment.shipped.v1"]}),
            json!({"events": ["epayments.payment.created.v1"]}),
        ];
        for body in bad {
            assert!(parse_registration(&body).is_err(), "{body}");
        }
    }
}
