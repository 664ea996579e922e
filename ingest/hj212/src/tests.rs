//! Packet and framer tests against the published peer packets in
//! `fixtures/hj212/`, plus property tests over arbitrary and mutated input.

use proptest::prelude::*;

use super::*;

fn fixture(name: &str) -> Vec<(String, Vec<u8>)> {
    let path = format!("{}/../../fixtures/hj212/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (source, packet) = line.split_once('\t').expect("source<TAB>packet");
            (source.to_owned(), packet.as_bytes().to_vec())
        })
        .collect()
}

/// What one peer packet must parse to: CN, MN, DataTime and a few values
/// given as (pollutant, suffix, value).
struct Expect {
    cn: &'static str,
    mn: &'static str,
    data_time: Option<&'static str>,
    values: &'static [(&'static str, &'static str, f64)],
}

const fn expect(
    cn: &'static str,
    mn: &'static str,
    data_time: Option<&'static str>,
    values: &'static [(&'static str, &'static str, f64)],
) -> Expect {
    Expect { cn, mn, data_time, values }
}

/// One line per packet of `peer-packets.tsv`, in file order.
const PEER_PACKETS: &[Expect] = &[
    expect(
        "2011",
        "LD130133000015",
        Some("2016-08-24T00:38:17.000"),
        &[("B01", "Rtd", 36.91), ("011", "Rtd", 231.0), ("060", "Rtd", 1.803)],
    ),
    expect(
        "2011",
        "LD130133000015",
        Some("2016-08-24T00:38:17.000"),
        &[("011", "Rtd", 231.0), ("B01", "Rtd", 36.91)],
    ),
    expect(
        "2011",
        "ZLDSZ20210127",
        Some("2021-03-01T11:11:00.000"),
        &[("w01001", "Rtd", 8.33), ("w21003", "Rtd", 0.09055002), ("w23002", "Rtd", 0.0)],
    ),
    expect(
        "2011",
        "NJGDKYYC202101q0001w0001",
        Some("2021-03-05T00:38:17.000"),
        &[("ele01", "Rtd", 1.0), ("ele02", "Rtd", 0.0)],
    ),
    expect(
        "2061",
        "Z13401000010301",
        Some("2019-09-24T22:00:00.000"),
        &[("a34006", "Avg", 2.697), ("a34049", "Avg", 10.663)],
    ),
    expect(
        "2011",
        "Y80110010000010",
        Some("2019-10-12T13:37:10.000"),
        &[("a21005", "Rtd", 0.0), ("a21003", "Rtd", 101.94), ("a21002", "Rtd", 49.2)],
    ),
    expect(
        "2011",
        "Y80110010000010",
        Some("2019-10-12T13:37:10.000"),
        &[("a2106", "Rtd", 0.036), ("a2101", "Rtd", 25.4)],
    ),
    expect(
        "2011",
        "Y80110010000010",
        Some("2019-10-12T13:37:10.000"),
        &[("a214", "Rtd", 0.0), ("a213", "Rtd", 101.94)],
    ),
    expect(
        "2051",
        "JLYP01_AIR01_0001",
        Some("2022-05-13T16:26:00.000"),
        &[("a21004", "Avg", 4.0), ("a34004", "Avg", 14.0), ("a01006", "Avg", 95.0)],
    ),
    expect(
        "2011",
        "JSRCTD000YD107",
        Some("2022-09-28T14:28:12.000"),
        &[("l01001", "Rtd", 119.90287), ("a05024", "Rtd", 8.82)],
    ),
    expect(
        "2051",
        "14513567846884",
        Some("2019-11-12T09:00:00.000"),
        &[
            ("a01006", "Avg", 101.85),
            ("a01006", "Min", 101.84),
            ("a01006", "Max", 101.87),
            ("a01006", "ValidNum", 10.0),
        ],
    ),
    expect(
        "2011",
        "010000A8900016F000169DC0",
        Some("2023-10-08T12:33:40.000"),
        &[("w01008", "Rtd", 123.456)],
    ),
    expect("9011", "010000A8900016F000169DC0", None, &[]),
    expect("2081", "010000A8900016F000169DC0", Some("2023-10-08T13:04:52.000"), &[]),
    expect(
        "2011",
        "010000A8900016F000169DC0",
        Some("2023-10-08T13:23:00.000"),
        &[("w01008", "Rtd", 123.456)],
    ),
    expect("2011", "0507A010003242", Some("2025-01-31T20:28:09.000"), &[("a34001", "Rtd", 92.0)]),
    expect(
        "2011",
        "41050022000017",
        Some("2020-09-22T11:00:00.000"),
        &[("a34010", "Rtd", 2.017), ("ua19003", "Rtd", 2.539)],
    ),
    expect(
        "2011",
        "88888880000001",
        Some("2020-09-21T17:40:57.000"),
        &[("831", "Rtd", 3.128), ("815", "Rtd", 0.0), ("a99948", "Rtd", 452.341)],
    ),
    expect(
        "2011",
        "410183160889201000212505",
        Some("2020-10-15T12:30:00.000"),
        &[("100000", "Ia", 401.4), ("100000", "Pa_ave", 0.3964)],
    ),
    expect("9014", "410183160889201000212505", None, &[]),
    expect("2011", "410183160889201000212505", None, &[]),
];

