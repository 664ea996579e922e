//! Authentication (bearer tokens) and the role/scope rules of the API.
//!
//! Authentication happens at the edge: [`Authenticate`] is a tonic
//! interceptor that puts the caller's [`Principal`] into the request's
//! extensions. Authorization happens at the one door (the `service` module),
//! which calls the `may_*` rules below; nothing else decides who may do what.

use std::sync::Arc;

use scoring::{Enterprise, KindClass, Publicity, WorkflowKind};
use tonic::metadata::MetadataMap;

use crate::consent::{Cover, GrantState, LenderAccess};
use crate::error::{Error, Result};
use crate::principals::{Principal, PrincipalStore, RESERVED_SOURCE, Role};

/// The interceptor in front of every `ecocode.v1` service.
#[derive(Clone, Debug)]
pub struct Authenticate {
    principals: Arc<PrincipalStore>,
}

impl Authenticate {
    pub fn new(principals: Arc<PrincipalStore>) -> Authenticate {
        Authenticate { principals }
    }
}

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let principal = authenticate(&self.principals, request.metadata())?;
        let purpose = purpose_of(request.metadata())?;
        request.extensions_mut().insert(principal);
        request.extensions_mut().insert(purpose);
        Ok(request)
    }
}

/// Most bytes of `x-ecocode-purpose`.
pub const MAX_PURPOSE_BYTES: usize = 200;

/// Why the caller reads, from `x-ecocode-purpose` (e.g. a loan application
/// number); recorded with each inquiry. Empty when not sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Purpose(pub String);

fn purpose_of(metadata: &MetadataMap) -> Result<Purpose> {
    let Some(value) = metadata.get("x-ecocode-purpose") else { return Ok(Purpose::default()) };
    let text = value
        .to_str()
        .map_err(|_| Error::InvalidArgument("x-ecocode-purpose: must be printable ASCII".into()))?;
    Ok(Purpose(purpose_text("x-ecocode-purpose", text)?))
}

/// An inquiry purpose as it enters, from gRPC metadata or a web form:
/// control characters (and the bidirectional overrides that reorder
/// text) stripped, trimmed, at most [`MAX_PURPOSE_BYTES`]. The purpose is
/// shown to the enterprise, on its terminal (`ecocode inquiries`) and its
/// pages, so nothing in it may act on them.
pub fn purpose_text(field: &str, text: &str) -> Result<String> {
    let text = scoring::strip_controls(text);
    let text = text.trim();
    if text.len() > MAX_PURPOSE_BYTES {
        return Err(Error::InvalidArgument(format!(
            "{field}: at most {MAX_PURPOSE_BYTES} bytes, got {}",
            text.len()
        )));
    }
    Ok(text.to_owned())
}

/// The purpose [`Authenticate`] put into `request`.
pub fn purpose<T>(request: &tonic::Request<T>) -> String {
    request.extensions().get::<Purpose>().map(|p| p.0.clone()).unwrap_or_default()
}

/// The principal [`Authenticate`] put into `request`.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Principal, tonic::Status> {
    request.extensions().get::<Principal>().cloned().ok_or_else(|| {
        tonic::Status::unauthenticated("missing authorization metadata; send `authorization: Bearer <token>`")
    })
}

/// The principal behind the request's `authorization: Bearer <token>`.
pub fn authenticate(principals: &PrincipalStore, metadata: &MetadataMap) -> Result<Principal> {
    let header = metadata.get("authorization").ok_or_else(|| {
        Error::Unauthenticated("missing authorization metadata; send `authorization: Bearer <token>`".into())
    })?;
    let header =
        header.to_str().map_err(|_| Error::Unauthenticated("authorization metadata is not ASCII".into()))?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| Error::Unauthenticated("authorization metadata must be `Bearer <token>`".into()))?;
    principals.authenticate(token.trim()).ok_or_else(|| {
        Error::Unauthenticated(
            "unknown token, or its principal was revoked; create one with `ecocode principal add`".into(),
        )
    })
}

pub(crate) fn denied(p: &Principal, what: &str) -> Error {
    Error::PermissionDenied(format!("principal {:?} ({}) may not {what}", p.name, p.role.name()))
}

