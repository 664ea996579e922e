//! The QR code of an enterprise's page: the modules of a QR symbol as the
//! runs of dark squares a template draws as SVG `<rect>`s (no SVG text is
//! built here).

use qrcode::{Color, EcLevel, QrCode};

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
}

/// The symbol of `text` (error correction level L: the text is long and a
/// screen or a sticker is read up close).
pub fn symbol(text: &str) -> Result<Symbol> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L)
        .map_err(|e| Error::Internal(format!("QR code of {} bytes: {e}", text.len())))?;
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
    Ok(Symbol { size: (width + 2 * QUIET_ZONE) * MODULE_PX, module: MODULE_PX, runs })
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
}
