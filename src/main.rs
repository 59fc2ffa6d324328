//! The `paygate` command: serve (default), emulator, migrate.

use std::{net::SocketAddr, process::ExitCode};

use clap::{Parser, Subcommand};
use paygate::{app::Application, config::Config, emulator, store::Store, telemetry};

#[derive(Parser)]
#[command(
    name = "paygate",
    version,
    about = "gRPC payment gateway for Vipps MobilePay ePayment"
)]
struct Cli {
    /// A KEY=VALUE file read before the environment (also PAYGATE_CONFIG).
    #[arg(long, global = true)]
    config: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default). Without VIPPS_BASE_URL it starts the built-in emulator.
    Serve,
    /// Run the Vipps emulator alone.
    Emulator {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8090")]
        addr: SocketAddr,
    },
    /// Apply database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paygate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = Config::load(cli.config.as_deref())?;
            telemetry::init(config.log_format);
            let app = Application::build(config).await?;
            tracing::info!(grpc = %app.grpc_addr(), http = %app.http_addr(), "listening");
            app.run(shutdown_signal()).await
        }
        Command::Emulator { addr } => {
            telemetry::init(paygate::config::LogFormat::Text);
            emulator::run_standalone(addr, emulator::EmulatorConfig::default()).await
        }
        Command::Migrate => {
            let config = Config::load(cli.config.as_deref())?;
            telemetry::init(config.log_format);
            let store = Store::connect(&config.database_url).await?;
            store.migrate().await?;
            tracing::info!("migrations applied");
            Ok(())
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
