//! The subject index: a compact sparse Merkle tree (binary Patricia trie)
//! over every subject of the ledger, committing to the exact list of
//! `(seq, entry hash)` about each one. An index entry that ends every
//! signed checkpoint carries its root, so "these are *all* the entries
//! about X below size N" is provable (`docs/ledger.md`, "The subject
//! index").
//!
//! Hashes (BLAKE3, one prefix byte per use, after those of [`crate::hash`]):
//!
//! * `key(subject) = BLAKE3(0x03 ‖ subject)`, bits read MSB first;
//! * `seqs_0 = 32 zero bytes`, `seqs_i = BLAKE3(0x04 ‖ seqs_{i-1} ‖
//!   u64_be(seq_i) ‖ entry_hash_i)`: the chain over a subject's entries;
//! * `leaf = BLAKE3(0x05 ‖ key ‖ u64_be(count) ‖ seqs)`;
//! * `node(S, d)`: 32 zero bytes for no leaf, the leaf's hash for one,
//!   else `BLAKE3(0x06 ‖ node(S₀, d+1) ‖ node(S₁, d+1))` where `S_b` are the
//!   leaves whose key has bit `d` equal to `b`; the root is `node(all, 0)`.
//!
//! [`Tree`] is immutable and shares structure: [`Tree::apply`] copies only
//! the paths it changes and hashes each changed node once per batch, so a
//! group commit costs O(log n) hashes per touched subject and a snapshot
//! costs one `Arc` clone. [`Builder`] folds entries in seq order into one.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::hash::{Hash, ZERO};

const KEY_PREFIX: u8 = 0x03;
const SEQS_PREFIX: u8 = 0x04;
const LEAF_PREFIX: u8 = 0x05;
const NODE_PREFIX: u8 = 0x06;

/// The hash of an empty subtree (and the root of an index of no subjects).
pub const EMPTY: Hash = ZERO;

/// Keys are 256 bits, so no path is longer.
pub const MAX_DEPTH: usize = 256;

/// `BLAKE3(0x03 ‖ subject)`: where a subject's leaf lives.
pub fn key(subject: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[KEY_PREFIX]);
    hasher.update(subject);
    *hasher.finalize().as_bytes()
}

/// Bit `depth` of `key`, most significant bit of byte 0 first.
pub fn bit(key: &Hash, depth: usize) -> bool {
    key[depth / 8] & (0x80 >> (depth % 8)) != 0
}

/// `BLAKE3(0x04 ‖ prev ‖ u64_be(seq) ‖ entry_hash)`: one step of a
/// subject's seq chain.
pub fn seqs_step(prev: &Hash, seq: u64, entry_hash: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[SEQS_PREFIX]);
    hasher.update(prev);
    hasher.update(&seq.to_be_bytes());
    hasher.update(entry_hash);
    *hasher.finalize().as_bytes()
}

/// `BLAKE3(0x06 ‖ left ‖ right)`: an interior node of the index.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    *hasher.finalize().as_bytes()
}

/// What the index says about one subject: how many entries and the chain
/// over their `(seq, entry hash)` in seq order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Value {
    pub count: u64,
    pub seqs: Hash,
}

impl Value {
    /// The value of a subject whose entries are `entries` (`(seq, entry
    /// hash)`), which must be in ascending seq order; `Err` names the first
    /// seq that is not.
    pub fn of<'a>(entries: impl IntoIterator<Item = (u64, &'a Hash)>) -> Result<Value> {
        let mut value = Value::default();
        let mut last = None;
        for (seq, entry_hash) in entries {
            if last.is_some_and(|last| seq <= last) {
                return Err(Error::Invalid(format!(
                    "index: seq {seq} does not ascend (it follows seq {})",
                    last.unwrap_or_default()
                )));
            }
            last = Some(seq);
            value.push(seq, entry_hash);
        }
        Ok(value)
    }

    /// Appends one entry (the caller keeps seqs ascending).
    pub fn push(&mut self, seq: u64, entry_hash: &Hash) {
        self.count += 1;
        self.seqs = seqs_step(&self.seqs, seq, entry_hash);
    }

    /// `BLAKE3(0x05 ‖ key ‖ u64_be(count) ‖ seqs)`.
    pub fn leaf_hash(&self, key: &Hash) -> Hash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&[LEAF_PREFIX]);
        hasher.update(key);
        hasher.update(&self.count.to_be_bytes());
        hasher.update(&self.seqs);
        *hasher.finalize().as_bytes()
    }
}

