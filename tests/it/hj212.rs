//! HJ 212 end to end: a data logger on a real TCP socket sends a day of
//! hourly data; the gateway acknowledges, aggregates, derives
//! `exceedance.daily` and `monitoring.missing_day` records through the
//! ledger, and the enterprise's score changes over gRPC.

use std::time::Duration;

use ecocode_proto::v1 as pb;
use scoring::Timestamp;
use server::principals::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

pub(crate) const MN: &str = "LD130133000015";

/// An hourly (2061) packet for local day 2026-05-DD, hour HH, asking for an ack.
pub(crate) fn hourly(day: u32, hour: u32, cod: (f64, &str), ammonia: Option<f64>) -> Vec<u8> {
    let mut cp = format!("DataTime=202605{day:02}{hour:02}0000;w01018-Avg={},w01018-Flag={}", cod.0, cod.1);
    if let Some(n) = ammonia {
        cp.push_str(&format!(";w21003-Avg={n},w21003-Flag=N"));
    }
    let data =
        format!("QN=202605{day:02}{hour:02}0000000;ST=32;CN=2061;PW=123456;MN={MN};Flag=5;CP=&&{cp}&&");
    hj212::frame(data.as_bytes())
}

/// Reads `n` acknowledgement packets from the device's socket.
pub(crate) async fn read_acks(socket: &mut TcpStream, n: usize) -> Vec<hj212::Packet> {
    let mut framer = hj212::Framer::new();
    let mut acks = Vec::new();
    let mut buf = [0u8; 4096];
    while acks.len() < n {
        let read = socket.read(&mut buf).await.unwrap();
        assert!(read > 0, "the gateway closed the connection after {} acks", acks.len());
        for frame in framer.push(&buf[..read]) {
            acks.push(hj212::parse_packet(&frame).expect("acks are well-formed packets"));
        }
    }
    acks
}

/// At 08:00 China time on 31 May, ACME and its monitoring point `point`
/// are registered; returns the admin client that did it.
async fn acme_with_a_point(server: &TestServer, point: pb::MonitoringPoint) -> Client {
    server.clock.set(Timestamp::parse_rfc3339("2026-05-31T00:00:00Z").unwrap());
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    admin.registry.register_monitoring_point(point).await.unwrap();
    admin
}

/// ACME's outlet DW001 with limits for COD (w01018) and ammonia (w21003).
pub(crate) fn point() -> pb::MonitoringPoint {
    pb::MonitoringPoint {
        mn: MN.into(),
        uscc: ACME.into(),
        outlet: "DW001".into(),
        limits: vec![
            pb::PollutantLimit {
                pollutant: "w01018".into(),
                limit: 50.0,
                unit: "mg/L".into(),
                statistic: "Avg".into(),
            },
            pb::PollutantLimit {
                pollutant: "w21003".into(),
                limit: 5.0,
                unit: "mg/L".into(),
                statistic: String::new(),
            },
        ],
        password: "123456".into(),
        password_hash: String::new(),
        credential_id: String::new(),
    }
}

