//! Model-based property test: random appends (fresh, duplicate and
//! conflicting keys) and restarts against a `Vec` model, verifying the
//! whole store after every restart.

use std::collections::HashMap;

use proptest::prelude::*;

use super::super::{Idempotency, Ledger, LedgerConfig, NewEntry, Receipt, VerifyReport, hash, proof};
use super::runtime;

#[derive(Clone, Debug)]
struct Spec {
    payload: u8,
    subject: u8,
    key: Option<u8>,
    fingerprint: u8,
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<Spec>),
    Restart,
}

fn spec() -> impl Strategy<Value = Spec> {
    (any::<u8>(), 0u8..3, proptest::option::weighted(0.7, 0u8..6), 0u8..2)
        .prop_map(|(payload, subject, key, fingerprint)| Spec { payload, subject, key, fingerprint })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(spec(), 1..6).prop_map(Op::Append),
        1 => Just(Op::Restart),
    ]
}

impl Spec {
    fn subject(&self) -> Vec<u8> {
        // Subject 2 is a prefix of subject 1, to catch prefix-scan mistakes.
        match self.subject {
            0 => Vec::new(),
            1 => b"91330200MA2AB".to_vec(),
            _ => b"91330200MA2A".to_vec(),
        }
    }

    fn new_entry(&self) -> NewEntry {
        NewEntry {
            payload: vec![self.payload; 3],
            subject: self.subject(),
            idempotency: self
                .key
                .map(|key| Idempotency { key: vec![b'k', key], fingerprint: [self.fingerprint; 32] }),
            // Some entries carry details (stored beside, not hashed).
            details: if self.payload.is_multiple_of(2) { vec![self.payload ^ 0x5a; 4] } else { Vec::new() },
        }
    }
}

#[derive(Default)]
struct Model {
    entries: Vec<(NewEntry, Receipt)>,
    by_key: HashMap<Vec<u8>, usize>,
}

impl Model {
    /// Whether closing appends an index entry: the last entry is not one.
    fn close_appends_index(&self) -> bool {
        self.entries.last().is_some_and(|(new, _)| !tlog::index::is_index_payload(&new.payload))
    }

    /// Takes in the index entry `close` appended at the model's size, after
    /// checking it commits to the model's entries and answers each
    /// subject's seqs.
    fn take_index_entry(&mut self, ledger: &Ledger) -> Result<(), TestCaseError> {
        let seq = self.entries.len() as u64;
        let stored = ledger.entry(seq).unwrap();
        prop_assert!(tlog::index::is_index_payload(&stored.payload));
        let mut builder = tlog::index::Builder::default();
        for (i, (new, receipt)) in self.entries.iter().enumerate() {
            builder.push(i as u64, &new.subject, &receipt.entry_hash).unwrap();
        }
        let expected = tlog::index::Commitment::of(seq, builder.commit());
        prop_assert_eq!(tlog::index::Commitment::parse(&stored.payload).unwrap(), expected);
        for subject in [&b"91330200MA2AB"[..], b"91330200MA2A"] {
            let want: Vec<u64> =
                (0..seq).filter(|&s| self.entries[s as usize].0.subject == subject).collect();
            prop_assert_eq!(ledger.subject_index(subject, seq + 1).unwrap().seqs, want);
        }
        let new = NewEntry {
            payload: stored.payload.clone(),
            subject: Vec::new(),
            idempotency: None,
            details: Vec::new(),
        };
        let receipt = Receipt {
            seq,
            entry_hash: stored.entry_hash,
            chain_hash: stored.chain_hash,
            recorded_at_ns: stored.recorded_at_ns,
            duplicate: false,
        };
        self.entries.push((new, receipt));
        Ok(())
    }

    fn check(&self, ledger: &Ledger) -> Result<(), TestCaseError> {
        let head = ledger.head();
        prop_assert_eq!(head.size, self.entries.len() as u64);
        let leaves: Vec<_> = self.entries.iter().map(|(_, r)| r.entry_hash).collect();
        prop_assert_eq!(head.root, proof::root(&leaves));
        let chain = self.entries.last().map_or(hash::ZERO, |(_, r)| r.chain_hash);
        prop_assert_eq!(head.chain, chain);
        for (seq, (new, receipt)) in self.entries.iter().enumerate() {
            let stored = ledger.entry(seq as u64).unwrap();
            prop_assert_eq!(&stored.payload, &new.payload);
            prop_assert_eq!(&stored.details, &new.details);
            prop_assert_eq!(&stored.subject, &new.subject);
            prop_assert_eq!(stored.entry_hash, receipt.entry_hash);
            prop_assert_eq!(stored.recorded_at_ns, receipt.recorded_at_ns);
        }
        for (key, &seq) in &self.by_key {
            prop_assert_eq!(ledger.lookup(key).unwrap(), Some(self.entries[seq].1.clone()));
        }
        prop_assert_eq!(ledger.lookup(b"never used").unwrap(), None);
        for subject in [&b"91330200MA2AB"[..], b"91330200MA2A"] {
            let want: Vec<u64> = (0..self.entries.len() as u64)
                .filter(|&s| self.entries[s as usize].0.subject == subject)
                .collect();
            let got: Vec<u64> = ledger.entries_for_subject(subject).unwrap().iter().map(|e| e.seq).collect();
            prop_assert_eq!(got, want);
        }
        Ok(())
    }
}

