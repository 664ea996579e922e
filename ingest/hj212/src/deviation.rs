//! Deviations: the small, unambiguous ways real loggers depart from the text
//! of HJ 212 in packets that are still read with certainty. They are
//! accepted and acknowledged like any well-formed packet, and counted per
//! device and kind so a regulator can ask the vendor to fix them.

use std::fmt;

use super::packet::{DataFlag, Packet, Suffix};

/// One kind of deviation in a packet that was nevertheless accepted.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Deviation {
    /// The frame ends without `\r\n`.
    NoCrlf,
    /// No `QN` (HJ/T 212-2005 style).
    NoQn,
    /// No `Flag` (HJ/T 212-2005 style).
    NoFlag,
    /// Header fields out of the standard's order (e.g. `PNO` before `PNUM`).
    FieldOrder,
    /// Empty items from doubled or trailing `;` or `,`.
    StraySeparator,
    /// A data flag in lower case (`n` for `N`).
    FlagCase,
    /// A measurement without a `-Flag` for its pollutant.
    NoDataFlag,
    /// Padding (space, NUL, line end) after the closing `&&`, inside the
    /// length and the CRC.
    TrailingBytes,
    /// A stray space, tab, NUL or line end between a field separator (`;`,
    /// `,` or the opening `&&`) and the next key, e.g. `; DataTime=`.
    StrayCharacter,
}

impl Deviation {
    pub const ALL: [Deviation; 9] = [
        Deviation::NoCrlf,
        Deviation::NoQn,
        Deviation::NoFlag,
        Deviation::FieldOrder,
        Deviation::StraySeparator,
        Deviation::FlagCase,
        Deviation::NoDataFlag,
        Deviation::TrailingBytes,
        Deviation::StrayCharacter,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Deviation::NoCrlf => "no_crlf",
            Deviation::NoQn => "no_qn",
            Deviation::NoFlag => "no_flag",
            Deviation::FieldOrder => "field_order",
            Deviation::StraySeparator => "stray_separator",
            Deviation::FlagCase => "flag_case",
            Deviation::NoDataFlag => "no_data_flag",
            Deviation::TrailingBytes => "trailing_bytes",
            Deviation::StrayCharacter => "stray_character",
        }
    }
}

impl fmt::Display for Deviation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The standard's header order.
const HEADER_ORDER: [&str; 8] = ["QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO"];

