//! Batch evaluation with polars: every enterprise of a ledger at once, for
//! nightly re-evaluation, exports and regional statistics.
//!
//! This is the second of the spec's "two implementations, one answer": the
//! rules are restated as relational steps over the whole ledger (joins of
//! workflow steps onto the records they name, group-bys for caps and
//! totals) rather than by calling the online scorer, and
//! `tests/differential.rs` checks that both agree on generated ledgers. Only
//! the last step, turning the aggregated frames into `Evaluation`s, is plain
//! Rust.

use polars::prelude::*;

use crate::model::{KindRule, Rules};
use crate::{
    BASE_POINTS, Code, Evaluation, Grade, LedgerRecord, Model, NANOS_PER_DAY, Reason, Record, Seq, Timestamp,
    Uscc, ValidationError, WorkflowKind,
};

/// Scores every enterprise in `records` at `at` over the ledger prefix
/// `tree_size`, with polars (lazy API).
///
/// `records` is every record entry of the ledger (all enterprises), in any
/// order. Returns one evaluation per enterprise with at least one record in
/// the prefix (`seq < tree_size`), sorted by USCC; enterprises without one
/// score 100 and are the caller's to fill in. Equal to
/// `model.score(entries_of(uscc), at, tree_size)` for each of them.
pub fn score_all(
    model: &Model,
    records: &[LedgerRecord],
    at: Timestamp,
    tree_size: u64,
) -> PolarsResult<Vec<(Uscc, Evaluation)>> {
    let rules = &*model.inner;
    let frames = evaluate(rules, records_frame(records)?.lazy(), at, tree_size)?;
    assemble(model, records, &frames, at)
}

/// The evaluations as a frame with columns `uscc`, `points`, `grade`,
/// `code`, `mee_level`, `veto` and `disputed`, one row per enterprise in the order given,
/// for Parquet or CSV export.
pub fn evaluations_frame(rows: &[(Uscc, Evaluation)]) -> PolarsResult<DataFrame> {
    let evaluations = || rows.iter().map(|(_, e)| e);
    DataFrame::new(
        rows.len(),
        vec![
            Column::new("uscc".into(), rows.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>()),
            Column::new("points".into(), evaluations().map(|e| e.points).collect::<Vec<_>>()),
            Column::new("grade".into(), evaluations().map(|e| e.grade.as_str()).collect::<Vec<_>>()),
            Column::new("code".into(), evaluations().map(|e| e.code.as_str()).collect::<Vec<_>>()),
            Column::new("mee_level".into(), evaluations().map(|e| e.mee_level.as_str()).collect::<Vec<_>>()),
            Column::new("veto".into(), evaluations().map(|e| e.veto).collect::<Vec<_>>()),
            Column::new("disputed".into(), evaluations().map(|e| e.disputed).collect::<Vec<_>>()),
        ],
    )
}

/// One row per record entry: `idx` (position in the input slice), `seq`,
/// `uscc`, `kind`, `occurred_at` (unix ns), `amount`, `refers_to` and the
/// `outcome` attribute of dispute resolutions.
fn records_frame(records: &[LedgerRecord]) -> PolarsResult<DataFrame> {
    let n = records.len();
    let mut idx = Vec::with_capacity(n);
    let mut seq = Vec::with_capacity(n);
    let mut uscc = Vec::with_capacity(n);
    let mut kind = Vec::with_capacity(n);
    let mut occurred_at = Vec::with_capacity(n);
    let mut amount = Vec::with_capacity(n);
    let mut refers_to = Vec::with_capacity(n);
    let mut outcome = Vec::with_capacity(n);
    for (i, entry) in records.iter().enumerate() {
        let r = &entry.record;
        idx.push(i as u64);
        seq.push(entry.seq.0);
        uscc.push(r.uscc.as_str());
        kind.push(r.kind.as_str());
        occurred_at.push(r.occurred_at.unix_nanos());
        amount.push(r.amount_yuan);
        refers_to.push(r.refers_to.map(|s| s.0));
        outcome.push(r.attributes.get("outcome").map(String::as_str));
    }
    DataFrame::new(
        n,
        vec![
            Column::new("idx".into(), idx),
            Column::new("seq".into(), seq),
            Column::new("uscc".into(), uscc),
            Column::new("kind".into(), kind),
            Column::new("occurred_at".into(), occurred_at),
            Column::new("amount".into(), amount),
            Column::new("refers_to".into(), refers_to),
            Column::new("outcome".into(), outcome),
        ],
    )
}

