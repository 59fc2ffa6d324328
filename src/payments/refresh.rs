//! GetPayment and ListPaymentEvents: paygate's view, refreshed from Vipps while not final.

use super::{upstream, Payments};
use crate::{
    domain::{EventSource, PaygateError, Payment, PaymentEvent, Reference},
    store::Change,
};

impl Payments {
    /// The payment, refreshed from Vipps when its state is not final.
    pub async fn get(&self, reference: &Reference) -> Result<Payment, PaygateError> {
        self.current(reference).await
    }

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

    /// The stored payment, refreshed first if it may still change state.
    pub(super) async fn current(&self, reference: &Reference) -> Result<Payment, PaygateError> {
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
            .map_err(|e| super::errors::from_vipps(&e))?;
        let view = upstream::view_of_payment(&remote)?;
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
                .map_err(|e| super::errors::from_vipps(&e))?;
            log.iter()
                .map(|e| upstream::event(e, EventSource::Poll))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        let change = Change {
            reference: reference.to_owned(),
            events,
            remote: Some(view),
            confirm: true,
            ..Change::default()
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
