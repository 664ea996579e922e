//! China local time as HJ 212 devices report it: `DataTime`, `QN` and the
//! local day that daily judgements are made for.

use std::fmt;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use scoring::{NANOS_PER_SECOND, Timestamp};

/// China has kept UTC+8 all year since 1991, so a fixed offset is exact for
/// every date a device can plausibly report.
const CHINA_OFFSET_SECONDS: i64 = 8 * 3600;

/// A `DataTime` (or `QN`) value: a wall-clock time in China local time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct DataTime(NaiveDateTime);

impl DataTime {
    /// Parses `YYYYMMDDhhmmss` or, as some devices send, `YYYYMMDDhhmmsszzz`.
    pub fn parse(text: &str) -> Option<DataTime> {
        let b = text.as_bytes();
        if !(b.len() == 14 || b.len() == 17) || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let num = |range: std::ops::Range<usize>| -> u32 {
            b[range].iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'))
        };
        let millis = if b.len() == 17 { num(14..17) } else { 0 };
        NaiveDate::from_ymd_opt(num(0..4) as i32, num(4..6), num(6..8))?
            .and_hms_milli_opt(num(8..10), num(10..12), num(12..14), millis)
            .map(DataTime)
    }

    pub fn day(self) -> LocalDay {
        LocalDay(self.0.date())
    }

    pub fn hour(self) -> u32 {
        self.0.hour()
    }

    /// The absolute instant, or `None` outside `Timestamp`'s range (1677..2262).
    pub fn instant(self) -> Option<Timestamp> {
        let seconds = self.0.and_utc().timestamp() - CHINA_OFFSET_SECONDS;
        let nanos = self.0.and_utc().timestamp_subsec_nanos() as i32;
        Timestamp::from_unix(seconds, nanos)
    }
}

impl fmt::Display for DataTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+08:00", self.0.format("%Y-%m-%dT%H:%M:%S%.3f"))
    }
}

/// A calendar day in China local time, the unit of daily judgements.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct LocalDay(NaiveDate);

impl LocalDay {
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<LocalDay> {
        NaiveDate::from_ymd_opt(year, month, day).map(LocalDay)
    }

    /// The local day that contains the instant `t`.
    pub fn containing(t: Timestamp) -> LocalDay {
        let local_seconds = t.unix_nanos().div_euclid(NANOS_PER_SECOND) + CHINA_OFFSET_SECONDS;
        let days = local_seconds.div_euclid(86_400);
        // Every i64 nanosecond instant lies well inside chrono's date range,
        // so the fallback is never taken.
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        LocalDay(chrono::TimeDelta::try_days(days).and_then(|d| epoch.checked_add_signed(d)).unwrap_or(epoch))
    }

    /// 00:00 local time, saturating at the ends of `Timestamp`'s range.
    pub fn start(self) -> Timestamp {
        let seconds =
            self.0.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp() - CHINA_OFFSET_SECONDS;
        Timestamp::from_unix(seconds, 0).unwrap_or(if seconds < 0 {
            Timestamp::from_unix_nanos(i64::MIN)
        } else {
            Timestamp::from_unix_nanos(i64::MAX)
        })
    }

    /// The last nanosecond of the day: a daily judgement is known only once
    /// the day is over, yet belongs to that day.
    pub fn end(self) -> Timestamp {
        self.start().plus_days(1).plus_nanos(-1)
    }

    pub fn next(self) -> Option<LocalDay> {
        self.0.succ_opt().map(LocalDay)
    }

    pub fn plus_days(self, days: i64) -> Option<LocalDay> {
        self.0.checked_add_signed(chrono::TimeDelta::try_days(days)?).map(LocalDay)
    }

    /// `YYYYMMDD`, as used in record ids and storage keys.
    pub fn compact(self) -> String {
        format!("{:04}{:02}{:02}", self.0.year(), self.0.month(), self.0.day())
    }

    pub fn parse_compact(text: &str) -> Option<LocalDay> {
        DataTime::parse(&format!("{text}000000")).map(DataTime::day)
    }
}

impl fmt::Display for LocalDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.0.year(), self.0.month(), self.0.day())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_time_accepts_seconds_and_milliseconds() {
        let t = DataTime::parse("20160824003817").unwrap();
        assert_eq!(t.day(), LocalDay::from_ymd(2016, 8, 24).unwrap());
        assert_eq!(t.hour(), 0);
        assert_eq!(
            DataTime::parse("20160824003817123").unwrap().to_string(),
            "2016-08-24T00:38:17.123+08:00"
        );
        for bad in ["2016082400381", "20161324003817", "2016082400381x", "201608240038171", "+0160824003817"]
        {
            assert_eq!(DataTime::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn local_day_is_utc_plus_8() {
        let day = LocalDay::from_ymd(2026, 3, 15).unwrap();
        assert_eq!(day.start().to_string(), "2026-03-14T16:00:00Z");
        assert_eq!(day.end().to_string(), "2026-03-15T15:59:59.999999999Z");
        assert_eq!(LocalDay::containing(day.start()), day);
        assert_eq!(LocalDay::containing(day.end()), day);
        assert_eq!(
            LocalDay::containing(day.start().plus_nanos(-1)),
            LocalDay::from_ymd(2026, 3, 14).unwrap()
        );
        assert_eq!(day.compact(), "20260315");
        assert_eq!(LocalDay::parse_compact("20260315"), Some(day));
        assert_eq!(DataTime::parse("20260315000000").unwrap().instant(), Some(day.start()));
    }
}
