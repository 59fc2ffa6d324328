//! The emulator-only control API under `/emulator` (no authentication): drive
//! user actions, inspect payments, users and counters, inject faults, and play
//! the phone that scans a merchant redirect QR.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::delivery::WebhookFaults;
use super::faults::Fault;
use super::model::EventName;
use super::problem::Problem;
use super::state::Payment;
use super::{epayment, qr, userinfo, validate, Emulator};

pub fn routes() -> Router<Emulator> {
    Router::new()
        .route("/emulator/payments/{reference}", get(payment))
        .route("/emulator/payments/{reference}/approve", post(approve))
        .route("/emulator/payments/{reference}/reject", post(reject))
        .route("/emulator/payments/{reference}/expire", post(expire))
        .route("/emulator/stats", get(stats))
        .route("/emulator/tokens/revoke", post(revoke_tokens))
        .route(
            "/emulator/faults",
            post(add_fault).get(list_faults).delete(clear_faults),
        )
        .route(
            "/emulator/webhook-faults",
            post(set_webhook_faults).delete(clear_webhook_faults),
        )
        .route("/emulator/profile-lag", post(set_profile_lag))
        .route("/emulator/users/{sub}", get(user))
        .route(
            "/emulator/users/{sub}/backdate-consent",
            post(backdate_consent),
        )
        .route("/emulator/qr/{id}/resolve", get(qr::resolve))
        .route("/emulator/qr-scan/{token}", get(qr::scan))
        .route("/emulator/qr-images/{file}", get(qr::image))
}

/// References are unique per MSN only; `?msn=` picks one when several merchants share one.
#[derive(Debug, Deserialize)]
struct Scope {
    msn: Option<String>,
}

/// The internal view: state plus the applied effects that tests count.
pub fn view(payment: &Payment) -> Value {
    let mut view = json!({
        "reference": payment.reference,
        "msn": payment.msn,
        "state": payment.state,
        "amount": payment.amount,
        "aggregate": payment.aggregate,
        "events": payment.events,
        "effects": payment.effects,
    });
    if let Some(phone) = &payment.customer_phone {
        view["customerPhoneNumber"] = json!(phone);
    }
    if let Some(sub) = &payment.sub {
        view["sub"] = json!(sub);
    }
    if let Some(url) = &payment.redirect_url {
        view["redirectUrl"] = json!(url);
    }
    if let Some(scope) = &payment.scope {
        view["scope"] = json!(scope);
    }
    if let Some(receipt) = &payment.receipt {
        view["receipt"] = receipt.clone();
    }
    view
}

async fn payment(
    State(emulator): State<Emulator>,
    Path(reference): Path<String>,
    Query(scope): Query<Scope>,
) -> Response {
    let world = emulator.world();
    match world.payments.find(&reference, scope.msn.as_deref()) {
        Some(payment) => Json(view(payment)).into_response(),
        None => Problem::reference_not_found(&reference).into_response(),
    }
}

/// The user approves, like the authenticated test force-approve, for humans
/// with curl: optional body `{phoneNumber}` (any Content-Type).
async fn approve(
    State(emulator): State<Emulator>,
    Path(reference): Path<String>,
    Query(scope): Query<Scope>,
    body: Bytes,
) -> Response {
    let phone_number = match approver_phone(&body) {
        Ok(phone) => phone,
        Err(problem) => return problem.into_response(),
    };
    let mut world = emulator.world();
    let Some(msn) = world
        .payments
        .find(&reference, scope.msn.as_deref())
        .map(|p| p.msn.clone())
    else {
        return Problem::reference_not_found(&reference).into_response();
    };
    match epayment::approve(&emulator, &mut world, &msn, &reference, phone_number, None) {
        Ok(payment) => Json(view(payment)).into_response(),
        Err(problem) => problem.into_response(),
    }
}

fn approver_phone(body: &[u8]) -> Result<Option<String>, Problem> {
    let body = validate::optional_json_body(body)?;
    match body.get("phoneNumber").filter(|v| !v.is_null()) {
        Some(phone) => validate::phone_number(phone).map(Some),
        None if body.is_null() || body.is_object() => Ok(None),
        None => Err(Problem::bad_request(
            "Invalid request body",
            "The body is optional; when sent it is {\"phoneNumber\": \"4791234567\"}",
        )),
    }
}

