//! `Uscc`: the Unified Social Credit Code (统一社会信用代码, GB 32100-2015)
//! that identifies every enterprise.

use std::fmt;

use crate::ValidationError;

/// The 31 characters a USCC may use, in the order that gives their values.
const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// An 18-character USCC whose check character is correct.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uscc(String);

impl Uscc {
    /// Validates `s` exactly as given: no trimming, no case folding, since a
    /// silently "fixed" identifier would attach records to the wrong subject.
    pub fn parse(s: &str) -> Result<Uscc, ValidationError> {
        let invalid = |rule: String| ValidationError::new("uscc", rule);
        let len = s.chars().count();
        if len != 18 {
            return Err(invalid(format!("must be 18 characters, got {len}")));
        }
        let mut values = [0u32; 18];
        for (i, c) in s.chars().enumerate() {
            values[i] = char_value(c).ok_or_else(|| {
                invalid(format!(
                    "character {} ({c:?}) is not one of 0-9 and upper-case A-Y without I, O, S, V, Z",
                    i + 1
                ))
            })?;
        }
        let expected = check_character(&values[..17]);
        if values[17] != expected {
            return Err(invalid(format!(
                "check character is {:?}, expected {:?}",
                s.chars().last().unwrap_or_default(),
                ALPHABET[expected as usize] as char
            )));
        }
        Ok(Uscc(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 6-digit administrative division code embedded at positions 3..9.
    pub fn embedded_region(&self) -> &str {
        &self.0[2..8]
    }
}

fn char_value(c: char) -> Option<u32> {
    let b = u8::try_from(c).ok()?;
    ALPHABET.iter().position(|&a| a == b).map(|p| p as u32)
}

/// Weights are 3^(i-1) mod 31; check = 31 - (Σ value·weight mod 31), with 31 mapping to 0.
fn check_character(values: &[u32]) -> u32 {
    let mut weight = 1u32;
    let mut sum = 0u32;
    for &v in values {
        sum += v * weight;
        weight = weight * 3 % 31;
    }
    (31 - sum % 31) % 31
}

impl fmt::Display for Uscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Uscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uscc({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<(), &str>) {
        let got = Uscc::parse(input).map(|_| ()).map_err(|e| e.to_string());
        match (got, expect) {
            (Ok(()), Ok(())) => {}
            (Err(msg), Err(fragment)) => {
                assert!(msg.starts_with("uscc: "), "{input:?}: {msg}");
                assert!(msg.contains(fragment), "{input:?}: {msg:?} lacks {fragment:?}");
            }
            (got, expect) => panic!("{input:?}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn valid_codes() {
        check("11330206MB1593493A", Ok(()));
        check("91330421739237858X", Ok(()));
        check("91110000600037341L", Ok(()));
    }

    #[test]
    fn invalid_classes() {
        check("91330421739237858Y", Err("check character"));
        check("91330421739237858x", Err("character 18"));
        check("91330421739237858", Err("18 characters, got 17"));
        check("91330421739237858XX", Err("18 characters, got 19"));
        check("9133042173923785OX", Err("character 17 ('O')"));
        check("９1330421739237858X", Err("character 1"));
        check(" 91330421739237858", Err("character 1"));
        check("91330421739237858X ", Err("got 19"));
        check("", Err("got 0"));
    }

    #[test]
    fn embedded_region_is_the_division_code() {
        assert_eq!(Uscc::parse("91330421739237858X").unwrap().embedded_region(), "330421");
    }
}
