//! The ledger's hash functions: BLAKE3 with one domain-separation byte per use.
//!
//! These are the formulas of the spec (`docs/ledger.md`, "Hashes"); a
//! client recomputing them needs nothing else.

/// A BLAKE3 digest.
pub type Hash = [u8; 32];

const ENTRY_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;
const CHAIN_PREFIX: u8 = 0x02;
// 0x03 to 0x06 are the subject index's (`index.rs`).
const DETAILS_PREFIX: u8 = 0x07;

/// The length of a committed record's salt.
pub const SALT_LEN: usize = 32;

/// The chain hash "before" the first entry.
pub const ZERO: Hash = [0; 32];

/// `BLAKE3(0x00 || u64_be(seq) || i64_be(recorded_at_ns) || payload)`: the
/// Merkle leaf of entry `seq`.
pub fn entry_hash(seq: u64, recorded_at_ns: i64, payload: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[ENTRY_PREFIX]);
    hasher.update(&seq.to_be_bytes());
    hasher.update(&recorded_at_ns.to_be_bytes());
    hasher.update(payload);
    *hasher.finalize().as_bytes()
}

/// `BLAKE3(0x02 || prev || entry)`; `prev` is [`ZERO`] for seq 0.
pub fn chain_hash(prev: &Hash, entry: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[CHAIN_PREFIX]);
    hasher.update(prev);
    hasher.update(entry);
    *hasher.finalize().as_bytes()
}

/// `BLAKE3(0x07 || salt || record)`: a committed record's commitment to its
/// details, `record` being the canonical encoding of the whole `Record`
/// and `salt` 32 fresh random bytes, so that the commitment says nothing
/// of a record a reader could guess (`docs/ledger.md`, "Committed records").
pub fn details_commitment(salt: &[u8; SALT_LEN], record: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[DETAILS_PREFIX]);
    hasher.update(salt);
    hasher.update(record);
    *hasher.finalize().as_bytes()
}

/// `BLAKE3(0x01 || left || right)`: an interior Merkle node.
pub fn node(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    *hasher.finalize().as_bytes()
}

/// `BLAKE3("")`: the root of the empty tree.
pub fn empty_root() -> Hash {
    *blake3::hash(b"").as_bytes()
}

/// Lower-case hex, for messages and tests.
pub fn to_hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
