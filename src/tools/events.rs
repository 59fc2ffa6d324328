//! `paygate events tail`: follows StreamPaymentEvents, one line per event, and resumes from the
//! last sequence it printed after a disconnect (the on-call view of what paygate records).

use std::time::Duration;

use anyhow::Context as _;
use paygate::grpc::proto::{
    self, payment_service_client::PaymentServiceClient, stream_payment_events_response::Kind,
    PaymentEventName,
};

use super::{client::Target, format};

/// What to follow.
#[derive(Debug, Clone, clap::Args)]
pub struct Tail {
    #[command(flatten)]
    pub target: Target,
    /// Start after this sequence (default: live only, from now).
    #[arg(long)]
    pub after: Option<u64>,
    /// Only these payments (repeatable).
    #[arg(long = "reference")]
    pub references: Vec<String>,
    /// Only these event names, e.g. CAPTURED (repeatable).
    #[arg(long = "name")]
    pub names: Vec<String>,
    /// One JSON object per event per line.
    #[arg(long)]
    pub json: bool,
    /// Also show heartbeats.
    #[arg(long)]
    pub verbose: bool,
}

/// Follows the stream until Ctrl-C (exit 0), reconnecting with backoff.
pub async fn tail(args: Tail) -> anyhow::Result<()> {
    let names = args
        .names
        .iter()
        .map(|n| parse_name(n).map(|n| n as i32))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut cursor = args.after;
    let mut backoff = Duration::from_millis(200);
    let follow = async {
        loop {
            match follow_once(&args, &names, &mut cursor).await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    // A stale cursor will not fix itself: say so and stop.
                    let status = e.downcast_ref::<tonic::Status>();
                    if status.is_some_and(|s| s.code() == tonic::Code::OutOfRange) {
                        return Err(e);
                    }
                    // A status reads as its code and message, not tonic's debug-like Display.
                    let why = match status {
                        Some(s) => format!("{:?}: {}", s.code(), s.message()),
                        None => format!("{e:#}"),
                    };
                    eprintln!("paygate events tail: {why}; reconnecting in {backoff:?}");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    };
    tokio::select! {
        result = follow => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// One connection: prints events after `cursor` and moves it, until the stream ends.
async fn follow_once(args: &Tail, names: &[i32], cursor: &mut Option<u64>) -> anyhow::Result<()> {
    let mut client = PaymentServiceClient::new(args.target.connect().await?);
    let mut stream = client
        .stream_payment_events(proto::StreamPaymentEventsRequest {
            references: args.references.clone(),
            names: names.to_vec(),
            after_sequence: *cursor,
        })
        .await?
        .into_inner();
    match cursor {
        Some(c) => eprintln!(
            "paygate events tail: following {} after sequence {c}",
            args.target.addr
        ),
        None => eprintln!(
            "paygate events tail: following {} from now",
            args.target.addr
        ),
    }
    while let Some(item) = stream.message().await? {
        match item.kind {
            Some(Kind::Event(e)) => {
                // Idempotent by sequence: a resumed stream never prints an event twice.
                if cursor.is_some_and(|c| e.sequence <= c) {
                    continue;
                }
                println!(
                    "{}",
                    if args.json {
                        format::event_json(&e)
                    } else {
                        format::event_line(&e)
                    }
                );
                *cursor = Some(e.sequence);
            }
            Some(Kind::Heartbeat(h)) => {
                *cursor = Some(cursor.map_or(h.sequence, |c| c.max(h.sequence)));
                if args.verbose {
                    println!("heartbeat: everything up to {} seen", h.sequence);
                }
            }
            None => {}
        }
    }
    anyhow::bail!("the stream ended")
}

/// `CAPTURED`, `captured` or `PAYMENT_EVENT_NAME_CAPTURED`.
fn parse_name(name: &str) -> anyhow::Result<PaymentEventName> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("PAYMENT_EVENT_NAME_") {
        upper
    } else {
        format!("PAYMENT_EVENT_NAME_{upper}")
    };
    PaymentEventName::from_str_name(&full)
        .filter(|n| *n != PaymentEventName::Unspecified)
        .with_context(|| {
            format!("--name {name}: not an event name (CREATED, AUTHORIZED, CAPTURED, …)")
        })
}
