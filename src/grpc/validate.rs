//! Protobuf → validated domain commands. Every rule is checked before any side effect, and
//! every violation names its field.

use std::collections::BTreeMap;

use super::proto;
use crate::{
    domain::{
        BottomLine, FieldViolation, IdempotencyKey, Money, OrderLine, PaygateError, PhoneNumber,
        Receipt, Reference, UnitInfo, UserFlow,
    },
    payments::{CaptureOrRefund, CreatePayment},
};

/// Profile scope words Vipps accepts (REFERENCE.md §1).
const PROFILE_SCOPES: &[&str] = &[
    "name",
    "address",
    "email",
    "phoneNumber",
    "birthDate",
    "nin",
];

/// Collects violations so the caller learns about every bad field at once.
#[derive(Default)]
struct Violations(Vec<FieldViolation>);

impl Violations {
    fn check<T>(&mut self, r: Result<T, FieldViolation>) -> Option<T> {
        r.map_err(|v| self.0.push(v)).ok()
    }

    fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, PaygateError> {
        match value {
            Some(v) if self.0.is_empty() => Ok(v),
            _ => Err(PaygateError::InvalidArgument(self.0)),
        }
    }
}

pub fn reference(value: &str) -> Result<Reference, PaygateError> {
    if value.is_empty() {
        return Err(PaygateError::invalid("reference", "is required"));
    }
    Reference::parse("reference", value).map_err(|v| PaygateError::InvalidArgument(vec![v]))
}

fn money(field: &str, m: Option<&proto::Money>) -> Result<Money, FieldViolation> {
    let m = m.ok_or_else(|| FieldViolation::new(field, "is required"))?;
    Money::parse(field, &m.currency, m.value)
}

fn user_flow(value: i32) -> Result<UserFlow, FieldViolation> {
    match proto::UserFlow::try_from(value) {
        Ok(proto::UserFlow::PushMessage) => Ok(UserFlow::PushMessage),
        Ok(proto::UserFlow::WebRedirect) => Ok(UserFlow::WebRedirect),
        Ok(proto::UserFlow::NativeRedirect) => Ok(UserFlow::NativeRedirect),
        Ok(proto::UserFlow::Qr) => Ok(UserFlow::Qr),
        _ => Err(FieldViolation::new(
            "user_flow",
            "must be USER_FLOW_PUSH_MESSAGE, USER_FLOW_WEB_REDIRECT, USER_FLOW_NATIVE_REDIRECT or USER_FLOW_QR",
        )),
    }
}

/// `https://…` or an app's custom scheme (`myapp://…`); plain http is refused by Vipps.
fn return_url(value: &str) -> Result<String, FieldViolation> {
    let bad = |why: &str| FieldViolation::new("return_url", why);
    if value.len() > 2048 {
        return Err(bad("must be at most 2048 characters"));
    }
    let url = url::Url::parse(value).map_err(|_| bad("must be an absolute URL"))?;
    if url.scheme() == "http" {
        return Err(bad(
            "must use https:// (or an app's custom scheme), not http://",
        ));
    }
    Ok(value.to_owned())
}

fn optional_key(field: &str, value: &str) -> Result<Option<IdempotencyKey>, FieldViolation> {
    if value.is_empty() {
        Ok(None)
    } else {
        IdempotencyKey::parse(field, value).map(Some)
    }
}

fn customer_key(value: &str) -> Result<Option<String>, FieldViolation> {
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > 128 || value.chars().any(char::is_control) {
        return Err(FieldViolation::new(
            "customer_key",
            "must be at most 128 characters without control characters",
        ));
    }
    Ok(Some(value.to_owned()))
}

