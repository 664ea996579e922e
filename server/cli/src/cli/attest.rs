//! `ecocode attest`: score attestations, fetched and verified.

use super::*;

/// `ecocode attest get` (client) and `attest verify` (offline).
pub(super) async fn attest(command: AttestCommand) -> anyhow::Result<()> {
    match command {
        AttestCommand::Get { conn, uscc, out } => {
            let mut client = pb::scores_client::ScoresClient::new(channel(&conn).await?);
            let request = authed(&conn, pb::GetAttestationRequest { uscc, as_of: None, tree_size: 0 })?;
            let attestation = client.get_attestation(request).await.map_err(status_error)?.into_inner();
            std::fs::write(&out, &attestation.signed_note)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(())
        }
        AttestCommand::Verify { file, public_key, policy, checkpoint } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            // A signed note has lines; a QR code's text is one URL.
            let note = if text.trim().contains('\n') {
                text
            } else {
                tlog::attestation::note_from_qr_text(&text).with_context(|| {
                    format!("{} is neither a signed note nor a QR code's text", file.display())
                })?
            };
            let (key_name, key) = tlog::note::decode_verifier_key(public_key.trim())
                .context("--public-key must be a verifier key as printed by `ecocode key show`")?;
            let attestation = tlog::attestation::verify(&note, &key_name, &key)
                .map_err(|e| anyhow::anyhow!("attestation {} does NOT verify: {e}", file.display()))?;
            println!("attestation verifies against the given public key");
            if let (Some(policy), Some(checkpoint)) = (policy, checkpoint) {
                crate::witness::attestation_quorum(&policy, &checkpoint, &attestation, &key_name, &key)?;
            }
            for (k, v) in attestation.fields() {
                println!("  {k:<10} {v}");
            }
            Ok(())
        }
    }
}
