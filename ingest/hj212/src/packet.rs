//! One HJ 212 packet: parsing and checking a frame, and building the
//! acknowledgement a device asks for.

use std::fmt;

use super::crc::hj212_crc;
use super::time::DataTime;

/// The largest CP content (between `CP=&&` and the closing `&&`) the
/// standard allows.
pub const MAX_CP_BYTES: usize = 950;

/// The largest data segment a 4-digit length field can announce.
pub const MAX_DATA_BYTES: usize = 9_999;

/// `##`, 4-digit length, data, 4 hex CRC digits, `\r\n`.
pub const MAX_FRAME_BYTES: usize = 2 + 4 + MAX_DATA_BYTES + 4 + 2;

/// Why a frame is not an acceptable packet. The first three variants mean
/// the bytes did not arrive intact; `Malformed` means they did, but say
/// something the standard does not allow.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum PacketError {
    #[error("bad length: {0}")]
    Framing(&'static str),
    #[error("bad length: expected {declared} got {actual}")]
    BadLength { declared: usize, actual: usize },
    #[error("bad crc: expected {computed:04X} got {received}")]
    BadCrc { computed: u16, received: String },
    #[error("malformed field {field}: {reason}")]
    Malformed { field: String, reason: String },
}

impl PacketError {
    /// True when the packet was damaged or cut in transit (length or CRC),
    /// as opposed to intact but malformed.
    pub fn is_transmission_error(&self) -> bool {
        !matches!(self, PacketError::Malformed { .. })
    }

    fn malformed(field: impl Into<String>, reason: impl Into<String>) -> PacketError {
        PacketError::Malformed { field: field.into(), reason: reason.into() }
    }
}

/// Command codes (`CN`) this crate acts on.
pub mod command {
    pub const REALTIME: &str = "2011";
    pub const DAILY: &str = "2031";
    pub const MINUTE: &str = "2051";
    pub const HOURLY: &str = "2061";
    pub const REQUEST_ANSWER: &str = "9011";
    pub const DATA_ACK: &str = "9014";
}

/// The `Flag` field: bit 0 = A (answer required), bit 1 = D (split packet
/// with `PNUM`/`PNO`), the bits above = protocol version.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Flag(pub u8);

impl Flag {
    pub fn wants_ack(self) -> bool {
        self.0 & 1 != 0
    }

    pub fn is_split(self) -> bool {
        self.0 & 2 != 0
    }

    pub fn version(self) -> u8 {
        self.0 >> 2
    }
}

/// What a value's key says it is: `w01018-Avg` has suffix `Avg`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Suffix {
    Rtd,
    Avg,
    Min,
    Max,
    Cou,
    ZsRtd,
    ZsAvg,
    ZsMin,
    ZsMax,
    Flag,
    SampleTime,
    /// Any other suffix (`EFlag`, `ValidNum`, vendor extensions), kept verbatim.
    Other(String),
}

impl Suffix {
    fn parse(text: &str) -> Suffix {
        match text {
            "Rtd" => Suffix::Rtd,
            "Avg" => Suffix::Avg,
            "Min" => Suffix::Min,
            "Max" => Suffix::Max,
            "Cou" => Suffix::Cou,
            "ZsRtd" => Suffix::ZsRtd,
            "ZsAvg" => Suffix::ZsAvg,
            "ZsMin" => Suffix::ZsMin,
            "ZsMax" => Suffix::ZsMax,
            "Flag" => Suffix::Flag,
            "SampleTime" => Suffix::SampleTime,
            other => Suffix::Other(other.to_owned()),
        }
    }

    /// Suffixes whose value the standard defines as a number.
    fn is_numeric(&self) -> bool {
        matches!(
            self,
            Suffix::Rtd
                | Suffix::Avg
                | Suffix::Min
                | Suffix::Max
                | Suffix::Cou
                | Suffix::ZsRtd
                | Suffix::ZsAvg
                | Suffix::ZsMin
                | Suffix::ZsMax
        )
    }
}

