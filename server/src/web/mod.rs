//! The 环保码 web page: HTTP/1.1 on `--http-listen`, the same process and
//! the same door as gRPC.
//!
//! * [`pages`]: the handlers. Each turns a request into a [`Principal`]
//!   (the session's, or [`Principal::public`]) and domain values, calls a
//!   method of [`Service`] (which authorizes, with the rules of
//!   [`crate::auth`], including the public policy) and renders the answer.
//!   No handler decides who may see or do what.
//! * [`session`]: sign-in sessions (the bearer token stays on the server;
//!   the browser holds a random session id in an HttpOnly, SameSite=Strict
//!   cookie) and CSRF tokens.
//! * [`templates`]: the askama templates' data; every value is escaped by
//!   the template engine. [`qr`] and [`chart`] compute the geometry of the
//!   QR code and the history chart, which templates draw as SVG.
//! * This file: the router, the security headers (a Content-Security-Policy
//!   without script), the body limit, the per-address rate limit, and the
//!   listener's own bounds: connections in total and per client address,
//!   and one deadline for the whole request, head and body.
//!
//! Invariants: handlers reach data only through [`Service`]; no template is
//! built by string concatenation; no token is ever in a URL or a log; every
//! page works without JavaScript (there is none).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use http_body::Frame;
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Metrics;
use crate::principals::PrincipalStore;
use crate::service::Service;

pub mod chart;
pub mod labels;
pub mod pages;
pub mod qr;
pub mod session;
pub mod templates;

/// The web listener's limits and its public address; the defaults are
/// those documented in README.md and docs/api.md.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Requests one client address may make per minute; more are answered
    /// `429 Too Many Requests`.
    pub requests_per_minute: u32,
    /// Largest request body (forms, portfolio lists).
    pub max_body_bytes: usize,
    /// How long a client may take to send a whole request, head and body,
    /// counted from when the server starts waiting for it (the accept, or
    /// the end of the previous answer on the connection). A request not
    /// in by then is answered `408` and its connection closed; a connection
    /// idle that long between requests is closed. Trickled heads
    /// (slowloris) and half-sent bodies hold nothing longer than this.
    pub request_timeout: Duration,
    /// Connections open at once; more are answered `503` and closed at
    /// once. This is the web listener's whole share of the process's file
    /// descriptors (see `transport::DescriptorBudget`).
    pub max_connections: usize,
    /// Connections open at once from one client address; more are answered
    /// `503` and closed at once.
    pub max_connections_per_peer: usize,
    /// `--public-url`: the origin of every absolute link the page writes
    /// (the QR code's text, the feed's links), e.g.
    /// `https://ecocode.example.gov.cn`. `None`: `http://` and the
    /// listener's address. Never taken from a request's `Host`.
    pub public_url: Option<String>,
}

impl Default for WebConfig {
    fn default() -> WebConfig {
        WebConfig {
            requests_per_minute: 600,
            max_body_bytes: 256 * 1024,
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connections_per_peer: 64,
            public_url: None,
        }
    }
}

/// Checks a `--public-url`: `http://` or `https://`, a host, an optional
/// port and path, nothing a link could be bent with (no query, fragment,
/// user info, spaces or quotes). Answers it without a trailing `/`.
pub fn parse_public_url(text: &str) -> Result<String, String> {
    let rest = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://")).ok_or_else(|| {
        format!("{text:?} must start with http:// or https://, e.g. https://ecocode.example.gov.cn")
    })?;
    let host = rest.split('/').next().unwrap_or_default();
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~/:[]%".contains(&b);
    if host.is_empty() || text.len() > 2048 || !rest.bytes().all(allowed) {
        return Err(format!(
            "{text:?} must be http(s)://HOST[:PORT][/PATH] with no query, fragment, user or spaces"
        ));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// What every handler shares.
#[derive(Clone)]
pub struct WebState {
    pub service: Arc<Service>,
    pub principals: Arc<PrincipalStore>,
    pub sessions: Arc<session::Sessions>,
    /// The origin of absolute links (QR text, feed), without a trailing
    /// `/`: `--public-url`, or `http://` and the listener's address.
    pub public_url: Arc<str>,
    limiter: Arc<RateLimiter>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState").field("public_url", &self.public_url).finish_non_exhaustive()
    }
}

