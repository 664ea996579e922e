//! `Framer`: cuts a TCP byte stream into HJ 212 frames, whatever the chunk
//! boundaries, with bounded memory.

use super::crc::hj212_crc;
use super::packet::MAX_FRAME_BYTES;

/// Bytes handed to the frame search at a time; with the carried-over
/// partial frame this bounds the buffer at `MAX_BUFFERED_BYTES`.
const CHUNK_BYTES: usize = 4096;

/// The most a `Framer` ever holds: one chunk plus one largest frame.
pub const MAX_BUFFERED_BYTES: usize = CHUNK_BYTES + MAX_FRAME_BYTES;

/// A stream decoder for HJ 212 frames.
///
/// Where a frame ends is decided as follows, so that a wrong length field
/// costs one frame, not the connection:
/// * a frame starts at `##` followed by 4 digits; anything else is skipped;
/// * a `\r\n` before the end the length field announces ends the frame
///   there (the length field overstates);
/// * at the announced end, the frame is taken if `\r\n` follows or the CRC
///   verifies (so devices that omit `\r\n` are not kept waiting);
/// * otherwise it ends at the next `\r\n` or `##`, or, when neither comes
///   within one largest frame, at the announced end.
///
/// Every frame it yields still goes through `parse_packet`, which reports
/// the bad length or CRC; the framer only decides where frames are.
#[derive(Default)]
pub struct Framer {
    buffer: Vec<u8>,
    discarded: u64,
}

impl Framer {
    pub fn new() -> Framer {
        Framer::default()
    }

    /// Takes the next bytes of the stream and returns the frames they
    /// complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for chunk in bytes.chunks(CHUNK_BYTES) {
            self.buffer.extend_from_slice(chunk);
            while let Some(frame) = self.next_frame() {
                frames.push(frame);
            }
        }
        frames
    }

    /// Bytes held for a frame not yet complete.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Bytes skipped so far because they were not part of any frame.
    pub fn discarded_bytes(&self) -> u64 {
        self.discarded
    }

    fn next_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            match find(&self.buffer, b"##") {
                Some(0) => {}
                Some(start) => self.discard(start),
                None => {
                    // A lone trailing '#' may be the first half of "##".
                    let keep = usize::from(self.buffer.last() == Some(&b'#'));
                    self.discard(self.buffer.len() - keep);
                    return None;
                }
            }
            if self.buffer.len() < 6 {
                return None;
            }
            let Some(declared) = decimal(&self.buffer[2..6]) else {
                self.discard(1);
                continue;
            };
            return self.cut(6 + declared + 4);
        }
    }

    /// Decides where the frame starting at offset 0 ends, given the end
    /// `announced` by its length field.
    fn cut(&mut self, announced: usize) -> Option<Vec<u8>> {
        // Only a largest frame's worth is looked at, so the decision does not
        // depend on how much else happens to be buffered.
        let window = &self.buffer[..self.buffer.len().min(MAX_FRAME_BYTES)];
        let crlf = find(&window[6..], b"\r\n").map(|i| i + 6);
        if let Some(t) = crlf.filter(|&t| t <= announced) {
            return Some(self.take(t, t + 2));
        }
        if window.len() < announced {
            return None;
        }
        let data = &window[6..announced - 4];
        if decimal_hex(&window[announced - 4..announced]) == Some(hj212_crc(data)) {
            return Some(self.take(announced, announced));
        }
        let next_start = find(&window[2..], b"##").map(|i| i + 2);
        match (crlf, next_start) {
            (Some(t), Some(n)) if n < t => Some(self.take(n, n)),
            (Some(t), _) => Some(self.take(t, t + 2)),
            (None, Some(n)) => Some(self.take(n, n)),
            (None, None) if window.len() >= MAX_FRAME_BYTES => Some(self.take(announced, announced)),
            (None, None) => None,
        }
    }

    fn take(&mut self, frame_end: usize, consumed: usize) -> Vec<u8> {
        let frame = self.buffer[..frame_end].to_vec();
        self.buffer.drain(..consumed);
        frame
    }

    fn discard(&mut self, n: usize) {
        self.buffer.drain(..n);
        self.discarded += n as u64;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn decimal(digits: &[u8]) -> Option<usize> {
    digits.iter().try_fold(0usize, |n, &d| d.is_ascii_digit().then(|| n * 10 + usize::from(d - b'0')))
}

fn decimal_hex(digits: &[u8]) -> Option<u16> {
    digits.iter().try_fold(0u16, |n, &d| {
        let v = (d as char).to_digit(16)?;
        Some((n << 4) | v as u16)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOURLY: &[u8] = b"##0285QN=20190925181031464;ST=22;CN=2061;PW=BF470F88957588DE902D1A52;MN=Z13401000010301;Flag=5;CP=&&DataTime=20190924220000;a34006-Avg=2.69700,a34006-Flag=N;a34007-Avg=7.96600,a34007-Flag=N;a34048-Avg=3.30600,a34048-Flag=N;a34047-Avg=7.35700,a34047-Flag=N;a34049-Avg=10.66300,a34049-Flag=N&&C181\r\n";

    fn frames(input: &[u8]) -> Vec<Vec<u8>> {
        Framer::new().push(input)
    }

    fn crlf_trimmed(frame: &[u8]) -> &[u8] {
        frame.strip_suffix(b"\r\n").unwrap_or(frame)
    }

    #[test]
    fn skips_garbage_and_yields_frames_in_order() {
        let mut input = b"\x00\xffGET / HTTP/1.1\r\n#".to_vec();
        input.extend_from_slice(HOURLY);
        input.extend_from_slice(b"noise");
        input.extend_from_slice(HOURLY);
        let got = frames(&input);
        assert_eq!(got, vec![crlf_trimmed(HOURLY).to_vec(), crlf_trimmed(HOURLY).to_vec()]);
    }

    #[test]
    fn overstated_length_costs_one_frame() {
        let mut bad = HOURLY.to_vec();
        bad[2..6].copy_from_slice(b"0999");
        let mut input = bad;
        input.extend_from_slice(HOURLY);
        let got = frames(&input);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1], crlf_trimmed(HOURLY));
    }

    #[test]
    fn understated_length_costs_one_frame() {
        let mut bad = HOURLY.to_vec();
        bad[2..6].copy_from_slice(b"0100");
        let mut input = bad.clone();
        input.extend_from_slice(HOURLY);
        let got = frames(&input);
        assert_eq!(got, vec![crlf_trimmed(&bad).to_vec(), crlf_trimmed(HOURLY).to_vec()]);
    }

    #[test]
    fn frame_without_crlf_is_yielded_once_its_crc_verifies() {
        let mut framer = Framer::new();
        assert_eq!(framer.push(crlf_trimmed(HOURLY)), vec![crlf_trimmed(HOURLY).to_vec()]);
    }

    #[test]
    fn memory_stays_bounded_on_endless_garbage_and_huge_lengths() {
        let mut framer = Framer::new();
        for _ in 0..100 {
            framer.push(b"##9999");
            framer.push(&[b'x'; 3000]);
            assert!(framer.buffered() <= MAX_BUFFERED_BYTES);
        }
        assert!(framer.buffered() < MAX_FRAME_BYTES);
    }
}
