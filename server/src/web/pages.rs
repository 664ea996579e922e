//! The handlers of the web page. Each resolves who asks (the session's
//! principal, or the public), converts the request into domain values,
//! calls [`Service`](crate::service::Service) and renders the answer; the
//! door decides what may be seen or done.

use std::collections::BTreeMap;

use askama::Template;
use axum::Form;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use scoring::{Code, Grade, KindClass, Record, RecordFields, Seq, Timestamp, Uscc, WorkflowKind};
use serde::Deserialize;

use super::session::{self, SESSION_COOKIE, SESSION_LIFETIME, SIGNIN_COOKIE, SignedIn};
use super::templates::*;
use super::{WebState, chart, labels, qr};
use crate::error::{Error, Result};
use crate::principals::{Principal, Role};
use crate::service::{ListQuery, MAX_PAGE, MAX_PAGE_REASONS, PAGE_HISTORY_DAYS, PageView, ScoreView};

/// The inquiry purpose of page reads that name none (`?purpose=`).
const PURPOSE: &str = "web page";
/// Rows per page of the regulator's list.
const REGION_PAGE: usize = 50;
/// Most enterprises counted per code, or written to one CSV.
const MAX_LISTED: usize = 10_000;

// ---- answers ------------------------------------------------------------------

fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; the operator can find details in the server log",
            )
                .into_response()
        }
    }
}

/// An error page: what went wrong, in words, with the status.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let page = ErrorPage { me: None, status: status.as_u16(), title, message };
    (status, render(&page)).into_response()
}

fn me(signed: &Option<SignedIn>) -> Option<Me> {
    signed.as_ref().map(|s| Me {
        name: s.principal.name.clone(),
        role: s.principal.role.name(),
        csrf: s.csrf.clone(),
        own_uscc: match &s.principal.role {
            Role::Enterprise { uscc } => Some(uscc.clone()),
            _ => None,
        },
    })
}

fn signed_in(st: &WebState, headers: &HeaderMap) -> Option<SignedIn> {
    st.sessions.resolve(&st.principals, headers)
}

/// The signed-in visitor, or `401` with the way to sign in.
fn require_signed_in(st: &WebState, headers: &HeaderMap) -> Result<SignedIn> {
    signed_in(st, headers).ok_or_else(|| {
        Error::Unauthenticated("sign in first: /signin, with the token from `ecocode principal add`".into())
    })
}

fn check_csrf(st: &WebState, headers: &HeaderMap, signed: &SignedIn, sent: &str) -> Result<()> {
    if session::csrf_ok(headers, &st.public_url, &signed.csrf, sent) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(
            "the form's CSRF token does not match this session, or it came from another site; \
             reload the page and send the form again"
                .into(),
        ))
    }
}

/// Who reads an enterprise's page, decided at the door.
async fn page_reader(st: &WebState, signed: &Option<SignedIn>, uscc: &Uscc) -> Result<Principal> {
    st.service.page_reader(signed.as_ref().map(|s| &s.principal), uscc).await
}

/// The purpose of a page read: `?purpose=`, or [`PURPOSE`].
fn page_purpose(given: Option<&str>) -> Result<String> {
    let purpose = crate::auth::purpose_text("purpose", given.unwrap_or_default())?;
    Ok(if purpose.is_empty() { PURPOSE.to_owned() } else { purpose })
}

fn parse_uscc(text: &str) -> Result<Uscc> {
    Ok(Uscc::parse(text.trim())?)
}

/// The origin of the URLs in QR codes and feeds: `--public-url` (or the
/// listener's address), never the request's `Host`, which the client
/// chooses and would turn a QR code into a link to its own site.
fn base_url(st: &WebState) -> String {
    st.public_url.to_string()
}

fn date(t: Timestamp) -> String {
    t.to_string().chars().take(10).collect()
}

/// An instant to the second, UTC, for people (JSON keeps the exact one).
fn shown(t: Timestamp) -> String {
    let text: String = t.to_string().chars().take(19).collect();
    format!("{} {} UTC", text.get(..10).unwrap_or_default(), text.get(11..).unwrap_or_default())
}

/// Percent-encodes a query value (everything but unreserved characters).
fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- the enterprise's page -------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PageQuery {
    format: Option<String>,
    /// A scanned attestation (the QR code's `att` parameter).
    att: Option<String>,
    /// The seq of a filing just made, for the notice after a form.
    filed: Option<u64>,
    /// Why a signed-in lender or regulator reads, recorded with its inquiry.
    purpose: Option<String>,
}