/// The Content-Security-Policy of every answer: no script at all, styles
/// and images only from this server (SVG is inline markup, not script).
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// The router over `service`, as `serve` runs it; tests may drive it too.
/// `local` is the listener's address, the origin of links when
/// [`WebConfig::public_url`] is not set.
pub fn router(
    service: Arc<Service>,
    principals: Arc<PrincipalStore>,
    local: SocketAddr,
    config: &WebConfig,
    metrics: Arc<Metrics>,
) -> Router {
    let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{local}"));
    let state = WebState {
        service,
        principals,
        sessions: Arc::new(session::Sessions::default()),
        public_url: public_url.into(),
        limiter: Arc::new(RateLimiter::new(config.requests_per_minute)),
        metrics,
    };
    let routes: [(&'static str, MethodRouter<WebState>); 22] = [
        ("/", get(pages::index)),
        ("/e", get(pages::lookup)),
        ("/e/{uscc}", get(pages::enterprise)),
        ("/e/{uscc}/feed.atom", get(pages::feed)),
        ("/e/{uscc}/attestation.txt", get(pages::attestation_file)),
        ("/e/{uscc}/proof/{seq}", get(pages::proof_bundle)),
        ("/e/{uscc}/score-proof.json", get(pages::score_proof_file)),
        ("/e/{uscc}/dispute", post(pages::open_dispute)),
        ("/e/{uscc}/rectification", post(pages::submit_rectification)),
        ("/e/{uscc}/grant", post(pages::grant_access)),
        ("/e/{uscc}/revoke", post(pages::revoke_access)),
        ("/e/{uscc}/export", get(pages::export_file)),
        // A scanned compact QR code (HTTP://HOST/Q/<digits>).
        ("/Q/{digits}", get(pages::scanned)),
        ("/q/{digits}", get(pages::scanned)),
        ("/signin", get(pages::signin_form).post(pages::signin)),
        ("/signout", post(pages::signout)),
        ("/region", get(pages::region)),
        ("/region.csv", get(pages::region_csv)),
        ("/portfolio", get(pages::portfolio_form).post(pages::portfolio)),
        ("/static/style.css", get(pages::stylesheet)),
        // The log for mirrors, as C2SP tlog-tiles (docs/api.md).
        ("/checkpoint", get(pages::checkpoint_note)),
        ("/tile/{*rest}", get(pages::tile)),
    ];
    routes
        .into_iter()
        .fold(Router::new(), |router, (template, handler)| {
            router.route(template, labelled(template, handler))
        })
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}

/// Serves `router` on `listener` until `stop`; requests in flight finish.
///
/// An accept loop of our own rather than `axum::serve`, which bounds
/// nothing: connections beyond [`WebConfig::max_connections`] (in total) or
/// [`WebConfig::max_connections_per_peer`] (from one address) are answered
/// `503` and closed at once, so the web port never holds more descriptors
/// than its share; every request must be in, head and body, within
/// [`WebConfig::request_timeout`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &WebConfig,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's head timer starts when it waits for a head, idle keep-alive
    // time included; the body's share of the deadline is kept by
    // `DeadlineBody`, counted from the same moment.
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(config.request_timeout);
    let slots = Arc::new(ConnectionSlots::new(config.max_connections, config.max_connections_per_peer));
    let timeout = config.request_timeout;
    tokio::pin!(stop);
    let mut backoff = Duration::from_millis(5);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = Duration::from_millis(5);
                    accepted
                }
                Err(e) => {
                    // Out of file descriptors, typically: wait, then accept again.
                    metrics.reject("http_accept_error");
                    tracing::warn!(error = %e, "web listener cannot accept; waiting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let slot = match slots.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                metrics.reject(refusal.reason());
                refuse(&stream, refusal);
                continue;
            }
        };
        let waiting_since = Arc::new(Mutex::new(tokio::time::Instant::now()));
        let (router, metrics) = (router.clone(), metrics.clone());
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let started = *waiting_since.lock().unwrap_or_else(|p| p.into_inner());
                let timed_out = Arc::new(AtomicBool::new(false));
                let request = request.map(|body| DeadlineBody {
                    inner: body,
                    deadline: Box::pin(tokio::time::sleep_until(started + timeout)),
                    timed_out: timed_out.clone(),
                });
                let end = RequestEnd(waiting_since.clone());
                // A `Router` is always ready, so it is called without `poll_ready`.
                let answer = tower_service::Service::call(&mut router.clone(), request);
                let metrics = metrics.clone();
                async move {
                    let response = match answer.await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                    if !timed_out.load(Ordering::Acquire) {
                        let response =
                            response.map(|body| axum::body::Body::new(AnswerBody { inner: body, _end: end }));
                        return Ok::<_, std::convert::Infallible>(response);
                    }
                    metrics.reject("http_request_timeout");
                    let mut late = pages::error_page(
                        StatusCode::REQUEST_TIMEOUT,
                        labels::status_title(StatusCode::REQUEST_TIMEOUT),
                        &format!(
                            "the request was not complete within {} s of the connection being ready; send it again",
                            timeout.as_secs_f64()
                        ),
                    );
                    secure_headers(late.headers_mut());
                    late.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                    Ok(late)
                }
            },
        );
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "web connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Answers a connection beyond the caps with a short `503` and closes it.
/// The write does not wait: a peer that does not read loses the answer,
/// not a descriptor.
fn refuse(stream: &TcpStream, refusal: Refusal) {
    let body = match refusal {
        Refusal::Total => "the web page has as many connections open as it serves; try again shortly\n",
        Refusal::PerPeer => "this address has as many connections open as one address may; close some\n",
    };
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // What the client already sent is read (without waiting) first: closing
    // a socket with unread bytes resets it, and the reset could overtake
    // the answer.
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        if !matches!(stream.try_read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
    let _ = stream.try_write(answer.as_bytes());
}

/// Why a connection was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Total,
    PerPeer,
}

