//! Protobuf → domain requests. This module only converts: the rules every request must meet
//! live in `domain::request`, which names each bad field.

use super::proto;
use crate::domain::{
    BottomLine, Cancel, CaptureOrRefund, CreatePayment, CreatePaymentInput, CustomerKey,
    FieldViolation, OrderLine, PaygateError, PhoneNumber, Receipt, Reference, UnitInfo, UserFlow,
};

pub fn reference(value: &str) -> Result<Reference, PaygateError> {
    crate::domain::request::required_reference(value)
}

pub fn customer_key(value: &str) -> Result<CustomerKey, PaygateError> {
    CustomerKey::parse(value).map_err(|v| PaygateError::InvalidArgument(vec![v]))
}

pub fn phone_number(value: &str) -> Result<PhoneNumber, PaygateError> {
    PhoneNumber::parse("phone_number", value).map_err(|v| PaygateError::InvalidArgument(vec![v]))
}

fn money(m: Option<&proto::Money>) -> Option<(&str, i64)> {
    m.map(|m| (m.currency.as_str(), m.value))
}

fn user_flow(value: i32) -> Option<UserFlow> {
    match proto::UserFlow::try_from(value) {
        Ok(proto::UserFlow::PushMessage) => Some(UserFlow::PushMessage),
        Ok(proto::UserFlow::WebRedirect) => Some(UserFlow::WebRedirect),
        Ok(proto::UserFlow::NativeRedirect) => Some(UserFlow::NativeRedirect),
        Ok(proto::UserFlow::Qr) => Some(UserFlow::Qr),
        _ => None,
    }
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
    let receipt = req.receipt.as_ref().map(receipt);
    CreatePayment::parse(CreatePaymentInput {
        reference: &req.reference,
        amount: money(req.amount.as_ref()),
        user_flow: user_flow(req.user_flow),
        phone_number: req
            .customer
            .as_ref()
            .map_or("", |c| c.phone_number.as_str()),
        customer_key: &req.customer_key,
        profile_scopes: &req.profile_scopes,
        return_url: &req.return_url,
        description: &req.payment_description,
        idempotency_key: &req.idempotency_key,
        metadata: &req.metadata,
        receipt: receipt.as_ref(),
    })
}

pub fn capture_or_refund(
    reference: &str,
    amount: Option<&proto::Money>,
    key: &str,
) -> Result<CaptureOrRefund, PaygateError> {
    CaptureOrRefund::parse(reference, money(amount), key)
}

pub fn cancel(req: &proto::CancelPaymentRequest) -> Result<Cancel, PaygateError> {
    Cancel::parse(&req.reference, &req.idempotency_key)
}

pub fn stream_filter(
    req: &proto::StreamPaymentEventsRequest,
) -> Result<crate::events::Filter, PaygateError> {
    let mut v = Vec::new();
    if req.references.len() > 1000 {
        v.push(FieldViolation::new(
            "references",
            "at most 1000 references per stream",
        ));
    }
    for (i, r) in req.references.iter().enumerate() {
        if r.is_empty() || r.len() > 64 {
            v.push(FieldViolation::new(
                format!("references[{i}]"),
                "must be 1 to 64 characters",
            ));
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
            None => v.push(FieldViolation::new(
                format!("names[{i}]"),
                "must be a known PAYMENT_EVENT_NAME_* value",
            )),
        }
    }
    let filter = crate::events::Filter {
        references: req.references.iter().cloned().collect(),
        names,
        after_sequence: req.after_sequence,
    };
    if v.is_empty() {
        Ok(filter)
    } else {
        Err(PaygateError::InvalidArgument(v))
    }
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
