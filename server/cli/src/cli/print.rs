//! Printing answers for people: scores, figures, server text escaped.

use super::*;

pub(super) fn print_score(s: &pb::Score) {
    let grade = pb::CreditGrade::try_from(s.grade).map(|g| g.as_str_name()).unwrap_or("?");
    let code = pb::EcoCode::try_from(s.code).map(|c| c.as_str_name()).unwrap_or("?");
    println!("{} {}", terminal_text(&s.uscc), terminal_text(&s.name));
    println!(
        "  {code}  {grade}  {} points  MEE {}{}{}",
        s.points,
        mee_level_name(s.mee_level),
        if s.veto { "  VETO" } else { "" },
        if s.disputed { "  DISPUTED" } else { "" }
    );
    println!("  model {}, ledger size {}", s.model_version, s.tree_size);
    for r in s.reasons.iter() {
        // A withheld record: no longer published or shared (docs/scoring.md, Publicity).
        let text = match &r.withheld {
            Some(w) => format!(
                "not published since {} ({}, {} class)",
                w.since
                    .as_ref()
                    .and_then(|t| Timestamp::from_unix(t.seconds, t.nanos))
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                terminal_text(&w.why),
                terminal_text(&w.publicity_class)
            ),
            None => terminal_text(&r.description).into_owned(),
        };
        println!("  {:>+4}  {:<32} seq {:<6} {}", r.points, terminal_text(&r.kind), r.seq, text);
    }
}

/// Text from the server as a terminal shows it: control characters and
/// bidirectional overrides escaped (`\u{1b}`), so no name, description or
/// inquiry purpose moves the cursor, recolours the screen or starts a
/// forged line. The server strips them where they enter; this is the
/// second line of defence.
pub fn terminal_text(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(scoring::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| if scoring::is_control(c) { c.escape_unicode().to_string() } else { c.to_string() })
        .collect::<String>()
        .into()
}

/// `GREEN`, `BLUE`, `YELLOW` or `RED` (the enum value without its
/// `MEE_LEVEL_` prefix, as in exports and the page's JSON); `?` from a
/// server that does not send it.
pub(super) fn mee_level_name(level: i32) -> &'static str {
    match pb::MeeLevel::try_from(level) {
        Ok(pb::MeeLevel::Green) => "GREEN",
        Ok(pb::MeeLevel::Blue) => "BLUE",
        Ok(pb::MeeLevel::Yellow) => "YELLOW",
        Ok(pb::MeeLevel::Red) => "RED",
        _ => "?",
    }
}

pub(super) fn score_json(s: &pb::Score) -> serde_json::Value {
    let ts = |t: &Option<prost_types::Timestamp>| {
        t.as_ref().and_then(|t| Timestamp::from_unix(t.seconds, t.nanos)).map(|t| t.to_string())
    };
    serde_json::json!({
        "uscc": s.uscc,
        "name": s.name,
        "points": s.points,
        "grade": pb::CreditGrade::try_from(s.grade).map(|g| g.as_str_name()).unwrap_or("?"),
        "code": pb::EcoCode::try_from(s.code).map(|c| c.as_str_name()).unwrap_or("?"),
        "mee_level": mee_level_name(s.mee_level),
        "veto": s.veto,
        "disputed": s.disputed,
        "as_of": ts(&s.as_of),
        "tree_size": s.tree_size,
        "model_version": s.model_version,
        "reasons": s.reasons.iter().map(|r| serde_json::json!({
            "kind": r.kind, "points": r.points, "seq": r.seq, "description": r.description,
            "expires_at": ts(&r.expires_at),
        })).collect::<Vec<_>>(),
    })
}

/// `ecocode gateway`: one `total NAME VALUE` line per counter, then per
/// device one line of figures, with its rejections and deviations by name.
pub(super) fn gateway_figures_text(figures: &pb::GatewayFigures) -> String {
    let mut out = String::new();
    for (name, value) in &figures.totals {
        out.push_str(&format!("total {name} {value}\n"));
    }
    let joined = |map: &std::collections::BTreeMap<String, u64>| {
        map.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    };
    for d in &figures.devices {
        let last_seen = d
            .last_seen
            .as_ref()
            .and_then(|t| Timestamp::from_unix(t.seconds, t.nanos))
            .map_or_else(|| "-".to_owned(), |t| t.to_string());
        // A device still checked against a legacy (ledger-held) hash says so.
        let legacy = if d.legacy_verifier > 0 {
            format!(" legacy_verifier={} (rotate its password)", d.legacy_verifier)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "device {} packets={} acknowledged={} rejected=[{}] deviations=[{}] last_seen={last_seen}{legacy}\n",
            d.device,
            d.packets,
            d.acknowledged,
            joined(&d.rejected),
            joined(&d.deviations),
        ));
    }
    out
}