#[derive(Debug)]
enum Node {
    Leaf { key: Hash, value: Value, hash: Hash },
    Inner { left: Option<Arc<Node>>, right: Option<Arc<Node>>, hash: Hash },
}

impl Node {
    fn hash(&self) -> Hash {
        match self {
            Node::Leaf { hash, .. } | Node::Inner { hash, .. } => *hash,
        }
    }

    fn leaf(key: Hash, value: Value) -> Arc<Node> {
        Arc::new(Node::Leaf { hash: value.leaf_hash(&key), key, value })
    }

    fn inner(left: Option<Arc<Node>>, right: Option<Arc<Node>>) -> Arc<Node> {
        let hash = node_hash(&hash_of(left.as_ref()), &hash_of(right.as_ref()));
        Arc::new(Node::Inner { left, right, hash })
    }
}

fn hash_of(node: Option<&Arc<Node>>) -> Hash {
    node.map_or(EMPTY, |n| n.hash())
}

/// Where the first key with bit `depth` set starts in `sorted` (all of
/// which share the bits before `depth`).
fn split(sorted: &[(Hash, Value)], depth: usize) -> usize {
    sorted.partition_point(|(key, _)| !bit(key, depth))
}

/// Changes at least this large are hashed on two threads: the two halves
/// of the tree under the root are independent (a commit after a second of
/// ingest into a province touches most of its subjects).
const PARALLEL_UPDATES: usize = 4096;

/// `(a(), b())`, on two threads when `parallel` and the work is at the
/// top of the tree.
fn both<A: Send, B: Send>(
    parallel: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if !parallel {
        return (a(), b());
    }
    std::thread::scope(|scope| {
        let a = scope.spawn(a);
        let b = b();
        (a.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), b)
    })
}

/// The subtree at `depth` over `leaves` (sorted, distinct keys).
fn build(leaves: &[(Hash, Value)], depth: usize) -> Option<Arc<Node>> {
    match leaves {
        [] => None,
        [(key, value)] => Some(Node::leaf(*key, *value)),
        _ => {
            let at = split(leaves, depth);
            let parallel = depth == 0 && leaves.len() >= PARALLEL_UPDATES;
            let (left, right) =
                both(parallel, || build(&leaves[..at], depth + 1), || build(&leaves[at..], depth + 1));
            Some(Node::inner(left, right))
        }
    }
}

/// `node` at `depth` with `updates` (sorted, distinct keys, all on this
/// node's path) set; untouched subtrees are shared, touched ones hashed
/// once. Also answers how many of the keys were not in `node`.
fn apply(node: Option<&Arc<Node>>, depth: usize, updates: &[(Hash, Value)]) -> (Option<Arc<Node>>, u64) {
    if updates.is_empty() {
        return (node.cloned(), 0);
    }
    let count = updates.len() as u64;
    match node.map(|n| &**n) {
        None => (build(updates, depth), count),
        Some(Node::Leaf { key, value, .. }) => {
            if updates.binary_search_by(|(k, _)| k.cmp(key)).is_ok() {
                (build(updates, depth), count - 1)
            } else {
                let mut merged = updates.to_vec();
                let at = merged.partition_point(|(k, _)| k < key);
                merged.insert(at, (*key, *value));
                (build(&merged, depth), count)
            }
        }
        Some(Node::Inner { left, right, .. }) => {
            let at = split(updates, depth);
            let parallel = depth == 0 && updates.len() >= PARALLEL_UPDATES;
            let ((left, new_left), (right, new_right)) = both(
                parallel,
                || apply(left.as_ref(), depth + 1, &updates[..at]),
                || apply(right.as_ref(), depth + 1, &updates[at..]),
            );
            (Some(Node::inner(left, right)), new_left + new_right)
        }
    }
}

