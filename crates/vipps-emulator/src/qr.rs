//! QR API, merchant redirect (`/qr/v1/merchant-redirect`, REFERENCE.md §4):
//! printed codes that send a scanning phone to the merchant's `redirectUrl`.
//!
//! The code's content is a Vipps URL of its own, not the merchant's URL, so a
//! printed sticker keeps working when the redirect changes. The emulator plays
//! that Vipps side too: `GET /emulator/qr-scan/{token}` (the content's path)
//! and `GET /emulator/qr/{id}/resolve` redirect like a scan, and image links
//! point at `/emulator/qr-images/...` on the emulator itself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand::Rng as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{header_text, optional_merchant_serial_number, require_token};
use super::problem::{ApiError, Problem};
use super::qr_image;
use super::Emulator;

/// What the printed code holds, before the per-code token.
const CONTENT_PREFIX: &str = "https://qr.vipps.no/28/2/01/031/";
const TTL_RANGE: std::ops::RangeInclusive<i64> = 300..=2_147_483_647;
const ID_PATTERN: &str = r"^[-_+%æøåÆØÅ\w\s]*$";
const URL_PATTERN: &str = r"^https://[\w\.]+([\w#!:.?+=&%@\-/]+)?$";

/// One merchant redirect QR.
#[derive(Debug, Clone)]
pub struct MerchantRedirect {
    pub id: String,
    pub redirect_url: String,
    /// Identifies the printed code; fixed for the code's life, new after delete + create.
    pub token: String,
    expires_at: Option<Instant>,
    sequence: u64,
}

impl MerchantRedirect {
    /// The raw QR content (`Accept: text/targetUrl`).
    pub fn content(&self) -> String {
        format!("{CONTENT_PREFIX}{}", self.token)
    }

    /// Seconds left, `-1` for a code without `ttl`.
    fn expires_in(&self, now: Instant) -> i64 {
        self.expires_at.map_or(-1, |at| {
            i64::try_from(at.saturating_duration_since(now).as_secs()).unwrap_or(i64::MAX)
        })
    }

    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// Codes per (MSN header or none, id): each sales unit has its own ids.
#[derive(Debug, Default)]
pub struct QrStore {
    codes: HashMap<(Option<String>, String), MerchantRedirect>,
    next_sequence: u64,
}

impl QrStore {
    /// Expired codes are gone: not listed, not found, their ids free again.
    fn purge(&mut self) {
        let now = Instant::now();
        self.codes.retain(|_, code| code.is_live(now));
    }

    fn key(msn: Option<&str>, id: &str) -> (Option<String>, String) {
        (msn.map(str::to_string), id.to_string())
    }

