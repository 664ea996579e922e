//! The Atom feed of an enterprise's code changes.

use super::*;

pub async fn feed(State(st): State<WebState>, Path(uscc): Path<String>) -> Result<Response> {
    let uscc = parse_uscc(&uscc)?;
    // Feed readers are anonymous: the public's view, never an inquiry.
    let base = base_url(&st);
    let (data, view) = page_data(&st, None, PURPOSE, &uscc, &base, None).await?;
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