/// [`apply`] on `node` itself: nodes nobody else holds (no older version
/// of the index shares them) are updated where they are, without
/// allocating; shared ones are copied as `apply` does.
fn apply_in_place(node: &mut Option<Arc<Node>>, depth: usize, updates: &[(Hash, Value)]) -> u64 {
    if updates.is_empty() {
        return 0;
    }
    let (left, right, hash) = match node.as_mut().and_then(Arc::get_mut) {
        Some(Node::Inner { left, right, hash }) => (left, right, hash),
        Some(Node::Leaf { key, value, hash }) if updates.len() == 1 && updates[0].0 == *key => {
            *value = updates[0].1;
            *hash = value.leaf_hash(key);
            return 0;
        }
        _ => {
            let (updated, new) = apply(node.as_ref(), depth, updates);
            *node = updated;
            return new;
        }
    };
    let at = split(updates, depth);
    let parallel = depth == 0 && updates.len() >= PARALLEL_UPDATES;
    let (new_left, new_right) = both(
        parallel,
        || apply_in_place(left, depth + 1, &updates[..at]),
        || apply_in_place(right, depth + 1, &updates[at..]),
    );
    *hash = node_hash(&hash_of(left.as_ref()), &hash_of(right.as_ref()));
    new_left + new_right
}

/// `updates` sorted by key, the last of equal keys kept.
fn sorted_unique(updates: impl IntoIterator<Item = (Hash, Value)>) -> Vec<(Hash, Value)> {
    let mut updates: Vec<(Hash, Value)> = updates.into_iter().collect();
    // Stable sort, then keep the last of equal keys.
    updates.sort_by_key(|update| update.0);
    let mut unique: Vec<(Hash, Value)> = Vec::with_capacity(updates.len());
    for update in updates {
        match unique.last_mut() {
            Some(last) if last.0 == update.0 => *last = update,
            _ => unique.push(update),
        }
    }
    unique
}

/// One version of the index: immutable, cheap to clone (structure shared).
#[derive(Clone, Debug, Default)]
pub struct Tree {
    root: Option<Arc<Node>>,
    subjects: u64,
}

impl Tree {
    /// The index of these subjects' values, built from scratch.
    pub fn from_values(values: impl IntoIterator<Item = (Hash, Value)>) -> Tree {
        let mut leaves: Vec<(Hash, Value)> = values.into_iter().collect();
        leaves.sort_by_key(|leaf| leaf.0);
        leaves.dedup_by(|later, earlier| later.0 == earlier.0);
        Tree { root: build(&leaves, 0), subjects: leaves.len() as u64 }
    }

    /// This index with `updates` (`(key, value)`) set, sharing everything
    /// they do not touch. A key given twice keeps its last value.
    pub fn apply(&self, updates: impl IntoIterator<Item = (Hash, Value)>) -> Tree {
        let unique = sorted_unique(updates);
        let (root, new) = apply(self.root.as_ref(), 0, &unique);
        Tree { root, subjects: self.subjects + new }
    }

    /// [`Tree::apply`] to this version itself: what no other version
    /// shares is updated in place.
    fn apply_in_place(&mut self, updates: impl IntoIterator<Item = (Hash, Value)>) {
        let unique = sorted_unique(updates);
        self.subjects += apply_in_place(&mut self.root, 0, &unique);
    }

    /// The root hash: [`EMPTY`] for no subjects.
    pub fn root(&self) -> Hash {
        hash_of(self.root.as_ref())
    }

    /// How many subjects have a leaf.
    pub fn subjects(&self) -> u64 {
        self.subjects
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &Hash) -> Option<Value> {
        let mut node = self.root.as_ref();
        let mut depth = 0;
        while let Some(current) = node {
            match &**current {
                Node::Leaf { key: found, value, .. } => return (found == key).then_some(*value),
                Node::Inner { left, right, .. } => {
                    node = if bit(key, depth) { right.as_ref() } else { left.as_ref() };
                    depth += 1;
                }
            }
        }
        None
    }

