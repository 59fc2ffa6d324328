//! The `paygate` command: serve (default), migrate, config, and the operators' tools.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use paygate::{app, app::Application, config::Config, telemetry};

mod tools;

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
    /// Apply database migrations and exit.
    Migrate,
    /// Print every configuration key with its default and meaning.
    Config,
    /// Play the whole taxi flow against a running paygate (default: the local one with its emulator).
    Demo {
        /// paygate's gRPC address.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        grpc: String,
        /// The emulator's base URL (it plays the customer).
        #[arg(long, default_value = "http://127.0.0.1:8090")]
        emulator: String,
    },
    /// Merchant-redirect QR codes (the sticker in the taxi).
    Qr {
        #[command(subcommand)]
        command: QrCommand,
    },
    /// The event stream, as an operator follows it.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// One payment, as an operator looks it up.
    Payments {
        #[command(subcommand)]
        command: PaymentsCommand,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Follows StreamPaymentEvents: one line per event; resumes after a disconnect; Ctrl-C ends.
    Tail(tools::events::Tail),
}

#[derive(Subcommand)]
enum PaymentsCommand {
    /// What happened to this payment: GetPayment and its events, human readable.
    Show {
        /// The payment's reference.
        reference: String,
        #[command(flatten)]
        target: tools::client::Target,
    },
}

#[derive(Subcommand)]
enum QrCommand {
    /// Create (or re-point) a QR code and write a printable SVG or PNG.
    Create {
        /// The code's id, e.g. the taxi: taxi-34.
        #[arg(long)]
        id: String,
        /// The https page the code leads to.
        #[arg(long)]
        redirect_url: String,
        /// Output file (.svg or .png).
        #[arg(long)]
        out: String,
        /// paygate's gRPC address.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        grpc: String,
    },
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
            let _telemetry = telemetry::init(&config.telemetry)?;
            let app = Application::build(config).await?;
            tracing::info!(grpc = %app.grpc_addr(), http = %app.http_addr(), "listening");
            app.run(shutdown_signal()).await
        }
        Command::Config => {
            print!("{}", Config::command().render_long_help());
            Ok(())
        }
        Command::Demo { grpc, emulator } => tools::demo::run(&grpc, &emulator).await,
        Command::Qr {
            command:
                QrCommand::Create {
                    id,
                    redirect_url,
                    out,
                    grpc,
                },
        } => tools::qr::create(&grpc, &id, &redirect_url, &out).await,
        Command::Events {
            command: EventsCommand::Tail(args),
        } => tools::events::tail(args).await,
        Command::Payments {
            command: PaymentsCommand::Show { reference, target },
        } => tools::payments::show(&target, &reference).await,
        Command::Migrate => {
            let config = Config::load(cli.config.as_deref())?;
            let _telemetry = telemetry::init(&config.telemetry)?;
            app::migrate(&config).await?;
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
