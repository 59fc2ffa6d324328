//! The gRPC server: health, reflection and paygate's three services behind caller auth, with
//! the configured limits, optional (mutual) TLS, and the metrics layer.

use std::future::Future;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

use super::{proto, CustomerApi, MerchantQrApi, PaymentApi, StreamSettings};
use crate::{
    auth::Authenticator, config, health::Readiness, payments::Payments, qr::MerchantQrs, telemetry,
};

/// What the gRPC server serves.
pub struct Services {
    pub payments: Payments,
    pub qrs: MerchantQrs,
    pub auth: Authenticator,
    /// What gRPC health reports (SERVING only when ready).
    pub readiness: Readiness,
    pub streams: StreamSettings,
}

/// Serves gRPC on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    services: Services,
    grpc: &config::Grpc,
    tls: &config::Tls,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection")?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building gRPC reflection")?;
    let (reporter, health) = tonic_health::server::health_reporter();
    crate::health::register(&reporter).await;
    tokio::spawn(
        services
            .readiness
            .report(reporter, services.streams.shutdown.clone()),
    );
    let max = grpc.max_message_bytes as usize;
    let auth = services.auth;
    let payments = PaymentApi::new(services.payments.clone(), services.streams)
        .into_server()
        .max_decoding_message_size(max);
    let customers = CustomerApi::new(services.payments)
        .into_server()
        .max_decoding_message_size(max);
    let qrs = MerchantQrApi::new(services.qrs)
        .into_server()
        .max_decoding_message_size(max);
    // Every method served below, and nothing else, may become a metrics label.
    let served = telemetry::prometheus::served_methods(&[
        proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ])
    .context("reading the served gRPC methods from their descriptors")?;
    let mut builder = tonic::transport::Server::builder()
        .timeout(grpc.request_timeout)
        // Pings find peers that vanished without closing (a dead NAT entry, a pulled cable):
        // their connections, and the event streams and subscriber slots on them, are closed.
        .http2_keepalive_interval(Some(grpc.keepalive))
        .http2_keepalive_timeout(Some(grpc.keepalive))
        .concurrency_limit_per_connection(grpc.concurrency_limit as usize)
        .max_concurrent_streams(Some(grpc.max_concurrent_streams));
    if let Some(tls) = tls_config(tls)? {
        builder = builder.tls_config(tls).context("gRPC TLS")?;
    }
    // Health and reflection stay open (probes and grpcurl); the API needs a caller.
    builder
        .layer(telemetry::prometheus::GrpcMetricsLayer::new(served))
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(InterceptedService::new(payments, auth.clone()))
        .add_service(InterceptedService::new(customers, auth.clone()))
        .add_service(InterceptedService::new(qrs, auth))
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await
        .context("gRPC server")
}

/// The connections the server accepts, with Nagle off: an event on a stream is one small
/// write, and Nagle would hold it back until the client acknowledged the previous one, up to its
/// delayed-ACK timer (40 ms on Linux). Measured: delivery p99 after the webhook's 2xx went from
/// 20 ms to 2 ms (BENCHMARKS.md).
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Server TLS from PEM files; with a client CA, clients must present a certificate it signed.
fn tls_config(tls: &config::Tls) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        return Ok(None);
    };
    let read = |key: &str, path: &str| {
        std::fs::read(path)
            .with_context(|| format!("invalid configuration: {key}: cannot read {path}"))
    };
    let identity = Identity::from_pem(
        read("PAYGATE_TLS_CERT", cert)?,
        read("PAYGATE_TLS_KEY", key)?,
    );
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read("PAYGATE_TLS_CLIENT_CA", ca)?));
    }
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt as _;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut incoming = incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let accepted = incoming
            .next()
            .await
            .expect("a connection")
            .expect("accepted");
        assert!(accepted.nodelay().expect("TCP_NODELAY readable"));
    }
}