#[tokio::test]
async fn a_day_of_hourly_packets_becomes_records_and_changes_the_score() {
    let server = TestServer::start_with_gateway().await;
    // 08:00 China time on 31 May: no day is due for judging yet.
    let mut admin = acme_with_a_point(&server, point()).await;
    let got =
        admin.registry.get_monitoring_point(pb::GetMonitoringPointRequest { mn: MN.into() }).await.unwrap();
    assert_eq!(got.into_inner().limits[1].statistic, "Avg", "the default statistic is stored explicitly");

    // 30 May: COD above the limit on valid hours; two hours are flagged
    // maintenance (M) and fault (D) with low values that must not count.
    // 31 May: every COD value is a fault and no ammonia arrives at all.
    let mut packets = Vec::new();
    for hour in 0..24 {
        let cod = match hour {
            3 => (1.0, "M"),
            4 => (1.0, "D"),
            _ => (60.0 + f64::from(hour % 3), "N"),
        };
        packets.push(hourly(30, hour, cod, Some(1.2)));
    }
    for hour in 0..24 {
        packets.push(hourly(31, hour, (70.0, "D"), None));
    }
    let mut socket = TcpStream::connect(server.gateway.unwrap()).await.unwrap();
    socket.write_all(b"garbage before the first packet").await.unwrap();
    let mut stream: Vec<u8> = packets.concat();
    // One bad packet: its CRC is wrong, so it gets no ack and changes nothing.
    let mut bad = hourly(30, 12, (999.0, "N"), None);
    let crc_at = bad.len() - 3;
    bad[crc_at] = if bad[crc_at] == b'0' { b'1' } else { b'0' };
    stream.extend_from_slice(&bad);
    // Split writes at awkward places, as a slow modem would.
    for chunk in stream.chunks(97) {
        socket.write_all(chunk).await.unwrap();
    }
    let acks = read_acks(&mut socket, packets.len()).await;
    assert!(acks.iter().all(|a| a.cn() == "9014" && a.mn() == MN));
    assert_eq!(acks[0].qn(), Some("20260530000000000"));

    // Two days later both days are judged.
    let mut changes = server.service.subscribe_changes();
    server.clock.set(Timestamp::parse_rfc3339("2026-06-02T00:00:00Z").unwrap());
    let score = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let changed = changes.recv().await.unwrap();
            assert_eq!(changed.as_str(), ACME);
            let score = admin.score(ACME).await;
            if score.reasons.len() == 3 {
                return score;
            }
        }
    })
    .await
    .expect("the gateway appends the day's records");
    assert_eq!(score.points, 97);
    let mut kinds: Vec<&str> = score.reasons.iter().map(|r| r.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, vec!["exceedance.daily", "monitoring.missing_day", "monitoring.missing_day"]);

    // The exceedance carries its evidence: the valid-hours mean, not the M/D values.
    let exceedance = score.reasons.iter().find(|r| r.kind == "exceedance.daily").unwrap();
    let entry =
        admin.ledger.get_entry(pb::GetEntryRequest { seq: exceedance.seq }).await.unwrap().into_inner();
    let record = record_in(entry.seq, &entry.payload, &entry.details).expect("a record");
    assert_eq!(record.source, "hj212");
    assert_eq!(record.attributes["pollutant"], "w01018");
    assert_eq!(record.attributes["limit"], "50");
    assert_eq!(record.attributes["unit"], "mg/L");
    let mean: f64 = record.attributes["value"].parse().unwrap();
    let valid: Vec<f64> = (0..24).filter(|h| *h != 3 && *h != 4).map(|h| 60.0 + f64::from(h % 3)).collect();
    let expected = valid.iter().sum::<f64>() / valid.len() as f64;
    assert!((mean - expected).abs() < 1e-3, "{mean} vs {expected}");

    // Re-sending a whole day changes nothing: acks, but no new entries.
    let size = server.ledger.head().size;
    for p in &packets[..24] {
        socket.write_all(p).await.unwrap();
    }
    read_acks(&mut socket, 24).await;
    assert_eq!(server.ledger.head().size, size);
    server.stop().await;
}

