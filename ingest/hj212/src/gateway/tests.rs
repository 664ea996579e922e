//! Gateway tests over real TCP on 127.0.0.1:0, with an in-test sink standing
//! in for the server. Waiting is on channels and the peer's EOF, never sleeps.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use scoring::{MonitoringRules, NANOS_PER_SECOND, Record, Timestamp, Uscc};
use tokio::sync::{mpsc, oneshot};

use super::admission::prefix;
use super::summary::{SUMMARY_SAMPLES, summarize};
use super::*;
use crate::availability::Outage;
use crate::figures::DeviceFigures;
use crate::point::MonitoringPoint;
use crate::time::LocalDay;
use crate::{PollutantLimit, Statistic, frame, parse_packet};

const MN: &str = "Z13401000010301";
/// Every test fails rather than hangs if the gateway misbehaves.
const PATIENCE: Duration = Duration::from_secs(20);

struct TestSink {
    point: MonitoringPoint,
    credentials: crate::Credentials,
    appended: mpsc::UnboundedSender<Vec<Record>>,
    records: Mutex<Vec<Record>>,
}

impl RecordSink for TestSink {
    fn monitoring_point(&self, mn: &str) -> Option<MonitoringPoint> {
        (mn == MN).then(|| self.point.clone())
    }

    async fn record_outage(&self, _outage: Outage) -> Result<(), SinkError> {
        Ok(())
    }

    fn monitoring_points(&self) -> Vec<MonitoringPoint> {
        vec![self.point.clone()]
    }

    fn check_password(&self, point: &MonitoringPoint, pw: &str) -> Result<PasswordCheck, SinkError> {
        self.credentials.check(point, pw).map_err(|e| SinkError::Transient(e.to_string()))
    }

    fn append(&self, records: Vec<Record>) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.records.lock().unwrap().extend(records.iter().cloned());
        let sent = self.appended.send(records).map_err(|e| SinkError::Transient(e.to_string()));
        async move { sent }
    }
}

/// 17 March 2026, noon China time: 15 March is over, grace included.
fn fixed_clock() -> Timestamp {
    LocalDay::from_ymd(2026, 3, 17).unwrap().start().plus_nanos(12 * 3600 * NANOS_PER_SECOND)
}

fn config() -> GatewayConfig {
    GatewayConfig {
        idle_timeout: Duration::from_secs(30),
        max_connections: 8,
        max_connections_per_peer: 8,
        max_unauthenticated_connections: 8,
        max_unauthenticated_per_prefix: 8,
        unauthenticated_timeout: Duration::from_secs(30),
        max_password_failures: 3,
        max_password_failures_per_peer: 10,
        password_lockout: Duration::from_secs(900),
        password_delay: Duration::ZERO,
        max_password_delay: Duration::ZERO,
        max_bytes_without_packet: 64 * 1024,
        accept_error_backoff: Duration::from_millis(100),
        summary_interval: Duration::from_secs(300),
        max_tracked_devices: 100,
        split_timeout: Duration::from_secs(600),
        max_split_parts: 64,
        max_split_sets: 8,
        close_interval: Duration::from_millis(10),
        close_grace: Duration::from_secs(24 * 3600),
        min_outage: Duration::from_secs(15 * 60),
        valid_days: MonitoringRules { gas: 1, water: 1, other: 1 },
        clock: Arc::new(fixed_clock),
        shared_state: None,
    }
}

struct Running {
    addr: SocketAddr,
    stats: Arc<GatewayStats>,
    appended: mpsc::UnboundedReceiver<Vec<Record>>,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start(config: GatewayConfig) -> Running {
    start_with(config, false).await
}

/// `legacy`: the point carries an unkeyed hash, as entries written before
/// keyed verifiers do.
async fn start_with(config: GatewayConfig, legacy: bool) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let (tx, appended) = mpsc::unbounded_channel();
    let point = MonitoringPoint::new(
        MN,
        Uscc::parse("91330421739237858X").unwrap(),
        "DW001",
        vec![PollutantLimit::new("w01018", 50.0, "mg/L", Statistic::Avg).unwrap()],
    )
    .unwrap();
    let credentials = crate::Credentials::open(dir.path(), None).unwrap();
    let registration =
        crate::PointRegistration { point, password: crate::DevicePassword::new("123456").unwrap() };
    let point = if legacy {
        let hash = crate::PasswordHash::of(MN, "123456").unwrap();
        registration.point.with_credential(crate::Credential::Legacy(hash))
    } else {
        credentials.credential_for(None, registration).unwrap()
    };
    let sink = Arc::new(TestSink { point, credentials, appended: tx, records: Mutex::default() });
    let gateway = Gateway::open(dir.path(), sink, config).unwrap();
    let stats = gateway.stats();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(gateway.serve(listener, async {
        let _ = stopped.await;
    }));
    Running { addr, stats, appended, stop, served, _dir: dir }
}