impl fmt::Display for Suffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Suffix::Rtd => "Rtd",
            Suffix::Avg => "Avg",
            Suffix::Min => "Min",
            Suffix::Max => "Max",
            Suffix::Cou => "Cou",
            Suffix::ZsRtd => "ZsRtd",
            Suffix::ZsAvg => "ZsAvg",
            Suffix::ZsMin => "ZsMin",
            Suffix::ZsMax => "ZsMax",
            Suffix::Flag => "Flag",
            Suffix::SampleTime => "SampleTime",
            Suffix::Other(s) => s,
        };
        f.write_str(text)
    }
}

/// A data flag (`-Flag=`). Only `Normal` values count for compliance.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DataFlag {
    /// `N`
    Normal,
    /// `F`
    Stopped,
    /// `M`
    Maintenance,
    /// `S`
    Manual,
    /// `D`
    Fault,
    /// `C`
    Calibration,
    /// `B`
    CommunicationFault,
    /// `T`: above the instrument's measurement range, not above the limit.
    AboveRange,
    /// Anything else a device sends; kept, and treated as not valid.
    Other(String),
}

impl DataFlag {
    /// Letter case is not significant: some loggers send `n` for `N`, which
    /// cannot mean anything else.
    pub fn parse(text: &str) -> DataFlag {
        match text.to_ascii_uppercase().as_str() {
            "N" => DataFlag::Normal,
            "F" => DataFlag::Stopped,
            "M" => DataFlag::Maintenance,
            "S" => DataFlag::Manual,
            "D" => DataFlag::Fault,
            "C" => DataFlag::Calibration,
            "B" => DataFlag::CommunicationFault,
            "T" => DataFlag::AboveRange,
            _ => DataFlag::Other(text.to_owned()),
        }
    }

    /// Whether a value with this flag counts towards a daily mean. HJ 212
    /// and HJ 75 count only normal data: values taken while the plant is
    /// stopped (`F`), under maintenance (`M`) or calibration (`C`), during a
    /// fault (`D`), a communication fault (`B`), typed in by hand (`S`) or
    /// above the instrument's range (`T`) are not valid hours.
    pub fn is_valid(&self) -> bool {
        *self == DataFlag::Normal
    }

    pub fn as_str(&self) -> &str {
        match self {
            DataFlag::Normal => "N",
            DataFlag::Stopped => "F",
            DataFlag::Maintenance => "M",
            DataFlag::Manual => "S",
            DataFlag::Fault => "D",
            DataFlag::Calibration => "C",
            DataFlag::CommunicationFault => "B",
            DataFlag::AboveRange => "T",
            DataFlag::Other(s) => s,
        }
    }
}

#[derive(Clone, PartialEq, Debug)]
pub enum Value {
    Number(f64),
    Flag(DataFlag),
    /// Times (`-SampleTime`) and non-numeric values of unknown suffixes.
    Text(String),
}

/// One `code-Suffix=value` item of the CP segment.
#[derive(Clone, PartialEq, Debug)]
pub struct Measurement {
    pub pollutant: String,
    pub suffix: Suffix,
    pub value: Value,
}

/// A checked HJ 212 packet. Built only by [`parse_packet`], so every field
/// has passed its rule.
#[derive(Clone, PartialEq, Debug)]
pub struct Packet {
    qn: Option<String>,
    st: String,
    cn: String,
    pw: String,
    mn: String,
    flag: Option<Flag>,
    split: Option<(u16, u16)>,
    data_time: Option<DataTime>,
    measurements: Vec<Measurement>,
    other_items: Vec<(String, String)>,
}