fn check(source: &str, frame: &[u8], expect: &Expect) {
    let packet =
        parse_packet(frame).unwrap_or_else(|e| panic!("{source}: {e}: {}", String::from_utf8_lossy(frame)));
    assert_eq!(packet.cn(), expect.cn, "{source}");
    assert_eq!(packet.mn(), expect.mn, "{source}");
    assert_eq!(
        packet.data_time().map(|t| t.to_string()),
        expect.data_time.map(|t| format!("{t}+08:00")),
        "{source}"
    );
    for &(pollutant, suffix, value) in expect.values {
        let got = packet
            .measurements()
            .iter()
            .find(|m| m.pollutant == pollutant && m.suffix.to_string() == suffix)
            .map(|m| &m.value);
        assert_eq!(got, Some(&Value::Number(value)), "{source}: {pollutant}-{suffix}");
    }
}

#[test]
fn every_peer_packet_parses_to_its_values() {
    let packets = fixture("peer-packets.tsv");
    assert_eq!(packets.len(), PEER_PACKETS.len(), "one expectation per fixture line");
    for ((source, frame), expect) in packets.iter().zip(PEER_PACKETS) {
        check(source, frame, expect);
        let mut with_crlf = frame.clone();
        with_crlf.extend_from_slice(b"\r\n");
        check(source, &with_crlf, expect);
    }
}

#[test]
fn peer_packet_details_survive_parsing() {
    let packets = fixture("peer-packets.tsv");
    let parsed: Vec<Packet> = packets.iter().map(|(_, f)| parse_packet(f).unwrap()).collect();
    // 2005 style: no QN, no Flag, hence no answer.
    assert_eq!(parsed[0].qn(), None);
    assert_eq!(parsed[0].flag(), None);
    assert!(!parsed[0].wants_ack());
    // Flag=8: version 2, no answer bit.
    assert_eq!(parsed[2].flag().map(Flag::version), Some(2));
    assert!(!parsed[2].wants_ack());
    assert_eq!(parsed[4].qn(), Some("20190925181031464"));
    assert_eq!(parsed[4].pw(), "BF470F88957588DE902D1A52");
    assert_eq!(parsed[4].data_flag("a34006"), Some(&DataFlag::Normal));
    assert!(parsed[4].wants_ack());
    // Flag sub-item before the value.
    assert_eq!(parsed[9].data_flag("l01001"), Some(&DataFlag::Normal));
    // PNO before PNUM, no Flag.
    assert_eq!(parsed[10].split(), Some((2, 2)));
    assert_eq!(
        parsed[11].measurements().iter().find(|m| m.suffix == Suffix::SampleTime).map(|m| &m.value),
        Some(&Value::Text("20231008123340".into()))
    );
    assert_eq!(parsed[12].other_items(), &[("QnRtn".to_owned(), "1".to_owned())]);
    // A bare `Flag=N` inside CP is kept as an unknown item, not rejected.
    assert_eq!(parsed[15].other_items(), &[("Flag".to_owned(), "N".to_owned())]);
    assert_eq!(parsed[16].st(), "101");
    assert!(parsed[20].measurements().is_empty());
}

