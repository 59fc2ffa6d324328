//! ePayment v1 handlers: create, get, events, capture, refund, cancel, force-approve.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::auth::{
    idempotency_key, merchant_serial_number, require_json_content_type, require_token,
};
use super::idempotency::{self, IdempotencyKey, Lookup};
use super::model::{Amount, PaymentEvent};
use super::problem::{ApiError, Problem};
use super::state::{Operation, Payment};
use super::validate;
use super::{Emulator, World};

type ApiResult = Result<Response, ApiError>;

pub async fn create_payment(
    State(emulator): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    require_token(&emulator, &headers)?;
    let msn = merchant_serial_number(&headers)?;
    let key = idempotency_key(&headers)?;
    require_json_content_type(&headers, &body)?;
    let request = validate::json_body(&body)?;
    let new = validate::create_payment(&request)?;
    let idem = IdempotencyKey {
        msn,
        operation: Operation::Create,
        reference: new.reference.clone(),
        key,
    };

    let mut guard = emulator.world();
    let world = &mut *guard;
    if let Some(replay) = replay_or_conflict(&world.idempotency, &idem, &request)? {
        return Ok(replay);
    }
    if world.payments.get(&idem.msn, &new.reference).is_some() {
        return Err(idempotency::reference_exists(&new.reference).into());
    }
    let payment = world.payments.create(&idem.msn, new, &idem.key);
    let mut answer = json!({ "reference": payment.reference });
    if let Some(url) = &payment.redirect_url {
        answer["redirectUrl"] = json!(url);
    }
    if let Some(created) = payment.events.last() {
        emulator.publish(&payment.msn, created);
    }
    world
        .idempotency
        .remember(idem, request, StatusCode::CREATED, answer.clone());
    Ok(json_response(StatusCode::CREATED, &answer))
}

pub async fn get_payment(
    State(emulator): State<Emulator>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let msn = read_access(&emulator, &headers, &reference)?;
    let world = emulator.world();
    let payment = world
        .payments
        .get(&msn, &reference)
        .ok_or_else(|| Problem::reference_not_found(&reference))?;
    // Vipps fills profile.sub in asynchronously; the profile-lag knob mimics that.
    let hide_sub = payment.sub.is_some() && emulator.take_profile_lag();
    Ok(json_response(
        StatusCode::OK,
        &payment_body(payment, hide_sub),
    ))
}

pub async fn get_events(
    State(emulator): State<Emulator>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let msn = read_access(&emulator, &headers, &reference)?;
    let world = emulator.world();
    let payment = world
        .payments
        .get(&msn, &reference)
        .ok_or_else(|| Problem::reference_not_found(&reference))?;
    Ok(json_response(StatusCode::OK, &json!(payment.events)))
}

pub async fn capture(
    State(emulator): State<Emulator>,
    Path(reference): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    modify(&emulator, &headers, reference, &body, Kind::Capture)
}

pub async fn refund(
    State(emulator): State<Emulator>,
    Path(reference): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    modify(&emulator, &headers, reference, &body, Kind::Refund)
}

pub async fn cancel(
    State(emulator): State<Emulator>,
    Path(reference): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    modify(&emulator, &headers, reference, &body, Kind::Cancel)
}

/// `POST /epayment/v1/test/payments/{reference}/approve`: the user approves in the app.
pub async fn force_approve(
    State(emulator): State<Emulator>,
    Path(reference): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let msn = read_access(&emulator, &headers, &reference)?;
    require_json_content_type(&headers, &body)?;
    let approval = validate::approval(&validate::optional_json_body(&body)?)?;
    let mut world = emulator.world();
    approve(
        &emulator,
        &mut world,
        &msn,
        &reference,
        approval.phone_number,
        approval.token.as_deref(),
    )?;
    Ok(StatusCode::OK.into_response())
}

/// The user approves in the app; shared by force-approve, the control API and
/// `Emulator::approve_payment`. The approving phone (given, else the create
/// request's customer, else the configured default) becomes a test user of
/// the sales unit, consenting to the payment's scope for Userinfo.
pub(super) fn approve<'w>(
    emulator: &Emulator,
    world: &'w mut World,
    msn: &str,
    reference: &str,
    phone_number: Option<String>,
    token: Option<&str>,
) -> Result<&'w Payment, Problem> {
    let fallback_phone = emulator.config().default_phone_number.clone();
    let World {
        payments, users, ..
    } = world;
    let (event, payment) = payments
        .transition(msn, reference, |payment, psp| {
            payment.approve(psp, phone_number, token, &fallback_phone)
        })
        .map_err(|e| e.problem())?;
    emulator.publish(msn, &event);
    if let Some(phone) = &payment.customer_phone {
        users.record_approval(phone, msn, payment.scope.as_deref());
    }
    Ok(payment)
}

