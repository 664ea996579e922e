//! The HJ 212 packet checksum.

/// The CRC of an HJ 212 data segment.
///
/// This is the standard's own algorithm, which differs from CRC-16/MODBUS:
/// each step drops the register's low byte (`crc >> 8`) before XORing in the
/// data byte, where MODBUS XORs into the whole register, so MODBUS tables or
/// crates give wrong answers. One consequence: for non-empty data the result
/// is always one of 256 values (the table entry of the last step), so it is a weak check
/// against random noise, though it still catches every single-byte change.
pub fn hj212_crc(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &byte in data {
        crc = (crc >> 8) ^ u16::from(byte);
        for _ in 0..8 {
            let carry = crc & 1 != 0;
            crc >>= 1;
            if carry {
                crc ^= 0xA001;
            }
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example packet of HJ 212-2017 (section 6.3), whose CRC is `1C80`.
    const STANDARD_EXAMPLE: &str = "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&";

    #[test]
    fn standard_example_ends_1c80() {
        assert_eq!(STANDARD_EXAMPLE.len(), 101);
        assert_eq!(hj212_crc(STANDARD_EXAMPLE.as_bytes()), 0x1C80);
    }

    #[test]
    fn is_not_crc16_modbus() {
        // CRC-16/MODBUS of "123456789" is 0x4B37; this algorithm must differ.
        assert_ne!(hj212_crc(b"123456789"), 0x4B37);
        assert_eq!(hj212_crc(b""), 0xFFFF);
    }

    #[test]
    fn every_single_byte_change_is_caught() {
        // Holds because the high byte of the per-byte table is a bijection,
        // so a changed byte changes every later step; checked exhaustively here.
        let original = STANDARD_EXAMPLE.as_bytes();
        let crc = hj212_crc(original);
        let mut changed = original.to_vec();
        for i in 0..changed.len() {
            for b in 0..=255u8 {
                if b == original[i] {
                    continue;
                }
                changed[i] = b;
                assert_ne!(hj212_crc(&changed), crc, "byte {i} set to {b}");
            }
            changed[i] = original[i];
        }
    }
}
