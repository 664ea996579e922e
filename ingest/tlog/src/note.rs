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

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::hash::Hash;

const ALG_ED25519: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";

/// The 4-byte key id that prefixes every signature by this key.
pub fn key_id(key_name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut sha = Sha256::new();
    sha.update(key_name.as_bytes());
    sha.update([b'\n', ALG_ED25519]);
    sha.update(public_key);
    let digest = sha.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A key name as signed notes allow it: non-empty, no spaces, no `+`.
pub fn check_key_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '+') {
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
    let key = SigningKey::from_bytes(seed);
    let mut sig = Vec::with_capacity(68);
    sig.extend_from_slice(&key_id(key_name, &key.verifying_key().to_bytes()));
    sig.extend_from_slice(&key.sign(body.as_bytes()).to_bytes());
    Ok(format!("{body}\n{SIG_PREFIX}{key_name} {}\n", B64.encode(sig)))
}

/// Checks that `note` carries a valid signature by `key_name` /
/// `public_key` and returns its body. Signatures by other keys are ignored,
/// as the signed-note spec asks.
pub fn verify(note: &str, key_name: &str, public_key: &[u8; 32]) -> Result<String> {
    let bad = |what: &str| Error::Invalid(format!("signed note: {what}"));
    // The signature block follows the last blank line.
    let split = note.rfind("\n\n").ok_or_else(|| bad("no blank line before the signatures"))?;
    let (body, sigs) = (&note[..split + 1], &note[split + 2..]);
    if !sigs.ends_with('\n') {
        return Err(bad("signature block does not end with a newline"));
    }
    let verifying_key =
        VerifyingKey::from_bytes(public_key).map_err(|e| Error::Key(format!("bad public key: {e}")))?;
    let want_id = key_id(key_name, public_key);
    for line in sigs.lines() {
        let Some(rest) = line.strip_prefix(SIG_PREFIX) else {
            return Err(bad("signature line does not start with an em dash"));
        };
        let Some((name, sig)) = rest.split_once(' ') else {
            return Err(bad("signature line has no signature"));
        };
        if name != key_name {
            continue;
        }
        let sig = B64.decode(sig).map_err(|_| bad("signature is not base64"))?;
        if sig.len() != 68 || sig[..4] != want_id {
            continue;
        }
        let signature = ed25519_dalek::Signature::from_slice(&sig[4..])
            .map_err(|_| bad("malformed ed25519 signature"))?;
        return match verifying_key.verify_strict(body.as_bytes(), &signature) {
            Ok(()) => Ok(body.to_string()),
            Err(_) => Err(bad(&format!("signature by {key_name} does not verify"))),
        };
    }
    Err(bad(&format!("no signature by key {key_name}")))
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
