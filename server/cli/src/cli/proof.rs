//! `ecocode proof inclusion|consistency|verify`.

use super::*;

pub(super) async fn proof(command: ProofCommand) -> anyhow::Result<()> {
    use tlog::bundle::{Bundle, Verified};
    let write = |out: &Path, bundle: &Bundle| -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(bundle)?;
        std::fs::write(out, text + "\n").with_context(|| format!("cannot write {}", out.display()))?;
        println!("wrote {}", out.display());
        Ok(())
    };
    match command {
        ProofCommand::Inclusion { conn, seq, out } => {
            let mut client = pb::ledger_client::LedgerClient::new(channel(&conn).await?);
            let checkpoint = checkpoint_covering(&conn, &mut client, seq + 1).await?;
            let entry =
                client.get_entry(authed(&conn, pb::GetEntryRequest { seq })?).await.map_err(status_error)?;
            let entry = entry.into_inner();
            if let Some(w) = entry.withheld.as_ref().filter(|_| entry.payload.is_empty()) {
                // A record written before committed records: its payload is
                // the whole record, not shared with this reader; its hash
                // is. (A committed record's payload is its hashed bytes
                // without the details, which any bundle may hold.)
                bail!(
                    "entry {seq} is withheld from you ({}, since its publicity ended); its entry hash {} \
                     is proven by `GetInclusionProof`, but a proof bundle needs the payload: ask the \
                     enterprise or a regulator for it",
                    w.why,
                    base64::engine::general_purpose::STANDARD.encode(&entry.entry_hash)
                );
            }
            let request = pb::GetInclusionProofRequest { seq, tree_size: checkpoint.tree_size };
            let p =
                client.get_inclusion_proof(authed(&conn, request)?).await.map_err(status_error)?.into_inner();
            let recorded_at = entry.recorded_at.unwrap_or_default();
            write(
                &out,
                &Bundle::Inclusion {
                    checkpoint: checkpoint.signed_note,
                    seq,
                    recorded_at_ns: recorded_at.seconds * 1_000_000_000 + i64::from(recorded_at.nanos),
                    payload: base64::engine::general_purpose::STANDARD.encode(&entry.payload),
                    hashes: p
                        .hashes
                        .iter()
                        .map(|h| base64::engine::general_purpose::STANDARD.encode(h))
                        .collect(),
                },
            )
        }
        ProofCommand::Consistency { conn, old_checkpoint, out } => {
            let old = std::fs::read_to_string(&old_checkpoint)
                .with_context(|| format!("cannot read {}", old_checkpoint.display()))?;
            let old_size = old
                .lines()
                .nth(1)
                .and_then(|l| l.parse::<u64>().ok())
                .with_context(|| format!("{} is not a checkpoint note", old_checkpoint.display()))?;
            let mut client = pb::ledger_client::LedgerClient::new(channel(&conn).await?);
            let checkpoint = client
                .get_checkpoint(authed(&conn, pb::GetCheckpointRequest {})?)
                .await
                .map_err(status_error)?;
            let checkpoint = checkpoint.into_inner();
            let request =
                pb::GetConsistencyProofRequest { from_size: old_size, to_size: checkpoint.tree_size };
            let p = client
                .get_consistency_proof(authed(&conn, request)?)
                .await
                .map_err(status_error)?
                .into_inner();
            write(
                &out,
                &Bundle::Consistency {
                    old_checkpoint: old,
                    checkpoint: checkpoint.signed_note,
                    hashes: p
                        .hashes
                        .iter()
                        .map(|h| base64::engine::general_purpose::STANDARD.encode(h))
                        .collect(),
                },
            )
        }
        ProofCommand::Score { conn, uscc, tree_size, as_of, out } => {
            let as_of = match as_of {
                Some(text) => {
                    let at = Timestamp::parse_rfc3339(&text)
                        .with_context(|| format!("--as-of {text:?} is not an RFC 3339 instant"))?;
                    Some(to_proto::timestamp(at))
                }
                None => None,
            };
            let mut client = pb::scores_client::ScoresClient::new(channel(&conn).await?);
            let request = pb::GetScoreProofRequest { uscc, tree_size: tree_size.unwrap_or(0), as_of };
            let mut stream =
                client.get_score_proof(authed(&conn, request)?).await.map_err(status_error)?.into_inner();
            let mut bundle = Vec::new();
            while let Some(chunk) = stream.message().await.map_err(status_error)? {
                bundle.extend_from_slice(&chunk.bundle);
                eprint!("\rreceived {} KiB of the score proof", bundle.len() / 1024);
            }
            eprintln!();
            std::fs::write(&out, &bundle).with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(())
        }
        ProofCommand::Verify { file, public_key, policy } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            if is_score_bundle(&text) {
                let bundle: evidence::score::ScoreBundle =
                    serde_json::from_str(&text).with_context(|| {
                        format!("{} is not a score proof from `ecocode proof score`", file.display())
                    })?;
                let (key_name, key) = tlog::note::decode_verifier_key(public_key.trim())
                    .context("--public-key must be a verifier key as printed by `ecocode key show`")?;
                if policy.is_some() {
                    bail!(
                        "--policy checks inclusion and consistency proofs; a score proof's checkpoint is checked with --public-key"
                    );
                }
                return match evidence::score::verify(&bundle, &key_name, &key) {
                    Ok(v) => {
                        println!(
                            "ok: {} scores {} points at {} under model {}; complete: the score counts all {} entries \
                             about this enterprise up to tree size {}",
                            v.uscc, v.points, v.as_of, v.model, v.entries, v.tree_size
                        );
                        Ok(())
                    }
                    Err(e) => bail!("score proof {} does NOT verify: {e}", file.display()),
                };
            }
            let bundle: Bundle = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a proof file from `ecocode proof`", file.display()))?;
            let (key_name, key) = tlog::note::decode_verifier_key(public_key.trim())
                .context("--public-key must be a verifier key as printed by `ecocode key show`")?;
            let witnessed = match &policy {
                Some(policy) => Some(crate::witness::bundle_quorum(policy, &bundle)?),
                None => None,
            };
            match tlog::bundle::verify(&bundle, &key_name, &key) {
                Ok(Verified::Inclusion { seq, tree_size, entry_hash }) => println!(
                    "ok: entry {seq} (hash {}) is in the signed ledger of {tree_size} entries",
                    base64::engine::general_purpose::STANDARD.encode(entry_hash)
                ),
                Ok(Verified::Consistency { from_size, to_size }) => {
                    println!(
                        "ok: the signed ledger of {from_size} entries is a prefix of the one of {to_size}"
                    )
                }
                Err(e) => bail!("proof {} does NOT verify: {e}", file.display()),
            }
            if let Some(witnessed) = witnessed {
                println!("{witnessed}");
            }
            Ok(())
        }
    }
}

/// Whether a proof file is a score proof (`"kind": "score"`).
fn is_score_bundle(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v["kind"] == "score")
}

/// The latest signed checkpoint once it holds the first `size` entries: the
/// service signs new heads every `--checkpoint-interval-ms`, so a very new
/// entry may need a moment. Waits at most ten seconds.
pub(super) async fn checkpoint_covering(
    conn: &Connection,
    client: &mut pb::ledger_client::LedgerClient<tonic::transport::Channel>,
    size: u64,
) -> anyhow::Result<pb::Checkpoint> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let checkpoint = client
            .get_checkpoint(authed(conn, pb::GetCheckpointRequest {})?)
            .await
            .map_err(status_error)?
            .into_inner();
        if checkpoint.tree_size >= size {
            return Ok(checkpoint);
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "the latest signed checkpoint holds {} entries, not yet entry {}; try again in a few seconds",
                checkpoint.tree_size,
                size - 1
            );
        }
        eprintln!("waiting for a signed checkpoint that covers entry {} ...", size - 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
