//! The bare stream baseline: a tonic server of the same `PaymentService` whose
//! `StreamPaymentEvents` only holds the stream open (a stream that never yields), so its memory
//! per stream is what tonic, hyper and h2 cost and nothing else.

use std::{net::SocketAddr, pin::Pin};

use futures::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::grpc::proto::{self, payment_service_server::PaymentService};

#[derive(Clone, Copy, Default)]
struct Bare;

type Events =
    Pin<Box<dyn Stream<Item = Result<proto::StreamPaymentEventsResponse, Status>> + Send>>;

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented(
        "the bare baseline serves only StreamPaymentEvents",
    ))
}

#[tonic::async_trait]
impl PaymentService for Bare {
    async fn create_payment_request(
        &self,
        _: Request<proto::CreatePaymentRequestRequest>,
    ) -> Result<Response<proto::CreatePaymentRequestResponse>, Status> {
        unimplemented()
    }

    async fn get_payment(
        &self,
        _: Request<proto::GetPaymentRequest>,
    ) -> Result<Response<proto::GetPaymentResponse>, Status> {
        unimplemented()
    }

    async fn capture_payment(
        &self,
        _: Request<proto::CapturePaymentRequest>,
    ) -> Result<Response<proto::CapturePaymentResponse>, Status> {
        unimplemented()
    }

    async fn cancel_payment(
        &self,
        _: Request<proto::CancelPaymentRequest>,
    ) -> Result<Response<proto::CancelPaymentResponse>, Status> {
        unimplemented()
    }

    async fn refund_payment(
        &self,
        _: Request<proto::RefundPaymentRequest>,
    ) -> Result<Response<proto::RefundPaymentResponse>, Status> {
        unimplemented()
    }

    async fn list_payment_events(
        &self,
        _: Request<proto::ListPaymentEventsRequest>,
    ) -> Result<Response<proto::ListPaymentEventsResponse>, Status> {
        unimplemented()
    }

    type StreamPaymentEventsStream = Events;

    async fn stream_payment_events(
        &self,
        _: Request<proto::StreamPaymentEventsRequest>,
    ) -> Result<Response<Events>, Status> {
        Ok(Response::new(Box::pin(futures::stream::pending())))
    }
}

pub struct BareServer {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl BareServer {
    /// Serves on the server runtime.
    pub async fn start(server: &tokio::runtime::Handle) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let addr = server
            .spawn(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(proto::payment_service_server::PaymentServiceServer::new(
                            Bare,
                        ))
                        .serve_with_incoming_shutdown(
                            TcpListenerStream::new(listener),
                            signal.cancelled_owned(),
                        ),
                );
                anyhow::Ok(addr)
            })
            .await??;
        Ok(Self { addr, stop })
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}
