//! `paygate payments show REF`: the on-call answer to "what happened to this ride's payment?"
//! (GetPayment and ListPaymentEvents, human readable).

use paygate::grpc::proto::{self, payment_service_client::PaymentServiceClient};

use super::{client::Target, format};

/// Prints the payment and its events.
pub async fn show(target: &Target, reference: &str) -> anyhow::Result<()> {
    let mut client = PaymentServiceClient::new(target.connect().await?);
    let payment = client
        .get_payment(proto::GetPaymentRequest {
            reference: reference.to_owned(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", format::code(s.code()), s.message()))?
        .into_inner()
        .payment
        .ok_or_else(|| anyhow::anyhow!("paygate answered without a payment"))?;
    let events = client
        .list_payment_events(proto::ListPaymentEventsRequest {
            reference: reference.to_owned(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", format::code(s.code()), s.message()))?
        .into_inner()
        .events;
    print!("{}", format::payment_report(&payment, &events));
    Ok(())
}
