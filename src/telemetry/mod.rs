//! What paygate tells its operators: logs and traces (here: human-readable logs by default, JSON
//! for log collectors with `PAYGATE_LOG_FORMAT=json`, OpenTelemetry OTLP export of spans when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set) and Prometheus metrics (`prometheus`).

pub mod prometheus;

use tracing_subscriber::{
    layer::SubscriberExt as _, util::SubscriberInitExt as _, EnvFilter, Layer,
};

use crate::config::{self, LogFormat};

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

/// Installs the global subscriber (filter `RUST_LOG`, format `PAYGATE_LOG_FORMAT`), exporting
/// spans over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. A second call (several apps in one
/// test process) keeps the first subscriber.
pub fn init(settings: &config::Telemetry) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(&settings.log_filter)
        .map_err(|e| anyhow::anyhow!("invalid configuration: RUST_LOG: {e}"))?;
    let fmt: Box<dyn Layer<_> + Send + Sync> = match settings.log_format {
        LogFormat::Json => Box::new(tracing_subscriber::fmt::layer().json()),
        LogFormat::Text => Box::new(tracing_subscriber::fmt::layer()),
    };
    let (otel, provider) = match settings.otlp_endpoint.as_deref() {
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
