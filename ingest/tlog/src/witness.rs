//! C2SP tlog-witness v1, the pure half: the `add-checkpoint` request body
//! and the witness's decision on it, in the spec's order (origin, log
//! signature, sizes, then the proof).
//!
//! The consistency proof is over this ledger's BLAKE3 Merkle tree
//! ([`crate::proof`], `docs/ledger.md`) and the empty tree's root is
//! `BLAKE3("")`: the one deviation from the RFC 6962 (SHA-256) hashing the
//! C2SP documents assume. Everything else (lines, sizes, status codes) is
//! the spec's.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::error::{Error, Result};
use crate::hash::{Hash, empty_root};

/// The content type of a 409's body (the witness's latest size).
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// At most this many consistency proof lines (the spec's limit).
pub const MAX_PROOF_LINES: usize = 63;

/// A parsed `add-checkpoint` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, as sent.
    pub checkpoint: String,
    /// Its first three lines.
    pub head: Head,
}

/// The first three lines of a checkpoint: what a witness checks and cosigns
/// the consistency of (extension lines are signed but not judged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// The request body: `old N`, proof lines, a blank line, the checkpoint.
pub fn encode_add_checkpoint(old: u64, proof: &[Hash], checkpoint: &str) -> String {
    let mut out = format!("old {old}\n");
    for hash in proof {
        out.push_str(&B64.encode(hash));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(checkpoint);
    out
}

/// Parses an `add-checkpoint` body. Every failure is a 400 Bad Request.
pub fn parse_add_checkpoint(body: &str) -> Result<AddCheckpoint> {
    let bad = |what: &str| Error::Invalid(format!("add-checkpoint body: {what}"));
    let (first, rest) = body.split_once('\n').ok_or_else(|| bad("no old size line"))?;
    let old_text = first.strip_prefix("old ").ok_or_else(|| bad("the first line is not `old <size>`"))?;
    let old = decimal(old_text).ok_or_else(|| bad("the old size is not a decimal without leading zeros"))?;
    let mut proof = Vec::new();
    let mut rest = rest;
    loop {
        let (line, next) = rest.split_once('\n').ok_or_else(|| bad("no blank line before the checkpoint"))?;
        rest = next;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(bad("more than 63 consistency proof lines"));
        }
        let hash: Hash = B64
            .decode(line)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| bad("a consistency proof line is not a 32-byte hash in base64"))?;
        proof.push(hash);
    }
    let checkpoint = rest.to_string();
    let (note_body, _) = crate::cosignature::split_note(&checkpoint)?;
    let head = parse_head(note_body)?;
    Ok(AddCheckpoint { old, proof, checkpoint, head })
}

/// Parses the origin, size and root lines of a checkpoint body.
pub fn parse_head(body: &str) -> Result<Head> {
    let bad = |what: &str| Error::Invalid(format!("checkpoint: {what}"));
    let mut lines = body.split('\n');
    let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(|| bad("empty origin"))?;
    let size = lines
        .next()
        .and_then(decimal)
        .ok_or_else(|| bad("the tree size is not a decimal without leading zeros"))?;
    let root = lines
        .next()
        .and_then(|l| B64.decode(l).ok())
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| bad("the root hash is not 32 bytes of base64"))?;
    Ok(Head { origin: origin.to_string(), size, root })
}

fn decimal(text: &str) -> Option<u64> {
    let n: u64 = text.parse().ok()?;
    (n.to_string() == text).then_some(n)
}

/// A log key the witness trusts for `origin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogKey {
    pub origin: String,
    /// The signed-note key name (often the origin itself).
    pub name: String,
    pub public_key: [u8; 32],
}

/// Why a witness does not cosign, each with its HTTP status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 404: no trusted key for this origin.
    UnknownOrigin(String),
    /// 403: no valid signature by a trusted key of the origin.
    Forbidden(String),
    /// 400: a malformed body, or old > the checkpoint's size.
    BadRequest(String),
    /// 409: `old` is not the size the witness last cosigned (given here).
    Conflict(u64),
    /// 422: a bad consistency proof, or a root that differs from the one
    /// cosigned at the same size. `fork` when the log provably signed two
    /// trees of one size (the evidence of a split view).
    Unprocessable { reason: String, fork: bool },
}

