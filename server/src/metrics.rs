//! What the service counts and how it is read: calls by method and status
//! with their durations, calls turned away by reason, the ledger's size and
//! the HJ 212 gateway's counters, in the Prometheus text format on
//! `GET /metrics` of `--metrics-listen` (off by default).
//!
//! Labels hold only method names, status names and fixed reasons: never a
//! token, an identifier or anything else a caller sent.

use std::collections::BTreeMap;
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

/// Distinct method labels kept; further paths count as `other`, so a client
/// inventing paths cannot grow the table.
const MAX_METHODS: usize = 128;

#[derive(Default, Debug)]
struct CallStats {
    count: u64,
    seconds: f64,
    /// Calls at most `BUCKETS[i]` seconds long (not cumulative here).
    buckets: [u64; BUCKETS.len()],
}

/// The counters of one server.
#[derive(Default, Debug)]
pub struct Metrics {
    /// Calls admitted and not yet answered; the call guard limits it.
    pub(crate) in_progress: AtomicUsize,
    calls: Mutex<BTreeMap<(String, i32), CallStats>>,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Counts one finished call of `method` (the gRPC path) that ended with
    /// `code` after `elapsed`.
    pub fn call(&self, method: &str, code: Code, elapsed: Duration) {
        let Ok(mut calls) = self.calls.lock() else { return };
        let known = calls.keys().any(|(m, _)| m == method);
        let method = if known || calls.len() < MAX_METHODS { method } else { "other" };
        let stats = calls.entry((method.to_owned(), code as i32)).or_default();
        let seconds = elapsed.as_secs_f64();
        stats.count += 1;
        stats.seconds += seconds;
        if let Some(i) = BUCKETS.iter().position(|&b| seconds <= b) {
            stats.buckets[i] += 1;
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
        let calls = self.calls.lock().map(|c| snapshot(&c)).unwrap_or_default();
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

type CallTable = Vec<((String, i32), CallStats)>;

fn snapshot(calls: &BTreeMap<(String, i32), CallStats>) -> CallTable {
    calls
        .iter()
        .map(|(k, s)| (k.clone(), CallStats { count: s.count, seconds: s.seconds, buckets: s.buckets }))
        .collect()
}

fn gateway_counters(g: &GatewayCounts) -> [(&'static str, u64); 13] {
    [
        ("connections_accepted", g.connections_accepted),
        ("connections_refused", g.connections_refused),
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
        if let Some(witnessing) = self.service.witnessing() {
            out.push_str(&witnessing.render_metrics());
        }
        out
    }
}

/// A request line and headers larger than this are not a scrape.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A scraper that has not sent its request by then is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` (HTTP/1.1, one request per connection) until
/// `shutdown` resolves. A plain responder rather than a web framework: the
/// endpoint answers one fixed path.
pub async fn serve(listener: TcpListener, source: MetricsSource, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let source = source.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &source)).await;
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

    #[test]
    fn invented_paths_cannot_grow_the_table() {
        let m = Metrics::default();
        for i in 0..(MAX_METHODS + 50) {
            m.call(&format!("/x/{i}"), Code::Unimplemented, Duration::ZERO);
        }
        let calls = m.calls.lock().unwrap();
        assert_eq!(calls.len(), MAX_METHODS + 1);
        assert_eq!(calls[&("other".to_owned(), Code::Unimplemented as i32)].count, 50);
    }
}
