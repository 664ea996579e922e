//! Score attestations: a score as a signed note that a lender files with a
//! loan and anyone checks offline against the service's verifier key.
//!
//! Body (each line ends in `\n`; the note's signature covers all of it):
//! ```text
//! <origin>/score
//! uscc 91330421739237858X
//! points 87
//! grade GOOD
//! code GREEN
//! veto false
//! disputed false
//! model ecocode-2026.1
//! model_entry <base64 hash of the ledger entry holding the model file>
//! as_of 2026-11-26T09:00:00Z
//! tree_size 1234
//! root <base64 root hash at tree_size>
//! ```
//! The `model_entry` line is new (issue 21); notes signed before it have
//! none and still parse (`model_entry: None`).
//! Grades and codes are the `ecocode.v1` enum names; `docs/ledger.md`
//! specifies the layout.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::note;

/// What an attestation states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    /// The ledger's checkpoint origin; the first body line is `<origin>/score`.
    pub origin: String,
    pub uscc: String,
    pub points: i64,
    /// `INTEGRITY`, `GOOD`, `WARNING` or `POOR`.
    pub grade: String,
    /// `GREEN`, `YELLOW` or `RED`.
    pub code: String,
    pub veto: bool,
    pub disputed: bool,
    pub model: String,
    /// The entry hash of the ledger entry holding the model's exact file.
    pub model_entry: Option<Hash>,
    /// RFC 3339.
    pub as_of: String,
    pub tree_size: u64,
    pub root: Hash,
}

const FIELDS: [&str; 10] =
    ["uscc", "points", "grade", "code", "veto", "disputed", "model", "as_of", "tree_size", "root"];

impl Attestation {
    /// The note body, exactly as signed.
    pub fn body(&self) -> String {
        let model_entry = match &self.model_entry {
            Some(hash) => format!("\nmodel_entry {}", B64.encode(hash)),
            None => String::new(),
        };
        format!(
            "{}/score\nuscc {}\npoints {}\ngrade {}\ncode {}\nveto {}\ndisputed {}\nmodel {}{}\nas_of {}\ntree_size {}\nroot {}\n",
            self.origin,
            self.uscc,
            self.points,
            self.grade,
            self.code,
            self.veto,
            self.disputed,
            self.model,
            model_entry,
            self.as_of,
            self.tree_size,
            B64.encode(self.root),
        )
    }

    /// Parses a body written by [`Attestation::body`]; every field, in order.
    pub fn parse(body: &str) -> Result<Attestation> {
        let bad = |what: &str| Error::Invalid(format!("attestation: {what}"));
        let text = body.strip_suffix('\n').ok_or_else(|| bad("body does not end with a newline"))?;
        let mut all: Vec<&str> = text.split('\n').collect();
        // The optional model_entry line (after model): taken out first.
        let mut model_entry = None;
        if let Some(line) = all.get(8).and_then(|l| l.strip_prefix("model_entry ")) {
            let hash = B64
                .decode(line)
                .ok()
                .and_then(|b| Hash::try_from(b.as_slice()).ok())
                .ok_or_else(|| bad("model_entry is not 32 bytes of base64"))?;
            model_entry = Some(hash);
            all.remove(8);
        }
        let mut lines = all.into_iter();
        let origin = lines
            .next()
            .and_then(|l| l.strip_suffix("/score"))
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("first line is not <origin>/score"))?;
        let mut values = Vec::with_capacity(FIELDS.len());
        for field in FIELDS {
            let line = lines.next().ok_or_else(|| bad(&format!("missing {field} line")))?;
            let value = line
                .strip_prefix(field)
                .and_then(|rest| rest.strip_prefix(' '))
                .ok_or_else(|| bad(&format!("expected the {field} line")))?;
            values.push(value);
        }
        if lines.next().is_some() {
            return Err(bad("unexpected lines after root"));
        }
        let number = |i: usize, field: &str| -> Result<i64> {
            values[i].parse().map_err(|_| bad(&format!("{field} is not a whole number")))
        };
        let flag = |i: usize, field: &str| -> Result<bool> {
            values[i].parse().map_err(|_| bad(&format!("{field} is not true or false")))
        };
        let tree_size = u64::try_from(number(8, "tree_size")?).map_err(|_| bad("tree_size is negative"))?;
        let root = B64
            .decode(values[9])
            .ok()
            .and_then(|b| Hash::try_from(b.as_slice()).ok())
            .ok_or_else(|| bad("root is not 32 bytes of base64"))?;
        Ok(Attestation {
            origin: origin.to_owned(),
            uscc: values[0].to_owned(),
            points: number(1, "points")?,
            grade: values[2].to_owned(),
            code: values[3].to_owned(),
            veto: flag(4, "veto")?,
            disputed: flag(5, "disputed")?,
            model: values[6].to_owned(),
            model_entry,
            as_of: values[7].to_owned(),
            tree_size,
            root,
        })
    }

    /// The `(field, value)` lines after the first, for display.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let body = self.body();
        let values: Vec<String> = body
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with("model_entry "))
            .filter_map(|l| l.split_once(' '))
            .map(|(_, v)| v.to_owned())
            .collect();
        let mut fields: Vec<(&'static str, String)> = FIELDS.into_iter().zip(values).collect();
        if let Some(hash) = &self.model_entry {
            fields.insert(7, ("model_entry", B64.encode(hash)));
        }
        fields
    }
}

