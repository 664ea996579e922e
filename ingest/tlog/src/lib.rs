//! The formats that keep ecocode's promise: a bank or a court can check,
//! offline and without trusting the server, that nothing was rewritten.
//!
//! * [`hash`]: the BLAKE3 entry, chain and Merkle-node hashes.
//! * [`index`]: the subject index (a sparse Merkle tree over subjects) that
//!   index entries commit to, its proofs and the index entry payload.
//! * [`proof`]: RFC 9162 Merkle roots, inclusion and consistency proofs
//!   (a reference builder over leaves, and the verifiers).
//! * [`note`]: C2SP signed notes and checkpoints with Ed25519 keys, and the
//!   signer/verifier key texts.
//! * [`bundle`]: proof bundles, the JSON files `ecocode proof` writes.
//! * [`attestation`]: signed score attestations.
//! * [`compact`]: the compact binary form of a signed attestation for QR
//!   codes.
//! * [`cosignature`]: C2SP tlog-cosignature v1 (Ed25519) cosignatures and
//!   witness keys.
//! * [`witness`]: the C2SP tlog-witness add-checkpoint request and the
//!   witness's decision on it.
//! * [`policy`]: C2SP tlog-policy files and their quorum.
//! * [`tiles`]: C2SP tlog-tiles paths, tiles and this ledger's entry
//!   bundles, as served to mirrors.
//! * [`vectors`]: the specification's test vectors.
//!
//! Pure on purpose: no runtime, storage, RPC or clock. An offline verifier
//! links this crate and nothing else of ours. The formats are specified in
//! `docs/ledger.md`, whose test vectors are unit tests here and in the
//! ledger.

#![forbid(unsafe_code)]

pub mod attestation;
pub mod bundle;
pub mod compact;
pub mod cosignature;
pub mod hash;
pub mod index;
pub mod note;
pub mod policy;
pub mod proof;
pub mod tiles;
pub mod vectors;
pub mod witness;

mod error;

pub use error::{Error, Result};
pub use hash::Hash;
