//! What the service counts and how it is read: calls by method and status
//! with their durations, calls turned away by reason, the ledger's size and
//! the HJ 212 gateway's counters, in the Prometheus text format on
//! `GET /metrics` of `--metrics-listen` (off by default).
//!
//! Labels hold only method names, status names and fixed reasons: never a
//! token, an identifier or anything else a caller sent. A method or route
//! gets a label of its own only when it is known in advance (gRPC methods
//! from the service descriptors, web routes from the router's templates);
//! everything else counts under `other`, so invented paths can neither grow
//! the table nor push a real method out of it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hj212::{GatewayCounts, GatewayStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;

use crate::service::Service;

/// Upper bounds (seconds) of the call duration histogram.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The label of every call or request whose method or route is not known.
pub const OTHER: &str = "other";

#[derive(Default, Debug)]
struct CallStats {
    count: u64,
    seconds: f64,
    /// Calls at most `BUCKETS[i]` seconds long (not cumulative here).
    buckets: [u64; BUCKETS.len()],
}

impl CallStats {
    fn add(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        self.count += 1;
        self.seconds += seconds;
        if let Some(i) = BUCKETS.iter().position(|&b| seconds <= b) {
            self.buckets[i] += 1;
        }
    }
}

/// Every gRPC method this process serves, as `/package.Service/Method`,
/// read from the encoded service descriptors (the contract, health and
/// reflection), so the list cannot drift from what is served.
pub fn grpc_methods() -> BTreeSet<String> {
    use prost::Message as _;
    let sets = [
        ecocode_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    ];
    let mut methods = BTreeSet::new();
    for encoded in sets {
        // The sets are compiled into the binary; one that does not decode
        // leaves its methods under `other`, it does not stop the server.
        let Ok(set) = prost_types::FileDescriptorSet::decode(encoded) else { continue };
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    let service = match package {
                        "" => service.name().to_owned(),
                        package => format!("{package}.{}", service.name()),
                    };
                    methods.insert(format!("/{service}/{}", method.name()));
                }
            }
        }
    }
    methods
}

/// The counters of one server.
#[derive(Debug)]
pub struct Metrics {
    /// Calls admitted and not yet answered; the call guard limits it.
    pub(crate) in_progress: AtomicUsize,
    /// The gRPC paths that get a label of their own.
    methods: BTreeSet<String>,
    calls: Mutex<BTreeMap<(String, i32), CallStats>>,
    /// Web requests by route template (`/e/{uscc}`, never the path sent)
    /// and HTTP status.
    requests: Mutex<BTreeMap<(String, u16), CallStats>>,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl Default for Metrics {
    /// Counters that know every method this process serves.
    fn default() -> Metrics {
        Metrics::with_methods(grpc_methods())
    }
}

impl Metrics {
    /// Counters that label only the gRPC paths in `methods`.
    pub fn with_methods(methods: BTreeSet<String>) -> Metrics {
        Metrics {
            in_progress: AtomicUsize::new(0),
            methods,
            calls: Mutex::default(),
            requests: Mutex::default(),
            rejected: Mutex::default(),
        }
    }

    /// Counts one finished call of `method` (the gRPC path) that ended with
    /// `code` after `elapsed`; an unknown path counts as [`OTHER`].
    pub fn call(&self, method: &str, code: Code, elapsed: Duration) {
        let method = if self.methods.contains(method) { method } else { OTHER };
        if let Ok(mut calls) = self.calls.lock() {
            calls.entry((method.to_owned(), code as i32)).or_default().add(elapsed);
        }
    }

    /// Counts one answered web request: `route` is the router's template
    /// that matched (`None`: no route did, counted as [`OTHER`]).
    pub fn request(&self, route: Option<&str>, status: u16, elapsed: Duration) {
        let route = route.unwrap_or(OTHER);
        if let Ok(mut requests) = self.requests.lock() {
            requests.entry((route.to_owned(), status)).or_default().add(elapsed);
        }
    }

    /// Counts one call or connection turned away for `reason`.
    pub fn reject(&self, reason: &'static str) {
        if let Ok(mut rejected) = self.rejected.lock() {
            *rejected.entry(reason).or_default() += 1;
        }
    }

