//! Ledger: entries, signed checkpoints and proofs a client verifies on its
//! own, restarts, and the enterprise's view of entries.

use ecocode_proto::v1 as pb;
use ledger::{Hash, hash, note, proof};
use server::principals::Role;
use tonic::Code;

use crate::support::*;

fn hash32(bytes: &[u8]) -> Hash {
    bytes.try_into().expect("32-byte hash")
}

#[tokio::test]
async fn checkpoints_are_signed_notes_and_proofs_verify_against_them() {
    // About proofs any reader checks, not about grants: the lender reads
    // every entry as before grants existed.
    let server = TestServer::start_with(|c| c.lender_access = server::consent::LenderAccess::Open).await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    for i in 0..4 {
        admin.append(record(ACME, &format!("P-{i}"), "inspection.finding", -10 - i)).await.unwrap();
    }
    let bank = server.token("bank", Role::Lender);
    let mut bank = server.client(&bank).await;
    // Reads never sign; the service signs each new head on its timer.
    let signed = server.ledger.sign_checkpoint_now().unwrap();
    let old = bank.ledger.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap().into_inner();
    // The model entry, the registration, four records and the index entry ending it.
    assert_eq!((old.tree_size, old.signed_note.as_str()), (7, signed.note.as_str()));

    // The note verifies with the public key and states the same head.
    let key: [u8; 32] = old.public_key.as_slice().try_into().unwrap();
    let key_name = old.signed_note.rsplit("\n— ").next().unwrap().split(' ').next().unwrap().to_owned();
    let body = note::verify(&old.signed_note, &key_name, &key).expect("checkpoint verifies");
    let (_origin, size, root, chain) = note::parse_checkpoint(&body).unwrap();
    assert_eq!(
        (size, root.to_vec(), chain.to_vec()),
        (old.tree_size, old.root_hash.clone(), old.chain_hash.clone())
    );
    let mut tampered = old.signed_note.replace("\n7\n", "\n8\n");
    assert!(note::verify(&tampered, &key_name, &key).is_err());
    tampered.clear();

    // Every entry is included in the checkpoint's tree.
    for seq in 0..old.tree_size {
        let entry = bank.ledger.get_entry(pb::GetEntryRequest { seq }).await.unwrap().into_inner();
        let t = entry.recorded_at.unwrap();
        let leaf = hash::entry_hash(seq, t.seconds * 1_000_000_000 + i64::from(t.nanos), &entry.payload);
        assert_eq!(leaf.to_vec(), entry.entry_hash);
        let p = bank
            .ledger
            .get_inclusion_proof(pb::GetInclusionProofRequest { seq, tree_size: old.tree_size })
            .await
            .unwrap()
            .into_inner();
        let hashes: Vec<Hash> = p.hashes.iter().map(|h| hash32(h)).collect();
        assert!(proof::verify_inclusion(&leaf, seq, old.tree_size, &hashes, &hash32(&old.root_hash)));
    }

    // The ledger grows; the new checkpoint is consistent with the old.
    admin.append(record(ACME, "P-9", "penalty.warning", -1)).await.unwrap();
    let new = server.ledger.sign_checkpoint_now().unwrap();
    let p = bank
        .ledger
        .get_consistency_proof(pb::GetConsistencyProofRequest {
            from_size: old.tree_size,
            to_size: new.tree_size,
        })
        .await
        .unwrap()
        .into_inner();
    let hashes: Vec<Hash> = p.hashes.iter().map(|h| hash32(h)).collect();
    assert!(proof::verify_consistency(
        old.tree_size,
        new.tree_size,
        &hash32(&old.root_hash),
        &new.root,
        &hashes
    ));

    for (request, code) in [
        (pb::GetInclusionProofRequest { seq: 6, tree_size: 6 }, Code::OutOfRange),
        (pb::GetInclusionProofRequest { seq: 1, tree_size: 60 }, Code::OutOfRange),
    ] {
        assert_eq!(bank.ledger.get_inclusion_proof(request).await.unwrap_err().code(), code);
    }
    let err = bank
        .ledger
        .get_consistency_proof(pb::GetConsistencyProofRequest { from_size: 5, to_size: 3 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = bank.ledger.get_entry(pb::GetEntryRequest { seq: 600 }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn an_enterprise_reads_only_its_own_entries_and_sources_none() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    // Seq 0 is the model entry, published at start.
    admin.register(ACME, "Acme", "330206").await; // seq 1
    admin.register(BETA, "Beta", "330206").await; // seq 2
    let acme = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut acme = server.client(&acme).await;
    acme.ledger.get_entry(pb::GetEntryRequest { seq: 1 }).await.unwrap();
    let err = acme.ledger.get_entry(pb::GetEntryRequest { seq: 2 }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    acme.ledger.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap();

    let feed = server.token("feed", Role::Source { source: "x".into() });
    let err =
        server.client(&feed).await.ledger.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_every_entry_and_continues_the_sequence() {
    let server = TestServer::start().await;
    let admin_token = server.token("ops", Role::Admin);
    let mut admin = server.client(&admin_token).await;
    admin.register(ACME, "Acme", "330206").await;
    admin.append(record(ACME, "P-1", "penalty.fine", -10)).await.unwrap();
    let before = admin.score(ACME).await;
    let head = server.ledger.head();
    let dir = server.stop().await;

    let server = TestServer::start_in(dir).await;
    let mut admin = server.client(&admin_token).await; // principals survive too
    let after = admin.score(ACME).await;
    // Stopping ended the ledger with an index entry: the same score, at
    // the tree that holds it, and the tree before it unchanged.
    assert_eq!((after.points, after.tree_size), (before.points, before.tree_size + 1));
    assert_eq!(server.ledger.head().size, head.size + 1);
    assert_eq!(server.ledger.root_at(head.size).unwrap(), head.root);
    let next = admin.append(record(ACME, "P-2", "penalty.warning", -1)).await.unwrap();
    assert_eq!(next.seq, 4, "after the model entry, registration, P-1 and the index entry");
    let dup = admin.append(record(ACME, "P-1", "penalty.fine", -10)).await.unwrap();
    assert!(dup.duplicate, "the idempotency index survives a restart");
    server.stop().await;
}

#[tokio::test]
async fn a_server_refuses_to_start_on_a_rolled_back_store() {
    // The checkpoint file beside sled (on PostgreSQL the tamper tests of
    // `ledger` forge rows instead).
    let server = TestServer::start_on_sled().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    admin.append(record(ACME, "P-1", "penalty.fine", -10)).await.unwrap();
    let dir = server.stop().await; // signs a final checkpoint at size 4 (model entry, index entry)

    // Put back an older checkpoint claiming more than the store holds: the
    // store is now "shorter than what was signed" and must be refused.
    let checkpoint_path = dir.path().join("checkpoint");
    let note = std::fs::read_to_string(&checkpoint_path).unwrap();
    let forged = note.replacen("\n4\n", "\n5\n", 1);
    assert_ne!(note, forged);
    std::fs::write(&checkpoint_path, forged).unwrap();
    let Err((err, _dir)) = TestServer::try_start_in(dir).await else {
        panic!("a tampered store must not start")
    };
    let message = err.to_string();
    assert!(message.contains("checkpoint"), "{message}");
}

#[tokio::test]
async fn a_score_attestation_verifies_offline_and_names_what_was_scored() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    admin.append(record(ACME, "P-1", "penalty.fine", -10)).await.unwrap();
    // A bank reads under the enterprise's grant (--lender-access granted).
    grant(&mut admin, ACME, "bank").await;
    let bank = server.token("bank", Role::Lender);
    let mut bank = server.client(&bank).await;
    let attestation = bank
        .scores
        .get_attestation(pb::GetAttestationRequest { uscc: ACME.into(), as_of: None, tree_size: 0 })
        .await
        .unwrap()
        .into_inner();
    let score = attestation.score.unwrap();
    let key: [u8; 32] = attestation.public_key.as_slice().try_into().unwrap();
    let key_name = server.ledger.key_name().to_owned();
    let body = note::verify(&attestation.signed_note, &key_name, &key).expect("attestation verifies");
    let fields = tlog::attestation::Attestation::parse(&body).expect("attestation body parses").fields();
    let field = |k: &str| fields.iter().find(|(name, _)| *name == k).map(|(_, v)| v.as_str()).unwrap();
    assert_eq!(field("uscc"), ACME);
    assert_eq!(field("points"), "90");
    assert_eq!(field("code"), "GREEN");
    assert_eq!(field("grade"), "INTEGRITY");
    assert_eq!(field("model"), "ecocode-2026.2");
    assert_eq!(field("tree_size"), score.tree_size.to_string());
    // The verifier key `ecocode key show` prints verifies it as well.
    let (name, decoded) = note::decode_verifier_key(&server.ledger.verifier_key()).unwrap();
    assert_eq!((name.as_str(), decoded), (key_name.as_str(), key));

    // Changing what was attested breaks the signature.
    let forged = attestation.signed_note.replace("points 90", "points 99");
    assert!(note::verify(&forged, &key_name, &key).is_err());
    server.stop().await;
}

#[tokio::test]
async fn proof_bundles_verify_offline_and_fail_when_altered() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use tlog::bundle::{Bundle, Verified, encode_hashes, verify};
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    admin.append(record(ACME, "P-1", "penalty.fine", -10)).await.unwrap();
    let old = server.ledger.sign_checkpoint_now().unwrap();
    for i in 0..5 {
        admin.append(record(ACME, &format!("Q-{i}"), "inspection.finding", -i)).await.unwrap();
    }
    let new = server.ledger.sign_checkpoint_now().unwrap();
    let ledger = &server.ledger;
    let (key_name, key) = (ledger.key_name().to_owned(), ledger.public_key());
    let entry = ledger.entry(1).unwrap();
    let inclusion = Bundle::Inclusion {
        checkpoint: new.note.clone(),
        seq: 1,
        recorded_at_ns: entry.recorded_at_ns,
        payload: B64.encode(&entry.payload),
        hashes: encode_hashes(&ledger.inclusion_proof(1, new.tree_size).unwrap()),
    };
    assert!(matches!(
        verify(&inclusion, &key_name, &key),
        // Each size counts the model entry published at start.
        Ok(Verified::Inclusion { seq: 1, tree_size: 10, .. })
    ));
    let consistency = Bundle::Consistency {
        old_checkpoint: old.note.clone(),
        checkpoint: new.note.clone(),
        hashes: encode_hashes(&ledger.consistency_proof(old.tree_size, new.tree_size).unwrap()),
    };
    assert_eq!(
        verify(&consistency, &key_name, &key),
        Ok(Verified::Consistency { from_size: 4, to_size: 10 })
    );

    // A bundle survives a JSON round trip, and any altered part fails.
    let json = serde_json::to_string(&inclusion).unwrap();
    assert_eq!(serde_json::from_str::<Bundle>(&json).unwrap(), inclusion);
    let Bundle::Inclusion { checkpoint, seq, recorded_at_ns, payload, hashes } = inclusion.clone() else {
        unreachable!()
    };
    let mut flipped = entry.payload.clone();
    flipped[0] ^= 1;
    let bundle = |checkpoint: &str, seq: u64, recorded_at_ns: i64, payload: &str, hashes: &[String]| {
        Bundle::Inclusion {
            checkpoint: checkpoint.to_owned(),
            seq,
            recorded_at_ns,
            payload: payload.to_owned(),
            hashes: hashes.to_vec(),
        }
    };
    let altered = [
        bundle(&checkpoint, 2, recorded_at_ns, &payload, &hashes),
        bundle(&checkpoint, seq, recorded_at_ns + 1, &payload, &hashes),
        bundle(&checkpoint, seq, recorded_at_ns, &B64.encode(&flipped), &hashes),
        bundle(&checkpoint, seq, recorded_at_ns, &payload, &hashes[1..]),
        bundle(&checkpoint.replace("\n10\n", "\n11\n"), seq, recorded_at_ns, &payload, &hashes),
        Bundle::Consistency {
            old_checkpoint: new.note.clone(),
            checkpoint: old.note.clone(),
            hashes: vec![],
        },
    ];
    for bundle in altered {
        assert!(verify(&bundle, &key_name, &key).is_err(), "{bundle:?} must not verify");
    }
    server.stop().await;
}
