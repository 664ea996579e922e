//! The history of an enterprise's points, grade and colour over a period,
//! computed in one sweep over its records.
//!
//! [`Model::score`] costs O(n) per instant, so evaluating at each of an
//! enterprise's change points costs O(n·c): for a device that was offline
//! for two years (20 000 records, 32 000 change points) that is 640 million
//! steps. A history drawn on a page needs only the points, the grade and the
//! colour at each instant, and each record's contribution to them is a
//! step function of time with at most four steps (it starts, it is halved by
//! a verified rectification, it is voided or repaired, it expires). The
//! sweep applies those steps in time order and re-sums the per-kind totals
//! at each instant: O((n + c) log n + c·kinds). What it answers at every
//! instant is exactly what `score` answers there (a property test holds
//! the two together).

use crate::model::{Rules, WorkflowKind};
use crate::score::{BASE_POINTS, halve};
use crate::{Code, Grade, LedgerRecord, Model, NANOS_PER_DAY, Timestamp};

/// Points, grade and colour from an instant on, until the next step.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Step {
    pub at: Timestamp,
    pub points: i32,
    pub grade: Grade,
    pub code: Code,
}

/// One scored record's contribution over time: `points` (or its halved
/// value from `halved_from`) on `[start, end)`, ended early at `killed`
/// (voided or repaired).
struct Contribution {
    kind: usize,
    points: i32,
    halved_points: i32,
    veto: bool,
    start: Timestamp,
    end: Timestamp,
    killed: Option<Timestamp>,
    halved_from: Option<Timestamp>,
}

impl Contribution {
    /// `(points, vetoes)` at `t`: what [`Model::score`] counts for the record.
    fn at(&self, t: Timestamp) -> (i32, bool) {
        let active = self.start <= t && t < self.end && self.killed.is_none_or(|k| t < k);
        if !active {
            return (0, false);
        }
        let halved = self.halved_from.is_some_and(|v| v <= t);
        (if halved { self.halved_points } else { self.points }, self.veto)
    }
}

impl Model {
    /// The points, grade and code at `from`, then at every instant in
    /// `(from, to]` where one of them changes, over the entries below
    /// `tree_size`: what [`Model::score`] says at each of those instants,
    /// without evaluating at each change point.
    pub fn timeline(
        &self,
        entries: &[LedgerRecord],
        from: Timestamp,
        to: Timestamp,
        tree_size: u64,
    ) -> Vec<Step> {
        let rules = &*self.inner;
        let contributions = contributions(rules, entries, tree_size);
        // Every instant a contribution can change, with the records it touches.
        let mut events: Vec<(Timestamp, usize)> = Vec::with_capacity(contributions.len() * 3);
        for (i, c) in contributions.iter().enumerate() {
            events.push((c.start, i));
            events.push((c.end, i));
            events.extend(c.killed.map(|t| (t, i)));
            events.extend(c.halved_from.map(|t| (t, i)));
        }
        events.sort_unstable();

        let mut sums = vec![0i64; rules.kinds.len()];
        let mut vetoes = 0usize;
        let mut now: Vec<(i32, bool)> = vec![(0, false); contributions.len()];
        let mut apply = |i: usize, t: Timestamp, sums: &mut Vec<i64>, vetoes: &mut usize| {
            let (points, veto) = contributions[i].at(t);
            let (old_points, old_veto) = std::mem::replace(&mut now[i], (points, veto));
            sums[contributions[i].kind] += i64::from(points) - i64::from(old_points);
            *vetoes = *vetoes + usize::from(veto) - usize::from(old_veto);
        };

        let mut next = 0;
        // The state at `from`: every step up to and including it.
        while next < events.len() && events[next].0 <= from {
            let (_, i) = events[next];
            apply(i, from, &mut sums, &mut vetoes);
            next += 1;
        }
        let step = |at: Timestamp, sums: &[i64], vetoes: usize| {
            let points = points_of(rules, sums);
            let grade = self.grade(points, vetoes > 0);
            Step { at, points, grade, code: grade.code() }
        };
        let mut out = vec![step(from, &sums, vetoes)];
        while next < events.len() && events[next].0 <= to {
            let t = events[next].0;
            while next < events.len() && events[next].0 == t {
                apply(events[next].1, t, &mut sums, &mut vetoes);
                next += 1;
            }
            let here = step(t, &sums, vetoes);
            let last = out[out.len() - 1];
            if (here.points, here.grade, here.code) != (last.points, last.grade, last.code) {
                out.push(here);
            }
        }
        out
    }
}

