//! Prometheus metrics (`/metrics` on the HTTP sidecar) and the gRPC metrics layer.
//!
//! Labels never carry references, phone numbers or other unbounded values: method, status
//! code, reason, API name, source.

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use prost::Message as _;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets in seconds, from 100 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// How often histogram samples are folded into their buckets when nothing scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the process-wide recorder once (several apps in one test process share it).
pub fn install() {
    HANDLE.get_or_init(|| {
        let built = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .and_then(|b| b.install_recorder());
        match built {
            Ok(handle) => {
                describe();
                spawn_upkeep(handle.clone());
                Some(handle)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        }
    });
}

/// Histogram samples wait in a queue until a scrape (or upkeep) folds them into the buckets:
/// without a scraper that queue grows by every request, for good. A plain thread, not a task:
/// the recorder lives as long as the process, not as long as one runtime.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics upkeep not started: histograms drain only when scraped");
    }
}

/// The Prometheus text exposition.
pub fn render() -> String {
    HANDLE
        .get()
        .and_then(|h| h.as_ref())
        .map(|h| h.render())
        .unwrap_or_default()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "paygate_grpc_requests_total",
        "gRPC requests by method and status code"
    );
    describe_histogram!(
        "paygate_grpc_request_duration_seconds",
        Unit::Seconds,
        "gRPC latency by method"
    );
    describe_counter!(
        "paygate_grpc_unauthenticated_total",
        "gRPC calls refused for a missing or wrong token"
    );
    describe_counter!(
        "paygate_http_connections_refused_total",
        "sidecar connections closed at once: PAYGATE_HTTP_MAX_CONNECTIONS were open"
    );
    describe_counter!(
        "paygate_webhooks_received_total",
        "webhook requests received"
    );
    describe_counter!(
        "paygate_webhooks_accepted_total",
        "webhooks verified and stored as new events"
    );
    describe_counter!(
        "paygate_webhooks_duplicate_total",
        "webhooks that repeated a stored event"
    );
    describe_counter!(
        "paygate_webhooks_rejected_total",
        "webhooks refused, by reason"
    );
    describe_counter!(
        "paygate_events_appended_total",
        "events appended to the log, by source"
    );
    describe_gauge!(
        "paygate_stream_subscribers",
        "open StreamPaymentEvents streams"
    );
    describe_counter!(
        "paygate_vipps_requests_total",
        "Vipps API attempts by API and HTTP status"
    );
    describe_histogram!(
        "paygate_vipps_request_duration_seconds",
        Unit::Seconds,
        "Vipps API attempt latency"
    );
    describe_counter!("paygate_vipps_retries_total", "Vipps API retries");
    describe_counter!(
        "paygate_vipps_token_refreshes_total",
        "access tokens fetched"
    );
    describe_counter!(
        "paygate_reconciliations_total",
        "payments reconciled from Vipps, by result"
    );
}

/// gRPC status code names, for the `code` label.
fn code_name(code: &str) -> &'static str {
    match code {
        "0" => "OK",
        "1" => "CANCELLED",
        "2" => "UNKNOWN",
        "3" => "INVALID_ARGUMENT",
        "4" => "DEADLINE_EXCEEDED",
        "5" => "NOT_FOUND",
        "6" => "ALREADY_EXISTS",
        "7" => "PERMISSION_DENIED",
        "8" => "RESOURCE_EXHAUSTED",
        "9" => "FAILED_PRECONDITION",
        "10" => "ABORTED",
        "11" => "OUT_OF_RANGE",
        "12" => "UNIMPLEMENTED",
        "13" => "INTERNAL",
        "14" => "UNAVAILABLE",
        "15" => "DATA_LOSS",
        "16" => "UNAUTHENTICATED",
        _ => "OTHER",
    }
}

/// The full method paths (`/package.Service/Method`) of every service in the encoded
/// descriptor sets: what the gRPC server serves, and so the only values the `method` label takes.
pub fn served_methods(descriptor_sets: &[&[u8]]) -> Result<HashSet<String>, prost::DecodeError> {
    let mut methods = HashSet::new();
    for encoded in descriptor_sets {
        let set = prost_types::FileDescriptorSet::decode(*encoded)?;
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    let service = match package {
                        "" => service.name().to_owned(),
                        package => format!("{package}.{}", service.name()),
                    };
                    methods.insert(format!("/{service}/{}", method.name()));
                }
            }
        }
    }
    Ok(methods)
}

/// A tower layer recording `paygate_grpc_requests_total` and the latency histogram, labelled by
/// method. Only methods the server serves become labels; any other path (anyone can send any
/// path, without a token) is `other`, so the number of series stays bounded.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    served: Arc<HashSet<String>>,
}

impl GrpcMetricsLayer {
    pub fn new(served: HashSet<String>) -> Self {
        Self {
            served: Arc::new(served),
        }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            served: Arc::clone(&self.served),
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    served: Arc<HashSet<String>>,
}

impl<S> GrpcMetrics<S> {
    fn method_label(&self, path: &str) -> String {
        if self.served.contains(path) {
            path.to_owned()
        } else {
            "other".to_owned()
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = self.method_label(request.uri().path());
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            // Errors come back "trailers-only", with grpc-status in the headers; a success's
            // status is in the trailers, after the body, so a missing header means OK.
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map_or("OK", code_name),
                Err(_) => "UNAVAILABLE",
            };
            metrics::counter!("paygate_grpc_requests_total", "method" => method.clone(), "code" => code)
                .increment(1);
            metrics::histogram!("paygate_grpc_request_duration_seconds", "method" => method)
                .record(started.elapsed().as_secs_f64());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use tower::Layer as _;

    use super::*;

    #[test]
    fn only_served_methods_are_labels() {
        let served = served_methods(&[
            crate::grpc::proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ])
        .unwrap();
        let metrics = GrpcMetricsLayer::new(served).layer(());
        for path in [
            "/paygate.v1.PaymentService/CapturePayment",
            "/paygate.v1.CustomerService/GetCustomer",
            "/grpc.health.v1.Health/Check",
        ] {
            assert_eq!(metrics.method_label(path), path);
        }
        for path in [
            "/paygate.v1.Nope1/X",
            "/paygate.v1.PaymentService/Nope",
            "/grpc.nope1.Y/Z",
            // Served by paygate, but its descriptors were not given here.
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "",
        ] {
            assert_eq!(metrics.method_label(path), "other", "{path}");
        }
    }
}