    /// The subject's value (if it has entries) and the proof of it (or of
    /// its absence) against [`Tree::root`].
    pub fn prove(&self, subject: &[u8]) -> (Option<Value>, Proof) {
        let key = key(subject);
        let mut siblings = Vec::new();
        let mut node = self.root.as_ref();
        let mut depth = 0;
        loop {
            match node.map(|n| &**n) {
                None => return (None, Proof { siblings, end: End::Empty }),
                Some(Node::Leaf { key: found, value, .. }) => {
                    return if *found == key {
                        (Some(*value), Proof { siblings, end: End::Member })
                    } else {
                        (None, Proof { siblings, end: End::Other { key: *found, value: *value } })
                    };
                }
                Some(Node::Inner { left, right, .. }) => {
                    let (next, other) = if bit(&key, depth) { (right, left) } else { (left, right) };
                    siblings.push(hash_of(other.as_ref()));
                    node = next.as_ref();
                    depth += 1;
                }
            }
        }
    }
}

/// Where a proof's path ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// At the subject's own leaf: membership, with the value the verifier
    /// recomputes from the subject's entries.
    Member,
    /// At an empty subtree: the subject has no entries.
    Empty,
    /// At another subject's leaf (key and value given so its leaf hash is
    /// recomputed): the subject has no entries.
    Other { key: Hash, value: Value },
}

/// A path from the root down to where `subject`'s leaf is (or would be).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// The sibling of each node on the path, from depth 0 down; its length
    /// is the depth of the path's end (at most [`MAX_DEPTH`]).
    pub siblings: Vec<Hash>,
    pub end: End,
}

impl Proof {
    /// Checks that in the index of root `root`, `subject` has exactly
    /// `value` (`None`: no entries at all). `Err` says what disagrees.
    pub fn verify(&self, root: &Hash, subject: &[u8], value: Option<&Value>) -> Result<()> {
        let key = key(subject);
        let depth = self.siblings.len();
        if depth > MAX_DEPTH {
            return Err(Error::Invalid(format!("index proof: {depth} siblings, more than {MAX_DEPTH}")));
        }
        let start = match (&self.end, value) {
            (End::Member, Some(value)) if value.count == 0 => {
                return Err(Error::Invalid("index proof: a subject's leaf never has count 0".into()));
            }
            (End::Member, Some(value)) => value.leaf_hash(&key),
            (End::Member, None) => {
                return Err(Error::Invalid(
                    "index proof: the index holds entries about the subject, but none were given".into(),
                ));
            }
            (End::Empty | End::Other { .. }, Some(value)) => {
                return Err(Error::Invalid(format!(
                    "index proof: the index holds no entries about the subject, but {} were given",
                    value.count
                )));
            }
            (End::Empty, None) => EMPTY,
            (End::Other { key: other, value: other_value }, None) => {
                if *other == key {
                    return Err(Error::Invalid("index proof: the other leaf is the subject's own".into()));
                }
                if (0..depth).any(|d| bit(other, d) != bit(&key, d)) {
                    return Err(Error::Invalid(
                        "index proof: the other leaf does not lie on the subject's path".into(),
                    ));
                }
                if other_value.count == 0 {
                    return Err(Error::Invalid("index proof: a subject's leaf never has count 0".into()));
                }
                other_value.leaf_hash(other)
            }
        };
        let computed = fold(&key, start, &self.siblings);
        if computed != *root {
            return Err(Error::Invalid(format!(
                "index proof: the path gives root {}, not the index root {}",
                crate::hash::to_hex(&computed),
                crate::hash::to_hex(root)
            )));
        }
        Ok(())
    }
}

/// The root reached from `start` at depth `siblings.len()` on `key`'s path.
fn fold(key: &Hash, start: Hash, siblings: &[Hash]) -> Hash {
    siblings.iter().enumerate().rev().fold(start, |hash, (depth, sibling)| {
        if bit(key, depth) { node_hash(sibling, &hash) } else { node_hash(&hash, sibling) }
    })
}

/// Folds entries in seq order into an index, and commits the changes in
/// batches ([`Builder::commit`]).
#[derive(Clone, Debug, Default)]
pub struct Builder {
    /// Every subject seen: its key, current value and whether it changed
    /// since the last commit.
    values: HashMap<Vec<u8>, Slot>,
    /// Subjects changed since the last commit.
    dirty: Vec<Vec<u8>>,
    tree: Tree,
    /// Entries folded in (including unindexed ones): the next seq expected.
    size: u64,
}

