# syntax=docker/dockerfile:1
#
# paygate container image: `docker build -t paygate:0.1.0 .`
#
# The image is built without the Vipps emulator (cargo feature `emulator` off): it refuses to
# start without VIPPS_BASE_URL. For a demo or test cluster running the chart with
# `vipps.emulator: true`, build with `--build-arg CARGO_FEATURES=emulator`.
#
# Two stages: a Rust toolchain image builds the release binary; the final image is distroless
# (glibc + libgcc + CA certificates, no shell, no package manager) and holds only that binary.
# No protoc is needed: build.rs compiles proto/ with protox, a pure-Rust protobuf compiler.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG CARGO_FEATURES=""

# ---- build -------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
ARG CARGO_FEATURES
WORKDIR /build

# 1. Dependencies only: compile them against stub sources, so this layer stays cached until
#    Cargo.toml or Cargo.lock change (editing src/ does not rebuild the dependency tree).
#    build.rs and proto/ come along because build.rs compiles the protobuf contract; crates/
#    because the root is a workspace (paygate itself only links crates/vipps-signature, and the
#    emulator when CARGO_FEATURES=emulator). .cargo/config.toml builds SQLite to sync with
#    fdatasync (README, "Unusual choices").
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo ./.cargo
COPY proto ./proto
COPY crates ./crates
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked -p paygate --no-default-features --features "${CARGO_FEATURES}" \
 && rm -rf src

# 2. The real sources. COPY keeps the files' modification times, which may be older than the
#    stub build above; touching the crate roots (and dropping the crate's own artifacts) makes
#    cargo rebuild paygate itself instead of shipping the stub.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && rm -rf target/release/.fingerprint/paygate-* target/release/deps/paygate-* \
           target/release/deps/libpaygate-* \
 && cargo build --release --locked -p paygate --no-default-features --features "${CARGO_FEATURES}" \
 && install -D -m 0755 target/release/paygate /out/usr/local/bin/paygate \
 && mkdir -p /out/data

# ---- runtime -----------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}

LABEL org.opencontainers.image.title="paygate" \
      org.opencontainers.image.description="gRPC payment gateway for Vipps MobilePay ePayment" \
      org.opencontainers.image.licenses="MIT"

COPY --from=builder /out/usr/local/bin/paygate /usr/local/bin/paygate
# /data is where the SQLite database lives (the Helm chart mounts a volume there). Owned by the
# runtime user so a plain `docker run -v paygate-data:/data` works too.
COPY --from=builder --chown=10001:10001 /out/data /data
WORKDIR /data

# A fixed numeric uid (not distroless' 65532), matching the chart's runAsUser / fsGroup.
USER 10001:10001

# 50051: gRPC API + grpc.health.v1; 8080: HTTP (Vipps webhooks, /healthz, /readyz, /metrics).
EXPOSE 50051 8080

ENTRYPOINT ["/usr/local/bin/paygate"]
CMD ["serve"]
