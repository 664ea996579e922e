//! Checkpoints, signed notes and the key file.

use std::time::Duration;

use super::super::{Checkpoint, Ledger, LedgerConfig, note, proof, read_public_key};
use super::entry;

fn check_note(ledger: &Ledger, checkpoint: &Checkpoint) {
    let body = note::verify(&checkpoint.note, ledger.key_name(), &ledger.public_key()).unwrap();
    let (origin, size, root, chain) = note::parse_checkpoint(&body).unwrap();
    assert_eq!(origin, "ecocode.local/ledger");
    assert_eq!((size, root, chain), (checkpoint.tree_size, checkpoint.root, checkpoint.chain));
    assert_eq!(checkpoint.public_key, ledger.public_key());
}

#[tokio::test]
async fn checkpoints_across_restart_are_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let mut signed = Vec::new();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    signed.push(ledger.sign_checkpoint_now().unwrap());
    ledger.append(vec![entry("a"), entry("b"), entry("c")]).await.unwrap();
    signed.push(ledger.sign_checkpoint_now().unwrap());
    ledger.append(vec![entry("d")]).await.unwrap();
    ledger.close().await.unwrap();
    drop(ledger);

    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    // The final checkpoint written by close, loaded from disk.
    let loaded = ledger.checkpoint().unwrap();
    // 3 entries, an index entry, 1 entry, the index entry close wrote.
    assert_eq!(loaded.tree_size, 6);
    signed.push(loaded);
    for i in 0..5 {
        ledger.append(vec![entry(format!("after restart {i}"))]).await.unwrap();
    }
    signed.push(ledger.sign_checkpoint_now().unwrap());

    for checkpoint in &signed {
        check_note(&ledger, checkpoint);
        assert_eq!(ledger.root_at(checkpoint.tree_size).unwrap(), checkpoint.root);
        assert_eq!(ledger.chain_at(checkpoint.tree_size).unwrap(), checkpoint.chain);
    }
    for (i, a) in signed.iter().enumerate() {
        for b in &signed[i..] {
            let consistency = ledger.consistency_proof(a.tree_size, b.tree_size).unwrap();
            assert!(
                proof::verify_consistency(a.tree_size, b.tree_size, &a.root, &b.root, &consistency),
                "{} -> {}",
                a.tree_size,
                b.tree_size
            );
        }
    }
    assert_eq!(signed.iter().map(|c| c.tree_size).collect::<Vec<_>>(), [0, 4, 6, 12]);
}

#[tokio::test]
async fn checkpoint_respects_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LedgerConfig::new(dir.path());
    cfg.checkpoint_interval = Duration::from_secs(3600);
    let ledger = Ledger::open(cfg).unwrap();
    // A new ledger is signed at open, so reads never write.
    let first = ledger.checkpoint().unwrap();
    assert_eq!(first.tree_size, 0);
    ledger.append(vec![entry("x")]).await.unwrap();
    // Head moved but the interval has not passed: nothing new is signed,
    // and reading never signs.
    assert_eq!(ledger.sign_checkpoint_if_due().unwrap(), first);
    assert_eq!(ledger.checkpoint().unwrap(), first);
    // A writer asks for a checkpoint covering what it acknowledged.
    // It ends with the index entry appended for it.
    let covering = ledger.checkpoint_covering(1).unwrap();
    assert_eq!(covering.tree_size, 2);
    assert_eq!(ledger.checkpoint_covering(1).unwrap(), covering, "no second signature for the same head");
    assert_eq!(ledger.checkpoint_covering(2).unwrap(), covering, "the index entry is covered too");
    assert!(ledger.checkpoint_covering(3).is_err(), "cannot cover entries that do not exist");
    ledger.append(vec![entry("y")]).await.unwrap();
    let forced = ledger.sign_checkpoint_now().unwrap();
    assert_eq!(forced.tree_size, 4);
    assert_eq!(ledger.checkpoint().unwrap(), forced);
    let on_disk = std::fs::read_to_string(dir.path().join("checkpoint")).unwrap();
    assert_eq!(on_disk, forced.note);
}

#[tokio::test]
async fn a_due_checkpoint_is_signed_once_per_new_head() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LedgerConfig::new(dir.path());
    cfg.checkpoint_interval = Duration::ZERO;
    let ledger = Ledger::open(cfg).unwrap();
    let first = ledger.checkpoint().unwrap();
    assert_eq!(ledger.sign_checkpoint_if_due().unwrap(), first, "the head did not move");
    ledger.append(vec![entry("x")]).await.unwrap();
    let second = ledger.sign_checkpoint_if_due().unwrap();
    assert_eq!(second.tree_size, 2, "the entry and the index entry");
    assert_eq!(ledger.checkpoint().unwrap(), second);
}