    /// `None` when the id is taken.
    pub fn create(
        &mut self,
        msn: Option<&str>,
        id: &str,
        redirect_url: &str,
        ttl: Option<Duration>,
    ) -> Option<&MerchantRedirect> {
        self.purge();
        let key = Self::key(msn, id);
        if self.codes.contains_key(&key) {
            return None;
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let code = MerchantRedirect {
            id: id.to_string(),
            redirect_url: redirect_url.to_string(),
            token: new_token(),
            expires_at: ttl.map(|ttl| Instant::now() + ttl),
            sequence,
        };
        Some(self.codes.entry(key).or_insert(code))
    }

    pub fn get(&mut self, msn: Option<&str>, id: &str) -> Option<&MerchantRedirect> {
        self.purge();
        self.codes.get(&Self::key(msn, id))
    }

    /// This sales unit's codes, oldest first.
    pub fn list(&mut self, msn: Option<&str>) -> Vec<&MerchantRedirect> {
        self.purge();
        let mut codes: Vec<_> = self
            .codes
            .iter()
            .filter(|((m, _), _)| m.as_deref() == msn)
            .map(|(_, code)| code)
            .collect();
        codes.sort_by_key(|code| code.sequence);
        codes
    }

    pub fn update(
        &mut self,
        msn: Option<&str>,
        id: &str,
        redirect_url: &str,
    ) -> Option<&MerchantRedirect> {
        self.purge();
        let code = self.codes.get_mut(&Self::key(msn, id))?;
        code.redirect_url = redirect_url.to_string();
        Some(code)
    }

    pub fn delete(&mut self, msn: Option<&str>, id: &str) -> bool {
        self.purge();
        self.codes.remove(&Self::key(msn, id)).is_some()
    }

    /// The live code a printed token belongs to.
    pub fn by_token(&mut self, token: &str) -> Option<&MerchantRedirect> {
        self.purge();
        self.codes.values().find(|code| code.token == token)
    }

    /// For the control API, which has no MSN header: the newest code with
    /// this id, optionally of one MSN.
    pub fn find(&mut self, id: &str, msn: Option<&str>) -> Option<&MerchantRedirect> {
        self.purge();
        self.codes
            .iter()
            .filter(|((m, i), _)| i == id && msn.is_none_or(|want| m.as_deref() == Some(want)))
            .map(|(_, code)| code)
            .max_by_key(|code| code.sequence)
    }
}

/// 16 random bytes, URL-safe: short enough to keep the QR small.
fn new_token() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The `Accept` header's choice: an image link, or the raw content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Svg,
    Png,
    TargetUrl,
}

/// What shapes an answer's `url`: format, PNG size and where the emulator is reachable.
struct Rendering {
    format: Format,
    size: u32,
    base: String,
}

impl Rendering {
    /// `Accept` (required) and `Size` (optional, 100-2000).
    fn from_headers(headers: &HeaderMap) -> Result<Self, QrError> {
        let accept = header_text(headers, header::ACCEPT.as_str()).ok_or_else(|| {
            QrError::invalid(
                "Accept",
                "The Accept header is required: image/*, image/svg+xml, image/png or text/targetUrl.",
            )
        })?;
        let format = accept
            .split(',')
            .filter_map(|part| part.split(';').next())
            .find_map(|mime| match mime.trim().to_ascii_lowercase().as_str() {
                "image/*" | "image/svg+xml" => Some(Format::Svg),
                "image/png" => Some(Format::Png),
                "text/targeturl" => Some(Format::TargetUrl),
                _ => None,
            })
            .ok_or_else(|| {
                QrError::UnsupportedMediaType(format!(
                    "Accept '{accept}' is not supported; use image/*, image/svg+xml, image/png or text/targetUrl"
                ))
            })?;
        let size = match header_text(headers, "size") {
            None => qr_image::DEFAULT_SIZE,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|s| qr_image::SIZES.contains(s))
                .ok_or_else(|| {
                    QrError::invalid(
                        "Size",
                        "The Size header must be an integer between 100 and 2000.",
                    )
                })?,
        };
        // Image links point back at this emulator, as the client reached it.
        let host = header_text(headers, header::HOST.as_str()).unwrap_or("127.0.0.1");
        Ok(Self {
            format,
            size,
            base: format!("http://{host}"),
        })
    }

    fn url(&self, code: &MerchantRedirect) -> String {
        let token = &code.token;
        match self.format {
            Format::TargetUrl => code.content(),
            Format::Svg => format!(
                "{}/emulator/qr-images/{token}.svg?size={}",
                self.base, self.size
            ),
            Format::Png => format!(
                "{}/emulator/qr-images/{token}.png?size={}",
                self.base, self.size
            ),
        }
    }

    /// MerchantRedirectQrResponse.
    fn body(&self, code: &MerchantRedirect) -> Value {
        json!({
            "id": code.id,
            "url": self.url(code),
            "redirectUrl": code.redirect_url,
            "expiresIn": code.expires_in(Instant::now()),
        })
    }
}

type QrResult = Result<Response, QrError>;

/// `POST /qr/v1/merchant-redirect` with `{id, redirectUrl, ttl?}`: 200, not 201.
pub async fn create(State(emulator): State<Emulator>, headers: HeaderMap, body: Bytes) -> QrResult {
    let msn = access(&emulator, &headers)?;
    let rendering = Rendering::from_headers(&headers)?;
    let request = json_object(&headers, &body)?;
    let mut invalid = Vec::new();
    let id = check_id(&request, &mut invalid);
    let redirect_url = check_redirect_url(&request, &mut invalid);
    let ttl = check_ttl(&request, &mut invalid);
    let (Some(id), Some(redirect_url), true) = (id, redirect_url, invalid.is_empty()) else {
        return Err(QrError::Invalid(invalid));
    };
    let mut store = emulator.qr_store();
    let code = store
        .create(msn.as_deref(), &id, &redirect_url, ttl)
        .ok_or_else(|| QrError::Conflict(id.clone()))?;
    Ok(json_ok(&rendering.body(code)))
}

/// `GET /qr/v1/merchant-redirect`: this sales unit's codes.
pub async fn list(State(emulator): State<Emulator>, headers: HeaderMap) -> QrResult {
    let msn = access(&emulator, &headers)?;
    let rendering = Rendering::from_headers(&headers)?;
    let mut store = emulator.qr_store();
    let codes: Vec<Value> = store
        .list(msn.as_deref())
        .into_iter()
        .map(|code| rendering.body(code))
        .collect();
    Ok(json_ok(&json!(codes)))
}

