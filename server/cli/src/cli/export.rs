//! `ecocode export`: everything held about an enterprise, in one file:
//! each of its ledger entries as an inclusion proof bundle against one
//! signed checkpoint, every access grant and every inquiry. For the
//! enterprise itself, and for a regulator of its region.

use std::io::Write as _;

use tlog::bundle::Bundle;

use super::*;

/// One line of the export (JSON Lines, so a large history is written and
/// read as it streams).
#[derive(serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    /// The first line: what the export is and the checkpoint every proof is against.
    Header {
        uscc: String,
        tree_size: u64,
        checkpoint: String,
        verifier: String,
    },
    /// An entry about the enterprise: `ecocode proof verify` checks it
    /// (save the `bundle` object to a file). A committed record's
    /// `details` (base64 `RecordDetails`: salt and whole record) open the
    /// commitment in its payload.
    Entry {
        seq: u64,
        bundle: Bundle,
        #[serde(skip_serializing_if = "Option::is_none")]
        details: Option<String>,
    },
    Grant {
        seq: u64,
        status: String,
        lender: String,
        purpose: String,
        covers: Vec<String>,
        starts_at: String,
        expires_at: String,
        revoked_seq: u64,
    },
    Inquiry {
        at: String,
        principal: String,
        role: String,
        method: String,
        purpose: String,
        grant_seq: u64,
    },
    /// The last line: counts, so a truncated file is noticed.
    End {
        entries: u64,
        grants: u64,
        inquiries: u64,
    },
}

fn time(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| Timestamp::from_unix(t.seconds, t.nanos))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// `ecocode export --uscc U --out FILE` (client).
pub(super) async fn export(conn: Connection, uscc: String, out: PathBuf) -> anyhow::Result<()> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let channel = channel(&conn).await?;
    let mut ledger = pb::ledger_client::LedgerClient::new(channel.clone());
    let mut consent = pb::consent_client::ConsentClient::new(channel.clone());
    let mut scores = pb::scores_client::ScoresClient::new(channel);
    let checkpoint = ledger
        .get_checkpoint(authed(&conn, pb::GetCheckpointRequest {})?)
        .await
        .map_err(status_error)?
        .into_inner();
    let file = std::fs::File::create(&out).with_context(|| format!("cannot write {}", out.display()))?;
    let mut file = std::io::BufWriter::new(file);
    let mut write = |line: &Line| -> anyhow::Result<()> {
        serde_json::to_writer(&mut file, line)?;
        file.write_all(b"\n")?;
        Ok(())
    };
    write(&Line::Header {
        uscc: uscc.clone(),
        tree_size: checkpoint.tree_size,
        checkpoint: checkpoint.signed_note.clone(),
        verifier: "ecocode proof verify <bundle> --public-key \"$(ecocode key show)\"".into(),
    })?;

    // Every entry the caller may read up to the checkpoint, kept when it is
    // about this enterprise (the subject of its event), each with its proof.
    let bar = progress_bar("exporting entries", "entries");
    bar.set_length(checkpoint.tree_size);
    let request = pb::ListEntriesRequest { from_seq: 0, to_seq: checkpoint.tree_size };
    let mut stream = ledger.list_entries(authed(&conn, request)?).await.map_err(status_error)?.into_inner();
    let mut entries = 0;
    while let Some(entry) = stream.message().await.map_err(status_error)? {
        bar.set_position(entry.seq + 1);
        if !about(&entry.payload, &uscc) {
            continue;
        }
        let request = pb::GetInclusionProofRequest { seq: entry.seq, tree_size: checkpoint.tree_size };
        let p = ledger.get_inclusion_proof(authed(&conn, request)?).await.map_err(status_error)?.into_inner();
        let recorded_at = entry.recorded_at.unwrap_or_default();
        let bundle = Bundle::Inclusion {
            checkpoint: checkpoint.signed_note.clone(),
            seq: entry.seq,
            recorded_at_ns: recorded_at.seconds * 1_000_000_000 + i64::from(recorded_at.nanos),
            payload: b64.encode(&entry.payload),
            hashes: p.hashes.iter().map(|h| b64.encode(h)).collect(),
        };
        let details = (!entry.details.is_empty()).then(|| b64.encode(&entry.details));
        write(&Line::Entry { seq: entry.seq, bundle, details })?;
        entries += 1;
    }
    bar.finish_and_clear();

    let request = pb::ListGrantsRequest { uscc: uscc.clone() };
    let grants =
        consent.list_grants(authed(&conn, request)?).await.map_err(status_error)?.into_inner().grants;
    for g in &grants {
        let a = g.grant.clone().unwrap_or_default();
        write(&Line::Grant {
            seq: g.seq,
            status: g.status.clone(),
            lender: a.lender,
            purpose: a.purpose,
            covers: a.covers,
            starts_at: time(&a.starts_at),
            expires_at: time(&a.expires_at),
            revoked_seq: g.revoked_seq,
        })?;
    }

    let mut inquiries = 0;
    let mut page_token = String::new();
    loop {
        let request = pb::ListInquiriesRequest {
            uscc: uscc.clone(),
            page_size: 1_000,
            page_token,
            ..Default::default()
        };
        let page = scores.list_inquiries(authed(&conn, request)?).await.map_err(status_error)?.into_inner();
        for i in page.inquiries {
            write(&Line::Inquiry {
                at: time(&i.at),
                principal: i.principal,
                role: i.role,
                method: i.method,
                purpose: i.purpose,
                grant_seq: i.grant_seq,
            })?;
            inquiries += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    write(&Line::End { entries, grants: grants.len() as u64, inquiries })?;
    file.flush()?;
    println!(
        "wrote {}: {entries} entries with inclusion proofs against the checkpoint of {} entries, {} grants, {inquiries} inquiries",
        out.display(),
        checkpoint.tree_size,
        grants.len()
    );
    Ok(())
}

/// Whether an entry's event is about `uscc`.
fn about(payload: &[u8], uscc: &str) -> bool {
    use pb::ledger_event::Event;
    let Ok(event) = <pb::LedgerEvent as prost::Message>::decode(payload) else { return false };
    match event.event {
        Some(Event::Registration(e)) => e.uscc == uscc,
        Some(Event::Record(r)) => r.uscc == uscc,
        Some(Event::CommittedRecord(r)) => r.uscc == uscc,
        Some(Event::MonitoringPoint(p)) => p.uscc == uscc,
        Some(Event::EnterpriseUpdate(u)) => u.uscc == uscc,
        Some(Event::AccessGrant(g)) => g.uscc == uscc,
        Some(Event::AccessRevocation(r)) => r.uscc == uscc,
        Some(Event::PlatformOutage(_) | Event::ScoringModel(_)) | None => false,
    }
}
