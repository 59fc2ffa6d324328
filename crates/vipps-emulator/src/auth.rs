//! Access tokens (`POST /accesstoken/get`) and the common header checks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand::Rng as _;
use serde_json::json;

use super::problem::{ApiError, Problem};
use super::Emulator;

const SUBSCRIPTION_KEY: &str = "ocp-apim-subscription-key";
const MSN: &str = "merchant-serial-number";
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Issued tokens and when each stops working. Several may be valid at once, as at Vipps.
#[derive(Debug, Default)]
pub struct TokenStore {
    tokens: HashMap<String, Instant>,
}

impl TokenStore {
    pub fn issue(&mut self, ttl: Duration) -> String {
        let now = Instant::now();
        // Forget expired tokens so a long-running emulator does not grow without bound.
        self.tokens.retain(|_, expires| *expires > now);
        let token = random_token();
        self.tokens.insert(token.clone(), now + ttl);
        token
    }

    pub fn is_valid(&self, token: &str) -> bool {
        self.tokens
            .get(token)
            .is_some_and(|expires| *expires > Instant::now())
    }

    pub fn revoke_all(&mut self) {
        self.tokens.clear();
    }
}

/// A JWT-shaped opaque string (real tokens are 1000+ character JWTs; clients must
/// not parse them, but must not choke on the length either).
fn random_token() -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = engine.encode(br#"{"typ":"JWT","alg":"none","kid":"paygate-emulator"}"#);
    let mut random = [0u8; 32];
    rand::rng().fill(&mut random[..]);
    let payload =
        engine.encode(json!({ "iss": "paygate-emulator", "jti": hex::encode(random) }).to_string());
    let mut signature = [0u8; 256];
    rand::rng().fill(&mut signature[..]);
    format!("{header}.{payload}.{}", engine.encode(signature))
}

/// `POST /accesstoken/get`: any non-empty credentials are accepted.
pub async fn access_token(
    State(emulator): State<Emulator>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    for name in ["client_id", "client_secret", SUBSCRIPTION_KEY] {
        if header_text(&headers, name).is_none() {
            return Err(ApiError::Unauthorized(
                "Access denied due to missing or invalid credentials",
            ));
        }
    }
    if let Some(msn) = header_text(&headers, MSN) {
        check_msn(msn)?;
    }
    let ttl = emulator.config().token_ttl;
    let token = emulator.issue_token();
    let now = chrono::Utc::now().timestamp();
    let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    // Every value is a JSON string, including the numbers: that is the real format.
    let body = json!({
        "token_type": "Bearer",
        "expires_in": ttl.as_secs().to_string(),
        "ext_expires_in": "0",
        "expires_on": now.saturating_add(ttl_secs).to_string(),
        "not_before": now.to_string(),
        "resource": "00000002-0000-0000-c000-000000000000",
        "access_token": token,
    });
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    Ok(response)
}

/// Bearer token and subscription key, required by every API but the token endpoint.
pub fn require_token(emulator: &Emulator, headers: &HeaderMap) -> Result<(), ApiError> {
    // "Bearer" is case-sensitive at Vipps; "bearer x" is refused like a missing token.
    let token = header_text(headers, header::AUTHORIZATION.as_str())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized(
            "Access denied due to missing or malformed Authorization header",
        ))?;
    if header_text(headers, SUBSCRIPTION_KEY).is_none() {
        return Err(ApiError::Unauthorized(
            "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.",
        ));
    }
    if !emulator.token_is_valid(token) {
        return Err(ApiError::Unauthorized(
            "Access denied due to invalid or expired token",
        ));
    }
    Ok(())
}

/// `Merchant-Serial-Number`, required by ePayment.
pub fn merchant_serial_number(headers: &HeaderMap) -> Result<String, Problem> {
    let msn = header_text(headers, MSN)
        .ok_or_else(|| Problem::missing("Merchant-Serial-Number header"))?;
    check_msn(msn)?;
    Ok(msn.to_string())
}

/// `Merchant-Serial-Number` where it is optional (webhooks, access token).
pub fn optional_merchant_serial_number(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    header_text(headers, MSN)
        .map(|msn| check_msn(msn).map(|()| msn.to_string()))
        .transpose()
}

/// `Idempotency-Key`: 1-50 characters, required on create, capture, refund and cancel.
pub fn idempotency_key(headers: &HeaderMap) -> Result<String, Problem> {
    let key = header_text(headers, IDEMPOTENCY_KEY)
        .ok_or_else(|| Problem::missing("Idempotency-Key header"))?;
    if key.chars().count() > 50 {
        return Err(Problem::bad_request(
            "Invalid Idempotency-Key",
            "Idempotency-Key is at most 50 characters",
        ));
    }
    Ok(key.to_string())
}

/// Body-carrying calls must say they send JSON, as ASP.NET-based APIs insist.
pub fn require_json_content_type(headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let is_json = header_text(headers, header::CONTENT_TYPE.as_str())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            "Send the body with Content-Type: application/json",
        )
        .into())
    }
}

/// MSN rule: the spec says 4-6 digits, newer docs 4-7; the wider rule is used.
fn check_msn(msn: &str) -> Result<(), Problem> {
    if (4..=7).contains(&msn.len()) && msn.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(Problem::bad_request(
            "Invalid Merchant-Serial-Number",
            "Merchant-Serial-Number must be 4-7 digits",
        ))
    }
}

/// A header as trimmed, non-empty UTF-8 text.
pub fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_and_revoke() {
        let mut store = TokenStore::default();
        let long = store.issue(Duration::from_secs(60));
        let short = store.issue(Duration::ZERO);
        assert!(long.len() > 300);
        assert!(store.is_valid(&long));
        assert!(!store.is_valid(&short));
        assert!(!store.is_valid("made-up"));
        store.revoke_all();
        assert!(!store.is_valid(&long));
    }

    #[test]
    fn header_rules() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            merchant_serial_number(&headers).unwrap_err().title,
            "Missing required parameter"
        );
        headers.insert(MSN, HeaderValue::from_static("12a456"));
        assert_eq!(
            merchant_serial_number(&headers).unwrap_err().title,
            "Invalid Merchant-Serial-Number"
        );
        headers.insert(MSN, HeaderValue::from_static("1234567"));
        assert_eq!(merchant_serial_number(&headers).unwrap(), "1234567");
        assert!(idempotency_key(&headers).is_err());
        headers.insert(
            IDEMPOTENCY_KEY,
            HeaderValue::from_str(&"k".repeat(51)).unwrap(),
        );
        assert_eq!(
            idempotency_key(&headers).unwrap_err().title,
            "Invalid Idempotency-Key"
        );
        assert!(require_json_content_type(&headers, b"{}").is_err());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(require_json_content_type(&headers, b"{}").is_ok());
    }
}