impl Refusal {
    /// The HTTP status code the spec gives this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::UnknownOrigin(_) => 404,
            Refusal::Forbidden(_) => 403,
            Refusal::BadRequest(_) => 400,
            Refusal::Conflict(_) => 409,
            Refusal::Unprocessable { .. } => 422,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::UnknownOrigin(origin) => write!(f, "unknown log origin {origin:?}"),
            Refusal::Forbidden(why) | Refusal::BadRequest(why) => f.write_str(why),
            Refusal::Conflict(size) => write!(f, "the witness's latest cosigned size is {size}"),
            Refusal::Unprocessable { reason, .. } => f.write_str(reason),
        }
    }
}

/// Step 1 and 2 of the spec: the origin is known and a trusted key signed
/// the checkpoint.
pub fn check_signature(request: &AddCheckpoint, keys: &[LogKey]) -> Result<(), Refusal> {
    let origin = &request.head.origin;
    let trusted: Vec<&LogKey> = keys.iter().filter(|k| &k.origin == origin).collect();
    if trusted.is_empty() {
        return Err(Refusal::UnknownOrigin(origin.clone()));
    }
    let mut last = String::new();
    for key in trusted {
        match crate::note::verify(&request.checkpoint, &key.name, &key.public_key) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(Refusal::Forbidden(format!("no valid signature by a trusted key of {origin}: {last}")))
}

/// Steps 3 on: sizes, then the proof, against what the witness recorded
/// for this origin (`None`: never cosigned). On `Ok` the witness records
/// the request's head and cosigns.
pub fn check_consistency(request: &AddCheckpoint, recorded: Option<&Head>) -> Result<(), Refusal> {
    let head = &request.head;
    let old = request.old;
    if old > head.size {
        return Err(Refusal::BadRequest(format!(
            "old size {old} is larger than the checkpoint's {}",
            head.size
        )));
    }
    let recorded_size = recorded.map_or(0, |r| r.size);
    if old != recorded_size {
        return Err(Refusal::Conflict(recorded_size));
    }
    let unprocessable = |reason: String| Err(Refusal::Unprocessable { reason, fork: false });
    if head.size == 0 && head.root != empty_root() {
        return unprocessable("a checkpoint of size 0 must have the empty tree's root".into());
    }
    if old == 0 {
        if !request.proof.is_empty() {
            return unprocessable("the consistency proof from size 0 must be empty".into());
        }
        return Ok(());
    }
    let recorded = recorded.expect("old == recorded size > 0");
    if old == head.size {
        if head.root != recorded.root {
            return Err(Refusal::Unprocessable {
                reason: format!("fork: the log signed another root for size {old} than the one cosigned"),
                fork: true,
            });
        }
        if !request.proof.is_empty() {
            return unprocessable("the consistency proof between equal sizes must be empty".into());
        }
        return Ok(());
    }
    if !crate::proof::verify_consistency(old, head.size, &recorded.root, &head.root, &request.proof) {
        return unprocessable(format!(
            "the consistency proof from the cosigned size {old} to {} does not verify",
            head.size
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::entry_hash;
    use crate::note;

    const ORIGIN: &str = "ecocode.test/ledger";
    const SEED: [u8; 32] = [5; 32];

    fn leaves(n: usize, salt: u8) -> Vec<Hash> {
        (0..n).map(|i| entry_hash(i as u64, 0, &[salt, i as u8])).collect()
    }

    fn checkpoint(size: usize, leaves: &[Hash]) -> String {
        let root = crate::proof::root(&leaves[..size]);
        note::sign(&note::checkpoint_body(ORIGIN, size as u64, &root, &[0; 32]), "ecocode.test", &SEED)
            .unwrap()
    }

    fn keys() -> Vec<LogKey> {
        vec![LogKey {
            origin: ORIGIN.into(),
            name: "ecocode.test".into(),
            public_key: note::public_key(&SEED),
        }]
    }

    fn request(old: u64, proof: &[Hash], checkpoint: &str) -> AddCheckpoint {
        parse_add_checkpoint(&encode_add_checkpoint(old, proof, checkpoint)).unwrap()
    }

    #[test]
    fn the_specs_example_request_parses() {
        // tlog-witness, "add-checkpoint": the example request body.
        let body = "old 20852014\n\
            PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\
            jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
            5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n\
            /6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\
            \n\
            example.com/behind-the-sofa\n\
            20852163\n\
            CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
            \n\
            \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
            \u{2014} example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n";
        let request = parse_add_checkpoint(body).unwrap();
        assert_eq!(request.old, 20852014);
        assert_eq!(request.proof.len(), 4);
        assert_eq!(request.head.origin, "example.com/behind-the-sofa");
        assert_eq!(request.head.size, 20852163);
        assert_eq!(encode_add_checkpoint(request.old, &request.proof, &request.checkpoint), body);
        // An origin the witness has no key for is a 404.
        assert_eq!(check_signature(&request, &keys()).unwrap_err().status(), 404);
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        let cp = checkpoint(1, &leaves(1, 0));
        for body in [
            String::new(),
            format!("old 01\n\n{cp}"),
            format!("old -1\n\n{cp}"),
            format!("new 1\n\n{cp}"),
            format!("old 1\nnot base64!\n\n{cp}"),
            format!("old 1\n{cp}"),
            format!("old 1\n{}\n{cp}", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".repeat(64)),
        ] {
            assert!(parse_add_checkpoint(&body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn each_refusal_in_the_specs_order() {
        let l = leaves(8, 0);
        let cp5 = checkpoint(5, &l);
        let cp8 = checkpoint(8, &l);
        let five = parse_head(&cp5).unwrap();
        // 403: signed by another key.
        let other =
            note::sign(&note::checkpoint_body(ORIGIN, 5, &five.root, &[0; 32]), "ecocode.test", &[6; 32])
                .unwrap();
        assert_eq!(check_signature(&request(0, &[], &other), &keys()).unwrap_err().status(), 403);
        assert_eq!(check_signature(&request(0, &[], &cp5), &keys()), Ok(()));
        // 400: old > new, even before the 409 a wrong old would get.
        assert_eq!(check_consistency(&request(9, &[], &cp8), None).unwrap_err().status(), 400);
        // 409 with the recorded size.
        assert_eq!(check_consistency(&request(3, &[], &cp8), Some(&five)), Err(Refusal::Conflict(5)));
        assert_eq!(check_consistency(&request(5, &[], &cp8), None), Err(Refusal::Conflict(0)));
        // 422: a proof from 0, a bad proof, a same-size other root (a fork).
        assert_eq!(check_consistency(&request(0, &[[1; 32]], &cp5), None).unwrap_err().status(), 422);
        assert_eq!(check_consistency(&request(5, &[[1; 32]], &cp8), Some(&five)).unwrap_err().status(), 422);
        let forked = checkpoint(5, &leaves(8, 1));
        match check_consistency(&request(5, &[], &forked), Some(&five)) {
            Err(Refusal::Unprocessable { fork: true, .. }) => {}
            other => panic!("a same-size other root is a fork, got {other:?}"),
        }
        // 200: the first checkpoint, a good proof, the same checkpoint again.
        assert_eq!(check_consistency(&request(0, &[], &cp5), None), Ok(()));
        let proof = crate::proof::consistency_proof(5, &l);
        assert_eq!(check_consistency(&request(5, &proof, &cp8), Some(&five)), Ok(()));
        assert_eq!(check_consistency(&request(5, &[], &cp5), Some(&five)), Ok(()));
    }

    #[test]
    fn an_empty_checkpoint_must_have_the_empty_root() {
        let empty =
            note::sign(&note::checkpoint_body(ORIGIN, 0, &empty_root(), &[0; 32]), "ecocode.test", &SEED)
                .unwrap();
        assert_eq!(check_consistency(&request(0, &[], &empty), None), Ok(()));
        let wrong =
            note::sign(&note::checkpoint_body(ORIGIN, 0, &[1; 32], &[0; 32]), "ecocode.test", &SEED).unwrap();
        assert_eq!(check_consistency(&request(0, &[], &wrong), None).unwrap_err().status(), 422);
    }
}