/// `GET /qr/v1/merchant-redirect/{id}`.
pub async fn get(
    State(emulator): State<Emulator>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> QrResult {
    let msn = access(&emulator, &headers)?;
    let rendering = Rendering::from_headers(&headers)?;
    let mut store = emulator.qr_store();
    let code = store
        .get(msn.as_deref(), &id)
        .ok_or_else(|| QrError::NotFound(id.clone()))?;
    Ok(json_ok(&rendering.body(code)))
}

/// `PUT /qr/v1/merchant-redirect/{id}` with `{redirectUrl}`: re-points the printed code.
pub async fn update(
    State(emulator): State<Emulator>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> QrResult {
    let msn = access(&emulator, &headers)?;
    let rendering = Rendering::from_headers(&headers)?;
    let request = json_object(&headers, &body)?;
    let mut invalid = Vec::new();
    let redirect_url = check_redirect_url(&request, &mut invalid);
    let (Some(redirect_url), true) = (redirect_url, invalid.is_empty()) else {
        return Err(QrError::Invalid(invalid));
    };
    let mut store = emulator.qr_store();
    let code = store
        .update(msn.as_deref(), &id, &redirect_url)
        .ok_or_else(|| QrError::NotFound(id.clone()))?;
    Ok(json_ok(&rendering.body(code)))
}

/// `DELETE /qr/v1/merchant-redirect/{id}`: 200 with no body; the printed code dies.
pub async fn delete(
    State(emulator): State<Emulator>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> QrResult {
    let msn = access(&emulator, &headers)?;
    if emulator.qr_store().delete(msn.as_deref(), &id) {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(QrError::NotFound(id))
    }
}

/// `?msn=` picks a sales unit when several use the same id.
#[derive(Debug, Deserialize)]
pub struct Scope {
    msn: Option<String>,
}

/// `GET /emulator/qr/{id}/resolve`: where a phone scanning the code lands now.
pub async fn resolve(
    State(emulator): State<Emulator>,
    Path(id): Path<String>,
    Query(scope): Query<Scope>,
) -> Response {
    let mut store = emulator.qr_store();
    match store.find(&id, scope.msn.as_deref()) {
        Some(code) => redirect(&code.redirect_url),
        None => Problem::new(
            StatusCode::NOT_FOUND,
            "QR not found",
            format!("No live merchant redirect QR with id '{id}'"),
        )
        .into_response(),
    }
}

/// `GET /emulator/qr-scan/{token}`: the printed content's own URL, as Vipps serves it.
pub async fn scan(State(emulator): State<Emulator>, Path(token): Path<String>) -> Response {
    let mut store = emulator.qr_store();
    match store.by_token(&token) {
        Some(code) => redirect(&code.redirect_url),
        None => dead_code(),
    }
}

#[derive(Debug, Deserialize)]
pub struct ImageQuery {
    size: Option<u32>,
}

/// `GET /emulator/qr-images/{token}.svg|.png?size=`: the images the API links to.
pub async fn image(
    State(emulator): State<Emulator>,
    Path(file): Path<String>,
    Query(query): Query<ImageQuery>,
) -> Response {
    let Some((token, extension)) = file.rsplit_once('.') else {
        return dead_code();
    };
    let Some(content) = emulator
        .qr_store()
        .by_token(token)
        .map(MerchantRedirect::content)
    else {
        return dead_code();
    };
    let size = query.size.unwrap_or(qr_image::DEFAULT_SIZE);
    if !qr_image::SIZES.contains(&size) {
        return Problem::bad_request("Invalid size", "size must be 100-2000").into_response();
    }
    let rendered = match extension {
        "svg" => qr_image::svg(&content, size).map(|svg| ("image/svg+xml", svg.into_bytes())),
        "png" => qr_image::png(&content, size).map(|png| ("image/png", png)),
        _ => return dead_code(),
    };
    match rendered {
        Ok((content_type, bytes)) => {
            let mut response = (StatusCode::OK, bytes).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "QR rendering failed", e)
            .into_response(),
    }
}

fn redirect(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(location) => {
            let mut response = StatusCode::FOUND.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        Err(e) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Bad redirect",
            e.to_string(),
        )
        .into_response(),
    }
}

fn dead_code() -> Response {
    Problem::new(
        StatusCode::NOT_FOUND,
        "QR not found",
        "This QR code was deleted or has expired",
    )
    .into_response()
}

/// Token, subscription key and the optional MSN that scopes the codes.
fn access(emulator: &Emulator, headers: &HeaderMap) -> Result<Option<String>, QrError> {
    require_token(emulator, headers)?;
    optional_merchant_serial_number(headers)
        .map_err(|p| QrError::invalid("Merchant-Serial-Number", &p.detail))
}

/// A JSON object body sent as `application/json`.
fn json_object(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Map<String, Value>, QrError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(QrError::invalid(
            "body",
            "A non-empty request body is required.",
        ));
    }
    let is_json = header_text(headers, header::CONTENT_TYPE.as_str())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(QrError::UnsupportedMediaType(
            "Send the body with Content-Type: application/json".into(),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(QrError::invalid(
            "$",
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(QrError::invalid(
            "$",
            &format!("The JSON value could not be converted: {e}"),
        )),
    }
}

type Invalid = Vec<(String, String)>;

fn required_string(
    request: &serde_json::Map<String, Value>,
    key: &str,
    name: &str,
    invalid: &mut Invalid,
) -> Option<String> {
    match request.get(key) {
        None | Some(Value::Null) => {
            invalid.push((name.into(), format!("The {name} field is required.")));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            invalid.push((name.into(), format!("The {name} field must be a string.")));
            None
        }
    }
}

/// `id`: 1-128 characters of `^[-_+%æøåÆØÅ\w\s]*$`.
fn check_id(request: &serde_json::Map<String, Value>, invalid: &mut Invalid) -> Option<String> {
    let id = required_string(request, "id", "Id", invalid)?;
    if !(1..=128).contains(&id.chars().count()) {
        invalid.push((
            "Id".into(),
            "The field Id must be a string with a minimum length of 1 and a maximum length of 128."
                .into(),
        ));
        return None;
    }
    if !id
        .chars()
        .all(|c| is_word(c) || c.is_whitespace() || "-+%".contains(c))
    {
        invalid.push((
            "Id".into(),
            format!("The field Id must match the regular expression '{ID_PATTERN}'."),
        ));
        return None;
    }
    Some(id)
}

/// `redirectUrl`: `^https://[\w\.]+([\w#!:.?+=&%@\-/]+)?$`; plain http is refused.
fn check_redirect_url(
    request: &serde_json::Map<String, Value>,
    invalid: &mut Invalid,
) -> Option<String> {
    let url = required_string(request, "redirectUrl", "RedirectUrl", invalid)?;
    if is_redirect_url(&url) {
        Some(url)
    } else {
        invalid.push((
            "RedirectUrl".into(),
            format!("The field RedirectUrl must match the regular expression '{URL_PATTERN}'."),
        ));
        None
    }
}

/// `ttl`: optional seconds, 300-2147483647.
fn check_ttl(request: &serde_json::Map<String, Value>, invalid: &mut Invalid) -> Option<Duration> {
    let value = request.get("ttl").filter(|v| !v.is_null())?;
    match value.as_i64() {
        Some(seconds) if TTL_RANGE.contains(&seconds) => {
            Some(Duration::from_secs(seconds.unsigned_abs()))
        }
        _ => {
            invalid.push((
                "Ttl".into(),
                "The field Ttl must be an integer between 300 and 2147483647.".into(),
            ));
            None
        }
    }
}

/// .NET's `\w`, which the vendor's patterns use: letters, digits, marks, `_`.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_redirect_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let host_len = rest
        .chars()
        .take_while(|c| is_word(*c) || *c == '.')
        .map(char::len_utf8)
        .sum::<usize>();
    host_len > 0
        && rest[host_len..]
            .chars()
            .all(|c| is_word(c) || "#!:.?+=&%@-/".contains(c))
}

fn json_ok(body: &Value) -> Response {
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// QR API failures: 401 in the gateway's format; otherwise `QrErrorResponse`
/// `{type, title, detail, instance, invalidParams?}` as ASP.NET writes it
/// (409 adds the spec's `id`).
#[derive(Debug)]
pub enum QrError {
    Api(ApiError),
    Invalid(Invalid),
    UnsupportedMediaType(String),
    NotFound(String),
    Conflict(String),
}

impl QrError {
    fn invalid(name: &str, reason: &str) -> Self {
        Self::Invalid(vec![(name.to_string(), reason.to_string())])
    }
}

impl From<ApiError> for QrError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl IntoResponse for QrError {
    fn into_response(self) -> Response {
        let rfc = "https://datatracker.ietf.org/doc/html/rfc7231#section-";
        let (status, body) = match self {
            Self::Api(error) => return error.into_response(),
            Self::Invalid(params) => {
                let params: Vec<Value> = params
                    .into_iter()
                    .map(|(name, reason)| json!({"name": name, "reason": reason}))
                    .collect();
                (
                    StatusCode::BAD_REQUEST,
                    json!({
                        "type": format!("{rfc}6.5.1"),
                        "title": "One or more validation errors occurred.",
                        "detail": "BadRequest",
                        "invalidParams": params,
                    }),
                )
            }
            Self::UnsupportedMediaType(detail) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"type": format!("{rfc}6.5.13"), "title": "Unsupported Media Type", "detail": detail}),
            ),
            Self::NotFound(id) => (
                StatusCode::NOT_FOUND,
                json!({
                    "type": format!("{rfc}6.5.4"),
                    "title": "Not Found",
                    "detail": format!("No merchant redirect QR with id '{id}'"),
                }),
            ),
            Self::Conflict(id) => (
                StatusCode::CONFLICT,
                json!({
                    "type": format!("{rfc}6.5.8"),
                    "title": "Conflict",
                    "detail": format!("A merchant redirect QR with id '{id}' already exists"),
                    "id": id,
                }),
            ),
        };
        let mut body = body;
        body["instance"] = json!(trace_parent());
        let mut response = (status, body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json; charset=utf-8"),
        );
        response
    }
}

/// `00-<trace>-<span>-00`, the W3C traceparent ASP.NET puts in `instance`.
fn trace_parent() -> String {
    let trace: [u8; 16] = rand::rng().random();
    let span: [u8; 8] = rand::rng().random();
    format!("00-{}-{}-00", hex::encode(trace), hex::encode(span))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    #[test]
    fn redirect_url_pattern() {
        for ok in [
            "https://example.com",
            "https://example.com/taxi/34?ride=1&x=%20",
            "https://localhost:8443/a-b_c#frag",
            "https://blåbær.no/x",
        ] {
            assert!(is_redirect_url(ok), "{ok}");
        }
        for bad in [
            "http://example.com",
            "https://",
            "https:///path",
            "https://example.com/a,b",
            "https://example.com/~user",
            "ftp://example.com",
            "example.com",
        ] {
            assert!(!is_redirect_url(bad), "{bad}");
        }
    }

    #[test]
    fn ids_and_ttl() {
        let check = |body: Value| {
            let mut invalid = Vec::new();
            let id = check_id(body.as_object().unwrap(), &mut invalid);
            (id, invalid.len())
        };
        assert_eq!(check(json!({"id": "taxi 34_bil+1%"})).1, 0);
        assert_eq!(check(json!({"id": "Bjørnæs-Å"})).1, 0);
        assert_eq!(check(json!({"id": ""})).1, 1);
        assert_eq!(check(json!({"id": "x".repeat(129)})).1, 1);
        assert_eq!(check(json!({"id": "a/b"})).1, 1);
        assert_eq!(check(json!({"id": 7})).1, 1);
        assert_eq!(check(json!({})).1, 1);
        let ttl = |v: Value| {
            let mut invalid = Vec::new();
            (
                check_ttl(json!({"ttl": v}).as_object().unwrap(), &mut invalid),
                invalid.len(),
            )
        };
        assert_eq!(ttl(json!(300)), (Some(Duration::from_secs(300)), 0));
        assert_eq!(ttl(json!(10)), (None, 1));
        assert_eq!(ttl(json!(2_147_483_648_i64)), (None, 1));
        assert_eq!(ttl(Value::Null), (None, 0));
    }

    #[test]
    fn store_scopes_by_msn_and_keeps_the_token_across_updates() {
        let mut store = QrStore::default();
        let token = store
            .create(Some("123456"), "stand-1", "https://a.example/x", None)
            .unwrap()
            .token
            .clone();
        assert!(store
            .create(Some("123456"), "stand-1", "https://b.example", None)
            .is_none());
        assert!(store
            .create(None, "stand-1", "https://c.example", None)
            .is_some());
        assert_eq!(store.list(Some("123456")).len(), 1);
        let updated = store
            .update(Some("123456"), "stand-1", "https://b.example")
            .unwrap();
        assert_eq!(updated.token, token);
        assert_eq!(
            store.by_token(&token).unwrap().redirect_url,
            "https://b.example"
        );
        assert!(store.delete(Some("123456"), "stand-1"));
        assert!(store.by_token(&token).is_none());
        let again = store
            .create(Some("123456"), "stand-1", "https://a.example", None)
            .unwrap()
            .token
            .clone();
        assert_ne!(again, token, "a deleted code's print stays dead");
        assert_eq!(store.find("stand-1", None).unwrap().token, again);
        assert_eq!(
            store
                .find("stand-1", Some("123456"))
                .unwrap()
                .expires_in(Instant::now()),
            -1
        );
    }
}
