//! Compact score attestations for QR codes: the fields of a signed
//! attestation and its Ed25519 signature as binary, written as decimal
//! digits (QR numeric mode) after an uppercase URL, so that the page's QR
//! code stays at version 10 or lower at error-correction level M.
//!
//! The compact form carries everything needed to rebuild the signed note
//! byte for byte ([`decode`] returns it), so its signature is the note's own
//! and `ecocode attest verify` checks it as any other note. `docs/ledger.md`
//! pins the layout (version 1) with a test vector; the unit tests below
//! check the vector.
//!
//! Layout, version 1 (integers big-endian, `varint` = unsigned LEB128 of at
//! most 10 bytes with no superfluous trailing zero groups, `str` = one
//! length byte and that many UTF-8 bytes):
//!
//! ```text
//! u8        format version, 0x01
//! [u8; 4]   key id of the signature
//! [u8; 64]  Ed25519 signature of the note body
//! u8        flags: bit 0 veto, bit 1 disputed, bits 2-3 grade (INTEGRITY,
//!           GOOD, WARNING, POOR), bits 4-5 code (GREEN, YELLOW, RED),
//!           bits 6-7 as_of fraction digits (none, 3, 6, 9)
//! u8        points
//! [u8; 12]  USCC: its 18 characters as a base-31 number over the GB
//!           32100-2015 alphabet 0-9 A-H J-N P-R T U W-Y
//! varint    as_of, whole seconds since 1970-01-01T00:00:00Z
//! u32       as_of fraction as written (absent when the flags say none)
//! varint    tree_size
//! [u8; 32]  root
//! str       key name
//! u8        how many leading bytes origin shares with the key name
//! str       the rest of origin
//! str       model
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::attestation::Attestation;
use crate::error::{Error, Result};

/// The layout's version byte.
pub const VERSION: u8 = 1;
/// The path segment before the digits: `<BASE URL>/Q/<digits>`.
pub const PATH: &str = "/Q/";

const GRADES: [&str; 4] = ["INTEGRITY", "GOOD", "WARNING", "POOR"];
const CODES: [&str; 3] = ["GREEN", "YELLOW", "RED"];
/// Digits of a group of `n` bytes (index `n`), the fewest that hold 256^n - 1.
const GROUP_DIGITS: [usize; 8] = [0, 3, 5, 8, 10, 13, 15, 17];
const GROUP_BYTES: usize = 7;
/// The USCC's characters (GB 32100-2015: no I, O, S, V, Z).
const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// A signed attestation: what it states plus the signature that makes the
/// note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    pub attestation: Attestation,
    pub key_name: String,
    pub key_id: [u8; 4],
    pub signature: [u8; 64],
}

impl Signed {
    /// Reads a signed note (as [`crate::note::sign`] writes it, with exactly
    /// one signature line). Does not verify the signature.
    pub fn from_note(note: &str) -> Result<Signed> {
        let bad = |what: &str| Error::Invalid(format!("compact attestation: {what}"));
        let (body, sig) = note.rsplit_once("\n\n").ok_or_else(|| bad("the note has no signature"))?;
        let body = format!("{body}\n");
        let line = sig
            .strip_prefix("\u{2014} ")
            .and_then(|l| l.strip_suffix('\n'))
            .filter(|l| !l.contains('\n'))
            .ok_or_else(|| bad("the note needs exactly one signature line"))?;
        let (key_name, b64) = line.split_once(' ').ok_or_else(|| bad("malformed signature line"))?;
        let raw = B64.decode(b64).map_err(|_| bad("signature is not base64"))?;
        if raw.len() != 68 {
            return Err(bad("signature is not a 4-byte key id and 64 bytes of Ed25519"));
        }
        let mut key_id = [0; 4];
        key_id.copy_from_slice(&raw[..4]);
        let mut signature = [0; 64];
        signature.copy_from_slice(&raw[4..]);
        Ok(Signed {
            attestation: Attestation::parse(&body)?,
            key_name: key_name.to_owned(),
            key_id,
            signature,
        })
    }

    /// The signed note, byte for byte as signed.
    pub fn note(&self) -> String {
        let mut sig = Vec::with_capacity(68);
        sig.extend_from_slice(&self.key_id);
        sig.extend_from_slice(&self.signature);
        format!("{}\n\u{2014} {} {}\n", self.attestation.body(), self.key_name, B64.encode(sig))
    }