/// The model's scored kinds, one row per amount tier: a record of `kind`
/// with `amount_above < amount <= amount_up_to` (the first tier has no
/// lower bound) scores `points`, or `halved_points` once rectified, for
/// `window_ns`.
fn tiers_frame(rules: &Rules) -> PolarsResult<LazyFrame> {
    let mut kind = Vec::new();
    let mut amount_above = Vec::new();
    let mut amount_up_to = Vec::new();
    let mut points = Vec::new();
    let mut window_ns = Vec::new();
    let mut veto = Vec::new();
    let mut bonus = Vec::new();
    for rule in &rules.kinds {
        let mut above = None;
        for tier in &rule.tiers {
            let up_to = tier.up_to_yuan.unwrap_or(i64::MAX);
            kind.push(rule.name.as_str());
            amount_above.push(above);
            amount_up_to.push(up_to);
            points.push(i64::from(tier.points));
            // Model windows are at most 36 500 days, well inside i64 ns.
            window_ns.push(tier.window_days.saturating_mul(NANOS_PER_DAY));
            veto.push(rule.veto);
            bonus.push(rule.bonus);
            above = Some(up_to);
        }
    }
    let frame = DataFrame::new(
        kind.len(),
        vec![
            Column::new("kind".into(), kind),
            Column::new("amount_above".into(), amount_above),
            Column::new("amount_up_to".into(), amount_up_to),
            Column::new("points".into(), points),
            Column::new("window_ns".into(), window_ns),
            Column::new("veto".into(), veto),
            Column::new("bonus".into(), bonus),
        ],
    )?;
    // A verified rectification leaves magnitude − ⌊magnitude/2⌋, sign kept.
    let magnitude = magnitude(col("points"));
    // Both are non-negative, where every integer division polars has agrees
    // (`floor_div` needs the `round_series` feature).
    let remaining = magnitude.clone() - magnitude / lit(2i64);
    let halved = when(col("points").lt(lit(0i64))).then(lit(0i64) - remaining.clone()).otherwise(remaining);
    Ok(frame.lazy().with_column(halved.alias("halved_points")))
}

/// The model's per-kind caps, with the explanation line each one produces
/// when it bites.
fn caps_frame(rules: &Rules) -> PolarsResult<LazyFrame> {
    let kinds: Vec<&KindRule> = rules.kinds.iter().collect();
    let frame = DataFrame::new(
        kinds.len(),
        vec![
            Column::new("kind".into(), kinds.iter().map(|k| k.name.as_str()).collect::<Vec<_>>()),
            Column::new("cap".into(), kinds.iter().map(|k| k.cap.map(i64::from)).collect::<Vec<_>>()),
            Column::new("bonus".into(), kinds.iter().map(|k| k.bonus).collect::<Vec<_>>()),
            Column::new(
                "cap_kind".into(),
                kinds.iter().map(|k| format!("cap:{}", k.name)).collect::<Vec<_>>(),
            ),
            Column::new(
                "cap_description".into(),
                kinds
                    .iter()
                    .map(|k| match k.cap {
                        Some(cap) => format!("{} limited to {cap} points together", k.name),
                        None => String::new(),
                    })
                    .collect::<Vec<_>>(),
            ),
        ],
    )?;
    Ok(frame.lazy())
}

