//! `DailyAggregator`: turns accepted hourly and daily packets into
//! `exceedance.daily` and `monitoring.missing_day` records, one per device,
//! pollutant and closed China local day.
//!
//! Rules where the spec leaves a choice:
//! * Only `2061` (hourly) and `2031` (daily) data count; `2011` real-time and
//!   `2051` minute data are not kept, since the standard has devices send
//!   hourly and daily means for exactly this purpose.
//! * A value is valid when its flag is `N`, or when it has no flag at all
//!   (2005-era devices and some vendors send none); every other flag,
//!   including unknown ones, makes it invalid.
//! * The daily mean is a valid `2031` value if there is one, else the mean
//!   of that day's valid hourly values, provided there are at least the
//!   model's `min_valid_hours` of them (HJ 75-2017: 20). A day with some
//!   valid hours but fewer is a `monitoring.insufficient_day`, a data-quality
//!   event that is never judged for exceedance on its partial mean; a day
//!   with none is a `monitoring.missing_day`.
//! * The statistic is the limit's: `ZsAvg` limits use `-ZsAvg` values when
//!   the device sent any for that day, else fall back to `-Avg`; `Avg`
//!   limits always use `-Avg`, since a converted value is not comparable
//!   with a limit set on the measured one.
//! * Observations are keyed by (MN, day, pollutant, hour or day), so a
//!   re-sent packet overwrites rather than double counts; the last copy wins.
//! * Only pollutants with a registered limit are kept; limits are read again
//!   when a day is closed.
//! * Missing-day tracking for a device starts on the day after its
//!   registration, or on the first day it sent hourly or daily data for if
//!   that is earlier (moved back by earlier data until its first day is
//!   closed): a device that never connects still has missing days, so
//!   unplugging a logger is no way to escape monitoring. Data for a day already closed is late and ignored, as is data
//!   dated more than [`BACKFILL_DAYS`] before or more than one day after its
//!   receipt, so a device with a wrong clock cannot open or close years.
//! * A missing or insufficient day that overlaps a platform [`Outage`] (the
//!   gateway's own downtime, see [`DailyAggregator::note_start`]) is a
//!   `monitoring.excused_day` naming the outage instead: the platform's
//!   outages never cost an enterprise points. Exceedances are judged as
//!   usual, since their data did arrive.
//! * `occurred_at` is the last nanosecond of the local day: the judgement is
//!   known only once the day is over, yet belongs to that day.
//! * Closing is two-phase: [`DailyAggregator::close_days_before`] computes the
//!   records without changing anything, the caller appends them to the
//!   ledger, then [`DailyAggregator::commit`] forgets the days. A crash in
//!   between recomputes the same records with the same deterministic
//!   `source_record_id`s, which the idempotent ledger absorbs.

use std::collections::BTreeMap;
use std::path::Path;

use scoring::{MonitoringRules, Record, RecordFields, Timestamp};

use super::availability::Outage;
use super::packet::{DataFlag, Packet, Suffix, command};
use super::point::{MonitoringPoint, PollutantLimit, Statistic};
use super::store::{Cursor, Observation, Slot, StateStore};
use super::time::LocalDay;
use super::{Error, Result};

/// How far back a device may send data (e.g. after an outage) and still
/// have it count.
pub const BACKFILL_DAYS: i64 = 30;

pub const SOURCE: &str = "hj212";
pub const KIND_EXCEEDANCE: &str = "exceedance.daily";
pub const KIND_MISSING_DAY: &str = "monitoring.missing_day";
pub const KIND_INSUFFICIENT_DAY: &str = "monitoring.insufficient_day";
pub const KIND_EXCUSED_DAY: &str = "monitoring.excused_day";

/// What became of one accepted packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AcceptOutcome {
    /// Values of this many registered pollutants were stored.
    Stored(usize),
    /// Not hourly or daily data, or no registered pollutant in it.
    NotAggregated,
    /// The day is closed already.
    Late(LocalDay),
    /// No `DataTime`, or one too far from the time of receipt.
    OutOfWindow,
}

/// Records for days ready to close, and which days those are. Appending the
/// records and then passing this to [`DailyAggregator::commit`] closes them.
#[derive(Debug, Default)]
pub struct DayClosing {
    records: Vec<Record>,
    days: Vec<(String, Vec<LocalDay>)>,
    before: Option<LocalDay>,
}

impl DayClosing {
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// True when no day is ready to close.
    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }
}

