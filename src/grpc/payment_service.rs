//! `paygate.v1.PaymentService`.

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{
    audit::{self, Audited},
    convert::{self, Pii},
    proto,
    status::to_status,
    validate,
};
use crate::{
    auth::{Caller, Scope},
    domain::{PaygateError, Payment},
    events::{stream, StreamItem, SubscriberSlots},
    payments::Payments,
};
use tokio_stream::StreamExt as _;

use super::proto::stream_payment_events_response::Kind;

/// How event streams behave.
#[derive(Clone)]
pub struct StreamSettings {
    /// Period of heartbeats on an idle stream.
    pub heartbeat: std::time::Duration,
    /// Fires at shutdown: streams end with UNAVAILABLE so clients reconnect with their cursor.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The cap on streams open at once; one more gets RESOURCE_EXHAUSTED.
    pub subscribers: SubscriberSlots,
}

/// The tonic service over the payment lifecycle.
#[derive(Clone)]
pub struct PaymentApi {
    payments: Payments,
    streams: StreamSettings,
}

impl PaymentApi {
    pub fn new(payments: Payments, streams: StreamSettings) -> Self {
        Self { payments, streams }
    }

    pub fn into_server(self) -> proto::payment_service_server::PaymentServiceServer<Self> {
        proto::payment_service_server::PaymentServiceServer::new(self)
    }
}

/// One span per RPC, carrying the payment reference (never personal data).
fn span(method: &'static str, reference: &str) -> tracing::Span {
    tracing::info_span!("rpc", method, reference = %reference)
}

type EventStream =
    Pin<Box<dyn Stream<Item = Result<proto::StreamPaymentEventsResponse, Status>> + Send>>;

/// What a money-moving handler needs besides its request: who calls, how to answer them.
struct Call {
    caller: Caller,
    pii: Pii,
}

impl Call {
    /// The caller, who must hold `scope`.
    fn of<T>(request: &Request<T>, scope: Scope) -> Result<Self, Status> {
        let caller = Caller::of(request);
        caller.require(scope)?;
        let pii = Pii::for_caller(&caller);
        Ok(Self { caller, pii })
    }

    /// Audits a money-moving call and shapes its answer.
    fn finish<R>(
        &self,
        audited: &Audited<'_>,
        result: Result<Payment, PaygateError>,
        answer: impl FnOnce(Option<proto::Payment>) -> R,
    ) -> Result<Response<R>, Status> {
        let result = result
            .map(|p| Response::new(answer(Some(convert::payment(&p, self.pii)))))
            .map_err(to_status);
        audit::record(&self.caller, audited, &result);
        result
    }
}

#[tonic::async_trait]
impl proto::payment_service_server::PaymentService for PaymentApi {
    async fn create_payment_request(
        &self,
        request: Request<proto::CreatePaymentRequestRequest>,
    ) -> Result<Response<proto::CreatePaymentRequestResponse>, Status> {
        let call = Call::of(&request, Scope::Payments)?;
        let req = request.into_inner();
        let span = span("CreatePaymentRequest", &req.reference);
        async move {
            let command = validate::create(&req).map_err(to_status)?;
            let result = self.payments.create(command, &call.caller.name).await;
            if let Ok(payment) = &result {
                tracing::info!(reference = %payment.reference, "payment request created");
            }
            let reference = result
                .as_ref()
                .map(|p| p.reference.to_string())
                .unwrap_or_else(|_| req.reference.clone());
            let audited = Audited {
                rpc: "CreatePaymentRequest",
                subject: &reference,
                idempotency_key: &req.idempotency_key,
            };
            call.finish(&audited, result, |payment| {
                proto::CreatePaymentRequestResponse { payment }
            })
        }
        .instrument(span)
        .await
    }

    async fn get_payment(
        &self,
        request: Request<proto::GetPaymentRequest>,
    ) -> Result<Response<proto::GetPaymentResponse>, Status> {
        let call = Call::of(&request, Scope::Payments)?;
        let req = request.into_inner();
        let span = span("GetPayment", &req.reference);
        async move {
            let reference = validate::reference(&req.reference).map_err(to_status)?;
            let payment = self.payments.get(&reference).await.map_err(to_status)?;
            Ok(Response::new(proto::GetPaymentResponse {
                payment: Some(convert::payment(&payment, call.pii)),
            }))
        }
        .instrument(span)
        .await
    }

