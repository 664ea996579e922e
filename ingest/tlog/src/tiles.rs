//! C2SP tlog-tiles paths and this ledger's entry bundles: what the web
//! listener serves under `/tile/` and what `ecocode mirror` fetches.
//!
//! A tile is 256 consecutive Merkle tree hashes of one *tile level*: at
//! level 0 the entry hashes (leaves), at level `L` the roots of the
//! complete subtrees of `256^L` leaves. Tile `N` of level `L` is full once
//! the tree holds `(N + 1) * 256^(L+1)` leaves; before that, the partial
//! tile `N.p/W` holds its first `W` (1..=255) hashes. An entry bundle is the
//! level-0 tile's entries: each one `u32_be(8 + len) ‖ i64_be(recorded_at_ns)
//! ‖ payload` (tlog-tiles uses a 2-byte length; a record's payload can
//! exceed 65 535 bytes here, and the entry hash covers `recorded_at_ns` too,
//! so this ledger's bundles carry both). See `docs/ledger.md`.

use crate::error::{Error, Result};
use crate::hash::Hash;

/// Hashes (or entries) in a full tile: tile height 8.
pub const TILE_WIDTH: u64 = 256;

/// The highest tile level the spec allows.
pub const MAX_LEVEL: u8 = 63;

/// What a tile holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// Merkle tree hashes at this tile level (0 = the leaves).
    Hashes(u8),
    /// The entries of level-0 tile `index` (an entry bundle).
    Entries,
}

/// One tile or entry bundle: `/tile/<L>/<N>[.p/<W>]` or
/// `/tile/entries/<N>[.p/<W>]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tile {
    pub kind: TileKind,
    pub index: u64,
    /// `None`: a full tile of [`TILE_WIDTH`]; `Some(w)`: a partial one, `1 <= w < 256`.
    pub width: Option<u8>,
}

impl Tile {
    /// How many hashes (or entries) it holds.
    pub fn count(&self) -> u64 {
        self.width.map_or(TILE_WIDTH, u64::from)
    }

    /// The tile level whose hashes it holds (entry bundles: level 0's).
    pub fn level(&self) -> u8 {
        match self.kind {
            TileKind::Hashes(level) => level,
            TileKind::Entries => 0,
        }
    }

    /// Leaves per hash of this tile: `256^level`; `None` beyond `u64`.
    pub fn leaves_per_hash(&self) -> Option<u64> {
        TILE_WIDTH.checked_pow(u32::from(self.level()))
    }

    /// Whether a tree of `tree_size` leaves has this tile: all of its
    /// hashes cover complete subtrees within the tree.
    pub fn within(&self, tree_size: u64) -> bool {
        let covered = self
            .leaves_per_hash()
            .and_then(|per| self.index.checked_mul(TILE_WIDTH)?.checked_add(self.count())?.checked_mul(per));
        covered.is_some_and(|end| end <= tree_size)
    }

    /// The path below the prefix, e.g. `tile/0/x001/x234/067.p/12`.
    pub fn path(&self) -> String {
        let level = match self.kind {
            TileKind::Hashes(level) => level.to_string(),
            TileKind::Entries => "entries".to_owned(),
        };
        let mut path = format!("tile/{level}/{}", encode_index(self.index));
        if let Some(w) = self.width {
            path.push_str(&format!(".p/{w}"));
        }
        path
    }

    /// Parses what follows `tile/` in a path, as tlog-tiles writes it: a
    /// level `0..=63` without leading zeros (or `entries`), the index in
    /// 3-digit elements all but the last prefixed `x`, and `.p/<W>` with
    /// `1 <= W <= 255` without leading zeros. The error names the rule.
    pub fn parse(rest: &str) -> Result<Tile> {
        let invalid = |what: &str| Error::Invalid(format!("tile path {rest:?}: {what}"));
        let (level, rest) = rest.split_once('/').ok_or_else(|| invalid("expected <L>/<N>"))?;
        let kind = if level == "entries" {
            TileKind::Entries
        } else {
            let level = decimal(level)
                .filter(|&l| l <= u64::from(MAX_LEVEL))
                .ok_or_else(|| invalid("the level must be 0..=63 without leading zeros, or `entries`"))?;
            TileKind::Hashes(level as u8)
        };
        let (index, width) = match rest.split_once(".p/") {
            Some((index, width)) => {
                let width = decimal(width)
                    .filter(|w| (1..TILE_WIDTH).contains(w))
                    .ok_or_else(|| invalid("a partial width must be 1..=255 without leading zeros"))?;
                (index, Some(width as u8))
            }
            None => (rest, None),
        };
        let index = decode_index(index).ok_or_else(|| {
            invalid("the index must be 3-digit elements, all but the last prefixed with x (x001/x234/067)")
        })?;
        Ok(Tile { kind, index, width })
    }
}