#[test]
fn ack_reproduces_the_peer_acknowledgement_byte_for_byte() {
    let packets = fixture("peer-packets.tsv");
    let request = parse_packet(&packets[18].1).unwrap();
    assert!(request.wants_ack());
    let mut expected = packets[19].1.clone();
    expected.extend_from_slice(b"\r\n");
    assert_eq!(String::from_utf8_lossy(&request.ack()), String::from_utf8_lossy(&expected));
    let ack = parse_packet(&request.ack()).unwrap();
    assert_eq!((ack.cn(), ack.st(), ack.flag()), ("9014", "91", Some(Flag(4))));
    assert!(!ack.wants_ack());
}

#[test]
fn ack_of_the_standard_example_round_trips() {
    let data = "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&";
    let framed = frame(data.as_bytes());
    assert_eq!(&framed[..6], b"##0101");
    assert!(framed.ends_with(b"&&1c80\r\n"));
    let upper = format!("##0101{data}1C80");
    let packet = parse_packet(upper.as_bytes()).unwrap();
    assert_eq!(
        packet.ack(),
        frame(b"QN=20160801085857223;ST=91;CN=9014;PW=100000;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&")
    );
}

#[test]
fn every_bad_crc_packet_is_rejected_as_bad_crc() {
    for (source, frame) in fixture("bad-crc.tsv") {
        match parse_packet(&frame) {
            Err(PacketError::BadCrc { computed, received }) => {
                assert_ne!(format!("{computed:04x}"), received.to_ascii_lowercase(), "{source}");
            }
            other => panic!("{source}: expected bad crc, got {other:?}"),
        }
    }
}

/// Frames a data segment with a correct length and CRC, so the field rules
/// are what is tested.
fn check_data(data: &str, expect: Result<(), &str>) {
    let got = parse_packet(&frame(data.as_bytes())).map(|_| ()).map_err(|e| e.to_string());
    match (got, expect) {
        (Ok(()), Ok(())) => {}
        (Err(msg), Err(prefix)) => assert!(msg.starts_with(prefix), "{data}: {msg:?} vs {prefix:?}"),
        (got, expect) => panic!("{data}: got {got:?}, expected {expect:?}"),
    }
}

#[test]
fn field_rules_name_the_field() {
    const HEAD: &str = "QN=20160801085857223;ST=32;CN=2061;PW=100000;MN=010000A8900016F000169DC0;Flag=5";
    let ok = |cp: &str| format!("{HEAD};CP=&&{cp}&&");
    check_data(&ok("DataTime=20160801080000;w01018-Avg=35.2,w01018-Flag=N;"), Ok(()));
    check_data(&ok("DataTime=20160801080000;w01018-Avg=1.5E-3"), Ok(()));
    check_data(&ok("DataTime=20160801080000;w01018-Avg=-0.5,w01018-Flag=X"), Ok(()));
    check_data(&ok("w01018-Avg=abc"), Err("malformed field \"w01018-Avg\": must be a number"));
    check_data(&ok("w01018-Avg=inf"), Err("malformed field \"w01018-Avg\": must be a number"));
    check_data(&ok("w01018-Avg=NaN"), Err("malformed field \"w01018-Avg\": must be a number"));
    check_data(&ok("w01018-Avg="), Err("malformed field \"w01018-Avg\": must be a number"));
    check_data(&ok("w01018-Flag="), Err("malformed field \"w01018-Flag\": empty data flag"));
    check_data(&ok("w01018-=1"), Err("malformed field \"w01018-\": empty suffix"));
    check_data(&ok("-Avg=1"), Err("malformed field \"-Avg\": pollutant code"));
    check_data(&ok("DataTime=20161301080000"), Err("malformed field DataTime: must be a time"));
    check_data(
        &ok("DataTime=20160801080000;DataTime=20160801080000"),
        Err("malformed field DataTime: appears twice"),
    );
    check_data(&ok("w01018"), Err("malformed field \"w01018\": expected key=value"));
    check_data(&ok(&"x=1;".repeat(240)), Err("malformed field CP: at most 950 bytes"));
    check_data("ST=32;CN=2061;PW=1;MN=1;CP=&&&&", Ok(()));
    check_data("ST=32;CN=2061;PW=1;MN=1;CP=&&&", Err("malformed field CP: does not end with &&"));
    check_data("ST=32;CN=2061;PW=1;MN=1", Err("malformed field CP: missing"));
    check_data("QN=2016;ST=32;CN=2061;PW=1;MN=1;CP=&&&&", Err("malformed field QN"));
    check_data("ST=3x;CN=2061;PW=1;MN=1;CP=&&&&", Err("malformed field ST"));
    check_data("ST=32;CN=20;PW=1;MN=1;CP=&&&&", Err("malformed field CN"));
    check_data("ST=32;PW=1;MN=1;CP=&&&&", Err("malformed field CN: is required"));
    check_data("ST=32;CN=2061;PW=1;MN=;CP=&&&&", Err("malformed field MN"));
    check_data("ST=32;CN=2061;PW=1;MN=1234567890123456789012345;CP=&&&&", Err("malformed field MN"));
    check_data("ST=32;CN=2061;PW=1;MN=1;Flag=256;CP=&&&&", Err("malformed field Flag"));
    check_data("ST=32;CN=2061;PW=1;MN=1;Flag=5;Flag=5;CP=&&&&", Err("malformed field Flag: appears twice"));
    check_data("ST=32;CN=2061;PW=1;MN=1;PNUM=2;CP=&&&&", Err("malformed field PNO"));
    check_data("ST=32;CN=2061;PW=1;MN=1;PNUM=2;PNO=3;CP=&&&&", Err("malformed field PNO: packet 3 of 2"));
    check_data("ST=32;CN=2061;PW=1;MN=1;XX=2;CP=&&&&", Err("malformed field XX: is not an HJ 212"));
    check_data("ST=32;CN=2061;PW=1;MN=1;CP=&&\u{e9}=1&&", Ok(()));
}