/// The frames the evaluations are assembled from.
struct Frames {
    /// One row per enterprise, sorted by `uscc`: `idx` (one of its
    /// records), `points`, `grade`, `code`, `veto`, `disputed`.
    totals: DataFrame,
    /// Every explanation line, sorted by `uscc` and then in reason order:
    /// `kind`, `points`, `seq`, `expires_at` (record lines only), `idx` and
    /// `halved` (record lines only) and `description` (correction lines
    /// only).
    reasons: DataFrame,
    /// Active records with a rectification submitted but not verified,
    /// sorted by `uscc` and `seq`.
    pending: DataFrame,
}

fn evaluate(rules: &Rules, records: LazyFrame, at: Timestamp, tree_size: u64) -> PolarsResult<Frames> {
    let t = at.unix_nanos();
    // Step 1: what is visible at (T, N).
    let visible =
        records.clone().filter(col("seq").lt(seq_lit(tree_size)).and(col("occurred_at").lt_eq(lit(t))));

    // Scored records with their tier's points and window; records of kinds
    // the model does not know drop out of the inner join.
    let scored = visible
        .clone()
        .inner_join(tiers_frame(rules)?, col("kind"), col("kind"))
        .filter(
            (col("amount_above").is_null().or(col("amount").gt(col("amount_above"))))
                .and(col("amount").lt_eq(col("amount_up_to"))),
        )
        .with_column(expiry(col("occurred_at"), col("window_ns")).alias("expires_at"));

    let effects = workflow_effects(visible, scored.clone());

    // Step 2 and 3: active records and their points after halving.
    let active = scored
        .left_join(effects, col("seq"), col("target"))
        .with_columns([
            col("voided").fill_null(lit(false)),
            col("repaired").fill_null(lit(false)),
            col("verified").fill_null(lit(false)),
            col("submitted").fill_null(lit(false)),
            col("dispute_open").fill_null(lit(false)),
        ])
        .filter(lit(t).lt(col("expires_at")).and(col("voided").not()).and(col("repaired").not()))
        // Rectification rewards repair of harm: a veto stays whole and a
        // bonus has nothing to rectify.
        .with_column(col("verified").and(col("veto").not()).and(col("bonus").not()).alias("halved"))
        .with_columns([
            when(col("halved")).then(col("halved_points")).otherwise(col("points")).alias("points"),
            col("submitted").and(col("verified").not()).alias("pending"),
        ])
        .select([
            col("idx"),
            col("seq"),
            col("uscc"),
            col("kind"),
            col("points"),
            col("expires_at"),
            col("veto"),
            col("halved"),
            col("pending"),
            col("dispute_open"),
        ])
        .collect()?;

    // Step 4: per-kind caps.
    let kind_sums = active
        .clone()
        .lazy()
        .group_by([col("uscc"), col("kind")])
        .agg([col("points").sum().alias("sum")])
        .inner_join(caps_frame(rules)?, col("kind"), col("kind"))
        .with_column(
            col("cap")
                .is_not_null()
                .and(
                    (col("bonus").and(col("sum").gt(col("cap"))))
                        .or(col("bonus").not().and(col("sum").lt(col("cap")))),
                )
                .alias("cap_bit"),
        )
        .with_column(when(col("cap_bit")).then(col("cap")).otherwise(col("sum")).alias("capped"))
        .collect()?;

    // Steps 5 to 9, per enterprise: every enterprise with a record in the
    // prefix, whether or not any of it is active.
    let enterprises =
        records.filter(col("seq").lt(seq_lit(tree_size))).group_by([col("uscc")]).agg([col("idx").first()]);
    let totals = totals(rules, enterprises, &kind_sums, &active).collect()?;

    // Step 10: the explanation, one union of record and correction lines.
    let record_lines = active.clone().lazy().select([
        col("uscc"),
        col("kind"),
        col("points"),
        col("seq"),
        col("expires_at"),
        col("idx"),
        col("halved"),
        lit(Null {}).cast(DataType::String).alias("description"),
    ]);
    let correction = |frame: LazyFrame, kind: Expr, points: &str, description: Expr| {
        frame.select([
            col("uscc"),
            kind.alias("kind"),
            col(points).alias("points"),
            seq_lit(0).alias("seq"),
            lit(Null {}).cast(DataType::Int64).alias("expires_at"),
            lit(Null {}).cast(DataType::UInt64).alias("idx"),
            lit(Null {}).cast(DataType::Boolean).alias("halved"),
            description.alias("description"),
        ])
    };
    let cap_lines = correction(
        kind_sums.lazy().filter(col("cap_bit")).with_column((col("capped") - col("sum")).alias("correction")),
        col("cap_kind"),
        "correction",
        col("cap_description"),
    );
    let totals_lf = totals.clone().lazy();
    let bonus_lines = correction(
        totals_lf.clone().filter(col("bonus_correction").neq(lit(0i64))),
        lit("cap:bonus"),
        "bonus_correction",
        lit(format!("bonuses limited to {} points together", rules.bonus_cap)),
    );
    let clamp_lines = correction(
        totals_lf.filter(col("clamp_correction").neq(lit(0i64))),
        lit("clamp"),
        "clamp_correction",
        lit(format!("points kept within 0..={BASE_POINTS}")),
    );
    let reasons = concat([record_lines, cap_lines, bonus_lines, clamp_lines], UnionArgs::default())?
        .with_column(magnitude(col("points")).alias("magnitude"))
        .sort(
            ["uscc", "magnitude", "seq", "kind"],
            SortMultipleOptions::default().with_order_descending_multi([false, true, false, false]),
        )
        .collect()?;

    let pending = active
        .lazy()
        .filter(col("pending"))
        .select([col("uscc"), col("seq")])
        .sort(["uscc", "seq"], SortMultipleOptions::default())
        .collect()?;

    Ok(Frames { totals, reasons, pending })
}

