//! The aggregation state on disk: hourly and daily observations of the days
//! still open, and per device the first day not yet closed. sled stays in
//! this file; nothing outside sees its types.
//!
//! Keys (`\0` separates parts, since an MN may hold any printable byte):
//! * `c\0<MN>` -> `YYYYMMDD` of the first open day, then `1` if any day of
//!   this device was ever closed, else `0`;
//! * `v\0<MN>\0<YYYYMMDD>\0<pollutant>\0<slot>` -> `avg|zs_avg|flag`, with
//!   slot `00`..`23` for an hour or `D` for the day, and empty text for an
//!   absent part.
//!
//! * `a` -> the last instant (Unix nanoseconds) the gateway was known
//!   listening and healthy;
//! * `o\0<from>` -> `<to>|<0 or 1>` for each platform outage, instants in
//!   Unix nanoseconds (`from` zero-padded to 20 digits so keys sort by
//!   time), `1` once the outage is in the ledger.
//!
//! Text values keep the database readable with any sled dump tool; f64's
//! `Display` round-trips exactly.

use std::path::Path;

use scoring::Timestamp;

use super::availability::Outage;
use super::packet::DataFlag;
use super::time::LocalDay;
use super::{Error, Result};

/// Which value of a day an observation is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Slot {
    Hour(u32),
    Day,
}

/// What a device reported for one pollutant in one slot.
#[derive(Clone, PartialEq, Debug, Default)]
pub(crate) struct Observation {
    pub avg: Option<f64>,
    pub zs_avg: Option<f64>,
    pub flag: Option<DataFlag>,
}

/// Where a device's open days start.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Cursor {
    pub first_open: LocalDay,
    /// Once a day has been closed, data for earlier days is late; before
    /// that, earlier data just moves `first_open` back.
    pub closed_any: bool,
}

pub(crate) struct StateStore {
    db: Backend,
}

/// sled in a directory (the default), or a key space of the shared
/// PostgreSQL store: the same keys and values either way.
enum Backend {
    /// Dropping it releases the directory's lock before the drop returns.
    Local(kv::Db),
    Shared(Box<kv::pg::Table>),
}

fn shared(e: kv::pg::Failure) -> Error {
    Error::SharedStore(format!("PostgreSQL: {e}"))
}

/// A write of several keys, applied atomically by either backend.
#[derive(Default)]
struct Writes {
    puts: Vec<(Vec<u8>, Vec<u8>)>,
    removes: Vec<Vec<u8>>,
}

impl Backend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self {
            Backend::Local(db) => Ok(db.get(key)?.map(|v| v.to_vec())),
            Backend::Shared(table) => table.get(key).map_err(shared),
        }
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match self {
            Backend::Local(db) => {
                let mut out = Vec::new();
                for item in db.scan_prefix(prefix) {
                    let (k, v) = item?;
                    out.push((k.to_vec(), v.to_vec()));
                }
                Ok(out)
            }
            Backend::Shared(table) => table.scan_prefix(prefix).map_err(shared),
        }
    }

    fn apply(&self, writes: Writes) -> Result<()> {
        match self {
            Backend::Local(db) => {
                let mut batch = sled::Batch::default();
                for key in writes.removes {
                    batch.remove(key);
                }
                for (key, value) in writes.puts {
                    batch.insert(key, value);
                }
                db.apply_batch(batch)?;
                Ok(())
            }
            Backend::Shared(table) => table.apply(writes.puts, writes.removes).map_err(shared),
        }
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> Result<()> {
        self.apply(Writes { puts: vec![(key.to_vec(), value)], removes: Vec::new() })
    }
}

impl StateStore {
    pub fn open(dir: &Path) -> Result<StateStore> {
        // Small state (open days, devices): a small cache.
        Ok(StateStore { db: Backend::Local(kv::open(sled::Config::new().cache_capacity(32 << 20), dir)?) })
    }

    pub fn open_shared(url: &str) -> Result<StateStore> {
        Ok(StateStore { db: Backend::Shared(Box::new(kv::pg::Table::open(url, "hj212").map_err(shared)?)) })
    }