#[test]
fn transmission_errors_name_the_numbers() {
    let data = b"ST=32;CN=2061;PW=1;MN=1;CP=&&&&";
    let good = frame(data);
    let mut long = good.clone();
    long[2..6].copy_from_slice(b"0032");
    assert_eq!(parse_packet(&long), Err(PacketError::BadLength { declared: 32, actual: 31 }));
    assert_eq!(parse_packet(&long).unwrap_err().to_string(), "bad length: expected 32 got 31");
    let mut crc = good.clone();
    crc[37] = b'0';
    crc[38] = b'0';
    crc[39] = b'0';
    crc[40] = b'0';
    let err = parse_packet(&crc).unwrap_err();
    assert!(err.to_string().starts_with("bad crc: expected "), "{err}");
    assert!(err.to_string().ends_with(" got 0000"), "{err}");
    assert_eq!(parse_packet(b"##003"), Err(PacketError::Framing("frame shorter than ##, length and crc")));
    assert_eq!(
        parse_packet(b"#0031xxxxxxxxxxxx").unwrap_err().to_string(),
        "bad length: frame does not start with ##"
    );
    assert_eq!(
        parse_packet(b"##00x1xxxxxxxxxxxx").unwrap_err().to_string(),
        "bad length: length field is not 4 decimal digits"
    );
    let mut plus = frame(b"ST=32;CN=2061;PW=1;MN=1;CP=&&&&");
    plus[37] = b'+';
    assert!(matches!(parse_packet(&plus), Err(PacketError::BadCrc { .. })));
}

/// All peer packets, each with `\r\n`, with some garbage in between.
fn peer_stream() -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut stream = b"\xff\x00garbage#".to_vec();
    let mut frames = Vec::new();
    for (i, (_, frame)) in fixture("peer-packets.tsv").into_iter().enumerate() {
        stream.extend_from_slice(&frame);
        stream.extend_from_slice(b"\r\n");
        if i % 3 == 0 {
            stream.extend_from_slice(b"junk\r\n#");
        }
        frames.push(frame);
    }
    (stream, frames)
}

#[test]
fn framer_yields_the_same_frames_for_every_split_offset() {
    let (stream, expected) = peer_stream();
    assert_eq!(Framer::new().push(&stream), expected);
    for offset in 0..=stream.len() {
        let mut framer = Framer::new();
        let mut got = framer.push(&stream[..offset]);
        got.extend(framer.push(&stream[offset..]));
        assert_eq!(got, expected, "split at {offset}");
    }
}