    async fn capture_payment(
        &self,
        request: Request<proto::CapturePaymentRequest>,
    ) -> Result<Response<proto::CapturePaymentResponse>, Status> {
        let call = Call::of(&request, Scope::Payments)?;
        let req = request.into_inner();
        let span = span("CapturePayment", &req.reference);
        async move {
            let command = validate::capture_or_refund(
                &req.reference,
                req.amount.as_ref(),
                &req.idempotency_key,
            )
            .map_err(to_status)?;
            let result = self.payments.capture(command, &call.caller.name).await;
            let audited = Audited {
                rpc: "CapturePayment",
                subject: &req.reference,
                idempotency_key: &req.idempotency_key,
            };
            call.finish(&audited, result, |payment| proto::CapturePaymentResponse {
                payment,
            })
        }
        .instrument(span)
        .await
    }

    async fn cancel_payment(
        &self,
        request: Request<proto::CancelPaymentRequest>,
    ) -> Result<Response<proto::CancelPaymentResponse>, Status> {
        let call = Call::of(&request, Scope::Payments)?;
        let req = request.into_inner();
        let span = span("CancelPayment", &req.reference);
        async move {
            let command = validate::cancel(&req).map_err(to_status)?;
            let result = self.payments.cancel(command, &call.caller.name).await;
            let audited = Audited {
                rpc: "CancelPayment",
                subject: &req.reference,
                idempotency_key: &req.idempotency_key,
            };
            call.finish(&audited, result, |payment| proto::CancelPaymentResponse {
                payment,
            })
        }
        .instrument(span)
        .await
    }

    async fn refund_payment(
        &self,
        request: Request<proto::RefundPaymentRequest>,
    ) -> Result<Response<proto::RefundPaymentResponse>, Status> {
        let call = Call::of(&request, Scope::Payments)?;
        let req = request.into_inner();
        let span = span("RefundPayment", &req.reference);
        async move {
            let command = validate::capture_or_refund(
                &req.reference,
                req.amount.as_ref(),
                &req.idempotency_key,
            )
            .map_err(to_status)?;
            let result = self.payments.refund(command, &call.caller.name).await;
            let audited = Audited {
                rpc: "RefundPayment",
                subject: &req.reference,
                idempotency_key: &req.idempotency_key,
            };
            call.finish(&audited, result, |payment| proto::RefundPaymentResponse {
                payment,
            })
        }
        .instrument(span)
        .await
    }

    async fn list_payment_events(
        &self,
        request: Request<proto::ListPaymentEventsRequest>,
    ) -> Result<Response<proto::ListPaymentEventsResponse>, Status> {
        let call = Call::of(&request, Scope::Payments)?;
        let req = request.into_inner();
        let span = span("ListPaymentEvents", &req.reference);
        async move {
            let reference = validate::reference(&req.reference).map_err(to_status)?;
            let events = self.payments.events(&reference).await.map_err(to_status)?;
            Ok(Response::new(proto::ListPaymentEventsResponse {
                events: events.iter().map(|e| convert::event(e, call.pii)).collect(),
            }))
        }
        .instrument(span)
        .await
    }

    type StreamPaymentEventsStream = EventStream;

    async fn stream_payment_events(
        &self,
        request: Request<proto::StreamPaymentEventsRequest>,
    ) -> Result<Response<Self::StreamPaymentEventsStream>, Status> {
        let pii = Call::of(&request, Scope::Events)?.pii;
        let filter = validate::stream_filter(request.get_ref()).map_err(to_status)?;
        let slot = self.streams.subscribers.take().map_err(to_status)?;
        let log = self.payments.event_log();
        let items = stream::subscribe(
            log.feed().clone(),
            log.store().clone(),
            filter,
            self.streams.heartbeat,
            self.streams.shutdown.clone(),
            slot,
        );
        let out = items.map(move |item| match item {
            // Encoded once per event and audience; every subscriber sends the same bytes.
            Ok(StreamItem::Event(logged)) => Ok(proto::StreamPaymentEventsResponse::shared(
                logged.encoded(pii as usize, |event| {
                    proto::StreamPaymentEventsResponse::encode(Kind::Event(convert::event(
                        event, pii,
                    )))
                }),
            )),
            Ok(StreamItem::Heartbeat { sequence, time }) => {
                Ok(proto::StreamPaymentEventsResponse::shared(
                    proto::StreamPaymentEventsResponse::encode(Kind::Heartbeat(proto::Heartbeat {
                        sequence,
                        time: Some(convert::timestamp(time)),
                    })),
                ))
            }
            Err(e) => Err(to_status(e)),
        });
        Ok(Response::new(Box::pin(out)))
    }
}
