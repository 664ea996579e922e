//! Domain types shared by every crate: timestamps, ledger positions,
//! enterprises and behaviour records, each validated on construction.

use std::collections::BTreeMap;
use std::fmt;

use crate::{Uscc, ValidationError, quoted};

/// An absolute instant in unix nanoseconds (UTC). Covers 1677..2262.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

pub const NANOS_PER_SECOND: i64 = 1_000_000_000;
pub const NANOS_PER_DAY: i64 = 86_400 * NANOS_PER_SECOND;

impl Timestamp {
    pub const fn from_unix_nanos(nanos: i64) -> Timestamp {
        Timestamp(nanos)
    }

    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// `None` when out of range or when `nanos` is not in `0..1e9`.
    pub fn from_unix(seconds: i64, nanos: i32) -> Option<Timestamp> {
        if !(0..1_000_000_000).contains(&nanos) {
            return None;
        }
        seconds.checked_mul(NANOS_PER_SECOND).and_then(|n| n.checked_add(i64::from(nanos))).map(Timestamp)
    }

    /// Seconds and nanoseconds as in `google.protobuf.Timestamp`.
    pub fn to_unix(self) -> (i64, i32) {
        (self.0.div_euclid(NANOS_PER_SECOND), self.0.rem_euclid(NANOS_PER_SECOND) as i32)
    }

    /// The instant `t` names, saturating at the ends of the range. A
    /// conversion, not a clock: scoring never reads the time itself, so its
    /// callers pass it in (the server from its injected clock).
    pub fn from_system_time(t: std::time::SystemTime) -> Timestamp {
        let nanos = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(after) => Timestamp(nanos(after)),
            Err(before) => Timestamp(nanos(before.duration()).saturating_neg()),
        }
    }

    /// This instant plus whole days, saturating at the ends of the range.
    pub fn plus_days(self, days: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(days.saturating_mul(NANOS_PER_DAY)))
    }

    pub fn plus_nanos(self, nanos: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(nanos))
    }

    /// Parses RFC 3339, e.g. `2026-03-15T08:00:00Z` or `2026-03-15T16:00:00+08:00`.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        chrono::DateTime::parse_from_rfc3339(s).ok().and_then(|t| t.timestamp_nanos_opt()).map(Timestamp)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = chrono::DateTime::from_timestamp_nanos(self.0);
        write!(f, "{}", t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A position in the ledger, 0-based and dense.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Seq(pub u64);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Upper bounds on free text, so one request cannot bloat the ledger.
pub mod limits {
    pub const NAME: usize = 200;
    pub const SOURCE: usize = 64;
    pub const SOURCE_RECORD_ID: usize = 128;
    pub const KIND: usize = 64;
    pub const DESCRIPTION: usize = 2_000;
    pub const ATTRIBUTES: usize = 32;
    pub const ATTRIBUTE_KEY: usize = 64;
    pub const ATTRIBUTE_VALUE: usize = 512;
    pub const INDUSTRY_CODE: usize = 8;
}

/// A registered enterprise.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Enterprise {
    pub uscc: Uscc,
    pub name: String,
    /// 6-digit administrative division code (GB/T 2260), e.g. `330206`.
    pub region_code: String,
    /// Industry classification code (GB/T 4754), e.g. `C2614`; may be empty.
    pub industry_code: String,
}

impl Enterprise {
    pub fn new(
        uscc: &str,
        name: &str,
        region_code: &str,
        industry_code: &str,
    ) -> Result<Enterprise, ValidationError> {
        let uscc = Uscc::parse(uscc)?;
        let name = bounded_text("name", name, limits::NAME, Required::Yes)?;
        if region_code.len() != 6 || !region_code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValidationError::new(
                "region_code",
                format!("must be 6 ASCII digits, got {}", quoted(region_code)),
            ));
        }
        if industry_code.len() > limits::INDUSTRY_CODE
            || !industry_code.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(ValidationError::new(
                "industry_code",
                format!(
                    "must be at most {} ASCII letters and digits (GB/T 4754), got {}",
                    limits::INDUSTRY_CODE,
                    quoted(industry_code)
                ),
            ));
        }
        Ok(Enterprise {
            uscc,
            name: name.to_owned(),
            region_code: region_code.to_owned(),
            industry_code: industry_code.to_owned(),
        })
    }
}