// The attack: anyone who knows a device's MN sends exceedances in its name.
// The gateway still acknowledges (so a real device stops resending), but
// only packets with the registered password reach the aggregation.
#[tokio::test]
async fn a_packet_with_a_wrong_password_is_acknowledged_but_never_recorded() {
    let server = TestServer::start_with_gateway().await;
    let registration = pb::MonitoringPoint { password: "s3cret-LD13-9f2c".into(), ..point() };
    let mut admin = acme_with_a_point(&server, registration).await;
    let missing = pb::MonitoringPoint { password: String::new(), ..point() };
    let status = admin.registry.register_monitoring_point(missing).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("password: is required"), "{}", status.message());
    let got = admin.registry.get_monitoring_point(pb::GetMonitoringPointRequest { mn: MN.into() }).await;
    assert!(got.unwrap().into_inner().password_hash.is_empty(), "the hash is not handed out");

    // The real device sends 30 May, COD within its limit; then the forger
    // re-sends every hour with PW=123456 and COD far above it.
    let with_pw = |pw: &str, packet: Vec<u8>| {
        let text = String::from_utf8(packet).unwrap();
        let data = &text[6..text.len() - 6];
        hj212::frame(data.replace("PW=123456", &format!("PW={pw}")).as_bytes())
    };
    let genuine: Vec<Vec<u8>> =
        (0..24).map(|h| with_pw("s3cret-LD13-9f2c", hourly(30, h, (10.0, "N"), None))).collect();
    let mut socket = TcpStream::connect(server.gateway.unwrap()).await.unwrap();
    socket.write_all(&genuine.concat()).await.unwrap();
    read_acks(&mut socket, 24).await;
    // The forger's wrong passwords are acknowledged until the fifth, which
    // closes its connection (and locks the device out for new connections).
    let mut forger = connect_from([127, 0, 0, 2], server.gateway.unwrap()).await;
    let mut answered = Vec::new();
    for hour in 0..24 {
        match exchange(&mut forger, &hourly(30, hour, (900.0, "N"), None)).await {
            Some(ack) => answered.push(ack),
            None => break,
        }
    }
    assert_eq!(answered.len(), 4, "four answers, then the fifth wrong password closes the connection");
    assert!(answered.iter().all(|a| a.pw() == "123456"), "the forged packets are acknowledged too");

    // Regulators see the attempt in the gateway's figures for the device.
    let figures = |mn: &str| pb::GetGatewayFiguresRequest { mn: mn.into() };
    let got = admin.registry.get_gateway_figures(figures(MN)).await.unwrap().into_inner();
    assert_eq!(got.devices.len(), 1);
    let device = &got.devices[0];
    assert_eq!((device.device.as_str(), device.packets, device.acknowledged), (MN, 29, 28));
    assert_eq!(device.rejected.get("wrong_password"), Some(&5));
    assert_eq!(got.totals.get("wrong_password"), Some(&5));
    assert_eq!(got.totals.get("lockouts"), Some(&1));
    let elsewhere = server.token("ningbo-other", Role::Regulator { region_prefix: "3399".into() });
    let got = server.client(&elsewhere).await.registry.get_gateway_figures(figures("")).await.unwrap();
    assert!(got.into_inner().devices.is_empty(), "a regulator of another region sees none of ACME's devices");
    let lender = server.token("bank", Role::Lender);
    let status = server.client(&lender).await.registry.get_gateway_figures(figures("")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);

    // 30 May is judged: no ammonia arrived (a missing day), and the COD
    // mean is the genuine 10 mg/L, so there is no exceedance.
    let mut changes = server.service.subscribe_changes();
    server.clock.set(Timestamp::parse_rfc3339("2026-06-01T00:00:00Z").unwrap());
    wait_for_reasons(&mut admin, &mut changes, 1, "the day is judged").await;
    assert_eq!(hj212_reasons(&mut admin).await, vec!["monitoring.missing_day".to_owned()]);
    server.stop().await;
}

// Unplugging a logger must not be a way to escape monitoring: a device
// that never connects owes data from the day after its registration.
#[tokio::test]
async fn a_device_that_never_connects_has_missing_days_after_the_grace_period() {
    let server = TestServer::start_with_gateway().await;
    // Registered at 08:00 China time on 31 May; 1 June is the first day owed.
    let mut admin = acme_with_a_point(&server, point()).await;

    // 08:00 on 3 June: 1 June plus its 24 hours of grace is over.
    let mut changes = server.service.subscribe_changes();
    server.clock.set(Timestamp::parse_rfc3339("2026-06-03T00:00:00Z").unwrap());
    wait_for_reasons(&mut admin, &mut changes, 2, "the silent device's day is judged").await;
    let score = admin.score(ACME).await;
    let mut days: Vec<String> =
        score.reasons.iter().map(|r| format!("{} {}", r.kind, r.description)).collect();
    days.sort();
    assert_eq!(
        days,
        vec![
            format!("monitoring.missing_day outlet DW001 (MN {MN}): no valid w01018 data on 2026-06-01"),
            format!("monitoring.missing_day outlet DW001 (MN {MN}): no valid w21003 data on 2026-06-01"),
        ]
    );
    server.stop().await;
}