/// `1234067` as `x001/x234/067`.
pub fn encode_index(index: u64) -> String {
    let mut groups = vec![index % 1000];
    let mut rest = index / 1000;
    while rest > 0 {
        groups.push(rest % 1000);
        rest /= 1000;
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(i, g)| if i == last { format!("{g:03}") } else { format!("x{g:03}") })
        .collect::<Vec<_>>()
        .join("/")
}

/// The inverse of [`encode_index`], which writes each index one way only:
/// no leading `x000` element, so every index has one path.
fn decode_index(text: &str) -> Option<u64> {
    let elements: Vec<&str> = text.split('/').collect();
    let (last, prefix) = elements.split_last()?;
    let mut value: u64 = 0;
    for (i, element) in prefix.iter().enumerate() {
        let digits = element.strip_prefix('x')?;
        let group = three_digits(digits)?;
        if i == 0 && group == 0 {
            return None;
        }
        value = value.checked_mul(1000)?.checked_add(group)?;
    }
    value.checked_mul(1000)?.checked_add(three_digits(last)?)
}

fn three_digits(text: &str) -> Option<u64> {
    (text.len() == 3 && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok())?
}

/// A decimal without sign or leading zeros (`0` itself is fine).
fn decimal(text: &str) -> Option<u64> {
    let ok = !text.is_empty()
        && text.len() <= 20
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if ok { text.parse().ok() } else { None }
}

/// The tile's bytes: its hashes concatenated.
pub fn encode_hashes(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

/// A tile's hashes, `expected` of them, or an error naming the size.
pub fn decode_hashes(bytes: &[u8], expected: u64) -> Result<Vec<Hash>> {
    if bytes.len() as u64 != expected * 32 {
        return Err(Error::Invalid(format!(
            "a tile of {expected} hashes is {} bytes, got {}",
            expected * 32,
            bytes.len()
        )));
    }
    Ok(bytes.chunks_exact(32).map(|c| c.try_into().expect("32-byte chunk")).collect())
}

/// One entry of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleEntry {
    pub recorded_at_ns: i64,
    pub payload: Vec<u8>,
}

/// Appends one entry to a bundle being built.
pub fn push_bundle_entry(bundle: &mut Vec<u8>, recorded_at_ns: i64, payload: &[u8]) {
    let len = u32::try_from(8 + payload.len()).expect("an entry is below 4 GiB");
    bundle.extend_from_slice(&len.to_be_bytes());
    bundle.extend_from_slice(&recorded_at_ns.to_be_bytes());
    bundle.extend_from_slice(payload);
}