pub async fn enterprise(
    State(st): State<WebState>,
    Path(uscc): Path<String>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let uscc = parse_uscc(&uscc)?;
    let signed = signed_in(&st, &headers);
    let purpose = page_purpose(query.purpose.as_deref())?;
    let base = base_url(&st);
    let reader = page_reader(&st, &signed, &uscc).await?;
    let (data, view) = page_data(&st, &reader, &purpose, &uscc, &base, query.att.as_deref()).await?;
    match query.format.as_deref() {
        None | Some("html") => {}
        Some("json") => return Ok(axum::Json(data).into_response()),
        Some(other) => {
            let shown: String = other.chars().take(16).collect();
            return Err(Error::InvalidArgument(format!("format: html or json, got {shown:?}")));
        }
    }
    // The enterprise itself: its filings and forms.
    let own = matches!(&reader.role, Role::Enterprise { uscc: mine } if mine == uscc.as_str());
    let filings = if own { filings(&st, &view) } else { Vec::new() };
    let steps: Vec<chart::Step> = view_history(&view);
    let to = view.score.evaluation.as_of;
    let chart = chart::chart(st.service.model(), &steps, to.plus_days(-PAGE_HISTORY_DAYS), to);
    let verify_command = format!(
        "curl -o proof.json {base}/e/{uscc}/proof/<seq>\n\
         ecocode proof verify proof.json --public-key '{key}'\n\
         curl -o attestation.txt {base}/e/{uscc}/attestation.txt\n\
         ecocode attest verify attestation.txt --public-key '{key}'",
        key = data.verifier_key
    );
    let page = EnterprisePage {
        me: me(&signed),
        qr: qr::symbol(&data.attestation.qr_text)?,
        chart,
        own,
        filings,
        verify_command,
        notice: query.filed.map(|seq| format!("已提交，账本序号 {seq} / filed as ledger entry {seq}")),
        d: &data,
    };
    Ok(render(&page))
}

/// The page's history, typed, for the chart.
fn view_history(view: &PageView) -> Vec<chart::Step> {
    view.history.iter().map(|h| chart::Step { at: h.at, points: h.points, code: h.code }).collect()
}

/// Everything the page of `uscc` shows, read through the door as `reader`.
async fn page_data(
    st: &WebState,
    reader: &Principal,
    purpose: &str,
    uscc: &Uscc,
    base: &str,
    scanned: Option<&str>,
) -> Result<(PageData, PageView)> {
    let service = &st.service;
    let view = service.page(reader, purpose, uscc).await?;
    let score = &view.score;
    let evaluation = &score.evaluation;
    let checkpoint = &view.checkpoint;
    let note = view.note.clone();

    // Why repair is not yet possible tells of the workflow: for those who
    // see the filings only.
    let detailed = view.detailed;
    let mut reasons = Vec::with_capacity(evaluation.reasons.len().min(MAX_PAGE_REASONS));
    for r in evaluation.reasons.iter().take(MAX_PAGE_REASONS) {
        let seq = r.expires_at.is_some().then_some(r.seq);
        let record = seq.and_then(|s| view.records.iter().find(|x| x.seq == s));
        let veto = matches!(service.model().kind_class(&r.kind), Some(KindClass::Scored { veto: true, .. }));
        let repair = seq.and_then(|s| view.repair.iter().find(|(x, _)| *x == s)).map(|(_, r)| r.clone());
        let proof =
            seq.and_then(|s| view.proofs.iter().find(|(x, _)| *x == s)).map(|(s, hashes)| ProofData {
                tree_size: checkpoint.tree_size,
                hashes: tlog::bundle::encode_hashes(hashes),
                bundle_url: format!("/e/{uscc}/proof/{}", s.0),
            });
        reasons.push(ReasonLine {
            seq: seq.map(|s| s.0),
            kind: r.kind.clone(),
            kind_zh: labels::kind(&r.kind).to_owned(),
            occurred_on: record.map(|x| date(x.record.occurred_at)),
            points: r.points,
            counts_until: r.expires_at.map(date),
            description: r.description.clone(),
            veto,
            disputed: seq.is_some_and(|s| view.open_disputes.contains(&s)),
            rectification_pending: seq.is_some_and(|s| evaluation.rectification_pending.contains(&s)),
            repair_eligible: matches!(repair, Some(Ok(()))),
            repair_note: repair.and_then(|r| r.err()).filter(|_| detailed),
            proof,
        });
    }

    let (code_zh, code_en) = labels::code(evaluation.code);
    let (grade_zh, grade_en) = labels::grade(evaluation.grade);
    let (mee_level_zh, mee_level_name, mee_level_en) = labels::mee_level(evaluation.mee_level);
    let page_url = format!("{base}/e/{uscc}");
    let verifier_key = service.verifier_key();
    let scanned = match scanned {
        Some(text) => Some(check_scanned(st, reader, &view, &verifier_key, text).await?),
        None => None,
    };
    // The compact form keeps the QR small enough for a sticker; the full
    // form only for an attestation the compact layout cannot hold. The page
    // checks its own QR code the way it checks a scanned one.
    let qr_text =
        tlog::compact::qr_text(base, &note).unwrap_or_else(|_| tlog::attestation::qr_text(&page_url, &note));
    let own = ScannedCheck {
        status: "current",
        message: format!(
            "签名有效，包含于当前签名检查点（{} 条），且与当前环保码一致 / signed by this service, in the current signed checkpoint ({} entries), and states the current code",
            checkpoint.tree_size, checkpoint.tree_size
        ),
        attested: Some(Attested {
            points: i64::from(evaluation.points),
            grade: evaluation.grade.as_str().to_owned(),
            code: evaluation.code.as_str().to_owned(),
            code_zh: labels::code(evaluation.code).0,
            as_of: evaluation.as_of.to_string(),
            tree_size: score.tree_size,
        }),
    };
    let data = PageData {
        uscc: uscc.to_string(),
        name: score.enterprise.name.clone(),
        region_code: score.enterprise.region_code.clone(),
        industry_code: score.enterprise.industry_code.clone(),
        code: evaluation.code.as_str(),
        code_zh,
        code_en,
        code_class: labels::code_class(evaluation.code),
        code_symbol: labels::code_symbol(evaluation.code),
        grade: evaluation.grade.as_str(),
        grade_zh,
        grade_en,
        mee_level: evaluation.mee_level.as_str(),
        mee_level_zh,
        mee_level_name,
        mee_level_en,
        mee_level_class: labels::mee_level_class(evaluation.mee_level),
        points: evaluation.points,
        veto: evaluation.veto,
        disputed: evaluation.disputed,
        model: evaluation.model_version.clone(),
        as_of: evaluation.as_of.to_string(),
        as_of_shown: shown(evaluation.as_of),
        tree_size: score.tree_size,
        root: B64.encode(score.root),
        reasons_total: evaluation.reasons.len(),
        reasons,
        history: view
            .history
            .iter()
            .map(|h| HistoryPoint {
                as_of: h.at.to_string(),
                as_of_shown: shown(h.at),
                points: h.points,
                grade: h.grade.as_str(),
                code: h.code.as_str(),
            })
            .collect(),
        history_complete: view.history_complete,
        checkpoint: CheckpointData {
            tree_size: checkpoint.tree_size,
            root: B64.encode(checkpoint.root),
            note: checkpoint.note.clone(),
            witnessed: service.witnessing().map(|w| w.witnessed_line(&checkpoint.note)).unwrap_or_default(),
        },
        attestation: AttestationData { qr_text, note, tree_size: score.tree_size, check: own },
        verifier_key,
        scanned,
    };
    Ok((data, view))
}

