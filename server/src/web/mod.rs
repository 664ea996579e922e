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
//!   without script), the body limit and the per-address rate limit.
//!
//! Invariants: handlers reach data only through [`Service`]; no template is
//! built by string concatenation; no token is ever in a URL or a log; every
//! page works without JavaScript (there is none).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::principals::PrincipalStore;
use crate::service::Service;

pub mod chart;
pub mod labels;
pub mod pages;
pub mod qr;
pub mod session;
pub mod templates;

/// The web listener's limits.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Requests one client address may make per minute; more are answered
    /// `429 Too Many Requests`.
    pub requests_per_minute: u32,
    /// Largest request body (forms, portfolio lists).
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's head; a connection
    /// that trickles bytes (slowloris) is closed after it.
    pub header_read_timeout: Duration,
}

impl Default for WebConfig {
    fn default() -> WebConfig {
        WebConfig {
            requests_per_minute: 600,
            max_body_bytes: 256 * 1024,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct WebState {
    pub service: Arc<Service>,
    pub principals: Arc<PrincipalStore>,
    pub sessions: Arc<session::Sessions>,
    /// The listener's own address: the page URL in QR codes when a request
    /// names no usable `Host`.
    pub local: SocketAddr,
    limiter: Arc<RateLimiter>,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState").field("local", &self.local).finish_non_exhaustive()
    }
}

/// The Content-Security-Policy of every answer: no script at all, styles
/// and images only from this server (SVG is inline markup, not script).
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// The router over `service`, as `serve` runs it; tests may drive it too.
pub fn router(
    service: Arc<Service>,
    principals: Arc<PrincipalStore>,
    local: SocketAddr,
    config: &WebConfig,
) -> Router {
    let state = WebState {
        service,
        principals,
        sessions: Arc::new(session::Sessions::default()),
        local,
        limiter: Arc::new(RateLimiter::new(config.requests_per_minute)),
    };
    Router::new()
        .route("/", get(pages::index))
        .route("/e", get(pages::lookup))
        .route("/e/{uscc}", get(pages::enterprise))
        .route("/e/{uscc}/feed.atom", get(pages::feed))
        .route("/e/{uscc}/attestation.txt", get(pages::attestation_file))
        .route("/e/{uscc}/proof/{seq}", get(pages::proof_bundle))
        .route("/e/{uscc}/dispute", post(pages::open_dispute))
        .route("/e/{uscc}/rectification", post(pages::submit_rectification))
        // A scanned compact QR code (HTTP://HOST/Q/<digits>).
        .route("/Q/{digits}", get(pages::scanned))
        .route("/q/{digits}", get(pages::scanned))
        .route("/signin", get(pages::signin_form).post(pages::signin))
        .route("/signout", post(pages::signout))
        .route("/region", get(pages::region))
        .route("/region.csv", get(pages::region_csv))
        .route("/portfolio", get(pages::portfolio_form).post(pages::portfolio))
        .route("/static/style.css", get(pages::stylesheet))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}

/// Serves `router` on `listener` until `stop`; requests in flight finish.
///
/// An accept loop of our own rather than `axum::serve`, which sets no
/// timer: a client must send a request's head within
/// [`WebConfig::header_read_timeout`], so connections that trickle bytes
/// (slowloris) do not pile up.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &WebConfig,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(config.header_read_timeout);
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
                    tracing::warn!(error = %e, "web listener cannot accept; waiting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                // A `Router` is always ready, so it is called without `poll_ready`.
                tower_service::Service::call(&mut router.clone(), request)
            });
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "web connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Around every request: the rate limit first, then the security headers
/// on whatever the handler answered.
async fn guard(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = if state.limiter.admit(peer.ip(), Instant::now()) {
        next.run(request).await
    } else {
        pages::error_page(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "请求过于频繁 / Too many requests",
            "this address sent too many requests in the last minute; try again shortly",
        )
    };
    let headers = response.headers_mut();
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
    response
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
}