    /// The version 1 bytes. An attestation the layout cannot hold exactly
    /// (points above 255, an unknown grade or code, an `as_of` not in the
    /// form the service writes, strings over 255 bytes) is an error; its
    /// note is then shown in full.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let bad = |what: String| Error::Invalid(format!("compact attestation: {what}"));
        let a = &self.attestation;
        let grade =
            GRADES.iter().position(|g| *g == a.grade).ok_or_else(|| bad(format!("grade {:?}", a.grade)))?;
        let code =
            CODES.iter().position(|c| *c == a.code).ok_or_else(|| bad(format!("code {:?}", a.code)))?;
        let points = u8::try_from(a.points).map_err(|_| bad(format!("points {}", a.points)))?;
        let uscc = pack_uscc(&a.uscc)
            .ok_or_else(|| bad(format!("USCC {:?} is not 18 characters of the USCC alphabet", a.uscc)))?;
        let (seconds, fraction) = parse_instant(&a.as_of)
            .ok_or_else(|| bad(format!("as_of {:?} is not YYYY-MM-DDTHH:MM:SS[.fff]Z", a.as_of)))?;
        let digits = fraction.map_or(0, |(digits, _)| digits);
        let mut out = Vec::with_capacity(200);
        out.push(VERSION);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&self.signature);
        out.push(
            u8::from(a.veto)
                | (u8::from(a.disputed) << 1)
                | ((grade as u8) << 2)
                | ((code as u8) << 4)
                | ((digits as u8 / 3) << 6),
        );
        out.push(points);
        out.extend_from_slice(&uscc);
        varint(&mut out, seconds);
        if let Some((_, value)) = fraction {
            // Below 10^9, as parsed.
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        varint(&mut out, a.tree_size);
        out.extend_from_slice(&a.root);
        // The origin is often the key name and a suffix (`ecocode.local`,
        // `ecocode.local/ledger`): only what differs is written.
        let mut shared = self.key_name.bytes().zip(a.origin.bytes()).take_while(|(k, o)| k == o).count();
        while !a.origin.is_char_boundary(shared) {
            shared -= 1;
        }
        let key_name = short_text("key name", &self.key_name)?;
        out.push(key_name.len() as u8);
        out.extend_from_slice(key_name);
        // At most the key name's length, so at most 255.
        out.push(shared as u8);
        let rest = short_text("origin", &a.origin[shared..])?;
        out.push(rest.len() as u8);
        out.extend_from_slice(rest);
        let model = short_text("model", &a.model)?;
        out.push(model.len() as u8);
        out.extend_from_slice(model);
        // Exactness is the point: what decodes must be what was signed.
        if Signed::from_bytes(&out).as_ref() != Ok(self) {
            return Err(bad("the note would not rebuild byte for byte".into()));
        }
        Ok(out)
    }

    /// Reads version 1 bytes; every field checked, no trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Signed> {
        let bad = |what: &str| Error::Invalid(format!("compact attestation: {what}"));
        let mut r = Reader { bytes, at: 0 };
        match r.take(1).ok_or_else(|| bad("empty"))?[0] {
            VERSION => {}
            v => {
                return Err(bad(&format!(
                    "unknown format version {v}; this verifier reads version {VERSION}"
                )));
            }
        }
        let short = || bad("too short");
        let key_id: [u8; 4] = r.take(4).ok_or_else(short)?.try_into().map_err(|_| short())?;
        let signature: [u8; 64] = r.take(64).ok_or_else(short)?.try_into().map_err(|_| short())?;
        let flags = r.take(1).ok_or_else(short)?[0];
        let points = i64::from(r.take(1).ok_or_else(short)?[0]);
        let uscc = unpack_uscc(r.take(12).ok_or_else(short)?).ok_or_else(|| bad("USCC is out of range"))?;
        let code = *CODES.get(usize::from((flags >> 4) & 3)).ok_or_else(|| bad("code bits are 3"))?;
        let seconds = r.varint().ok_or_else(|| bad("as_of is not a varint"))?;
        let digits = usize::from(flags >> 6) * 3;
        let fraction = if digits == 0 {
            None
        } else {
            let raw: [u8; 4] = r.take(4).ok_or_else(short)?.try_into().map_err(|_| short())?;
            Some((digits, u64::from(u32::from_be_bytes(raw))))
        };
        let as_of = format_instant(seconds, fraction).ok_or_else(|| bad("as_of is out of range"))?;
        let tree_size = r.varint().ok_or_else(|| bad("tree_size is not a varint"))?;
        let root: [u8; 32] = r.take(32).ok_or_else(short)?.try_into().map_err(|_| short())?;
        let text = |raw: Option<&[u8]>| -> Result<String> {
            String::from_utf8(raw.ok_or_else(short)?.to_vec()).map_err(|_| bad("a string is not UTF-8"))
        };
        let key_name = text(r.text())?;
        let shared = usize::from(r.take(1).ok_or_else(short)?[0]);
        let prefix = key_name.get(..shared).ok_or_else(|| bad("origin shares more than the key name"))?;
        let origin = format!("{prefix}{}", text(r.text())?);
        let model = text(r.text())?;
        if r.at != bytes.len() {
            return Err(bad("trailing bytes"));
        }
        let attestation = Attestation {
            origin,
            uscc,
            points,
            grade: GRADES[usize::from((flags >> 2) & 3)].to_owned(),
            code: code.to_owned(),
            veto: flags & 1 == 1,
            disputed: flags & 2 == 2,
            model,
            // Version 1 has no room for it: the page's QR notes name the
            // model by version only (score proofs carry the full note).
            model_entry: None,
            as_of,
            tree_size,
            root,
        };
        // The body must read back as the note's parser reads it (no line
        // breaks smuggled in a string).
        if Attestation::parse(&attestation.body()).as_ref() != Ok(&attestation)
            || key_name.contains([' ', '\n'])
        {
            return Err(bad("a string field holds a space or line break where the note allows none"));
        }
        Ok(Signed { attestation, key_name, key_id, signature })
    }
}

