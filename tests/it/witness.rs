//! The witness (issue 22): a real `ecocode witness` HTTP server on
//! 127.0.0.1:0 over a real data directory, fed checkpoints and consistency
//! proofs of real ledgers (sled in temporary directories).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ledger::{Ledger, LedgerConfig, NewEntry};
use server::witness::{Witness, origin_hash, parse_log_key};
use server::witnessing::client;
use tlog::witness::encode_add_checkpoint;

const ORIGIN: &str = "ecocode.local/ledger";
const NAME: &str = "bank.example/witness";
const T: Duration = Duration::from_secs(10);

struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    vkey: String,
}

impl Running {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn add(&self, old: u64, proof: &[ledger::Hash], checkpoint: &str) -> client::Answer {
        let body = encode_add_checkpoint(old, proof, checkpoint);
        client::request("POST", &self.url(), "/add-checkpoint", &body, T).await.unwrap()
    }

    async fn get(&self, path: &str) -> client::Answer {
        client::request("GET", &self.url(), path, "", T).await.unwrap()
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap();
    }
}

async fn start_witness(dir: &Path, log_vkey: &str) -> Running {
    start_witness_at(dir, log_vkey, "127.0.0.1:0".parse().unwrap()).await
}

/// A witness on `addr` (port 0: any), e.g. back on its old port.
async fn start_witness_at(dir: &Path, log_vkey: &str, addr: SocketAddr) -> Running {
    let keys = vec![parse_log_key(&format!("{ORIGIN}={log_vkey}")).unwrap()];
    let witness = Witness::open(dir, NAME, keys).unwrap();
    let vkey = witness.verifier_key();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::witness::serve(listener, Arc::new(witness), async {
        let _ = stopped.await;
    }));
    Running { addr, stop, task, vkey }
}

fn open_ledger(dir: &Path) -> Ledger {
    Ledger::open(LedgerConfig::new(dir)).unwrap()
}

async fn append(ledger: &Ledger, tag: &str, n: usize) -> ledger::Checkpoint {
    let batch = (0..n)
        .map(|i| NewEntry {
            payload: format!("{tag}-{i}").into_bytes(),
            subject: Vec::new(),
            idempotency: None,
            details: Vec::new(),
        })
        .collect();
    ledger.append(batch).await.unwrap();
    ledger.sign_checkpoint_now().unwrap()
}