/// One environmental behaviour event about an enterprise, or a workflow step
/// (dispute, rectification, repair, void) acting on an earlier one.
///
/// Structural rules are checked here; whether `kind` exists, and the rules
/// that depend on it, are the model's business (`Model::check_record`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Record {
    pub source: String,
    pub source_record_id: String,
    pub uscc: Uscc,
    pub kind: String,
    pub occurred_at: Timestamp,
    pub amount_yuan: i64,
    /// Workflow kinds: the ledger seq of the scored record acted on.
    pub refers_to: Option<Seq>,
    pub description: String,
    pub attributes: BTreeMap<String, String>,
}

/// The fields of a `Record` as they arrive, before validation.
#[derive(Clone, Debug, Default)]
pub struct RecordFields<'a> {
    pub source: &'a str,
    pub source_record_id: &'a str,
    pub uscc: &'a str,
    pub kind: &'a str,
    pub occurred_at: Option<Timestamp>,
    pub amount_yuan: i64,
    pub refers_to: Option<Seq>,
    pub description: &'a str,
    pub attributes: BTreeMap<String, String>,
}

impl Record {
    pub fn new(f: RecordFields<'_>) -> Result<Record, ValidationError> {
        let source = identifier("source", f.source, limits::SOURCE)?;
        let source_record_id =
            bounded_text("source_record_id", f.source_record_id, limits::SOURCE_RECORD_ID, Required::Yes)?;
        let uscc = Uscc::parse(f.uscc)?;
        let kind = identifier("kind", f.kind, limits::KIND)?;
        let occurred_at = f.occurred_at.ok_or_else(|| ValidationError::new("occurred_at", "is required"))?;
        if f.amount_yuan < 0 {
            return Err(ValidationError::new(
                "amount_yuan",
                format!("must not be negative, got {}", f.amount_yuan),
            ));
        }
        let description = bounded_text("description", f.description, limits::DESCRIPTION, Required::No)?;
        if f.attributes.len() > limits::ATTRIBUTES {
            return Err(ValidationError::new(
                "attributes",
                format!("at most {} entries, got {}", limits::ATTRIBUTES, f.attributes.len()),
            ));
        }
        for (k, v) in &f.attributes {
            identifier("attributes key", k, limits::ATTRIBUTE_KEY)?;
            bounded_text("attributes value", v, limits::ATTRIBUTE_VALUE, Required::No)?;
        }
        Ok(Record {
            source: source.to_owned(),
            source_record_id: source_record_id.to_owned(),
            uscc,
            kind: kind.to_owned(),
            occurred_at,
            amount_yuan: f.amount_yuan,
            refers_to: f.refers_to,
            description: description.to_owned(),
            attributes: f.attributes,
        })
    }

    /// A record as a reader of its scoring fields alone sees it (a committed
    /// record whose details it does not receive: `docs/ledger.md`,
    /// "Committed records"): `source`, `source_record_id` and `description`
    /// empty, the attributes only those scoring reads. Validated as
    /// [`Record::new`] validates those fields.
    pub fn scoring_fields(f: RecordFields<'_>) -> Result<Record, ValidationError> {
        let full =
            Record::new(RecordFields { source: "withheld", source_record_id: "-", description: "", ..f })?;
        Ok(Record { source: String::new(), source_record_id: String::new(), ..full })
    }
}

#[derive(PartialEq)]
enum Required {
    Yes,
    No,
}

/// Printable text without control characters, at most `max` characters.
fn bounded_text<'a>(
    field: &'static str,
    value: &'a str,
    max: usize,
    required: Required,
) -> Result<&'a str, ValidationError> {
    if required == Required::Yes && value.trim().is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    let len = value.chars().count();
    if len > max {
        return Err(ValidationError::new(field, format!("at most {max} characters, got {len}")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ValidationError::new(field, "must not contain control characters"));
    }
    Ok(value)
}

/// Whether `c` acts on a terminal or reorders displayed text instead of
/// being shown: C0 and C1 controls, DEL, and the bidirectional marks,
/// embeddings, overrides and isolates.
pub fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The rule for text a caller sends now (stored entries decode under the
/// older, looser [`Record::new`] rule, so a ledger never stops decoding):
/// no [`is_control`] character at all, except line breaks and tabs where
/// `multiline`.
pub fn check_new_text(field: &'static str, value: &str, multiline: bool) -> Result<(), ValidationError> {
    let allowed = |c: char| multiline && (c == '\n' || c == '\t');
    match value.chars().find(|&c| is_control(c) && !allowed(c)) {
        None => Ok(()),
        Some(c) => Err(ValidationError::new(
            field,
            format!(
                "must not contain control characters or bidirectional overrides, found U+{:04X}",
                u32::from(c)
            ),
        )),
    }
}

/// `text` with nothing that acts on a terminal or a page: line breaks and
/// tabs become spaces, every other [`is_control`] character is dropped.
/// For caller texts that are kept as they come rather than refused (an
/// inquiry's purpose), at the edge where they enter.
pub fn strip_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .filter_map(|c| match c {
            c if c.is_whitespace() && is_control(c) => Some(' '),
            c if is_control(c) => None,
            c => Some(c),
        })
        .collect()
}