#[derive(Clone, Debug)]
struct Slot {
    key: Hash,
    value: Value,
    dirty: bool,
}

impl Builder {
    /// Folds in entry `seq` (which must be the next one); an empty subject
    /// is not indexed.
    pub fn push(&mut self, seq: u64, subject: &[u8], entry_hash: &Hash) -> Result<()> {
        if seq != self.size {
            return Err(Error::Invalid(format!("index: expected entry {} next, not {seq}", self.size)));
        }
        self.size += 1;
        if subject.is_empty() {
            return Ok(());
        }
        let slot = match self.values.get_mut(subject) {
            Some(slot) => slot,
            None => self.values.entry(subject.to_vec()).or_insert(Slot {
                key: key(subject),
                value: Value::default(),
                dirty: false,
            }),
        };
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(subject.to_vec());
        }
        slot.value.push(seq, entry_hash);
        Ok(())
    }

    /// Applies every change since the last commit (each changed path hashed
    /// once); answers the index of every entry folded in so far.
    pub fn commit(&mut self) -> &Tree {
        if !self.dirty.is_empty() {
            let mut updates = Vec::with_capacity(self.dirty.len());
            for subject in self.dirty.drain(..) {
                if let Some(slot) = self.values.get_mut(&subject) {
                    slot.dirty = false;
                    updates.push((slot.key, slot.value));
                }
            }
            // In place where no snapshot of an earlier commit shares it.
            self.tree.apply_in_place(updates);
        }
        &self.tree
    }

    /// The index as of the last [`Builder::commit`].
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// How many entries were folded in (the next seq expected).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The current value of `subject` (including uncommitted entries).
    pub fn value(&self, subject: &[u8]) -> Option<Value> {
        self.values.get(subject).map(|slot| slot.value)
    }
}

/// The first line of every index entry's payload. No `LedgerEvent` the
/// service encodes starts with `e` (0x65 would be field 12 as fixed32),
/// so the two kinds of payload never mix.
pub const PAYLOAD_MAGIC: &str = "ecocode/index/v1\n";

/// Whether `payload` is an index entry's (by its first line alone).
pub fn is_index_payload(payload: &[u8]) -> bool {
    payload.starts_with(PAYLOAD_MAGIC.as_bytes())
}

/// What an index entry at seq `size` says: the index of every entry below
/// it has `subjects` leaves and root `root`. Its payload is exactly
///
/// ```text
/// ecocode/index/v1
/// size <size, decimal>
/// subjects <subjects, decimal>
/// root <root, standard base64 with padding>
/// ```
///
/// each line ending in `\n`, nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commitment {
    pub size: u64,
    pub subjects: u64,
    pub root: Hash,
}

impl Commitment {
    /// The commitment of `tree`, the index of the first `size` entries.
    pub fn of(size: u64, tree: &Tree) -> Commitment {
        Commitment { size, subjects: tree.subjects(), root: tree.root() }
    }

    /// The index entry's payload.
    pub fn payload(&self) -> Vec<u8> {
        use base64::Engine as _;
        format!(
            "{PAYLOAD_MAGIC}size {}\nsubjects {}\nroot {}\n",
            self.size,
            self.subjects,
            base64::engine::general_purpose::STANDARD.encode(self.root)
        )
        .into_bytes()
    }