impl Packet {
    /// The one message that the complete parts of a split packet (sorted by
    /// `PNO`, one of each) make: the first part's header, every part's
    /// values in order. `None` unless `parts` is exactly parts 1 to `PNUM`.
    pub(crate) fn merge_split(parts: &[Packet]) -> Option<Packet> {
        let first = parts.first()?;
        let (pnum, _) = first.split?;
        let numbered = parts.iter().enumerate().all(|(i, p)| {
            p.split == Some((pnum, u16::try_from(i + 1).unwrap_or(0))) && p.mn == first.mn && p.cn == first.cn
        });
        if !numbered || parts.len() != usize::from(pnum) {
            return None;
        }
        let mut merged = Packet { split: None, ..first.clone() };
        for part in &parts[1..] {
            merged.data_time = merged.data_time.or(part.data_time);
            merged.measurements.extend(part.measurements.iter().cloned());
            merged.other_items.extend(part.other_items.iter().cloned());
        }
        Some(merged)
    }

    /// `QN`, absent in 2005-style packets.
    pub fn qn(&self) -> Option<&str> {
        self.qn.as_deref()
    }

    pub fn st(&self) -> &str {
        &self.st
    }

    /// The command code, e.g. [`command::HOURLY`].
    pub fn cn(&self) -> &str {
        &self.cn
    }

    pub fn pw(&self) -> &str {
        &self.pw
    }

    /// The device (data logger) id.
    pub fn mn(&self) -> &str {
        &self.mn
    }

    /// `Flag`, absent in 2005-style packets.
    pub fn flag(&self) -> Option<Flag> {
        self.flag
    }

    /// `(PNUM, PNO)`: total packets and this packet's 1-based number.
    pub fn split(&self) -> Option<(u16, u16)> {
        self.split
    }

    pub fn data_time(&self) -> Option<DataTime> {
        self.data_time
    }

    pub fn measurements(&self) -> &[Measurement] {
        &self.measurements
    }

    /// CP items that are neither `DataTime` nor `code-Suffix=value`
    /// (`QnRtn`, `RestartTime`, ...), in packet order.
    pub fn other_items(&self) -> &[(String, String)] {
        &self.other_items
    }

    /// The first numeric value for `pollutant` with `suffix`.
    pub fn value(&self, pollutant: &str, suffix: &Suffix) -> Option<f64> {
        self.measurements.iter().find_map(|m| match &m.value {
            Value::Number(v) if m.pollutant == pollutant && &m.suffix == suffix => Some(*v),
            _ => None,
        })
    }

    /// The `-Flag` of `pollutant`, if the device sent one.
    pub fn data_flag(&self, pollutant: &str) -> Option<&DataFlag> {
        self.measurements.iter().find_map(|m| match &m.value {
            Value::Flag(f) if m.pollutant == pollutant => Some(f),
            _ => None,
        })
    }

    /// Pollutant codes in first-seen order, without repeats.
    pub fn pollutants(&self) -> Vec<&str> {
        let mut codes: Vec<&str> = Vec::new();
        for m in &self.measurements {
            if !codes.contains(&m.pollutant.as_str()) {
                codes.push(&m.pollutant);
            }
        }
        codes
    }

    /// Whether the device asked for an answer (Flag bit A).
    pub fn wants_ack(&self) -> bool {
        self.flag.is_some_and(Flag::wants_ack)
    }

    /// The `9014` data acknowledgement for this packet, framed and ready to
    /// send. A packet without `QN` gets an answer without `QN`, since there
    /// is nothing to echo.
    pub fn ack(&self) -> Vec<u8> {
        let qn = self.qn.as_deref().map(|qn| format!("QN={qn};")).unwrap_or_default();
        let data = format!("{qn}ST=91;CN={};PW={};MN={};Flag=4;CP=&&&&", command::DATA_ACK, self.pw, self.mn);
        frame(data.as_bytes())
    }
}

