//! How gRPC meets the network: TLS and mTLS from PEM files, the limits that
//! keep the server answering (message size, streams and calls per
//! connection, calls in total, idle streams and connections, keepalive, the
//! drain time at shutdown) and an accept loop that backs off instead of
//! spinning when the process runs out of file descriptors.
//!
//! The limits on calls are enforced by the `calls` module; this one owns
//! their settings and the connection itself.
//!
//! It also owns the process's file-descriptor budget
//! ([`DescriptorBudget`]): each listener holds at most its cap of
//! connections (gRPC `--max-connections`, the web page's
//! `--http-max-connections`, the HJ 212 gateway's
//! `--hj212-max-connections`, a few metrics scrapes), and the caps plus a
//! reserve for the stores must fit in `RLIMIT_NOFILE`, or the server does
//! not start. So no listener can take the descriptors another one needs.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Future as _, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// The settings of `ecocode serve` that shape the gRPC transport; the
/// defaults are those documented in README.md and docs/api.md.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// PEM files for TLS; `None`: plaintext.
    pub tls: Option<TlsFiles>,
    /// Largest request message; a larger one is `RESOURCE_EXHAUSTED`.
    pub max_message_bytes: usize,
    /// Most records one `Ingest.AppendRecords` stream may carry.
    pub max_stream_records: u64,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`: compliant clients queue
    /// further calls on their side.
    pub max_concurrent_streams: u32,
    /// Calls in progress (open streams included) per connection before
    /// further calls are shed with `RESOURCE_EXHAUSTED`.
    pub max_calls_per_connection: usize,
    /// Calls in progress in the whole server before further calls are shed.
    pub max_calls: usize,
    /// gRPC connections open at once; further ones are closed as they are
    /// accepted. gRPC's share of the process's file descriptors.
    pub max_connections: usize,
    /// A request stream that sends nothing for this long is ended with
    /// `DEADLINE_EXCEEDED`.
    pub stream_idle_timeout: Duration,
    /// A connection without a call in progress for this long is closed.
    pub connection_idle_timeout: Duration,
    /// HTTP/2 PING interval; a peer that does not answer within
    /// [`TransportConfig::keepalive_timeout`] is dropped.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// At shutdown, how long calls in progress may still run before they
    /// are cancelled with `UNAVAILABLE`.
    pub drain_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> TransportConfig {
        TransportConfig {
            tls: None,
            max_message_bytes: 4 * 1024 * 1024,
            max_stream_records: 1_000_000,
            max_concurrent_streams: 256,
            max_calls_per_connection: 256,
            max_calls: 2_048,
            max_connections: 1_024,
            stream_idle_timeout: Duration::from_secs(60),
            connection_idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// `--tls-cert`, `--tls-key` and, for mTLS, `--client-ca`.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Reads the PEM files and checks that rustls accepts them, so a bad
    /// file stops the start rather than every handshake.
    pub fn load(&self, handshake_timeout: Duration) -> Result<ServerTlsConfig> {
        // tonic builds its rustls config with the process-wide provider; more
        // than one provider in the dependency tree would leave that choice
        // open, so name ours. An error means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cert = read_pem(&self.cert, "--tls-cert")?;
        let key = read_pem(&self.key, "--tls-key")?;
        let mut config =
            ServerTlsConfig::new().identity(Identity::from_pem(cert, key)).timeout(handshake_timeout);
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read_pem(ca, "--client-ca")?));
        }
        // Building a server parses the files with rustls: a key that does
        // not match the certificate is caught here, before anything is served.
        tonic::transport::Server::builder().tls_config(config.clone()).map_err(|e| {
            Error::InvalidArgument(format!(
                "--tls-cert {} / --tls-key {}: {e}",
                self.cert.display(),
                self.key.display()
            ))
        })?;
        Ok(config)
    }
}

fn read_pem(path: &Path, flag: &str) -> Result<Vec<u8>> {
    let pem = std::fs::read(path).map_err(|e| Error::io(format!("{flag} {}", path.display()), e))?;
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(Error::InvalidArgument(format!("{flag} {} is not a PEM file", path.display())));
    }
    Ok(pem)
}

/// Accepted connections, each wrapped in a [`Connection`]. Errors of
/// `accept` never reach tonic (which would retry at once, spinning a core
/// while file descriptors are exhausted): the loop waits, doubling the
/// wait up to a second, and counts the failure.
///
/// Every connection is closed, whatever it is doing, when `close` fires:
/// the last step of a shutdown, for peers that keep a connection open after
/// their calls were cancelled (e.g. by not reading their answers).
///
/// At most `max_connections` are open at once: one accepted beyond that is
/// closed at once (counted as `connections_total`), so gRPC never holds
/// more than its share of the process's file descriptors.
pub fn incoming(
    listener: TcpListener,
    idle_timeout: Duration,
    max_connections: usize,
    metrics: Arc<Metrics>,
    close: CancellationToken,
) -> impl Stream<Item = io::Result<Connection>> {
    let open = Arc::new(AtomicUsize::new(0));
    futures::stream::unfold((listener, Duration::ZERO), move |(listener, mut backoff)| {
        let metrics = metrics.clone();
        let close = close.clone();
        let open = open.clone();
        async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let Some(slot) = OpenConnection::admit(&open, max_connections) else {
                            metrics.reject("connections_total");
                            tracing::debug!(%peer, max_connections, "gRPC connection refused: at --max-connections");
                            drop(stream);
                            continue;
                        };
                        // Small gRPC answers should not wait for Nagle.
                        let _ = stream.set_nodelay(true);
                        let connection = Connection::new(stream, peer, idle_timeout, close, slot);
                        return Some((Ok(connection), (listener, Duration::ZERO)));
                    }
                    // The peer gave up before we accepted: nothing to wait for.
                    Err(e) if is_peer_gone(&e) => continue,
                    Err(e) => {
                        backoff = next_backoff(backoff);
                        metrics.reject("accept_error");
                        tracing::warn!(error = %e, wait_ms = backoff.as_millis() as u64, "cannot accept connections; waiting");
                        tokio::time::sleep(backoff).await;
                    }
                }
            }
        }
    })
}

/// One open gRPC connection, counted until it is dropped.
struct OpenConnection(Arc<AtomicUsize>);

impl OpenConnection {
    fn admit(open: &Arc<AtomicUsize>, max: usize) -> Option<OpenConnection> {
        if open.fetch_add(1, Ordering::AcqRel) >= max {
            open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(OpenConnection(open.clone()))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The wait after a failed `accept`: 5 ms, doubling up to a second.
fn next_backoff(previous: Duration) -> Duration {
    (previous * 2).clamp(Duration::from_millis(5), Duration::from_secs(1))
}

fn is_peer_gone(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset)
}

/// Whether serving plaintext on `addr` deserves a warning: anything but a
/// loopback address can be reached by others.
pub fn plaintext_is_exposed(addr: SocketAddr) -> bool {
    !addr.ip().is_loopback()
}

/// The calls in progress on one connection, shared between the connection
/// (which closes itself when idle) and the call guard (which counts).
#[derive(Debug)]
pub struct ConnectionCalls {
    active: AtomicUsize,
    /// When the last call ended, or when the connection was accepted.
    idle_since: Mutex<Instant>,
}

impl ConnectionCalls {
    fn new() -> ConnectionCalls {
        ConnectionCalls { active: AtomicUsize::new(0), idle_since: Mutex::new(Instant::now()) }
    }

    /// Counts a call that starts, unless `limit` calls are in progress.
    pub fn try_begin(&self, limit: usize) -> bool {
        let before = self.active.fetch_add(1, Ordering::AcqRel);
        if before >= limit {
            self.end();
            return false;
        }
        true
    }

    pub fn end(&self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1
            && let Ok(mut since) = self.idle_since.lock()
        {
            *since = Instant::now();
        }
    }

    /// When the connection becomes idle for `timeout`; `None` while a call
    /// is in progress.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.idle_since.lock().map(|s| *s).unwrap_or_else(|e| *e.into_inner());
        Some(since + timeout)
    }
}

/// What tonic puts into every request's extensions for a [`Connection`].
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    pub calls: Arc<ConnectionCalls>,
}

/// An accepted TCP connection that closes itself after `idle_timeout`
/// without a call in progress. The check runs when the server waits for
/// bytes, which it always does on a live connection.
pub struct Connection {
    stream: TcpStream,
    idle: Pin<Box<Sleep>>,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    idle_timeout: Duration,
    info: ConnectionInfo,
    _slot: OpenConnection,
}

impl Connection {
    fn new(
        stream: TcpStream,
        peer: SocketAddr,
        idle_timeout: Duration,
        close: CancellationToken,
        slot: OpenConnection,
    ) -> Connection {
        let calls = Arc::new(ConnectionCalls::new());
        Connection {
            stream,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            closed: Box::pin(close.cancelled_owned()),
            idle_timeout,
            info: ConnectionInfo { peer, calls },
            _slot: slot,
        }
    }
}

impl Connected for Connection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.closed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the server shut down",
            )));
        }
        while this.idle.as_mut().poll(cx).is_ready() {
            match this.info.calls.idle_deadline(this.idle_timeout) {
                None => this.idle.as_mut().reset(Instant::now() + this.idle_timeout),
                Some(deadline) if deadline <= Instant::now() => {
                    tracing::debug!(peer = %this.info.peer, "closing an idle connection");
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "idle connection")));
                }
                Some(deadline) => this.idle.as_mut().reset(deadline),
            }
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// File descriptors kept for everything but the listeners' connections:
/// the stores' files (sled's logs and snapshots, the inquiry log, the
/// gateway's state, the principals), PostgreSQL connections, the listening
/// sockets, the runtime's own, log files and exports. Measured: 19 open
/// after the start on sled with every listener on; the PostgreSQL pools add
/// at most about 40 connections. The rest is headroom.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// How the three listeners (and the metrics endpoint) share the process's
/// `RLIMIT_NOFILE`: each may hold at most its cap of connections, and the
/// caps plus [`RESERVED_DESCRIPTORS`] must fit in the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescriptorBudget {
    /// `(flag, connections)` of every listener that is on.
    pub shares: Vec<(&'static str, u64)>,
    pub reserve: u64,
}

impl DescriptorBudget {
    /// Descriptors the caps need, the reserve included.
    pub fn needed(&self) -> u64 {
        self.shares.iter().map(|(_, n)| n).sum::<u64>() + self.reserve
    }

    /// Checks `RLIMIT_NOFILE` against [`DescriptorBudget::needed`]. A soft
    /// limit below it is raised when the hard limit allows (as the Go
    /// runtime does); a hard limit below it stops the start with what to
    /// raise, to what, or which caps to lower. Answers the limit in force.
    pub fn ensure(&self) -> Result<u64> {
        let needed = self.needed();
        let Some((soft, hard)) = nofile_limit() else {
            tracing::warn!(
                needed,
                "cannot read RLIMIT_NOFILE here; the connection caps are not checked against it"
            );
            return Ok(needed);
        };
        if soft >= needed {
            return Ok(soft);
        }
        if hard >= needed && raise_nofile(needed, hard) {
            tracing::info!(
                from = soft,
                to = needed,
                "raised the soft RLIMIT_NOFILE to what the connection caps need"
            );
            return Ok(needed);
        }
        Err(Error::FailedPrecondition(self.too_low(soft, hard)))
    }

    fn too_low(&self, soft: u64, hard: u64) -> String {
        let needed = self.needed();
        let mut parts = String::new();
        for (flag, n) in &self.shares {
            let _ = write!(parts, "{flag} {n} + ");
        }
        format!(
            "the process may open {soft} files (RLIMIT_NOFILE; hard limit {hard}) but the connection caps need \
             {needed}: {parts}{} for the stores and files. Raise the limit to at least {needed} \
             (`ulimit -n {needed}` before `ecocode serve`, or LimitNOFILE={needed} in its systemd unit), \
             or lower those caps so that they fit",
            self.reserve
        )
    }
}

/// `(soft, hard)` `RLIMIT_NOFILE` of this process; `None` where there is
/// no such limit to read. "Unlimited" reads as `u64::MAX`.
fn nofile_limit() -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        rlimit::getrlimit(rlimit::Resource::NOFILE).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

fn raise_nofile(soft: u64, hard: u64) -> bool {
    #[cfg(unix)]
    {
        rlimit::setrlimit(rlimit::Resource::NOFILE, soft, hard).is_ok()
    }
    #[cfg(not(unix))]
    {
        let _ = (soft, hard);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_budget_that_does_not_fit_names_every_cap_and_what_to_raise() {
        let budget = DescriptorBudget {
            shares: vec![("--max-connections", 1024), ("--http-max-connections", 1024)],
            reserve: RESERVED_DESCRIPTORS,
        };
        assert_eq!(budget.needed(), 2304);
        let message = budget.too_low(1024, 1024);
        for part in [
            "--max-connections 1024",
            "--http-max-connections 1024",
            "at least 2304",
            "ulimit -n 2304",
            "LimitNOFILE=2304",
        ] {
            assert!(message.contains(part), "{message}");
        }
        // This process's limit is what it is; a budget of one descriptor fits.
        let tiny = DescriptorBudget { shares: vec![], reserve: 1 };
        assert!(tiny.ensure().is_ok());
    }

    #[test]
    fn a_connection_slot_is_refused_at_the_cap_and_freed_on_drop() {
        let open = Arc::new(AtomicUsize::new(0));
        let a = OpenConnection::admit(&open, 2).unwrap();
        let _b = OpenConnection::admit(&open, 2).unwrap();
        assert!(OpenConnection::admit(&open, 2).is_none());
        drop(a);
        assert!(OpenConnection::admit(&open, 2).is_some());
    }

    #[test]
    fn a_connection_refuses_calls_beyond_its_limit_and_frees_them_again() {
        let calls = ConnectionCalls::new();
        assert!(calls.try_begin(2));
        assert!(calls.try_begin(2));
        assert!(!calls.try_begin(2));
        assert!(calls.idle_deadline(Duration::from_secs(1)).is_none());
        calls.end();
        calls.end();
        assert!(calls.idle_deadline(Duration::from_secs(1)).is_some());
    }

    #[test]
    fn accept_failures_wait_longer_each_time_up_to_a_second() {
        let mut wait = Duration::ZERO;
        let mut waits = Vec::new();
        for _ in 0..10 {
            wait = next_backoff(wait);
            waits.push(wait.as_millis());
        }
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    }

    #[test]
    fn only_loopback_plaintext_is_quiet() {
        assert!(!plaintext_is_exposed("127.0.0.1:50051".parse().unwrap()));
        assert!(!plaintext_is_exposed("[::1]:50051".parse().unwrap()));
        assert!(plaintext_is_exposed("0.0.0.0:50051".parse().unwrap()));
        assert!(plaintext_is_exposed("10.1.2.3:50051".parse().unwrap()));
    }
}
