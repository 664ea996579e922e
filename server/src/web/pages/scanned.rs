//! Scanned QR codes: `/Q/<digits>` and the check of a scanned attestation
//! against the page's published checkpoint.

use super::*;

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
pub(super) async fn check_scanned(
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
        code_zh: attestation.code.parse().map_or("?", |code| labels::code(code).0),
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