/// Which modification endpoint was called.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Capture,
    Refund,
    Cancel,
}

impl Kind {
    fn operation(self) -> Operation {
        match self {
            Self::Capture => Operation::Capture,
            Self::Refund => Operation::Refund,
            Self::Cancel => Operation::Cancel,
        }
    }
}

/// What a modification call asks for, once its body is validated.
enum Modification {
    Capture(Amount),
    Refund(Amount),
    Cancel { transaction_only: bool },
}

/// Capture, refund and cancel share one path: validate, check idempotency,
/// transition, remember the answer, all under the store lock.
fn modify(
    emulator: &Emulator,
    headers: &HeaderMap,
    reference: String,
    body: &[u8],
    kind: Kind,
) -> ApiResult {
    require_token(emulator, headers)?;
    let msn = merchant_serial_number(headers)?;
    let key = idempotency_key(headers)?;
    validate::reference(&reference)?;
    require_json_content_type(headers, body)?;
    let request = validate::optional_json_body(body)?;
    let modification = match kind {
        Kind::Capture => Modification::Capture(validate::modification_amount(&request)?),
        Kind::Refund => Modification::Refund(validate::modification_amount(&request)?),
        Kind::Cancel => Modification::Cancel {
            transaction_only: validate::cancel_transaction_only(&request)?,
        },
    };
    let idem = IdempotencyKey {
        msn,
        operation: kind.operation(),
        reference,
        key,
    };

    let mut guard = emulator.world();
    let world = &mut *guard;
    if let Some(replay) = replay_or_conflict(&world.idempotency, &idem, &request)? {
        return Ok(replay);
    }
    let key = idem.key.as_str();
    let (event, payment) = world
        .payments
        .transition(
            &idem.msn,
            &idem.reference,
            |payment, psp| match modification {
                Modification::Capture(amount) => payment.capture(psp, amount, key),
                Modification::Refund(amount) => payment.refund(psp, amount, key),
                Modification::Cancel { transaction_only } => {
                    payment.cancel(psp, key, transaction_only)
                }
            },
        )
        .map_err(|e| e.problem())?;
    let answer = modification_body(payment, &event);
    emulator.publish(&payment.msn, &event);
    world
        .idempotency
        .remember(idem, request, StatusCode::OK, answer.clone());
    Ok(json_response(StatusCode::OK, &answer))
}

/// Token, MSN and a well-formed path reference: what every payment call needs.
fn read_access(
    emulator: &Emulator,
    headers: &HeaderMap,
    reference: &str,
) -> Result<String, ApiError> {
    require_token(emulator, headers)?;
    let msn = merchant_serial_number(headers)?;
    validate::reference(reference)?;
    Ok(msn)
}

fn replay_or_conflict(
    store: &idempotency::IdempotencyStore,
    key: &IdempotencyKey,
    request: &Value,
) -> Result<Option<Response>, ApiError> {
    match store.lookup(key, request) {
        Lookup::Fresh => Ok(None),
        Lookup::Replay(answer) => Ok(Some(json_response(answer.status, &answer.body))),
        Lookup::Conflict => Err(idempotency::conflict(key).into()),
    }
}

/// GetPaymentResponse; `hide_sub` leaves out a `profile.sub` not "arrived" yet.
fn payment_body(payment: &Payment, hide_sub: bool) -> Value {
    let mut profile = json!({});
    if let Some(sub) = payment.sub.as_ref().filter(|_| !hide_sub) {
        profile["sub"] = json!(sub);
    }
    let mut body = json!({
        "aggregate": payment.aggregate,
        "amount": payment.amount,
        "state": payment.state,
        "paymentMethod": { "type": payment.payment_method },
        "profile": profile,
        "pspReference": payment.psp_reference(),
        "reference": payment.reference,
    });
    if let Some(url) = &payment.redirect_url {
        body["redirectUrl"] = json!(url);
    }
    if let Some(metadata) = &payment.metadata {
        body["metadata"] = json!(metadata);
    }
    body
}

/// ModificationResponse. Its pspReference is the one of the event this call
/// appended, so a client can match its own result with the later webhook.
fn modification_body(payment: &Payment, event: &PaymentEvent) -> Value {
    json!({
        "amount": payment.amount,
        "state": payment.state,
        "aggregate": payment.aggregate,
        "pspReference": event.psp_reference,
        "reference": payment.reference,
    })
}

/// Plain `application/json` (the spec's problem+json on 200 is a known spec bug).
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