/// Held while closing days; see [`DailyAggregator::claim_closing`].
#[derive(Debug)]
pub struct ClosingClaim(#[allow(dead_code)] Option<kv::pg::Claim>);

/// The daily judgement of HJ 212 data, persisted in a directory of its own.
pub struct DailyAggregator {
    store: StateStore,
}

impl DailyAggregator {
    /// Opens (or creates) the state kept in `dir`, e.g. `DATA/hj212`.
    pub fn open(dir: &Path) -> Result<DailyAggregator> {
        Ok(DailyAggregator { store: StateStore::open(dir)? })
    }

    /// The right to close days now (see `close_days_before`): `None` while
    /// another node sharing the state is closing; hold what is returned
    /// until the closed days are committed.
    pub fn claim_closing(&self) -> Result<Option<ClosingClaim>> {
        Ok(self.store.claim_closing()?.map(ClosingClaim))
    }

    /// The state in the shared PostgreSQL store at `url` (key space
    /// `hj212` of its `kv_state` table), so a device may report to any
    /// node and the open days are not lost with a node.
    pub fn open_shared(url: &str) -> Result<DailyAggregator> {
        Ok(DailyAggregator { store: StateStore::open_shared(url)? })
    }

    /// Records that the gateway starts listening at `now`. If its last sign
    /// of health is `min_outage` or more before, the time in between was a
    /// platform outage, which is kept (to be put in the ledger, see
    /// [`DailyAggregator::pending_outages`]) and returned.
    pub fn note_start(&mut self, now: Timestamp, min_outage: std::time::Duration) -> Result<Option<Outage>> {
        let min = i64::try_from(min_outage.as_nanos()).unwrap_or(i64::MAX);
        let outage = self
            .store
            .alive_at()?
            .filter(|alive| now.unix_nanos().saturating_sub(alive.unix_nanos()) >= min)
            .map(|alive| Outage { from: alive, to: now });
        if let Some(outage) = outage {
            self.store.put_outage(outage, false)?;
        }
        self.note_alive(now)?;
        Ok(outage)
    }

    /// Records that the gateway is listening and healthy at `now`.
    pub fn note_alive(&mut self, now: Timestamp) -> Result<()> {
        if self.store.alive_at()?.is_none_or(|alive| alive < now) {
            self.store.set_alive_at(now)?;
        }
        self.store.flush()
    }

    /// Outages not yet in the ledger, oldest first.
    pub fn pending_outages(&self) -> Result<Vec<Outage>> {
        Ok(self.store.outages()?.into_iter().filter(|(_, recorded)| !recorded).map(|(o, _)| o).collect())
    }

    /// Marks `outage` as in the ledger.
    pub fn outage_recorded(&mut self, outage: Outage) -> Result<()> {
        self.store.put_outage(outage, true)?;
        self.store.flush()
    }

    /// Keeps the hourly or daily values of `packet`, a well-formed packet
    /// from the device of `point`, received at `received_at`. Durable on return.
    pub fn accept(
        &mut self,
        point: &MonitoringPoint,
        packet: &Packet,
        received_at: Timestamp,
    ) -> Result<AcceptOutcome> {
        if packet.mn() != point.mn() {
            return Err(Error::WrongPoint { packet: packet.mn().to_owned(), point: point.mn().to_owned() });
        }
        if packet.cn() != command::HOURLY && packet.cn() != command::DAILY {
            return Ok(AcceptOutcome::NotAggregated);
        }
        let Some(data_time) = packet.data_time() else {
            return Ok(AcceptOutcome::OutOfWindow);
        };
        let slot = match packet.cn() {
            command::HOURLY => Slot::Hour(data_time.hour()),
            _ => Slot::Day,
        };
        let day = data_time.day();
        let received = LocalDay::containing(received_at);
        let earliest = received.plus_days(-BACKFILL_DAYS);
        let latest = received.next();
        if earliest.is_some_and(|d| day < d) || latest.is_some_and(|d| day > d) {
            return Ok(AcceptOutcome::OutOfWindow);
        }

        let observations: Vec<(&str, Slot, Observation)> = point
            .limits()
            .iter()
            .map(|limit| {
                let p = limit.pollutant();
                let observation = Observation {
                    avg: packet.value(p, &Suffix::Avg),
                    zs_avg: packet.value(p, &Suffix::ZsAvg),
                    flag: packet.data_flag(p).cloned(),
                };
                (p, slot, observation)
            })
            .filter(|(_, _, o)| o.avg.is_some() || o.zs_avg.is_some())
            .collect();
        if observations.is_empty() {
            return Ok(AcceptOutcome::NotAggregated);
        }

        let cursor = match self.store.cursor(point.mn())? {
            None => {
                let owed = point.owes_data_from().filter(|owed| *owed < day);
                Cursor { first_open: owed.unwrap_or(day), closed_any: false }
            }
            Some(c) if day >= c.first_open => c,
            Some(c) if c.closed_any => return Ok(AcceptOutcome::Late(day)),
            Some(c) => Cursor { first_open: day, ..c },
        };
        self.store.put(point.mn(), cursor, day, &observations)?;
        // The device is told "received" only after this returns, so the
        // value must survive a crash from here on.
        self.store.flush()?;
        Ok(AcceptOutcome::Stored(observations.len()))
    }

    /// The records of every open day before `before`, for every device seen
    /// or `registered` (a device that never sent anything owes data from the
    /// day after its registration), judged against the limits `points`
    /// returns now and the valid-day
    /// `rules` of the scoring model. Changes nothing; see
    /// [`DailyAggregator::commit`]. A device `points` no longer knows has its
    /// days closed without records.
    pub fn close_days_before(
        &self,
        before: LocalDay,
        points: impl Fn(&str) -> Option<MonitoringPoint>,
        registered: &[MonitoringPoint],
        rules: MonitoringRules,
    ) -> Result<DayClosing> {
        let mut closing = DayClosing { before: Some(before), ..DayClosing::default() };
        let outages: Vec<Outage> = self.store.outages()?.into_iter().map(|(o, _)| o).collect();
        let mut cursors = self.store.cursors()?;
        let silent: Vec<(String, Cursor)> = registered
            .iter()
            .filter(|p| !cursors.iter().any(|(mn, _)| mn == p.mn()))
            .filter_map(|p| {
                let first_open = p.owes_data_from()?;
                Some((p.mn().to_owned(), Cursor { first_open, closed_any: false }))
            })
            .collect();
        cursors.extend(silent);
        for (mn, cursor) in cursors {
            let point = points(&mn);
            let mut days = Vec::new();
            let mut day = cursor.first_open;
            while day < before {
                if let Some(point) = &point {
                    closing.records.extend(self.judge_day(point, day, rules, &outages)?);
                }
                days.push(day);
                match day.next() {
                    Some(next) => day = next,
                    None => break,
                }
            }
            if !days.is_empty() {
                closing.days.push((mn, days));
            }
        }
        Ok(closing)
    }

    /// Closes the days of `closing` once its records are in the ledger: their
    /// values are forgotten and later data for them is late.
    pub fn commit(&mut self, closing: DayClosing) -> Result<()> {
        let Some(before) = closing.before else { return Ok(()) };
        for (mn, days) in &closing.days {
            self.store.close(mn, days, before)?;
        }
        self.store.flush()
    }

    fn judge_day(
        &self,
        point: &MonitoringPoint,
        day: LocalDay,
        rules: MonitoringRules,
        outages: &[Outage],
    ) -> Result<Vec<Record>> {
        let observations = self.store.day(point.mn(), day)?;
        let outage = outages.iter().find(|o| o.overlaps(day));
        let mut records = Vec::new();
        for limit in point.limits() {
            let mine: Vec<(Slot, &Observation)> = observations
                .iter()
                .filter(|(p, _, _)| p == limit.pollutant())
                .map(|(_, slot, o)| (*slot, o))
                .collect();
            let required = rules.min_valid_hours(limit.pollutant());
            let record = match daily_mean(limit, &mine, required) {
                DailyMean::Valid { mean, statistic } if mean > limit.limit() => {
                    Some(exceedance(point, limit, day, mean, statistic)?)
                }
                DailyMean::Valid { .. } => None,
                DailyMean::Insufficient { .. } | DailyMean::Missing if outage.is_some() => {
                    outage.map(|o| excused_day(point, limit, day, o)).transpose()?
                }
                DailyMean::Insufficient { valid_hours } => {
                    Some(insufficient_day(point, limit, day, valid_hours, required)?)
                }
                DailyMean::Missing => Some(missing_day(point, limit, day)?),
            };
            records.extend(record);
        }
        Ok(records)
    }
}

/// What a day's values of one pollutant amount to.
#[derive(Clone, Copy, PartialEq, Debug)]
enum DailyMean {
    Valid {
        mean: f64,
        statistic: Statistic,
    },
    /// Some valid hours, fewer than the model requires.
    Insufficient {
        valid_hours: usize,
    },
    /// No valid value at all.
    Missing,
}

/// The valid daily mean of one pollutant, if the day has one: a valid daily
/// (`2031`) value, else the mean of at least `required` valid hours.
fn daily_mean(limit: &PollutantLimit, observations: &[(Slot, &Observation)], required: u32) -> DailyMean {
    let statistic = match limit.statistic() {
        Statistic::ZsAvg if observations.iter().any(|(_, o)| o.zs_avg.is_some()) => Statistic::ZsAvg,
        _ => Statistic::Avg,
    };
    let valid = |o: &Observation| {
        let flag_ok = o.flag.as_ref().is_none_or(DataFlag::is_valid);
        let value = match statistic {
            Statistic::Avg => o.avg,
            Statistic::ZsAvg => o.zs_avg,
        };
        value.filter(|_| flag_ok)
    };
    if let Some(mean) = observations.iter().find(|(slot, _)| *slot == Slot::Day).and_then(|(_, o)| valid(o)) {
        return DailyMean::Valid { mean, statistic };
    }
    let hourly: Vec<f64> = observations
        .iter()
        .filter(|(slot, _)| matches!(slot, Slot::Hour(_)))
        .filter_map(|(_, o)| valid(o))
        .collect();
    match hourly.len() {
        0 => DailyMean::Missing,
        n if n < required as usize => DailyMean::Insufficient { valid_hours: n },
        n => DailyMean::Valid { mean: hourly.iter().sum::<f64>() / n as f64, statistic },
    }
}

/// A number as people read it: at most 4 decimals, no float noise.
fn shown(v: f64) -> String {
    let rounded = (v * 1e4).round() / 1e4;
    if rounded.is_finite() { rounded.to_string() } else { v.to_string() }
}

fn record_id(point: &MonitoringPoint, limit: &PollutantLimit, day: LocalDay, what: &str) -> String {
    format!("{SOURCE}:{}:{}:{}:{what}", point.mn(), limit.pollutant(), day.compact())
}

fn exceedance(
    point: &MonitoringPoint,
    limit: &PollutantLimit,
    day: LocalDay,
    mean: f64,
    statistic: Statistic,
) -> Result<Record> {
    let extra = [
        ("value", shown(mean)),
        ("limit", shown(limit.limit())),
        ("unit", limit.unit().to_owned()),
        ("statistic", statistic.to_string()),
    ];
    let description = format!(
        "outlet {} (MN {}): daily mean {}-{statistic} {} {unit} above the limit {} {unit} on {day}",
        point.outlet(),
        point.mn(),
        limit.pollutant(),
        shown(mean),
        shown(limit.limit()),
        unit = limit.unit(),
    );
    day_record(point, limit, day, KIND_EXCEEDANCE, "exceedance", &description, extra)
}

fn missing_day(point: &MonitoringPoint, limit: &PollutantLimit, day: LocalDay) -> Result<Record> {
    let description = format!(
        "outlet {} (MN {}): no valid {} data on {day}",
        point.outlet(),
        point.mn(),
        limit.pollutant()
    );
    day_record(point, limit, day, KIND_MISSING_DAY, "missing_day", &description, [])
}

fn insufficient_day(
    point: &MonitoringPoint,
    limit: &PollutantLimit,
    day: LocalDay,
    valid_hours: usize,
    required: u32,
) -> Result<Record> {
    let extra = [("valid_hours", valid_hours.to_string()), ("required_hours", required.to_string())];
    let description = format!(
        "outlet {} (MN {}): only {valid_hours} valid hours of {} data on {day}, {required} needed for a daily mean",
        point.outlet(),
        point.mn(),
        limit.pollutant()
    );
    day_record(point, limit, day, KIND_INSUFFICIENT_DAY, "insufficient_day", &description, extra)
}

fn excused_day(
    point: &MonitoringPoint,
    limit: &PollutantLimit,
    day: LocalDay,
    outage: &Outage,
) -> Result<Record> {
    let extra = [("outage_from", outage.from.to_string()), ("outage_to", outage.to.to_string())];
    let description = format!(
        "outlet {} (MN {}): {} data of {day} not complete, excused: {outage}",
        point.outlet(),
        point.mn(),
        limit.pollutant()
    );
    day_record(point, limit, day, KIND_EXCUSED_DAY, "excused_day", &description, extra)
}

/// The record of one judged day of one pollutant: attributes `pollutant`,
/// `outlet`, `mn` and `day`, plus `extra`; its id ends in `what`.
fn day_record<const N: usize>(
    point: &MonitoringPoint,
    limit: &PollutantLimit,
    day: LocalDay,
    kind: &str,
    what: &str,
    description: &str,
    extra: [(&str, String); N],
) -> Result<Record> {
    let mut attributes = BTreeMap::from([
        ("pollutant".to_owned(), limit.pollutant().to_owned()),
        ("outlet".to_owned(), point.outlet().to_owned()),
        ("mn".to_owned(), point.mn().to_owned()),
        ("day".to_owned(), day.to_string()),
    ]);
    attributes.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
    record(point, &record_id(point, limit, day, what), kind, day, description, attributes)
}

fn record(
    point: &MonitoringPoint,
    source_record_id: &str,
    kind: &str,
    day: LocalDay,
    description: &str,
    attributes: BTreeMap<String, String>,
) -> Result<Record> {
    Ok(Record::new(RecordFields {
        source: SOURCE,
        source_record_id,
        uscc: point.uscc().as_str(),
        kind,
        occurred_at: Some(day.end()),
        amount_yuan: 0,
        refers_to: None,
        description,
        attributes,
    })?)
}

#[cfg(test)]
mod tests;