/// The query parameter that carries a signed attestation in a QR code's URL.
pub const QR_PARAM: &str = "att";

/// The full (first) form of an enterprise's QR text: its page URL with the
/// whole signed note (body and signature lines, exactly as signed) appended
/// as `?att=<base64url without padding>`. The page now shows the compact
/// form ([`crate::compact::qr_text`]) and falls back to this one only for
/// an attestation the compact layout cannot hold; both are read by
/// [`note_from_qr_text`]. `docs/ledger.md` specifies both.
pub fn qr_text(page_url: &str, signed_note: &str) -> String {
    format!("{page_url}?{QR_PARAM}={}", B64URL.encode(signed_note))
}

/// The signed note inside a QR code's text: the compact form
/// (`<URL>/Q/<digits>`, [`crate::compact`]), or the full form written by
/// [`qr_text`] (or the bare value of its `att` parameter).
pub fn note_from_qr_text(text: &str) -> Result<String> {
    let text = text.trim();
    if crate::compact::digits_of(text).is_some() {
        return crate::compact::decode(text);
    }
    let value = match text.split_once('?') {
        Some((_, query)) => query
            .split('&')
            .find_map(|pair| pair.strip_prefix(QR_PARAM).and_then(|v| v.strip_prefix('=')))
            .ok_or_else(|| Error::Invalid(format!("QR text: no {QR_PARAM}= parameter and no /Q/<digits>")))?,
        None => text,
    };
    if crate::compact::digits_of(value).is_some() {
        return crate::compact::decode(value);
    }
    let bytes = B64URL
        .decode(value)
        .map_err(|_| Error::Invalid(format!("QR text: {QR_PARAM} is not base64url without padding")))?;
    String::from_utf8(bytes).map_err(|_| Error::Invalid("QR text: the attestation is not UTF-8".into()))
}

/// Checks `signed_note` against the verifier key and returns what it attests.
pub fn verify(signed_note: &str, key_name: &str, public_key: &[u8; 32]) -> Result<Attestation> {
    let body = note::verify(signed_note, key_name, public_key)?;
    Attestation::parse(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn body_layout_is_pinned() {
        let body = sample().body();
        assert_eq!(
            body,
            "ecocode.local/ledger/score\nuscc 91330421739237858X\npoints 87\ngrade GOOD\ncode GREEN\nveto false\n\
             disputed true\nmodel ecocode-2026.1\nas_of 2026-11-26T09:00:00Z\ntree_size 1234\n\
             root BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"
        );
        assert_eq!(Attestation::parse(&body).unwrap(), sample());
    }

    // Notes signed before issue 21 have no model_entry line: they still
    // parse, and a note with one round-trips it.
    #[test]
    fn the_model_entry_line_is_optional_and_round_trips() {
        let with = Attestation { model_entry: Some([9; 32]), ..sample() };
        let body = with.body();
        assert!(body.contains("\nmodel ecocode-2026.1\nmodel_entry CQkJ"), "{body}");
        assert_eq!(Attestation::parse(&body).unwrap(), with);
        assert_eq!(Attestation::parse(&sample().body()).unwrap().model_entry, None);
        assert_eq!(with.fields()[7].0, "model_entry");
    }

    #[test]
    fn signed_attestations_verify_and_altered_ones_do_not() {
        let seed = [3; 32];
        let note = note::sign(&sample().body(), "ecocode.test", &seed).unwrap();
        let public = note::public_key(&seed);
        assert_eq!(verify(&note, "ecocode.test", &public).unwrap(), sample());
        let altered = note.replace("points 87", "points 97");
        assert!(verify(&altered, "ecocode.test", &public).is_err());
    }

    #[test]
    fn qr_text_carries_the_signed_note_exactly() {
        let note = note::sign(&sample().body(), "ecocode.test", &[3; 32]).unwrap();
        let text = qr_text("http://127.0.0.1:8080/e/91330421739237858X", &note);
        assert!(text.starts_with("http://127.0.0.1:8080/e/91330421739237858X?att="));
        assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{text}");
        assert_eq!(note_from_qr_text(&text).unwrap(), note);
        let value = text.split_once("att=").unwrap().1;
        assert_eq!(note_from_qr_text(value).unwrap(), note);
        let public = note::public_key(&[3; 32]);
        assert_eq!(verify(&note_from_qr_text(&text).unwrap(), "ecocode.test", &public).unwrap(), sample());
        for bad in ["http://x/e/1?b=2", "http://x/e/1?att=%%%", "!!", "HTTP://X/Q/1", "HTTP://X/Q/256"] {
            assert!(note_from_qr_text(bad).is_err(), "{bad}");
        }
        // The compact form reads back as the same note, as a URL, as bare
        // digits and as the page's att= parameter.
        let compact = crate::compact::qr_text("http://127.0.0.1:8080", &note).unwrap();
        let digits = compact.rsplit_once('/').unwrap().1;
        for form in
            [compact.clone(), digits.to_owned(), format!("http://h/e/91330421739237858X?att={digits}")]
        {
            assert_eq!(note_from_qr_text(&form).unwrap(), note, "{form}");
        }
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        for body in
            ["", "\n", "x/score\n", "x/score\nuscc a\n", &sample().body().replace("points 87", "points x")]
        {
            assert!(Attestation::parse(body).is_err(), "{body:?}");
        }
    }
}
