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
    let event = <pb::LedgerEvent as prost::Message>::decode(entry.payload.as_slice()).unwrap();
    let Some(pb::ledger_event::Event::Record(record)) = event.event else { panic!("not a record") };
    assert_eq!(record.source, "hj212");
    assert_eq!(record.attributes["pollutant"], "w01018");
    assert_eq!(record.attributes["limit"], "50");
    assert_eq!(record.attributes["unit"], "mg/L");
    let mean: f64 = record.attributes["value"].parse().unwrap();
    let valid: Vec<f64> = (0..24).filter(|h| *h != 3 && *h != 4).map(|h| 60.0 + f64::from(h % 3)).collect();
    let expected = valid.iter().sum::<f64>() / valid.len() as f64;
    assert!((mean - expected).abs() < 1e-3, "{mean} vs {expected}");

    // Re-sending a whole day changes nothing: acks, but no new entries.
    let size = server.service.ledger().head().size;
    for p in &packets[..24] {
        socket.write_all(p).await.unwrap();
    }
    read_acks(&mut socket, 24).await;
    assert_eq!(server.service.ledger().head().size, size);
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
    let forged: Vec<Vec<u8>> = (0..24).map(|h| hourly(30, h, (900.0, "N"), None)).collect();
    let mut socket = TcpStream::connect(server.gateway.unwrap()).await.unwrap();
    socket.write_all(&[genuine.concat(), forged.concat()].concat()).await.unwrap();
    let acks = read_acks(&mut socket, 48).await;
    assert!(acks[24..].iter().all(|a| a.pw() == "123456"), "the forged packets are acknowledged too");

    // Regulators see the attempt in the gateway's figures for the device.
    let figures = |mn: &str| pb::GetGatewayFiguresRequest { mn: mn.into() };
    let got = admin.registry.get_gateway_figures(figures(MN)).await.unwrap().into_inner();
    assert_eq!(got.devices.len(), 1);
    let device = &got.devices[0];
    assert_eq!((device.device.as_str(), device.packets, device.acknowledged), (MN, 48, 48));
    assert_eq!(device.rejected.get("wrong_password"), Some(&24));
    assert_eq!(got.totals.get("wrong_password"), Some(&24));
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
    let ledger = server.service.ledger();
    let outages: Vec<pb::PlatformOutage> = ledger
        .scan(0, ledger.head().size)
        .map(|e| e.unwrap())
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