async fn reject(
    emulator: State<Emulator>,
    reference: Path<String>,
    scope: Query<Scope>,
) -> Response {
    abandon(emulator, reference, scope, EventName::Aborted)
}

async fn expire(
    emulator: State<Emulator>,
    reference: Path<String>,
    scope: Query<Scope>,
) -> Response {
    abandon(emulator, reference, scope, EventName::Expired)
}

/// The user rejects, or the payment times out: CREATED -> ABORTED / EXPIRED (409 otherwise).
fn abandon(
    State(emulator): State<Emulator>,
    Path(reference): Path<String>,
    Query(scope): Query<Scope>,
    outcome: EventName,
) -> Response {
    let mut world = emulator.world();
    let Some(msn) = world
        .payments
        .find(&reference, scope.msn.as_deref())
        .map(|p| p.msn.clone())
    else {
        return Problem::reference_not_found(&reference).into_response();
    };
    match world.payments.transition(&msn, &reference, |payment, psp| {
        payment.abandon(psp, outcome)
    }) {
        Ok((event, payment)) => {
            emulator.publish(&msn, &event);
            Json(view(payment)).into_response()
        }
        Err(e) => e.problem().into_response(),
    }
}

async fn stats(State(emulator): State<Emulator>) -> Json<Value> {
    Json(emulator.stats())
}

async fn revoke_tokens(State(emulator): State<Emulator>) -> StatusCode {
    emulator.revoke_tokens();
    StatusCode::NO_CONTENT
}

async fn add_fault(State(emulator): State<Emulator>, body: Bytes) -> Response {
    let fault = match serde_json::from_slice::<Fault>(&body) {
        Ok(fault) => fault,
        Err(e) => return Problem::bad_request("Invalid fault", e.to_string()).into_response(),
    };
    if let Err(problem) = fault.validate() {
        return problem.into_response();
    }
    emulator.inject_fault(fault);
    StatusCode::NO_CONTENT.into_response()
}

async fn list_faults(State(emulator): State<Emulator>) -> Json<Value> {
    Json(json!({ "faults": emulator.pending_faults() }))
}

async fn clear_faults(State(emulator): State<Emulator>) -> StatusCode {
    emulator.clear_faults();
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProfileLag {
    gets_without_sub: u32,
}

/// `{"getsWithoutSub": n}`: the next n GET payment answers omit `profile.sub`.
async fn set_profile_lag(State(emulator): State<Emulator>, body: Bytes) -> Response {
    match serde_json::from_slice::<ProfileLag>(&body) {
        Ok(lag) => {
            emulator.set_profile_lag(lag.gets_without_sub);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => Problem::bad_request("Invalid profile lag", e.to_string()).into_response(),
    }
}

async fn user(State(emulator): State<Emulator>, Path(sub): Path<String>) -> Response {
    match emulator.world().users.get(&sub) {
        Some(user) => Json(userinfo::view(user)).into_response(),
        None => unknown_user(&sub),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentAge {
    hours: u32,
}

/// `{"hours": n}`: the user's latest consent was given n hours ago.
async fn backdate_consent(
    State(emulator): State<Emulator>,
    Path(sub): Path<String>,
    body: Bytes,
) -> Response {
    let age = match serde_json::from_slice::<ConsentAge>(&body) {
        Ok(age) => age,
        Err(e) => {
            return Problem::bad_request("Invalid consent age", e.to_string()).into_response()
        }
    };
    if emulator.backdate_consent(&sub, Duration::from_secs(u64::from(age.hours) * 3600)) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        unknown_user(&sub)
    }
}

fn unknown_user(sub: &str) -> Response {
    Problem::new(
        StatusCode::NOT_FOUND,
        "User not found",
        format!("No consenting user with sub '{sub}'"),
    )
    .into_response()
}

async fn set_webhook_faults(State(emulator): State<Emulator>, body: Bytes) -> Response {
    match serde_json::from_slice::<WebhookFaults>(&body) {
        Ok(faults) => {
            emulator.set_webhook_faults(faults);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => Problem::bad_request("Invalid webhook faults", e.to_string()).into_response(),
    }
}

async fn clear_webhook_faults(State(emulator): State<Emulator>) -> StatusCode {
    emulator.clear_webhook_faults();
    StatusCode::NO_CONTENT
}
