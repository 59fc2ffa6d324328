//! How the operator commands print payments and events: one line per event for people, one JSON
//! object per event for machines. Amounts in major units with two decimals (NOK 350.00); phone
//! numbers masked.

use paygate::grpc::proto::{self, PaymentEventName};
use serde_json::json;

/// `NOK 350.00` from minor units.
pub fn money(m: Option<&proto::Money>) -> String {
    match m {
        Some(m) => {
            let sign = if m.value < 0 { "-" } else { "" };
            let v = m.value.unsigned_abs();
            format!("{} {sign}{}.{:02}", m.currency, v / 100, v % 100)
        }
        None => "-".into(),
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn time(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .map_or_else(
            || "-".into(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
}

fn name(n: i32) -> &'static str {
    PaymentEventName::try_from(n)
        .map(|n| n.as_str_name().trim_start_matches("PAYMENT_EVENT_NAME_"))
        .unwrap_or("UNKNOWN")
}

fn source(s: i32) -> &'static str {
    proto::EventSource::try_from(s)
        .map(|s| s.as_str_name().trim_start_matches("EVENT_SOURCE_"))
        .unwrap_or("UNKNOWN")
        .trim_start_matches("UNSPECIFIED")
}

fn state(s: i32) -> &'static str {
    proto::PaymentState::try_from(s)
        .map(|s| s.as_str_name().trim_start_matches("PAYMENT_STATE_"))
        .unwrap_or("UNKNOWN")
}

/// Country code and the last two digits only.
fn masked(phone: &str) -> String {
    match phone.len() {
        0 => String::new(),
        n if n > 4 => format!("{}{}{}", &phone[..2], "*".repeat(n - 4), &phone[n - 2..]),
        n => "*".repeat(n),
    }
}

/// `#42 2026-11-30T12:00:00.000Z taxi-34-ride-1 CAPTURED NOK 350.00 (captured NOK 350.00 of 350.00) webhook`
pub fn event_line(e: &proto::PaymentEvent) -> String {
    let totals = e
        .payment
        .as_ref()
        .and_then(|p| p.aggregate.as_ref().map(|a| (p, a)))
        .map(|(p, a)| {
            format!(
                " (authorized {}, captured {}, refunded {}, cancelled {}; {})",
                money(a.authorized_amount.as_ref()),
                money(a.captured_amount.as_ref()),
                money(a.refunded_amount.as_ref()),
                money(a.cancelled_amount.as_ref()),
                state(p.state)
            )
        })
        .unwrap_or_default();
    let failed = if e.success { "" } else { " FAILED" };
    format!(
        "#{} {} {} {}{failed} {}{totals} {}",
        e.sequence,
        time(e.timestamp.as_ref()),
        e.reference,
        name(e.name),
        money(e.amount.as_ref()),
        source(e.source),
    )
}

/// The same facts as one JSON object (amounts in minor units, as the API gives them).
pub fn event_json(e: &proto::PaymentEvent) -> String {
    let minor =
        |m: Option<&proto::Money>| m.map(|m| json!({"currency": m.currency, "value": m.value}));
    let payment = e.payment.as_ref().map(|p| {
        let a = p.aggregate.clone().unwrap_or_default();
        json!({
            "state": state(p.state),
            "authorized": minor(a.authorized_amount.as_ref()),
            "captured": minor(a.captured_amount.as_ref()),
            "refunded": minor(a.refunded_amount.as_ref()),
            "cancelled": minor(a.cancelled_amount.as_ref()),
        })
    });
    json!({
        "sequence": e.sequence,
        "time": time(e.timestamp.as_ref()),
        "reference": e.reference,
        "name": name(e.name),
        "amount": minor(e.amount.as_ref()),
        "success": e.success,
        "source": source(e.source),
        "idempotency_key": e.idempotency_key,
        "psp_reference": e.psp_reference,
        "payment": payment,
    })
    .to_string()
}

/// GetPayment and its events, for a person.
pub fn payment_report(p: &proto::Payment, events: &[proto::PaymentEvent]) -> String {
    let a = p.aggregate.clone().unwrap_or_default();
    let mut out = format!(
        "payment {}\n  state       {}\n  amount      {}\n  authorized  {}\n  captured    {}\n  refunded    {}\n  cancelled   {}\n",
        p.reference,
        state(p.state),
        money(p.amount.as_ref()),
        money(a.authorized_amount.as_ref()),
        money(a.captured_amount.as_ref()),
        money(a.refunded_amount.as_ref()),
        money(a.cancelled_amount.as_ref()),
    );
    let flow = proto::UserFlow::try_from(p.user_flow)
        .map(|f| f.as_str_name().trim_start_matches("USER_FLOW_"))
        .unwrap_or("UNKNOWN");
    out.push_str(&format!("  user flow   {flow}\n"));
    for (label, value) in [
        ("psp ref", p.psp_reference.clone()),
        ("customer", p.customer_key.clone()),
        ("phone", masked(&p.phone_number)),
    ] {
        if !value.is_empty() {
            out.push_str(&format!("  {label:<11} {value}\n"));
        }
    }
    out.push_str(&format!(
        "  created     {}\n  updated     {}\nevents ({}):\n",
        time(p.create_time.as_ref()),
        time(p.update_time.as_ref()),
        events.len()
    ));
    for e in events {
        let key = if e.idempotency_key.is_empty() {
            String::new()
        } else {
            format!(" key={}", e.idempotency_key)
        };
        out.push_str(&format!(
            "  #{} {} {}{} {} from {}{key}\n",
            e.sequence,
            time(e.timestamp.as_ref()),
            name(e.name),
            if e.success { "" } else { " FAILED" },
            money(e.amount.as_ref()),
            source(e.source).to_ascii_lowercase(),
        ));
    }
    out
}

/// `UNAVAILABLE` and friends, as gRPC names them.
pub fn code(c: tonic::Code) -> String {
    format!("{c:?}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_like_a_receipt() {
        let e = proto::PaymentEvent {
            sequence: 42,
            reference: "taxi-34-ride-1".into(),
            name: PaymentEventName::Captured.into(),
            amount: Some(proto::Money {
                currency: "NOK".into(),
                value: 35000,
            }),
            success: true,
            source: proto::EventSource::Webhook.into(),
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_764_504_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        let line = event_line(&e);
        assert!(
            line.starts_with("#42 2025-11-30T12:00:00.000Z taxi-34-ride-1 CAPTURED NOK 350.00"),
            "{line}"
        );
        assert!(line.ends_with("WEBHOOK"), "{line}");
        let json: serde_json::Value = serde_json::from_str(&event_json(&e)).unwrap();
        assert_eq!(json["amount"]["value"], 35000);
        assert_eq!(json["source"], "WEBHOOK");
        assert_eq!(
            money(Some(&proto::Money {
                currency: "NOK".into(),
                value: 5
            })),
            "NOK 0.05"
        );
        assert_eq!(masked("4791234567"), "47******67");
    }
}