/// ASCII letters, digits and `._-:`, as used for sources, kinds and keys.
fn identifier<'a>(field: &'static str, value: &'a str, max: usize) -> Result<&'a str, ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    if value.len() > max {
        return Err(ValidationError::new(field, format!("at most {max} characters, got {}", value.len())));
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b)) {
        return Err(ValidationError::new(
            field,
            format!("must use only ASCII letters, digits and . _ - :, got {}", quoted(value)),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> RecordFields<'static> {
        RecordFields {
            source: "beilun-epb",
            source_record_id: "P-2026-001",
            uscc: "91330421739237858X",
            kind: "penalty.fine",
            occurred_at: Some(Timestamp::from_unix_nanos(1_764_000_000 * NANOS_PER_SECOND)),
            amount_yuan: 30_000,
            ..RecordFields::default()
        }
    }

    fn check(mutate: impl FnOnce(&mut RecordFields<'static>), expect: &str) {
        let mut f = fields();
        mutate(&mut f);
        let got = Record::new(f).map(|_| ()).map_err(|e| e.to_string());
        match got {
            Ok(()) => assert_eq!(expect, "ok"),
            Err(msg) => assert!(msg.starts_with(expect), "{msg:?} does not start with {expect:?}"),
        }
    }

    #[test]
    fn record_validation_names_the_field() {
        check(|_| {}, "ok");
        check(|f| f.source = "", "source: is required");
        check(|f| f.source = "bei lun", "source: must use only");
        check(|f| f.source_record_id = " ", "source_record_id: is required");
        check(|f| f.uscc = "91330421739237858Y", "uscc: check character");
        check(|f| f.kind = "", "kind: is required");
        check(|f| f.occurred_at = None, "occurred_at: is required");
        check(|f| f.amount_yuan = -1, "amount_yuan: must not be negative");
        check(|f| f.description = "a\u{0}b", "description: must not contain control");
        check(|f| f.description = "a\u{1b}[2Jb", "description: must not contain control");
        check(|f| f.source_record_id = "a\u{9b}b", "source_record_id: must not contain control");
        check(
            |f| {
                f.attributes = (0..33).map(|i| (format!("k{i}"), String::new())).collect();
            },
            "attributes: at most 32",
        );
        check(
            |f| {
                f.attributes.insert("bad key".into(), "v".into());
            },
            "attributes key: must use only",
        );
    }

    #[test]
    fn enterprise_validation_names_the_field() {
        assert!(Enterprise::new("91330421739237858X", "Ningbo Dye Works", "330206", "C1713").is_ok());
        let err = |r: Result<Enterprise, ValidationError>| r.unwrap_err().to_string();
        assert!(err(Enterprise::new("91330421739237858X", "", "330206", "")).starts_with("name:"));
        assert!(err(Enterprise::new("91330421739237858X", "n", "33020", "")).starts_with("region_code:"));
        assert!(
            err(Enterprise::new("91330421739237858X", "n", "330206", "C-17")).starts_with("industry_code:")
        );
    }

    #[test]
    fn system_time_converts_both_sides_of_the_epoch() {
        use std::time::{Duration, UNIX_EPOCH};
        let after = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(Timestamp::from_system_time(after), Timestamp::from_unix(1_700_000_000, 5).unwrap());
        let before = UNIX_EPOCH - Duration::from_nanos(3);
        assert_eq!(Timestamp::from_system_time(before).unix_nanos(), -3);
    }

    #[test]
    fn timestamp_round_trips_through_seconds_and_nanos() {
        let t = Timestamp::from_unix(-1, 999_999_999).unwrap();
        assert_eq!(t.unix_nanos(), -1);
        assert_eq!(t.to_unix(), (-1, 999_999_999));
        assert_eq!(Timestamp::from_unix(0, 1_000_000_000), None);
        assert_eq!(
            Timestamp::parse_rfc3339("2026-03-15T16:00:00+08:00").unwrap().to_string(),
            "2026-03-15T08:00:00Z"
        );
    }
}
