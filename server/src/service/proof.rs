//! The model in the log and score proofs: the scoring model's exact file
//! becomes a ledger entry at start, scores name it by that entry's hash,
//! and `GetScoreProof` answers a bundle a bank checks offline with the
//! `evidence` crate (`docs/ledger.md`, "Proof bundles").

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use evidence::score::{BundleEntry, Kind, ProvenEntry, ScoreBundle};

use super::*;

/// Most entries about one enterprise a score proof holds: far above any
/// real enterprise (100 000 entries make a bundle of about 22 MB), and a
/// bound on the memory one call takes.
pub const MAX_PROOF_ENTRIES: usize = 1_000_000;

impl Service {
    /// Appends the model's exact file as a ledger entry unless this version
    /// already is one: a restart with the same file appends nothing, and
    /// another file under a published version is refused (the key is the
    /// version, the fingerprint the file).
    pub async fn publish_model(&self) -> Result<()> {
        let event = Event::ScoringModel {
            version: self.model.version().to_owned(),
            model: self.model.source().as_bytes().to_vec(),
        };
        let entry = event.encode("ecocode");
        let answer = self.ledger.append(vec![entry]).await?.into_iter().next();
        let receipt = match answer {
            Some(Ok(receipt)) => receipt,
            Some(Err(conflict)) => {
                return Err(Error::FailedPrecondition(format!(
                    "the scoring model file differs from the one published as version {} at ledger entry {}; \
                     a changed model needs a new version (the `version` key of the model file)",
                    self.model.version(),
                    conflict.existing.seq
                )));
            }
            None => return Err(Error::Internal("the ledger answered no receipt for the model entry".into())),
        };
        let _ = self.model_entry.set((receipt.seq, receipt.entry_hash));
        Ok(())
    }

    /// The model entry `(seq, hash)`, once published.
    pub fn model_entry(&self) -> Option<(u64, Hash)> {
        self.model_entry.get().copied()
    }

    /// `view` naming its model entry (when the entry is in its tree) and
    /// the index commitment of the latest signed checkpoint within its tree.
    pub(super) async fn with_commitments(&self, mut view: ScoreView) -> Result<ScoreView> {
        view.model_entry = self.model_entry().filter(|(seq, _)| *seq < view.tree_size).map(|(_, h)| h);
        let size = view.tree_size;
        let latest = self.ledger.checkpoint()?.tree_size;
        let candidates: Vec<u64> = [size, latest].into_iter().filter(|s| *s > 0 && *s <= size).collect();
        for candidate in candidates {
            if let Some(root) = self.index_at(candidate).await? {
                view.index = Some((candidate, root));
                break;
            }
        }
        Ok(view)
    }

    /// The index root the entry ending the tree of `size` commits to, if it
    /// is an index entry: read once per size (most reads ask for the head
    /// and the latest checkpoint, the same few sizes).
    async fn index_at(&self, size: u64) -> Result<Option<Hash>> {
        let memo = |s: &Self| s.index_at.lock().unwrap_or_else(|p| p.into_inner()).get(&size).copied();
        if let Some(known) = memo(self) {
            return Ok(known);
        }
        let entry = self.on_ledger(move |ledger| ledger.entry(size - 1)).await?;
        let root = tlog::index::Commitment::parse(&entry.payload).ok().map(|c| c.root);
        let mut known = self.index_at.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= INDEX_MEMO {
            known.clear();
        }
        known.insert(size, root);
        Ok(root)
    }
}

/// Tree sizes [`Service::index_at`] remembers before it starts over.
const INDEX_MEMO: usize = 4096;

