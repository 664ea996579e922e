//! C2SP signed notes (`signed-note`) and checkpoints (`tlog-checkpoint`)
//! with Ed25519 keys, plus the key file format.
//!
//! A note is its body (lines ending in `\n`), a blank line and one or more
//! signature lines `— <key name> <base64(key_id[4] || signature[64])>\n`.
//! `key_id = SHA-256(key_name || 0x0A || 0x01 || public_key)[:4]`, 0x01
//! being the Ed25519 algorithm byte.
//!
//! Key files use the Go `golang.org/x/mod/sumdb/note` text encodings, so
//! existing tooling reads them:
//! * signer (private) key: `PRIVATE+KEY+<name>+<key_id hex>+<base64(0x01 || seed[32])>`
//! * verifier (public) key: `<name>+<key_id hex>+<base64(0x01 || public_key[32])>`
//!
//! Signing and verifying are cloudflare/azul's `signed_note` crate, the
//! reference Rust implementation of c2sp.org/signed-note; the tests below
//! check that it reproduces the spec's key ids and that notes and keys
//! round-trip byte for byte. This module keeps what is ours: the key texts
//! built from a seed, and the checkpoint body.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::SigningKey;
use signed_note::{Note, NoteError, StandardSigner, StandardVerifier, VerifierList};

use crate::error::{Error, Result};
use crate::hash::Hash;

const ALG_ED25519: u8 = 0x01;

/// The 4-byte key id that prefixes every signature by this key.
pub fn key_id(key_name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    signed_note::key_id(key_name, &with_alg(public_key)).to_be_bytes()
}

/// A key name as signed notes allow it: non-empty, no spaces, no `+`.
pub fn check_key_name(name: &str) -> Result<()> {
    if !signed_note::is_key_name_valid(name) {
        return Err(Error::Key(format!("key name {name:?} must be non-empty without spaces or '+'")));
    }
    Ok(())
}