/// The contribution of each scored record below `tree_size`, with the
/// workflow steps below `tree_size` that change it, under the rules of
/// `score` (a step counts only if it names an earlier scored record of the
/// same enterprise).
fn contributions(rules: &Rules, entries: &[LedgerRecord], tree_size: u64) -> Vec<Contribution> {
    // (seq, contribution, entry) of each scored record, to find a step's target.
    let mut by_seq: Vec<(u64, usize, usize)> = Vec::with_capacity(entries.len());
    let mut out = Vec::new();
    for (at, e) in entries.iter().enumerate().filter(|(_, e)| e.seq.0 < tree_size) {
        let Some(&kind) = rules.index.get(e.record.kind.as_str()) else { continue };
        let rule = &rules.kinds[kind];
        let tier = rule.tier(e.record.amount_yuan);
        let halvable = !rule.veto && !rule.bonus;
        by_seq.push((e.seq.0, out.len(), at));
        out.push(Contribution {
            kind,
            points: tier.points,
            halved_points: if halvable { halve(tier.points) } else { tier.points },
            veto: rule.veto,
            start: e.record.occurred_at,
            end: e.record.occurred_at.plus_days(tier.window_days),
            killed: None,
            halved_from: None,
        });
    }
    by_seq.sort_unstable();
    for step in entries.iter().filter(|e| e.seq.0 < tree_size) {
        let Some(kind) = WorkflowKind::from_name(&step.record.kind) else { continue };
        let Some(target) = step.record.refers_to else { continue };
        let Ok(pos) = by_seq.binary_search_by_key(&target.0, |&(seq, _, _)| seq) else { continue };
        let (_, i, at) = by_seq[pos];
        if target >= step.seq || entries[at].record.uscc != step.record.uscc {
            continue;
        }
        let when = step.record.occurred_at;
        let earliest = |slot: &mut Option<Timestamp>| *slot = Some(slot.map_or(when, |t| t.min(when)));
        let c = &mut out[i];
        match kind {
            WorkflowKind::DisputeResolved
                if step.record.attributes.get("outcome").is_some_and(|o| o == "upheld") =>
            {
                earliest(&mut c.killed)
            }
            WorkflowKind::RecordVoided | WorkflowKind::RepairGranted => earliest(&mut c.killed),
            WorkflowKind::RectificationVerified => earliest(&mut c.halved_from),
            _ => {}
        }
    }
    out
}

/// The points of an evaluation whose active points per kind are `sums`:
/// each kind's cap, the bonus cap, then the clamp, as `score` applies them.
fn points_of(rules: &Rules, sums: &[i64]) -> i32 {
    let mut total = i64::from(BASE_POINTS);
    let mut bonus = 0i64;
    for (rule, &sum) in rules.kinds.iter().zip(sums) {
        let capped = match rule.cap.map(i64::from) {
            Some(cap) if (rule.bonus && sum > cap) || (!rule.bonus && sum < cap) => cap,
            _ => sum,
        };
        if rule.bonus {
            bonus += capped;
        } else {
            total += capped;
        }
    }
    total += bonus.min(i64::from(rules.bonus_cap));
    // The clamp keeps the total in 0..=100.
    total.clamp(0, i64::from(BASE_POINTS)) as i32
}

/// A timeline reduced to what a chart of it needs, at most `max` steps:
/// per day (counted from the first step) the steps with the fewest and the
/// most points and the day's last, and every change of colour, each exact
/// (its instant and values are the timeline's). The first step is kept.
/// Should the colour changes alone exceed `max`, the most recent are kept:
/// the second value is then false.
pub fn summarize(timeline: &[Step], max: usize) -> (Vec<Step>, bool) {
    let Some(first) = timeline.first() else { return (Vec::new(), true) };
    let day = |s: &Step| (s.at.unix_nanos() - first.at.unix_nanos()).div_euclid(NANOS_PER_DAY);
    let mut keep = vec![false; timeline.len()];
    keep[0] = true;
    let mut colour_changes = Vec::new();
    let mut start = 0;
    while start < timeline.len() {
        let mut end = start;
        while end < timeline.len() && day(&timeline[end]) == day(&timeline[start]) {
            end += 1;
        }
        let bucket = start..end;
        let lowest = bucket.clone().min_by_key(|&i| (timeline[i].points, i));
        let highest = bucket.clone().max_by_key(|&i| (timeline[i].points, std::cmp::Reverse(i)));
        for i in [lowest, highest, Some(end - 1)].into_iter().flatten() {
            keep[i] = true;
        }
        for i in bucket {
            if i > 0 && timeline[i].code != timeline[i - 1].code {
                keep[i] = true;
                colour_changes.push(i);
            }
        }
        start = end;
    }
    let kept: Vec<Step> = timeline.iter().zip(&keep).filter(|(_, k)| **k).map(|(s, _)| *s).collect();
    if kept.len() <= max {
        return (kept, true);
    }
    // Too many days with movement: the colour changes and the last step.
    let mut essential = vec![0];
    essential.extend(&colour_changes);
    essential.push(timeline.len() - 1);
    essential.dedup();
    let complete = essential.len() <= max;
    let from = essential.len().saturating_sub(max);
    (essential[from..].iter().map(|&i| timeline[i]).collect(), complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(day: f64, points: i32, code: Code) -> Step {
        let grade = match code {
            Code::Green => Grade::Good,
            Code::Yellow => Grade::Warning,
            Code::Red => Grade::Poor,
        };
        let at = Timestamp::from_unix_nanos((day * NANOS_PER_DAY as f64) as i64);
        Step { at, points, grade, code }
    }

    #[test]
    fn a_summary_keeps_each_days_extremes_and_every_colour_change() {
        let mut timeline = vec![step(0.0, 90, Code::Green)];
        // Day 1: down and up many times, yellow once in between.
        for i in 0..40 {
            let points = 85 - (i % 7);
            timeline.push(step(1.0 + f64::from(i) / 100.0, points, Code::Green));
        }
        timeline.push(step(1.5, 70, Code::Yellow));
        timeline.push(step(1.6, 84, Code::Green));
        timeline.push(step(1.7, 83, Code::Green));
        let (summary, complete) = summarize(&timeline, 100);
        assert!(complete);
        assert_eq!(summary[0], timeline[0]);
        let day1: Vec<i32> = summary.iter().skip(1).map(|s| s.points).collect();
        // Lowest (70, also a change to yellow), highest (85), the change back, the last.
        assert_eq!(day1, vec![85, 70, 84, 83]);
        let (tight, complete) = summarize(&timeline, 3);
        assert!(!complete);
        assert_eq!(tight.iter().map(|s| s.points).collect::<Vec<_>>(), vec![70, 84, 83]);
        assert_eq!(summarize(&[], 3), (Vec::new(), true));
    }
}