// The platform's own outages never cost an enterprise points: the gateway
// is down for four days (stopped, restarted later by the manual clock), and
// the silent device's days in that time are excused, not deducted.
#[tokio::test]
async fn days_overlapping_a_platform_outage_are_excused_not_deducted() {
    // 08:00 China time on 1 June (T0): registered, and the device sends its
    // 07:00 hour; then the platform goes down.
    let server = TestServer::start_with_gateway().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    admin.registry.register_monitoring_point(point()).await.unwrap();
    let mut socket = TcpStream::connect(server.gateway.unwrap()).await.unwrap();
    let may = String::from_utf8(hourly(1, 7, (10.0, "N"), Some(1.0))).unwrap();
    let june = hj212::frame(may[6..may.len() - 6].replace("202605", "202606").as_bytes());
    socket.write_all(&june).await.unwrap();
    read_acks(&mut socket, 1).await;
    let dir = server.stop().await;

    // Listening again at 08:00 on 5 June; at 08:00 on 9 June, 1 to 7 June are judged.
    let server = TestServer::start_with_gateway_in_at(dir, days(4)).await;
    let mut changes = server.service.subscribe_changes();
    server.clock.set(days(8));
    let mut admin = server.admin().await;
    wait_for_reasons(&mut admin, &mut changes, 14, "the days are judged").await;
    let score = admin.score(ACME).await;
    let mut lines: Vec<String> = score
        .reasons
        .iter()
        .map(|r| format!("{} {} {}", r.kind, r.points, r.description.split(" data").next().unwrap_or("")))
        .collect();
    lines.sort();
    // Five excused days (1 to 5 June; the first and last partly down) and
    // two missing ones, for each of the two pollutants.
    let mut expected = Vec::new();
    for p in ["w01018", "w21003"] {
        expected.extend(vec![format!("monitoring.excused_day 0 outlet DW001 (MN {MN}): {p}"); 5]);
        expected.extend(vec![format!("monitoring.missing_day -1 outlet DW001 (MN {MN}): no valid {p}"); 2]);
    }
    expected.sort();
    let all: Vec<&str> = score.reasons.iter().map(|r| r.description.as_str()).collect();
    assert_eq!(lines, expected, "{all:#?}");
    assert_eq!(score.points, 96, "only the days after the outage cost points");
    let excused = score.reasons.iter().find(|r| r.kind == "monitoring.excused_day").unwrap();
    assert!(
        excused
            .description
            .ends_with("excused: platform outage from 2026-06-01T00:00:00Z to 2026-06-05T00:00:00Z"),
        "{}",
        excused.description
    );

    // The outage itself is a ledger entry of its own.
    let ledger = &server.ledger;
    let outages: Vec<pb::PlatformOutage> = ledger
        .scan(0, ledger.head().size)
        .map(|e| e.unwrap())
        .filter(|e| !tlog::index::is_index_payload(&e.payload))
        .filter_map(|e| {
            match <pb::LedgerEvent as prost::Message>::decode(e.payload.as_slice()).unwrap().event {
                Some(pb::ledger_event::Event::PlatformOutage(o)) => Some(o),
                _ => None,
            }
        })
        .collect();
    assert_eq!(outages.len(), 1, "{outages:?}");
    assert_eq!(outages[0].component, "hj212-gateway");
    server.stop().await;
}

/// Sends 30 May's hourly packets (COD above its limit) and waits for their acks.
async fn send_an_exceeding_day(server: &TestServer) {
    let mut socket = TcpStream::connect(server.gateway.unwrap()).await.unwrap();
    let packets: Vec<Vec<u8>> = (0..24).map(|hour| hourly(30, hour, (80.0, "N"), Some(1.0))).collect();
    socket.write_all(&packets.concat()).await.unwrap();
    read_acks(&mut socket, packets.len()).await;
}

/// Waits, on the service's change notices, until ACME's score has at least
/// `n` hj212 reasons.
async fn wait_for_reasons(
    admin: &mut Client,
    changes: &mut tokio::sync::broadcast::Receiver<scoring::Uscc>,
    n: usize,
    what: &str,
) {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while hj212_reasons(admin).await.len() < n {
            changes.recv().await.unwrap();
        }
    });
    waited.await.unwrap_or_else(|_| panic!("{what}: not in time"));
}

/// The hj212 records in the enterprise's score, by kind.
async fn hj212_reasons(client: &mut Client) -> Vec<String> {
    let mut kinds: Vec<String> = client.score(ACME).await.reasons.into_iter().map(|r| r.kind).collect();
    kinds.sort();
    kinds
}

