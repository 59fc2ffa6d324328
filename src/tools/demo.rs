//! `paygate demo`: plays the whole taxi flow against a running paygate and its emulator, and
//! prints each step as a reader would want it.

use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio_stream::StreamExt as _;

use paygate::grpc::proto::{
    self, customer_service_client::CustomerServiceClient,
    payment_service_client::PaymentServiceClient, stream_payment_events_response::Kind,
    PaymentEventName,
};

const PHONE: &str = "4791234567";
const RIDER: &str = "rider-demo";

fn step(n: u32, text: &str) {
    println!("\n\u{2500}\u{2500} {n}. {text}");
}

fn masked(phone: &str) -> String {
    // As paygate's own logs print numbers: country code and the last two digits only.
    match phone.len() {
        0 => "(none)".into(),
        n if n > 4 => format!("{}{}{}", &phone[..2], "*".repeat(n - 4), &phone[n - 2..]),
        _ => "*".repeat(phone.len()),
    }
}

fn nok(minor: i64) -> String {
    format!("NOK {}.{:02}", minor / 100, minor % 100)
}

/// Runs the demo. `grpc`: paygate's gRPC URL; `emulator`: the emulator's base URL.
pub async fn run(grpc: &str, emulator: &str) -> anyhow::Result<()> {
    let mut payments = PaymentServiceClient::connect(grpc.to_owned())
        .await
        .with_context(|| {
            format!("connecting to paygate at {grpc} (is `cargo run --release` running?)")
        })?;
    let mut customers = CustomerServiceClient::connect(grpc.to_owned()).await?;
    let http = reqwest::Client::new();

    step(
        1,
        "The sticker in taxi 34: a merchant-redirect QR code leading to the fare page",
    );
    super::qr::create(
        grpc,
        "taxi-34",
        "https://fare.example.com/taxi/34",
        "taxi-34.svg",
    )
    .await?;

    step(2, "Subscribing to StreamPaymentEvents (live)");
    let mut events = payments
        .stream_payment_events(proto::StreamPaymentEventsRequest::default())
        .await?
        .into_inner();
    println!("   subscribed");

    step(3, "The rider chose Vipps MobilePay: a push payment request with phone-number consent and a receipt");
    let fare = 33_600;
    let tip = 2_000;
    let tax = fare * 12 / 112;
    let created = payments
        .create_payment_request(proto::CreatePaymentRequestRequest {
            amount: Some(proto::Money {
                currency: "NOK".into(),
                value: fare + tip,
            }),
            user_flow: proto::UserFlow::PushMessage.into(),
            customer: Some(proto::Customer {
                phone_number: PHONE.into(),
            }),
            profile_scopes: vec!["phoneNumber".into()],
            payment_description: "Taxi 34: Oslo S - Majorstuen".into(),
            // The fare system's own ride id: a retry of this call finds the same payment.
            reference: ride_reference(1),
            customer_key: RIDER.into(),
            receipt: Some(proto::Receipt {
                order_lines: vec![proto::OrderLine {
                    name: "Taxi fare, 7.4 km".into(),
                    id: "fare".into(),
                    total_amount: fare,
                    total_amount_excluding_tax: fare - tax,
                    total_tax_amount: tax,
                    tax_percentage: 12,
                    ..Default::default()
                }],
                bottom_line: Some(proto::BottomLine {
                    currency: "NOK".into(),
                    tip_amount: tip,
                    pos_id: "taxi-34".into(),
                    receipt_number: format!("T34-{}", chrono::Utc::now().timestamp()),
                }),
            }),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .payment
        .context("no payment in the answer")?;
    let reference = created.reference.clone();
    println!(
        "   payment {reference}: {} pushed to {}",
        nok(fare + tip),
        masked(PHONE)
    );

    step(
        4,
        "The rider approves in the app (emulator) and agrees to share their phone number",
    );
    approve(&http, emulator, &reference).await?;
    wait_for(
        &mut events,
        &reference,
        &[
            PaymentEventName::Authorized,
            PaymentEventName::ProfileShared,
        ],
    )
    .await?;

    step(5, "paygate kept the shared phone number for the rider");
    let customer = customers
        .get_customer(proto::GetCustomerRequest {
            customer_key: RIDER.into(),
        })
        .await?
        .into_inner()
        .customer
        .context("no customer")?;
    println!(
        "   customer {RIDER}: phone {}, sub {}",
        masked(&customer.phone_number),
        customer.profile_sub
    );

    step(6, "The ride is charged: capture");
    let captured = payments
        .capture_payment(proto::CapturePaymentRequest {
            reference: reference.clone(),
            amount: None,
            idempotency_key: format!("{reference}-capture"),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .payment
        .context("no payment")?;
    let captured_value = captured
        .aggregate
        .and_then(|a| a.captured_amount)
        .map_or(0, |m| m.value);
    println!("   captured {}", nok(captured_value));
    wait_for(&mut events, &reference, &[PaymentEventName::Captured]).await?;

    step(
        7,
        "Next ride: pushed straight to the known rider, no phone number needed",
    );
    let second = payments
        .create_payment_request(proto::CreatePaymentRequestRequest {
            amount: Some(proto::Money {
                currency: "NOK".into(),
                value: 18_900,
            }),
            user_flow: proto::UserFlow::PushMessage.into(),
            customer_key: RIDER.into(),
            payment_description: "Taxi 34: Majorstuen - Oslo S".into(),
            reference: ride_reference(2),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .payment
        .context("no payment")?;
    println!(
        "   payment {}: {} pushed to {}",
        second.reference,
        nok(18_900),
        masked(&second.phone_number)
    );
    approve(&http, emulator, &second.reference).await?;
    wait_for(
        &mut events,
        &second.reference,
        &[PaymentEventName::Authorized],
    )
    .await?;
    println!("\nDone. The QR sticker is in taxi-34.svg.");
    Ok(())
}

async fn approve(http: &reqwest::Client, emulator: &str, reference: &str) -> anyhow::Result<()> {
    let status = http
        .post(format!("{emulator}/emulator/payments/{reference}/approve"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .with_context(|| format!("reaching the emulator at {emulator}"))?
        .status();
    if !status.is_success() {
        bail!("the emulator answered {status} to approve");
    }
    println!("   approved in the app");
    Ok(())
}

/// Prints stream events for `reference` until every name in `want` has arrived.
async fn wait_for(
    events: &mut tonic::Streaming<proto::StreamPaymentEventsResponse>,
    reference: &str,
    want: &[PaymentEventName],
) -> anyhow::Result<()> {
    let mut missing: Vec<_> = want.to_vec();
    while !missing.is_empty() {
        let item = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .context("no event within 30 s")?
            .context("the stream ended")??;
        let Some(Kind::Event(e)) = item.kind else {
            continue;
        };
        if e.reference != reference {
            continue;
        }
        let extra = match e.name() {
            PaymentEventName::ProfileShared => {
                format!(
                    " (phone {})",
                    masked(
                        &e.payment
                            .as_ref()
                            .map(|p| p.phone_number.clone())
                            .unwrap_or_default()
                    )
                )
            }
            _ => e
                .amount
                .as_ref()
                .map(|m| format!(" {}", nok(m.value)))
                .unwrap_or_default(),
        };
        println!(
            "   event #{} {}{extra}",
            e.sequence,
            e.name()
                .as_str_name()
                .trim_start_matches("PAYMENT_EVENT_NAME_")
        );
        missing.retain(|n| *n != e.name());
    }
    Ok(())
}

/// A ride id unique per demo run, e.g. `taxi-34-1764512345-1`.
fn ride_reference(ride: u32) -> String {
    format!("taxi-34-{}-{ride}", chrono::Utc::now().timestamp())
}
