//! The protobuf codec, with one difference from tonic-prost's: a request that cannot be decoded
//! (invalid UTF-8 in a string, truncated or garbage bytes) is the caller's fault, so it is
//! answered INVALID_ARGUMENT naming `request` instead of INTERNAL.

use std::marker::PhantomData;

use prost::Message;
use tonic::{
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
    Code, Status,
};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use super::status::to_status;
use crate::domain::PaygateError;

/// Used by the generated services (`codec_path` in build.rs).
#[derive(Debug, Clone, Copy)]
pub struct ValidatingCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for ValidatingCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for ValidatingCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ValidatingDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ValidatingDecoder(ProstCodec::<T, U>::default().decoder())
    }
}

/// Wraps prost's decoder, turning decode failures into INVALID_ARGUMENT.
#[derive(Debug)]
pub struct ValidatingDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for ValidatingDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| match status.code() {
            Code::Internal => to_status(PaygateError::invalid(
                "request",
                format!("is not a valid protobuf message: {}", status.message()),
            )),
            _ => status,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