#[tokio::test]
async fn checkpoint_note_has_the_spec_layout() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = super::filled(dir.path(), 7).await;
    let checkpoint = ledger.sign_checkpoint_now().unwrap();
    let lines: Vec<&str> = checkpoint.note.split('\n').collect();
    assert_eq!(lines[0], "ecocode.local/ledger");
    assert_eq!(lines[1], "8", "7 entries and the index entry");
    assert_eq!(lines[2].len(), 44);
    assert!(lines[3].starts_with("chain ") && lines[3].len() == 50);
    assert_eq!(lines[4], "");
    assert!(lines[5].starts_with("\u{2014} ecocode.local "));
    assert_eq!(lines[6], "");
    assert_eq!(lines.len(), 7);
}

#[cfg(unix)]
#[test]
fn key_file_is_private_and_readable() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    let path = dir.path().join("ledger.key");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(read_public_key(dir.path()).unwrap(), ledger.public_key());
    assert_eq!(read_public_key(&path).unwrap(), ledger.public_key());
    let verifier = dir.path().join("verifier.pub");
    std::fs::write(&verifier, ledger.verifier_key()).unwrap();
    assert_eq!(read_public_key(&verifier).unwrap(), ledger.public_key());
    let public = ledger.public_key();
    drop(ledger);
    // The same key after a restart.
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    assert_eq!(ledger.public_key(), public);
}

#[test]
fn configured_key_file_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let seed = [7u8; 32];
    let key_file = dir.path().join("service.key");
    std::fs::write(&key_file, note::encode_signer_key("bank-verify.example", &seed)).unwrap();
    let mut cfg = LedgerConfig::new(dir.path().join("data"));
    cfg.key_file = Some(key_file.clone());
    cfg.key_name = "bank-verify.example".into();
    let ledger = Ledger::open(cfg.clone()).unwrap();
    assert_eq!(ledger.public_key(), note::public_key(&seed));
    assert!(!dir.path().join("data/ledger.key").exists());
    drop(ledger);
    cfg.key_name = "other-name".into();
    assert!(matches!(Ledger::open(cfg), Err(super::super::Error::Key(_))));
}

#[test]
fn signed_notes_verify_only_unmodified() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    let body = "ecocode.local/score\n91330200MA2AXXXX1X\npoints 87\n";
    let signed = ledger.sign_note(body).unwrap();
    assert_eq!(note::verify(&signed, ledger.key_name(), &ledger.public_key()).unwrap(), body);
    // Missing final newline is added, and the note says what was signed.
    let signed_no_newline = ledger.sign_note("abc").unwrap();
    assert_eq!(note::verify(&signed_no_newline, "ecocode.local", &ledger.public_key()).unwrap(), "abc\n");

    let altered = signed.replace("points 87", "points 97");
    assert!(note::verify(&altered, ledger.key_name(), &ledger.public_key()).is_err());
    let other_key = note::public_key(&[1; 32]);
    assert!(note::verify(&signed, ledger.key_name(), &other_key).is_err());
    assert!(note::verify(&signed, "someone-else", &ledger.public_key()).is_err());
    // A co-signature by an unknown key is ignored, as signed-note asks.
    let cosigned = format!("{signed}\u{2014} witness.example AAAAAAAA\n");
    assert_eq!(note::verify(&cosigned, ledger.key_name(), &ledger.public_key()).unwrap(), body);
}

#[test]
fn key_id_is_the_spec_prefix() {
    use sha2::{Digest, Sha256};
    let public = note::public_key(&[9; 32]);
    let mut input = b"ecocode.local\n\x01".to_vec();
    input.extend_from_slice(&public);
    let digest = Sha256::digest(&input);
    assert_eq!(note::key_id("ecocode.local", &public), digest[..4]);
}

/// A closed ledger frees its directory at once, even while a handle that
/// only reads it is still alive (a server's last in-flight read), and that
/// handle can no longer sign; a second open of a live ledger is refused.
#[tokio::test]
async fn close_frees_the_directory_while_readers_live() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    ledger.append(vec![entry("a")]).await.unwrap();
    let refused = Ledger::open(LedgerConfig::new(dir.path())).unwrap_err();
    assert!(refused.to_string().contains("in use by another ledger"), "{refused}");

    let reader = ledger.clone();
    ledger.close().await.unwrap();
    let reopened = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    assert_eq!(reader.entry(0).unwrap().payload, b"a");
    assert!(reader.sign_checkpoint_now().is_err());
    reopened.append(vec![entry("b")]).await.unwrap();
    assert_eq!(reopened.head().size, 3, "a, the index entry close appended, b");
}
