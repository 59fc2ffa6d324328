//! Userinfo API (`GET /vipps-userinfo-api/userinfo/{sub}`, REFERENCE.md §5) and
//! the test users behind it.
//!
//! Every phone number that approves a payment is a test user of that sales
//! unit. When the payment asked for a `profile.scope`, the user consents to
//! those scopes, the payment gets `profile.sub`, and Userinfo answers for that
//! `sub` with the consented fields only. Profiles are made up, but stable per
//! phone number, so tests can predict them.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::auth::{optional_merchant_serial_number, require_token};
use super::problem::{ApiError, Problem};
use super::state::derive_sub;
use super::Emulator;

/// How long after consent a merchant may fetch the user's data (docs: 168 hours).
pub const CONSENT_VALIDITY: chrono::Duration = chrono::Duration::hours(168);

const CONTENT_TYPE: &str = "application/json;charset=UTF-8";
const ERROR_TYPE_BASE: &str = "https://developer.vippsmobilepay.com/docs/APIs/userinfo-api/#";

/// A user of one sales unit, known from an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestUser {
    pub sub: String,
    pub msn: String,
    pub phone: String,
    /// Every scope the user ever consented to for this sales unit.
    pub scopes: BTreeSet<String>,
    /// Latest consent; `None` when the user only approved payments without a scope.
    pub consented_at: Option<DateTime<Utc>>,
}

impl TestUser {
    /// The Userinfo answer: `sub` plus what the consented scopes allow.
    pub fn userinfo(&self) -> Value {
        let profile = Profile::of(&self.phone);
        let mut body = json!({ "sub": self.sub });
        for scope in &self.scopes {
            match scope.as_str() {
                "phoneNumber" => body["phone_number"] = json!(self.phone),
                "name" => {
                    body["name"] = json!(format!("{} {}", profile.given_name, profile.family_name));
                    body["given_name"] = json!(profile.given_name);
                    body["family_name"] = json!(profile.family_name);
                }
                "email" => {
                    body["email"] = json!(profile.email);
                    body["email_verified"] = json!(true);
                }
                "address" => {
                    body["address"] = profile.home_address();
                    body["other_addresses"] = json!([profile.work_address()]);
                }
                "birthDate" => body["birthdate"] = json!(profile.birthdate),
                "nin" => body["nin"] = json!(profile.nin),
                _ => {}
            }
        }
        body
    }

    fn consent_expired(&self, now: DateTime<Utc>) -> bool {
        self.consented_at
            .is_some_and(|at| now - at > CONSENT_VALIDITY)
    }
}

/// Test users by `sub` (which already encodes phone and MSN).
#[derive(Debug, Default)]
pub struct UserStore {
    users: HashMap<String, TestUser>,
}

impl UserStore {
    /// A payment was approved by `phone` for `msn`; a scope means fresh consent.
    pub fn record_approval(&mut self, phone: &str, msn: &str, scope: Option<&str>) {
        let sub = derive_sub(phone, msn);
        let user = self.users.entry(sub.clone()).or_insert_with(|| TestUser {
            sub,
            msn: msn.to_string(),
            phone: phone.to_string(),
            scopes: BTreeSet::new(),
            consented_at: None,
        });
        if let Some(scope) = scope {
            user.scopes
                .extend(scope.split_whitespace().map(str::to_string));
            user.consented_at = Some(Utc::now());
        }
    }

    pub fn get(&self, sub: &str) -> Option<&TestUser> {
        self.users.get(sub)
    }

    /// Pretends the latest consent was given `age` ago; false for an unknown or
    /// never-consenting user.
    pub fn backdate_consent(&mut self, sub: &str, age: chrono::Duration) -> bool {
        match self.users.get_mut(sub) {
            Some(user) if user.consented_at.is_some() => {
                user.consented_at = Some(Utc::now() - age);
                true
            }
            _ => false,
        }
    }
}

/// The internal view (`GET /emulator/users/{sub}`): who, what was consented, and the full profile.
pub fn view(user: &TestUser) -> Value {
    let full = TestUser {
        scopes: [
            "address",
            "birthDate",
            "email",
            "name",
            "nin",
            "phoneNumber",
        ]
        .into_iter()
        .map(str::to_string)
        .collect(),
        ..user.clone()
    };
    json!({
        "sub": user.sub,
        "msn": user.msn,
        "phoneNumber": user.phone,
        "scopes": user.scopes,
        "consentedAt": user.consented_at.map(|at| at.to_rfc3339()),
        "profile": full.userinfo(),
    })
}