#[test]
fn framer_handles_byte_at_a_time_senders() {
    let (stream, expected) = peer_stream();
    let mut framer = Framer::new();
    let got: Vec<Vec<u8>> = stream.iter().flat_map(|b| framer.push(std::slice::from_ref(b))).collect();
    assert_eq!(got, expected);
    assert_eq!(framer.buffered(), 0);
}

fn peer_frames() -> Vec<Vec<u8>> {
    fixture("peer-packets.tsv").into_iter().map(|(_, f)| f).collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_packet(&bytes);
        let mut framer = Framer::new();
        for frame in framer.push(&bytes) {
            let _ = parse_packet(&frame);
        }
        prop_assert!(framer.buffered() <= MAX_BUFFERED_BYTES);
    }

    #[test]
    fn packet_shaped_bytes_never_panic(
        head in "##[0-9]{4}",
        body in "(QN|ST|CN|PW|MN|Flag|PNUM|PNO|CP|DataTime|w01018-Avg|-Flag|=|;|,|&&|[0-9]|\\.|N|e|-){0,60}",
        tail in "[0-9a-fA-F]{0,5}(\r\n)?",
    ) {
        let text = format!("{head}{body}{tail}");
        let _ = parse_packet(text.as_bytes());
        let _ = parse_packet(&frame(body.as_bytes()));
        let _ = Framer::new().push(text.as_bytes());
    }

    #[test]
    fn mutated_peer_packets_never_panic_and_data_changes_are_caught(
        which in any::<prop::sample::Index>(),
        mutation in mutation(),
    ) {
        let frames = peer_frames();
        let original = which.get(&frames);
        let data = 6..original.len() - 4;
        let mut mutated = original.clone();
        let in_data = match mutation {
            Mutation::Replace(i, b) => {
                let i = i % mutated.len();
                let changed = mutated[i] != b;
                mutated[i] = b;
                changed && data.contains(&i)
            }
            Mutation::Insert(i, b) => {
                let i = i % (mutated.len() + 1);
                mutated.insert(i, b);
                i >= data.start && i <= data.end
            }
            Mutation::Delete(i) => {
                let i = i % mutated.len();
                mutated.remove(i);
                data.contains(&i)
            }
            Mutation::Truncate(n) => {
                mutated.truncate(n % mutated.len());
                false
            }
        };
        let parsed = parse_packet(&mutated);
        if in_data {
            match parsed {
                Err(e) => prop_assert!(e.is_transmission_error(), "{e}"),
                Ok(_) => prop_assert!(false, "accepted a changed data segment"),
            }
        }
        let _ = Framer::new().push(&mutated);
    }

    #[test]
    fn framer_is_independent_of_chunking(cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let (stream, expected) = peer_stream();
        let mut offsets: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        offsets.sort_unstable();
        let mut framer = Framer::new();
        let mut got = Vec::new();
        let mut from = 0;
        for to in offsets.into_iter().chain([stream.len()]) {
            got.extend(framer.push(&stream[from..to]));
            from = to;
        }
        prop_assert_eq!(got, expected);
    }
}

// What real loggers and peer implementations publish: each accepted, with
// the deviations the gateway counts for it (the file drops the `\r\n`, so
// it is put back first).
#[test]
fn peer_packets_deviate_only_in_the_accepted_ways() {
    let mut seen = Vec::new();
    for (i, (source, packet)) in fixture("peer-packets.tsv").into_iter().enumerate() {
        let framed = [packet.as_slice(), b"\r\n"].concat();
        let parsed = parse_packet(&framed).unwrap_or_else(|e| panic!("{source}: {e}"));
        let kinds: Vec<&str> = crate::deviations(&framed, &parsed).iter().map(|d| d.as_str()).collect();
        let kinds = if kinds.is_empty() { "-".to_owned() } else { kinds.join(",") };
        seen.push(format!("{i} {kinds}"));
    }
    assert_eq!(seen.join("\n"), PEER_DEVIATIONS.trim());
}

const PEER_DEVIATIONS: &str = "
0 no_qn,no_flag,no_data_flag
1 no_qn,no_flag,no_data_flag
2 -
3 no_qn,no_flag,no_data_flag
4 -
5 -
6 -
7 -
8 -
9 -
10 no_flag,field_order,no_data_flag
11 no_data_flag
12 -
13 -
14 no_data_flag
15 no_data_flag
16 no_qn,no_flag
17 no_qn,no_flag
18 -
19 -
20 -
";