/// A scanned compact QR code (`/Q/<digits>`): the page of the enterprise it
/// names, which checks it (`?att=<digits>`). Undecodable digits are a 400
/// naming what is wrong; the signature is checked by the page.
pub async fn scanned(Path(digits): Path<String>) -> Result<Response> {
    let note = tlog::compact::decode(&digits).map_err(|e| {
        Error::InvalidArgument(format!("扫描内容不是环保码证明 / the QR code is not an attestation: {e}"))
    })?;
    let statement = tlog::compact::Signed::from_note(&note)
        .map_err(|e| Error::InvalidArgument(format!("the QR code's attestation: {e}")))?
        .attestation;
    let uscc = parse_uscc(&statement.uscc)?;
    Ok(Redirect::to(&format!("/e/{uscc}?att={digits}")).into_response())
}

/// Checks an attestation scanned from a QR code: its signature with the
/// service's key, that its tree is a prefix of the current signed
/// checkpoint's (a consistency proof), and whether it still states the
/// current code.
async fn check_scanned(
    st: &WebState,
    reader: &Principal,
    view: &PageView,
    verifier_key: &str,
    text: &str,
) -> Result<ScannedCheck> {
    let current = &view.score;
    let invalid = |message: String| ScannedCheck { status: "invalid", message, attested: None };
    let note = match tlog::attestation::note_from_qr_text(text) {
        Ok(note) => note,
        Err(e) => return Ok(invalid(format!("扫描内容不是环保码证明 / not an attestation: {e}"))),
    };
    let (name, key) = tlog::note::decode_verifier_key(verifier_key)
        .map_err(|e| Error::Internal(format!("the service's own verifier key: {e}")))?;
    let attestation = match tlog::attestation::verify(&note, &name, &key) {
        Ok(a) => a,
        Err(e) => {
            return Ok(invalid(format!(
                "签名无效 / the signature does not verify with this service's key: {e}"
            )));
        }
    };
    let attested = Attested {
        points: attestation.points,
        grade: attestation.grade.clone(),
        code: attestation.code.clone(),
        code_zh: match attestation.code.as_str() {
            "GREEN" => "绿码",
            "YELLOW" => "黄码",
            "RED" => "红码",
            _ => "?",
        },
        as_of: attestation.as_of.clone(),
        tree_size: attestation.tree_size,
    };
    if attestation.uscc != current.enterprise.uscc.as_str() {
        return Ok(ScannedCheck {
            status: "invalid",
            message: format!(
                "这是另一家企业的证明 / this attestation is about {}, not this enterprise",
                scoring::quoted(&attestation.uscc)
            ),
            attested: Some(attested),
        });
    }
    // Checked against the page's published checkpoint only: a page view
    // signs none, so an attestation newer than it waits for the next.
    let checkpoint = &view.checkpoint;
    if attestation.tree_size > checkpoint.tree_size {
        return Ok(ScannedCheck {
            status: "invalid",
            message: format!(
                "证明引用的账本比当前签名检查点更长 / it names a tree of {} entries; the latest published checkpoint has {}: check again after the next one",
                attestation.tree_size, checkpoint.tree_size
            ),
            attested: Some(attested),
        });
    }
    let consistent = if attestation.tree_size == checkpoint.tree_size {
        attestation.root == checkpoint.root
    } else {
        let (to, proof) =
            st.service.consistency_proof(reader, attestation.tree_size, checkpoint.tree_size).await?;
        tlog::proof::verify_consistency(
            attestation.tree_size,
            to,
            &attestation.root,
            &checkpoint.root,
            &proof,
        )
    };
    if !consistent {
        return Ok(ScannedCheck {
            status: "invalid",
            message: "签名有效，但其账本根与当前签名检查点不一致 / signed, but its root is not in the current signed checkpoint's history".into(),
            attested: Some(attested),
        });
    }
    let e = &current.evaluation;
    let same = attestation.points == i64::from(e.points)
        && attestation.grade == e.grade.as_str()
        && attestation.code == e.code.as_str()
        && attestation.veto == e.veto
        && attestation.disputed == e.disputed
        && attestation.model == e.model_version;
    Ok(if same {
        ScannedCheck {
            status: "current",
            message: format!(
                "签名有效，包含于当前签名检查点（{} 条），且与当前环保码一致 / signed by this service, in the current signed checkpoint ({} entries), and states the current code",
                checkpoint.tree_size, checkpoint.tree_size
            ),
            attested: Some(attested),
        }
    } else {
        ScannedCheck {
            status: "superseded",
            message: format!(
                "签名有效，但环保码已变化，以当前为准：{} / signed and in the log, but the code has changed since; the current one applies: {} {} points",
                labels::code(e.code).0,
                e.code,
                e.points
            ),
            attested: Some(attested),
        }
    })
}

