//! Ledger reads: checkpoints, entries, proofs, and the entry policy.

use super::*;

impl Service {
    /// The latest signed checkpoint.
    pub fn checkpoint(&self, who: &Principal) -> Result<Checkpoint> {
        auth::may_read_ledger(who)?;
        self.published_checkpoint()
    }

    /// The latest published checkpoint as the public reads it (the log's
    /// `/checkpoint` for mirrors): checkpoints are public.
    pub fn public_checkpoint(&self) -> Result<Checkpoint> {
        self.checkpoint(&Principal::public())
    }

    /// The witnessed checkpoint under `--witness-policy`, else the latest
    /// signed one: read, never signed.
    pub(super) fn published_checkpoint(&self) -> Result<Checkpoint> {
        if let Some(published) = self.witnessing.get().and_then(|w| w.published()) {
            return Ok(published);
        }
        Ok(self.ledger.checkpoint()?)
    }

    /// Publishes only checkpoints its witnesses cosigned (`--witness-policy`).
    pub fn attach_witnessing(&self, witnessing: Arc<crate::witnessing::Witnessing>) {
        let _ = self.witnessing.set(witnessing);
    }

    pub fn witnessing(&self) -> Option<&Arc<crate::witnessing::Witnessing>> {
        self.witnessing.get()
    }

    /// A checkpoint whose tree holds the first `size` entries: what a
    /// writer hands back so that every receipt it acknowledged can be
    /// proven at once. Signs a new one only when the latest is too small.
    pub(crate) async fn checkpoint_covering(&self, who: &Principal, size: u64) -> Result<Checkpoint> {
        auth::may_sign_checkpoint(who)?;
        // The witnessed one when it covers `size`; appends never wait for witnesses.
        if let Some(published) =
            self.witnessing.get().and_then(|w| w.published()).filter(|p| p.tree_size >= size)
        {
            return Ok(published);
        }
        self.on_ledger(move |ledger| ledger.checkpoint_covering(size)).await
    }

    /// Entry `seq` as `who` receives it: whole, or withheld (its payload
    /// left out, its entry hash kept; [`auth::record_disclosure`]).
    pub async fn entry(self: &Arc<Self>, who: &Principal, seq: u64) -> Result<(Entry, Option<Withheld>)> {
        auth::may_read_ledger(who)?;
        let (service, who) = (self.clone(), who.clone());
        blocking(move || {
            let entry = service.ledger.entry(seq)?;
            let withheld = service.may_read_entry(&who, &entry, &mut HashMap::new())?;
            Ok(disclose_entry(entry, withheld))
        })
        .await
    }

    /// Entries `[from, to)` (`to = 0`: the current size) that `who` may
    /// read, streamed through a bounded channel. Entries are read in chunks
    /// on the blocking pool and only when the reader has room, so a stream
    /// that is never read holds no thread and little memory.
    pub fn entries(
        self: &Arc<Self>,
        who: &Principal,
        from: u64,
        to: u64,
    ) -> Result<mpsc::Receiver<Result<ShownEntry>>> {
        const CHUNK: u64 = 256;
        auth::may_read_ledger(who)?;
        let size = self.ledger.head().size;
        let to = if to == 0 { size } else { to };
        if to > size || from > to {
            return Err(ledger::Error::OutOfRange(format!(
                "entries {from}..{to} are not within the ledger's {size} entries"
            ))
            .into());
        }
        let (tx, rx) = mpsc::channel(CHUNK as usize);
        let (service, who) = (self.clone(), who.clone());
        tokio::spawn(async move {
            let mut next = from;
            while next < to {
                // Wait for room before reading: an unread stream stops here.
                let Ok(permits) = tx.reserve_many(CHUNK.min(to - next) as usize).await else { return };
                let (end, reader, service) = ((next + CHUNK).min(to), who.clone(), service.clone());
                let chunk = tokio::task::spawn_blocking(move || {
                    // Each enterprise's records are read once per chunk.
                    let mut records = HashMap::new();
                    service
                        .ledger
                        .scan(next, end)
                        .filter_map(|e| match e.map_err(Error::from) {
                            Ok(e) => match service.may_read_entry(&reader, &e, &mut records) {
                                Ok(withheld) => Some(Ok(disclose_entry(e, withheld))),
                                // Not the reader's to see (or, for a lender,
                                // about an enterprise that granted it nothing).
                                Err(Error::PermissionDenied(_) | Error::FailedPrecondition(_)) => None,
                                Err(other) => Some(Err(other)),
                            },
                            Err(e) => Some(Err(e)),
                        })
                        .collect::<Vec<_>>()
                })
                .await;
                let chunk =
                    chunk.unwrap_or_else(|e| vec![Err(Error::Internal(format!("entry reader failed: {e}")))]);
                for (permit, item) in permits.zip(chunk) {
                    let stop = item.is_err();
                    permit.send(item);
                    if stop {
                        return;
                    }
                }
                next = end;
            }
        });
        Ok(rx)
    }