fn cosignature_of(answer: &client::Answer, checkpoint: &str, vkey: &str) -> u64 {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.starts_with("\u{2014} bank.example/witness "), "{}", answer.body);
    let (name, key) = tlog::cosignature::decode_verifier_key(vkey).unwrap();
    tlog::cosignature::verify(&format!("{checkpoint}{}", answer.body), &name, &key).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn add_checkpoint_answers_each_status_of_the_spec_and_a_restart_keeps_the_state() {
    let (log_dir, witness_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ledger = open_ledger(log_dir.path());
    let w = start_witness(witness_dir.path(), &ledger.verifier_key()).await;
    // Named by their records: each checkpoint also ends with an index entry.
    let cp3 = append(&ledger, "a", 3).await;
    let (s3, root3) = (cp3.tree_size, cp3.root);

    // 404: an origin the witness follows no key of.
    let seed = [9; 32];
    let stranger = tlog::note::sign(
        &tlog::note::checkpoint_body("stranger.example/log", s3, &root3, &cp3.chain),
        "stranger.example",
        &seed,
    )
    .unwrap();
    assert_eq!(w.add(0, &[], &stranger).await.status, 404);
    // 403: the right origin and key name, another key.
    let forged = tlog::note::sign(
        &tlog::note::checkpoint_body(ORIGIN, s3, &root3, &cp3.chain),
        ledger.key_name(),
        &seed,
    )
    .unwrap();
    assert_eq!(w.add(0, &[], &forged).await.status, 403);
    // 400: old larger than the checkpoint, and a malformed body.
    assert_eq!(w.add(s3 + 1, &[], &cp3.note).await.status, 400);
    let malformed = client::request("POST", &w.url(), "/add-checkpoint", "old x\n\n", T).await.unwrap();
    assert_eq!(malformed.status, 400);
    // 422: a proof where old is 0 must be empty.
    assert_eq!(w.add(0, &[[1; 32]], &cp3.note).await.status, 422);
    // 200: the first checkpoint, cosigned per tlog-cosignature v1.
    let first = w.add(0, &[], &cp3.note).await;
    let timestamp = cosignature_of(&first, &cp3.note, &w.vkey);
    assert!(timestamp > 1_700_000_000);

    let cp5 = append(&ledger, "b", 2).await;
    let s5 = cp5.tree_size;
    // 409: the witness is at cp3, and says so in text/x.tlog.size.
    let conflict = w.add(0, &[], &cp5.note).await;
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.content_type.as_deref(), Some("text/x.tlog.size"));
    assert_eq!(conflict.body, format!("{s3}\n"));
    // 422: a consistency proof that does not verify.
    assert_eq!(w.add(s3, &[[7; 32], [8; 32]], &cp5.note).await.status, 422);
    // 200 with the ledger's (BLAKE3) consistency proof.
    let proof = ledger.consistency_proof(s3, s5).unwrap();
    cosignature_of(&w.add(s3, &proof, &cp5.note).await, &cp5.note, &w.vkey);
    // The monitoring endpoint serves it with both signatures; 404 otherwise.
    let latest = w.get(&format!("/{}/checkpoint", origin_hash(ORIGIN))).await;
    assert_eq!(latest.status, 200);
    assert!(latest.body.starts_with(&cp5.note), "{}", latest.body);
    let (name, key) = tlog::cosignature::decode_verifier_key(&w.vkey).unwrap();
    tlog::cosignature::verify(&latest.body, &name, &key).unwrap();
    tlog::note::verify(&latest.body, ledger.key_name(), &ledger.public_key()).unwrap();
    assert_eq!(w.get(&format!("/{}/checkpoint", origin_hash("stranger.example/log"))).await.status, 404);

    // A restart loses nothing: the witness is still at cp5.
    let vkey = w.vkey.clone();
    w.stop().await;
    let w = start_witness(witness_dir.path(), &ledger.verifier_key()).await;
    assert_eq!(w.vkey, vkey, "the witness key is kept");
    let after = w.add(s3, &proof, &cp5.note).await;
    assert_eq!((after.status, after.body), (409, format!("{s5}\n")));
    let cp7 = append(&ledger, "c", 2).await;
    let proof = ledger.consistency_proof(s5, cp7.tree_size).unwrap();
    cosignature_of(&w.add(s5, &proof, &cp7.note).await, &cp7.note, &vkey);
    w.stop().await;
}

#[tokio::test]
async fn a_fork_of_a_copied_data_directory_is_refused_and_kept_as_evidence() {
    let (a_dir, b_dir, witness_dir) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open_ledger(a_dir.path());
    let w = start_witness(witness_dir.path(), &a.verifier_key()).await;
    // Named by their records: each checkpoint also ends with an index entry.
    let cp3 = append(&a, "shared", 3).await;
    let s3 = cp3.tree_size;
    cosignature_of(&w.add(0, &[], &cp3.note).await, &cp3.note, &w.vkey);
    // The operator copies the stopped data directory and runs both copies,
    // with the same key: one view for a bank, one for the regulator.
    a.close().await.unwrap();
    drop(a);
    copy_dir(a_dir.path(), b_dir.path());
    let (a, b) = (open_ledger(a_dir.path()), open_ledger(b_dir.path()));
    let a5 = append(&a, "for-the-bank", 2).await;
    let b5 = append(&b, "for-the-regulator", 2).await;
    assert_ne!(a5.root, b5.root);
    let s5 = a5.tree_size;
    assert_eq!(b5.tree_size, s5);

    cosignature_of(&w.add(s3, &a.consistency_proof(s3, s5).unwrap(), &a5.note).await, &a5.note, &w.vkey);
    // B's own proof is valid for B's tree, but the witness is at A's.
    let b_try = w.add(s3, &b.consistency_proof(s3, s5).unwrap(), &b5.note).await;
    assert_eq!((b_try.status, b_try.body), (409, format!("{s5}\n")));
    let fork = w.add(s5, &[], &b5.note).await;
    assert_eq!(fork.status, 422);
    assert!(fork.body.contains("fork"), "{}", fork.body);
    let b6 = append(&b, "later", 1).await;
    assert_eq!(w.add(s5, &b.consistency_proof(s5, b6.tree_size).unwrap(), &b6.note).await.status, 422);

    // Both views are kept, signed by the log's key, and survive a restart.
    w.stop().await;
    let w = start_witness(witness_dir.path(), &b.verifier_key()).await;
    let listed = w.get("/conflicts").await;
    assert_eq!(listed.status, 200);
    let conflicts: Vec<server::witness::Conflict> = serde_json::from_str(&listed.body).unwrap();
    assert_eq!(conflicts.len(), 2, "{conflicts:?}");
    assert_eq!(conflicts[0].kind, "fork");
    assert_eq!(conflicts[0].offered, b5.note);
    assert!(conflicts[0].cosigned.starts_with(&a5.note));
    assert_eq!(conflicts[1].kind, "inconsistent");
    assert_eq!(conflicts[1].offered, b6.note);
    let key = a.public_key();
    for note in [&conflicts[0].offered, &conflicts[0].cosigned] {
        tlog::note::verify(note, a.key_name(), &key).unwrap();
    }
    // The honest copy goes on being cosigned.
    let a7 = append(&a, "more", 2).await;
    cosignature_of(
        &w.add(s5, &a.consistency_proof(s5, a7.tree_size).unwrap(), &a7.note).await,
        &a7.note,
        &w.vkey,
    );
    w.stop().await;
}