/// The enterprise's own workflow filings, newest first.
fn filings(st: &WebState, view: &PageView) -> Vec<Filing> {
    let mut out: Vec<Filing> = view
        .records
        .iter()
        .filter(|r| matches!(st.service.model().kind_class(&r.record.kind), Some(KindClass::Workflow(_))))
        .map(|r| Filing {
            seq: r.seq.0,
            kind: r.record.kind.clone(),
            kind_zh: labels::kind(&r.record.kind).to_owned(),
            refers_to: r.record.refers_to.map_or(0, |s| s.0),
            occurred_on: date(r.record.occurred_at),
            description: r.record.description.clone(),
            evidence: r.record.attributes.get("evidence").cloned().unwrap_or_default(),
        })
        .collect();
    out.reverse();
    out
}

pub async fn feed(State(st): State<WebState>, Path(uscc): Path<String>) -> Result<Response> {
    let uscc = parse_uscc(&uscc)?;
    // Feed readers are anonymous: the public's view, never an inquiry.
    let base = base_url(&st);
    let reader = st.service.page_reader(None, &uscc).await?;
    let (data, view) = page_data(&st, &reader, PURPOSE, &uscc, &base, None).await?;
    let mut entries = Vec::new();
    let mut previous: Option<Code> = None;
    for h in &view.history {
        if previous != Some(h.code) {
            let zh = labels::code(h.code).0;
            entries.push(FeedEntry {
                as_of: h.at.to_string(),
                title: format!("{zh} {} · {} · {} points", h.code.as_str(), h.grade.as_str(), h.points),
                summary: match previous {
                    Some(p) => format!("code changed from {} to {}", p.as_str(), h.code.as_str()),
                    None => format!("code at the start of the period: {}", h.code.as_str()),
                },
            });
        }
        previous = Some(h.code);
    }
    entries.reverse();
    let updated = entries.first().map_or_else(|| data.as_of.clone(), |e| e.as_of.clone());
    let feed = Feed { d: &data, base, entries, updated };
    let xml = feed.render().map_err(|e| Error::Internal(format!("feed template: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")], xml).into_response())
}

/// The page's signed attestation as a file for `ecocode attest verify`.
pub async fn attestation_file(
    State(st): State<WebState>,
    Path(uscc): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let uscc = parse_uscc(&uscc)?;
    let reader = page_reader(&st, &signed_in(&st, &headers), &uscc).await?;
    // Of the published checkpoint's tree, as the page's QR code: a
    // download signs no checkpoint.
    let published = st.service.checkpoint(&reader)?;
    let (_, note) = st.service.attestation(&reader, PURPOSE, &uscc, None, published.tree_size).await?;
    Ok(download("text/plain; charset=utf-8", &format!("attestation-{uscc}.txt"), note))
}