/// Points, grade, code, veto and disputed per enterprise (steps 5 to 9),
/// with the bonus-cap and clamp corrections the explanation needs.
fn totals(rules: &Rules, enterprises: LazyFrame, kind_sums: &DataFrame, active: &DataFrame) -> LazyFrame {
    let bonus_cap = i64::from(rules.bonus_cap);
    let base = i64::from(BASE_POINTS);
    let sums = kind_sums.clone().lazy().group_by([col("uscc")]).agg([
        col("capped").filter(col("bonus").not()).sum().alias("deductions"),
        col("capped").filter(col("bonus")).sum().alias("bonuses"),
    ]);
    let flags = active
        .clone()
        .lazy()
        .group_by([col("uscc")])
        .agg([col("veto").any(true).alias("veto"), col("dispute_open").any(true).alias("disputed")]);
    let g = rules.grades;
    let grade = when(col("veto"))
        .then(lit(Grade::Poor.as_str()))
        .when(col("points").gt_eq(lit(g.integrity)))
        .then(lit(Grade::Integrity.as_str()))
        .when(col("points").gt_eq(lit(g.good)))
        .then(lit(Grade::Good.as_str()))
        .when(col("points").gt_eq(lit(g.warning)))
        .then(lit(Grade::Warning.as_str()))
        .otherwise(lit(Grade::Poor.as_str()));
    let code =
        when(col("grade").eq(lit(Grade::Integrity.as_str())).or(col("grade").eq(lit(Grade::Good.as_str()))))
            .then(lit(Code::Green.as_str()))
            .when(col("grade").eq(lit(Grade::Warning.as_str())))
            .then(lit(Code::Yellow.as_str()))
            .otherwise(lit(Code::Red.as_str()));
    let m = rules.mee_levels;
    let mee_level = when(col("grade").eq(lit(Grade::Integrity.as_str())))
        .then(lit(m[0].as_str()))
        .when(col("grade").eq(lit(Grade::Good.as_str())))
        .then(lit(m[1].as_str()))
        .when(col("grade").eq(lit(Grade::Warning.as_str())))
        .then(lit(m[2].as_str()))
        .otherwise(lit(m[3].as_str()));
    enterprises
        .left_join(sums, col("uscc"), col("uscc"))
        .left_join(flags, col("uscc"), col("uscc"))
        .with_columns([
            col("deductions").fill_null(lit(0i64)),
            col("bonuses").fill_null(lit(0i64)),
            col("veto").fill_null(lit(false)),
            col("disputed").fill_null(lit(false)),
        ])
        .with_column(
            when(col("bonuses").gt(lit(bonus_cap)))
                .then(lit(bonus_cap))
                .otherwise(col("bonuses"))
                .alias("bonus"),
        )
        .with_column((lit(base) + col("deductions") + col("bonus")).alias("total"))
        .with_column(
            when(col("total").lt(lit(0i64)))
                .then(lit(0i64))
                .when(col("total").gt(lit(base)))
                .then(lit(base))
                .otherwise(col("total"))
                .alias("points"),
        )
        .with_columns([
            (col("bonus") - col("bonuses")).alias("bonus_correction"),
            (col("points") - col("total")).alias("clamp_correction"),
        ])
        .with_column(grade.alias("grade"))
        .with_column(code.alias("code"))
        .with_column(mee_level.alias("mee_level"))
        .sort(["uscc"], SortMultipleOptions::default())
}

