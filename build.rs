//! Compiles `proto/` with protox (a pure-Rust protobuf compiler), so no system `protoc` is needed,
//! and writes the descriptor set that gRPC server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

const PROTOS: &[&str] = &[
    "paygate/v1/types.proto",
    "paygate/v1/payment_service.proto",
    "paygate/v1/customer_service.proto",
    "paygate/v1/merchant_qr_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("paygate_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Undecodable requests are the caller's fault: INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::grpc::codec::ValidatingCodec")
        // Hand-written so a streamed event is encoded once for all subscribers (see the module).
        .extern_path(
            ".paygate.v1.StreamPaymentEventsResponse",
            "crate::grpc::proto::shared_response::StreamPaymentEventsResponse",
        )
        .compile_fds(descriptors)?;
    Ok(())
}
