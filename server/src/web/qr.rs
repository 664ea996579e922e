//! The QR code of an enterprise's page: the modules of a QR symbol as the
//! runs of dark squares a template draws as SVG `<rect>`s (no SVG text is
//! built here).

use qrcode::{Color, EcLevel, QrCode, Version};

use crate::error::{Error, Result};

/// Pixels per module: whole pixels keep the edges sharp for a camera (and
/// for `zbarimg` reading a screenshot).
pub const MODULE_PX: usize = 4;
/// White modules around the symbol, as the QR standard asks.
pub const QUIET_ZONE: usize = 4;

/// One horizontal run of dark modules, in pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub x: usize,
    pub y: usize,
    pub width: usize,
}

/// A QR symbol ready to draw.
#[derive(Clone, Debug)]
pub struct Symbol {
    /// Width and height in pixels, quiet zone included.
    pub size: usize,
    /// Pixels per module.
    pub module: usize,
    pub runs: Vec<Run>,
    /// The QR version (1 to 40) and modules per side, quiet zone excluded.
    pub version: i16,
    pub modules: usize,
}

/// Error correction of the page's QR: level M (15 % of the symbol may be
/// lost), which the compact attestation affords at version 10 or lower.
pub const EC_LEVEL: EcLevel = EcLevel::M;

/// The symbol of `text` at [`EC_LEVEL`], in the smallest version that
/// holds it (the encoder puts runs of digits in numeric mode and the
/// uppercase URL in alphanumeric mode).
pub fn symbol(text: &str) -> Result<Symbol> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EC_LEVEL)
        .map_err(|e| Error::Internal(format!("QR code of {} bytes: {e}", text.len())))?;
    let version = match code.version() {
        Version::Normal(v) | Version::Micro(v) => v,
    };
    let width = code.width();
    let colors = code.to_colors();
    let mut runs = Vec::new();
    for (row, line) in colors.chunks(width).enumerate() {
        let mut col = 0;
        while col < width {
            if line[col] == Color::Dark {
                let start = col;
                while col < width && line[col] == Color::Dark {
                    col += 1;
                }
                runs.push(Run {
                    x: (QUIET_ZONE + start) * MODULE_PX,
                    y: (QUIET_ZONE + row) * MODULE_PX,
                    width: (col - start) * MODULE_PX,
                });
            } else {
                col += 1;
            }
        }
    }
    Ok(Symbol {
        size: (width + 2 * QUIET_ZONE) * MODULE_PX,
        module: MODULE_PX,
        runs,
        version,
        modules: width,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symbol_has_finder_patterns_and_a_quiet_zone() {
        let s = symbol("http://127.0.0.1:8080/e/91330421739237858X").unwrap();
        // The top-left finder pattern: a 7-module dark run at the quiet zone.
        let edge = QUIET_ZONE * MODULE_PX;
        assert!(s.runs.contains(&Run { x: edge, y: edge, width: 7 * MODULE_PX }), "{:?}", &s.runs[..3]);
        assert!(s.runs.iter().all(|r| r.x >= edge && r.x + r.width <= s.size - edge));
    }

    /// An attestation as a deployment signs it: `host` its web address,
    /// `key` its key name and origin `<key>/ledger`, an evaluation time with
    /// nanoseconds (as the service's clock gives) and a large ledger.
    fn signed_note(key: &str) -> String {
        let statement = tlog::attestation::Attestation {
            origin: format!("{key}/ledger"),
            uscc: "91330421739237858X".into(),
            points: 74,
            grade: "WARNING".into(),
            code: "YELLOW".into(),
            veto: false,
            disputed: true,
            model: "ecocode-2026.1".into(),
            model_entry: None,
            as_of: "2026-11-26T09:41:07.123456789Z".into(),
            tree_size: 123_456_789_012,
            root: [0xa5; 32],
        };
        tlog::note::sign(&statement.body(), key, &[3; 32]).unwrap()
    }

    /// RFC 9285 Base45, with the characters a URL path cannot carry
    /// verbatim (space, `%`, `/`) percent-escaped: the alternative the
    /// compact form's digits were measured against.
    fn base45_in_a_url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
        let mut out = String::new();
        for pair in bytes.chunks(2) {
            let mut n = pair.iter().fold(0usize, |n, &b| n * 256 + usize::from(b));
            for _ in 0..pair.len() + 1 {
                match ALPHABET[n % 45] {
                    b' ' => out.push_str("%20"),
                    b'%' => out.push_str("%25"),
                    b'/' => out.push_str("%2F"),
                    c => out.push(c as char),
                }
                n /= 45;
            }
        }
        out
    }

    /// Issue 24: the full note in the URL made a version 15 symbol, too
    /// dense for a sticker; the compact form must stay at version 10 or
    /// lower at level M, for the default set-up and for a long host name.
    /// The figures printed here are the ones README.md quotes.
    #[test]
    fn the_compact_qr_is_version_10_or_lower_at_level_m() {
        for (base, key) in [
            ("http://127.0.0.1:8080", "ecocode.local"),
            ("https://ecocode.sthjt.zj.gov.cn", "ecocode.sthjt.zj.gov.cn"),
        ] {
            let note = signed_note(key);
            let compact = tlog::compact::qr_text(base, &note).unwrap();
            let full = tlog::attestation::qr_text(&format!("{base}/e/91330421739237858X"), &note);
            let bytes = tlog::compact::Signed::from_note(&note).unwrap().to_bytes().unwrap();
            let base45 = format!("{}/Q/{}", base.to_uppercase(), base45_in_a_url(&bytes));
            let small = symbol(&compact).unwrap();
            let full_l = QrCode::with_error_correction_level(full.as_bytes(), EcLevel::L).unwrap();
            let full_m = symbol(&full).unwrap();
            let b45 = symbol(&base45).unwrap();
            println!(
                "{base}: compact {} bytes, {} characters: version {} ({} modules) at M; \
                 Base45 in the URL: {} characters, version {} at M; \
                 full form: {} characters, version {:?} ({} modules) at L, version {} ({} modules) at M",
                bytes.len(),
                compact.len(),
                small.version,
                small.modules,
                base45.len(),
                b45.version,
                full.len(),
                full_l.version(),
                full_l.width(),
                full_m.version,
                full_m.modules,
            );
            assert!(small.version <= 10, "compact QR is version {}", small.version);
            assert!(small.version <= b45.version, "Base45 would be smaller");
            assert!(
                compact.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase() || b":/.-".contains(&b))
            );
            assert_eq!(tlog::attestation::note_from_qr_text(&compact).unwrap(), note);
        }
    }
}
