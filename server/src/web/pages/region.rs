//! The regulator's list and its CSV.

use super::*;

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

impl RegionQuery {
    /// The door's query for this page's filters: `page_size` scores after
    /// `after`, open enterprises only.
    fn list_query(&self, codes: Vec<Code>, page_size: usize, after: String) -> ListQuery {
        ListQuery {
            region_prefix: self.region.clone(),
            industry_prefix: self.industry.clone(),
            codes,
            mee_levels: Vec::new(),
            page_size,
            after,
            include_closed: false,
        }
    }
}

struct RegionFilter {
    codes: Vec<Code>,
    grade: Option<Grade>,
}

fn region_filter(q: &RegionQuery) -> Result<RegionFilter> {
    // Empty means "any"; otherwise the names the domain types print.
    let code: Option<Code> = (!q.code.is_empty()).then(|| q.code.parse()).transpose()?;
    let grade: Option<Grade> = (!q.grade.is_empty()).then(|| q.grade.parse()).transpose()?;
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

pub(super) fn row(view: &ScoreView) -> Row {
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
pub(super) async fn list_all(
    st: &WebState,
    who: &Principal,
    q: &RegionQuery,
    codes: Vec<Code>,
) -> Result<(Vec<ScoreView>, bool)> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let page = st.service.list_scores(who, q.list_query(codes.clone(), MAX_PAGE, after.clone())).await?;
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
    let page =
        st.service.list_scores(who, q.list_query(filter.codes.clone(), REGION_PAGE, q.after.clone())).await?;
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

pub(super) fn sort_rows(rows: &mut [Row], sort: &str) {
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
pub(super) fn csv(rows: &[Row]) -> String {
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