fn packet(mn: &str, cn: &str, flag: u8, cp: &str) -> Vec<u8> {
    packet_with_pw("123456", mn, cn, flag, cp)
}

fn packet_with_pw(pw: &str, mn: &str, cn: &str, flag: u8, cp: &str) -> Vec<u8> {
    let data = format!(
        "QN=20260315100000123;ST=32;CN={cn};PW={pw};MN={mn};Flag={flag};CP=&&DataTime=20260315100000;{cp}&&"
    );
    frame(data.as_bytes())
}

async fn read_line(stream: &mut TcpStream) -> Vec<u8> {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let byte = tokio::time::timeout(PATIENCE, stream.read_u8()).await.expect("no answer in time");
        line.push(byte.expect("connection closed before the answer ended"));
    }
    line
}

/// The next answer line, or `None` once the gateway closed the connection.
async fn read_answer(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        match tokio::time::timeout(PATIENCE, stream.read_u8()).await.expect("no answer in time") {
            Ok(byte) => line.push(byte),
            Err(_) => return None,
        }
    }
    Some(line)
}

async fn read_eof(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    let read =
        tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await.expect("not closed in time");
    read.is_err() || rest.is_empty()
}

#[tokio::test]
async fn acks_rejections_and_records_over_tcp() {
    let mut gw = start(config()).await;
    let mut device = TcpStream::connect(gw.addr).await.unwrap();

    // Garbage first, then an hourly packet that asks for an answer, in pieces.
    let hourly = packet(MN, "2061", 5, "w01018-Avg=80,w01018-Flag=N");
    device.write_all(b"\x00\x01AT+CIPSEND\r\n").await.unwrap();
    for piece in [&hourly[..3], &hourly[3..50], &hourly[50..]] {
        device.write_all(piece).await.unwrap();
        device.flush().await.unwrap();
    }
    let expected_ack = parse_packet(&hourly).unwrap().ack();
    assert_eq!(read_line(&mut device).await, expected_ack);

    // No answer for Flag=4, a bad CRC or a bad length; an unregistered
    // device's packet is still answered. Answers come in order, so the next
    // line being the unregistered device's answer proves the others got none.
    let realtime = packet(MN, "2011", 4, "w01018-Rtd=80,w01018-Flag=N");
    let mut bad_crc = packet(MN, "2061", 5, "w01018-Avg=10,w01018-Flag=N");
    let crc_at = bad_crc.len() - 6;
    bad_crc[crc_at] = if bad_crc[crc_at] == b'0' { b'1' } else { b'0' };
    let mut bad_length = packet(MN, "2061", 5, "w01018-Avg=10,w01018-Flag=N");
    bad_length[2..6].copy_from_slice(b"0999");
    let stranger = packet("UNREGISTERED01", "2061", 7, "w01018-Avg=10,w01018-Flag=N");
    let burst = [realtime, bad_crc, bad_length, stranger.clone()].concat();
    device.write_all(&burst).await.unwrap();
    assert_eq!(read_line(&mut device).await, parse_packet(&stranger).unwrap().ack());

    // The closer judges 15 March: 80 mg/L against a 50 mg/L limit.
    let records = tokio::time::timeout(PATIENCE, gw.appended.recv()).await.unwrap().unwrap();
    let ids: Vec<&str> = records.iter().map(|r| r.source_record_id.as_str()).collect();
    assert_eq!(ids, vec!["hj212:Z13401000010301:w01018:20260315:exceedance"]);
    assert_eq!(records[0].attributes["value"], "80");

    gw.stop.send(()).unwrap();
    gw.served.await.unwrap().unwrap();
    assert!(read_eof(&mut device).await, "shutdown closes device connections");
    let counts = gw.stats.snapshot();
    assert_eq!(
        counts,
        GatewayCounts {
            connections_accepted: 1,
            packets_ok: 3,
            bad_crc: 1,
            bad_length: 1,
            unknown_device: 1,
            acks_sent: 2,
            values_stored: 1,
            records_emitted: 1,
            garbage_bytes: counts.garbage_bytes,
            ..GatewayCounts::default()
        }
    );
    assert!(counts.garbage_bytes >= 14, "{counts:?}");
}

