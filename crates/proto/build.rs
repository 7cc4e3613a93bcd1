//! Generates the internal envelope and the gRPC services from `proto/`.
//!
//! protoc comes from `protoc-bin-vendored` so a fresh machine needs nothing installed;
//! `$PROTOC` overrides it.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "arqon/envelope/v1/envelope.proto",
    "arqon/policy/v1/policy.proto",
    "arqon/dispatcher/v1/bus.proto",
    "arqon/operators/v1/common.proto",
    "arqon/operators/v1/store.proto",
    "arqon/operators/v1/webhook.proto",
    "arqon/operators/v1/cron.proto",
    "arqon/operators/v1/omega.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    // Payload bytes are shared, not copied, from the received NATS message.
    config.bytes(["."]);
    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    tonic_prost_build::configure().compile_with_config(
        config,
        &protos,
        std::slice::from_ref(&root),
    )?;
    println!("cargo:rerun-if-env-changed=PROTOC");
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