fn in_region(prefix: &str, e: &Enterprise) -> bool {
    e.region_code.starts_with(prefix)
}

/// Registering an enterprise, or a monitoring point of it.
///
/// A regulator registers only enterprises whose declared region *and*
/// whose USCC's own registration region (its characters 3 to 8, the
/// division of the authority that issued it) lie in its scope. Otherwise a
/// regulator could register another region's company first and lock the
/// rightful regulator out (a USCC is registered once). An enterprise that
/// has moved away from where its USCC was issued is registered by an admin
/// or by a regulator whose scope covers both regions (e.g. the province's).
pub fn may_register(p: &Principal, e: &Enterprise) -> Result<()> {
    match &p.role {
        Role::Admin => Ok(()),
        Role::Regulator { region_prefix } => {
            if !in_region(region_prefix, e) {
                return Err(denied(
                    p,
                    &format!("register enterprises in region {} (scope {region_prefix})", e.region_code),
                ));
            }
            let issued_in = e.uscc.embedded_region();
            if !issued_in.starts_with(region_prefix.as_str()) {
                return Err(denied(
                    p,
                    &format!(
                        "register {}, whose USCC was issued in region {issued_in} outside its scope {region_prefix}; \
                         an admin or a regulator covering both regions registers it",
                        e.uscc
                    ),
                ));
            }
            Ok(())
        }
        _ => Err(denied(p, "register enterprises")),
    }
}

/// Managing a registered enterprise's monitoring points: admins, and
/// regulators whose scope covers the enterprise's region.
pub fn may_manage_points(p: &Principal, e: &Enterprise) -> Result<()> {
    match &p.role {
        Role::Admin => Ok(()),
        Role::Regulator { region_prefix } if in_region(region_prefix, e) => Ok(()),
        _ => {
            Err(denied(p, &format!("manage the monitoring points of {} (region {})", e.uscc, e.region_code)))
        }
    }
}

/// Whether the role may append this kind at all, before the enterprise is looked up.
///
/// A `source` belongs to its writer ([`Principal::writes_as`]): a source
/// system writes only under its bound name, every other principal only under
/// its own name, so nobody can claim another writer's `source_record_id`s
/// (which would make the real record `ALREADY_EXISTS` or a silent
/// duplicate). The admin, the operator, may write under any source but the
/// service's own (`hj212`).
pub fn may_append_kind(p: &Principal, kind: &str, class: KindClass, source: &str) -> Result<()> {
    use WorkflowKind::*;
    let owned = match &p.role {
        Role::Admin => source != RESERVED_SOURCE,
        _ => source == p.writes_as(),
    };
    if !owned {
        let shown: String = source.chars().take(64).collect();
        return Err(denied(
            p,
            &format!("append records under source {shown:?}; it writes as {:?}", p.writes_as()),
        ));
    }
    let ok = match (&p.role, class) {
        (Role::Admin, _) => true,
        (Role::Regulator { .. }, KindClass::Scored { .. }) => true,
        (Role::Regulator { .. }, KindClass::Workflow(w)) => {
            matches!(w, DisputeResolved | RecordVoided | RectificationVerified | RepairGranted)
        }
        (Role::Enterprise { .. }, KindClass::Workflow(w)) => {
            matches!(w, DisputeOpened | RectificationSubmitted)
        }
        (Role::Source { .. }, KindClass::Scored { .. }) => true,
        _ => false,
    };
    if ok { Ok(()) } else { Err(denied(p, &format!("append {kind} records"))) }
}

/// Whether the principal may act on records of this (registered) enterprise.
pub fn may_append_for(p: &Principal, e: &Enterprise) -> Result<()> {
    match &p.role {
        Role::Admin | Role::Source { .. } => Ok(()),
        Role::Regulator { region_prefix } if in_region(region_prefix, e) => Ok(()),
        Role::Enterprise { uscc } if *uscc == e.uscc.as_str() => Ok(()),
        _ => Err(denied(p, &format!("append records about {}", e.uscc))),
    }
}