    /// The Prometheus text exposition of everything counted.
    pub fn render(&self, ledger_entries: u64, gateway: Option<GatewayCounts>) -> String {
        let mut out = String::new();
        out.push_str("# HELP ecocode_grpc_calls_total Finished gRPC calls by method and status.\n");
        out.push_str("# TYPE ecocode_grpc_calls_total counter\n");
        let calls = self.calls.lock().map(|c| snapshot(&*c)).unwrap_or_default();
        for ((method, code), stats) in &calls {
            let code = Code::from_i32(*code);
            let _ = writeln!(
                out,
                "ecocode_grpc_calls_total{{method=\"{method}\",code=\"{code:?}\"}} {}",
                stats.count
            );
        }
        out.push_str("# HELP ecocode_grpc_call_seconds Duration of gRPC calls, from request to the end of the answer.\n");
        out.push_str("# TYPE ecocode_grpc_call_seconds histogram\n");
        for ((method, code), stats) in &calls {
            let labels = format!("method=\"{method}\",code=\"{:?}\"", Code::from_i32(*code));
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(stats.buckets) {
                cumulative += n;
                let _ =
                    writeln!(out, "ecocode_grpc_call_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(out, "ecocode_grpc_call_seconds_bucket{{{labels},le=\"+Inf\"}} {}", stats.count);
            let _ = writeln!(out, "ecocode_grpc_call_seconds_sum{{{labels}}} {}", stats.seconds);
            let _ = writeln!(out, "ecocode_grpc_call_seconds_count{{{labels}}} {}", stats.count);
        }
        let requests = self.requests.lock().map(|r| snapshot(&*r)).unwrap_or_default();
        out.push_str(
            "# HELP ecocode_http_requests_total Answered web requests by route template and status.\n",
        );
        out.push_str("# TYPE ecocode_http_requests_total counter\n");
        for ((route, status), stats) in &requests {
            let _ = writeln!(
                out,
                "ecocode_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {}",
                stats.count
            );
        }
        out.push_str("# HELP ecocode_grpc_calls_in_progress gRPC calls admitted and not yet answered.\n");
        out.push_str("# TYPE ecocode_grpc_calls_in_progress gauge\n");
        let _ = writeln!(out, "ecocode_grpc_calls_in_progress {}", self.in_progress.load(Ordering::Relaxed));
        out.push_str("# HELP ecocode_rejected_total Calls and connections turned away, by reason.\n");
        out.push_str("# TYPE ecocode_rejected_total counter\n");
        let rejected = self.rejected.lock().map(|r| r.clone()).unwrap_or_default();
        for (reason, n) in rejected {
            let _ = writeln!(out, "ecocode_rejected_total{{reason=\"{reason}\"}} {n}");
        }
        out.push_str("# HELP ecocode_ledger_entries Entries in the ledger.\n");
        out.push_str("# TYPE ecocode_ledger_entries gauge\n");
        let _ = writeln!(out, "ecocode_ledger_entries {ledger_entries}");
        if let Some(g) = gateway {
            out.push_str("# HELP ecocode_hj212_total Counters of the HJ 212 gateway.\n");
            out.push_str("# TYPE ecocode_hj212_total counter\n");
            for (what, n) in gateway_counters(&g) {
                let _ = writeln!(out, "ecocode_hj212_total{{counter=\"{what}\"}} {n}");
            }
        }
        out
    }
}

type CallTable<K> = Vec<(K, CallStats)>;

fn snapshot<K: Clone>(calls: &BTreeMap<K, CallStats>) -> CallTable<K> {
    calls
        .iter()
        .map(|(k, s)| (k.clone(), CallStats { count: s.count, seconds: s.seconds, buckets: s.buckets }))
        .collect()
}

fn gateway_counters(g: &GatewayCounts) -> [(&'static str, u64); 19] {
    [
        ("connections_accepted", g.connections_accepted),
        ("connections_refused", g.connections_refused),
        ("connections_refused_per_peer", g.connections_refused_per_peer),
        ("connections_evicted_unauthenticated", g.connections_evicted_unauthenticated),
        ("wrong_password", g.wrong_password),
        ("locked_out", g.locked_out),
        ("lockouts", g.lockouts),
        ("legacy_verifier", g.legacy_verifier),
        ("packets_ok", g.packets_ok),
        ("bad_crc", g.bad_crc),
        ("bad_length", g.bad_length),
        ("malformed", g.malformed),
        ("unknown_device", g.unknown_device),
        ("acks_sent", g.acks_sent),
        ("values_stored", g.values_stored),
        ("values_not_counted", g.values_not_counted),
        ("records_emitted", g.records_emitted),
        ("records_refused", g.records_refused),
        ("append_failures", g.append_failures),
    ]
}

/// What `GET /metrics` reads.
#[derive(Clone)]
pub struct MetricsSource {
    pub metrics: Arc<Metrics>,
    pub service: Arc<Service>,
    pub gateway: Option<Arc<GatewayStats>>,
}

impl MetricsSource {
    pub fn render(&self) -> String {
        let gateway = self.gateway.as_ref().map(|g| g.snapshot());
        let mut out = self.metrics.render(self.service.ledger().head().size, gateway);
        if let Some(g) = &self.gateway {
            hj212_wrong_passwords(&mut out, g);
        }
        if let Some(witnessing) = self.service.witnessing() {
            out.push_str(&witnessing.render_metrics());
        }
        out
    }
}

/// Wrong passwords per device: only registered devices have any (a wrong
/// password needs a registered MN), and the gateway tracks a bounded
/// number of devices, so the label set is bounded.
fn hj212_wrong_passwords(out: &mut String, g: &GatewayStats) {
    out.push_str(
        "# HELP ecocode_hj212_wrong_passwords_total Packets with a wrong password, by device (MN).\n",
    );
    out.push_str("# TYPE ecocode_hj212_wrong_passwords_total counter\n");
    for (device, figures) in g.devices() {
        if let Some(n) = figures.rejected.get("wrong_password") {
            // Prometheus label escaping; an MN is printable ASCII.
            let mn = device.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "ecocode_hj212_wrong_passwords_total{{mn=\"{mn}\"}} {n}");
        }
    }
}

/// A request line and headers larger than this are not a scrape.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A scraper that has not sent its request by then is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes answered at once; a connection beyond them is closed. The
/// endpoint's share of the process's file descriptors.
pub const MAX_SCRAPES: usize = 8;

/// Serves `GET /metrics` (HTTP/1.1, one request per connection) until
/// `shutdown` resolves. A plain responder rather than a web framework: the
/// endpoint answers one fixed path.
pub async fn serve(listener: TcpListener, source: MetricsSource, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let scrapes = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Ok(scrape) = scrapes.clone().try_acquire_owned() else {
                        source.metrics.reject("metrics_connections");
                        continue;
                    };
                    let source = source.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &source)).await;
                        drop(scrape);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint cannot accept; waiting");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn answer(mut stream: TcpStream, source: &MetricsSource) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST_BYTES {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let (status, body) = if request.starts_with(b"GET /metrics ") || request.starts_with(b"GET /metrics?") {
        ("200 OK", source.render())
    } else {
        ("404 Not Found", "only GET /metrics is served here\n".to_owned())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_by_method_and_code_with_a_cumulative_histogram() {
        let m = Metrics::default();
        m.call("/ecocode.v1.Scores/GetScore", Code::Ok, Duration::from_millis(3));
        m.call("/ecocode.v1.Scores/GetScore", Code::Ok, Duration::from_secs(20));
        m.reject("calls_total");
        let text = m.render(7, None);
        assert!(
            text.contains("ecocode_grpc_calls_total{method=\"/ecocode.v1.Scores/GetScore\",code=\"Ok\"} 2")
        );
        assert!(text.contains("le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("ecocode_rejected_total{reason=\"calls_total\"} 1"));
        assert!(text.contains("ecocode_ledger_entries 7"));
    }

    // Failure: the first 128 (path, code) pairs seen got labels, so invented
    // paths sent first pushed the real methods into `other`.
    #[test]
    fn invented_paths_never_get_a_label_and_known_methods_always_do() {
        let m = Metrics::default();
        for i in 0..1000 {
            m.call(&format!("/x/{i}"), Code::Unimplemented, Duration::ZERO);
        }
        m.call("/ecocode.v1.Scores/GetScore", Code::Ok, Duration::ZERO);
        let calls = m.calls.lock().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[&(OTHER.to_owned(), Code::Unimplemented as i32)].count, 1000);
        assert_eq!(calls[&("/ecocode.v1.Scores/GetScore".to_owned(), Code::Ok as i32)].count, 1);
    }

    #[test]
    fn the_known_methods_come_from_every_served_descriptor() {
        let methods = grpc_methods();
        for method in [
            "/ecocode.v1.Registry/RegisterEnterprise",
            "/ecocode.v1.Ingest/AppendRecords",
            "/ecocode.v1.Scores/WatchCodes",
            "/ecocode.v1.Ledger/GetCheckpoint",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(methods.contains(method), "{method} missing from {methods:?}");
        }
    }

    #[test]
    fn web_requests_are_counted_by_route_template() {
        let m = Metrics::default();
        m.request(Some("/e/{uscc}"), 200, Duration::ZERO);
        m.request(None, 404, Duration::ZERO);
        let text = m.render(0, None);
        assert!(text.contains("ecocode_http_requests_total{route=\"/e/{uscc}\",status=\"200\"} 1"), "{text}");
        assert!(text.contains("ecocode_http_requests_total{route=\"other\",status=\"404\"} 1"), "{text}");
    }
}