/// What the visible workflow steps have done to each scored record, one row
/// per record acted on (`target`): `voided`, `repaired`, `verified`,
/// `submitted`, and `dispute_open` (whether the latest dispute step, in
/// effect order `(occurred_at, seq)`, opened one).
fn workflow_effects(visible: LazyFrame, scored: LazyFrame) -> LazyFrame {
    let is = |w: WorkflowKind| col("kind").eq(lit(w.name()));
    let upheld = col("outcome").eq(lit("upheld")).fill_null(lit(false));
    let steps = visible
        .filter(col("refers_to").is_not_null())
        .with_columns([
            is(WorkflowKind::DisputeOpened).alias("opens"),
            is(WorkflowKind::DisputeResolved).alias("resolves"),
            is(WorkflowKind::RecordVoided).or(is(WorkflowKind::DisputeResolved).and(upheld)).alias("voids"),
            is(WorkflowKind::RepairGranted).alias("repairs"),
            is(WorkflowKind::RectificationVerified).alias("verifies"),
            is(WorkflowKind::RectificationSubmitted).alias("submits"),
        ])
        .filter(
            col("opens")
                .or(col("resolves"))
                .or(col("voids"))
                .or(col("repairs"))
                .or(col("verifies"))
                .or(col("submits")),
        )
        .select([
            col("refers_to").alias("target"),
            col("seq").alias("step_seq"),
            col("occurred_at").alias("step_at"),
            col("uscc").alias("step_uscc"),
            col("opens"),
            col("resolves"),
            col("voids"),
            col("repairs"),
            col("verifies"),
            col("submits"),
        ]);
    // A step acts only on a scored record of the same enterprise earlier in
    // the ledger; the append checks keep others out, and this ignores any
    // that got in. Repeats are idempotent: every effect is an `any`.
    let targets = scored.select([col("seq").alias("target_seq"), col("uscc").alias("target_uscc")]);
    let steps = steps
        .inner_join(targets, col("target"), col("target_seq"))
        .filter(col("step_uscc").eq(col("target_uscc")).and(col("step_seq").gt(col("target"))));
    let disputes =
        steps.clone().filter(col("opens").or(col("resolves"))).group_by([col("target")]).agg([col("opens")
            .sort_by([col("step_at"), col("step_seq")], SortMultipleOptions::default())
            .last()
            .alias("dispute_open")]);
    steps
        .group_by([col("target")])
        .agg([
            col("voids").any(true).alias("voided"),
            col("repairs").any(true).alias("repaired"),
            col("verifies").any(true).alias("verified"),
            col("submits").any(true).alias("submitted"),
        ])
        .left_join(disputes, col("target"), col("target"))
}

/// `occurred_at + window`, saturating at the end of the range like
/// `Timestamp::plus_days`.
fn expiry(occurred_at: Expr, window_ns: Expr) -> Expr {
    let latest_start = lit(i64::MAX) - window_ns.clone();
    // polars adds with wrap-around; the rows where that would happen take
    // the saturated value instead.
    when(occurred_at.clone().gt(latest_start)).then(lit(i64::MAX)).otherwise(occurred_at + window_ns)
}

