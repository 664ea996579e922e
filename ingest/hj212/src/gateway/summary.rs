//! The periodic summary line of rejections and deviations.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;
use tracing::warn;

use super::{MAX_ALERTS_PER_INTERVAL, RecordSink, Shared};
use crate::figures::DeviceFigures;

/// How many devices a summary line names by example.
pub(super) const SUMMARY_SAMPLES: usize = 5;

/// Logs one line per interval with the rejections and deviations seen since
/// the last one, summed over every device, and a few devices as examples,
/// so a flood of bad packets or invented MNs costs one line per interval.
/// (`ecocode gateway` has the figures of each device.)
pub(super) async fn summarize_periodically<S: RecordSink>(
    shared: Arc<Shared<S>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(shared.config.summary_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = BTreeMap::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = ticks.tick() => {}
        }
        let suppressed = shared.alerts.swap(0, Ordering::Relaxed).saturating_sub(MAX_ALERTS_PER_INTERVAL);
        let now = shared.stats.devices();
        if let Some(summary) = summarize(&last, &now) {
            warn!(
                devices = summary.devices,
                problems = ?summary.totals,
                examples = ?summary.examples,
                alerts_not_logged = suppressed,
                "hj212 problems since the last summary"
            );
        }
        last = now;
    }
}

/// What the summary line says.
#[derive(Debug, PartialEq)]
pub(super) struct Summary {
    /// Devices (or peers) with new problems.
    pub(super) devices: usize,
    /// New problems by kind, over every device.
    pub(super) totals: BTreeMap<String, u64>,
    /// A few devices with their new problems; printed with `Debug`, so
    /// whatever bytes an MN holds are escaped.
    pub(super) examples: Vec<(String, BTreeMap<String, u64>)>,
}

pub(super) fn summarize(
    last: &BTreeMap<String, DeviceFigures>,
    now: &BTreeMap<String, DeviceFigures>,
) -> Option<Summary> {
    let mut summary = Summary { devices: 0, totals: BTreeMap::new(), examples: Vec::new() };
    for (device, figures) in now {
        let problems = figures.problems_since(last.get(device));
        if problems.is_empty() {
            continue;
        }
        summary.devices += 1;
        for (kind, n) in &problems {
            *summary.totals.entry(kind.clone()).or_default() += n;
        }
        if summary.examples.len() < SUMMARY_SAMPLES {
            summary.examples.push((device.clone(), problems));
        }
    }
    (summary.devices > 0).then_some(summary)
}