/// Frames a data segment as `##LLLL<data>cccc\r\n`.
///
/// The CRC is written in lower case: the standard allows either, and the
/// published peer acknowledgement we reproduce byte for byte uses lower case.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 12);
    out.extend_from_slice(format!("##{:04}", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(format!("{:04x}\r\n", hj212_crc(data)).as_bytes());
    out
}

/// Checks and parses one frame `##LLLL<data>CCCC`, with or without the
/// trailing `\r\n`.
///
/// Field order is not enforced beyond `CP` coming last: devices in the field
/// send `PNO` before `PNUM`, and a strict order would buy nothing. Unknown or
/// repeated header fields are rejected, since they mean the device speaks
/// something other than HJ 212.
pub fn parse_packet(frame: &[u8]) -> Result<Packet, PacketError> {
    let frame = frame.strip_suffix(b"\r\n").unwrap_or(frame);
    if !frame.starts_with(b"##") {
        return Err(PacketError::Framing("frame does not start with ##"));
    }
    if frame.len() < 10 {
        return Err(PacketError::Framing("frame shorter than ##, length and crc"));
    }
    let declared =
        parse_decimal(&frame[2..6]).ok_or(PacketError::Framing("length field is not 4 decimal digits"))?;
    let data = &frame[6..frame.len() - 4];
    if data.len() != declared {
        return Err(PacketError::BadLength { declared, actual: data.len() });
    }
    let crc_text = &frame[frame.len() - 4..];
    let computed = hj212_crc(data);
    if parse_hex(crc_text) != Some(computed) {
        return Err(PacketError::BadCrc {
            computed,
            received: String::from_utf8_lossy(crc_text).into_owned(),
        });
    }
    let data = std::str::from_utf8(data)
        .map_err(|_| PacketError::malformed("data segment", "is not valid UTF-8"))?;
    parse_data_segment(data)
}

fn parse_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + usize::from(d - b'0')))
}

fn parse_hex(digits: &[u8]) -> Option<u16> {
    // from_str_radix would also take a leading '+', which is not a hex digit.
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// Shortens a value for an error message, so one bad packet cannot flood the log.
fn shown(value: &str) -> String {
    let mut s: String = value.chars().take(32).collect();
    if s.len() < value.len() {
        s.push('…');
    }
    format!("{s:?}")
}

fn parse_data_segment(data: &str) -> Result<Packet, PacketError> {
    // Some loggers pad the data segment after the closing `&&` (a space, a
    // NUL, a line end) and count the padding in the length and the CRC; it
    // cannot carry meaning, so it is dropped (and counted as a deviation).
    let data = data.trim_end_matches(is_padding);
    let cp_at = find_cp(data).ok_or_else(|| PacketError::malformed("CP", "missing CP=&&"))?;
    let (header, cp) = (&data[..cp_at], &data[cp_at + "CP=&&".len()..]);
    let cp = cp.strip_suffix("&&").ok_or_else(|| PacketError::malformed("CP", "does not end with &&"))?;
    if cp.len() > MAX_CP_BYTES {
        return Err(PacketError::malformed("CP", format!("at most {MAX_CP_BYTES} bytes, got {}", cp.len())));
    }

    let mut fields = HeaderFields::default();
    // A stray space, tab, NUL or line end between a `;` and the next key
    // (seen from loggers in the field) cannot be part of a key: dropped,
    // and counted as a deviation. Anywhere else it still rejects.
    for item in
        header.split(';').map(|item| item.trim_start_matches(is_padding)).filter(|item| !item.is_empty())
    {
        let (key, value) =
            item.split_once('=').ok_or_else(|| PacketError::malformed(item, "expected key=value"))?;
        fields.set(key, value)?;
    }
    let mut packet = fields.into_packet()?;
    parse_cp(cp, &mut packet)?;
    Ok(packet)
}

/// `CP=&&` at the start of the data segment or right after a `;`.
/// Bytes a logger may pad a data segment with after its closing `&&`.
pub(crate) fn is_padding(c: char) -> bool {
    matches!(c, ' ' | '\0' | '\t' | '\r' | '\n')
}

/// Also after a `;` and stray padding bytes (see `parse_data_segment`).
fn find_cp(data: &str) -> Option<usize> {
    if data.starts_with("CP=&&") {
        return Some(0);
    }
    data.match_indices("CP=&&")
        .map(|(i, _)| i)
        .find(|&i| data[..i].trim_end_matches(is_padding).ends_with(';'))
}

#[derive(Default)]
struct HeaderFields<'a> {
    qn: Option<&'a str>,
    st: Option<&'a str>,
    cn: Option<&'a str>,
    pw: Option<&'a str>,
    mn: Option<&'a str>,
    flag: Option<&'a str>,
    pnum: Option<&'a str>,
    pno: Option<&'a str>,
}

