//! The dependency direction is the architecture; this test reads
//! `cargo metadata` and fails when an invariant of ARCHITECTURE.md breaks.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Normal (non-dev) dependencies of each workspace crate, by package name.
fn workspace_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

fn check(deps: &BTreeMap<String, BTreeSet<String>>, krate: &str, forbidden: &[&str]) {
    let have = &deps[krate];
    for f in forbidden {
        assert!(!have.contains(*f), "{krate} must not depend on {f} (see ARCHITECTURE.md)");
    }
}

#[test]
fn domain_crates_never_see_grpc_or_the_server() {
    let deps = workspace_dependencies();
    let grpc = [
        "tonic",
        "tonic-prost",
        "prost",
        "prost-types",
        "ecocode-proto",
        "server",
        "tonic-health",
        "tonic-reflection",
    ];
    check(&deps, "scoring", &grpc);
    check(&deps, "ingest", &grpc);
}

#[test]
fn scoring_is_pure() {
    let deps = workspace_dependencies();
    // No storage, network, runtime or clock-reading crates in the scorer.
    check(&deps, "scoring", &["sled", "tokio", "ingest", "getrandom", "blake3"]);
}

#[test]
fn storage_stays_below_the_server() {
    let deps = workspace_dependencies();
    check(&deps, "server", &["sled"]);
    check(&deps, "ecocode-proto", &["sled", "scoring", "ingest"]);
}

#[test]
fn server_depends_on_the_layers_below() {
    let deps = workspace_dependencies();
    for needed in ["ecocode-proto", "ingest", "scoring"] {
        assert!(deps["server"].contains(needed), "server should use {needed}");
    }
}