    /// C2SP tlog-tiles tile `tile` as served: its hashes (public, like
    /// checkpoints and proofs) or, for an entry bundle, its entries (only
    /// to [`auth::may_read_every_entry`]). `None` when the current tree
    /// does not hold the whole tile (a partial width beyond the tree).
    /// `who` is `None` for an anonymous caller, who reads as the public.
    pub async fn tile(&self, who: Option<&Principal>, tile: tlog::tiles::Tile) -> Result<Option<Vec<u8>>> {
        use tlog::tiles::TileKind;
        let who = who.cloned().unwrap_or_else(Principal::public);
        auth::may_read_ledger(&who)?;
        if tile.kind == TileKind::Entries {
            auth::may_read_every_entry(&who)?;
        }
        if !tile.within(self.ledger.head().size) {
            return Ok(None);
        }
        let bytes = self
            .on_ledger(move |ledger| match tile.kind {
                TileKind::Hashes(level) => {
                    Ok(tlog::tiles::encode_hashes(&ledger.tile(level, tile.index, tile.width)?))
                }
                TileKind::Entries => ledger.entry_bundle(tile.index, tile.width),
            })
            .await?;
        Ok(Some(bytes))
    }

    /// RFC 9162 inclusion proof of `seq` in the tree of `tree_size` (0 = now);
    /// answers the tree size used.
    pub async fn inclusion_proof(
        &self,
        who: &Principal,
        seq: u64,
        tree_size: u64,
    ) -> Result<(u64, Vec<Hash>)> {
        auth::may_read_ledger(who)?;
        let tree_size = if tree_size == 0 { self.ledger.head().size } else { tree_size };
        Ok((tree_size, self.on_ledger(move |ledger| ledger.inclusion_proof(seq, tree_size)).await?))
    }

    /// RFC 9162 consistency proof from `from` to `to` (0 = now); answers the
    /// `to` size used.
    pub async fn consistency_proof(&self, who: &Principal, from: u64, to: u64) -> Result<(u64, Vec<Hash>)> {
        auth::may_read_ledger(who)?;
        let to = if to == 0 { self.ledger.head().size } else { to };
        Ok((to, self.on_ledger(move |ledger| ledger.consistency_proof(from, to)).await?))
    }
}