    /// Parses an index entry's payload; only the exact form of
    /// [`Commitment::payload`] is accepted.
    pub fn parse(payload: &[u8]) -> Result<Commitment> {
        use base64::Engine as _;
        let bad = |what: &str| Error::Invalid(format!("index entry: {what}"));
        let text = std::str::from_utf8(payload).map_err(|_| bad("payload is not UTF-8"))?;
        let body = text
            .strip_prefix(PAYLOAD_MAGIC)
            .ok_or_else(|| bad("payload does not start with the index line"))?;
        let body = body.strip_suffix('\n').ok_or_else(|| bad("payload does not end with a newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [size, subjects, root] = lines[..] else {
            return Err(bad("payload must have exactly the lines size, subjects and root"));
        };
        let number = |line: &str, name: &str| -> Result<u64> {
            let digits = line
                .strip_prefix(name)
                .and_then(|l| l.strip_prefix(' '))
                .ok_or_else(|| bad(&format!("expected the line {name:?}")))?;
            let canonical = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'));
            if !canonical {
                return Err(bad(&format!("{name} must be a decimal number without leading zeros")));
            }
            digits.parse().map_err(|_| bad(&format!("{name} is out of range")))
        };
        let size = number(size, "size")?;
        let subjects = number(subjects, "subjects")?;
        let root = root.strip_prefix("root ").ok_or_else(|| bad("expected the line \"root\""))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(root)
            .map_err(|_| bad("root is not standard base64"))?;
        let root: Hash = decoded.try_into().map_err(|_| bad("root is not 32 bytes"))?;
        let commitment = Commitment { size, subjects, root };
        if commitment.payload() != payload {
            return Err(bad("payload is not in canonical form"));
        }
        Ok(commitment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `node(S, d)` straight from its definition, over `(key, leaf hash)`.
    fn reference(leaves: &[(Hash, Hash)], depth: usize) -> Hash {
        match leaves {
            [] => EMPTY,
            [(_, leaf)] => *leaf,
            _ => {
                let (zero, one): (Vec<_>, Vec<_>) = leaves.iter().partition(|(key, _)| !bit(key, depth));
                node_hash(&reference(&zero, depth + 1), &reference(&one, depth + 1))
            }
        }
    }

    fn subject(i: u32) -> Vec<u8> {
        format!("9111{i:014}").into_bytes()
    }

    /// A ledger of `n` entries spread over `subjects` subjects (every
    /// fifth unindexed), as a builder committed every `group` entries.
    /// Each subject's `(seq, entry hash)` list.
    type Lists = HashMap<Vec<u8>, Vec<(u64, Hash)>>;

    fn ledger(n: u64, subjects: u32, group: u64) -> (Builder, Lists) {
        let mut builder = Builder::default();
        let mut lists = Lists::new();
        for seq in 0..n {
            let entry_hash = crate::hash::entry_hash(seq, 0, &seq.to_be_bytes());
            let who = if seq % 5 == 4 { Vec::new() } else { subject((seq * 7 % u64::from(subjects)) as u32) };
            builder.push(seq, &who, &entry_hash).unwrap();
            if !who.is_empty() {
                lists.entry(who).or_default().push((seq, entry_hash));
            }
            if (seq + 1) % group == 0 {
                builder.commit();
            }
        }
        builder.commit();
        (builder, lists)
    }

    /// Commits of more than [`PARALLEL_UPDATES`] subjects (both halves of
    /// the tree hashed on two threads), first building and then updating,
    /// give the tree built from scratch, with every new subject counted.
    #[test]
    fn large_commits_on_two_threads_give_the_tree_from_scratch() {
        let (builder, lists) = ledger(60_000, 12_000, 20_000);
        let tree = builder.tree();
        let scratch = Tree::from_values(
            lists.iter().map(|(who, list)| (key(who), Value::of(list.iter().map(|(s, h)| (*s, h))).unwrap())),
        );
        assert_eq!(tree.root(), scratch.root());
        assert_eq!((tree.subjects(), scratch.subjects()), (lists.len() as u64, lists.len() as u64));
        assert!(lists.len() > PARALLEL_UPDATES);
        let before = tree.subjects();
        // Half of them updated again, and as many new ones.
        let mut builder = builder;
        let mut lists = lists;
        for seq in 60_000..72_000u64 {
            let entry_hash = crate::hash::entry_hash(seq, 0, &seq.to_be_bytes());
            let who = subject((seq - 60_000 + 6_000) as u32);
            builder.push(seq, &who, &entry_hash).unwrap();
            lists.entry(who).or_default().push((seq, entry_hash));
        }
        // An earlier version held meanwhile is copied from, never changed.
        let snapshot = builder.tree().clone();
        let snapshot_root = snapshot.root();
        let tree = builder.commit();
        let scratch = Tree::from_values(
            lists.iter().map(|(who, list)| (key(who), Value::of(list.iter().map(|(s, h)| (*s, h))).unwrap())),
        );
        assert_eq!(tree.root(), scratch.root());
        assert_eq!(tree.subjects(), lists.len() as u64);
        assert!(tree.subjects() >= before + 6_000, "new subjects are counted");
        assert_eq!(snapshot.root(), snapshot_root);
        assert_eq!(snapshot.subjects(), before);
        drop(snapshot);
        // With no other version alive, the next commit updates in place.
        for seq in 72_000..80_000u64 {
            let entry_hash = crate::hash::entry_hash(seq, 0, &seq.to_be_bytes());
            let who = subject((seq % 20_000) as u32);
            builder.push(seq, &who, &entry_hash).unwrap();
            lists.entry(who).or_default().push((seq, entry_hash));
        }
        let tree = builder.commit();
        let scratch = Tree::from_values(
            lists.iter().map(|(who, list)| (key(who), Value::of(list.iter().map(|(s, h)| (*s, h))).unwrap())),
        );
        assert_eq!(tree.root(), scratch.root());
        assert_eq!(tree.subjects(), lists.len() as u64);
        for (who, list) in lists.iter().take(100) {
            let value = Value::of(list.iter().map(|(s, h)| (*s, h))).unwrap();
            let (found, proof) = tree.prove(who);
            assert_eq!(found, Some(value));
            proof.verify(&tree.root(), who, Some(&value)).unwrap();
        }
    }

    #[test]
    fn root_matches_the_definition_and_every_subject_proves() {
        let (builder, lists) = ledger(400, 37, 9);
        let tree = builder.tree();
        let leaves: Vec<(Hash, Hash)> = lists
            .iter()
            .map(|(who, list)| {
                let value = Value::of(list.iter().map(|(s, h)| (*s, h))).unwrap();
                (key(who), value.leaf_hash(&key(who)))
            })
            .collect();
        assert_eq!(tree.root(), reference(&leaves, 0));
        assert_eq!(tree.subjects(), lists.len() as u64);
        for (who, list) in &lists {
            let value = Value::of(list.iter().map(|(s, h)| (*s, h))).unwrap();
            let (found, proof) = tree.prove(who);
            assert_eq!(found, Some(value));
            assert_eq!(proof.end, End::Member);
            proof.verify(&tree.root(), who, Some(&value)).unwrap();
            // Claiming no entries, or one entry fewer, fails.
            assert!(proof.verify(&tree.root(), who, None).is_err());
            let fewer = Value::of(list[..list.len() - 1].iter().map(|(s, h)| (*s, h))).unwrap();
            assert!(proof.verify(&tree.root(), who, Some(&fewer)).is_err());
        }
    }

    #[test]
    fn absent_subjects_prove_absence_and_cannot_claim_entries() {
        let (builder, _) = ledger(300, 50, 300);
        let tree = builder.tree();
        let mut ends = (0, 0);
        for i in 1000..1400 {
            let who = subject(i);
            let (found, proof) = tree.prove(&who);
            assert_eq!(found, None);
            match proof.end {
                End::Empty => ends.0 += 1,
                End::Other { .. } => ends.1 += 1,
                End::Member => panic!("absent subject proved a member"),
            }
            proof.verify(&tree.root(), &who, None).unwrap();
            let claimed = Value { count: 1, seqs: seqs_step(&ZERO, 0, &ZERO) };
            assert!(proof.verify(&tree.root(), &who, Some(&claimed)).is_err());
        }
        assert!(ends.0 > 0 && ends.1 > 0, "both kinds of absence are exercised: {ends:?}");
    }

    #[test]
    fn the_empty_index_proves_every_absence() {
        let tree = Tree::default();
        assert_eq!(tree.root(), EMPTY);
        let (found, proof) = tree.prove(b"platform");
        assert_eq!((found, &proof.siblings[..], &proof.end), (None, &[][..], &End::Empty));
        proof.verify(&EMPTY, b"platform", None).unwrap();
    }

    #[test]
    fn a_changed_count_seqs_sibling_or_subject_is_rejected() {
        let (builder, lists) = ledger(200, 20, 7);
        let tree = builder.tree();
        let root = tree.root();
        let (who, list) = lists.iter().max_by_key(|(_, l)| l.len()).unwrap();
        let value = Value::of(list.iter().map(|(s, h)| (*s, h))).unwrap();
        let (_, proof) = tree.prove(who);
        proof.verify(&root, who, Some(&value)).unwrap();
        let count = Value { count: value.count + 1, ..value };
        assert!(proof.verify(&root, who, Some(&count)).is_err());
        let mut seqs = value;
        seqs.seqs[0] ^= 1;
        assert!(proof.verify(&root, who, Some(&seqs)).is_err());
        for i in 0..proof.siblings.len() {
            let mut changed = proof.clone();
            changed.siblings[i][31] ^= 1;
            assert!(changed.verify(&root, who, Some(&value)).is_err(), "sibling {i}");
        }
        let mut shorter = proof.clone();
        shorter.siblings.pop();
        assert!(shorter.verify(&root, who, Some(&value)).is_err());
        let other = lists.keys().find(|o| o != &who).unwrap();
        assert!(proof.verify(&root, other, Some(&value)).is_err());
        // A reordered list of the same entries is another value.
        let mut swapped = list.clone();
        swapped.swap(0, 1);
        assert!(Value::of(swapped.iter().map(|(s, h)| (*s, h))).is_err());
    }

    #[test]
    fn absence_cannot_be_claimed_with_an_inner_node_as_the_other_leaf() {
        // The forgery a leaf hash without its key and value would allow:
        // present the hash of the subtree holding the subject as "another
        // leaf". The verifier recomputes the leaf hash, so it fails.
        let (builder, lists) = ledger(100, 10, 100);
        let tree = builder.tree();
        let who = lists.keys().next().unwrap();
        let (_, proof) = tree.prove(who);
        let forged = Proof {
            siblings: proof.siblings[..1].to_vec(),
            end: End::Other { key: [0; 32], value: Value::default() },
        };
        assert!(forged.verify(&tree.root(), who, None).is_err());
        let own = Proof {
            siblings: proof.siblings.clone(),
            end: End::Other { key: key(who), value: Value { count: 1, seqs: ZERO } },
        };
        assert!(own.verify(&tree.root(), who, None).is_err());
    }

    #[test]
    fn commitment_payload_round_trips_and_rejects_other_forms() {
        let (builder, _) = ledger(50, 5, 50);
        let commitment = Commitment::of(50, builder.tree());
        let payload = commitment.payload();
        assert!(is_index_payload(&payload));
        assert_eq!(Commitment::parse(&payload).unwrap(), commitment);
        let text = String::from_utf8(payload).unwrap();
        for bad in [
            text.replace("size 50", "size 050"),
            text.replace("size 50", "size +50"),
            text.replace("subjects ", "subjects  "),
            text.trim_end().to_string(),
            format!("{text}extra\n"),
            text.replace("ecocode/index/v1", "ecocode/index/v2"),
            text.replace('=', ""),
        ] {
            assert!(Commitment::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn incremental_equals_from_scratch(
            subjects in proptest::collection::vec(0u32..60, 1..200),
            groups in proptest::collection::vec(1usize..20, 1..30),
        ) {
            let mut builder = Builder::default();
            let mut lists: HashMap<Vec<u8>, Value> = HashMap::new();
            let mut groups = groups.into_iter().cycle();
            let mut left = groups.next().unwrap_or(1);
            for (seq, who) in subjects.iter().enumerate() {
                let seq = seq as u64;
                let who = subject(*who);
                let entry_hash = crate::hash::entry_hash(seq, 0, &who);
                builder.push(seq, &who, &entry_hash).unwrap();
                lists.entry(who).or_default().push(seq, &entry_hash);
                left -= 1;
                if left == 0 {
                    builder.commit();
                    left = groups.next().unwrap_or(1);
                }
            }
            let incremental = builder.commit().clone();
            let scratch = Tree::from_values(lists.iter().map(|(who, value)| (key(who), *value)));
            prop_assert_eq!(incremental.root(), scratch.root());
            prop_assert_eq!(incremental.subjects(), scratch.subjects());
            for (who, value) in &lists {
                let (found, proof) = incremental.prove(who);
                prop_assert_eq!(found, Some(*value));
                prop_assert!(proof.verify(&scratch.root(), who, Some(value)).is_ok());
            }
        }
    }
}