impl Service {
    /// A score proof bundle of `uscc` (JSON): at the signed checkpoint of
    /// size `tree_size` (0: the latest published one), scored at `at`
    /// (default now). Authorized like `GetScore` and recorded as an inquiry;
    /// the public gets it only when every entry is one the public may see.
    pub async fn score_proof(
        self: &Arc<Self>,
        who: &Principal,
        purpose: &str,
        uscc: &Uscc,
        tree_size: u64,
        at: Option<Timestamp>,
    ) -> Result<Vec<u8>> {
        auth::may_read_scores_at_all(who, uscc.as_str())?;
        let (checkpoint_note, size) = if tree_size == 0 {
            let published = self.published_checkpoint()?;
            (published.note, published.tree_size)
        } else {
            let head = self.ledger.head().size;
            if tree_size > head {
                return Err(Error::InvalidArgument(format!(
                    "tree_size: {tree_size} is beyond the ledger's {head} entries"
                )));
            }
            // A true statement about the tree at that size, signed now: the
            // root and chain are the ledger's own.
            let (root, chain) = (self.ledger.root_at(tree_size)?, self.ledger.chain_at(tree_size)?);
            let body = tlog::note::checkpoint_body(&self.origin, tree_size, &root, &chain);
            (self.ledger.sign_note(&body)?, tree_size)
        };
        let (model_seq, _) = self
            .model_entry()
            .ok_or_else(|| Error::Unavailable("the scoring model is not published yet".into()))?;
        if model_seq >= size {
            return Err(Error::FailedPrecondition(format!(
                "tree_size: the model {} was published at entry {model_seq}, after the checkpoint of size {size}; \
                 ask for a later checkpoint",
                self.model.version()
            )));
        }
        let view = self.read_score(who, uscc, at, size).await?;
        let view = ScoreView { model_entry: self.model_entry().map(|(_, h)| h), ..view };
        let attestation = self.sign_attestation(&view)?;
        let (service, key, enterprise) = (self.clone(), uscc.clone(), view.enterprise.clone());
        let reader = who.clone();
        let bundle = blocking(move || {
            // Credit repair and publicity stop sharing (令第36号). A proof
            // holds the entries' hashed bytes: a committed record's are its
            // scoring fields and a commitment to the rest, which every
            // reader of the score may hold; a record written before
            // committed records holds everything, so a reader who receives
            // one only as withheld gets no proof (docs/ledger.md).
            let records = service.records_of(key.as_str())?;
            for withheld in service.withheld_records(&reader, &enterprise, &records, None, None)? {
                let seq = withheld.seq.0;
                if !Event::is_committed_record_payload(&service.ledger.entry(seq)?.payload) {
                    return Err(Error::FailedPrecondition(format!(
                        "uscc: {key} has a record no longer shared with this reader (seq {seq}, {}) \
                         written before records were committed, so a proof would disclose it whole; \
                         the enterprise itself, its regulators and admins can fetch the proof",
                        withheld.why.as_str()
                    )));
                }
            }
            let index = service.ledger.subject_index(key.as_str().as_bytes(), size)?;
            if index.seqs.len() > MAX_PROOF_ENTRIES {
                return Err(Error::ResourceExhausted(format!(
                    "uscc: {key} has {} entries, more than a score proof holds ({MAX_PROOF_ENTRIES})",
                    index.seqs.len()
                )));
            }
            let mut entries = Vec::with_capacity(index.seqs.len());
            let mut hidden = false;
            for &seq in &index.seqs {
                let entry = service.ledger.entry(seq)?;
                // The page's rule (`page::proof_hides_records`): records
                // other than scored ones, and monitoring points (which no
                // lender or public reader lists either), are what the
                // public may not see.
                match Event::decode(&entry)? {
                    Event::Record(record) => {
                        hidden |= !matches!(
                            service.model.kind_class(&record.kind),
                            Some(scoring::KindClass::Scored { .. })
                        );
                    }
                    Event::MonitoringPoint(_) => hidden = true,
                    _ => {}
                }
                entries.push(BundleEntry {
                    seq,
                    recorded_at_ns: entry.recorded_at_ns,
                    payload: B64.encode(&entry.payload),
                });
            }
            auth::may_prove_score(&reader, &enterprise, hidden)?;
            let proven = |seq: u64| -> Result<ProvenEntry> {
                let entry = service.ledger.entry(seq)?;
                let hashes = service.ledger.inclusion_proof(seq, size)?;
                Ok(ProvenEntry {
                    seq,
                    recorded_at_ns: entry.recorded_at_ns,
                    payload: B64.encode(&entry.payload),
                    hashes: tlog::bundle::encode_hashes(&hashes),
                })
            };
            let bundle = ScoreBundle {
                kind: Kind::Score,
                attestation,
                checkpoint: checkpoint_note,
                entries,
                model_entry: proven(model_seq)?,
                index_entry: proven(size - 1)?,
                index_proof: tlog::bundle::encode_hashes(&index.proof.siblings),
            };
            serde_json::to_vec_pretty(&bundle)
                .map_err(|e| Error::Internal(format!("score proof of {key}: {e}")))
        })
        .await?;
        self.inquire(who, purpose, "GetScoreProof", &[&view.enterprise]).await?;
        Ok(bundle)
    }
}
