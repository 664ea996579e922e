//! The gateway's own availability: an [`Outage`] is a stretch of time in
//! which the platform was not listening and healthy, so a device could not
//! have delivered its data. Days that overlap one are excused, never
//! counted against the enterprise.

use std::fmt;

use scoring::Timestamp;

use super::time::LocalDay;

/// The platform was down from `from` (its last sign of health) to `to`
/// (when it was listening again).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Outage {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Outage {
    /// Whether any part of local `day` falls inside the outage.
    pub fn overlaps(&self, day: LocalDay) -> bool {
        self.from <= day.end() && self.to > day.start()
    }
}

impl fmt::Display for Outage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "platform outage from {} to {}", self.from, self.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_overlaps_the_local_days_it_touches() {
        let day = |d| LocalDay::from_ymd(2026, 3, d).unwrap();
        // 23:00 on 14 March to 01:00 on 16 March, China time.
        let outage = Outage {
            from: day(15).start().plus_nanos(-3600 * scoring::NANOS_PER_SECOND),
            to: day(16).start().plus_nanos(3600 * scoring::NANOS_PER_SECOND),
        };
        let touched: Vec<u32> = (13..=17).filter(|&d| outage.overlaps(day(d))).collect();
        assert_eq!(touched, vec![14, 15, 16]);
        let ends_at_midnight = Outage { from: day(14).start(), to: day(15).start() };
        assert!(!ends_at_midnight.overlaps(day(15)));
    }
}
