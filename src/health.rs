//! Readiness: the database answers, the event writer is not stuck in a commit, a webhook secret
//! is in place, and paygate is not shutting down. The same answer feeds gRPC health
//! (`grpc.health.v1`) and HTTP `/readyz`.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio_util::sync::CancellationToken;
use tonic_health::{server::HealthReporter, ServingStatus};

use crate::{
    events::{EventLog, WriterWatch},
    store::Store,
    webhooks::Verifier,
};

/// The gRPC services whose health is reported (besides the overall "" entry).
const SERVICES: &[&str] = &[
    "paygate.v1.PaymentService",
    "paygate.v1.CustomerService",
    "paygate.v1.MerchantQrService",
];

#[derive(Clone)]
pub struct Readiness {
    store: Store,
    writer: WriterWatch,
    /// How long the writer may work on one commit before paygate reports itself not ready: a
    /// database that answers pings can still hold every write (a hung connection, a lock).
    writer_stall: Duration,
    verifier: Verifier,
    draining: Arc<AtomicBool>,
}

impl Readiness {
    pub fn new(log: &EventLog, writer_stall: Duration, verifier: Verifier) -> Self {
        Self {
            store: log.store().clone(),
            writer: log.writer().clone(),
            writer_stall,
            verifier,
            draining: Arc::default(),
        }
    }

    /// Ok when ready, else why not.
    pub async fn check(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::SeqCst) {
            return Err("shutting down");
        }
        if !self.verifier.has_secret() {
            return Err("no webhook secret yet");
        }
        if self
            .writer
            .busy_for()
            .is_some_and(|busy| busy > self.writer_stall)
        {
            return Err("event writer stalled: a commit is not finishing");
        }
        self.store.ping().await.map_err(|_| "database unavailable")
    }

    /// Keeps gRPC health current until `stop`, then reports NOT_SERVING for good.
    pub async fn report(self, reporter: HealthReporter, stop: CancellationToken) {
        let mut last = Some(ServingStatus::NotServing);
        loop {
            let status = match self.check().await {
                Ok(()) => ServingStatus::Serving,
                Err(_) => ServingStatus::NotServing,
            };
            if last != Some(status) {
                set(&reporter, status).await;
                last = Some(status);
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        self.draining.store(true, Ordering::SeqCst);
        set(&reporter, ServingStatus::NotServing).await;
    }

    /// Marks paygate as draining (readiness fails from now on).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
}

/// Registers every service as NOT_SERVING, before the server accepts a connection, so a
/// health Watch or Check never finds an unknown service.
pub async fn register(reporter: &HealthReporter) {
    set(reporter, ServingStatus::NotServing).await;
}

async fn set(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for service in SERVICES {
        reporter.set_service_status(*service, status).await;
    }
}