/// Scores are read by admins and lenders, regulators in scope and the
/// enterprise itself; and, by the public policy below, by the public.
pub fn may_read_score(p: &Principal, e: &Enterprise) -> Result<()> {
    match &p.role {
        Role::Admin | Role::Lender | Role::Public => Ok(()),
        Role::Regulator { region_prefix } if in_region(region_prefix, e) => Ok(()),
        Role::Enterprise { uscc } if *uscc == e.uscc.as_str() => Ok(()),
        _ => Err(denied(p, &format!("read the score of {}", e.uscc))),
    }
}

/// For score reads of a USCC that may not be registered: whether the caller
/// may learn that it is not (lenders, admins and regulators may).
pub fn may_read_scores_at_all(p: &Principal, uscc: &str) -> Result<()> {
    match &p.role {
        Role::Admin | Role::Lender | Role::Regulator { .. } | Role::Public => Ok(()),
        Role::Enterprise { uscc: own } if own == uscc => Ok(()),
        _ => Err(denied(p, &format!("read the score of {uscc}"))),
    }
}

/// The region prefix a listing is restricted to: the request's own, narrowed
/// by a regulator's scope.
pub fn list_scope(p: &Principal, requested: &str) -> Result<String> {
    match &p.role {
        Role::Admin => Ok(requested.to_owned()),
        Role::Regulator { region_prefix } => {
            if requested.starts_with(region_prefix.as_str()) {
                Ok(requested.to_owned())
            } else if region_prefix.starts_with(requested) {
                Ok(region_prefix.clone())
            } else {
                Err(denied(p, &format!("list region {requested:?} outside its scope {region_prefix:?}")))
            }
        }
        _ => Err(denied(p, "list scores")),
    }
}

pub fn may_read_ledger(p: &Principal) -> Result<()> {
    match &p.role {
        Role::Admin | Role::Regulator { .. } | Role::Lender | Role::Enterprise { .. } | Role::Public => {
            Ok(())
        }
        Role::Source { .. } => Err(denied(p, "read the ledger")),
    }
}