/// The bytes of `text`, if at most 255 (a `str` field's limit).
fn short_text<'a>(what: &str, text: &'a str) -> Result<&'a [u8]> {
    if text.len() > 255 {
        return Err(Error::Invalid(format!("compact attestation: {what} is over 255 bytes")));
    }
    Ok(text.as_bytes())
}

/// The 18 characters of a USCC as a base-31 number in 12 bytes; `None`
/// for anything else.
fn pack_uscc(uscc: &str) -> Option<[u8; 12]> {
    if uscc.len() != 18 {
        return None;
    }
    let mut value: u128 = 0;
    for c in uscc.bytes() {
        let digit = USCC_ALPHABET.iter().position(|&a| a == c)?;
        value = value * 31 + digit as u128;
    }
    value.to_be_bytes()[4..].try_into().ok()
}

/// The inverse of [`pack_uscc`]; `None` for a number of 31^18 or more.
fn unpack_uscc(bytes: &[u8]) -> Option<String> {
    let mut full = [0u8; 16];
    full[4..].copy_from_slice(bytes);
    let mut value = u128::from_be_bytes(full);
    let mut out = [0u8; 18];
    for slot in out.iter_mut().rev() {
        *slot = USCC_ALPHABET[(value % 31) as usize];
        value /= 31;
    }
    (value == 0).then(|| String::from_utf8_lossy(&out).into_owned())
}

/// The compact text of a signed note for a QR code:
/// `<BASE URL uppercased>/Q/<digits>` with `base_url` such as
/// `http://host:port`. Every character is in the QR alphanumeric set, the
/// digits in numeric mode.
pub fn qr_text(base_url: &str, signed_note: &str) -> Result<String> {
    let bytes = Signed::from_note(signed_note)?.to_bytes()?;
    Ok(format!("{}{PATH}{}", base_url.trim_end_matches('/').to_ascii_uppercase(), to_digits(&bytes)))
}

/// The digits of a compact QR text (`.../Q/<digits>`, any case, or the
/// bare digits), if it is one.
pub fn digits_of(text: &str) -> Option<&str> {
    let text = text.trim();
    let digits = match text.rfind(PATH).or_else(|| text.rfind("/q/")) {
        Some(at) => &text[at + PATH.len()..],
        None => text,
    };
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// The signed note inside a compact QR text (or its bare digits).
pub fn decode(text: &str) -> Result<String> {
    let digits = digits_of(text)
        .ok_or_else(|| Error::Invalid("compact attestation: no /Q/<digits> in the text".into()))?;
    Ok(Signed::from_bytes(&from_digits(digits)?)?.note())
}

/// Bytes as decimal digits: each group of 7 bytes (big-endian) as 17
/// digits, a last shorter group of n bytes as 3, 5, 8, 10, 13 or 15 digits,
/// zero-padded.
pub fn to_digits(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 5 / 2 + 1);
    for group in bytes.chunks(GROUP_BYTES) {
        let value = group.iter().fold(0u64, |v, &b| v << 8 | u64::from(b));
        out.push_str(&format!("{value:0width$}", width = GROUP_DIGITS[group.len()]));
    }
    out
}

