//! GetPayment and ListPaymentEvents: paygate's view, refreshed from Vipps while not final.

use super::Payments;
use crate::{
    domain::{EventSource, PaygateError, Payment, PaymentEvent, Reference},
    store::PaymentChange,
    vipps::mapping,
};

impl Payments {
    /// The events paygate recorded for one payment, in log order.
    pub async fn events(&self, reference: &Reference) -> Result<Vec<PaymentEvent>, PaygateError> {
        let events = self.store().list_events(reference.as_str()).await?;
        if events.is_empty()
            && self
                .store()
                .get_payment(reference.as_str())
                .await?
                .is_none()
        {
            return Err(not_found(reference));
        }
        Ok(events)
    }

    /// The payment; while it may still change state, refreshed from Vipps first (one GET,
    /// and the event log when the state moved).
    pub async fn get(&self, reference: &Reference) -> Result<Payment, PaygateError> {
        let payment = self
            .store()
            .get_payment(reference.as_str())
            .await?
            .ok_or_else(|| not_found(reference))?;
        if payment.state.is_final() {
            return Ok(payment);
        }
        match self.refresh(&payment).await {
            Ok(fresh) => Ok(fresh),
            Err(e) => {
                // Stale but true as far as paygate knows; the caller still gets an answer.
                tracing::warn!(reference = %reference, error = %e, "refresh from Vipps failed; answering from the store");
                Ok(payment)
            }
        }
    }

    /// Reads Vipps' view; when it moved, records the events paygate has not seen (source: poll).
    pub async fn refresh(&self, payment: &Payment) -> Result<Payment, PaygateError> {
        let reference = payment.reference.as_str();
        let remote = self
            .vipps
            .get_payment(reference)
            .await
            .map_err(|e| mapping::error(&e))?;
        let view = mapping::view_of_payment(&remote)?;
        let moved = view.state != payment.state || view.aggregate != payment.aggregate;
        let same =
            |theirs: &Option<String>, ours: &Option<String>| theirs.is_none() || theirs == ours;
        if !moved
            && same(&view.redirect_url, &payment.redirect_url)
            && same(&view.profile_sub, &payment.profile_sub)
        {
            // Nothing new: no write (the reconciler polls CREATED payments every few seconds).
            return Ok(payment.clone());
        }
        let events = if moved {
            let log = self
                .vipps
                .get_payment_events(reference)
                .await
                .map_err(|e| mapping::error(&e))?;
            log.iter()
                .map(|e| mapping::event(e, EventSource::Poll))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        let change = PaymentChange {
            reference: reference.to_owned(),
            events,
            remote: Some(view),
            confirm: true,
            ..PaymentChange::default()
        };
        Ok(self
            .log
            .commit(change)
            .await?
            .payment
            .unwrap_or_else(|| payment.clone()))
    }
}

fn not_found(reference: &Reference) -> PaygateError {
    PaygateError::NotFound(format!("no payment with reference {reference}"))
}