/// The deviations of `frame`, which [`crate::parse_packet`] accepted as `packet`.
pub fn deviations(frame: &[u8], packet: &Packet) -> Vec<Deviation> {
    let mut found = Vec::new();
    if !frame.ends_with(b"\r\n") {
        found.push(Deviation::NoCrlf);
    }
    if packet.qn().is_none() {
        found.push(Deviation::NoQn);
    }
    if packet.flag().is_none() {
        found.push(Deviation::NoFlag);
    }
    let body = frame.strip_suffix(b"\r\n").unwrap_or(frame);
    let data =
        body.get(6..body.len().saturating_sub(4)).and_then(|d| std::str::from_utf8(d).ok()).unwrap_or("");
    let trimmed = data.trim_end_matches(super::packet::is_padding);
    if trimmed.len() < data.len() {
        found.push(Deviation::TrailingBytes);
    }
    let (header, cp) = trimmed.split_once("CP=&&").unwrap_or((trimmed, ""));
    let padded = super::packet::is_padding;
    let positions: Vec<usize> = header
        .split(';')
        .filter_map(|item| item.trim_start_matches(padded).split_once('=').map(|(key, _)| key))
        .filter_map(|key| HEADER_ORDER.iter().position(|k| *k == key))
        .collect();
    if positions.windows(2).any(|w| w[0] > w[1]) {
        found.push(Deviation::FieldOrder);
    }
    let cp = cp.strip_suffix("&&").unwrap_or(cp);
    let stray = |text: &str, seps: &[char]| text.split(seps).any(str::is_empty);
    if stray(header.strip_suffix(';').unwrap_or(header), &[';']) || (!cp.is_empty() && stray(cp, &[';', ',']))
    {
        found.push(Deviation::StraySeparator);
    }
    // `header` ends where `CP=&&` starts, so its last item is the padding
    // (if any) before `CP`.
    if header.split(';').chain(cp.split([';', ','])).any(|item| item.starts_with(padded)) {
        found.push(Deviation::StrayCharacter);
    }
    let lower_case_flag = cp.split([';', ',']).filter_map(|item| item.split_once("-Flag=")).any(|(_, v)| {
        v.bytes().any(|b| b.is_ascii_lowercase()) && !matches!(DataFlag::parse(v), DataFlag::Other(_))
    });
    if lower_case_flag {
        found.push(Deviation::FlagCase);
    }
    let unflagged = packet.pollutants().into_iter().any(|p| {
        packet.measurements().iter().any(|m| m.pollutant == p && m.suffix != Suffix::Flag)
            && packet.data_flag(p).is_none()
    });
    if unflagged {
        found.push(Deviation::NoDataFlag);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{frame, parse_packet};

    const STANDARD: &str = "QN=20260315100000123;ST=32;CN=2061;PW=123456;MN=LD13;Flag=5;CP=&&DataTime=20260315100000;w01018-Avg=35,w01018-Flag=N&&";

    /// Frames `data` (with `\r\n` unless `crlf` is false), parses it and
    /// compares its deviations with `expect`.
    fn check(data: &str, crlf: bool, expect: &[Deviation]) {
        let mut bytes = frame(data.as_bytes());
        if !crlf {
            bytes.truncate(bytes.len() - 2);
        }
        let packet = parse_packet(&bytes).unwrap_or_else(|e| panic!("{data}: {e}"));
        assert_eq!(deviations(&bytes, &packet), expect, "{data}");
    }

    #[test]
    fn each_real_world_deviation_is_accepted_and_named() {
        check(STANDARD, true, &[]);
        check(STANDARD, false, &[Deviation::NoCrlf]);
        // HJ/T 212-2005 style, 2005 pollutant code without a flag.
        check(
            "ST=32;CN=2061;PW=123456;MN=LD13;CP=&&DataTime=20260315100000;011-Avg=35&&",
            true,
            &[Deviation::NoQn, Deviation::NoFlag, Deviation::NoDataFlag],
        );
        check(
            "QN=20260315100000123;ST=32;CN=2061;PW=123456;MN=LD13;Flag=7;PNO=1;PNUM=2;CP=&&DataTime=20260315100000;w01018-Avg=35,w01018-Flag=N&&",
            true,
            &[Deviation::FieldOrder],
        );
        check(
            "QN=20260315100000123;ST=32;;CN=2061;PW=123456;MN=LD13;Flag=5;CP=&&DataTime=20260315100000;w01018-Avg=35,,w01018-Flag=N;&&",
            true,
            &[Deviation::StraySeparator],
        );
        check(&STANDARD.replace("Flag=N", "Flag=n"), true, &[Deviation::FlagCase]);
        check(&format!("{STANDARD} \0"), true, &[Deviation::TrailingBytes]);
        for stray in [" ", "\r", "\t", "\0"] {
            let data = STANDARD
                .replace(";DataTime", &format!(";{stray}DataTime"))
                .replace(";w01018-Avg", &format!(";{stray}w01018-Avg"))
                .replace(",w01018-Flag", &format!(",{stray}w01018-Flag"))
                .replace(";CN=", &format!(";{stray}CN="));
            check(&data, true, &[Deviation::StrayCharacter]);
            check(&STANDARD.replace(";CP=&&", &format!(";{stray}CP=&&")), true, &[Deviation::StrayCharacter]);
            check(
                &STANDARD.replace("&&DataTime", &format!("&&{stray}DataTime")),
                true,
                &[Deviation::StrayCharacter],
            );
        }
    }

    #[test]
    fn what_cannot_be_read_with_certainty_is_still_rejected() {
        for (data, reason) in [
            (STANDARD.replace(";ST=32", ";ST=32;ST=31"), "ST"),
            (STANDARD.replace("&&DataTime", "&DataTime"), "CP"),
            (format!("{STANDARD}x"), "CP"),
            (STANDARD.replace("PW=123456", "PW=12 3456"), "PW"),
            // A stray byte anywhere but before a key leaves doubt.
            (STANDARD.replace("w01018-Avg=35", "w01018-Avg= 35"), "w01018-Avg"),
            (STANDARD.replace("w01018-Avg=35", "w01018 -Avg=35"), "w01018"),
            (STANDARD.replace("PW=123456", "PW= 123456"), "PW"),
        ] {
            let e = parse_packet(&frame(data.as_bytes())).unwrap_err().to_string();
            assert!(e.contains(reason), "{data}: {e}");
        }
    }
}
