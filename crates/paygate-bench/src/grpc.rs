//! paygate's gRPC contract as the benchmark's clients see it, plus a *lean* view of the event
//! stream for clients that must not be the bottleneck.
//!
//! The lean messages decode the same bytes as `StreamPaymentEventsResponse` but keep only the
//! event's `sequence` and `reference` (as a zero-copy `Bytes` slice): prost skips every other
//! field without allocating, so a lean client spends its time in tonic's framing, not in building
//! payment snapshots it would throw away.

use std::net::SocketAddr;

use tonic::{
    codegen::http::uri::PathAndQuery,
    transport::{Channel, Endpoint},
};

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("paygate.v1");
}

pub use proto::{
    payment_service_client::PaymentServiceClient, stream_payment_events_response::Kind,
    StreamPaymentEventsRequest,
};

/// A connection to `addr` of its own (not shared with other channels).
pub async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

/// `StreamPaymentEventsResponse` with only what a counting client needs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeanResponse {
    /// The event, when the item is one (a heartbeat leaves it empty).
    #[prost(message, optional, tag = "1")]
    pub event: Option<LeanEvent>,
}

/// `PaymentEvent` reduced to its cursor and reference; every other field is skipped.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeanEvent {
    #[prost(uint64, tag = "1")]
    pub sequence: u64,
    /// The reference's UTF-8 bytes (a slice of the received buffer, not a copy).
    #[prost(bytes = "bytes", tag = "2")]
    pub reference: bytes::Bytes,
}

/// A `StreamPaymentEvents` call decoded with the lean messages.
pub async fn lean_stream(
    channel: Channel,
    request: StreamPaymentEventsRequest,
) -> anyhow::Result<tonic::Streaming<LeanResponse>> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let codec = tonic_prost::ProstCodec::<StreamPaymentEventsRequest, LeanResponse>::default();
    let path = PathAndQuery::from_static("/paygate.v1.PaymentService/StreamPaymentEvents");
    Ok(grpc
        .server_streaming(tonic::Request::new(request), path, codec)
        .await?
        .into_inner())
}

/// The number after `prefix` in a lean event's reference (`{prefix}{n}`).
pub fn numbered(reference: &[u8], prefix: &[u8]) -> Option<u64> {
    let digits = reference.strip_prefix(prefix)?;
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    Some(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use prost::Message as _;

    use super::*;
    use proto::StreamPaymentEventsResponse;

    #[test]
    fn lean_decodes_what_the_full_message_encodes() {
        let full = StreamPaymentEventsResponse {
            kind: Some(Kind::Event(proto::PaymentEvent {
                sequence: 42,
                reference: "wi-7".into(),
                psp_reference: "psp-7".into(),
                amount: Some(proto::Money {
                    currency: "NOK".into(),
                    value: 1000,
                }),
                success: true,
                ..Default::default()
            })),
        };
        let lean = LeanResponse::decode(full.encode_to_vec().as_slice()).unwrap();
        let event = lean.event.unwrap();
        assert_eq!(event.sequence, 42);
        assert_eq!(numbered(&event.reference, b"wi-"), Some(7));
        let heartbeat = StreamPaymentEventsResponse {
            kind: Some(Kind::Heartbeat(proto::Heartbeat {
                sequence: 9,
                time: None,
            })),
        };
        let lean = LeanResponse::decode(heartbeat.encode_to_vec().as_slice()).unwrap();
        assert!(lean.event.is_none());
        assert_eq!(numbered(b"x-12a", b"x-"), None);
    }
}
