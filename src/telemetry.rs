//! Logging and tracing: human-readable logs by default, JSON for log collectors
//! (`PAYGATE_LOG_FORMAT=json`), and OpenTelemetry OTLP export of spans when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use tracing_subscriber::{
    layer::SubscriberExt as _, util::SubscriberInitExt as _, EnvFilter, Layer,
};

use crate::config::LogFormat;

/// Keeps the tracer provider alive; dropping it flushes pending spans.
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("paygate: flushing traces failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` overrides the default `info` level. A second call
/// (several apps in one test process) keeps the first subscriber.
pub fn init(format: LogFormat) {
    let _ = init_with_otlp(format, None);
}

/// Like `init`, and exports spans to `otlp_endpoint` (OTLP over gRPC) when given.
pub fn init_with_otlp(format: LogFormat, otlp_endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt: Box<dyn Layer<_> + Send + Sync> = match format {
        LogFormat::Json => Box::new(tracing_subscriber::fmt::layer().json()),
        LogFormat::Text => Box::new(tracing_subscriber::fmt::layer()),
    };
    let (otel, provider) = match otlp_endpoint {
        Some(endpoint) => {
            use opentelemetry::trace::TracerProvider as _;
            use opentelemetry_otlp::WithExportConfig as _;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| {
                    anyhow::anyhow!("invalid configuration: OTEL_EXPORTER_OTLP_ENDPOINT: {e}")
                })?;
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name("paygate")
                        .build(),
                )
                .build();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("paygate"));
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(Telemetry { provider })
}
