//! Closing days: judging every day that is over and handing its records to
//! the sink, periodically and only once the sink has them.

use std::sync::Arc;

use scoring::Timestamp;
use tokio::sync::watch;
use tracing::{error, warn};

use super::{RecordSink, Shared, SinkError, bump, lock};
use crate::time::LocalDay;
use crate::{Error, Result};

impl<S: RecordSink> Shared<S> {
    /// Judges every day that is over (plus the grace period) and appends
    /// its records; the days are closed only once the sink has them.
    async fn close_due_days(self: &Arc<Self>) -> Result<()> {
        // On a shared state, one node's gateway closes at a time; the
        // others try again at their next tick.
        let Some(_claim) = lock(&self.aggregator).claim_closing()? else {
            return Ok(());
        };
        let now = (self.config.clock)();
        // Outages go into the ledger before any day they excuse is closed.
        let pending = lock(&self.aggregator).pending_outages()?;
        for outage in pending {
            if let Err(e) = self.sink.record_outage(outage).await {
                bump(&self.stats.append_failures, 1);
                warn!(error = %e, %outage, "hj212 outage not recorded, retrying at the next close");
                return Ok(());
            }
            lock(&self.aggregator).outage_recorded(outage)?;
        }
        self.close_days_due_at(now).await?;
        let aggregator = self.aggregator.clone();
        tokio::task::spawn_blocking(move || lock(&aggregator).note_alive(now))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }

    async fn close_days_due_at(self: &Arc<Self>, now: Timestamp) -> Result<()> {
        let grace = i64::try_from(self.config.close_grace.as_nanos()).unwrap_or(i64::MAX);
        let before = LocalDay::containing(now.plus_nanos(-grace));
        let shared = self.clone();
        let closing = tokio::task::spawn_blocking(move || {
            let registered = shared.sink.monitoring_points();
            lock(&shared.aggregator).close_days_before(
                before,
                |mn| shared.sink.monitoring_point(mn),
                &registered,
                shared.config.valid_days,
            )
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
        if closing.is_empty() {
            return Ok(());
        }
        let records = closing.records().to_vec();
        let count = records.len() as u64;
        if !records.is_empty() {
            match self.sink.append(records).await {
                Ok(()) => bump(&self.stats.records_emitted, count),
                Err(e @ SinkError::Transient(_)) => {
                    bump(&self.stats.append_failures, 1);
                    warn!(error = %e, "hj212 records not appended, retrying at the next close");
                    return Ok(());
                }
                Err(e @ SinkError::Rejected { count: refused, .. }) => {
                    bump(&self.stats.records_refused, refused as u64);
                    bump(&self.stats.records_emitted, count.saturating_sub(refused as u64));
                    warn!(error = %e, "hj212 records refused by the ledger path; closing the days anyway");
                }
            }
        }
        let aggregator = self.aggregator.clone();
        tokio::task::spawn_blocking(move || lock(&aggregator).commit(closing))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }
}

pub(super) async fn close_days_periodically<S: RecordSink>(
    shared: Arc<Shared<S>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(shared.config.close_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = ticks.tick() => {}
        }
        if let Err(e) = shared.close_due_days().await {
            error!(error = %e, "hj212 closing days failed");
        }
    }
}