    pub fn cursor(&self, mn: &str) -> Result<Option<Cursor>> {
        self.db.get(&cursor_key(mn))?.map(|v| decode_cursor(mn, &v)).transpose()
    }

    pub fn cursors(&self) -> Result<Vec<(String, Cursor)>> {
        let mut out = Vec::new();
        for (key, value) in self.db.scan_prefix(b"c\0")? {
            let mn = std::str::from_utf8(&key[2..])
                .map_err(|_| Error::Corruption(format!("cursor key {key:?} is not UTF-8")))?;
            out.push((mn.to_owned(), decode_cursor(mn, &value)?));
        }
        Ok(out)
    }

    /// Stores `observations` of `day` and the device's cursor in one atomic
    /// batch, overwriting what an earlier copy of the same packet stored.
    pub fn put(
        &self,
        mn: &str,
        cursor: Cursor,
        day: LocalDay,
        observations: &[(&str, Slot, Observation)],
    ) -> Result<()> {
        let mut writes = Writes::default();
        writes.puts.push((cursor_key(mn), encode_cursor(cursor)));
        for (pollutant, slot, observation) in observations {
            writes.puts.push((value_key(mn, day, pollutant, *slot), encode_observation(observation)));
        }
        self.db.apply(writes)
    }

    /// Every observation of one device and day.
    pub fn day(&self, mn: &str, day: LocalDay) -> Result<Vec<(String, Slot, Observation)>> {
        let prefix = day_prefix(mn, day);
        let mut out = Vec::new();
        for (key, value) in self.db.scan_prefix(&prefix)? {
            let corrupt = || Error::Corruption(format!("observation key {key:?}"));
            let rest = std::str::from_utf8(&key[prefix.len()..]).map_err(|_| corrupt())?;
            let (pollutant, slot) = rest.split_once('\0').ok_or_else(corrupt)?;
            let slot = match slot {
                "D" => Slot::Day,
                hour => Slot::Hour(hour.parse().ok().filter(|h| *h < 24).ok_or_else(corrupt)?),
            };
            out.push((pollutant.to_owned(), slot, decode_observation(&value).ok_or_else(corrupt)?));
        }
        Ok(out)
    }

    /// Forgets the observations of `days` and moves the cursor to `first_open`,
    /// in one atomic batch.
    pub fn close(&self, mn: &str, days: &[LocalDay], first_open: LocalDay) -> Result<()> {
        let mut writes = Writes::default();
        for &day in days {
            for (key, _) in self.db.scan_prefix(&day_prefix(mn, day))? {
                writes.removes.push(key);
            }
        }
        writes.puts.push((cursor_key(mn), encode_cursor(Cursor { first_open, closed_any: true })));
        self.db.apply(writes)
    }

    /// The last instant the gateway was known healthy, if it ever ran.
    pub fn alive_at(&self) -> Result<Option<Timestamp>> {
        let Some(value) = self.db.get(b"a")? else { return Ok(None) };
        let nanos = std::str::from_utf8(&value)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| Error::Corruption(format!("alive-at value {value:?}")))?;
        Ok(Some(Timestamp::from_unix_nanos(nanos)))
    }

    pub fn set_alive_at(&self, at: Timestamp) -> Result<()> {
        self.db.insert(b"a", at.unix_nanos().to_string().into_bytes())
    }

    /// Every outage and whether it is in the ledger yet, oldest first.
    pub fn outages(&self) -> Result<Vec<(Outage, bool)>> {
        let mut out = Vec::new();
        for (key, value) in self.db.scan_prefix(b"o\0")? {
            let corrupt = || Error::Corruption(format!("outage {key:?} -> {value:?}"));
            let from: i64 =
                std::str::from_utf8(&key[2..]).ok().and_then(|t| t.parse().ok()).ok_or_else(corrupt)?;
            let text = std::str::from_utf8(&value).map_err(|_| corrupt())?;
            let (to, recorded) = text.split_once('|').ok_or_else(corrupt)?;
            let to: i64 = to.parse().map_err(|_| corrupt())?;
            let outage =
                Outage { from: Timestamp::from_unix_nanos(from), to: Timestamp::from_unix_nanos(to) };
            out.push((outage, recorded == "1"));
        }
        Ok(out)
    }

    pub fn put_outage(&self, outage: Outage, recorded: bool) -> Result<()> {
        let key = format!("o\0{:020}", outage.from.unix_nanos());
        let value = format!("{}|{}", outage.to.unix_nanos(), u8::from(recorded));
        self.db.insert(key.as_bytes(), value.into_bytes())
    }

    /// The right to close days now: always granted on a local store; on a
    /// shared one `None` while another node's gateway is closing, so a day
    /// is judged by one node, from the state as that node leaves it.
    pub fn claim_closing(&self) -> Result<Option<Option<kv::pg::Claim>>> {
        match &self.db {
            Backend::Local(_) => Ok(Some(None)),
            Backend::Shared(table) => Ok(table.try_claim("closing").map_err(shared)?.map(Some)),
        }
    }

    /// Makes everything written so far survive a crash.
    pub fn flush(&self) -> Result<()> {
        match &self.db {
            Backend::Local(db) => {
                db.flush()?;
            }
            // Every write to the shared store is already committed.
            Backend::Shared(_) => {}
        }
        Ok(())
    }
}

