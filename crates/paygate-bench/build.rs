//! Compiles paygate's gRPC contract (`proto/` at the workspace root) for the benchmark's clients,
//! with a pure-Rust protobuf compiler (protox), so no system `protoc` is needed. The server side
//! is generated too, for one reason only: the `bare` baseline is a plain tonic server of the same
//! `PaymentService` (what tonic, hyper and h2 cost per stream, with nothing of paygate's).

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &["paygate/v1/payment_service.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let descriptors = protox::compile(PROTOS, [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
