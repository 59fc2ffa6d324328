//! `vipps-emulator`: the Vipps emulator on its own, for local development and other teams' tests.

use std::net::SocketAddr;

use clap::Parser;
use vipps_emulator::{run_standalone, EmulatorConfig};

/// A stateful Vipps MobilePay emulator (ePayment, webhooks, Userinfo, QR, access token).
#[derive(Parser)]
#[command(name = "vipps-emulator", version)]
struct Cli {
    /// Listen address.
    #[arg(long, env = "VIPPS_EMULATOR_ADDR", default_value = "127.0.0.1:8090")]
    addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    run_standalone(Cli::parse().addr, EmulatorConfig::default()).await
}
