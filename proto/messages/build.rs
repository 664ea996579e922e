//! Compiles the messages of `../ecocode/v1/ecocode.proto` (no services) with
//! a vendored `protoc`; `ecocode-proto` generates the services on top of
//! these very types, so a payload decodes the same everywhere.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build reads PROTOC from the environment; build scripts are
    // single-threaded, so setting it here races with nothing.
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        // Ordered maps make the encoding of a Record deterministic, which the
        // ledger's idempotency fingerprint and stored payloads rely on.
        .btree_map(".")
        .compile_protos(&["ecocode/v1/ecocode.proto"], &[".."])?;
    println!("cargo:rerun-if-changed=../ecocode/v1/ecocode.proto");
    Ok(())
}