impl Refusal {
    /// The `reason` label in `ecocode_rejected_total`.
    fn reason(self) -> &'static str {
        match self {
            Refusal::Total => "http_connections_total",
            Refusal::PerPeer => "http_connections_per_peer",
        }
    }
}

/// The web listener's connections, in total and per client address.
struct ConnectionSlots {
    max_total: usize,
    max_per_peer: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; dropping it frees the slot.
struct Slot {
    slots: Arc<ConnectionSlots>,
    peer: IpAddr,
}

impl ConnectionSlots {
    fn new(max_total: usize, max_per_peer: usize) -> ConnectionSlots {
        ConnectionSlots { max_total, max_per_peer, open: Mutex::default() }
    }

    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_peer) = &mut *open;
        if *total >= self.max_total {
            return Err(Refusal::Total);
        }
        let mine = by_peer.entry(peer).or_default();
        if *mine >= self.max_per_peer {
            return Err(Refusal::PerPeer);
        }
        *mine += 1;
        *total += 1;
        Ok(Slot { slots: self.clone(), peer })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_peer) = &mut *open;
        *total -= 1;
        if let Some(n) = by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                by_peer.remove(&self.peer);
            }
        }
    }
}

/// A request body that fails once the request's deadline passes before
/// its end has arrived; the service then answers `408` and hyper closes
/// the connection (the body was not read to its end).
struct DeadlineBody {
    inner: hyper::body::Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
}

/// When an answer has been written (hyper drops its body), the connection
/// starts waiting for the next request: its deadline counts from then, as
/// hyper's head timer does.
struct RequestEnd(Arc<Mutex<tokio::time::Instant>>);

/// An answer's body carrying its [`RequestEnd`].
struct AnswerBody {
    inner: axum::body::Body,
    _end: RequestEnd,
}

impl http_body::Body for AnswerBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        http_body::Body::poll_frame(Pin::new(&mut self.inner), cx)
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

