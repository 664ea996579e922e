//! The enterprise's page (`GET /e/{USCC}`, HTML or JSON): one door call, its
//! data and the enterprise's own filings.

use super::*;

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
    let visitor = signed.as_ref().map(|s| &s.principal);
    let (data, view) = page_data(&st, visitor, &purpose, &uscc, &base, query.att.as_deref()).await?;
    match query.format.as_deref() {
        None | Some("html") => {}
        Some("json") => return Ok(axum::Json(data).into_response()),
        Some(other) => {
            let shown: String = other.chars().take(16).collect();
            return Err(Error::InvalidArgument(format!("format: html or json, got {shown:?}")));
        }
    }
    // The enterprise itself: its filings and forms.
    let own = view.own;
    let filings = if own { filings(&st, &view) } else { Vec::new() };
    let grants = match (own, visitor) {
        (true, Some(who)) => grant_lines(&st, who, &uscc).await?,
        _ => Vec::new(),
    };
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
        grants,
        verify_command,
        notice: query.filed.map(|seq| format!("已提交，账本序号 {seq} / filed as ledger entry {seq}")),
        d: &data,
    };
    Ok(render(&page))
}

/// The page's history, typed, for the chart.
pub(super) fn view_history(view: &PageView) -> Vec<chart::Step> {
    view.history.iter().map(|h| chart::Step { at: h.at, points: h.points, code: h.code }).collect()
}

/// Everything the page of `uscc` shows to `visitor`, in one door call.
pub(super) async fn page_data(
    st: &WebState,
    visitor: Option<&Principal>,
    purpose: &str,
    uscc: &Uscc,
    base: &str,
    scanned: Option<&str>,
) -> Result<(PageData, PageView)> {
    let service = &st.service;
    let view = service.page(visitor, purpose, uscc).await?;
    let reader = &view.reader;
    let score = &view.score;
    let evaluation = &score.evaluation;
    let checkpoint = &view.checkpoint;
    let note = view.note.clone();

    // Why repair is not yet possible tells of the workflow: for those who
    // see the filings only.
    let detailed = view.detailed;
    let mut reasons = Vec::with_capacity(evaluation.reasons.len().min(MAX_PAGE_REASONS));
    for r in evaluation.reasons.iter().take(MAX_PAGE_REASONS) {
        let withheld = view.score.withheld.iter().find(|w| r.kind == WITHHELD_KIND && w.seq == r.seq);
        let seq = (r.expires_at.is_some() || withheld.is_some()).then_some(r.seq);
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
            kind_zh: if withheld.is_some() {
                "不再公示的记录".to_owned()
            } else {
                labels::kind(&r.kind).to_owned()
            },
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
            withheld: withheld.map(|w| WithheldLine {
                publicity_class: w.class.as_str(),
                why: w.why.as_str(),
                since: date(w.since),
            }),
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
        unpublished: view.withheld.len(),
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
            witnessed: view.witnessed.clone(),
        },
        attestation: AttestationData { qr_text, note, tree_size: score.tree_size, check: own },
        verifier_key,
        complete: view.complete.map(|(entries, needs_sign_in)| Completeness {
            entries,
            tree_size: checkpoint.tree_size,
            needs_sign_in,
            proof_url: format!("/e/{uscc}/score-proof.json"),
        }),
        scanned,
    };
    Ok((data, view))
}

/// The enterprise's own workflow filings, newest first.
pub(super) fn filings(st: &WebState, view: &PageView) -> Vec<Filing> {
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
