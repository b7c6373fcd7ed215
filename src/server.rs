//! The HTTP listener: admits connections up to `server.max_connections`,
//! serves each with hyper, and closes the ones that trickle a request head,
//! stall a body or sit idle past their limits, so slow or idle clients cannot
//! hold the file descriptors the others need. Nothing here outlives a
//! restart; a stopped listener finishes the requests in flight.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::{Body as HttpBody, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// How long a connection past the cap waits for another to close.
const ADMISSION_WAIT: Duration = Duration::from_millis(100);
/// What a refused connection reads before it is closed.
const REFUSAL: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// `Activity::head_ms` while no request head is arriving.
const NO_HEAD: u64 = u64::MAX;

/// What one connection may take, and how many may be open at once.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// From a head's first byte (or the connection opening) to its end.
    pub header: Duration,
    /// From a head's end to its body's end.
    pub body: Duration,
    /// Between a response and the next request's first byte.
    pub idle: Duration,
    /// Connections open at once, upgraded ones included.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `stop` turns true, then waits for
/// the requests in flight (upgraded sockets are their owners' to close).
pub async fn serve(listener: TcpListener, router: Router, limits: ConnectionLimits, stop: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut stopping = stop.clone();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors, most likely: closing connections
                    // free some, so wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ADMISSION_WAIT).await;
                    continue;
                }
            },
            _ = stopped(&mut stopping) => break,
        };
        let (router, limits, permits, stop) = (router.clone(), limits.clone(), permits.clone(), stop.clone());
        connections.spawn(connection(stream, peer, router, limits, permits, stop));
    }
    connections.close();
    connections.wait().await;
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let permit = match permits.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => match tokio::time::timeout(ADMISSION_WAIT, permits.acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                crate::metrics::connection_closed("max_connections");
                let _ = tokio::time::timeout(ADMISSION_WAIT, stream.write_all(REFUSAL)).await;
                return;
            }
        },
    };
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched::new(stream, activity.clone(), permit));
    let service = {
        let activity = activity.clone();
        let body_limit = limits.body;
        tower::service_fn(move |request: hyper::Request<Incoming>| {
            let busy = activity.begin();
            let mut request = request.map(|body| axum::body::Body::new(Deadline::new(body, body_limit)));
            request.extensions_mut().insert(ConnectInfo(peer));
            let answer = router.clone().oneshot(request);
            async move {
                let response = answer.await;
                drop(busy);
                Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
            }
        })
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    let served = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
    tokio::pin!(served);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = served.as_mut() => return,
            reason = activity.expired(&limits) => {
                crate::metrics::connection_closed(reason);
                return;
            }
            _ = stopped(&mut stop), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
}

/// When the connection last moved, and whether a request is in flight.
/// Times are milliseconds since the connection opened.
struct Activity {
    opened: Instant,
    busy: AtomicU32,
    last_ms: AtomicU64,
    /// When the head being read began; `NO_HEAD` between requests. Starts
    /// at 0: the first head is due within the limit of the opening.
    head_ms: AtomicU64,
}

/// Marks a request in flight until dropped.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.last_ms.store(activity.now_ms(), Ordering::Relaxed);
        activity.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            busy: AtomicU32::new(0),
            last_ms: AtomicU64::new(0),
            head_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.head_ms.store(NO_HEAD, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Bytes arrived: between requests, they start the next head's clock.
    fn read(&self) {
        let now = self.now_ms();
        self.last_ms.store(now, Ordering::Relaxed);
        if self.busy.load(Ordering::Relaxed) == 0 {
            let _ = self
                .head_ms
                .compare_exchange(NO_HEAD, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Resolves with the limit the connection passed. A request in flight
    /// is the body deadline's and the handler's to bound, not this.
    async fn expired(&self, limits: &ConnectionLimits) -> &'static str {
        let (header, idle) = (limits.header.as_millis() as u64, limits.idle.as_millis() as u64);
        loop {
            let now = self.now_ms();
            let wait = if self.busy.load(Ordering::Relaxed) > 0 {
                header.min(idle)
            } else {
                let (due, reason) = match self.head_ms.load(Ordering::Relaxed) {
                    NO_HEAD => (self.last_ms.load(Ordering::Relaxed) + idle, "idle_timeout"),
                    started => (started + header, "header_timeout"),
                };
                if now >= due {
                    return reason;
                }
                due - now
            };
            tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
        }
    }
}

/// The socket, reporting its traffic to `Activity` and holding the
/// connection's permit for as long as it is open, upgraded or not.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
    _permit: OwnedSemaphorePermit,
}

impl Watched {
    fn new(stream: TcpStream, activity: Arc<Activity>, permit: OwnedSemaphorePermit) -> Self {
        crate::metrics::connections_open(1.0);
        Self {
            stream,
            activity,
            _permit: permit,
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        crate::metrics::connections_open(-1.0);
    }
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A request body that must arrive whole by a deadline. Unlike tower-http's
/// `DeadlineBody`, it starts a timer only when the body is not already in
/// hand: a fetch's small body arrives with its head, and a timer per request
/// was a measurable share of the fetch path.
struct Deadline<B> {
    body: B,
    due: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The body did not arrive by `server.body_timeout_ms`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within its deadline")]
pub struct BodyTimedOut;

impl<B> Deadline<B> {
    fn new(body: B, limit: Duration) -> Self {
        Self {
            body,
            due: Instant::now() + limit,
            timer: None,
        }
    }
}

impl<B> HttpBody for Deadline<B>
where
    B: HttpBody + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let due = self.due;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
