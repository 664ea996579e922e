//! The lender's portfolio: `BatchGetScores` as a form.

use super::*;

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
pub(super) fn multipart_fields(content_type: &str, body: &[u8]) -> Result<Vec<(String, String)>> {
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