impl Service {
    /// [`auth::may_read_entry`] for `entry`: what it is (a record of which
    /// kind, a registration, a monitoring point) is read from its payload,
    /// the enterprise it is about from the directory; and for a record,
    /// whether `who` receives it only as withheld
    /// ([`auth::record_disclosure`]), from the enterprise's records
    /// (`records`: those read so far, by USCC).
    pub(super) fn may_read_entry(
        &self,
        who: &Principal,
        entry: &Entry,
        records: &mut HashMap<String, Vec<LedgerRecord>>,
    ) -> Result<Option<Withheld>> {
        use auth::EntryKind;
        match &who.role {
            // Every entry, without decoding (audits read the whole log).
            Role::Admin => return Ok(None),
            // Only entries about itself, whatever they are.
            Role::Enterprise { uscc } if uscc.as_bytes() != entry.subject.as_slice() => {
                return Err(auth::denied(
                    who,
                    &format!("read entry {}, which is not about {uscc}", entry.seq),
                ));
            }
            _ => {}
        }
        // The directory, without catching up: the entry lies below the head
        // it was read from, and the directory has taken in every entry
        // below a published head (the commit observer runs first).
        let about = |uscc: &Uscc, stated: Option<&Enterprise>| -> Result<Enterprise> {
            match (self.directory.enterprise(uscc.as_str()).map(|r| r.enterprise), stated) {
                (Some(current), _) => Ok(current),
                (None, Some(stated)) => Ok(stated.clone()),
                (None, None) => Err(Error::Internal(format!(
                    "entry {} is about {uscc}, which is not registered",
                    entry.seq
                ))),
            }
        };
        let seq = entry.seq;
        match Event::decode(entry)? {
            Event::Record(record) => {
                let enterprise = about(&record.uscc, None)?;
                let class = self.model.kind_class(&record.kind);
                auth::may_read_entry(who, seq, EntryKind::Record { enterprise: &enterprise, class })?;
                // A lender reads an enterprise's records under a grant.
                self.lender_grant(who, &enterprise, crate::consent::Cover::Details)?;
                if !auth::publicity_applies(who) || !matches!(class, Some(KindClass::Scored { .. })) {
                    return Ok(None);
                }
                let uscc = record.uscc.to_string();
                if !records.contains_key(&uscc) {
                    records.insert(uscc.clone(), self.records_of(&uscc)?);
                }
                let all = &records[&uscc];
                let me = LedgerRecord { seq: Seq(seq), record };
                let publicity = self.model.publicity(&me, all, self.clock.now(), self.ledger.head().size);
                Ok(match (auth::record_disclosure(who, &enterprise, class, &publicity)?, publicity) {
                    (auth::Disclosure::Withheld, scoring::Publicity::NotPublished { class, since, why }) => {
                        Some(Withheld { seq: Seq(seq), class, why, since, entry_hash: entry.entry_hash })
                    }
                    _ => None,
                })
            }
            Event::Registration(e) => {
                auth::may_read_entry(who, seq, EntryKind::Enterprise(&about(&e.uscc, Some(&e))?))
                    .map(|()| None)
            }
            Event::EnterpriseUpdate { update, .. } => {
                let e = about(&update.enterprise.uscc, Some(&update.enterprise))?;
                auth::may_read_entry(who, seq, EntryKind::Enterprise(&e)).map(|()| None)
            }
            Event::MonitoringPoint(point) => {
                auth::may_read_entry(who, seq, EntryKind::MonitoringPoint(&about(point.uscc(), None)?))
                    .map(|()| None)
            }
            Event::PlatformOutage(_) => auth::may_read_entry(who, seq, EntryKind::Platform).map(|()| None),
            Event::AccessGrant(g) => {
                let e = about(&g.uscc, None)?;
                auth::may_read_entry(who, seq, EntryKind::Grant { enterprise: &e, lender: &g.lender })
                    .map(|()| None)
            }
            Event::AccessRevocation { uscc, grant_seq } => {
                let e = about(&uscc, None)?;
                let lender = self.directory.grant(grant_seq).map(|g| g.grant.lender).unwrap_or_default();
                auth::may_read_entry(who, seq, EntryKind::Grant { enterprise: &e, lender: &lender })
                    .map(|()| None)
            }
            // About no enterprise, and what every checkpoint's verifier
            // needs (a root and a count): public.
            Event::Index(_) => Ok(None),
            // The published rules every score names: public.
            Event::ScoringModel { .. } => Ok(None),
        }
    }
}

/// An entry as its reader receives it: whole, or withheld (payload left
/// out) with why.
pub type ShownEntry = (Entry, Option<Withheld>);

/// A withheld entry keeps its seq, time and hashes (inclusion and the
/// chain still verify) and loses its details: a committed record keeps
/// its hashed bytes (the scoring fields and the commitment, so a score
/// stays recomputable), a record written before committed records loses
/// its payload (docs/ledger.md, "Withheld entries").
fn disclose_entry(mut entry: Entry, withheld: Option<Withheld>) -> (Entry, Option<Withheld>) {
    if withheld.is_some() {
        entry.details = Vec::new();
        if !Event::is_committed_record_payload(&entry.payload) {
            entry.payload = Vec::new();
        }
    }
    (entry, withheld)
}