/// `GET /vipps-userinfo-api/userinfo/{sub}`.
pub async fn get_userinfo(
    State(emulator): State<Emulator>,
    Path(sub): Path<String>,
    headers: HeaderMap,
) -> Result<Response, UserinfoError> {
    require_token(&emulator, &headers)?;
    let msn = optional_merchant_serial_number(&headers)?;
    let world = emulator.world();
    // A user who never consented has no sub the merchant could know.
    let user = world
        .users
        .get(&sub)
        .filter(|u| u.consented_at.is_some())
        .ok_or_else(|| {
            UserinfoError::new(
                StatusCode::NOT_FOUND,
                "Not Found",
                format!("No user with sub '{sub}'"),
            )
        })?;
    if msn.as_deref().is_some_and(|m| m != user.msn) {
        return Err(UserinfoError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "This sub belongs to another sales unit".to_string(),
        ));
    }
    // The real API refuses subs whose consent is older than 168 hours; tests
    // reach that through `POST /emulator/users/{sub}/backdate-consent`.
    if user.consent_expired(Utc::now()) {
        return Err(UserinfoError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The consent is older than 168 hours; userinfo can no longer be fetched for this sub"
                .to_string(),
        ));
    }
    let mut response = (StatusCode::OK, user.userinfo().to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}

/// Userinfo failures: 401 in the gateway's format, otherwise `UserinfoError`
/// `{type, title, status, detail, instance}`, whose `status` is a string.
#[derive(Debug)]
pub enum UserinfoError {
    Api(ApiError),
    Document {
        status: StatusCode,
        title: &'static str,
        detail: String,
    },
}

impl UserinfoError {
    fn new(status: StatusCode, title: &'static str, detail: String) -> Self {
        Self::Document {
            status,
            title,
            detail,
        }
    }
}

impl From<ApiError> for UserinfoError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl From<Problem> for UserinfoError {
    fn from(problem: Problem) -> Self {
        Self::Document {
            status: problem.status,
            title: "Bad Request",
            detail: problem.detail,
        }
    }
}

impl IntoResponse for UserinfoError {
    fn into_response(self) -> Response {
        let (status, title, detail) = match self {
            Self::Api(error) => return error.into_response(),
            Self::Document {
                status,
                title,
                detail,
            } => (status, title, detail),
        };
        let body = json!({
            "type": format!("{ERROR_TYPE_BASE}{}", status.as_u16()),
            "title": title,
            "status": status.as_u16().to_string(),
            "detail": detail,
            "instance": uuid::Uuid::new_v4().to_string(),
        });
        let mut response = (status, body.to_string()).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        response
    }
}

const GIVEN_NAMES: [&str; 12] = [
    "Ada", "Ola", "Kari", "Per", "Ingrid", "Lars", "Sigrid", "Magnus", "Nora", "Henrik", "Åse",
    "Bjørn",
];
const FAMILY_NAMES: [&str; 12] = [
    "Nordmann",
    "Hansen",
    "Johansen",
    "Olsen",
    "Larsen",
    "Andersen",
    "Pedersen",
    "Nilsen",
    "Kristiansen",
    "Jensen",
    "Lovelace",
    "Bakke",
];

/// Made-up personal data, derived from the phone number alone.
struct Profile {
    given_name: &'static str,
    family_name: &'static str,
    email: String,
    birthdate: String,
    nin: String,
    country: &'static str,
    street_number: u8,
}

impl Profile {
    fn of(phone: &str) -> Self {
        let seed = Sha256::digest(format!("paygate-emulator-user\n{phone}").as_bytes());
        let byte = |i: usize| seed.get(i).copied().unwrap_or(0);
        let given_name = GIVEN_NAMES[usize::from(byte(0)) % GIVEN_NAMES.len()];
        let family_name = FAMILY_NAMES[usize::from(byte(1)) % FAMILY_NAMES.len()];
        let year = 1950 + u32::from(byte(2)) % 55;
        let month = 1 + u32::from(byte(3)) % 12;
        let day = 1 + u32::from(byte(4)) % 28;
        let serial: u32 = (5..8).fold(0, |acc, i| acc * 256 + u32::from(byte(i))) % 100_000;
        let last_digits = &phone[phone.len().saturating_sub(4)..];
        let country = if phone.starts_with("45") {
            "DK"
        } else if phone.starts_with("358") {
            "FI"
        } else {
            "NO"
        };
        Self {
            given_name,
            family_name,
            email: format!(
                "{}.{}.{last_digits}@example.com",
                ascii_lower(given_name),
                ascii_lower(family_name)
            ),
            birthdate: format!("{year:04}-{month:02}-{day:02}"),
            nin: format!("{day:02}{month:02}{:02}{serial:05}", year % 100),
            country,
            street_number: 1 + byte(8) % 120,
        }
    }