/// A seq as a `UInt64` literal. Plain integer literals are untyped in
/// polars, limited to i64 without the `dtype-i128` feature, and a union
/// needs the exact type.
fn seq_lit(seq: u64) -> Expr {
    lit(Scalar::from(seq))
}

fn magnitude(points: Expr) -> Expr {
    when(points.clone().lt(lit(0i64))).then(lit(0i64) - points.clone()).otherwise(points)
}

/// Turns the frames into evaluations. Plain Rust: the rules are applied;
/// what remains is walking three frames sorted by USCC side by side.
fn assemble(
    model: &Model,
    records: &[LedgerRecord],
    frames: &Frames,
    at: Timestamp,
) -> PolarsResult<Vec<(Uscc, Evaluation)>> {
    let r = &frames.reasons;
    let mut reasons = r
        .column("uscc")?
        .str()?
        .iter()
        .zip(r.column("kind")?.str()?.iter())
        .zip(r.column("points")?.i64()?.iter())
        .zip(r.column("seq")?.u64()?.iter())
        .zip(r.column("expires_at")?.i64()?.iter())
        .zip(r.column("idx")?.u64()?.iter().zip(r.column("halved")?.bool()?.iter()))
        .zip(r.column("description")?.str()?.iter())
        .map(|((((((uscc, kind), points), seq), expires_at), (idx, halved)), text)| {
            let description = match idx {
                Some(idx) => describe(model, &records[idx as usize].record, halved == Some(true)),
                None => text.unwrap_or_default().to_owned(),
            };
            let reason = Reason {
                kind: kind.unwrap_or_default().to_owned(),
                points: narrow(points.unwrap_or_default()),
                seq: Seq(seq.unwrap_or_default()),
                description,
                expires_at: expires_at.map(Timestamp::from_unix_nanos),
            };
            (uscc, reason)
        })
        .peekable();
    let p = &frames.pending;
    let mut pending = p.column("uscc")?.str()?.iter().zip(p.column("seq")?.u64()?.iter()).peekable();

    let t = &frames.totals;
    let totals = t
        .column("uscc")?
        .str()?
        .iter()
        .zip(t.column("idx")?.u64()?.iter())
        .zip(t.column("points")?.i64()?.iter())
        .zip(t.column("grade")?.str()?.iter().zip(t.column("code")?.str()?.iter()))
        .zip(t.column("veto")?.bool()?.iter().zip(t.column("disputed")?.bool()?.iter()))
        .zip(t.column("mee_level")?.str()?.iter());
    let mut out = Vec::with_capacity(t.height());
    for (((((key, idx), points), (grade, code)), (veto, disputed)), mee_level) in totals {
        let uscc = idx
            .and_then(|i| records.get(i as usize))
            .map(|e| e.record.uscc.clone())
            .ok_or_else(|| polars_err!(ComputeError: "batch scoring lost the enterprise {key:?}"))?;
        // All three frames are sorted by USCC, so each enterprise's lines
        // are the next ones.
        let mut lines = Vec::new();
        while let Some((_, reason)) = reasons.next_if(|(k, _)| *k == key) {
            lines.push(reason);
        }
        let mut rectification_pending = Vec::new();
        while let Some((_, seq)) = pending.next_if(|(k, _)| *k == key) {
            rectification_pending.push(Seq(seq.unwrap_or_default()));
        }
        out.push((
            uscc,
            Evaluation {
                points: narrow(points.unwrap_or_default()),
                grade: parse_text(grade)?,
                code: parse_text(code)?,
                mee_level: parse_text(mee_level)?,
                veto: veto == Some(true),
                disputed: disputed == Some(true),
                reasons: lines.into(),
                rectification_pending,
                as_of: at,
                model_version: model.version().to_owned(),
            },
        ));
    }
    Ok(out)
}

