//! Cross-language vectors (`fixtures/vectors`): every checkpoint, proof
//! bundle and attestation there, genuine or tampered, gets the result its
//! manifest expects from the CLI's own `proof verify` / `attest verify` and
//! from the `tlog` crate. `clients/python/tests/test_vectors.py` runs the
//! Python verifier over the same files, so the two cannot drift apart.
//! The witness vectors name a tlog-policy file (and, for an attestation,
//! its checkpoint): they are verified with `--policy` (and `--checkpoint`).

use std::path::{Path, PathBuf};

use clap::Parser as _;
use cli::cli::{Cli, run};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/vectors")
}

struct Vector {
    file: String,
    kind: String,
    accept: bool,
    about: String,
    /// The tlog-policy file whose quorum the file must (not) meet.
    policy: Option<String>,
    /// For an attestation with a policy: the checkpoint of its tree.
    checkpoint: Option<String>,
}

fn manifest() -> (String, Vec<Vector>) {
    let dir = vectors_dir();
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("fixtures/vectors/manifest.json");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    let key_file = manifest["public_key"].as_str().expect("public_key names a file");
    let key = std::fs::read_to_string(dir.join(key_file)).expect("the public key file").trim().to_owned();
    let vectors = manifest["vectors"]
        .as_array()
        .expect("vectors is a list")
        .iter()
        .map(|v| Vector {
            file: v["file"].as_str().unwrap().to_owned(),
            kind: v["kind"].as_str().unwrap().to_owned(),
            accept: match v["expect"].as_str().unwrap() {
                "accept" => true,
                "reject" => false,
                other => panic!("expect is accept or reject, not {other}"),
            },
            about: v["about"].as_str().unwrap_or_default().to_owned(),
            policy: v["policy"].as_str().map(str::to_owned),
            checkpoint: v["checkpoint"].as_str().map(str::to_owned),
        })
        .collect();
    (key, vectors)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(vectors_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// What the tlog crate says about one file (with its policy's quorum, if any).
fn tlog_accepts(v: &Vector, text: &str, key_name: &str, key: &[u8; 32]) -> bool {
    let policy =
        v.policy.as_deref().map(|p| tlog::policy::Policy::parse(&read(p)).expect("the vector's policy"));
    let quorum = |checkpoint: &str| policy.as_ref().is_none_or(|p| p.verify(checkpoint).is_ok());
    match v.kind.as_str() {
        "checkpoint" => {
            tlog::note::verify(text, key_name, key)
                .and_then(|body| tlog::note::parse_checkpoint(&body))
                .is_ok()
                && quorum(text)
        }
        "attestation" => {
            let note = if text.trim().contains('\n') {
                Ok(text.to_owned())
            } else {
                tlog::attestation::note_from_qr_text(text)
            };
            let Ok(attestation) = note.and_then(|note| tlog::attestation::verify(&note, key_name, key))
            else {
                return false;
            };
            let Some(file) = &v.checkpoint else { return policy.is_none() };
            let head_note = read(file);
            let Ok(head) =
                tlog::note::verify(&head_note, key_name, key).and_then(|b| tlog::note::parse_checkpoint(&b))
            else {
                return false;
            };
            let (origin, size, root, _chain) = head;
            (origin.as_str(), size, root)
                == (attestation.origin.as_str(), attestation.tree_size, attestation.root)
                && quorum(&head_note)
        }
        "bundle" => serde_json::from_str::<tlog::bundle::Bundle>(text)
            .map(|bundle| {
                let (tlog::bundle::Bundle::Inclusion { checkpoint, .. }
                | tlog::bundle::Bundle::Consistency { checkpoint, .. }) = &bundle;
                tlog::bundle::verify(&bundle, key_name, key).is_ok() && quorum(checkpoint)
            })
            .unwrap_or(false),
        other => panic!("unknown vector kind {other}"),
    }
}

/// What the `ecocode` CLI says, through the same code path as the binary.
async fn cli_accepts(v: &Vector, path: &Path, key: &str) -> Option<bool> {
    let command = match v.kind.as_str() {
        "bundle" => "proof",
        "attestation" => "attest",
        _ => return None, // the CLI has no checkpoint verifier of its own
    };
    let mut args = vec!["ecocode".to_owned(), command.into(), "verify".into(), path.to_str().unwrap().into()];
    args.extend(["--public-key".into(), key.into()]);
    for (flag, file) in [("--policy", &v.policy), ("--checkpoint", &v.checkpoint)] {
        if let Some(file) = file {
            args.extend([flag.into(), vectors_dir().join(file).to_str().unwrap().into()]);
        }
    }
    let cli = Cli::try_parse_from(args).expect("the verify command parses");
    Some(run(cli.command).await.is_ok())
}

#[tokio::test]
async fn every_vector_gets_the_expected_verdict_from_the_cli_and_tlog() {
    let (key_text, vectors) = manifest();
    let (key_name, key) = tlog::note::decode_verifier_key(&key_text).expect("public.key is a verifier key");
    assert!(vectors.iter().any(|v| v.accept) && vectors.iter().any(|v| !v.accept));
    for kind in ["checkpoint", "attestation", "bundle"] {
        assert!(vectors.iter().any(|v| v.kind == kind && !v.accept), "no tampered {kind} vector");
    }
    let mut wrong = Vec::new();
    for v in &vectors {
        let path = vectors_dir().join(&v.file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", v.file));
        let by_tlog = tlog_accepts(v, &text, &key_name, &key);
        if by_tlog != v.accept {
            wrong.push(format!(
                "tlog {} {} ({})",
                if by_tlog { "accepts" } else { "rejects" },
                v.file,
                v.about
            ));
        }
        if let Some(by_cli) = cli_accepts(v, &path, &key_text).await
            && by_cli != v.accept
        {
            wrong.push(format!(
                "CLI {} {} ({})",
                if by_cli { "accepts" } else { "rejects" },
                v.file,
                v.about
            ));
        }
    }
    assert!(wrong.is_empty(), "verdicts differ from fixtures/vectors/manifest.json:\n{}", wrong.join("\n"));
}

#[test]
fn every_file_in_the_vectors_directory_is_in_the_manifest() {
    // A vector added by hand but not listed would be checked by neither side.
    let (_, vectors) = manifest();
    let listed: std::collections::BTreeSet<String> =
        vectors.into_iter().flat_map(|v| [Some(v.file), v.policy, v.checkpoint]).flatten().collect();
    let unlisted: Vec<String> = std::fs::read_dir(vectors_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| {
            let tooling =
                ["manifest.json", "public.key", "generate.sh", "witness.sh", "tamper.py", "README.md"];
            !tooling.contains(&name.as_str()) && !listed.contains(name)
        })
        .collect();
    assert!(unlisted.is_empty(), "files in fixtures/vectors not in manifest.json: {unlisted:?}");
}