impl<'a> HeaderFields<'a> {
    fn set(&mut self, key: &str, value: &'a str) -> Result<(), PacketError> {
        let slot = match key {
            "QN" => &mut self.qn,
            "ST" => &mut self.st,
            "CN" => &mut self.cn,
            "PW" => &mut self.pw,
            "MN" => &mut self.mn,
            "Flag" => &mut self.flag,
            "PNUM" => &mut self.pnum,
            "PNO" => &mut self.pno,
            _ => return Err(PacketError::malformed(key, "is not an HJ 212 header field")),
        };
        if slot.is_some() {
            return Err(PacketError::malformed(key, "appears twice"));
        }
        *slot = Some(value);
        Ok(())
    }

    fn into_packet(self) -> Result<Packet, PacketError> {
        let required = |field: &'static str, value: Option<&'a str>| {
            value.ok_or_else(|| PacketError::malformed(field, "is required"))
        };
        let qn = match self.qn {
            Some(qn) if qn.len() == 17 && DataTime::parse(qn).is_some() => Some(qn.to_owned()),
            Some(qn) => {
                return Err(PacketError::malformed(
                    "QN",
                    format!("must be a time YYYYMMDDhhmmsszzz, got {}", shown(qn)),
                ));
            }
            None => None,
        };
        let st = digits("ST", required("ST", self.st)?, 1..=5)?;
        let cn = digits("CN", required("CN", self.cn)?, 4..=7)?;
        let pw = required("PW", self.pw)?;
        if !pw.is_empty() && check_password(pw).is_err() {
            return Err(PacketError::malformed(
                "PW",
                format!("must be at most 32 printable ASCII characters, got {}", shown(pw)),
            ));
        }
        let mn = required("MN", self.mn)?;
        if let Err(rule) = check_mn(mn) {
            return Err(PacketError::malformed("MN", format!("{rule}, got {}", shown(mn))));
        }
        let flag = match self.flag {
            Some(text) => {
                let n = digits("Flag", text, 1..=3)?
                    .parse::<u8>()
                    .map_err(|_| PacketError::malformed("Flag", "must be 0..=255"))?;
                Some(Flag(n))
            }
            None => None,
        };
        let split = match (self.pnum, self.pno) {
            (None, None) => None,
            (Some(pnum), Some(pno)) => {
                let count = |field, text| -> Result<u16, PacketError> {
                    digits(field, text, 1..=4)?
                        .parse::<u16>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| PacketError::malformed(field, "must be 1..=9999"))
                };
                let (pnum, pno) = (count("PNUM", pnum)?, count("PNO", pno)?);
                if pno > pnum {
                    return Err(PacketError::malformed(
                        "PNO",
                        format!("packet {pno} of {pnum} is past the last"),
                    ));
                }
                Some((pnum, pno))
            }
            (Some(_), None) => return Err(PacketError::malformed("PNO", "PNUM without PNO")),
            (None, Some(_)) => return Err(PacketError::malformed("PNUM", "PNO without PNUM")),
        };
        Ok(Packet {
            qn,
            st: st.to_owned(),
            cn: cn.to_owned(),
            pw: pw.to_owned(),
            mn: mn.to_owned(),
            flag,
            split,
            data_time: None,
            measurements: Vec::new(),
            other_items: Vec::new(),
        })
    }
}

fn digits<'a>(
    field: &'static str,
    value: &'a str,
    len: std::ops::RangeInclusive<usize>,
) -> Result<&'a str, PacketError> {
    if len.contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(value)
    } else {
        Err(PacketError::malformed(
            field,
            format!("must be {} to {} decimal digits, got {}", len.start(), len.end(), shown(value)),
        ))
    }
}