/// The inverse of [`to_digits`]; a group above its byte count's range, or
/// a length no byte count gives, is an error.
pub fn from_digits(digits: &str) -> Result<Vec<u8>> {
    let bad = |what: &str| Error::Invalid(format!("compact attestation digits: {what}"));
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not all decimal digits"));
    }
    let full = GROUP_DIGITS[GROUP_BYTES];
    let rest = digits.len() % full;
    let last = GROUP_DIGITS
        .iter()
        .position(|&d| d == rest)
        .ok_or_else(|| bad("length is not a whole number of groups"))?;
    let mut out = Vec::with_capacity(digits.len() / full * GROUP_BYTES + last);
    let mut at = 0;
    while at < digits.len() {
        let (width, n) = if digits.len() - at >= full { (full, GROUP_BYTES) } else { (rest, last) };
        let value: u64 = digits[at..at + width].parse().map_err(|_| bad("not all decimal digits"))?;
        if value >> (8 * n) != 0 {
            return Err(bad("a group is larger than its bytes"));
        }
        out.extend_from_slice(&value.to_be_bytes()[8 - n..]);
        at += width;
    }
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }

    /// A `str`: one length byte and that many bytes.
    fn text(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(self.take(1)?[0]);
        self.take(len)
    }

    /// Unsigned LEB128, canonical (no trailing zero group), at most 64 bits.
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.take(1)?[0];
            let part = u64::from(b & 0x7f);
            if i == 9 && part > 1 {
                return None;
            }
            value |= part << (7 * i);
            if b & 0x80 == 0 {
                return (i == 0 || b != 0).then_some(value);
            }
        }
        None
    }
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// `YYYY-MM-DDTHH:MM:SS[.f{3,6,9}]Z` as seconds since the epoch and the
/// fraction (digit count, value as written); `None` for anything else,
/// including instants before 1970.
fn parse_instant(text: &str) -> Option<(u64, Option<(usize, u64)>)> {
    let b = text.as_bytes();
    if !text.is_ascii()
        || b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let s = text.get(r)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let fraction = match &text[19..] {
        "Z" => None,
        rest => {
            let digits = rest.strip_prefix('.')?.strip_suffix('Z')?;
            if ![3, 6, 9].contains(&digits.len()) {
                return None;
            }
            Some((digits.len(), num(20..20 + digits.len())?))
        }
    };
    if year < 1970
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year as i64, month as i64, day as i64);
    let seconds = u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second;
    // A day past the month's end would not round-trip.
    (format_instant(seconds, fraction)? == text).then_some((seconds, fraction))
}

