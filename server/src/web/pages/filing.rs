//! The enterprise's forms: disputes and rectifications through the append
//! pipeline.

use super::*;

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
pub(super) async fn file(
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