#[tokio::test]
async fn a_packet_with_a_wrong_password_is_acknowledged_and_counted_but_not_kept() {
    let gw = start(config()).await;
    let mut device = TcpStream::connect(gw.addr).await.unwrap();
    let forged = packet_with_pw("000000", MN, "2061", 5, "w01018-Avg=999,w01018-Flag=N");
    device.write_all(&forged).await.unwrap();
    assert_eq!(read_line(&mut device).await, parse_packet(&forged).unwrap().ack());
    gw.stop.send(()).unwrap();
    gw.served.await.unwrap().unwrap();
    let counts = gw.stats.snapshot();
    assert_eq!((counts.wrong_password, counts.values_stored, counts.acks_sent), (1, 0, 1), "{counts:?}");
}

/// Part `pno` of `pnum` of message `qn_ms` (the last 3 digits of its QN).
fn split_part(qn_ms: &str, pnum: u16, pno: u16, cp: &str) -> Vec<u8> {
    let data = format!(
        "QN=20260315100000{qn_ms};ST=32;CN=2061;PW=123456;MN={MN};Flag=7;PNUM={pnum};PNO={pno};CP=&&{cp}&&"
    );
    frame(data.as_bytes())
}

#[tokio::test]
async fn split_packets_count_only_when_complete() {
    let now = Arc::new(std::sync::atomic::AtomicI64::new(fixed_clock().unix_nanos()));
    let clock = now.clone();
    let clock: WallClock = Arc::new(move || Timestamp::from_unix_nanos(clock.load(Ordering::SeqCst)));
    let mut gw = start(GatewayConfig { clock, ..config() }).await;

    // Half of a message at 11:00 with a huge value; the device hangs up.
    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    let half = split_part("001", 2, 1, "DataTime=20260315110000;w01018-Avg=999,w01018-Flag=N");
    first.write_all(&half).await.unwrap();
    assert_eq!(read_line(&mut first).await, parse_packet(&half).unwrap().ack(), "each part is acknowledged");
    drop(first);

    // Half of another message; its partner comes 11 minutes later, past
    // the split timeout, after another packet.
    let mut device = TcpStream::connect(gw.addr).await.unwrap();
    let stale = split_part("002", 2, 1, "DataTime=20260315120000;w01018-Avg=999");
    device.write_all(&stale).await.unwrap();
    read_line(&mut device).await;
    now.fetch_add(11 * 60 * NANOS_PER_SECOND, Ordering::SeqCst);

    // A whole message at 10:00, its parts out of order: it counts.
    let part2 = split_part("003", 2, 2, "w01018-Flag=N");
    let part1 = split_part("003", 2, 1, "DataTime=20260315100000;w01018-Avg=80");
    device.write_all(&[part2, part1].concat()).await.unwrap();
    read_line(&mut device).await;
    read_line(&mut device).await;
    let late = split_part("002", 2, 2, "w01018-Flag=N");
    device.write_all(&late).await.unwrap();
    read_line(&mut device).await;

    let records = tokio::time::timeout(PATIENCE, gw.appended.recv()).await.unwrap().unwrap();
    let values: Vec<&str> = records.iter().map(|r| r.attributes["value"].as_str()).collect();
    assert_eq!(values, vec!["80"], "only the complete message's value counts");
    gw.stop.send(()).unwrap();
    gw.served.await.unwrap().unwrap();
    let counts = gw.stats.snapshot();
    // Incomplete: the hung-up half, the stale half, and the late part,
    // which began a set of its own that shutdown ended.
    assert_eq!((counts.split_incomplete, counts.values_stored, counts.acks_sent), (3, 1, 5), "{counts:?}");
    assert_eq!(gw.stats.devices()[MN].rejected.get("split_incomplete"), Some(&3));
}