/// What a ledger entry is, as far as [`may_read_entry`] needs to know.
#[derive(Clone, Copy, Debug)]
pub enum EntryKind<'a> {
    /// A record about a registered enterprise; `class` is its kind's class
    /// under the model (`None`: a kind the model does not know).
    Record { enterprise: &'a Enterprise, class: Option<KindClass> },
    /// An enterprise's registration or a change of its details or status.
    Enterprise(&'a Enterprise),
    /// A monitoring point of an enterprise: its device, limits and the
    /// verifier of the device's password.
    MonitoringPoint(&'a Enterprise),
    /// About no registered enterprise: platform outages.
    Platform,
    /// A lender access grant of an enterprise, or its revocation, naming
    /// the lender.
    Grant { enterprise: &'a Enterprise, lender: &'a str },
}

/// The entry policy of `GetEntry` and `ListEntries`: whether `p` may read
/// entry `seq`. An entry is given whole or not at all: its payload bytes
/// are what its entry hash and every inclusion proof cover, so a payload
/// with texts cut out would no longer verify. Records follow
/// [`may_see_record`], the same rule as the page; registrations follow
/// [`may_read_score`]; monitoring points (device credentials) go only to
/// the enterprise itself, its regulators and admins; platform outages to
/// every principal but enterprises (which read only entries about
/// themselves) and the public (which reads only the records behind a code).
pub fn may_read_entry(p: &Principal, seq: u64, what: EntryKind<'_>) -> Result<()> {
    may_read_ledger(p)?;
    match what {
        EntryKind::Record { enterprise, class } => may_see_record(p, enterprise, class),
        EntryKind::Enterprise(e) if p.role != Role::Public => may_read_score(p, e),
        EntryKind::MonitoringPoint(e) => match &p.role {
            Role::Admin => Ok(()),
            Role::Regulator { region_prefix } if in_region(region_prefix, e) => Ok(()),
            Role::Enterprise { uscc } if *uscc == e.uscc.as_str() => Ok(()),
            _ => Err(denied(
                p,
                &format!(
                    "read entry {seq}, a monitoring point of {}; devices are read by the enterprise, \
                     its regulators and admins",
                    e.uscc
                ),
            )),
        },
        EntryKind::Platform if matches!(p.role, Role::Admin | Role::Regulator { .. } | Role::Lender) => {
            Ok(())
        }
        EntryKind::Grant { enterprise, lender } => may_see_grant(p, enterprise, lender)
            .map_err(|_| denied(p, &format!("read entry {seq}, an access grant of {}", enterprise.uscc))),
        EntryKind::Enterprise(_) | EntryKind::Platform => match &p.role {
            Role::Enterprise { uscc } => {
                Err(denied(p, &format!("read entry {seq}, which is not about {uscc}")))
            }
            _ => {
                Err(denied(p, &format!("read entry {seq}; the public reads only the records behind a code")))
            }
        },
    }
}

// ---- the public policy ---------------------------------------------------------
//
// What anyone may see, without a token (the web page of an enterprise, its
// QR code's attestation): the one place this is decided.
//
// * Registration details (name, USCC, region, industry), the code, grade,
//   points, model version and evaluation time: public, as 环保信用评价结果
//   are published.
// * The reasons: the scored records behind the code (administrative
//   penalties, inspection findings, ...), with their description, date,
//   points and expiry, their entries and inclusion proofs: public, as
//   administrative penalties are in China; and whether a reason is disputed
//   or has a rectification pending.
// * Checkpoints, tree heads and proofs: public (they reveal no content).
// * Not public: the workflow filings themselves (an enterprise's dispute
//   and rectification texts and evidence references, and the regulators'
//   decisions on them), any other ledger entry (monitoring points,
//   outages), and the inquiry log, never. Public reads are never inquiries
//   (see `Service::inquire`).
//
// A lender sees what the public sees of records (and, as a principal, the
// registrations, the outages and its own inquiries): the one rule is
// `may_see_record`, applied by the page, its JSON and feed, the proof
// downloads, `GetEntry` and `ListEntries` alike. A signed-in lender's or
// regulator's page read is an inquiry, as the gRPC reads are.

/// Which records of enterprise `e` `p` sees, on every path that returns
/// them (its page, JSON, feed and proof downloads; `GetEntry` and
/// `ListEntries`; the reasons of a score are scored records, which every
/// reader of the score sees): a record is seen whole or not at all.
/// `class` is the kind's class under the model; `None` for kinds the model
/// does not know.
pub fn may_see_record(p: &Principal, e: &Enterprise, class: Option<KindClass>) -> Result<()> {
    may_read_score(p, e)?;
    match (&p.role, class) {
        (Role::Public | Role::Lender, Some(KindClass::Scored { .. })) => Ok(()),
        (Role::Public | Role::Lender, _) => Err(denied(
            p,
            &format!("see the workflow filings of {}; only its scored records are public", e.uscc),
        )),
        _ => Ok(()),
    }
}

/// Whether `p` gets a score proof of `e` whose entries include some the
/// public may not see (`hidden`): a proof must hold every entry, so the
/// public gets one only when nothing is hidden; the enterprise itself, a
/// lender, a regulator in scope and an admin get the full bundle.
pub fn may_prove_score(p: &Principal, e: &Enterprise, hidden: bool) -> Result<()> {
    may_read_score(p, e)?;
    match (&p.role, hidden) {
        (Role::Public, true) => Err(denied(
            p,
            &format!(
                "get the score proof of {}: it counts records the public may not see; \
                 a full proof needs a lender's or the enterprise's sign-in",
                e.uscc
            ),
        )),
        _ => Ok(()),
    }
}

/// How much of a record `p` receives: [`may_see_record`] decides whether
/// it receives the record at all; this, whether it receives it whole or
/// only as withheld (its seq, publicity class, why, and its entry hash so
/// that inclusion still verifies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disclosure {
    Whole,
    Withheld,
}

/// Whether `p` is held to publicity ([`record_disclosure`]): the public
/// and lenders are; the enterprise itself, regulators and admins see every
/// record whole. Callers use it only to skip computing a publicity that
/// cannot matter.
pub fn publicity_applies(p: &Principal) -> bool {
    matches!(p.role, Role::Public | Role::Lender)
}

/// The one record policy per role, on every path that returns records
/// (the page, its JSON and feed, proof downloads, `GetScore` reasons,
/// `BatchGetScores`, `GetScoreHistory`, `GetEntry`, `ListEntries`):
/// [`may_see_record`] first; then the public and lenders receive a scored
/// record whole only while it is published ([`scoring::Model::publicity`]:
/// inside its class's window under 令第36号, and not repaired or voided),
/// and as withheld after (信用修复 means 终止公示 and 停止共享). The
/// enterprise itself, regulators in scope and admins receive it whole.
pub fn record_disclosure(
    p: &Principal,
    e: &Enterprise,
    class: Option<KindClass>,
    publicity: &Publicity,
) -> Result<Disclosure> {
    may_see_record(p, e, class)?;
    if publicity_applies(p) && !publicity.is_published() {
        return Ok(Disclosure::Withheld);
    }
    Ok(Disclosure::Whole)
}

/// Granting or revoking lender access to `e`'s details: the enterprise
/// itself (it is its authorization to give), and admins acting on a signed
/// authorization on paper.
pub fn may_grant_access(p: &Principal, e: &Enterprise) -> Result<()> {
    match &p.role {
        Role::Admin => Ok(()),
        Role::Enterprise { uscc } if *uscc == e.uscc.as_str() => Ok(()),
        _ => Err(denied(
            p,
            &format!(
                "grant or revoke access to {}; the enterprise itself grants access to its details",
                e.uscc
            ),
        )),
    }
}

/// Downloading everything held about `e` (its entries with proofs, its
/// grants, its inquiries): the enterprise itself, regulators in scope and
/// admins.
pub fn may_export(p: &Principal, e: &Enterprise) -> Result<()> {
    match &p.role {
        Role::Admin => Ok(()),
        Role::Regulator { region_prefix } if in_region(region_prefix, e) => Ok(()),
        Role::Enterprise { uscc } if *uscc == e.uscc.as_str() => Ok(()),
        _ => Err(denied(
            p,
            &format!("export what is held about {}; the enterprise itself and its regulators may", e.uscc),
        )),
    }
}

/// Seeing a grant of `e` to `lender`: the enterprise itself, the lender it
/// names, regulators in scope and admins.
pub fn may_see_grant(p: &Principal, e: &Enterprise, lender: &str) -> Result<()> {
    match &p.role {
        Role::Admin => Ok(()),
        Role::Regulator { region_prefix } if in_region(region_prefix, e) => Ok(()),
        Role::Enterprise { uscc } if *uscc == e.uscc.as_str() => Ok(()),
        Role::Lender if p.name == lender => Ok(()),
        _ => Err(denied(p, &format!("see the access grants of {}", e.uscc))),
    }
}

/// Under `serve --lender-access granted`, whether a lender may read `e`'s
/// details (what `cover` names) and under which grant: `live` is the
/// newest live grant of `e` to `p` covering it, if any. Other roles, and
/// every lender under `open`, read as before, under no grant.
pub fn lender_access(
    p: &Principal,
    e: &Enterprise,
    mode: LenderAccess,
    cover: Cover,
    live: Option<&GrantState>,
) -> Result<Option<u64>> {
    if p.role != Role::Lender || mode == LenderAccess::Open {
        return Ok(None);
    }
    match live {
        Some(g) if g.grant.lender == p.name && g.grant.uscc == e.uscc && g.grant.covers(cover) => {
            Ok(Some(g.seq))
        }
        _ => Err(Error::FailedPrecondition(format!(
            "lender {:?} holds no live access grant from {} ({}) covering its {}; \
             ask the enterprise to grant access (Consent.GrantAccess, `ecocode grant add --uscc {} \
             --lender {} --purpose loan_application --covers {} --expires-at <time>`); \
             its code, grade and points are public on its page",
            p.name,
            e.uscc,
            e.name,
            cover.as_str(),
            e.uscc,
            p.name,
            cover.as_str(),
        ))),
    }
}

/// Who reads `e`'s web page: the signed-in principal when it may read
/// this enterprise's score (the enterprise itself, a lender, a regulator in
/// scope, an admin), so that what it sees follows its role and a lender's
/// or regulator's read is an inquiry, as over gRPC; everyone else (another
/// enterprise, a regulator outside its scope, no one signed in) reads as
/// the public, which is never an inquiry. A lender without a live grant
/// under `--lender-access granted` (`lender_refused`, the door's
/// [`lender_access`] answer) reads as the public too: the code, grade,
/// points and published records are public anyway, and its visit is no
/// inquiry.
pub fn page_reader(signed: Option<&Principal>, e: Option<&Enterprise>, lender_refused: bool) -> Principal {
    match (signed, e) {
        (Some(p), Some(e)) if may_read_score(p, e).is_ok() && !(p.role == Role::Lender && lender_refused) => {
            p.clone()
        }
        _ => Principal::public(),
    }
}

/// Whether `p` is the enterprise `e` itself (its page shows it its filings
/// and forms).
pub fn is_itself(p: &Principal, e: &Enterprise) -> bool {
    matches!(&p.role, Role::Enterprise { uscc } if uscc == e.uscc.as_str())
}

/// Whether `p` may have a checkpoint signed to cover what it wrote: a
/// writer's answer proves what was acknowledged. Readers never cause a
/// signature (reading never writes), so the public and lenders may not.
pub fn may_sign_checkpoint(p: &Principal) -> Result<()> {
    match &p.role {
        Role::Admin | Role::Regulator { .. } | Role::Enterprise { .. } | Role::Source { .. } => Ok(()),
        Role::Lender | Role::Public => Err(denied(p, "have a checkpoint signed")),
    }
}

/// Whether `p` may read every ledger entry at once (entry bundles,
/// `/tile/entries/...`): only a principal whom [`may_read_entry`] allows
/// every entry kind, i.e. admins and regulators without a region scope.
/// A lender may not: it reads no workflow filings and no monitoring points
/// (see [`may_see_record`]), and a bundle is given whole or not at all,
/// since its entries are what the level-0 tile's hashes cover.
pub fn may_read_every_entry(p: &Principal) -> Result<()> {
    match &p.role {
        Role::Admin => Ok(()),
        Role::Regulator { region_prefix } if region_prefix.is_empty() => Ok(()),
        _ => Err(denied(
            p,
            "read entry bundles; they hold every entry (filings and monitoring points too), \
             so only admins and regulators without a region scope may",
        )),
    }
}

/// Whether `p` may compare the served scores with scores recomputed from
/// the entries, bypassing the view and the inquiry log: an admin only.
pub fn may_audit_scores(p: &Principal) -> Result<()> {
    match &p.role {
        Role::Admin => Ok(()),
        _ => Err(denied(p, "audit the view of current scores")),
    }
}

/// Whether `p` sees the workflow filings of `e` (and what follows from
/// them, such as why credit repair cannot be granted yet): the rule of
/// [`may_see_record`] for a filing.
pub fn may_see_filings(p: &Principal, e: &Enterprise) -> bool {
    may_see_record(p, e, Some(KindClass::Workflow(WorkflowKind::DisputeOpened))).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enterprise() -> Enterprise {
        Enterprise::new("91330421739237858X", "Acme", "330421", "C2614").unwrap()
    }

    fn scored() -> Option<KindClass> {
        Some(KindClass::Scored { veto: false, bonus: false })
    }

    #[test]
    fn entry_bundles_go_only_to_those_every_entry_kind_is_readable_by() {
        // The rule must agree with `may_read_entry` over every kind of entry.
        let e = enterprise();
        let point = EntryKind::MonitoringPoint(&e);
        let filing = EntryKind::Record {
            enterprise: &e,
            class: Some(KindClass::Workflow(WorkflowKind::DisputeOpened)),
        };
        let roles = [
            Role::Admin,
            Role::Regulator { region_prefix: String::new() },
            Role::Regulator { region_prefix: "3304".into() },
            Role::Regulator { region_prefix: "3302".into() },
            Role::Lender,
            Role::Enterprise { uscc: e.uscc.to_string() },
            Role::Source { source: "feed".into() },
            Role::Public,
        ];
        for role in roles {
            let p = Principal { name: "p".into(), role };
            let reads_all = [point, filing, EntryKind::Enterprise(&e), EntryKind::Platform]
                .into_iter()
                .all(|kind| may_read_entry(&p, 1, kind).is_ok());
            let scoped_in = matches!(&p.role, Role::Regulator { region_prefix } if !region_prefix.is_empty());
            // A regulator scoped to this enterprise's region reads these, not other regions'.
            assert_eq!(may_read_every_entry(&p).is_ok(), reads_all && !scoped_in, "{:?}", p.role);
        }
    }

    #[test]
    fn the_public_reads_codes_reasons_and_proofs() {
        let public = Principal::public();
        let e = enterprise();
        assert!(may_read_score(&public, &e).is_ok());
        assert!(may_read_scores_at_all(&public, "91330421739237858X").is_ok());
        assert!(may_read_ledger(&public).is_ok());
        assert!(may_see_record(&public, &e, scored()).is_ok());
    }

    #[test]
    fn the_public_sees_no_filings_no_raw_entries_no_lists_and_writes_nothing() {
        let public = Principal::public();
        let e = enterprise();
        let dispute = KindClass::Workflow(WorkflowKind::DisputeOpened);
        let workflow = Some(dispute);
        assert!(may_see_record(&public, &e, workflow).is_err());
        assert!(may_see_record(&public, &e, None).is_err());
        assert!(may_read_entry(&public, 3, EntryKind::Enterprise(&e)).is_err());
        assert!(may_read_entry(&public, 3, EntryKind::Platform).is_err());
        assert!(may_read_entry(&public, 3, EntryKind::Record { enterprise: &e, class: workflow }).is_err());
        assert!(list_scope(&public, "").is_err());
        assert!(may_register(&public, &e).is_err());
        assert!(may_append_for(&public, &e).is_err());
        assert!(may_append_kind(&public, "dispute.opened", dispute, "public").is_err());
    }

    #[test]
    fn the_enterprise_sees_its_own_filings_only() {
        let own =
            Principal { name: "acme".into(), role: Role::Enterprise { uscc: "91330421739237858X".into() } };
        let other =
            Principal { name: "beta".into(), role: Role::Enterprise { uscc: "11330206MB1593493A".into() } };
        let workflow = Some(KindClass::Workflow(WorkflowKind::RectificationSubmitted));
        assert!(may_see_record(&own, &enterprise(), workflow).is_ok());
        assert!(may_see_record(&other, &enterprise(), scored()).is_err());
    }

    /// What broke: `ListEntries` gave lenders the dispute texts and
    /// evidence the page hides from them.
    #[test]
    fn a_lender_reads_entries_by_the_record_rule_of_the_page() {
        let lender = Principal { name: "bank".into(), role: Role::Lender };
        let e = enterprise();
        let filing = Some(KindClass::Workflow(WorkflowKind::DisputeOpened));
        let decision = Some(KindClass::Workflow(WorkflowKind::RecordVoided));
        for class in [scored(), filing, decision, None] {
            assert_eq!(
                may_read_entry(&lender, 1, EntryKind::Record { enterprise: &e, class }).is_ok(),
                may_see_record(&lender, &e, class).is_ok(),
                "{class:?}"
            );
        }
        assert!(may_read_entry(&lender, 1, EntryKind::Record { enterprise: &e, class: scored() }).is_ok());
        assert!(may_read_entry(&lender, 1, EntryKind::Record { enterprise: &e, class: filing }).is_err());
        assert!(may_read_entry(&lender, 1, EntryKind::MonitoringPoint(&e)).is_err());
        assert!(may_read_entry(&lender, 1, EntryKind::Enterprise(&e)).is_ok());
        let elsewhere = Principal { name: "sh".into(), role: Role::Regulator { region_prefix: "31".into() } };
        assert!(
            may_read_entry(&elsewhere, 1, EntryKind::Record { enterprise: &e, class: scored() }).is_err()
        );
        let here = Principal { name: "zj".into(), role: Role::Regulator { region_prefix: "33".into() } };
        assert!(may_read_entry(&here, 1, EntryKind::MonitoringPoint(&e)).is_ok());
        assert!(may_read_entry(&here, 1, EntryKind::Record { enterprise: &e, class: filing }).is_ok());
    }

    #[test]
    fn lenders_and_the_public_receive_unpublished_records_only_as_withheld() {
        use scoring::{NotPublishedWhy, PublicityClass, Seq, Timestamp};
        let e = enterprise();
        let t = Timestamp::from_unix_nanos(0);
        let published = Publicity::Published { class: PublicityClass::General, until: t };
        let repaired = Publicity::NotPublished {
            class: PublicityClass::General,
            since: t,
            why: NotPublishedWhy::Repaired(Seq(9)),
        };
        let lender = Principal { name: "bank".into(), role: Role::Lender };
        let itself = Principal { name: "acme".into(), role: Role::Enterprise { uscc: e.uscc.to_string() } };
        let here = Principal { name: "zj".into(), role: Role::Regulator { region_prefix: "33".into() } };
        let admin = Principal { name: "ops".into(), role: Role::Admin };
        for p in [&lender, &Principal::public()] {
            assert_eq!(record_disclosure(p, &e, scored(), &published).unwrap(), Disclosure::Whole);
            assert_eq!(record_disclosure(p, &e, scored(), &repaired).unwrap(), Disclosure::Withheld);
            let filing = Some(KindClass::Workflow(WorkflowKind::RepairGranted));
            assert!(record_disclosure(p, &e, filing, &published).is_err());
        }
        for p in [&itself, &here, &admin] {
            assert_eq!(record_disclosure(p, &e, scored(), &repaired).unwrap(), Disclosure::Whole);
        }
    }

    #[test]
    fn purposes_lose_their_control_characters_where_they_enter() {
        let text = purpose_text("purpose", " LA-7\u{1b}[2J\nat 2026-01-01 ADMIN read\t\u{202e}x ").unwrap();
        assert!(!text.chars().any(|c| c.is_control() || c == '\u{202e}'), "{text:?}");
        assert!(text.starts_with("LA-7") && text.contains("[2J"), "{text:?}");
        assert!(purpose_text("purpose", &"x".repeat(MAX_PURPOSE_BYTES + 1)).is_err());
    }

    /// What broke: the page decided itself who reads, outside this file.
    #[test]
    fn the_page_reader_is_the_visitor_only_when_it_may_read_the_score() {
        let e = enterprise();
        let itself = Principal { name: "acme".into(), role: Role::Enterprise { uscc: e.uscc.to_string() } };
        let other =
            Principal { name: "beta".into(), role: Role::Enterprise { uscc: "11330206MB1593493A".into() } };
        let lender = Principal { name: "bank".into(), role: Role::Lender };
        let elsewhere = Principal { name: "sh".into(), role: Role::Regulator { region_prefix: "31".into() } };
        assert_eq!(page_reader(Some(&itself), Some(&e), false), itself);
        assert_eq!(page_reader(Some(&lender), Some(&e), false), lender);
        assert_eq!(page_reader(Some(&lender), Some(&e), true).role, Role::Public, "no grant");
        for downgraded in [Some(&other), Some(&elsewhere), None] {
            assert_eq!(page_reader(downgraded, Some(&e), false).role, Role::Public);
        }
        assert_eq!(page_reader(Some(&lender), None, false).role, Role::Public, "not registered");
        assert!(is_itself(&itself, &e) && !is_itself(&other, &e) && !is_itself(&lender, &e));
    }

    /// What broke: any caller of the door could have a checkpoint signed,
    /// and the view's audit skipped authorization.
    #[test]
    fn readers_never_have_a_checkpoint_signed_and_only_an_admin_audits() {
        let admin = Principal { name: "ops".into(), role: Role::Admin };
        let source = Principal { name: "epb".into(), role: Role::Source { source: "epb".into() } };
        let lender = Principal { name: "bank".into(), role: Role::Lender };
        assert!(may_sign_checkpoint(&admin).is_ok() && may_sign_checkpoint(&source).is_ok());
        assert!(may_sign_checkpoint(&lender).is_err() && may_sign_checkpoint(&Principal::public()).is_err());
        assert!(may_audit_scores(&admin).is_ok());
        assert!(may_audit_scores(&source).is_err() && may_audit_scores(&Principal::public()).is_err());
    }
}
