//! The guard around every gRPC call, a tower layer inside tonic's server:
//! it sheds calls beyond the limits of [`TransportConfig`] with
//! `RESOURCE_EXHAUSTED` (never queues them), ends request streams that go
//! idle, cancels what still runs when the drain time at shutdown is over,
//! gives tonic's own decoding errors the codes of the contract, and counts
//! every call in [`Metrics`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::body::Body;
use tonic::transport::server::TlsConnectInfo;
use tonic::{Code, Status};

use crate::metrics::Metrics;
use crate::transport::{ConnectionCalls, ConnectionInfo, TransportConfig};

/// How tonic words the two decoding failures the contract gives other
/// codes. Pinned by `tests/it/robustness.rs`: a tonic upgrade that rewords
/// them fails there, not silently in production.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large";
const PROST_DECODE_FAILED: &str = "failed to decode Protobuf message";

/// Longest part of a decoder's message passed on to the caller.
const MAX_DETAIL_CHARS: usize = 200;

/// The layer; clones share the counters and the cancellation.
#[derive(Clone, Debug)]
pub struct CallGuardLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Also holds the count of calls in progress that `max_calls` limits.
    metrics: Arc<Metrics>,
    max_calls: usize,
    max_calls_per_connection: usize,
    max_message_bytes: usize,
    stream_idle_timeout: Duration,
    cancel: CancellationToken,
}

impl CallGuardLayer {
    /// `cancel` ends every call still in progress when it fires.
    pub fn new(config: &TransportConfig, metrics: Arc<Metrics>, cancel: CancellationToken) -> CallGuardLayer {
        CallGuardLayer {
            shared: Arc::new(Shared {
                metrics,
                max_calls: config.max_calls,
                max_calls_per_connection: config.max_calls_per_connection,
                max_message_bytes: config.max_message_bytes,
                stream_idle_timeout: config.stream_idle_timeout,
                cancel,
            }),
        }
    }
}

impl<S> tower_layer::Layer<S> for CallGuardLayer {
    type Service = CallGuard<S>;

    fn layer(&self, inner: S) -> CallGuard<S> {
        CallGuard { inner, shared: self.shared.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct CallGuard<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> tower_service::Service<Request<Body>> for CallGuard<S>
where
    S: tower_service::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        let connection = connection_calls(&request);
        let mut ticket = match Ticket::admit(&shared, connection, method_label(request.uri().path())) {
            Ok(ticket) => ticket,
            Err(status) => return Box::pin(std::future::ready(Ok(status.into_http()))),
        };
        let request = request
            .map(|body| Body::new(IdleBody::new(body, shared.stream_idle_timeout, shared.metrics.clone())));
        // The clone that was polled ready serves this call (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = tokio::select! {
                response = inner.call(request) => response?,
                () = shared.cancel.cancelled() => cancelled_at_shutdown().into_http(),
            };
            let (mut parts, body) = response.into_parts();
            if let Some(status) = contract_status(&parts.headers, shared.max_message_bytes) {
                shared.metrics.reject(match status.code() {
                    Code::ResourceExhausted => "message_too_large",
                    _ => "malformed_message",
                });
                replace_status(&mut parts.headers, &status);
            }
            ticket.code = Status::from_header_map(&parts.headers).map(|s| s.code());
            let body = GuardedBody {
                inner: body,
                cancelled: Box::pin(shared.cancel.clone().cancelled_owned()),
                ticket: Some(ticket),
                done: false,
            };
            Ok(Response::from_parts(parts, Body::new(body)))
        })
    }
}

fn cancelled_at_shutdown() -> Status {
    Status::unavailable("the server is shutting down and the drain time is over; call again")
}

fn connection_calls<B>(request: &Request<B>) -> Option<Arc<ConnectionCalls>> {
    let extensions = request.extensions();
    extensions
        .get::<ConnectionInfo>()
        .or_else(|| extensions.get::<TlsConnectInfo<ConnectionInfo>>().map(|i| i.get_ref()))
        .map(|info| info.calls.clone())
}

/// The method as a metrics label: the gRPC path when it looks like one.
fn method_label(path: &str) -> String {
    let plain = path.len() <= 128 && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
    if plain { path.to_owned() } else { "other".to_owned() }
}

/// One admitted call: counted in the limits while it lives, and in the
/// metrics when it is dropped (with `code`, or `CANCELLED` when the call
/// was dropped before it answered, e.g. by the client or its deadline).
struct Ticket {
    shared: Arc<Shared>,
    connection: Option<Arc<ConnectionCalls>>,
    method: String,
    started: Instant,
    code: Option<Code>,
}

impl Ticket {
    fn admit(
        shared: &Arc<Shared>,
        connection: Option<Arc<ConnectionCalls>>,
        method: String,
    ) -> Result<Ticket, Status> {
        let shed = |reason: &'static str, status: Status| {
            shared.metrics.reject(reason);
            shared.metrics.call(&method, status.code(), Duration::ZERO);
            Err(status)
        };
        if let Some(c) = &connection
            && !c.try_begin(shared.max_calls_per_connection)
        {
            return shed(
                "calls_per_connection",
                Status::resource_exhausted(format!(
                    "more than {} calls in progress on this connection; retry later or open another",
                    shared.max_calls_per_connection
                )),
            );
        }
        if shared.metrics.in_progress.fetch_add(1, Ordering::AcqRel) >= shared.max_calls {
            shared.metrics.in_progress.fetch_sub(1, Ordering::AcqRel);
            if let Some(c) = &connection {
                c.end();
            }
            return shed(
                "calls_total",
                Status::resource_exhausted(format!(
                    "the server has {} calls in progress; retry with backoff",
                    shared.max_calls
                )),
            );
        }
        Ok(Ticket { shared: shared.clone(), connection, method, started: Instant::now(), code: None })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.shared.metrics.in_progress.fetch_sub(1, Ordering::AcqRel);
        if let Some(c) = &self.connection {
            c.end();
        }
        let code = self.code.unwrap_or(Code::Cancelled);
        self.shared.metrics.call(&self.method, code, self.started.elapsed());
    }
}

