//! RFC 9162 Merkle proofs: verification (what clients run) and an in-memory
//! reference generator over a slice of leaves (what tests compare against).
//!
//! The generators here follow the RFC's recursive definitions literally and
//! are O(n); the store answers the same questions in O(log² n) reads through
//! [`super::tree`]. Keeping both lets the tests check one against the other.

use crate::hash::{Hash, empty_root, node};

/// The largest power of two strictly smaller than `n` (`n >= 2`).
pub fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[n])` over the given leaves.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// `PATH(m, D[n])`, RFC 9162 §2.1.3.1. Panics if `m >= leaves.len()`.
pub fn inclusion_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    assert!(m < leaves.len(), "leaf {m} outside a tree of {}", leaves.len());
    let n = leaves.len();
    if n == 1 {
        return Vec::new();
    }
    let k = split_point(n as u64) as usize;
    if m < k {
        let mut path = inclusion_path(m, &leaves[..k]);
        path.push(root(&leaves[k..]));
        path
    } else {
        let mut path = inclusion_path(m - k, &leaves[k..]);
        path.push(root(&leaves[..k]));
        path
    }
}

/// `PROOF(m, D[n])`, RFC 9162 §2.1.4.1; empty when `m == 0` or `m == n`.
/// Panics if `m > leaves.len()`.
pub fn consistency_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    assert!(m <= leaves.len(), "size {m} beyond a tree of {}", leaves.len());
    if m == 0 || m == leaves.len() {
        return Vec::new();
    }
    subproof(m, leaves, true)
}

fn subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if whole { Vec::new() } else { vec![root(leaves)] };
    }
    let k = split_point(n as u64) as usize;
    if m <= k {
        let mut proof = subproof(m, &leaves[..k], whole);
        proof.push(root(&leaves[k..]));
        proof
    } else {
        let mut proof = subproof(m - k, &leaves[k..], false);
        proof.push(root(&leaves[..k]));
        proof
    }
}

/// RFC 9162 §2.1.3.2: does `proof` show that `leaf` is entry `seq` of the
/// tree of `tree_size` entries whose root is `root`?
pub fn verify_inclusion(leaf: &Hash, seq: u64, tree_size: u64, proof: &[Hash], root: &Hash) -> bool {
    if seq >= tree_size {
        return false;
    }
    let (mut fn_, mut sn) = (seq, tree_size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `from` entries with
/// root `from_root` is a prefix of the tree of `to` entries with root
/// `to_root`? The empty tree is a prefix of every tree (with an empty proof).
pub fn verify_consistency(from: u64, to: u64, from_root: &Hash, to_root: &Hash, proof: &[Hash]) -> bool {
    if from > to {
        return false;
    }
    if from == to {
        return proof.is_empty() && from_root == to_root;
    }
    if from == 0 {
        return proof.is_empty() && *from_root == empty_root();
    }
    if proof.is_empty() {
        return false;
    }
    // When `from` is a power of two its root is a node of the new tree
    // and the RFC leaves it out of the proof.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);

    let (mut fn_, mut sn) = (from - 1, to - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node(c, &fr);
            sr = node(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *from_root && sr == *to_root && sn == 0
}
