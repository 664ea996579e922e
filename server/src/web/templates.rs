//! What the templates in `server/templates/` are given. The data of an
//! enterprise's page ([`PageData`]) is also its JSON (`?format=json`), so
//! the page and the feed can never say different things. Every value is
//! escaped by askama when rendered.

use askama::Template;
use serde::Serialize;

use super::chart::Chart;
use super::qr::Symbol;

/// Who is signed in, for the header and the forms' CSRF token.
#[derive(Clone, Debug)]
pub struct Me {
    pub name: String,
    pub role: &'static str,
    pub csrf: String,
    /// The enterprise's own USCC, for its link.
    pub own_uscc: Option<String>,
}

/// An enterprise's page as data: what the page shows and `?format=json`
/// answers.
#[derive(Clone, Debug, Serialize)]
pub struct PageData {
    pub uscc: String,
    pub name: String,
    pub region_code: String,
    pub industry_code: String,
    pub code: &'static str,
    pub code_zh: &'static str,
    pub code_en: &'static str,
    #[serde(skip)]
    pub code_class: &'static str,
    #[serde(skip)]
    pub code_symbol: &'static str,
    pub grade: &'static str,
    pub grade_zh: &'static str,
    pub grade_en: &'static str,
    /// The MEE 2013 four-level colour (`GREEN`, `BLUE`, `YELLOW`, `RED`),
    /// in words (绿牌 …), the level's name (环保诚信 …) and English.
    pub mee_level: &'static str,
    pub mee_level_zh: &'static str,
    pub mee_level_name: &'static str,
    pub mee_level_en: &'static str,
    #[serde(skip)]
    pub mee_level_class: &'static str,
    pub points: i32,
    pub veto: bool,
    pub disputed: bool,
    pub model: String,
    pub as_of: String,
    /// `as_of` to the second, for people.
    #[serde(skip)]
    pub as_of_shown: String,
    pub tree_size: u64,
    pub root: String,
    /// The first [`crate::service::MAX_PAGE_REASONS`] reasons, largest first.
    pub reasons: Vec<ReasonLine>,
    /// How many reasons the score has (more than `reasons` shows when the
    /// page cuts them).
    pub reasons_total: usize,
    /// How many of the enterprise's records the reader receives only as
    /// withheld: earlier records exist and are no longer published.
    pub unpublished: usize,
    /// The score at the start of the last 24 months and its changes since,
    /// summarized (per day the lowest, the highest and the last, and every
    /// colour change; at most [`crate::service::MAX_PAGE_HISTORY`] points).
    pub history: Vec<HistoryPoint>,
    /// False when the colour changed more often than the page can show and
    /// only the most recent changes are in `history`.
    pub history_complete: bool,
    pub checkpoint: CheckpointData,
    pub attestation: AttestationData,
    /// The key checkpoints and attestations verify with (`ecocode key show`).
    pub verifier_key: String,
    /// "complete: this score counts all k entries ...": k, and whether the
    /// reader's score proof needs a sign-in; `None` without an index entry.
    pub complete: Option<Completeness>,
    /// The check of an attestation scanned from a QR code (`?att=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scanned: Option<ScannedCheck>,
}

/// What the checkpoint's subject index says of the enterprise.
#[derive(Clone, Debug, Serialize)]
pub struct Completeness {
    pub entries: u64,
    pub tree_size: u64,
    /// The reader (the public) gets no score proof: some records are not
    /// public; a lender's or the enterprise's sign-in gets the full one.
    pub needs_sign_in: bool,
    pub proof_url: String,
}

/// One line of the explanation.
#[derive(Clone, Debug, Serialize)]
pub struct ReasonLine {
    /// The record's ledger seq; `None` for the model's corrections (caps,
    /// the clamp).
    pub seq: Option<u64>,
    pub kind: String,
    pub kind_zh: String,
    /// When the record occurred (RFC 3339 date).
    pub occurred_on: Option<String>,
    pub points: i32,
    /// The date it stops counting.
    pub counts_until: Option<String>,
    pub description: String,
    pub veto: bool,
    pub disputed: bool,
    pub rectification_pending: bool,
    /// Whether credit repair may be granted now.
    pub repair_eligible: bool,
    /// The model's words for why repair is not yet possible (only for
    /// readers who see workflow details: the enterprise, regulators).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair_note: Option<String>,
    /// Its inclusion proof in the latest signed checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<ProofData>,
    /// Set when the reader receives the record only as withheld (its
    /// publicity ended): the kind is then `withheld`, no description, date
    /// or proof.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld: Option<WithheldLine>,
}

