//! Compile the public API and peer protos with protox (pure Rust, no system
//! protoc): clients always, servers only with the `server` feature. Also the
//! dnstap schema (messages only, it has no services).

use std::path::PathBuf;

/// The public API's files, under `proto/switchboard/v1/`.
const V1_FILES: [&str; 11] = ["common", "zones", "clusters", "tenants", "node", "acme", "watch", "credentials", "tsig", "dnssec", "batch"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The manifest dir at run time: a build script binary may be reused from
    // another checkout of the same sources (a worktree).
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let server = std::env::var_os("CARGO_FEATURE_SERVER").is_some();

    let v1: Vec<_> = V1_FILES.iter().map(|f| root.join(format!("switchboard/v1/{f}.proto"))).collect();
    let peer = root.join("switchboard/raft/v1/peer.proto");
    let dnstap = root.join("dnstap/dnstap.proto");
    for f in v1.iter().chain([&peer, &dnstap]) {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let fds = protox::compile(&v1, [&root])?;
    // The descriptors again, encoded, for gRPC server reflection.
    std::fs::write(out.join("switchboard_v1_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().build_client(true).build_server(server).compile_fds(fds)?;

    let fds = protox::compile([&peer], [&root])?;
    tonic_prost_build::configure().build_client(true).build_server(server).compile_fds(fds)?;

    let fds = protox::compile([&dnstap], [&root])?;
    tonic_prost_build::configure().build_client(false).build_server(false).compile_fds(fds)?;
    Ok(())
}
