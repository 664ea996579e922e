//! What reads answer: scores with the enterprise and the ledger prefix
//! behind them, pages of them, and the colour changes watchers see.

use std::sync::Arc;

use ledger::Hash;
use scoring::{
    Code, Enterprise, Evaluation, LedgerRecord, NotPublishedWhy, PublicityClass, Seq, Timestamp, Uscc,
};

/// A score with the enterprise and the ledger prefix behind it.
#[derive(Clone, Debug)]
pub struct ScoreView {
    pub enterprise: Enterprise,
    pub evaluation: Evaluation,
    pub tree_size: u64,
    pub root: Hash,
    /// The entry holding the model's exact file (GetScore, GetAttestation).
    pub model_entry: Option<Hash>,
    /// The index commitment `(size, root)` of the latest signed checkpoint
    /// within `tree_size`, where it is known (GetScore, GetAttestation).
    pub index: Option<(u64, Hash)>,
    /// The reasons' records the reader receives only as withheld
    /// ([`crate::auth::record_disclosure`]), ascending by seq; their reason
    /// lines carry the kind `withheld` and no description.
    pub withheld: Vec<Withheld>,
    /// What the reasons' disclosure is, when the view comes from the kept
    /// scores (`Service::disclosed` reads no entry then); taken by it, so
    /// it never reaches an answer.
    pub(crate) disclosure: Option<Arc<KeptDisclosure>>,
}

/// The disclosure of a kept evaluation's reasons to the readers held to
/// publicity (the public and lenders), decided when it was computed and
/// holding until publicity next changes for any of them.
#[derive(Debug, Default)]
pub(crate) struct KeptDisclosure {
    /// The service's clock when it was decided; it holds over `[from, until)`.
    pub from: Timestamp,
    pub until: Option<Timestamp>,
    /// The reasons' records withheld over that interval, ascending by seq.
    pub withheld: Vec<Withheld>,
}

impl KeptDisclosure {
    pub(crate) fn holds_at(&self, now: Timestamp) -> bool {
        self.from <= now && self.until.is_none_or(|until| now < until)
    }
}

/// The kind a withheld reason line carries instead of its record's kind.
pub const WITHHELD_KIND: &str = "withheld";

/// A record the reader receives only as withheld: no longer published (its
/// publicity window ended, repair was granted, it was voided) or never.
/// Its entry hash is the Merkle leaf, so its inclusion still verifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Withheld {
    pub seq: Seq,
    pub class: PublicityClass,
    pub why: NotPublishedWhy,
    /// Since when it is not published.
    pub since: Timestamp,
    /// Zeros where the read does not carry it (the page's count).
    pub entry_hash: Hash,
}

/// The answer of [`Service::batch_scores`].
#[derive(Debug, Default)]
pub struct BatchScores {
    pub scores: Vec<ScoreView>,
    pub not_found: Vec<Uscc>,
}

/// One page of [`Service::list_scores`].
#[derive(Debug, Default)]
pub struct ScorePage {
    pub scores: Vec<ScoreView>,
    /// Where the next page starts, if there is one.
    pub next_after: Option<String>,
}

/// A colour seen by a watcher: first the current one (`previous = None`),
/// then each change.
#[derive(Clone, Debug)]
pub struct CodeChange {
    pub uscc: Uscc,
    pub previous: Option<Code>,
    pub view: ScoreView,
}

/// What the HJ 212 gateway saw, as far as the caller may see it.
#[derive(Debug)]
pub struct GatewayFigures {
    /// Every counter of the gateway; `None` for a regulator scoped to a
    /// region, since they cover every region.
    pub totals: Option<hj212::GatewayCounts>,
    pub devices: std::collections::BTreeMap<String, hj212::DeviceFigures>,
}

/// What an enterprise's web page shows, as far as the reader may see it
/// (the public policy is in [`crate::auth`]).
#[derive(Clone, Debug)]
pub struct PageView {
    /// Who reads: the signed-in principal, or the public
    /// ([`crate::auth::page_reader`]).
    pub reader: crate::principals::Principal,
    /// Whether the reader is the enterprise itself, which sees its filings
    /// and forms ([`crate::auth::is_itself`]).
    pub own: bool,
    pub score: ScoreView,
    /// Whether the reader sees the workflow filings and what follows from
    /// them, such as why credit repair cannot be granted yet
    /// ([`crate::auth::may_see_filings`]).
    pub detailed: bool,
    /// The records the reader may see, ascending by seq: for the public
    /// and lenders the scored records only; for the enterprise itself,
    /// regulators and admins also the workflow filings.
    pub records: Vec<LedgerRecord>,
    /// The scored records the reader receives only as withheld (the page
    /// says that earlier records exist and are no longer published).
    pub withheld: Vec<Withheld>,
    /// Records with a dispute open now.
    pub open_disputes: Vec<Seq>,
    /// For each reason with a record among the first [`MAX_PAGE_REASONS`]:
    /// whether credit repair may be granted now, or the model's words for
    /// why not (and from when it may).
    pub repair: Vec<(Seq, Result<(), String>)>,
    /// Points, grade and code over the [`PAGE_HISTORY_DAYS`] before the
    /// score, summarized ([`scoring::summarize`]): at most
    /// [`MAX_PAGE_HISTORY`] steps, every colour change among them.
    pub history: Vec<scoring::Step>,
    /// False when the colour changed more than [`MAX_PAGE_HISTORY`] times
    /// in the period and only the most recent changes are in `history`.
    pub history_complete: bool,
    /// The score's signed attestation (what `GetAttestation` answers).
    pub note: String,
    /// The latest published checkpoint: the page's score, history,
    /// attestation and proofs are all of its tree, so that a page view
    /// never signs or stores one.
    pub checkpoint: ledger::Checkpoint,
    /// `witnessed by k of n: names` of `checkpoint` under
    /// `--witness-policy`; else empty.
    pub witnessed: String,
    /// The inclusion proof in `checkpoint` of each reason's record among
    /// the first [`MAX_PAGE_REASONS`], in the order of the reasons.
    pub proofs: Vec<(Seq, Vec<Hash>)>,
    /// How many entries about the enterprise the checkpoint's subject
    /// index lists (the score counts all of them), and whether the reader's
    /// score proof would be refused for entries it may not see; `None` for
    /// a checkpoint without an index entry.
    pub complete: Option<(u64, bool)>,
}

/// Days of history a page draws (24 months).
pub const PAGE_HISTORY_DAYS: i64 = 730;
/// Most history steps a page, its JSON and its feed show: per day at most
/// the lowest, the highest and the last, plus every colour change.
pub const MAX_PAGE_HISTORY: usize = 3_000;
/// Most reasons a page lists (with their proofs), largest first; the
/// page says how many more the score has.
pub const MAX_PAGE_REASONS: usize = 200;