/// `ecocode <args>` through the same code path as the binary.
async fn ecocode(args: &[&str]) -> anyhow::Result<()> {
    use clap::Parser as _;
    let cli = cli::cli::Cli::try_parse_from(std::iter::once("ecocode").chain(args.iter().copied()))?;
    cli::cli::run(cli.command).await
}

#[tokio::test]
async fn verifiers_enforce_the_policys_quorum_and_name_who_is_missing() {
    let (log_dir, files) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ledger = open_ledger(log_dir.path());
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut witnesses = Vec::new();
    for dir in &dirs {
        witnesses.push(start_witness(dir.path(), &ledger.verifier_key()).await);
    }
    let cp = append(&ledger, "e", 4).await;
    // The bank and the regulator cosign; the court's witness is not asked.
    let mut cosigned = cp.note.clone();
    for w in &witnesses[..2] {
        let answer = w.add(0, &[], &cp.note).await;
        cosignature_of(&answer, &cp.note, &w.vkey);
        cosigned.push_str(&answer.body);
    }
    let policy = |quorum: &str| {
        let path = files.path().join(format!("policy-{quorum}"));
        let text = format!(
            "log {}\nwitness bank {}\nwitness regulator {}\nwitness court {}\ngroup all3 {quorum} bank regulator court\nquorum all3\n",
            ledger.verifier_key(),
            witnesses[0].vkey,
            witnesses[1].vkey,
            witnesses[2].vkey,
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let (two_of_three, all) = (policy("2"), policy("all"));
    let bundle = |checkpoint: &str, name: &str| {
        let leaf_seq = 1;
        let entry = ledger.entry(leaf_seq).unwrap();
        let hashes = ledger.inclusion_proof(leaf_seq, cp.tree_size).unwrap();
        let b = tlog::bundle::Bundle::Inclusion {
            checkpoint: checkpoint.to_string(),
            seq: leaf_seq,
            recorded_at_ns: entry.recorded_at_ns,
            payload: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &entry.payload),
            hashes: tlog::bundle::encode_hashes(&hashes),
        };
        let path = files.path().join(name);
        std::fs::write(&path, serde_json::to_string(&b).unwrap()).unwrap();
        path
    };
    let (plain, witnessed) = (bundle(&cp.note, "plain.json"), bundle(&cosigned, "witnessed.json"));
    let key = ledger.verifier_key();
    let verify = |file: &Path, policy: Option<&Path>| {
        let mut args = vec![
            "proof".to_string(),
            "verify".into(),
            file.display().to_string(),
            "--public-key".into(),
            key.clone(),
        ];
        if let Some(p) = policy {
            args.extend(["--policy".into(), p.display().to_string()]);
        }
        async move { ecocode(&args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    // Without --policy: as before, the log's signature is enough.
    verify(&plain, None).await.unwrap();
    // With it: two of three cosigned, so 2-of-3 passes and "all" names the court.
    verify(&witnessed, Some(&two_of_three)).await.unwrap();
    let err = format!("{:#}", verify(&witnessed, Some(&all)).await.unwrap_err());
    assert!(err.contains("missing: court"), "{err}");
    let err = format!("{:#}", verify(&plain, Some(&two_of_three)).await.unwrap_err());
    assert!(err.contains("cosigned by nobody; missing: bank, regulator, court"), "{err}");

    // attest verify --policy needs the cosigned checkpoint of its tree.
    let attestation = tlog::attestation::Attestation {
        origin: ORIGIN.into(),
        uscc: "91330421739237858X".into(),
        points: 87,
        grade: "GOOD".into(),
        code: "GREEN".into(),
        veto: false,
        disputed: false,
        model: "ecocode-2026.1".into(),
        model_entry: None,
        as_of: "2026-11-26T09:00:00Z".into(),
        tree_size: cp.tree_size,
        root: cp.root,
    };
    let att = files.path().join("att.note");
    std::fs::write(&att, ledger.sign_note(&attestation.body()).unwrap()).unwrap();
    let (cp_plain, cp_witnessed) = (files.path().join("cp-plain"), files.path().join("cp-witnessed"));
    std::fs::write(&cp_plain, &cp.note).unwrap();
    std::fs::write(&cp_witnessed, &cosigned).unwrap();
    let a = att.display().to_string();
    ecocode(&["attest", "verify", &a, "--public-key", &key]).await.unwrap();
    let with = |policy: &Path, checkpoint: &Path| {
        let args = [
            "attest".to_string(),
            "verify".into(),
            a.clone(),
            "--public-key".into(),
            key.clone(),
            "--policy".into(),
            policy.display().to_string(),
            "--checkpoint".into(),
            checkpoint.display().to_string(),
        ];
        async move { ecocode(&args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    with(&two_of_three, &cp_witnessed).await.unwrap();
    let err = format!("{:#}", with(&two_of_three, &cp_plain).await.unwrap_err());
    assert!(err.contains("missing: bank, regulator, court"), "{err}");
    assert!(
        ecocode(&[
            "attest",
            "verify",
            &a,
            "--public-key",
            &key,
            "--policy",
            &two_of_three.display().to_string()
        ])
        .await
        .is_err(),
        "--policy without --checkpoint"
    );
    for w in witnesses {
        w.stop().await;
    }
}

#[tokio::test]
async fn the_log_publishes_only_checkpoints_a_quorum_of_its_witnesses_cosigned() {
    use crate::support::{TestServer, uscc};

    // The log's key exists before the log starts, so that the witnesses
    // can be told to trust it.
    let keys = tempfile::tempdir().unwrap();
    let seed = [42; 32];
    let key_file = keys.path().join("ledger.key");
    std::fs::write(&key_file, tlog::note::encode_signer_key("ecocode.local", &seed)).unwrap();
    let log_vkey = tlog::note::encode_verifier_key("ecocode.local", &tlog::note::public_key(&seed));
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut w = Vec::new();
    for dir in &dirs {
        w.push(Some(start_witness(dir.path(), &log_vkey).await));
    }
    let (addrs, vkeys): (Vec<SocketAddr>, Vec<String>) =
        w.iter().flatten().map(|r| (r.addr, r.vkey.clone())).unzip();
    let policy_text = format!(
        "log {log_vkey}\nwitness bank {} http://{}\nwitness regulator {} http://{}\nwitness court {} http://{}\n\
         group two-of-three 2 bank regulator court\nquorum two-of-three\n",
        vkeys[0], addrs[0], vkeys[1], addrs[1], vkeys[2], addrs[2]
    );
    let policy = tlog::policy::Policy::parse(&policy_text).unwrap();
    // The court's witness is down from the start.
    w[2].take().unwrap().stop().await;

    let server = TestServer::start_with(|c| {
        c.ledger.key_file = Some(key_file.clone());
        c.ledger.checkpoint_interval = Duration::from_millis(20);
        c.witness_policy = Some(policy.clone());
        c.witness_timeout = Duration::from_secs(5);
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.http_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let witnessing = server.service.witnessing().expect("started with a policy").clone();
    let mut status = witnessing.subscribe();
    let mut admin = server.admin().await;
    let bound = Duration::from_secs(60);
    // One of three down: still two cosign, so it is published.
    let first = admin.register(&uscc("91330421MA2AAAAA1"), "Alpha Dyeing", "330421").await;
    let size = first.seq + 1;
    tokio::time::timeout(bound, status.wait_for(|s| s.published_size.is_some_and(|p| p >= size)))
        .await
        .expect("published with one witness down")
        .unwrap();
    let cp = published(&mut admin).await;
    assert!(cp.tree_size >= size);
    let verdict = policy.verify(&cp.signed_note).unwrap();
    assert_eq!(verdict.cosigned, ["bank", "regulator"]);
    assert_eq!(verdict.missing, ["court"]);
    let court = &witnessing.figures()[2];
    assert!(court.failing.as_deref().is_some_and(|e| e.contains("connect")), "{court:?}");
    assert!(court.failures > 0);

    let scraped = crate::metrics::scrape(server.metrics.unwrap(), "/metrics").await;
    assert!(scraped.contains("ecocode_witness_up{witness=\"bank\"} 1"), "{scraped}");
    assert!(scraped.contains("ecocode_witness_up{witness=\"court\"} 0"), "{scraped}");
    assert!(!scraped.contains("ecocode_witness_failures_total{witness=\"court\"} 0\n"), "{scraped}");
    assert!(scraped.contains(&format!("ecocode_witnessed_checkpoint_size {}", cp.tree_size)), "{scraped}");

    // The public page shows who witnessed its checkpoint.
    let page = server.web().get(&format!("/e/{}", uscc("91330421MA2AAAAA1"))).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("witnessed by 2 of 3: bank, regulator"), "{}", page.body);

    // Two of three down: the new head is not published; the last one stays.
    w[1].take().unwrap().stop().await;
    let rounds = status.borrow().rounds;
    let second = admin.register(&uscc("91330421MA2BBBBB2"), "Beta Paper", "330421").await;
    tokio::time::timeout(bound, status.wait_for(|s| s.rounds > rounds)).await.unwrap().unwrap();
    let still = published(&mut admin).await;
    assert_eq!(still.tree_size, cp.tree_size, "a checkpoint without quorum must not be published");
    assert!(still.tree_size <= second.seq);
    assert_eq!(status.borrow().published_size, Some(cp.tree_size));
    // Appends did not wait: the receipt came back while the witnesses were down.
    assert!(second.seq >= size);

    // The regulator's witness comes back on its address: published again.
    w[1] = Some(start_witness_at(dirs[1].path(), &log_vkey, addrs[1]).await);
    let size = second.seq + 1;
    tokio::time::timeout(bound, status.wait_for(|s| s.published_size.is_some_and(|p| p >= size)))
        .await
        .expect("published once the quorum is back")
        .unwrap();
    let cp = published(&mut admin).await;
    assert!(cp.tree_size >= size);
    assert_eq!(policy.verify(&cp.signed_note).unwrap().cosigned, ["bank", "regulator"]);
    assert!(witnessing.figures()[1].failing.is_none());

    // A restart with every witness down still publishes the last witnessed
    // checkpoint, not the head the log signed at shutdown.
    let dir = server.stop().await;
    for r in w.into_iter().flatten() {
        r.stop().await;
    }
    let server = TestServer::start_with_in(dir, |c| {
        c.ledger.key_file = Some(key_file.clone());
        c.witness_policy = Some(policy.clone());
    })
    .await;
    let mut admin = server.admin().await;
    let again = published(&mut admin).await;
    assert_eq!(again.signed_note, cp.signed_note);
    server.stop().await;
}

async fn published(client: &mut crate::support::Client) -> ecocode_proto::v1::Checkpoint {
    let request = ecocode_proto::v1::GetCheckpointRequest {};
    client.ledger.get_checkpoint(request).await.unwrap().into_inner()
}

#[tokio::test]
async fn a_stalled_witness_outside_the_quorum_is_asked_but_cannot_hold_back_publication() {
    use crate::support::{TestServer, uscc};

    let keys = tempfile::tempdir().unwrap();
    let seed = [43; 32];
    let key_file = keys.path().join("ledger.key");
    std::fs::write(&key_file, tlog::note::encode_signer_key("ecocode.local", &seed)).unwrap();
    let log_vkey = tlog::note::encode_verifier_key("ecocode.local", &tlog::note::public_key(&seed));
    let dir = tempfile::tempdir().unwrap();
    let bank = start_witness(dir.path(), &log_vkey).await;
    // An observer that accepts connections and never answers.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalled_addr = stalled.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = stalled.accept().await {
            held.push(stream);
        }
    });
    let observer_vkey =
        tlog::cosignature::encode_verifier_key("observer.example", &tlog::note::public_key(&[44; 32]));
    let policy = tlog::policy::Policy::parse(&format!(
        "log {log_vkey}\nwitness bank {} http://{}\nwitness observer {observer_vkey} http://{stalled_addr}\nquorum bank\n",
        bank.vkey, bank.addr
    ))
    .unwrap();
    let server = TestServer::start_with(|c| {
        c.ledger.key_file = Some(key_file.clone());
        c.ledger.checkpoint_interval = Duration::from_millis(20);
        c.witness_policy = Some(policy.clone());
        // Each witness may take a minute; a round publishes after 300 ms.
        c.witness_timeout = Duration::from_secs(60);
        c.witness_publish_timeout = Duration::from_millis(300);
    })
    .await;
    let witnessing = server.service.witnessing().unwrap().clone();
    let mut status = witnessing.subscribe();
    let mut admin = server.admin().await;
    let receipt = admin.register(&uscc("91330421MA2CCCCC3"), "Gamma Chemicals", "330421").await;
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.published_size.is_some_and(|p| p > receipt.seq)),
    )
    .await
    .expect("published although the observer never answers")
    .unwrap();
    let cp = published(&mut admin).await;
    let verdict = policy.verify(&cp.signed_note).unwrap();
    assert_eq!((verdict.cosigned, verdict.missing), (vec!["bank".to_string()], vec!["observer".to_string()]));
    let observer = &witnessing.figures()[1];
    assert!(observer.failing.as_deref().is_some_and(|e| e.contains("publication timeout")), "{observer:?}");
    server.stop().await;
    bank.stop().await;
    holder.abort();
}

// On PostgreSQL each node ran its own rounds and published only what its
// own requests won, so two nodes could show different cosigned checkpoints.
// Now a node whose witness requests all fail still publishes, through the
// shared store, the very checkpoint the witnesses cosigned for another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_on_one_postgres_store_publish_the_same_witnessed_checkpoint() {
    use crate::support::{TestServer, uscc};

    let url = pgtest::database();
    let keys = tempfile::tempdir().unwrap();
    let seed = [44; 32];
    let key_file = keys.path().join("ledger.key");
    std::fs::write(&key_file, tlog::note::encode_signer_key("ecocode.local", &seed)).unwrap();
    let log_vkey = tlog::note::encode_verifier_key("ecocode.local", &tlog::note::public_key(&seed));
    let witness_dir = tempfile::tempdir().unwrap();
    let bank = start_witness(witness_dir.path(), &log_vkey).await;
    let policy_text = format!("log {log_vkey}\nwitness bank {} {}\nquorum bank\n", bank.vkey, bank.url());
    let policy = tlog::policy::Policy::parse(&policy_text).unwrap();
    let node = || {
        let (url, key_file, policy) = (url.clone(), key_file.clone(), policy.clone());
        TestServer::start_with(move |c| {
            c.ledger.store = Some(url);
            c.ledger.key_file = Some(key_file);
            c.ledger.checkpoint_interval = Duration::from_millis(20);
            c.witness_policy = Some(policy);
            c.witness_timeout = Duration::from_secs(5);
        })
    };
    let bound = Duration::from_secs(60);

    let a = node().await;
    let mut published_on_a = a.service.witnessing().expect("started with a policy").subscribe();
    let mut admin = a.admin().await;
    let first = admin.register(&uscc("91330421MA2AAAAA1"), "Alpha Dyeing", "330421").await;
    tokio::time::timeout(bound, published_on_a.wait_for(|s| s.published_size.is_some_and(|p| p > first.seq)))
        .await
        .expect("node a published")
        .unwrap();
    let on_a = published(&mut admin).await;

    // The witness goes away; a second node starts and cannot reach it.
    bank.stop().await;
    let b = node().await;
    let mut published_on_b = b.service.witnessing().expect("started with a policy").subscribe();
    tokio::time::timeout(
        bound,
        published_on_b.wait_for(|s| s.published_size.is_some_and(|p| p >= on_a.tree_size)),
    )
    .await
    .expect("node b took in the shared witnessed checkpoint")
    .unwrap();
    let on_b = published(&mut b.admin().await).await;
    assert_eq!(on_b.signed_note, on_a.signed_note, "both nodes publish the same cosigned checkpoint");
    assert_eq!(policy.verify(&on_b.signed_note).unwrap().cosigned, ["bank"]);
    b.stop().await;
    a.stop().await;
}
