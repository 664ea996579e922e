//! C2SP tlog-policy files and their quorum: which logs and witnesses a
//! verifier trusts, and how many cosignatures a checkpoint needs.
//!
//! ```text
//! log <vkey> [<url>]
//! witness <name> <vkey> [<url>]
//! group <name> all|any|<k> <name>...
//! quorum <name>|none
//! ```
//!
//! Log vkeys are this ledger's Ed25519 keys (type 0x01); the spec asks
//! their key name to be the origin, but an ecocode log's key name may
//! differ from its origin (`--key-name`, `--origin`), so the name is taken
//! as it is and the checkpoint's signature is checked with it. Witness vkeys
//! are tlog-cosignature v1 Ed25519 keys (type 0x04).

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// At most this many lines of each kind (the spec recommends supporting 32).
pub const MAX_ENTRIES: usize = 256;

/// A witness of the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witness {
    /// The policy's name for it (used by groups and the quorum).
    pub name: String,
    /// The key name in its cosignature lines.
    pub key_name: String,
    pub public_key: [u8; 32],
    /// Its submission prefix, when given.
    pub url: Option<String>,
}

/// A log of the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    pub key_name: String,
    pub public_key: [u8; 32],
    pub url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    None,
    Witness(usize),
    Group { k: usize, members: Vec<Node> },
}

/// A parsed policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub logs: Vec<Log>,
    pub witnesses: Vec<Witness>,
    quorum: Node,
    quorum_name: String,
}

/// How a checkpoint fares against the quorum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub met: bool,
    /// Policy names of the witnesses with a valid cosignature.
    pub cosigned: Vec<String>,
    /// Policy names of the witnesses without one.
    pub missing: Vec<String>,
}