// Shutdown stops every input before the ledger closes: a day close whose
// append is in flight when shutdown begins is either acknowledged (and then
// inside the final checkpoint) or not (and then appended, once, after a
// restart). The race is run with several timings; each must hold.
#[tokio::test]
async fn a_gateway_append_in_flight_at_shutdown_is_in_the_final_checkpoint_or_not_acknowledged() {
    for yields in [0, 1, 3, 10, 30] {
        let server = TestServer::start_with_gateway().await;
        acme_with_a_point(&server, point()).await;
        send_an_exceeding_day(&server).await;

        // 30 May becomes due, and shutdown begins while it closes.
        server.clock.set(Timestamp::parse_rfc3339("2026-06-01T00:00:00Z").unwrap());
        for _ in 0..yields {
            tokio::task::yield_now().await;
        }
        let dir = server.stop().await;

        // Whatever the ledger acknowledged is covered by the final checkpoint.
        let report = crate::support::verify_stopped(dir.path()).expect("the stopped ledger verifies");
        assert_eq!(
            report.checkpoint_size,
            Some(report.entries),
            "{yields} yields: the final checkpoint covers all"
        );

        // After a restart the day is judged exactly once, whichever way the race went.
        let server = TestServer::start_with_gateway_in(dir).await;
        let mut changes = server.service.subscribe_changes();
        server.clock.set(Timestamp::parse_rfc3339("2026-06-01T00:00:00Z").unwrap());
        let mut admin = server.admin().await;
        let want = vec!["exceedance.daily".to_owned()];
        tokio::time::timeout(Duration::from_secs(60), async {
            while hj212_reasons(&mut admin).await != want {
                changes.recv().await.unwrap();
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{yields} yields: the day's exceedance is recorded after the restart"));
        server.stop().await;
    }
}

/// Connects from a loopback address of its own (Linux routes all of 127/8),
/// so a test can play many peers and prefixes.
pub(crate) async fn connect_from(ip: [u8; 4], addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((ip, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Sends one packet and reads its answer; `None` if the gateway closed the
/// connection instead.
async fn exchange(socket: &mut TcpStream, packet: &[u8]) -> Option<hj212::Packet> {
    socket.write_all(packet).await.ok()?;
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(20), socket.read_u8()).await;
        match read.expect("neither an answer nor a close in time") {
            Ok(byte) => line.push(byte),
            Err(_) => return None,
        }
    }
    Some(hj212::parse_packet(&line).expect("answers are well-formed packets"))
}

/// `hourly(day, hour, ...)` with another password.
fn hourly_with_pw(pw: &str, day: u32, hour: u32, cod: f64) -> Vec<u8> {
    let text = String::from_utf8(hourly(day, hour, (cod, "N"), None)).unwrap();
    hj212::frame(text[6..text.len() - 6].replace("PW=123456", &format!("PW={pw}")).as_bytes())
}

async fn gateway_totals(admin: &mut Client) -> std::collections::BTreeMap<String, u64> {
    let request = pb::GetGatewayFiguresRequest { mn: String::new() };
    admin.registry.get_gateway_figures(request).await.unwrap().into_inner().totals
}

// The attack: 5 900 password guesses a second on one connection, and the
// right guess stored a forged value. Now the guess loop is cut off after
// five, and during the lockout even the right password records nothing.
#[tokio::test]
async fn guessing_a_device_password_online_is_throttled_then_locked_out() {
    let server = TestServer::start_with_gateway().await;
    let mut admin = acme_with_a_point(&server, point()).await;
    let gateway = server.gateway.unwrap();
    let mut guesser = connect_from([127, 0, 0, 2], gateway).await;
    let mut answered = 0;
    for guess in 0..1000 {
        if exchange(&mut guesser, &hourly_with_pw(&format!("{guess:06}"), 30, 1, 900.0)).await.is_none() {
            break;
        }
        answered += 1;
    }
    assert_eq!(answered, 4, "the guess loop is bounded");
    // A new connection's wrong guess during the lockout is cut off at once.
    let mut again = connect_from([127, 0, 0, 3], gateway).await;
    assert!(exchange(&mut again, &hourly_with_pw("999999", 30, 1, 900.0)).await.is_none());
    // The right password during the lockout: acknowledged, not recorded.
    let mut lucky = connect_from([127, 0, 1, 4], gateway).await;
    assert!(exchange(&mut lucky, &hourly(30, 2, (900.0, "N"), None)).await.is_some());
    let totals = gateway_totals(&mut admin).await;
    assert_eq!(
        (totals["wrong_password"], totals["lockouts"], totals["locked_out"], totals["values_stored"]),
        (6, 1, 1, 0),
        "{totals:?}"
    );
    // After the lockout window (15 minutes on the service's clock) the
    // device is let in again.
    server.clock.set(Timestamp::parse_rfc3339("2026-05-31T00:16:00Z").unwrap());
    let mut device = connect_from([127, 0, 1, 5], gateway).await;
    assert!(exchange(&mut device, &hourly(30, 3, (10.0, "N"), None)).await.is_some());
    assert_eq!(gateway_totals(&mut admin).await["values_stored"], 1);
    server.stop().await;
}

// The device's password hash sat in a ledger entry any lender could read,
// and a 6-digit password came back offline in 0.2 s.
#[tokio::test]
async fn no_credential_material_in_entries_a_lender_reads() {
    let server = TestServer::start_with_gateway().await;
    let passwords = ["s3cret-LD13-9f2c", "k4Pz9Q"];
    let mut admin =
        acme_with_a_point(&server, pb::MonitoringPoint { password: passwords[0].into(), ..point() }).await;
    // The same password again is a duplicate; a new one rotates.
    let again = pb::MonitoringPoint { password: passwords[0].into(), ..point() };
    assert!(admin.registry.register_monitoring_point(again).await.unwrap().into_inner().duplicate);
    let rotated = pb::MonitoringPoint { password: passwords[1].into(), ..point() };
    assert!(!admin.registry.register_monitoring_point(rotated).await.unwrap().into_inner().duplicate);

    let mut needles: Vec<Vec<u8>> = Vec::new();
    for pw in passwords {
        needles.push(pw.as_bytes().to_vec());
        // The old, unkeyed derivation, in hex and raw.
        let mut old = blake3::Hasher::new_derive_key("ecocode 2026 hj212 device password v1");
        old.update(&(MN.len() as u64).to_le_bytes()).update(MN.as_bytes()).update(pw.as_bytes());
        let old = old.finalize();
        needles.push(old.to_hex().as_bytes().to_vec());
        needles.push(old.as_bytes().to_vec());
        // The keyed verifier too, when its secret is on disk (sled engine).
        if let Ok(secret) = std::fs::read(server.data_dir().join(hj212::SECRET_FILE)) {
            let key: [u8; 32] = secret.as_slice().try_into().unwrap();
            let mut keyed = blake3::Hasher::new_keyed(&key);
            keyed.update(b"ecocode 2026 hj212 device password v2\0");
            keyed.update(&(MN.len() as u64).to_le_bytes()).update(MN.as_bytes()).update(pw.as_bytes());
            let keyed = keyed.finalize();
            needles.push(keyed.to_hex().as_bytes().to_vec());
            needles.push(keyed.as_bytes().to_vec());
        }
    }
    let lender = server.token("bank", Role::Lender);
    let regulator = server.token("beilun", Role::Regulator { region_prefix: "3302".into() });
    // A lender sees no monitoring point entry at all (the record policy,
    // docs/api.md); a regulator in scope sees them, without credentials.
    // Both also see the model entry (public, published at start).
    for (token, visible) in [(lender, 2), (regulator, 4)] {
        let mut reader = server.client(&token).await;
        let mut bytes = Vec::new();
        let mut listed = reader
            .ledger
            .list_entries(pb::ListEntriesRequest { from_seq: 0, to_seq: 0 })
            .await
            .unwrap()
            .into_inner();
        let mut seqs = Vec::new();
        while let Some(entry) = listed.message().await.unwrap() {
            seqs.push(entry.seq);
            bytes.extend(prost::Message::encode_to_vec(&entry));
        }
        assert_eq!(
            seqs.len(),
            visible,
            "the registration, and the two point entries where the role sees them"
        );
        for seq in seqs {
            let entry = reader.ledger.get_entry(pb::GetEntryRequest { seq }).await.unwrap().into_inner();
            bytes.extend(prost::Message::encode_to_vec(&entry));
        }
        if let Ok(point) =
            reader.registry.get_monitoring_point(pb::GetMonitoringPointRequest { mn: MN.into() }).await
        {
            bytes.extend(prost::Message::encode_to_vec(&point.into_inner()));
        }
        for needle in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "credential material readable"
            );
        }
    }
    // The rotated password is the one the device must send now.
    let mut device = TcpStream::connect(server.gateway.unwrap()).await.unwrap();
    assert!(exchange(&mut device, &hourly_with_pw(passwords[1], 30, 1, 10.0)).await.is_some());
    assert!(exchange(&mut device, &hourly_with_pw(passwords[0], 30, 2, 10.0)).await.is_some());
    let totals = gateway_totals(&mut admin).await;
    assert_eq!((totals["values_stored"], totals["wrong_password"]), (1, 1), "{totals:?}");
    server.stop().await;
}

// 68 loopback addresses x 16 connections filled the 1 024 slots and a real
// device was refused. Unauthenticated connections now have a small pool of
// their own, per /24 too, where a newer one pushes out the oldest.
#[tokio::test]
async fn unauthenticated_connections_from_many_addresses_cannot_take_a_real_devices_slot() {
    let server = TestServer::start_with(|config| {
        config.hj212_listen = Some("127.0.0.1:0".parse().unwrap());
        config.gateway.max_connections = 40;
        config.gateway.max_connections_per_peer = 4;
        config.gateway.max_unauthenticated_connections = 16;
        config.gateway.max_unauthenticated_per_prefix = 8;
    })
    .await;
    let mut admin = acme_with_a_point(&server, point()).await;
    let gateway = server.gateway.unwrap();
    // A device connected before the flood.
    let mut early = connect_from([127, 0, 8, 1], gateway).await;
    assert!(exchange(&mut early, &hourly(30, 0, (10.0, "N"), None)).await.is_some());

    // The flood: 17 addresses in each of four /24s, two connections each, held open.
    let mut flood = Vec::new();
    for prefix in 0..4 {
        for host in 1..=17 {
            for _ in 0..2 {
                flood.push(connect_from([127, 0, prefix, host], gateway).await);
            }
        }
    }
    // Wait until the gateway has taken in every connection of the flood
    // (it offers no event for this; the condition is bounded).
    let expected = flood.len() as u64 + 1;
    let mut seen = 0;
    for _ in 0..10_000 {
        let t = gateway_totals(&mut admin).await;
        seen = t["connections_accepted"] + t["connections_refused"] + t["connections_refused_per_peer"];
        if seen >= expected {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(seen, expected, "every connection was taken in");

    // A device connecting now from its own /24 is served and recorded, and
    // the early device still is.
    let mut late = connect_from([127, 0, 9, 1], gateway).await;
    assert!(exchange(&mut late, &hourly(30, 1, (10.0, "N"), None)).await.is_some());
    assert!(exchange(&mut early, &hourly(30, 2, (10.0, "N"), None)).await.is_some());
    let totals = gateway_totals(&mut admin).await;
    assert_eq!(totals["values_stored"], 3, "{totals:?}");
    // Every flood connection beyond the 16 unauthenticated slots was pushed
    // out (or, while evicted ones were closing, refused at the total).
    let out = totals["connections_evicted_unauthenticated"] + totals["connections_refused"];
    assert!(out >= 136 - 16, "{totals:?}");
    server.stop().await;
}

// The idle timer restarted with every packet, even from an unknown MN, so
// invented MNs kept a connection (and its slot) forever.
#[tokio::test]
async fn unknown_mn_packets_do_not_keep_a_connection_alive() {
    let server = TestServer::start_with(|config| {
        config.hj212_listen = Some("127.0.0.1:0".parse().unwrap());
        config.gateway.unauthenticated_timeout = Duration::from_millis(300);
        config.gateway.max_bytes_without_packet = usize::MAX;
    })
    .await;
    let mut admin = acme_with_a_point(&server, point()).await;
    let mut socket = TcpStream::connect(server.gateway.unwrap()).await.unwrap();
    let invented = String::from_utf8(hourly(30, 1, (10.0, "N"), None)).unwrap();
    let invented = hj212::frame(invented[6..invented.len() - 6].replace(MN, "INVENTED0001").as_bytes());
    // Each packet is answered, yet the connection ends at its deadline.
    let mut answered = 0u64;
    while exchange(&mut socket, &invented).await.is_some() {
        answered += 1;
        assert!(answered < 1_000_000, "the connection is kept alive by unknown packets");
    }
    let totals = gateway_totals(&mut admin).await;
    assert_eq!((totals["connections_timed_out"], totals["unknown_device"]), (1, answered), "{totals:?}");
    server.stop().await;
}

// A real packet with a stray character between a field separator and the
// next key got no 9014, so the device would resend it for ever.
#[tokio::test]
async fn a_stray_character_after_a_field_separator_is_acknowledged_and_counted() {
    let server = TestServer::start_with_gateway().await;
    let mut admin = acme_with_a_point(&server, point()).await;
    let text = String::from_utf8(hourly(30, 5, (10.0, "N"), Some(1.0))).unwrap();
    let data = text[6..text.len() - 6].replace(";DataTime", "; DataTime").replace(";w21003", ";\rw21003");
    let mut socket = TcpStream::connect(server.gateway.unwrap()).await.unwrap();
    let ack = exchange(&mut socket, &hj212::frame(data.as_bytes())).await.expect("acknowledged");
    assert_eq!((ack.cn(), ack.qn()), ("9014", Some("20260530050000000")));
    let got = admin.registry.get_gateway_figures(pb::GetGatewayFiguresRequest { mn: MN.into() }).await;
    let device = got.unwrap().into_inner().devices.remove(0);
    assert_eq!(device.deviations.get("stray_character"), Some(&1));
    assert_eq!(gateway_totals(&mut admin).await["values_stored"], 2, "both pollutants are kept");
    // A stray character inside a value still leaves doubt: rejected, counted.
    let doubtful = data.replace("w01018-Avg=10", "w01018-Avg= 10");
    socket.write_all(&hj212::frame(doubtful.as_bytes())).await.unwrap();
    let ok =
        exchange(&mut socket, &hourly(30, 6, (10.0, "N"), None)).await.expect("the next packet is answered");
    assert_eq!(ok.qn(), Some("20260530060000000"), "the doubtful packet got no answer");
    assert_eq!(gateway_totals(&mut admin).await["malformed"], 1);
    server.stop().await;
}

// Wrong passwords and per-peer refusals were not in /metrics.
#[tokio::test]
async fn wrong_passwords_and_refusals_are_in_metrics() {
    let server = TestServer::start_with(|config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        config.hj212_listen = Some("127.0.0.1:0".parse().unwrap());
        config.gateway.max_connections_per_peer = 1;
        config.gateway.password_delay = Duration::ZERO;
    })
    .await;
    acme_with_a_point(&server, point()).await;
    let gateway = server.gateway.unwrap();
    let mut device = connect_from([127, 0, 0, 2], gateway).await;
    for hour in 0..2 {
        assert!(exchange(&mut device, &hourly_with_pw("000000", 30, hour, 10.0)).await.is_some());
    }
    let mut second = connect_from([127, 0, 0, 2], gateway).await;
    let mut rest = Vec::new();
    assert_eq!(second.read_to_end(&mut rest).await.map(|_| rest.len()).unwrap_or(0), 0, "refused");
    let text = crate::metrics::scrape(server.metrics.unwrap(), "/metrics").await;
    for line in [
        format!(r#"ecocode_hj212_wrong_passwords_total{{mn="{MN}"}} 2"#),
        r#"ecocode_hj212_total{counter="wrong_password"} 2"#.to_owned(),
        r#"ecocode_hj212_total{counter="connections_refused_per_peer"} 1"#.to_owned(),
        r#"ecocode_hj212_total{counter="lockouts"} 0"#.to_owned(),
    ] {
        assert!(text.contains(&line), "{line} not in {text}");
    }
    server.stop().await;
}

// Moving a sled server to PostgreSQL (`ecocode migrate`) must not lock every
// device out: the first node started on the database with the old data
// directory takes its secret and verifiers along, and every node shares them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_passwords_survive_the_move_to_a_shared_store() {
    let old = tempfile::tempdir().unwrap();
    let registered = {
        let credentials = hj212::Credentials::open(old.path(), None).unwrap();
        let point = server::convert::from_proto::monitoring_point_registration(&point()).unwrap();
        credentials.credential_for(None, point).unwrap()
    };
    let url = pgtest::database();
    let (url, old_dir) = (url.clone(), old.path().to_path_buf());
    tokio::task::spawn_blocking(move || {
        // The ledger creates the tables on the database, as `ecocode migrate` does.
        let keys = tempfile::tempdir().unwrap();
        let mut config = ledger::LedgerConfig::new(keys.path());
        config.store = Some(url.clone());
        drop(ledger::Ledger::open(config).unwrap());
        // Opened by the composition root after the ledger; here directly,
        // the same way, with the old data directory and then a new one.
        let first = hj212::Credentials::open(&old_dir, Some(&url)).unwrap();
        assert_eq!(first.check(&registered, "123456").unwrap(), hj212::PasswordCheck::Right);
        let other = tempfile::tempdir().unwrap();
        let second = hj212::Credentials::open(other.path(), Some(&url)).unwrap();
        assert_eq!(second.check(&registered, "123456").unwrap(), hj212::PasswordCheck::Right);
        assert_eq!(second.check(&registered, "654321").unwrap(), hj212::PasswordCheck::Wrong);
    })
    .await
    .unwrap();
}
