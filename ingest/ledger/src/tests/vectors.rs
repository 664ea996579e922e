//! The spec's test vectors (`tlog::vectors`), reproduced by a real store.

use tlog::vectors::*;

use super::super::{Ledger, LedgerConfig, NewEntry};
use super::{entry, hex};

#[tokio::test]
async fn spec_vectors_from_store() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    assert_eq!(hex(&ledger.root_at(0).unwrap()), MTH_EMPTY);
    assert_eq!(hex(&ledger.head().root), MTH_EMPTY);
    assert_eq!(ledger.head().chain, [0; 32]);

    // Two group commits, so the vectors also cover nodes written across them.
    // With the subjects of the index vectors, which the hashes above ignore.
    let batch = |range: std::ops::Range<u64>| {
        range
            .map(|i| (NewEntry { subject: index_subject(i).to_vec(), ..entry(payload(i)) }, recorded_at(i)))
            .collect()
    };
    let first = ledger.append_at(batch(0..3)).await.unwrap();
    ledger.append_at(batch(3..7)).await.unwrap();
    let receipt0 = first[0].as_ref().unwrap();
    assert_eq!(hex(&receipt0.entry_hash), ENTRY_0);
    assert_eq!(hex(&receipt0.chain_hash), CHAIN_0);

    assert_eq!(hex(&ledger.entry(0).unwrap().entry_hash), ENTRY_0);
    assert_eq!(hex(&ledger.chain_at(1).unwrap()), CHAIN_0);
    assert_eq!(hex(&ledger.chain_at(7).unwrap()), CHAIN_6);
    assert_eq!(hex(&ledger.head().chain), CHAIN_6);
    assert_eq!(hex(&ledger.root_at(2).unwrap()), MTH_2);
    assert_eq!(hex(&ledger.root_at(3).unwrap()), MTH_3);
    assert_eq!(hex(&ledger.root_at(7).unwrap()), MTH_7);
    assert_eq!(hex(&ledger.head().root), MTH_7);
    assert_eq!(hexes(&ledger.inclusion_proof(5, 7).unwrap()), INCLUSION_5_7);
    assert_eq!(hexes(&ledger.consistency_proof(3, 7).unwrap()), CONSISTENCY_3_7);

    // And again after a restart, from what sled kept; close ended the
    // ledger with the index entry of the index vectors.
    ledger.close().await.unwrap();
    drop(ledger);
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    assert_eq!(hex(&ledger.root_at(7).unwrap()), MTH_7);
    assert_eq!(ledger.head().size, 8);
    assert_eq!(ledger.entry(7).unwrap().payload, INDEX_PAYLOAD_7.as_bytes());
    let a = ledger.subject_index(b"A", 8).unwrap();
    assert_eq!((a.seqs, hexes(&a.proof.siblings)), (vec![0, 2, 4], INDEX_PROOF_A.map(String::from).to_vec()));
    assert_eq!(hex(&a.index_root), INDEX_ROOT_7);
    assert_eq!(hexes(&ledger.inclusion_proof(5, 7).unwrap()), INCLUSION_5_7);
    assert_eq!(hexes(&ledger.consistency_proof(3, 7).unwrap()), CONSISTENCY_3_7);
}