/// The entries of a bundle, exactly `expected` of them and nothing after.
pub fn decode_bundle(mut bytes: &[u8], expected: u64) -> Result<Vec<BundleEntry>> {
    let mut out = Vec::with_capacity(expected.min(TILE_WIDTH) as usize);
    while !bytes.is_empty() {
        let i = out.len();
        let invalid = |what: &str| Error::Invalid(format!("entry bundle: entry {i} {what}"));
        if bytes.len() < 4 {
            return Err(invalid("has a truncated length"));
        }
        let len = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        let body = bytes.get(4..4 + len).ok_or_else(|| invalid("is truncated"))?;
        if len < 8 {
            return Err(invalid("is shorter than its 8-byte timestamp"));
        }
        out.push(BundleEntry {
            recorded_at_ns: i64::from_be_bytes(body[..8].try_into().expect("8 bytes")),
            payload: body[8..].to_vec(),
        });
        bytes = &bytes[4 + len..];
    }
    if out.len() as u64 != expected {
        return Err(Error::Invalid(format!("entry bundle holds {} entries, expected {expected}", out.len())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(level: u8, index: u64, width: Option<u8>) -> Tile {
        Tile { kind: TileKind::Hashes(level), index, width }
    }

    #[test]
    fn indexes_are_three_digit_elements_prefixed_with_x_but_the_last() {
        for (index, text) in [(0, "000"), (67, "067"), (1000, "x001/000"), (1_234_067, "x001/x234/067")] {
            assert_eq!(encode_index(index), text);
            assert_eq!(decode_index(text), Some(index), "{text}");
        }
        assert_eq!(encode_index(u64::MAX), "x018/x446/x744/x073/x709/x551/615");
        assert_eq!(decode_index(&encode_index(u64::MAX)), Some(u64::MAX));
    }

    #[test]
    fn paths_round_trip_and_malformed_ones_name_the_rule() {
        for tile in [
            hashes(0, 0, None),
            hashes(2, 1_234_067, Some(17)),
            hashes(63, 5, Some(255)),
            Tile { kind: TileKind::Entries, index: 273, width: Some(112) },
        ] {
            let path = tile.path();
            assert_eq!(Tile::parse(path.strip_prefix("tile/").unwrap()).unwrap(), tile, "{path}");
        }
        assert_eq!(hashes(0, 1_234_067, Some(3)).path(), "tile/0/x001/x234/067.p/3");
        for (bad, rule) in [
            ("64/000", "level"),
            ("01/000", "level"),
            ("-1/000", "level"),
            ("0", "<L>/<N>"),
            ("0/0", "index"),
            ("0/0000", "index"),
            ("0/x000/001", "index"),
            ("0/001/002", "index"),
            ("0/x1/002", "index"),
            ("0/x018/x446/x744/x073/x709/x551/616", "index"),
            ("0/000.p/0", "width"),
            ("0/000.p/256", "width"),
            ("0/000.p/012", "width"),
            ("0/000.p/", "width"),
            ("entries/abc", "index"),
        ] {
            let error = Tile::parse(bad).unwrap_err().to_string();
            assert!(error.contains(rule), "{bad}: {error}");
        }
    }

    #[test]
    fn a_tree_of_70000_has_the_spec_example_tiles_and_no_more() {
        // tlog-tiles: 273 full level-0 tiles, a partial one of width 112,
        // one full level-1 tile, a partial level-1 tile of width 17 and a
        // partial level-2 tile of width 1.
        let size = 70_000;
        assert!(hashes(0, 272, None).within(size));
        assert!(!hashes(0, 273, None).within(size));
        assert!(hashes(0, 273, Some(112)).within(size));
        assert!(!hashes(0, 273, Some(113)).within(size));
        assert!(hashes(1, 0, None).within(size));
        assert!(hashes(1, 1, Some(17)).within(size));
        assert!(!hashes(1, 1, Some(18)).within(size));
        assert!(hashes(2, 0, Some(1)).within(size));
        assert!(!hashes(2, 0, Some(2)).within(size));
        assert!(!hashes(3, 0, Some(1)).within(size));
        assert!(!hashes(63, u64::MAX, None).within(u64::MAX));
    }

    #[test]
    fn bundles_carry_the_timestamp_and_entries_beyond_65535_bytes() {
        let big = vec![7u8; 70_000];
        let mut bundle = Vec::new();
        push_bundle_entry(&mut bundle, -5, b"a");
        push_bundle_entry(&mut bundle, 1_700_000_000_000_000_000, &big);
        let entries = decode_bundle(&bundle, 2).unwrap();
        assert_eq!(entries[0], BundleEntry { recorded_at_ns: -5, payload: b"a".to_vec() });
        assert_eq!(entries[1].payload, big);
        assert!(decode_bundle(&bundle, 3).unwrap_err().to_string().contains("expected 3"));
        assert!(decode_bundle(&bundle[..bundle.len() - 1], 2).unwrap_err().to_string().contains("truncated"));
        assert!(decode_bundle(&[0, 0, 0, 2, 1, 2], 1).unwrap_err().to_string().contains("timestamp"));
    }
}