impl Policy {
    /// Parses a policy file.
    pub fn parse(text: &str) -> Result<Policy> {
        let mut names: BTreeMap<String, Node> = BTreeMap::new();
        let mut logs = Vec::new();
        let mut witnesses: Vec<Witness> = Vec::new();
        let mut quorum = None;
        for (i, raw) in text.split('\n').enumerate() {
            let at = |what: String| Error::Invalid(format!("policy line {}: {what}", i + 1));
            if raw.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
                return Err(at("control characters other than tab are not allowed".into()));
            }
            let line = raw.trim_matches([' ', '\t']);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split([' ', '\t']).filter(|f| !f.is_empty()).collect();
            match fields[0] {
                "log" => {
                    let (vkey, url) = match fields[1..] {
                        [vkey] => (vkey, None),
                        [vkey, url] => (vkey, Some(url.to_string())),
                        _ => return Err(at("expected `log <vkey> [<url>]`".into())),
                    };
                    let (key_name, public_key) =
                        crate::note::decode_verifier_key(vkey).map_err(|e| at(format!("log key: {e}")))?;
                    if logs.iter().any(|l: &Log| l.public_key == public_key) {
                        return Err(at("duplicate log key".into()));
                    }
                    logs.push(Log { key_name, public_key, url });
                }
                "witness" => {
                    let [name, vkey, rest @ ..] = &fields[1..] else {
                        return Err(at("expected `witness <name> <vkey> [<url>]`".into()));
                    };
                    if rest.len() > 1 {
                        return Err(at("expected `witness <name> <vkey> [<url>]`".into()));
                    }
                    let (key_name, public_key) = crate::cosignature::decode_verifier_key(vkey)
                        .map_err(|e| at(format!("witness {name}: {e}")))?;
                    define(&mut names, name, Node::Witness(witnesses.len())).map_err(at)?;
                    if witnesses.iter().any(|w| w.public_key == public_key) {
                        return Err(at(format!("witness {name}: duplicate witness key")));
                    }
                    witnesses.push(Witness {
                        name: name.to_string(),
                        key_name,
                        public_key,
                        url: rest.first().map(|u| u.to_string()),
                    });
                }
                "group" => {
                    let [name, threshold, members @ ..] = &fields[1..] else {
                        return Err(at("expected `group <name> all|any|<k> <name>...`".into()));
                    };
                    if members.is_empty() {
                        return Err(at(format!("group {name} has no members")));
                    }
                    let n = members.len();
                    let k = match *threshold {
                        "all" => n,
                        "any" => 1,
                        k => match k.parse::<usize>() {
                            Ok(k) if (1..=n).contains(&k) && k.to_string() == *threshold => k,
                            _ => {
                                return Err(at(format!(
                                    "group {name}: threshold must be all, any or 1..={n}"
                                )));
                            }
                        },
                    };
                    let mut nodes = Vec::with_capacity(n);
                    for (j, member) in members.iter().enumerate() {
                        if members[..j].contains(member) {
                            return Err(at(format!("group {name}: member {member} is listed twice")));
                        }
                        match names.get(*member) {
                            Some(node) => nodes.push(node.clone()),
                            None if *member == "none" => {
                                return Err(at(format!("group {name}: none cannot be a member")));
                            }
                            None => return Err(at(format!("group {name}: {member} is not defined above"))),
                        }
                    }
                    define(&mut names, name, Node::Group { k, members: nodes }).map_err(at)?;
                }
                "quorum" => {
                    let [name] = &fields[1..] else {
                        return Err(at("expected `quorum <name>`".into()));
                    };
                    if quorum.is_some() {
                        return Err(at("a policy has exactly one quorum line".into()));
                    }
                    let node = match (names.get(*name), *name) {
                        (_, "none") => Node::None,
                        (Some(node), _) => node.clone(),
                        (None, _) => return Err(at(format!("quorum {name} is not defined above"))),
                    };
                    quorum = Some((node, name.to_string()));
                }
                other => return Err(at(format!("unknown keyword {other:?} (log, witness, group, quorum)"))),
            }
            if names.len() > MAX_ENTRIES || logs.len() > MAX_ENTRIES {
                return Err(at(format!("more than {MAX_ENTRIES} names or logs")));
            }
        }
        let (quorum, quorum_name) = quorum
            .ok_or_else(|| Error::Invalid("policy: no `quorum` line (use `quorum none` for none)".into()))?;
        Ok(Policy { logs, witnesses, quorum, quorum_name })
    }

    /// The name the quorum line gives.
    pub fn quorum_name(&self) -> &str {
        &self.quorum_name
    }

    /// Which witnesses validly cosigned `note`, and whether that meets the
    /// quorum. Cosignature lines of unknown keys are ignored.
    pub fn evaluate(&self, note: &str) -> Verdict {
        let signed: Vec<bool> = self
            .witnesses
            .iter()
            .map(|w| crate::cosignature::verify(note, &w.key_name, &w.public_key).is_ok())
            .collect();
        self.evaluate_with(&signed)
    }

    /// [`Policy::evaluate`] given which witnesses (by index) cosigned.
    pub fn evaluate_with(&self, signed: &[bool]) -> Verdict {
        let (mut cosigned, mut missing) = (Vec::new(), Vec::new());
        for (w, ok) in self.witnesses.iter().zip(signed) {
            if *ok { &mut cosigned } else { &mut missing }.push(w.name.clone());
        }
        Verdict { met: satisfied(&self.quorum, signed), cosigned, missing }
    }

    /// Checks that a log of the policy signed `note` (when the policy lists
    /// logs) and that its cosignatures meet the quorum; the error names the
    /// witnesses whose cosignature is missing.
    pub fn verify(&self, note: &str) -> Result<Verdict> {
        if !self.logs.is_empty()
            && !self.logs.iter().any(|l| crate::note::verify(note, &l.key_name, &l.public_key).is_ok())
        {
            return Err(Error::Invalid("the checkpoint is not signed by any log of the policy".into()));
        }
        let verdict = self.evaluate(note);
        if !verdict.met {
            let cosigned =
                if verdict.cosigned.is_empty() { "nobody".into() } else { verdict.cosigned.join(", ") };
            return Err(Error::Invalid(format!(
                "the checkpoint lacks the quorum {} of the policy: cosigned by {cosigned}; missing: {}",
                self.quorum_name,
                verdict.missing.join(", ")
            )));
        }
        Ok(verdict)
    }
}

fn define(names: &mut BTreeMap<String, Node>, name: &str, node: Node) -> std::result::Result<(), String> {
    if name == "none" {
        return Err("the name none is predefined".into());
    }
    if names.insert(name.to_string(), node).is_some() {
        return Err(format!("{name} is defined twice"));
    }
    Ok(())
}

