//! Differential tests: stored-node proofs against the RFC reference, and
//! property tests that tampered proofs do not verify.

use std::collections::HashMap;

use proptest::prelude::*;

use super::super::error::{Error, Result};
use super::super::hash::Hash;
use super::super::proof;
use super::super::tree::{self, Frontier, NodeSource};
use super::{filled, leaves};

/// The nodes a store would hold for `leaves`, in memory.
struct MemoryNodes(HashMap<(u8, u64), Hash>);

impl MemoryNodes {
    fn new(leaves: &[Hash]) -> (MemoryNodes, Frontier) {
        let mut nodes = HashMap::new();
        let mut frontier = Frontier::default();
        for leaf in leaves {
            frontier.push(*leaf, |level, index, hash| {
                assert!(nodes.insert((level, index), hash).is_none(), "node written twice");
            });
        }
        (MemoryNodes(nodes), frontier)
    }
}

impl NodeSource for MemoryNodes {
    fn node(&self, level: u8, index: u64) -> Result<Hash> {
        self.0.get(&(level, index)).copied().ok_or(Error::NotFound { seq: index })
    }
}

const MAX: u64 = 40;

#[test]
fn tree_proofs_match_reference_up_to_40() {
    let all = leaves(MAX);
    for size in 0..=MAX {
        let leaves = &all[..size as usize];
        let (nodes, frontier) = MemoryNodes::new(leaves);
        let root = proof::root(leaves);
        assert_eq!(frontier.root(), root, "frontier root at size {size}");
        assert_eq!(tree::range_hash(&nodes, 0, size).unwrap(), root, "range root at size {size}");
        for seq in 0..size {
            let path = tree::inclusion_path(&nodes, seq, size).unwrap();
            assert_eq!(path, proof::inclusion_path(seq as usize, leaves), "inclusion {seq} in {size}");
            assert!(proof::verify_inclusion(&leaves[seq as usize], seq, size, &path, &root));
        }
        for from in 0..=size {
            let consistency = tree::consistency_proof(&nodes, from, size).unwrap();
            assert_eq!(
                consistency,
                proof::consistency_proof(from as usize, leaves),
                "consistency {from} -> {size}"
            );
            let from_root = proof::root(&leaves[..from as usize]);
            assert!(
                proof::verify_consistency(from, size, &from_root, &root, &consistency),
                "{from} -> {size}"
            );
        }
    }
}

#[tokio::test]
async fn store_proofs_match_reference_up_to_40() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = filled(dir.path(), MAX).await;
    let all = leaves(MAX);
    for to in 0..=MAX {
        let leaves = &all[..to as usize];
        let root = proof::root(leaves);
        assert_eq!(ledger.root_at(to).unwrap(), root, "root at {to}");
        for seq in 0..to {
            let path = ledger.inclusion_proof(seq, to).unwrap();
            assert_eq!(path, proof::inclusion_path(seq as usize, leaves), "inclusion {seq} in {to}");
            assert!(proof::verify_inclusion(&leaves[seq as usize], seq, to, &path, &root));
        }
        for from in 0..=to {
            let consistency = ledger.consistency_proof(from, to).unwrap();
            assert_eq!(
                consistency,
                proof::consistency_proof(from as usize, leaves),
                "consistency {from} -> {to}"
            );
        }
    }
}

#[tokio::test]
async fn proof_arguments_out_of_range_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = filled(dir.path(), 5).await;
    assert!(matches!(ledger.inclusion_proof(5, 5), Err(Error::OutOfRange(m)) if m.contains("seq 5")));
    assert!(matches!(ledger.inclusion_proof(0, 6), Err(Error::OutOfRange(m)) if m.contains("tree size 6")));
    assert!(matches!(ledger.consistency_proof(3, 2), Err(Error::InvalidArgument(_))));
    assert!(matches!(ledger.consistency_proof(2, 6), Err(Error::OutOfRange(_))));
    assert!(matches!(ledger.root_at(6), Err(Error::OutOfRange(_))));
    assert!(matches!(ledger.entry(5), Err(Error::NotFound { seq: 5 })));
    assert_eq!(ledger.scan(3, 100).count(), 2);
}

fn flip(proof: &[Hash], bit: usize) -> Vec<Hash> {
    let mut proof = proof.to_vec();
    let (hash, bit) = (bit / 256 % proof.len(), bit % 256);
    proof[hash][bit / 8] ^= 1 << (bit % 8);
    proof
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tampered_inclusion_proofs_fail(size in 1u64..=70, seq in any::<u64>(), bit in any::<usize>(), other in any::<u64>()) {
        let leaves = leaves(size);
        let seq = seq % size;
        let root = proof::root(&leaves);
        let path = proof::inclusion_path(seq as usize, &leaves);
        let leaf = &leaves[seq as usize];
        prop_assert!(proof::verify_inclusion(leaf, seq, size, &path, &root));
        if !path.is_empty() {
            prop_assert!(!proof::verify_inclusion(leaf, seq, size, &flip(&path, bit), &root));
        }
        // The same proof claimed for another position or another tree.
        let wrong_seq = other % size;
        if wrong_seq != seq {
            prop_assert!(!proof::verify_inclusion(leaf, wrong_seq, size, &path, &root));
        }
        let wrong_size = other % 80;
        if wrong_size != size {
            let wrong_root = proof::root(&super::leaves(wrong_size));
            prop_assert!(!proof::verify_inclusion(leaf, seq, wrong_size, &path, &wrong_root));
        }
        if let Some((_, shorter)) = path.split_last() {
            prop_assert!(!proof::verify_inclusion(leaf, seq, size, shorter, &root));
        }
    }

    #[test]
    fn tampered_consistency_proofs_fail(to in 2u64..=70, from in any::<u64>(), bit in any::<usize>(), other in any::<u64>()) {
        let leaves = leaves(to);
        let from = 1 + from % (to - 1);
        let (from_root, to_root) = (proof::root(&leaves[..from as usize]), proof::root(&leaves));
        let consistency = proof::consistency_proof(from as usize, &leaves);
        prop_assert!(proof::verify_consistency(from, to, &from_root, &to_root, &consistency));
        prop_assert!(!proof::verify_consistency(from, to, &from_root, &to_root, &flip(&consistency, bit)));
        let wrong_from = other % to;
        if wrong_from != from {
            let wrong_root = proof::root(&leaves[..wrong_from as usize]);
            prop_assert!(!proof::verify_consistency(wrong_from, to, &wrong_root, &to_root, &consistency));
        }
        let wrong_to = from + other % 80;
        if wrong_to != to {
            let wrong_root = proof::root(&super::leaves(wrong_to));
            prop_assert!(!proof::verify_consistency(from, wrong_to, &from_root, &wrong_root, &consistency));
        }
        prop_assert!(!proof::verify_consistency(from, to, &from_root, &to_root, &consistency[1..]));
    }
}