/// Why a record is withheld from the reader (docs/api.md#publicity).
#[derive(Clone, Debug, Serialize)]
pub struct WithheldLine {
    /// `none`, `minor`, `general` or `serious`.
    pub publicity_class: &'static str,
    /// `window_ended`, `repaired`, `voided` or `never_published`.
    pub why: &'static str,
    /// Since when (RFC 3339 date).
    pub since: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProofData {
    pub tree_size: u64,
    /// The audit path, base64 hashes, leaf to root.
    pub hashes: Vec<String>,
    /// Where the proof bundle is downloaded.
    pub bundle_url: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct HistoryPoint {
    pub as_of: String,
    #[serde(skip)]
    pub as_of_shown: String,
    pub points: i32,
    pub grade: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckpointData {
    pub tree_size: u64,
    pub root: String,
    /// The C2SP signed note, exactly as signed.
    pub note: String,
    /// `witnessed by k of n: names` under `--witness-policy`; else empty.
    #[serde(skip)]
    pub witnessed: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct AttestationData {
    /// The signed note (`ecocode attest verify` checks it).
    pub note: String,
    /// What the QR code encodes: the page URL with the note as `?att=`.
    pub qr_text: String,
    pub tree_size: u64,
    /// The page's check of its own QR code against the current signed
    /// checkpoint (as for a scanned one).
    pub check: ScannedCheck,
}

/// What a scanned attestation turned out to be.
#[derive(Clone, Debug, Serialize)]
pub struct ScannedCheck {
    /// `current`: verifies and states the current code; `superseded`:
    /// verifies but the code has changed since; `invalid`: does not verify.
    pub status: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attested: Option<Attested>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Attested {
    pub points: i64,
    pub grade: String,
    pub code: String,
    pub code_zh: &'static str,
    pub as_of: String,
    pub tree_size: u64,
}

/// A workflow filing shown to the enterprise itself (and regulators).
#[derive(Clone, Debug)]
pub struct Filing {
    pub seq: u64,
    pub kind: String,
    pub kind_zh: String,
    pub refers_to: u64,
    pub occurred_on: String,
    pub description: String,
    pub evidence: String,
}

/// One lender access grant on the enterprise's own page.
#[derive(Clone, Debug, Serialize)]
pub struct GrantLine {
    pub seq: u64,
    pub lender: String,
    pub purpose: String,
    pub covers: String,
    pub starts_on: String,
    pub expires_on: String,
    pub status: &'static str,
}

#[derive(Template)]
#[template(path = "enterprise.html")]
pub struct EnterprisePage<'a> {
    pub me: Option<Me>,
    pub d: &'a PageData,
    pub qr: Symbol,
    pub chart: Chart,
    /// The enterprise itself is signed in: its filings and forms.
    pub own: bool,
    pub filings: Vec<Filing>,
    /// The enterprise's lender access grants (for itself only).
    pub grants: Vec<GrantLine>,
    /// The CLI command that checks a downloaded proof bundle offline.
    pub verify_command: String,
    /// The note just filed, after a form's redirect.
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "index.html")]
pub struct IndexPage {
    pub me: Option<Me>,
}

#[derive(Template)]
#[template(path = "signin.html")]
pub struct SigninPage {
    pub me: Option<Me>,
    pub csrf: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub me: Option<Me>,
    pub status: u16,
    pub title: &'a str,
    pub message: &'a str,
}

/// One row of the regulator's list and the lender's portfolio.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub uscc: String,
    pub name: String,
    pub region_code: String,
    pub industry_code: String,
    pub code: &'static str,
    pub code_zh: &'static str,
    #[serde(skip)]
    pub code_class: &'static str,
    pub grade: &'static str,
    pub grade_zh: &'static str,
    pub points: i32,
    pub as_of: String,
}

#[derive(Template)]
#[template(path = "region.html")]
pub struct RegionPage {
    pub me: Option<Me>,
    pub rows: Vec<Row>,
    /// `(code_zh, code, count)` over every enterprise matching the filters.
    pub counts: Vec<(&'static str, &'static str, usize)>,
    /// True when there were more enterprises than counted.
    pub counts_capped: bool,
    pub region: String,
    pub industry: String,
    pub code: String,
    pub grade: String,
    pub sort: String,
    /// The query string of the next page, if any.
    pub next: Option<String>,
    /// The query string of the CSV download.
    pub csv: String,
}

#[derive(Template)]
#[template(path = "portfolio.html")]
pub struct PortfolioPage {
    pub me: Option<Me>,
    pub usccs: String,
    pub purpose: String,
    pub rows: Vec<Row>,
    pub not_found: Vec<String>,
    pub malformed: Vec<String>,
    pub asked: bool,
}

#[derive(Template)]
#[template(path = "feed.xml")]
pub struct Feed<'a> {
    pub d: &'a PageData,
    pub base: String,
    pub entries: Vec<FeedEntry>,
    pub updated: String,
}

#[derive(Clone, Debug)]
pub struct FeedEntry {
    pub as_of: String,
    pub title: String,
    pub summary: String,
}