/// The inverse of [`parse_instant`].
fn format_instant(seconds: u64, fraction: Option<(usize, u64)>) -> Option<String> {
    let days = i64::try_from(seconds / 86_400).ok()?;
    let (year, month, day) = civil_from_days(days);
    if year > 9999 {
        return None;
    }
    let s = seconds % 86_400;
    let mut out = format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    if let Some((digits, value)) = fraction {
        if value >= 10u64.pow(digits as u32) {
            return None;
        }
        out.push_str(&format!(".{value:0digits$}"));
    }
    out.push('Z');
    Some(out)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note;

    fn sample() -> Attestation {
        Attestation {
            origin: "ecocode.local/ledger".into(),
            uscc: "91330421739237858X".into(),
            points: 87,
            grade: "GOOD".into(),
            code: "GREEN".into(),
            veto: false,
            disputed: true,
            model: "ecocode-2026.1".into(),
            model_entry: None,
            as_of: "2026-11-26T09:00:00Z".into(),
            tree_size: 1234,
            root: [7; 32],
        }
    }

    /// The test vector of docs/ledger.md: the pinned attestation signed
    /// with seed 32 × 0x03 under the key name `ecocode.test`.
    const VECTOR_HEX: &str = concat!(
        "01cb8f13db8a92e98119423061a0da649446dfa92ca22cba2a6f8ff9fc266bb2",
        "c63e89d2097558da60dbc2a9d6e3f309ca92faae5f90d3722ea13690770b418e",
        "79f072730b065700a889fba4c66b31cb72156690ea9fd806d209070707070707",
        "07070707070707070707070707070707070707070707070707070c65636f636f",
        "64652e74657374080c6c6f63616c2f6c65646765720e65636f636f64652d3230",
        "32362e31",
    );
    const VECTOR_TEXT: &str = concat!(
        "HTTP://ECOCODE.EXAMPLE/Q/",
        "00505290350627474657256150582153286147213292992337245648124314619897",
        "70973938133778057591201447157680275479288589431853841370973434336114",
        "13125104652716865401035203121671742448904684330311030172572370167440",
        "66040894726473991019780516010411590197805160104115901978051601041159",
        "01978051601041159019780516911112792798849967931094932497200238718819",
        "27422023678780519285543788039002593135410812762117003550769",
    );

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_spec_vector_is_pinned() {
        let note = note::sign(&sample().body(), "ecocode.test", &[3; 32]).unwrap();
        let signed = Signed::from_note(&note).unwrap();
        let bytes = signed.to_bytes().unwrap();
        let text = qr_text("http://ecocode.example", &note).unwrap();
        assert_eq!(bytes.len(), 164);
        assert_eq!(hex(&bytes), VECTOR_HEX);
        assert_eq!(text, VECTOR_TEXT);
        assert_eq!(decode(VECTOR_TEXT).unwrap(), note);
        let public = note::public_key(&[3; 32]);
        assert_eq!(
            crate::attestation::verify(&decode(VECTOR_TEXT).unwrap(), "ecocode.test", &public).unwrap(),
            sample()
        );
    }

    #[test]
    fn notes_rebuild_byte_for_byte() {
        let seed = [5; 32];
        let mut cases = vec![sample()];
        for (as_of, points, grade, code, veto) in [
            ("1970-01-01T00:00:00Z", 0, "POOR", "RED", true),
            ("2024-02-29T23:59:59.001Z", 100, "INTEGRITY", "GREEN", false),
            ("2026-12-31T00:00:00.000001Z", 65, "WARNING", "YELLOW", false),
            ("9999-12-31T23:59:59.999999999Z", 255, "POOR", "RED", true),
        ] {
            let mut a = sample();
            a.as_of = as_of.into();
            a.points = points;
            a.grade = grade.into();
            a.code = code.into();
            a.veto = veto;
            a.tree_size = i64::MAX as u64;
            a.model = "模型-2026".into();
            cases.push(a);
        }
        for a in cases {
            let note = note::sign(&a.body(), "ecocode.test", &seed).unwrap();
            let text = qr_text("http://127.0.0.1:8080", &note).unwrap();
            assert!(text.starts_with("HTTP://127.0.0.1:8080/Q/"), "{text}");
            assert_eq!(decode(&text).unwrap(), note, "{a:?}");
            assert_eq!(decode(&text.to_lowercase()).unwrap(), note);
            let digits = digits_of(&text).unwrap();
            assert_eq!(decode(digits).unwrap(), note);
        }
    }

    #[test]
    fn what_the_layout_cannot_hold_exactly_is_refused() {
        let seed = [5; 32];
        let edits: [fn(&mut Attestation); 8] = [
            |a| a.uscc = "91330421739237858I".into(),
            |a| a.uscc = "9133042173923785".into(),
            |a| a.as_of = "2026-11-26T09:00:00+08:00".into(),
            |a| a.as_of = "2026-11-26T09:00:00.5Z".into(),
            |a| a.as_of = "2026-02-30T09:00:00Z".into(),
            |a| a.points = 256,
            |a| a.code = "BLUE".into(),
            |a| a.model = "x".repeat(256),
        ];
        for edit in edits {
            let mut a = sample();
            edit(&mut a);
            let note = note::sign(&a.body(), "ecocode.test", &seed).unwrap();
            assert!(qr_text("http://h", &note).is_err(), "{a:?}");
        }
    }

    #[test]
    fn digits_round_trip_and_reject_out_of_range_groups() {
        for n in 0..40 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 255) as u8).collect();
            assert_eq!(from_digits(&to_digits(&bytes)).unwrap(), bytes);
            let max = vec![0xff; n];
            assert_eq!(from_digits(&to_digits(&max)).unwrap(), max);
        }
        for bad in ["256", "1", "99999999999999999", "12a", "65536"] {
            assert!(from_digits(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn altered_or_truncated_forms_are_errors_not_panics() {
        let note = note::sign(&sample().body(), "ecocode.test", &[3; 32]).unwrap();
        let bytes = Signed::from_note(&note).unwrap().to_bytes().unwrap();
        for end in 0..bytes.len() {
            assert!(Signed::from_bytes(&bytes[..end]).is_err(), "{end}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Signed::from_bytes(&longer).is_err());
        let mut version = bytes.clone();
        version[0] = 2;
        assert!(Signed::from_bytes(&version).unwrap_err().to_string().contains("unknown format version 2"));
        // A changed field decodes, but its note no longer verifies.
        let public = note::public_key(&[3; 32]);
        let mut points = bytes.clone();
        points[70] = 97;
        let altered = Signed::from_bytes(&points).unwrap().note();
        assert!(crate::attestation::verify(&altered, "ecocode.test", &public).is_err());
        // Every single-byte change is an error or a note that fails to verify.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x41;
            if let Ok(s) = Signed::from_bytes(&b) {
                assert!(crate::attestation::verify(&s.note(), "ecocode.test", &public).is_err(), "byte {i}");
            }
        }
    }
}
