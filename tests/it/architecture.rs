//! The dependency direction is the architecture; this test reads
//! `cargo metadata` and fails when an invariant of ARCHITECTURE.md breaks.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Normal (non-dev, non-build) dependencies of each workspace crate, by
/// package name, with the features each asks for.
struct Workspace {
    deps: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

fn workspace() -> Workspace {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let deps = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| {
                    let features = d["features"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| f.as_str().unwrap().to_owned())
                        .collect();
                    (d["name"].as_str().unwrap().to_owned(), features)
                })
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect();
    Workspace { deps }
}

/// Crates of this workspace (`clients/python` is a Python package, not a
/// crate); [`ours_lists_every_crate_of_the_workspace`] keeps it complete.
const OURS: [&str; 14] = [
    "ecocode-proto",
    "ecocode-messages",
    "evidence",
    "scoring",
    "tlog",
    "kv",
    "ledger",
    "hj212",
    "inquiries",
    "server",
    "cli",
    "tests",
    "load",
    "pgtest",
];

const GRPC: [&str; 8] = [
    "tonic",
    "tonic-prost",
    "prost",
    "prost-types",
    "ecocode-proto",
    "server",
    "tonic-health",
    "tonic-reflection",
];

impl Workspace {
    fn of(&self, krate: &str) -> &BTreeMap<String, BTreeSet<String>> {
        self.deps.get(krate).unwrap_or_else(|| panic!("{krate} is a workspace crate"))
    }

    fn forbid(&self, krate: &str, forbidden: &[&str]) {
        for f in forbidden {
            assert!(!self.of(krate).contains_key(*f), "{krate} must not depend on {f} (see ARCHITECTURE.md)");
        }
    }

    /// Of our crates, `krate` may use only `allowed`.
    fn ours_only(&self, krate: &str, allowed: &[&str]) {
        for dep in self.of(krate).keys() {
            if OURS.contains(&dep.as_str()) {
                assert!(
                    allowed.contains(&dep.as_str()),
                    "{krate} must not depend on {dep} (see ARCHITECTURE.md)"
                );
            }
        }
    }
}

// The list of our crates left out `inquiries`, so `ours_only` let any crate
// depend on it unchecked.
#[test]
fn ours_lists_every_crate_of_the_workspace() {
    let ws = workspace();
    let members: BTreeSet<&str> = ws.deps.keys().map(String::as_str).collect();
    let listed: BTreeSet<&str> = OURS.into_iter().collect();
    assert_eq!(members, listed, "OURS must name every crate of the workspace, and only those");
}

#[test]
fn domain_crates_never_see_grpc_or_the_server() {
    let ws = workspace();
    for krate in ["scoring", "tlog", "kv", "ledger", "hj212", "inquiries"] {
        ws.forbid(krate, &GRPC);
        ws.forbid(krate, &["cli"]);
    }
}

#[test]
fn scoring_is_pure() {
    let ws = workspace();
    // No storage, network, runtime or clock-reading crates in the scorer.
    ws.forbid("scoring", &["sled", "tokio", "ledger", "hj212", "getrandom", "blake3"]);
    ws.ours_only("scoring", &[]);
}

#[test]
fn the_verifier_is_pure_and_stands_alone() {
    let ws = workspace();
    // An offline verifier links this crate and no runtime, store or RPC.
    ws.ours_only("tlog", &[]);
    ws.forbid("tlog", &["sled", "tokio", "tonic", "polars", "tempfile", "getrandom"]);
}

#[test]
fn the_score_verifier_is_pure_and_stands_alone() {
    let ws = workspace();
    // A bank links `evidence` (with `tlog`, `scoring` and the message
    // types) and no server, store, runtime or RPC.
    ws.ours_only("evidence", &["tlog", "scoring", "ecocode-messages"]);
    ws.forbid("evidence", &["sled", "tokio", "tonic", "tonic-prost", "ecocode-proto", "polars", "getrandom"]);
    ws.ours_only("ecocode-messages", &[]);
    ws.forbid("ecocode-messages", &["tonic", "tonic-prost", "tokio"]);
}

#[test]
fn the_ledger_knows_only_the_verifier_and_its_store() {
    let ws = workspace();
    ws.ours_only("ledger", &["tlog", "kv"]);
    ws.ours_only("kv", &[]);
    ws.ours_only("inquiries", &["kv"]);
}

#[test]
fn hj212_knows_the_ledger_only_through_its_sink() {
    let ws = workspace();
    ws.ours_only("hj212", &["scoring", "kv"]);
}

#[test]
fn storage_stays_below_the_server() {
    let ws = workspace();
    ws.forbid("server", &["sled", "kv"]);
    ws.forbid("ecocode-proto", &["sled", "scoring", "ledger", "hj212"]);
}

#[test]
fn the_service_library_has_nothing_client_side() {
    let ws = workspace();
    ws.forbid("server", &["anyhow", "clap", "indicatif", "polars", "tracing-subscriber", "cli"]);
    let scoring = &ws.of("server")["scoring"];
    assert!(!scoring.contains("batch"), "the service must not enable the polars batch scorer");
}

