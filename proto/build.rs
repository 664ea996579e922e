//! Compiles `ecocode/v1/*.proto` with a vendored `protoc`, so a fresh
//! machine needs nothing installed by hand.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build reads PROTOC from the environment; build scripts are
    // single-threaded, so setting it here races with nothing.
    std::env::set_var("PROTOC", protoc);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // The messages live in `ecocode-messages` (no runtime, for offline
        // verifiers); the services here use those very types.
        .extern_path(".ecocode.v1", "::ecocode_messages::v1")
        .file_descriptor_set_path(out_dir.join("ecocode_descriptor.bin"))
        .compile_protos(&["ecocode/v1/ecocode.proto"], &["."])?;
    println!("cargo:rerun-if-changed=ecocode/v1/ecocode.proto");
    Ok(())
}