/// The status the contract wants instead of one of tonic's decoding
/// errors: an oversized message is `RESOURCE_EXHAUSTED`, a malformed one
/// `INVALID_ARGUMENT` (tonic says `OUT_OF_RANGE` and `INTERNAL`).
fn contract_status(headers: &HeaderMap, max_message_bytes: usize) -> Option<Status> {
    let status = Status::from_header_map(headers)?;
    let message = status.message();
    match status.code() {
        Code::OutOfRange if message.starts_with(TONIC_TOO_LARGE) => {
            Some(Status::resource_exhausted(format!(
                "the request message is larger than the limit of {max_message_bytes} bytes (--max-message-bytes)"
            )))
        }
        Code::Internal if message.starts_with(PROST_DECODE_FAILED) => {
            let detail: String = message.chars().take(MAX_DETAIL_CHARS).collect();
            Some(Status::invalid_argument(format!(
                "the request is not a valid message for this method: {detail}"
            )))
        }
        _ => None,
    }
}

fn replace_status(headers: &mut HeaderMap, status: &Status) {
    headers.remove("grpc-status");
    headers.remove("grpc-message");
    headers.remove("grpc-status-details-bin");
    if status.add_header(headers).is_err() {
        tracing::warn!("could not write a status into response headers");
    }
}

pin_project_lite::pin_project! {
    /// A request body that fails with `DEADLINE_EXCEEDED` when the client
    /// makes the handler wait longer than the idle timeout for its next
    /// frame. Only waiting counts: time the handler spends elsewhere does not.
    struct IdleBody {
        #[pin]
        inner: Body,
        #[pin]
        idle: Sleep,
        timeout: Duration,
        waiting: bool,
        metrics: Arc<Metrics>,
    }
}

impl IdleBody {
    fn new(inner: Body, timeout: Duration, metrics: Arc<Metrics>) -> IdleBody {
        IdleBody { inner, idle: tokio::time::sleep(timeout), timeout, waiting: false, metrics }
    }
}

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                *this.waiting = false;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                if !*this.waiting {
                    *this.waiting = true;
                    this.idle.as_mut().reset(tokio::time::Instant::now() + *this.timeout);
                }
                ready!(this.idle.poll(cx));
                this.metrics.reject("idle_stream");
                Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                    "the request stream sent nothing for {} s; it was ended",
                    this.timeout.as_secs_f64()
                )))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds the call's [`Ticket`] until the answer is
    /// complete, notes the status from the trailers, and ends with
    /// `UNAVAILABLE` trailers when the drain time is over. The ticket is
    /// given back before the trailers go out, so a client that has its
    /// answer never finds its own finished call still counted.
    struct GuardedBody {
        #[pin]
        inner: Body,
        cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
        ticket: Option<Ticket>,
        done: bool,
    }
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        let finish = |ticket: &mut Option<Ticket>, code: Code| {
            if let Some(mut ticket) = ticket.take() {
                ticket.code = Some(code);
            }
        };
        if this.cancelled.as_mut().poll(cx).is_ready() {
            *this.done = true;
            let status = cancelled_at_shutdown();
            finish(this.ticket, status.code());
            let mut trailers = HeaderMap::new();
            let _ = status.add_header(&mut trailers);
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(status) = frame.trailers_ref().and_then(Status::from_header_map) {
                    finish(this.ticket, status.code());
                }
            }
            Some(Err(status)) => finish(this.ticket, status.code()),
            None => *this.done = true,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(status: Status) -> HeaderMap {
        let mut h = HeaderMap::new();
        status.add_header(&mut h).unwrap();
        h
    }

    #[test]
    fn tonic_decoding_errors_get_the_codes_of_the_contract() {
        let too_large = headers(Status::out_of_range(
            "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
        ));
        assert_eq!(contract_status(&too_large, 4194304).unwrap().code(), Code::ResourceExhausted);
        let malformed = headers(Status::internal("failed to decode Protobuf message: invalid wire type"));
        assert_eq!(contract_status(&malformed, 1).unwrap().code(), Code::InvalidArgument);
        // Our own OUT_OF_RANGE and INTERNAL answers stay what they are.
        assert!(contract_status(&headers(Status::out_of_range("seq 9 >= tree size 3")), 1).is_none());
        assert!(contract_status(&headers(Status::internal("internal error")), 1).is_none());
    }

    #[test]
    fn odd_paths_are_one_label() {
        assert_eq!(method_label("/ecocode.v1.Scores/GetScore"), "/ecocode.v1.Scores/GetScore");
        assert_eq!(method_label("/x\"y"), "other");
        assert_eq!(method_label(&"/a".repeat(100)), "other");
    }
}
