//! The Merkle tree over stored complete subtrees: the append frontier and
//! O(log² n) roots and proofs, independent of the storage engine.
//!
//! Every complete subtree (2^level leaves starting at a multiple of 2^level)
//! is stored once, as node `(level, index)`; level 0 holds the entry hashes.
//! Any range the RFC 9162 recursion asks for starts at a multiple of the
//! smallest power of two not below its length, so it splits into O(log n)
//! stored nodes and no leaf is ever re-read to answer a proof.

use super::error::Result;
use super::hash::{Hash, empty_root, node};
use super::proof::split_point;

/// Where stored complete-subtree hashes come from (tile files or PostgreSQL rows; anything
/// keyed by `(level, index)` tomorrow).
pub(crate) trait NodeSource {
    /// Node `(level, index)`, covering leaves `[index << level, (index + 1) << level)`.
    fn node(&self, level: u8, index: u64) -> Result<Hash>;
}

/// `MTH(D[start:end])` for a range the RFC recursion can produce.
pub(crate) fn range_hash(src: &dyn NodeSource, start: u64, end: u64) -> Result<Hash> {
    let n = end - start;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() {
        let level = n.trailing_zeros();
        debug_assert_eq!(start % n, 0, "unaligned range {start}..{end}");
        return src.node(level as u8, start >> level);
    }
    let k = split_point(n);
    Ok(node(&range_hash(src, start, start + k)?, &range_hash(src, start + k, end)?))
}

/// `PATH(m, D[0:size])` (RFC 9162 §2.1.3.1), read from stored nodes.
pub(crate) fn inclusion_path(src: &dyn NodeSource, m: u64, size: u64) -> Result<Vec<Hash>> {
    debug_assert!(m < size);
    // Walk down from the root, remembering the sibling at each split; the
    // proof lists them bottom-up.
    let mut siblings = Vec::new();
    let (mut start, mut end) = (0, size);
    while end - start > 1 {
        let k = split_point(end - start);
        if m < start + k {
            siblings.push(range_hash(src, start + k, end)?);
            end = start + k;
        } else {
            siblings.push(range_hash(src, start, start + k)?);
            start += k;
        }
    }
    siblings.reverse();
    Ok(siblings)
}

/// `PROOF(m, D[0:size])` (RFC 9162 §2.1.4.1); empty when `m == 0` or `m == size`.
pub(crate) fn consistency_proof(src: &dyn NodeSource, m: u64, size: u64) -> Result<Vec<Hash>> {
    debug_assert!(m <= size);
    if m == 0 || m == size {
        return Ok(Vec::new());
    }
    let mut proof = Vec::new();
    let (mut start, mut end, mut m, mut whole) = (0, size, m, true);
    loop {
        let n = end - start;
        if m == n {
            if !whole {
                proof.push(range_hash(src, start, end)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            proof.push(range_hash(src, start + k, end)?);
            end = start + k;
        } else {
            proof.push(range_hash(src, start, start + k)?);
            start += k;
            m -= k;
            whole = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The right edge of the tree: one complete subtree hash per set bit of
/// `size`. Appending touches only this, so an append costs O(log n) hashing
/// and no reads.
#[derive(Clone, Debug, Default)]
pub(crate) struct Frontier {
    size: u64,
    /// `levels[l]` is meaningful only while bit `l` of `size` is set.
    levels: Vec<Hash>,
}

impl Frontier {
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Appends leaf `self.size()`, reporting every node that became
    /// complete, the leaf itself (level 0) first.
    pub(crate) fn push(&mut self, leaf: Hash, mut completed: impl FnMut(u8, u64, Hash)) {
        let mut index = self.size;
        completed(0, index, leaf);
        let mut carry = leaf;
        let mut level = 0usize;
        while self.size >> level & 1 == 1 {
            carry = node(&self.levels[level], &carry);
            level += 1;
            index >>= 1;
            completed(level as u8, index, carry);
        }
        if self.levels.len() <= level {
            self.levels.resize(level + 1, [0; 32]);
        }
        self.levels[level] = carry;
        self.size += 1;
    }

    /// `MTH(D[0:size])`: the pending subtrees folded from the smallest up.
    pub(crate) fn root(&self) -> Hash {
        let mut acc: Option<Hash> = None;
        for (level, hash) in self.levels.iter().enumerate() {
            if self.size >> level & 1 == 1 {
                acc = Some(match acc {
                    None => *hash,
                    Some(right) => node(hash, &right),
                });
            }
        }
        acc.unwrap_or_else(empty_root)
    }
}

/// The hashes of tlog-tiles tile `index` at tile level `level`, its first
/// `count`: tile level `L` is binary level `8 L`, so each is one stored node.
/// The caller checks that the tree holds them.
pub(crate) fn tile_hashes(src: &dyn NodeSource, level: u8, index: u64, count: u64) -> Result<Vec<Hash>> {
    let binary_level = level.checked_mul(8).filter(|l| *l < 64).ok_or_else(|| {
        super::error::Error::OutOfRange(format!("tile level {level} is beyond any tree of 2^64 entries"))
    })?;
    let first = index.checked_mul(tlog::tiles::TILE_WIDTH).ok_or_else(|| {
        super::error::Error::OutOfRange(format!("tile index {index} is beyond any tree of 2^64 entries"))
    })?;
    (first..first + count).map(|i| src.node(binary_level, i)).collect()
}