fn metadata(
    v: &mut Violations,
    map: &std::collections::HashMap<String, String>,
) -> BTreeMap<String, String> {
    if map.len() > 5 {
        v.add(
            "metadata",
            format!("may hold at most 5 pairs, got {}", map.len()),
        );
    }
    for (key, value) in map {
        if key.is_empty() || key.chars().count() > 100 {
            v.add(
                format!("metadata[{key}]"),
                "keys must be 1 to 100 characters",
            );
        }
        if value.chars().count() > 500 {
            v.add(
                format!("metadata[{key}]"),
                "values must be at most 500 characters",
            );
        }
    }
    map.iter()
        .map(|(k, val)| (k.clone(), val.clone()))
        .collect()
}

fn receipt(r: &proto::Receipt) -> Receipt {
    let bottom = r.bottom_line.clone().unwrap_or_default();
    Receipt {
        order_lines: r
            .order_lines
            .iter()
            .map(|l| OrderLine {
                name: l.name.clone(),
                id: l.id.clone(),
                total_amount: l.total_amount,
                total_amount_excluding_tax: l.total_amount_excluding_tax,
                total_tax_amount: l.total_tax_amount,
                tax_percentage: l.tax_percentage,
                unit_info: l.unit_info.as_ref().map(|u| UnitInfo {
                    unit_price: u.unit_price,
                    quantity: u.quantity.clone(),
                    quantity_unit: u.quantity_unit.clone(),
                }),
                discount: l.discount,
                is_return: l.is_return,
                is_shipping: l.is_shipping,
            })
            .collect(),
        bottom_line: BottomLine {
            currency: bottom.currency,
            tip_amount: bottom.tip_amount,
            pos_id: bottom.pos_id,
            receipt_number: bottom.receipt_number,
        },
    }
}

pub fn create(req: &proto::CreatePaymentRequestRequest) -> Result<CreatePayment, PaygateError> {
    let mut v = Violations::default();
    let reference = if req.reference.is_empty() {
        Some(None)
    } else {
        v.check(Reference::parse("reference", &req.reference))
            .map(Some)
    };
    let amount = v.check(money("amount", req.amount.as_ref()));
    if let Some(a) = amount.filter(|a| a.value < a.currency.minimum_payment()) {
        v.add(
            "amount.value",
            format!(
                "must be at least {} for {}",
                a.currency.minimum_payment(),
                a.currency
            ),
        );
    }
    let flow = v.check(user_flow(req.user_flow));
    let phone = match req.customer.as_ref().map(|c| c.phone_number.as_str()) {
        Some(p) if !p.is_empty() => v
            .check(PhoneNumber::parse("customer.phone_number", p))
            .map(Some),
        _ => Some(None),
    };
    let customer_key = v.check(customer_key(&req.customer_key));
    if flow == Some(UserFlow::PushMessage)
        && matches!(phone, Some(None))
        && matches!(customer_key, Some(None))
    {
        v.add(
            "customer.phone_number",
            "USER_FLOW_PUSH_MESSAGE needs the customer's phone number: set customer.phone_number, \
             or customer_key of a customer whose phone number paygate has stored",
        );
    }
    for (i, scope) in req.profile_scopes.iter().enumerate() {
        if !PROFILE_SCOPES.contains(&scope.as_str()) {
            v.add(
                format!("profile_scopes[{i}]"),
                format!(
                    "must be one of {}, got {scope:?}",
                    PROFILE_SCOPES.join(", ")
                ),
            );
        }
    }
    let mut scopes = req.profile_scopes.clone();
    scopes.dedup();
    let return_url = match (req.return_url.is_empty(), flow) {
        (true, Some(f)) if f.needs_return_url() => {
            v.add(
                "return_url",
                "is required for WEB_REDIRECT and NATIVE_REDIRECT",
            );
            None
        }
        (true, _) => Some(None),
        (false, _) => v.check(return_url(&req.return_url)).map(Some),
    };
    let description = match req.payment_description.chars().count() {
        0 => Some(None),
        3..=100 => Some(Some(req.payment_description.clone())),
        _ => {
            v.add("payment_description", "must be 3 to 100 characters");
            None
        }
    };
    let key = v.check(optional_key("idempotency_key", &req.idempotency_key));
    let metadata = metadata(&mut v, &req.metadata);
    let receipt = req.receipt.as_ref().map(receipt);
    if let (Some(r), Some(a)) = (&receipt, &amount) {
        v.0.extend(r.violations(a));
    }
    let command = (|| {
        Some(CreatePayment {
            reference: reference?,
            amount: amount?,
            user_flow: flow?,
            phone_number: phone?,
            profile_scopes: scopes,
            receipt,
            return_url: return_url?,
            description: description?,
            idempotency_key: key?,
            customer_key: customer_key?,
            metadata,
        })
    })();
    v.finish(command)
}