/// The proof bundle of entry `seq`, a record of `uscc`, in the latest
/// signed checkpoint: what `ecocode proof verify` checks.
pub async fn proof_bundle(
    State(st): State<WebState>,
    Path((uscc, seq)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let uscc = parse_uscc(&uscc)?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| Error::InvalidArgument("seq: a ledger entry number, e.g. /proof/3".into()))?;
    let reader = page_reader(&st, &signed_in(&st, &headers), &uscc).await?;
    let entry = st.service.record_entry(&reader, &uscc, seq).await?;
    // The published checkpoint only: a download signs none.
    let checkpoint = st.service.checkpoint(&reader)?;
    if seq >= checkpoint.tree_size {
        return Err(Error::NotFound(format!(
            "entry {seq} is not yet in the latest published checkpoint ({} entries): download its proof after the next one",
            checkpoint.tree_size
        )));
    }
    let (_, hashes) = st.service.inclusion_proof(&reader, seq, checkpoint.tree_size).await?;
    let bundle = tlog::bundle::Bundle::Inclusion {
        checkpoint: checkpoint.note,
        seq,
        recorded_at_ns: entry.recorded_at_ns,
        payload: B64.encode(&entry.payload),
        hashes: tlog::bundle::encode_hashes(&hashes),
    };
    let json = serde_json::to_string_pretty(&bundle)
        .map_err(|e| Error::Internal(format!("proof bundle of entry {seq}: {e}")))?;
    Ok(download("application/json", &format!("proof-{uscc}-{seq}.json"), json))
}

fn download(content_type: &'static str, filename: &str, body: String) -> Response {
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(header::CONTENT_DISPOSITION, disposition);
    response
}

// ---- the enterprise's forms ----------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct FilingForm {
    csrf: String,
    seq: String,
    description: String,
    evidence: String,
}

pub async fn open_dispute(
    State(st): State<WebState>,
    Path(uscc): Path<String>,
    headers: HeaderMap,
    Form(form): Form<FilingForm>,
) -> Result<Response> {
    file(&st, &uscc, &headers, form, WorkflowKind::DisputeOpened).await
}

pub async fn submit_rectification(
    State(st): State<WebState>,
    Path(uscc): Path<String>,
    headers: HeaderMap,
    Form(form): Form<FilingForm>,
) -> Result<Response> {
    file(&st, &uscc, &headers, form, WorkflowKind::RectificationSubmitted).await
}

/// Files a workflow step through the same append pipeline as gRPC's
/// `AppendRecord`, as the signed-in principal, then shows the page again.
async fn file(
    st: &WebState,
    uscc: &str,
    headers: &HeaderMap,
    form: FilingForm,
    kind: WorkflowKind,
) -> Result<Response> {
    let uscc = parse_uscc(uscc)?;
    let signed = require_signed_in(st, headers)?;
    check_csrf(st, headers, &signed, &form.csrf)?;
    let seq: u64 = form
        .seq
        .trim()
        .parse()
        .map_err(|_| Error::InvalidArgument("seq: the ledger entry number of the record".into()))?;
    let mut attributes = BTreeMap::new();
    if kind == WorkflowKind::RectificationSubmitted {
        let evidence = form.evidence.trim();
        if evidence.is_empty() {
            return Err(Error::InvalidArgument(
                "evidence: the reference of the rectification's evidence is required".into(),
            ));
        }
        attributes.insert("evidence".to_owned(), evidence.to_owned());
    }
    let who = &signed.principal;
    let id = format!("web-{}", session::random_token()?);
    let record = Record::new(RecordFields {
        source: who.writes_as(),
        source_record_id: &id,
        uscc: uscc.as_str(),
        kind: kind.name(),
        occurred_at: Some(st.service.clock().now()),
        amount_yuan: 0,
        refers_to: Some(Seq(seq)),
        description: form.description.trim(),
        attributes,
    })?;
    let receipt = st.service.append_record(who, record).await?;
    // As gRPC's appends do: a signed checkpoint covers what was acknowledged.
    st.service.checkpoint_covering(who, receipt.seq + 1).await?;
    Ok(Redirect::to(&format!("/e/{uscc}?filed={}#filings", receipt.seq)).into_response())
}

// ---- signing in and out ----------------------------------------------------------

pub async fn signin_form(State(st): State<WebState>, headers: HeaderMap) -> Result<Response> {
    let signed = signed_in(&st, &headers);
    signin_page(me(&signed), None, StatusCode::OK)
}

fn signin_page(me: Option<Me>, error: Option<String>, status: StatusCode) -> Result<Response> {
    let csrf = session::random_token()?;
    let cookie = session::set_cookie(SIGNIN_COOKIE, &csrf, "/signin", std::time::Duration::from_secs(1800));
    let page = SigninPage { me, csrf, error };
    let mut response = (status, render(&page)).into_response();
    append_cookie(&mut response, &cookie);
    Ok(response)
}

fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SigninForm {
    csrf: String,
    token: String,
}

pub async fn signin(
    State(st): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<SigninForm>,
) -> Result<Response> {
    let expected = session::cookie(&headers, SIGNIN_COOKIE).unwrap_or_default();
    if !session::csrf_ok(&headers, &st.public_url, &expected, &form.csrf) {
        return Err(Error::PermissionDenied(
            "the sign-in form's CSRF token does not match, or it came from another site; open /signin again"
                .into(),
        ));
    }
    let (id, principal) = match st.sessions.start(&st.principals, form.token.trim()) {
        Ok(started) => started,
        Err(Error::Unauthenticated(message)) => {
            return signin_page(None, Some(message), StatusCode::UNAUTHORIZED);
        }
        Err(e) => return Err(e),
    };
    tracing::info!(principal = %principal.name, role = principal.role.name(), "web sign-in");
    let to = match &principal.role {
        Role::Enterprise { uscc } => format!("/e/{uscc}"),
        Role::Regulator { .. } | Role::Admin => "/region".to_owned(),
        Role::Lender => "/portfolio".to_owned(),
        Role::Source { .. } | Role::Public => "/".to_owned(),
    };
    let mut response = Redirect::to(&to).into_response();
    append_cookie(&mut response, &session::set_cookie(SESSION_COOKIE, &id, "/", SESSION_LIFETIME));
    append_cookie(&mut response, &session::clear_cookie(SIGNIN_COOKIE, "/signin"));
    Ok(response)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn signout(
    State(st): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response> {
    if let Some(signed) = signed_in(&st, &headers) {
        check_csrf(&st, &headers, &signed, &form.csrf)?;
        st.sessions.end(&headers);
    }
    let mut response = Redirect::to("/").into_response();
    append_cookie(&mut response, &session::clear_cookie(SESSION_COOKIE, "/"));
    Ok(response)
}

// ---- the regulator's list ----------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RegionQuery {
    region: String,
    industry: String,
    code: String,
    grade: String,
    sort: String,
    after: String,
}

struct RegionFilter {
    codes: Vec<Code>,
    grade: Option<Grade>,
}

fn region_filter(q: &RegionQuery) -> Result<RegionFilter> {
    let code = match q.code.as_str() {
        "" => None,
        "GREEN" => Some(Code::Green),
        "YELLOW" => Some(Code::Yellow),
        "RED" => Some(Code::Red),
        _ => return Err(Error::InvalidArgument("code: GREEN, YELLOW or RED".into())),
    };
    let grade = match q.grade.as_str() {
        "" => None,
        "INTEGRITY" => Some(Grade::Integrity),
        "GOOD" => Some(Grade::Good),
        "WARNING" => Some(Grade::Warning),
        "POOR" => Some(Grade::Poor),
        _ => return Err(Error::InvalidArgument("grade: INTEGRITY, GOOD, WARNING or POOR".into())),
    };
    if !matches!(q.sort.as_str(), "" | "uscc" | "points" | "name") {
        return Err(Error::InvalidArgument("sort: uscc, points or name".into()));
    }
    // A grade implies its colour, so the door filters by it already.
    let codes = match (grade, code) {
        (Some(g), Some(c)) if g.code() != c => {
            return Err(Error::InvalidArgument(format!("grade {g} never has code {c}")));
        }
        (Some(g), _) => vec![g.code()],
        (None, Some(c)) => vec![c],
        (None, None) => Vec::new(),
    };
    Ok(RegionFilter { codes, grade })
}

fn row(view: &ScoreView) -> Row {
    let e = &view.evaluation;
    Row {
        uscc: view.enterprise.uscc.to_string(),
        name: view.enterprise.name.clone(),
        region_code: view.enterprise.region_code.clone(),
        industry_code: view.enterprise.industry_code.clone(),
        code: e.code.as_str(),
        code_zh: labels::code(e.code).0,
        code_class: labels::code_class(e.code),
        grade: e.grade.as_str(),
        grade_zh: labels::grade(e.grade).0,
        points: e.points,
        as_of: e.as_of.to_string(),
    }
}

/// Every enterprise the filters select, up to [`MAX_LISTED`]; true when
/// there were more.
async fn list_all(
    st: &WebState,
    who: &Principal,
    q: &RegionQuery,
    codes: Vec<Code>,
) -> Result<(Vec<ScoreView>, bool)> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let page = st
            .service
            .list_scores(
                who,
                ListQuery {
                    region_prefix: q.region.clone(),
                    industry_prefix: q.industry.clone(),
                    codes: codes.clone(),
                    mee_levels: Vec::new(),
                    page_size: MAX_PAGE,
                    after: after.clone(),
                    include_closed: false,
                },
            )
            .await?;
        out.extend(page.scores);
        match page.next_after {
            Some(next) if out.len() < MAX_LISTED => after = next,
            Some(_) => return Ok((out, true)),
            None => return Ok((out, false)),
        }
    }
}

