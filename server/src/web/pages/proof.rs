//! Downloads: the attestation file and proof bundles, of the published
//! checkpoint.

use super::*;

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

/// The score proof of the published checkpoint (`ecocode proof verify`
/// recomputes it): the full bundle for the enterprise itself and lenders;
/// the public gets one only when every entry is one it may see, else
/// `PERMISSION_DENIED` saying a sign-in is needed.
pub async fn score_proof_file(
    State(st): State<WebState>,
    Path(uscc): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let uscc = parse_uscc(&uscc)?;
    let reader = page_reader(&st, &signed_in(&st, &headers), &uscc).await?;
    let bundle = st.service.score_proof(&reader, PURPOSE, &uscc, 0, None).await?;
    let json = String::from_utf8(bundle)
        .map_err(|e| Error::Internal(format!("score proof of {uscc} is not UTF-8: {e}")))?;
    Ok(download("application/json", &format!("score-proof-{uscc}.json"), json))
}

pub(super) fn download(content_type: &'static str, filename: &str, body: String) -> Response {
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(header::CONTENT_DISPOSITION, disposition);
    response
}

/// Everything held about the enterprise (`GET /e/{USCC}/export`, signed
/// in as the enterprise or a regulator of its region): JSON Lines, as
/// `ecocode export` writes them, streamed from the door.
pub async fn export_file(
    State(st): State<WebState>,
    Path(uscc): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    use tokio_stream::StreamExt as _;
    let uscc = parse_uscc(&uscc)?;
    let signed = require_signed_in(&st, &headers)?;
    let items = st.service.export(&signed.principal, &uscc).await?;
    let filename = format!("export-{uscc}.jsonl");
    let (mut entries, mut grants, mut inquiries) = (0u64, 0u64, 0u64);
    let key = st.service.verifier_key();
    let mut checkpoint_note = String::new();
    let mut ended = false;
    let lines = tokio_stream::wrappers::ReceiverStream::new(items)
        .map(Some)
        .chain(tokio_stream::once(None))
        .filter_map(move |item| {
            let line = match item {
                Some(Ok(ExportItem::Checkpoint(c))) => {
                    checkpoint_note = c.note.clone();
                    serde_json::json!({"type": "header", "uscc": uscc.to_string(), "tree_size": c.tree_size,
                        "checkpoint": c.note, "verifier_key": key})
                }
                Some(Ok(ExportItem::Entry(e, hashes))) => {
                    entries += 1;
                    let bundle = tlog::bundle::Bundle::Inclusion {
                        checkpoint: checkpoint_note.clone(),
                        seq: e.seq,
                        recorded_at_ns: e.recorded_at_ns,
                        payload: B64.encode(&e.payload),
                        hashes: tlog::bundle::encode_hashes(&hashes),
                    };
                    // A committed record's details (its salt and whole
                    // record) follow the bundle: they open its commitment.
                    match e.details.is_empty() {
                        true => serde_json::json!({"type": "entry", "seq": e.seq, "bundle": bundle}),
                        false => serde_json::json!({"type": "entry", "seq": e.seq, "bundle": bundle,
                            "details": B64.encode(&e.details)}),
                    }
                }
                Some(Ok(ExportItem::Grant(g))) => {
                    grants += 1;
                    serde_json::json!({"type": "grant", "seq": g.seq, "lender": g.grant.lender,
                        "purpose": g.grant.purpose,
                        "covers": g.grant.covers.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                        "starts_at": g.grant.starts_at.to_string(), "expires_at": g.grant.expires_at.to_string(),
                        "revoked_seq": g.revoked.map_or(0, |(seq, _)| seq)})
                }
                Some(Ok(ExportItem::Inquiry(i))) => {
                    inquiries += 1;
                    serde_json::json!({"type": "inquiry", "at": Timestamp::from_unix_nanos(i.at_ns).to_string(),
                        "principal": i.principal, "role": i.role, "method": i.method, "purpose": i.purpose,
                        "grant_seq": i.grant_seq.unwrap_or(0)})
                }
                // A failure mid-way ends the file without its closing line,
                // so a truncated export is never mistaken for a whole one.
                Some(Err(e)) => {
                    ended = true;
                    serde_json::json!({"type": "error", "message": e.to_string()})
                }
                None if ended => return None,
                None => serde_json::json!({"type": "end", "entries": entries, "grants": grants, "inquiries": inquiries}),
            };
            Some(Ok::<_, std::convert::Infallible>(format!("{line}\n")))
        });
    let mut response = axum::body::Body::from_stream(lines).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    response.headers_mut().insert(header::CONTENT_DISPOSITION, disposition);
    Ok(response)
}