#[test]
fn layers_point_down() {
    let ws = workspace();
    for needed in ["ecocode-proto", "scoring", "ledger", "hj212", "tlog"] {
        assert!(ws.of("server").contains_key(needed), "server should use {needed}");
    }
    ws.ours_only("server", &["ecocode-proto", "scoring", "ledger", "hj212", "tlog", "inquiries", "evidence"]);
    assert!(ws.of("cli").contains_key("server"), "the binary starts the service through the server crate");
}

/// `crate::x` references between the top-level modules of one crate's
/// `src/`; a module's submodules (`src/x/...`) count as part of it.
fn module_edges(src: &std::path::Path) -> BTreeMap<String, BTreeSet<String>> {
    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut all = Vec::new();
    files(src, &mut all);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in all {
        let top = path.strip_prefix(src).unwrap().components().next().unwrap();
        let name = top.as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        // In a top-level module's own file, `super::` is the crate root too.
        let top_level = path.parent() == Some(src);
        let prefixes: &[&str] = if top_level { &["crate::", "super::"] } else { &["crate::"] };
        for prefix in prefixes {
            let used = text
                .match_indices(prefix)
                .map(|(i, _)| {
                    text[i + prefix.len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .filter(|m| *m != name && !m.is_empty());
            edges.entry(name.clone()).or_default().extend(used);
        }
    }
    edges
}

fn assert_acyclic(krate: &str, edges: &BTreeMap<String, BTreeSet<String>>) {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            return Some(path[i..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, edges, &mut Vec::new(), &mut done) {
            panic!("{krate}: modules import each other in a circle: {}", cycle.join(" -> "));
        }
    }
}

// `lib.rs` declares the modules and `main.rs` is the binary; neither is
// part of a module graph.
fn module_graph(dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir).join("src");
    let mut edges = module_edges(&root);
    edges.remove("lib");
    edges.remove("main");
    edges
}

#[test]
fn no_import_circles_inside_the_service_or_the_cli() {
    assert_acyclic("server", &module_graph("server"));
    assert_acyclic("cli", &module_graph("server/cli"));
}

/// The ledger's engine boundary (issue 20): the engines (`log_store`: the
/// embedded file engine, `pg`: PostgreSQL, `store`: an older release's
/// sled store, read to migrate it) implement `engine::Engine` and know nothing of each
/// other; the writer, the ledger's reads and verification know only the
/// trait. Only construction (`lib`), offline verification of each kind of
/// store (`verify`) and `migrate`, which copies one into the other, name
/// an engine.
#[test]
fn the_ledgers_engines_know_only_the_engine_boundary() {
    let graph = module_graph("ingest/ledger");
    assert_acyclic("ledger", &graph);
    for (module, engines) in &graph {
        for engine in ["log_store", "store", "pg"] {
            if engines.contains(engine) {
                assert!(
                    ["verify", "migrate", "tests"].contains(&module.as_str()),
                    "ledger: {module} names the {engine} engine; go through engine::Engine"
                );
            }
        }
    }
    assert!(
        graph["engine"]
            .iter()
            .all(|m| !["log_store", "store", "pg", "writer", "verify"].contains(&m.as_str()))
    );
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// What a transport (the web page, gRPC) must not name: the ledger and the
/// stores behind the door, and the authorization decisions (`auth::may_*`,
/// the page's reader), which are taken inside the door only.
const BEHIND_THE_DOOR: [&str; 10] = [
    ".ledger()",
    // The ledger crate's handle (not gRPC's own `self::ledger::LedgerService`).
    " ledger::Ledger",
    "&ledger::Ledger",
    "<ledger::Ledger",
    "crate::directory",
    "crate::events",
    "inquiries::",
    "may_",
    ".witnessing()",
    "Principal::public()",
];

/// Fails when a file of `server/src/<module>` names something behind the
/// door; answers how many files were checked.
fn assert_behind_the_door(module: &str, also: &[&str], exempt: &[&str]) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src").join(module);
    let files = rust_files(&dir);
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for f in BEHIND_THE_DOOR.iter().chain(also).filter(|f| !exempt.contains(f)) {
            assert!(!text.contains(f), "{} uses {f:?}; go through the Service door", path.display());
        }
    }
    files.len()
}

/// The web page is a transport like gRPC: its handlers reach data only
/// through the door (`Service` methods), never the stores or the
/// directory behind it, take no authorization decision of their own, and
/// build no HTML by string concatenation (the templates in
/// `server/templates/` escape every value).
#[test]
fn the_web_page_reaches_data_only_through_the_door() {
    let checked = assert_behind_the_door("web", &["crate::grpc", "format!(\"<", "push_str(\"<"], &[]);
    assert!(checked >= 5, "the web module's files were found");
    let edges = module_graph("server");
    // `metrics` counts requests and refusals, as it does for gRPC: no data.
    let allowed: BTreeSet<String> =
        ["auth", "error", "metrics", "principals", "service"].into_iter().map(str::to_owned).collect();
    let used = edges.get("web").cloned().unwrap_or_default();
    assert!(used.is_subset(&allowed), "the web module may use only {allowed:?}, uses {used:?}");
}

/// gRPC reaches the ledger and the authorization decisions through the
/// door only (`Service::public_key`, not the ledger's).
#[test]
fn grpc_reaches_the_ledger_and_auth_only_through_the_door() {
    let checked = assert_behind_the_door("grpc", &["crate::web"], &[]);
    assert!(checked >= 4, "the grpc module's files were found");
}
