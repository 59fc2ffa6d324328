//! `StreamPaymentEventsResponse`, written by hand instead of generated (`extern_path` in
//! build.rs) for one reason: an event streamed to many subscribers is encoded once, and every
//! subscriber's response carries the same bytes. On the wire and for clients it is exactly the
//! message `proto/paygate/v1/payment_service.proto` declares (`oneof kind { event = 1;
//! heartbeat = 2 }`); `kind` decodes as prost would.

use std::fmt;

use prost::{
    bytes::{Buf, BufMut, Bytes},
    encoding::{message, skip_field, DecodeContext, WireType},
    DecodeError, Message,
};

use super::{Heartbeat, PaymentEvent};

/// An event or a heartbeat on an event stream.
#[derive(Clone, PartialEq, Default)]
pub struct StreamPaymentEventsResponse {
    /// An event or a heartbeat.
    pub kind: Option<stream_payment_events_response::Kind>,
    /// Server side: this whole response, already encoded; sent as is (`kind` is then unused).
    encoded: Option<Bytes>,
}

/// The `kind` oneof, as prost generates it.
pub mod stream_payment_events_response {
    /// An event or a heartbeat. (Unboxed, as prost generates oneofs: clients match on it.)
    #[derive(Clone, PartialEq, Debug)]
    #[allow(clippy::large_enum_variant)]
    pub enum Kind {
        /// An event.
        Event(super::PaymentEvent),
        /// A sign of life carrying the latest sequence.
        Heartbeat(super::Heartbeat),
    }
}

use stream_payment_events_response::Kind;

impl StreamPaymentEventsResponse {
    /// A response whose encoding was made once and is shared (see `encode`).
    pub fn shared(encoded: Bytes) -> Self {
        Self {
            kind: None,
            encoded: Some(encoded),
        }
    }

    /// The encoding of a response carrying `kind`, to share between subscribers.
    pub fn encode(kind: Kind) -> Bytes {
        Self {
            kind: Some(kind),
            encoded: None,
        }
        .encode_to_vec()
        .into()
    }
}

impl fmt::Debug for StreamPaymentEventsResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, &self.encoded) {
            (_, Some(bytes)) => write!(
                f,
                "StreamPaymentEventsResponse({} encoded bytes)",
                bytes.len()
            ),
            (kind, None) => f
                .debug_struct("StreamPaymentEventsResponse")
                .field("kind", kind)
                .finish(),
        }
    }
}

impl Message for StreamPaymentEventsResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(bytes) = &self.encoded {
            buf.put_slice(bytes);
            return;
        }
        match &self.kind {
            Some(Kind::Event(event)) => message::encode(1, event, buf),
            Some(Kind::Heartbeat(beat)) => message::encode(2, beat, buf),
            None => {}
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => {
                let mut event = match self.kind.take() {
                    Some(Kind::Event(event)) => event,
                    _ => PaymentEvent::default(),
                };
                message::merge(wire_type, &mut event, buf, ctx)?;
                self.kind = Some(Kind::Event(event));
                Ok(())
            }
            2 => {
                let mut beat = match self.kind.take() {
                    Some(Kind::Heartbeat(beat)) => beat,
                    _ => Heartbeat::default(),
                };
                message::merge(wire_type, &mut beat, buf, ctx)?;
                self.kind = Some(Kind::Heartbeat(beat));
                Ok(())
            }
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        if let Some(bytes) = &self.encoded {
            return bytes.len();
        }
        match &self.kind {
            Some(Kind::Event(event)) => message::encoded_len(1, event),
            Some(Kind::Heartbeat(beat)) => message::encoded_len(2, beat),
            None => 0,
        }
    }

    fn clear(&mut self) {
        self.kind = None;
        self.encoded = None;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Shared bytes, the plain encoding and a decode agree: clients see the declared message.
    #[test]
    fn shared_bytes_are_the_declared_message() {
        let event = PaymentEvent {
            sequence: 7,
            reference: "taxi-34-ride-1".into(),
            ..Default::default()
        };
        let kind = Kind::Event(event.clone());
        let bytes = StreamPaymentEventsResponse::encode(kind.clone());
        let shared = StreamPaymentEventsResponse::shared(bytes.clone());
        assert_eq!(shared.encode_to_vec(), bytes.to_vec());
        let decoded = StreamPaymentEventsResponse::decode(bytes).unwrap();
        assert_eq!(decoded.kind, Some(kind));
        let beat = Kind::Heartbeat(Heartbeat {
            sequence: 9,
            time: None,
        });
        let bytes = StreamPaymentEventsResponse::encode(beat.clone());
        assert_eq!(
            StreamPaymentEventsResponse::decode(bytes).unwrap().kind,
            Some(beat)
        );
    }
}