fn satisfied(node: &Node, signed: &[bool]) -> bool {
    match node {
        Node::None => true,
        Node::Witness(i) => signed[*i],
        Node::Group { k, members } => members.iter().filter(|m| satisfied(m, signed)).count() >= *k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{cosignature, note};

    const BODY: &str = "ecocode.test/ledger\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nchain AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    fn wkey(name: &str, seed: u8) -> String {
        cosignature::encode_verifier_key(name, &note::public_key(&[seed; 32]))
    }

    fn policy(extra: &str) -> String {
        format!(
            "# the spec's example, with two levels\nlog {}\n\nwitness X1 {} https://x1.example\n\twitness X2 {}\nwitness X3 {}\n\
             group X-witnesses 2 X1 X2 X3\nwitness Y1 {}\ngroup Y any Y1\ngroup X-and-Y all X-witnesses Y\n{extra}",
            note::encode_verifier_key("ecocode.test", &note::public_key(&[1; 32])),
            wkey("x1.example", 11),
            wkey("x2.example", 12),
            wkey("x3.example", 13),
            wkey("y1.example", 21),
        )
    }

    fn cosigned_by(seeds: &[(&str, u8)]) -> String {
        let mut note = note::sign(BODY, "ecocode.test", &[1; 32]).unwrap();
        for (name, seed) in seeds {
            note.push_str(&cosignature::sign(BODY, name, &[*seed; 32], 1_700_000_000).unwrap());
        }
        note
    }

    #[test]
    fn the_quorum_counts_valid_cosignatures_by_group() {
        let p = Policy::parse(&policy("quorum X-and-Y\n")).unwrap();
        assert_eq!(p.witnesses[0].url.as_deref(), Some("https://x1.example"));
        let met = cosigned_by(&[("x1.example", 11), ("x3.example", 13), ("y1.example", 21)]);
        let verdict = p.verify(&met).unwrap();
        assert_eq!(verdict.cosigned, ["X1", "X3", "Y1"]);
        assert_eq!(verdict.missing, ["X2"]);

        let no_y = cosigned_by(&[("x1.example", 11), ("x2.example", 12), ("x3.example", 13)]);
        let err = p.verify(&no_y).unwrap_err().to_string();
        assert!(err.contains("missing: Y1"), "{err}");
        // A cosignature by the right name and a wrong key does not count.
        let forged = cosigned_by(&[("x1.example", 11), ("x2.example", 99), ("y1.example", 21)]);
        assert!(p.verify(&forged).unwrap_err().to_string().contains("X2"));
        // Not signed by the policy's log.
        let other_log = note::sign(BODY, "ecocode.test", &[2; 32]).unwrap();
        assert!(p.verify(&other_log).unwrap_err().to_string().contains("not signed by any log"));
    }

    #[test]
    fn quorum_none_and_single_witness_quorums() {
        assert!(Policy::parse(&policy("quorum none\n")).unwrap().verify(&cosigned_by(&[])).unwrap().met);
        let p = Policy::parse(&policy("quorum Y1\n")).unwrap();
        assert!(p.verify(&cosigned_by(&[("y1.example", 21)])).is_ok());
        assert!(p.verify(&cosigned_by(&[("x1.example", 11)])).is_err());
    }

    #[test]
    fn malformed_policies_name_the_line_and_the_rule() {
        for (extra, expected) in [
            ("", "no `quorum` line"),
            ("quorum Z\n", "line 11: quorum Z is not defined above"),
            ("group G 4 X1 X2 X3\nquorum G\n", "threshold must be all, any or 1..=3"),
            ("group G 0 X1\nquorum G\n", "threshold"),
            ("group G any X1 X1\nquorum G\n", "listed twice"),
            ("group G any none\nquorum G\n", "none cannot be a member"),
            ("group X1 any X2\nquorum X1\n", "defined twice"),
            ("quorum none\nquorum none\n", "exactly one quorum"),
            ("frobnicate\nquorum none\n", "unknown keyword"),
            (&format!("witness X4 {}\nquorum none\n", wkey("x1.example", 11)), "duplicate witness key"),
        ] {
            let err = Policy::parse(&policy(extra)).unwrap_err().to_string();
            assert!(err.contains(expected), "{extra:?}: {err}");
        }
        // A log key given as a witness key (type 0x01, not 0x04).
        let log_as_witness =
            format!("witness W {}\nquorum W\n", note::encode_verifier_key("w", &note::public_key(&[3; 32])));
        assert!(Policy::parse(&log_as_witness).unwrap_err().to_string().contains("0x04"));
    }
}