pub async fn region(
    State(st): State<WebState>,
    Query(q): Query<RegionQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let signed = require_signed_in(&st, &headers)?;
    let who = &signed.principal;
    let filter = region_filter(&q)?;
    let page = st
        .service
        .list_scores(
            who,
            ListQuery {
                region_prefix: q.region.clone(),
                industry_prefix: q.industry.clone(),
                codes: filter.codes.clone(),
                mee_levels: Vec::new(),
                page_size: REGION_PAGE,
                after: q.after.clone(),
                include_closed: false,
            },
        )
        .await?;
    let mut rows: Vec<Row> = page
        .scores
        .iter()
        .filter(|v| filter.grade.is_none_or(|g| v.evaluation.grade == g))
        .map(row)
        .collect();
    sort_rows(&mut rows, &q.sort);
    let (all, capped) = list_all(&st, who, &q, Vec::new()).await?;
    let counts = [Code::Green, Code::Yellow, Code::Red]
        .into_iter()
        .map(|c| (labels::code(c).0, c.as_str(), all.iter().filter(|v| v.evaluation.code == c).count()))
        .collect();
    let base_query = format!(
        "region={}&industry={}&code={}&grade={}&sort={}",
        query_value(&q.region),
        query_value(&q.industry),
        query_value(&q.code),
        query_value(&q.grade),
        query_value(&q.sort)
    );
    let next = page.next_after.map(|after| format!("{base_query}&after={}", query_value(&after)));
    let view = RegionPage {
        me: me(&Some(signed.clone())),
        rows,
        counts,
        counts_capped: capped,
        region: q.region.clone(),
        industry: q.industry.clone(),
        code: q.code.clone(),
        grade: q.grade.clone(),
        sort: if q.sort.is_empty() { "uscc".into() } else { q.sort.clone() },
        next,
        csv: base_query,
    };
    Ok(render(&view))
}

fn sort_rows(rows: &mut [Row], sort: &str) {
    match sort {
        "points" => rows.sort_by(|a, b| a.points.cmp(&b.points).then_with(|| a.uscc.cmp(&b.uscc))),
        "name" => rows.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.uscc.cmp(&b.uscc))),
        _ => rows.sort_by(|a, b| a.uscc.cmp(&b.uscc)),
    }
}

pub async fn region_csv(
    State(st): State<WebState>,
    Query(q): Query<RegionQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let signed = require_signed_in(&st, &headers)?;
    let filter = region_filter(&q)?;
    let (all, _) = list_all(&st, &signed.principal, &q, filter.codes.clone()).await?;
    let mut rows: Vec<Row> =
        all.iter().filter(|v| filter.grade.is_none_or(|g| v.evaluation.grade == g)).map(row).collect();
    sort_rows(&mut rows, &q.sort);
    Ok(download("text/csv; charset=utf-8", "ecocode-region.csv", csv(&rows)))
}