pub fn capture_or_refund(
    reference_value: &str,
    amount: Option<&proto::Money>,
    key: &str,
) -> Result<CaptureOrRefund, PaygateError> {
    let mut v = Violations::default();
    let reference = if reference_value.is_empty() {
        v.add("reference", "is required");
        None
    } else {
        v.check(Reference::parse("reference", reference_value))
    };
    let amount = match amount {
        Some(a) => v.check(money("amount", Some(a))).map(Some),
        None => Some(None),
    };
    let key = if key.is_empty() {
        v.add(
            "idempotency_key",
            "is required: partial captures and refunds are legitimate, so paygate cannot tell a retry from a new request without it",
        );
        None
    } else {
        v.check(IdempotencyKey::parse("idempotency_key", key))
    };
    let command = (|| {
        Some(CaptureOrRefund {
            reference: reference?,
            amount: amount?,
            idempotency_key: key?,
        })
    })();
    v.finish(command)
}

pub fn cancel(
    req: &proto::CancelPaymentRequest,
) -> Result<(Reference, Option<IdempotencyKey>), PaygateError> {
    let mut v = Violations::default();
    let reference = if req.reference.is_empty() {
        v.add("reference", "is required");
        None
    } else {
        v.check(Reference::parse("reference", &req.reference))
    };
    let key = v.check(optional_key("idempotency_key", &req.idempotency_key));
    let command = (|| Some((reference?, key?)))();
    v.finish(command)
}

pub fn stream_filter(
    req: &proto::StreamPaymentEventsRequest,
) -> Result<crate::events::Filter, PaygateError> {
    let mut v = Violations::default();
    if req.references.len() > 1000 {
        v.add("references", "at most 1000 references per stream");
    }
    for (i, r) in req.references.iter().enumerate() {
        if r.is_empty() || r.len() > 64 {
            v.add(format!("references[{i}]"), "must be 1 to 64 characters");
        }
    }
    let mut names = std::collections::HashSet::new();
    for (i, n) in req.names.iter().enumerate() {
        match proto::PaymentEventName::try_from(*n)
            .ok()
            .and_then(event_name)
        {
            Some(name) => {
                names.insert(name);
            }
            None => v.add(
                format!("names[{i}]"),
                "must be a known PAYMENT_EVENT_NAME_* value",
            ),
        }
    }
    let filter = crate::events::Filter {
        references: req.references.iter().cloned().collect(),
        names,
        after_sequence: req.after_sequence,
    };
    v.finish(Some(filter))
}

fn event_name(n: proto::PaymentEventName) -> Option<crate::domain::EventName> {
    use crate::domain::EventName;
    Some(match n {
        proto::PaymentEventName::Unspecified => return None,
        proto::PaymentEventName::Created => EventName::Created,
        proto::PaymentEventName::Authorized => EventName::Authorized,
        proto::PaymentEventName::Aborted => EventName::Aborted,
        proto::PaymentEventName::Expired => EventName::Expired,
        proto::PaymentEventName::Cancelled => EventName::Cancelled,
        proto::PaymentEventName::Captured => EventName::Captured,
        proto::PaymentEventName::Refunded => EventName::Refunded,
        proto::PaymentEventName::Terminated => EventName::Terminated,
        proto::PaymentEventName::ProfileShared => EventName::ProfileShared,
    })
}