fn cursor_key(mn: &str) -> Vec<u8> {
    [b"c\0", mn.as_bytes()].concat()
}

fn day_prefix(mn: &str, day: LocalDay) -> Vec<u8> {
    format!("v\0{mn}\0{}\0", day.compact()).into_bytes()
}

fn value_key(mn: &str, day: LocalDay, pollutant: &str, slot: Slot) -> Vec<u8> {
    let slot = match slot {
        Slot::Hour(h) => format!("{h:02}"),
        Slot::Day => "D".to_owned(),
    };
    let mut key = day_prefix(mn, day);
    key.extend_from_slice(format!("{pollutant}\0{slot}").as_bytes());
    key
}

fn encode_cursor(cursor: Cursor) -> Vec<u8> {
    format!("{}{}", cursor.first_open.compact(), u8::from(cursor.closed_any)).into_bytes()
}

fn decode_cursor(mn: &str, value: &[u8]) -> Result<Cursor> {
    let corrupt = || Error::Corruption(format!("cursor of {mn}: {value:?}"));
    let text = std::str::from_utf8(value).map_err(|_| corrupt())?;
    let (day, closed) = text.split_at_checked(8).ok_or_else(corrupt)?;
    let first_open = LocalDay::parse_compact(day).ok_or_else(corrupt)?;
    let closed_any = match closed {
        "0" => false,
        "1" => true,
        _ => return Err(corrupt()),
    };
    Ok(Cursor { first_open, closed_any })
}

fn encode_observation(o: &Observation) -> Vec<u8> {
    let number = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let flag = o.flag.as_ref().map(DataFlag::as_str).unwrap_or_default();
    format!("{}|{}|{flag}", number(o.avg), number(o.zs_avg)).into_bytes()
}

fn decode_observation(value: &[u8]) -> Option<Observation> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.splitn(3, '|');
    let mut number = || -> Option<Option<f64>> {
        match parts.next()? {
            "" => Some(None),
            v => v.parse().ok().map(Some),
        }
    };
    let (avg, zs_avg) = (number()?, number()?);
    let flag = match parts.next()? {
        "" => None,
        f => Some(DataFlag::parse(f)),
    };
    Some(Observation { avg, zs_avg, flag })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_round_trip_through_their_encoding() {
        for o in [
            Observation::default(),
            Observation { avg: Some(35.2), zs_avg: Some(1e-300), flag: Some(DataFlag::Normal) },
            Observation { avg: Some(-0.1), zs_avg: None, flag: Some(DataFlag::Other("x|y".into())) },
        ] {
            assert_eq!(decode_observation(&encode_observation(&o)), Some(o));
        }
        let cursor = Cursor { first_open: LocalDay::from_ymd(2026, 3, 15).unwrap(), closed_any: true };
        assert_eq!(decode_cursor("mn", &encode_cursor(cursor)).unwrap(), cursor);
        assert!(matches!(decode_cursor("mn", b"2026031"), Err(Error::Corruption(_))));
    }
}