/// Rows as CSV (RFC 4180), with a BOM so spreadsheet programs read the
/// Chinese names; a cell that a spreadsheet would run as a formula is
/// prefixed with `'`.
fn csv(rows: &[Row]) -> String {
    fn cell(text: &str) -> String {
        let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{text}")
        } else {
            text.to_owned()
        };
        format!("\"{}\"", text.replace('"', "\"\""))
    }
    let mut out = String::from("\u{feff}uscc,name,region_code,industry_code,code,grade,points,as_of\r\n");
    for r in rows {
        let line = [
            cell(&r.uscc),
            cell(&r.name),
            cell(&r.region_code),
            cell(&r.industry_code),
            cell(r.code),
            cell(r.grade),
            r.points.to_string(),
            cell(&r.as_of),
        ]
        .join(",");
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

// ---- the lender's portfolio ----------------------------------------------------------

pub async fn portfolio_form(State(st): State<WebState>, headers: HeaderMap) -> Result<Response> {
    let signed = require_signed_in(&st, &headers)?;
    let page = PortfolioPage {
        me: me(&Some(signed)),
        usccs: String::new(),
        purpose: String::new(),
        rows: Vec::new(),
        not_found: Vec::new(),
        malformed: Vec::new(),
        asked: false,
    };
    Ok(render(&page))
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct PortfolioForm {
    csrf: String,
    usccs: String,
    purpose: String,
    format: String,
}

/// A portfolio: the same rules as `BatchGetScores` (the door's
/// `batch_scores`, an inquiry with the given purpose). The form is
/// `multipart/form-data` so that a list can be uploaded as a file (field
/// `file`, added to the pasted `usccs`); `application/x-www-form-urlencoded`
/// is taken too.
pub async fn portfolio(State(st): State<WebState>, headers: HeaderMap, body: Bytes) -> Result<Response> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let form = if content_type.starts_with("multipart/form-data") {
        let mut form = PortfolioForm::default();
        for (name, value) in multipart_fields(content_type, &body)? {
            match name.as_str() {
                "csrf" => form.csrf = value,
                "usccs" | "file" => {
                    form.usccs.push('\n');
                    form.usccs.push_str(&value);
                }
                "purpose" => form.purpose = value,
                "format" => form.format = value,
                _ => {}
            }
        }
        form
    } else {
        // A POST: for other methods `Form` reads the query string.
        let request = axum::http::Request::builder()
            .method(axum::http::Method::POST)
            .header(header::CONTENT_TYPE, content_type)
            .body(axum::body::Body::from(body))
            .map_err(|e| Error::InvalidArgument(format!("form: {e}")))?;
        let Form(form) = Form::<PortfolioForm>::from_request(request, &())
            .await
            .map_err(|e| Error::InvalidArgument(format!("form: {}", e.body_text())))?;
        form
    };
    let signed = require_signed_in(&st, &headers)?;
    check_csrf(&st, &headers, &signed, &form.csrf)?;
    let mut valid = Vec::new();
    let mut malformed = Vec::new();
    for text in
        form.usccs.split(|c: char| c.is_whitespace() || c == ',' || c == ';').filter(|t| !t.is_empty())
    {
        match Uscc::parse(text) {
            Ok(u) => valid.push(u),
            Err(_) => malformed.push(text.chars().take(32).collect()),
        }
    }
    // Stripped of control characters where it enters: the enterprise reads
    // it on its terminal (`ecocode inquiries`) and pages.
    let purpose = crate::auth::purpose_text("purpose", &form.purpose)?;
    let purpose = purpose.as_str();
    let answer = st.service.batch_scores(&signed.principal, purpose, valid, None).await?;
    let rows: Vec<Row> = answer.scores.iter().map(row).collect();
    if form.format == "csv" {
        return Ok(download("text/csv; charset=utf-8", "ecocode-portfolio.csv", csv(&rows)));
    }
    let page = PortfolioPage {
        me: me(&Some(signed)),
        usccs: form.usccs.trim().to_owned(),
        purpose: purpose.to_owned(),
        rows,
        not_found: answer.not_found.iter().map(ToString::to_string).collect(),
        malformed,
        asked: true,
    };
    Ok(render(&page))
}

/// The fields of a `multipart/form-data` body, `(name, text)` per part (a
/// file's content as text: portfolios are lists of USCCs). Bounded by the
/// router's body limit.
fn multipart_fields(content_type: &str, body: &[u8]) -> Result<Vec<(String, String)>> {
    let bad = |what: &str| Error::InvalidArgument(format!("multipart form: {what}"));
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())
        .ok_or_else(|| bad("no boundary"))?;
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            return Ok(fields);
        }
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let (head, content) = part.split_once("\r\n\r\n").ok_or_else(|| bad("a part without headers"))?;
        let name = head
            .split("\r\n")
            .filter(|line| line.to_ascii_lowercase().starts_with("content-disposition:"))
            .flat_map(|line| line.split(';'))
            .find_map(|p| p.trim().strip_prefix("name="))
            .map(|n| n.trim_matches('"').to_owned())
            .ok_or_else(|| bad("a part without a name"))?;
        fields.push((name, content.strip_suffix("\r\n").unwrap_or(content).to_owned()));
    }
    Err(bad("no closing boundary"))
}

// ---- the rest ------------------------------------------------------------------

pub async fn index(State(st): State<WebState>, headers: HeaderMap) -> Response {
    render(&IndexPage { me: me(&signed_in(&st, &headers)) })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LookupQuery {
    uscc: String,
}

/// The start page's form: `/e?uscc=X` goes to `/e/X`.
pub async fn lookup(Query(q): Query<LookupQuery>) -> Result<Response> {
    let uscc = parse_uscc(&q.uscc.to_ascii_uppercase())?;
    Ok(Redirect::to(&format!("/e/{uscc}")).into_response())
}

pub async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../static/style.css"),
    )
        .into_response()
}

pub async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        labels::status_title(StatusCode::NOT_FOUND),
        "no such page; an enterprise's page is /e/<USCC>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_fields_are_read_with_files_as_text() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\ntok\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"l.txt\"\r\n\
                    Content-Type: text/plain\r\n\r\nA\nB\r\n--XyZ--\r\n";
        let fields = multipart_fields("multipart/form-data; boundary=XyZ", body.as_bytes()).unwrap();
        assert_eq!(fields, vec![("csrf".into(), "tok".into()), ("file".into(), "A\nB".into())]);
        for bad in ["", "--XyZ\r\nno headers", "--XyZ\r\nX: y\r\n\r\nv\r\n"] {
            assert!(
                multipart_fields("multipart/form-data; boundary=XyZ", bad.as_bytes()).is_err(),
                "{bad:?}"
            );
        }
        assert!(multipart_fields("multipart/form-data", b"").is_err());
    }
}