impl Drop for RequestEnd {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match http_body::Body::poll_frame(Pin::new(&mut this.inner), cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                std::task::ready!(this.deadline.as_mut().poll(cx));
                this.timed_out.store(true, Ordering::Release);
                let late = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request body did not arrive before the request's deadline",
                );
                Poll::Ready(Some(Err(late.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

/// The route template an answer came from: its only label in `/metrics`.
#[derive(Clone, Copy, Debug)]
struct RouteTemplate(&'static str);

/// `handler`, with its answers marked as coming from `template`.
fn labelled(template: &'static str, handler: MethodRouter<WebState>) -> MethodRouter<WebState> {
    handler.layer(axum::middleware::map_response(move |mut response: Response| async move {
        response.extensions_mut().insert(RouteTemplate(template));
        response
    }))
}

/// Around every request: the rate limit first, then the security headers
/// on whatever the handler answered.
async fn guard(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let mut response = if state.limiter.admit(peer.ip(), started) {
        next.run(request).await
    } else {
        pages::error_page(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "请求过于频繁 / Too many requests",
            "this address sent too many requests in the last minute; try again shortly",
        )
    };
    secure_headers(response.headers_mut());
    // The route's template (`/e/{uscc}`), never the path sent.
    let route = response.extensions().get::<RouteTemplate>().map(|r| r.0);
    state.metrics.request(route, response.status().as_u16(), started.elapsed());
    response
}

/// The security headers every answer carries, and `no-store` unless the
/// handler chose a cache policy.
fn secure_headers(headers: &mut axum::http::HeaderMap) {
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Not `no-referrer`: under it browsers send `Origin: null` with
        // the page's own forms, and the origin check needs the real one.
        (header::REFERRER_POLICY, "same-origin"),
        (header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
        (header::HeaderName::from_static("permissions-policy"), "camera=(), microphone=(), geolocation=()"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// A fixed one-minute window per client address; the table is cleared when
/// it grows past [`RateLimiter::MAX_ADDRESSES`], so it stays bounded.
struct RateLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimiter {
    const MAX_ADDRESSES: usize = 100_000;
    const WINDOW: Duration = Duration::from_secs(60);

    fn new(per_minute: u32) -> RateLimiter {
        RateLimiter { per_minute, windows: Mutex::default() }
    }

    fn admit(&self, ip: IpAddr, now: Instant) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= Self::MAX_ADDRESSES {
            windows.retain(|_, (start, _)| now.duration_since(*start) < Self::WINDOW);
            if windows.len() >= Self::MAX_ADDRESSES {
                windows.clear();
            }
        }
        let (start, count) = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(*start) >= Self::WINDOW {
            (*start, *count) = (now, 0);
        }
        *count += 1;
        *count <= self.per_minute
    }
}

impl IntoResponse for crate::error::Error {
    fn into_response(self) -> Response {
        let status = self.http_status();
        pages::error_page(status, labels::status_title(status), &self.public_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_counts_per_address_per_minute() {
        let limiter = RateLimiter::new(2);
        let (a, b) = (IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 2]));
        let t = Instant::now();
        assert!(limiter.admit(a, t));
        assert!(limiter.admit(a, t));
        assert!(!limiter.admit(a, t));
        assert!(limiter.admit(b, t));
        assert!(limiter.admit(a, t + Duration::from_secs(61)));
    }

    #[test]
    fn connections_are_capped_in_total_and_per_address_and_freed_on_drop() {
        let slots = Arc::new(ConnectionSlots::new(3, 2));
        let (a, b, c) =
            (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]), IpAddr::from([10, 0, 0, 3]));
        let a1 = slots.admit(a).unwrap();
        let _a2 = slots.admit(a).unwrap();
        assert_eq!(slots.admit(a).err(), Some(Refusal::PerPeer));
        let _b1 = slots.admit(b).unwrap();
        assert_eq!(slots.admit(c).err(), Some(Refusal::Total));
        drop(a1);
        let _c1 = slots.admit(c).unwrap();
        assert_eq!(slots.admit(a).err(), Some(Refusal::Total));
    }

    #[test]
    fn a_public_url_is_an_http_origin_with_nothing_to_bend_a_link() {
        assert_eq!(
            parse_public_url("https://ecocode.example.gov.cn/").unwrap(),
            "https://ecocode.example.gov.cn"
        );
        assert_eq!(parse_public_url("http://10.0.0.1:8080/eco").unwrap(), "http://10.0.0.1:8080/eco");
        for bad in [
            "ecocode.example",
            "ftp://x",
            "https://",
            "https://a b",
            "https://x/?q",
            "https://x#f",
            "https://u@x",
            "https://x\"y",
        ] {
            assert!(parse_public_url(bad).is_err(), "{bad}");
        }
    }
}