    fn home_address(&self) -> Value {
        let (street, postal_code, region) = match self.country {
            "DK" => ("Vestergade", "1456", "København"),
            "FI" => ("Mannerheimintie", "00100", "Helsinki"),
            _ => ("Robert Levins gate", "0154", "Oslo"),
        };
        address(
            &format!("{street} {}", self.street_number),
            postal_code,
            region,
            self.country,
            "home",
            true,
        )
    }

    fn work_address(&self) -> Value {
        address(
            "Dronning Eufemias gate 42",
            "0191",
            "Oslo",
            "NO",
            "work",
            false,
        )
    }
}

fn address(
    street: &str,
    postal_code: &str,
    region: &str,
    country: &str,
    address_type: &str,
    default: bool,
) -> Value {
    json!({
        "street_address": street,
        "postal_code": postal_code,
        "region": region,
        "country": country,
        "formatted": format!("{street}\n{postal_code} {region}"),
        "address_type": address_type,
        "default": default,
    })
}

/// "Bjørn" -> "bjorn": e-mail local parts stay ASCII.
fn ascii_lower(name: &str) -> String {
    name.chars()
        .flat_map(|c| match c {
            'æ' | 'Æ' => "ae".chars().collect::<Vec<_>>(),
            'ø' | 'Ø' => vec!['o'],
            'å' | 'Å' => vec!['a'],
            c => c.to_lowercase().collect(),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_consented_scopes() {
        let mut store = UserStore::default();
        store.record_approval("4791234567", "123456", None);
        let sub = derive_sub("4791234567", "123456");
        assert_eq!(store.get(&sub).unwrap().consented_at, None);
        store.record_approval("4791234567", "123456", Some("phoneNumber"));
        let info = store.get(&sub).unwrap().userinfo();
        assert_eq!(info, json!({"sub": sub, "phone_number": "4791234567"}));
        store.record_approval("4791234567", "123456", Some("name email address birthDate"));
        let info = store.get(&sub).unwrap().userinfo();
        for key in [
            "phone_number",
            "name",
            "given_name",
            "family_name",
            "email",
            "email_verified",
            "address",
            "other_addresses",
            "birthdate",
        ] {
            assert!(info.get(key).is_some(), "{key} in {info}");
        }
        assert!(info.get("nin").is_none());
        assert!(info["email"].as_str().unwrap().is_ascii());
        assert_eq!(info["address"]["country"], "NO");
        assert_eq!(
            info["name"],
            format!(
                "{} {}",
                info["given_name"].as_str().unwrap(),
                info["family_name"].as_str().unwrap()
            )
        );
        // Stable per phone number.
        assert_eq!(
            Profile::of("4791234567").email,
            Profile::of("4791234567").email
        );
        assert_eq!(Profile::of("4512345678").country, "DK");
        assert_eq!(Profile::of("4791234567").nin.len(), 11);
    }

    #[test]
    fn consent_expires_after_168_hours() {
        let mut store = UserStore::default();
        store.record_approval("4791234567", "123456", Some("name"));
        let sub = derive_sub("4791234567", "123456");
        let now = Utc::now();
        assert!(!store.get(&sub).unwrap().consent_expired(now));
        assert!(store.backdate_consent(&sub, chrono::Duration::hours(167)));
        assert!(!store.get(&sub).unwrap().consent_expired(now));
        assert!(store.backdate_consent(&sub, chrono::Duration::hours(169)));
        assert!(store.get(&sub).unwrap().consent_expired(now));
        assert!(!store.backdate_consent("unknown", chrono::Duration::hours(1)));
        assert_eq!(ascii_lower("Bjørn"), "bjorn");
        assert_eq!(ascii_lower("Æsa"), "aesa");
    }
}