/// Runs `ops` against a ledger opened with `config()` (again at every
/// restart) and the model; `verify_offline` checks the closed store at the
/// end.
fn run_model(
    ops: Vec<Op>,
    config: &dyn Fn() -> LedgerConfig,
    verify_offline: &dyn Fn() -> VerifyReport,
) -> Result<(), TestCaseError> {
    let rt = runtime();
    let mut ledger = Ledger::open(config()).unwrap();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Append(specs) => {
                let batch: Vec<NewEntry> = specs.iter().map(Spec::new_entry).collect();
                let answers = rt.block_on(ledger.append(batch.clone())).unwrap();
                prop_assert_eq!(answers.len(), batch.len());
                for (new, answer) in batch.into_iter().zip(answers) {
                    let existing = new.idempotency.as_ref().and_then(|i| model.by_key.get(&i.key).copied());
                    match existing {
                        None => {
                            let receipt = answer.expect("fresh entry appended");
                            prop_assert_eq!(receipt.seq, model.entries.len() as u64);
                            prop_assert!(!receipt.duplicate);
                            if let Some((_, last)) = model.entries.last() {
                                prop_assert!(receipt.recorded_at_ns >= last.recorded_at_ns);
                            }
                            if let Some(i) = &new.idempotency {
                                model.by_key.insert(i.key.clone(), model.entries.len());
                            }
                            model.entries.push((new, receipt));
                        }
                        Some(seq) => {
                            let (original, receipt) = &model.entries[seq];
                            let same = original.idempotency.as_ref().unwrap().fingerprint
                                == new.idempotency.as_ref().unwrap().fingerprint;
                            if same {
                                prop_assert_eq!(answer, Ok(Receipt { duplicate: true, ..receipt.clone() }));
                            } else {
                                let conflict = answer.expect_err("conflicting fingerprint");
                                prop_assert_eq!(&conflict.existing, receipt);
                            }
                        }
                    }
                }
            }
            Op::Restart => {
                rt.block_on(ledger.close()).unwrap();
                drop(ledger);
                let mut progress = Vec::new();
                ledger = Ledger::open_with_progress(config(), &mut |done, total| {
                    progress.push((done, total));
                })
                .unwrap();
                // Close ended the head with an index entry unless it did already.
                if model.close_appends_index() {
                    model.take_index_entry(&ledger)?;
                }
                let n = model.entries.len() as u64;
                prop_assert_eq!(ledger.head().size, n);
                prop_assert_eq!(progress.last().copied(), Some((n, n)));
            }
        }
        model.check(&ledger)?;
    }
    let closing_index = u64::from(model.close_appends_index());
    rt.block_on(ledger.close()).unwrap();
    drop(ledger);
    let report = verify_offline();
    let n = model.entries.len() as u64 + closing_index;
    prop_assert_eq!(report.entries, n);
    prop_assert_eq!(report.checkpoint_size, Some(n));
    let indexes = model.entries.iter().filter(|(new, _)| tlog::index::is_index_payload(&new.payload)).count();
    prop_assert_eq!(report.index_entries, indexes as u64 + closing_index);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn ledger_matches_vec_model(ops in proptest::collection::vec(op(), 1..10)) {
        let dir = tempfile::tempdir().unwrap();
        run_model(
            ops,
            &|| LedgerConfig::new(dir.path()),
            &|| super::super::verify(dir.path(), &mut |_, _| {}).unwrap(),
        )?;
    }

    /// The same model on the PostgreSQL engine, one fresh database per case.
    #[test]
    fn postgres_ledger_matches_vec_model(ops in proptest::collection::vec(op(), 1..10)) {
        let dir = tempfile::tempdir().unwrap();
        let url = pgtest::database();
        let key = dir.path().join("ledger.key");
        run_model(
            ops,
            &|| LedgerConfig { store: Some(url.clone()), ..LedgerConfig::new(dir.path()) },
            &|| super::super::verify_postgres(&url, Some(&key), &mut |_, _| {}).unwrap(),
        )?;
    }
}