/// The rule for a device id (MN), shared with `MonitoringPoint`: 1 to 24
/// printable ASCII characters. Real ids include lower case and `_`, so no
/// narrower alphabet is imposed.
pub(crate) fn check_mn(mn: &str) -> Result<(), &'static str> {
    if mn.is_empty() || mn.len() > 24 || !mn.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be 1 to 24 printable ASCII characters");
    }
    Ok(())
}

/// The rule for a device password (`PW`) a monitoring point is registered
/// with: 1 to 32 printable ASCII characters, which every packet can carry.
pub(crate) fn check_password(pw: &str) -> Result<(), &'static str> {
    if pw.is_empty() || pw.len() > 32 || !pw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be 1 to 32 printable ASCII characters");
    }
    Ok(())
}

/// The rule for pollutant codes: standard (`w01018`), 2005-style (`011`,
/// `B01`) and vendor codes (`ua19004`) alike are ASCII letters and digits.
pub(crate) fn check_pollutant_code(code: &str) -> Result<(), &'static str> {
    if code.is_empty() || code.len() > 32 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("must be 1 to 32 ASCII letters and digits");
    }
    Ok(())
}

fn parse_cp(cp: &str, packet: &mut Packet) -> Result<(), PacketError> {
    // Trailing or doubled separators are common and carry no meaning.
    // Stray padding before a key: see `parse_data_segment`.
    for item in
        cp.split([';', ',']).map(|item| item.trim_start_matches(is_padding)).filter(|item| !item.is_empty())
    {
        let (key, value) =
            item.split_once('=').ok_or_else(|| PacketError::malformed(shown(item), "expected key=value"))?;
        if key == "DataTime" {
            if packet.data_time.is_some() {
                return Err(PacketError::malformed("DataTime", "appears twice"));
            }
            let time = DataTime::parse(value).ok_or_else(|| {
                PacketError::malformed(
                    "DataTime",
                    format!("must be a time YYYYMMDDhhmmss[zzz], got {}", shown(value)),
                )
            })?;
            packet.data_time = Some(time);
        } else if let Some((code, suffix)) = key.split_once('-') {
            packet.measurements.push(parse_measurement(key, code, suffix, value)?);
        } else if key.is_empty() {
            return Err(PacketError::malformed(shown(item), "empty key"));
        } else {
            packet.other_items.push((key.to_owned(), value.to_owned()));
        }
    }
    Ok(())
}

fn parse_measurement(key: &str, code: &str, suffix: &str, value: &str) -> Result<Measurement, PacketError> {
    if let Err(rule) = check_pollutant_code(code) {
        return Err(PacketError::malformed(shown(key), format!("pollutant code {rule}")));
    }
    if suffix.is_empty() {
        return Err(PacketError::malformed(shown(key), "empty suffix"));
    }
    let suffix = Suffix::parse(suffix);
    let value = match suffix {
        Suffix::Flag if value.is_empty() => {
            return Err(PacketError::malformed(shown(key), "empty data flag"));
        }
        Suffix::Flag => Value::Flag(DataFlag::parse(value)),
        Suffix::SampleTime => Value::Text(value.to_owned()),
        ref s if s.is_numeric() => Value::Number(parse_number(value).ok_or_else(|| {
            PacketError::malformed(shown(key), format!("must be a number, got {}", shown(value)))
        })?),
        _ => parse_number(value).map(Value::Number).unwrap_or_else(|| Value::Text(value.to_owned())),
    };
    Ok(Measurement { pollutant: code.to_owned(), suffix, value })
}

/// A finite decimal number such as `35.2`, `-0.5`, `.5` or `1.2E-3`.
/// Rust's own `f64` parser would also take `inf` and `NaN`, which no
/// instrument reports.
fn parse_number(text: &str) -> Option<f64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    let mantissa = digits.split(['e', 'E']).next().unwrap_or_default();
    let ok = !mantissa.is_empty()
        && mantissa.bytes().any(|b| b.is_ascii_digit())
        && digits.bytes().all(|b| b.is_ascii_digit() || b".eE+-".contains(&b));
    if !ok {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}