/// Points are sums of model points (each within ±100) over one
/// enterprise's records, so they fit an `i32` for any real ledger.
fn narrow(points: i64) -> i32 {
    i32::try_from(points).unwrap_or(if points < 0 { i32::MIN } else { i32::MAX })
}

/// A grade, code or MEE level the query wrote as text, read back.
fn parse_text<T: std::str::FromStr<Err = ValidationError>>(text: Option<&str>) -> PolarsResult<T> {
    text.unwrap_or_default().parse().map_err(|e: ValidationError| polars_err!(ComputeError: "{e}"))
}

/// The reason text of a record line: the online scorer's wording, since
/// descriptions are presentation, not a scoring rule to re-implement.
fn describe(model: &Model, record: &Record, halved: bool) -> String {
    match model.inner.rule(&record.kind) {
        Some(rule) => crate::score::describe(rule, record, halved),
        None => record.kind.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn entry(seq: u64, uscc: &str, kind: &str, day: i64, refers_to: Option<u64>) -> LedgerRecord {
        LedgerRecord {
            seq: Seq(seq),
            record: Record {
                source: "beilun-epb".to_owned(),
                source_record_id: format!("R-{seq}"),
                uscc: Uscc::parse(uscc).unwrap(),
                kind: kind.to_owned(),
                occurred_at: Timestamp::from_unix_nanos(1_735_689_600 * 1_000_000_000 + day * NANOS_PER_DAY),
                amount_yuan: 0,
                refers_to: refers_to.map(Seq),
                description: String::new(),
                attributes: BTreeMap::new(),
            },
        }
    }

    #[test]
    fn export_has_one_row_per_enterprise_with_grade_and_code() {
        const A: &str = "91330421739237858X";
        const B: &str = "91110000600037341L";
        // Given in no particular order, as the ledger scan may deliver them.
        let ledger = vec![
            entry(4, A, "dispute.opened", 3, Some(1)),
            entry(1, A, "complaint.verified", 1, None),
            entry(2, B, "veto.crime", 1, None),
            entry(3, A, "enforcement.seal", 2, None),
        ];
        let model = Model::builtin();
        let at = Timestamp::from_unix_nanos(1_735_689_600 * 1_000_000_000 + 10 * NANOS_PER_DAY);
        let rows = score_all(&model, &ledger, at, 5).unwrap();
        let frame = evaluations_frame(&rows).unwrap();

        let names: Vec<&str> = frame.get_column_names().into_iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["uscc", "points", "grade", "code", "mee_level", "veto", "disputed"]);
        let dtypes: Vec<DataType> = frame.dtypes();
        assert_eq!(
            dtypes,
            [
                DataType::String,
                DataType::Int32,
                DataType::String,
                DataType::String,
                DataType::String,
                DataType::Boolean,
                DataType::Boolean
            ]
        );
        let text = |name: &str| -> Vec<Option<String>> {
            frame.column(name).unwrap().str().unwrap().iter().map(|s| s.map(str::to_owned)).collect()
        };
        // Sorted by USCC: B ("911...") before A ("913...").
        assert_eq!(text("uscc"), [Some(B.to_owned()), Some(A.to_owned())]);
        let points: Vec<Option<i32>> = frame.column("points").unwrap().i32().unwrap().iter().collect();
        assert_eq!(points, [Some(60), Some(74)]);
        assert_eq!(text("grade"), [Some("POOR".to_owned()), Some("WARNING".to_owned())]);
        assert_eq!(text("code"), [Some("RED".to_owned()), Some("YELLOW".to_owned())]);
        assert_eq!(text("mee_level"), [Some("RED".to_owned()), Some("YELLOW".to_owned())]);
        let flags = |name: &str| -> Vec<Option<bool>> {
            frame.column(name).unwrap().bool().unwrap().iter().collect()
        };
        assert_eq!(flags("veto"), [Some(true), Some(false)]);
        assert_eq!(flags("disputed"), [Some(false), Some(true)]);
    }
}