/// The public key belonging to an Ed25519 seed.
pub fn public_key(seed: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

/// Signs `body` (non-empty, ending in `\n`) and returns the whole note.
pub fn sign(body: &str, key_name: &str, seed: &[u8; 32]) -> Result<String> {
    check_key_name(key_name)?;
    if body.is_empty() || !body.ends_with('\n') {
        return Err(Error::Invalid("note body must be non-empty and end with a newline".into()));
    }
    let signer = StandardSigner::new(&encode_signer_key(key_name, seed))
        .map_err(|e| Error::Key(format!("signer key: {e}")))?;
    let mut note = Note::new(body.as_bytes(), &[]).map_err(|e| Error::Invalid(format!("note body: {e}")))?;
    note.add_sigs(&[&signer]).map_err(|e| Error::Key(format!("signing: {e}")))?;
    String::from_utf8(note.to_bytes()).map_err(|_| Error::Invalid("signed note is not UTF-8".into()))
}

/// Checks that `note` carries a valid signature by `key_name` /
/// `public_key` and returns its body. Signatures by other keys are ignored,
/// as the signed-note spec asks.
pub fn verify(note: &str, key_name: &str, public_key: &[u8; 32]) -> Result<String> {
    let bad = |what: String| Error::Invalid(format!("signed note: {what}"));
    let verifier = StandardVerifier::new(&encode_verifier_key(key_name, public_key))
        .map_err(|e| Error::Key(format!("verifier key: {e}")))?;
    let known = VerifierList::new(vec![Box::new(verifier)]);
    let parsed = Note::from_bytes(note.as_bytes()).map_err(|e| bad(e.to_string()))?;
    match parsed.verify(&known) {
        Ok(_) => String::from_utf8(parsed.text().to_vec()).map_err(|_| bad("body is not UTF-8".into())),
        Err(NoteError::UnverifiedNote) => Err(bad(format!("no signature by key {key_name}"))),
        Err(NoteError::InvalidSignature { .. }) => {
            Err(bad(format!("signature by {key_name} does not verify")))
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

/// The checkpoint body of the spec: origin, size, root and the `chain`
/// extension line.
pub fn checkpoint_body(origin: &str, size: u64, root: &Hash, chain: &Hash) -> String {
    format!("{origin}\n{size}\n{}\nchain {}\n", B64.encode(root), B64.encode(chain))
}

/// Parses a checkpoint body into `(origin, tree_size, root, chain)`.
/// Unknown extension lines are allowed; the `chain` line is required.
pub fn parse_checkpoint(body: &str) -> Result<(String, u64, Hash, Hash)> {
    let bad = |what: &str| Error::Invalid(format!("checkpoint: {what}"));
    if !body.ends_with('\n') {
        return Err(bad("body does not end with a newline"));
    }
    let mut lines = body[..body.len() - 1].split('\n');
    let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(|| bad("empty origin"))?;
    let size_line = lines.next().ok_or_else(|| bad("missing tree size"))?;
    let size: u64 = size_line.parse().map_err(|_| bad("tree size is not a decimal number"))?;
    if size.to_string() != size_line {
        return Err(bad("tree size is not in canonical decimal"));
    }
    let root = decode_hash(lines.next().ok_or_else(|| bad("missing root hash"))?)
        .ok_or_else(|| bad("root hash is not 32 bytes of base64"))?;
    let mut chain = None;
    for line in lines {
        if let Some(b64) = line.strip_prefix("chain ") {
            chain = Some(decode_hash(b64).ok_or_else(|| bad("chain hash is not 32 bytes of base64"))?);
        }
    }
    let chain = chain.ok_or_else(|| bad("missing chain extension line"))?;
    Ok((origin.to_string(), size, root, chain))
}

fn decode_hash(b64: &str) -> Option<Hash> {
    B64.decode(b64).ok()?.try_into().ok()
}

/// The signer key text for `seed` (one line, no newline).
pub fn encode_signer_key(key_name: &str, seed: &[u8; 32]) -> String {
    let id = key_id(key_name, &public_key(seed));
    format!("PRIVATE+KEY+{key_name}+{}+{}", hex(&id), B64.encode(with_alg(seed)))
}

/// The verifier key text for `public_key` (one line, no newline).
pub fn encode_verifier_key(key_name: &str, public_key: &[u8; 32]) -> String {
    let id = key_id(key_name, public_key);
    format!("{key_name}+{}+{}", hex(&id), B64.encode(with_alg(public_key)))
}

/// Parses a signer key into `(key_name, seed)`, checking its key id.
pub fn decode_signer_key(text: &str) -> Result<(String, [u8; 32])> {
    let rest = text
        .trim()
        .strip_prefix("PRIVATE+KEY+")
        .ok_or_else(|| Error::Key("signer key does not start with PRIVATE+KEY+".into()))?;
    let (name, id, seed) = decode_key_fields(rest)?;
    check_id(&name, &public_key(&seed), id)?;
    Ok((name, seed))
}

/// Parses a verifier key into `(key_name, public_key)`, checking its key id.
pub fn decode_verifier_key(text: &str) -> Result<(String, [u8; 32])> {
    let rest = text.trim();
    let (name, id, public_key) = decode_key_fields(rest)?;
    check_id(&name, &public_key, id)?;
    Ok((name, public_key))
}

/// `<name>+<8 hex>+<base64(0x01 || 32 bytes)>` as (name, key id hex, key).
fn decode_key_fields(text: &str) -> Result<(String, &str, [u8; 32])> {
    let bad = || Error::Key("key is not <name>+<key id hex>+<base64 key>".into());
    // Base64 may itself contain '+', so the key is everything after the
    // second separator.
    let mut fields = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(bad());
    };
    check_key_name(name)?;
    if id.len() != 8 {
        return Err(bad());
    }
    let key = B64.decode(key).map_err(|_| bad())?;
    match key.split_first() {
        Some((&ALG_ED25519, bytes)) => match <[u8; 32]>::try_from(bytes) {
            Ok(bytes) => Ok((name.to_string(), id, bytes)),
            Err(_) => Err(Error::Key("an ed25519 key has 32 bytes after the algorithm byte".into())),
        },
        _ => Err(Error::Key("key is not an ed25519 key (algorithm byte 0x01, 32 bytes)".into())),
    }
}

fn check_id(name: &str, public_key: &[u8; 32], id_hex: &str) -> Result<()> {
    if hex(&key_id(name, public_key)) != id_hex.to_ascii_lowercase() {
        return Err(Error::Key(format!("key id {id_hex} does not match key {name}")));
    }
    Ok(())
}

fn with_alg(key: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(33);
    out.push(ALG_ED25519);
    out.extend_from_slice(key);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    const SEED: [u8; 32] = [3; 32];
    const BODY: &str = "ecocode.test/ledger\n7\nroot\n";

    // Produced by ecocode's own signer before signing moved to `signed_note`
    // (Ed25519 signatures are deterministic): the same key and body must
    // give the same bytes, or notes already filed would stop matching.
    const NOTE: &str = "ecocode.test/ledger\n7\nroot\n\n\u{2014} ecocode.test \
        y48T26ZEvQof0HBjAriW4L3yqU1HKTfIobBoLzkSei+4W5hbrrJytcUpRpChhfZ5otSNzbCRsAk8ci5TSQyGUkbsiw8=\n";
    const SIGNER_KEY: &str = "PRIVATE+KEY+ecocode.test+cb8f13db+AQMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMD";
    const VERIFIER_KEY: &str = "ecocode.test+cb8f13db+Ae1JKMYo0cLG6ukDOJBZlWEpWSc6XGP5NjbBRhSshzfR";

    #[test]
    fn notes_and_keys_are_byte_identical_to_ecocodes_own_format() {
        assert_eq!(sign(BODY, "ecocode.test", &SEED).unwrap(), NOTE);
        assert_eq!(encode_signer_key("ecocode.test", &SEED), SIGNER_KEY);
        assert_eq!(encode_verifier_key("ecocode.test", &public_key(&SEED)), VERIFIER_KEY);
        assert_eq!(decode_signer_key(SIGNER_KEY).unwrap(), ("ecocode.test".to_owned(), SEED));
        assert_eq!(verify(NOTE, "ecocode.test", &public_key(&SEED)).unwrap(), BODY);
    }

    #[test]
    fn key_id_is_the_spec_formula() {
        let public = public_key(&SEED);
        let mut sha = Sha256::new();
        sha.update(b"ecocode.test\n\x01");
        sha.update(public);
        assert_eq!(key_id("ecocode.test", &public), sha.finalize()[..4]);
    }

    #[test]
    fn altered_notes_and_other_keys_do_not_verify() {
        let public = public_key(&SEED);
        let altered = NOTE.replace("\n7\n", "\n8\n");
        assert!(
            verify(&altered, "ecocode.test", &public).unwrap_err().to_string().contains("does not verify")
        );
        assert!(verify(NOTE, "someone-else", &public).unwrap_err().to_string().contains("no signature"));
        assert!(verify(NOTE, "ecocode.test", &public_key(&[4; 32])).is_err());
        for malformed in ["", "no blank line\n", "body\n\nnot a signature\n", "body\n\n\u{2014} k bad!\n"] {
            assert!(verify(malformed, "ecocode.test", &public).is_err(), "{malformed:?}");
        }
    }

    #[test]
    fn a_cosigned_note_verifies_for_each_key() {
        let witness = [9; 32];
        let note = sign(BODY, "ecocode.test", &SEED).unwrap();
        let by_witness = sign(BODY, "witness.example", &witness).unwrap();
        let witness_line = by_witness.rsplit_once("\n\n").unwrap().1;
        let cosigned = format!("{note}{witness_line}");
        assert_eq!(verify(&cosigned, "ecocode.test", &public_key(&SEED)).unwrap(), BODY);
        assert_eq!(verify(&cosigned, "witness.example", &public_key(&witness)).unwrap(), BODY);
    }
}