/// Connects from a loopback address of its own (Linux routes all of 127/8),
/// so tests can play several peers.
async fn connect_from(ip: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((ip, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

// A connection flood from one peer, a sender of junk and a slow sender
// must not keep a well-behaved device from being served.
#[tokio::test]
async fn a_flood_a_junk_sender_and_a_slow_sender_do_not_starve_a_good_device() {
    let config = GatewayConfig {
        max_connections: 16,
        max_connections_per_peer: 3,
        max_bytes_without_packet: 8 * 1024,
        idle_timeout: Duration::from_millis(300),
        unauthenticated_timeout: Duration::from_millis(300),
        ..config()
    };
    let gw = start(config).await;

    // The flood: 10 connections from 127.0.0.1; beyond 3 they are closed at once.
    let mut flood = Vec::new();
    for _ in 0..10 {
        flood.push(connect_from([127, 0, 0, 1], gw.addr).await);
    }
    let mut closed = 0;
    for stream in &mut flood[3..] {
        closed += usize::from(read_eof(stream).await);
    }
    assert_eq!(closed, 7);

    // Junk without end is cut off after the byte budget, long before the idle timeout.
    let mut junk = connect_from([127, 0, 0, 2], gw.addr).await;
    let chunk = vec![b'x'; 1024];
    for _ in 0..64 {
        if junk.write_all(&chunk).await.is_err() {
            break;
        }
    }
    assert!(read_eof(&mut junk).await, "the junk sender is dropped");

    // A slow sender dribbles the start of a frame and never finishes it:
    // partial bytes do not reset the idle timeout.
    let mut slow = connect_from([127, 0, 0, 3], gw.addr).await;
    slow.write_all(b"##0101QN=2026").await.unwrap();
    assert!(read_eof(&mut slow).await, "the slow sender is dropped");

    // A good device, from its own address, is served and acknowledged.
    let mut device = connect_from([127, 0, 0, 4], gw.addr).await;
    let hourly = packet(MN, "2061", 5, "w01018-Avg=10,w01018-Flag=N");
    device.write_all(&hourly).await.unwrap();
    assert_eq!(read_line(&mut device).await, parse_packet(&hourly).unwrap().ack());

    gw.stop.send(()).unwrap();
    gw.served.await.unwrap().unwrap();
    let counts = gw.stats.snapshot();
    assert_eq!(counts.connections_refused_per_peer, 7, "{counts:?}");
    assert_eq!(counts.connections_dropped_junk, 1, "{counts:?}");
    assert!(counts.connections_timed_out >= 1, "{counts:?}");
    let devices = gw.stats.devices();
    assert_eq!((devices[MN].packets, devices[MN].acknowledged), (1, 1));
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let gw = start(GatewayConfig {
        idle_timeout: Duration::from_millis(50),
        unauthenticated_timeout: Duration::from_millis(50),
        ..config()
    })
    .await;
    let mut device = TcpStream::connect(gw.addr).await.unwrap();
    assert!(read_eof(&mut device).await);
    gw.stop.send(()).unwrap();
    gw.served.await.unwrap().unwrap();
}

#[tokio::test]
async fn connections_beyond_the_maximum_are_refused() {
    let gw = start(GatewayConfig { max_connections: 1, ..config() }).await;
    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    // Once the first device has its answer, its connection holds the only permit.
    first.write_all(&packet(MN, "2011", 5, "w01018-Rtd=1")).await.unwrap();
    read_line(&mut first).await;
    let mut second = TcpStream::connect(gw.addr).await.unwrap();
    assert!(read_eof(&mut second).await);
    gw.stop.send(()).unwrap();
    gw.served.await.unwrap().unwrap();
    assert_eq!(gw.stats.snapshot().connections_refused, 1);
}

// A guess loop on one connection was answered at line speed, and the
// right guess stored a forged value.
#[tokio::test]
async fn guessing_a_password_is_cut_off_and_locks_the_device_out() {
    let gw = start(config()).await;
    let mut guesser = connect_from([127, 0, 0, 9], gw.addr).await;
    let mut answered = 0;
    for guess in 0..100 {
        let forged = packet_with_pw(&format!("{guess:06}"), MN, "2061", 5, "w01018-Avg=999,w01018-Flag=N");
        if guesser.write_all(&forged).await.is_err() {
            break;
        }
        if read_answer(&mut guesser).await.is_none() {
            break;
        }
        answered += 1;
    }
    assert_eq!(answered, 2, "answers before the third wrong password closes the connection");
    // Locked out: the right password, even from another address, is
    // acknowledged and not recorded.
    let mut device = connect_from([127, 0, 1, 9], gw.addr).await;
    let hourly = packet(MN, "2061", 5, "w01018-Avg=10,w01018-Flag=N");
    device.write_all(&hourly).await.unwrap();
    assert_eq!(read_line(&mut device).await, parse_packet(&hourly).unwrap().ack());
    gw.stop.send(()).unwrap();
    gw.served.await.unwrap().unwrap();
    let counts = gw.stats.snapshot();
    assert_eq!(
        (counts.wrong_password, counts.lockouts, counts.locked_out, counts.values_stored),
        (3, 1, 1, 0),
        "{counts:?}"
    );
    assert_eq!(gw.stats.devices()[MN].rejected.get("locked_out"), Some(&1));
}

#[test]
fn one_summary_line_covers_every_device_with_escaped_examples() {
    let mut now = BTreeMap::new();
    for i in 0..50 {
        let mut f = DeviceFigures::default();
        f.rejected.insert("unknown_device".into(), 2);
        now.insert(format!("X{i:02}\u{1b}"), f);
    }
    let summary = summarize(&BTreeMap::new(), &now).unwrap();
    assert_eq!(summary.devices, 50);
    assert_eq!(summary.totals["rejected unknown_device"], 100);
    assert_eq!(summary.examples.len(), SUMMARY_SAMPLES);
    assert!(!format!("{:?}", summary.examples).contains('\u{1b}'), "control bytes are escaped");
    assert_eq!(summarize(&now, &now), None, "nothing new, no line");
}

#[test]
fn a_new_unauthenticated_connection_pushes_out_the_oldest_of_its_prefix_then_of_all() {
    let slots = Mutex::new(Unauthenticated::default());
    let config =
        GatewayConfig { max_unauthenticated_connections: 3, max_unauthenticated_per_prefix: 2, ..config() };
    let take = |ip: [u8; 4]| UnauthenticatedSlot::take(&slots, IpAddr::from(ip), &config);
    let open = || slots.lock().unwrap().open.keys().copied().collect::<Vec<u64>>();
    let (a1, _) = take([10, 0, 0, 1]);
    let (_a2, _) = take([10, 0, 0, 2]);
    let (_b1, _) = take([10, 0, 1, 1]);
    // A third from 10.0.0.0/24 pushes out that prefix's oldest, not 10.0.1.1.
    let (_a3, evicted) = take([10, 0, 0, 3]);
    assert_eq!((evicted, open()), (1, vec![1, 2, 3]));
    // Another prefix, all slots taken: the oldest of all goes.
    let (_c1, evicted) = take([10, 0, 2, 1]);
    assert_eq!((evicted, open()), (1, vec![2, 3, 4]));
    // Dropping an evicted slot frees nothing twice.
    drop(a1);
    assert_eq!(open(), vec![2, 3, 4]);
    assert_eq!(prefix(IpAddr::from([10, 0, 0, 77])), IpAddr::from([10, 0, 0, 0]));
    assert_eq!(prefix("2001:db8:1:2:3:4:5:6".parse().unwrap()), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
}

// Points registered before keyed verifiers keep reporting, flagged so the
// operator rotates their passwords.
#[tokio::test]
async fn a_legacy_password_hash_is_still_accepted_and_flagged() {
    let gw = start_with(config(), true).await;
    let mut device = TcpStream::connect(gw.addr).await.unwrap();
    let hourly = packet(MN, "2061", 5, "w01018-Avg=10,w01018-Flag=N");
    device.write_all(&hourly).await.unwrap();
    read_line(&mut device).await;
    let forged = packet_with_pw("654321", MN, "2061", 5, "w01018-Avg=999,w01018-Flag=N");
    device.write_all(&forged).await.unwrap();
    read_line(&mut device).await;
    gw.stop.send(()).unwrap();
    gw.served.await.unwrap().unwrap();
    let counts = gw.stats.snapshot();
    assert_eq!(
        (counts.legacy_verifier, counts.values_stored, counts.wrong_password),
        (1, 1, 1),
        "{counts:?}"
    );
    assert_eq!(gw.stats.devices()[MN].legacy_verifier, 1);
}
