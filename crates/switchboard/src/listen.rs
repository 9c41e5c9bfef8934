//! Bounded TCP listeners for the gRPC servers (API and peer): at most so many
//! connections open at once (past it a new one is closed at once), and an
//! accept loop that backs off when the process is out of descriptors instead
//! of spinning on EMFILE (tonic's own `TcpIncoming` has neither). Optionally
//! an idle timeout: a connection with no call open for that long is closed
//! (HTTP/2 has none of its own, and keepalive pings keep an idle client's
//! connection alive); `IdleLayer` counts the calls open on each connection.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// What a bounded listener counted, for `/metrics`.
#[derive(Debug, Default)]
pub struct ListenerCounters {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections closed at accept: the limit was reached.
    pub refused: AtomicU64,
    /// Times accept waited for want of file descriptors.
    pub accept_backoffs: AtomicU64,
    /// Connections closed for having no call open past the idle timeout.
    pub idle_closed: AtomicU64,
}

/// An accepted connection holding its place; dropping it frees the place.
pub struct Held {
    stream: TcpStream,
    _place: OwnedSemaphorePermit,
    idle: Option<IdleWatch>,
    counters: Arc<ListenerCounters>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Connections from `listener`, at most `max` open at once (past it a new
/// one is closed at once); `what` names the listener in logs. Accepts
/// through `switchboard_dns::accept`, which backs off on EMFILE. With
/// `idle`, connections without a call open for its timeout are closed (the
/// server must carry `idle.layer()`, which counts the calls).
pub fn bounded(
    listener: TcpListener,
    max: usize,
    what: &'static str,
    idle: Option<Idle>,
    counters: Arc<ListenerCounters>,
) -> impl Stream<Item = io::Result<Held>> {
    let open = Arc::new(Semaphore::new(max));
    futures::stream::unfold((listener, open, counters), move |(listener, open, counters)| {
        let idle = idle.clone();
        async move {
            loop {
                let (stream, peer) = switchboard_dns::accept(&listener, what, &counters.accept_backoffs).await;
                match open.clone().try_acquire_owned() {
                    Ok(place) => {
                        let _ = stream.set_nodelay(true);
                        let idle = idle.map(|i| i.watch(peer));
                        counters.open.fetch_add(1, Ordering::Relaxed);
                        let held = Held { stream, _place: place, idle, counters: counters.clone() };
                        return Some((Ok(held), (listener, open, counters)));
                    }
                    Err(_) => {
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, listener = what, connections_max = max, "connection refused: too many open");
                    }
                }
            }
        }
    })
}

/// Calls open per connection (by the client's address, unique among open
/// connections) and when the last one ended.
#[derive(Clone)]
pub struct Idle {
    timeout: Duration,
    conns: Arc<Mutex<HashMap<SocketAddr, Activity>>>,
}

struct Activity {
    calls: usize,
    since: Instant,
}

impl Idle {
    pub fn new(timeout: Duration) -> Idle {
        Idle { timeout, conns: Arc::default() }
    }

    /// The tower layer that counts the calls open on each connection.
    pub fn layer(&self) -> IdleLayer {
        IdleLayer(self.clone())
    }

    fn watch(self, peer: SocketAddr) -> IdleWatch {
        if let Ok(mut c) = self.conns.lock() {
            c.insert(peer, Activity { calls: 0, since: Instant::now() });
        }
        let sleep = Box::pin(tokio::time::sleep(self.timeout));
        IdleWatch { idle: self, peer, sleep }
    }

    fn update(&self, peer: SocketAddr, f: impl FnOnce(&mut Activity)) {
        if let Ok(mut c) = self.conns.lock() {
            if let Some(a) = c.get_mut(&peer) {
                f(a);
            }
        }
    }

    /// When the connection from `peer` may next be closed as idle, if it
    /// has no call open (`None` while it has one).
    fn idle_until(&self, peer: SocketAddr) -> Option<Instant> {
        let c = self.conns.lock().ok()?;
        c.get(&peer).filter(|a| a.calls == 0).map(|a| a.since + self.timeout)
    }
}

/// One connection's idle timer.
struct IdleWatch {
    idle: Idle,
    peer: SocketAddr,
    sleep: Pin<Box<Sleep>>,
}

impl IdleWatch {
    /// Ready once the connection has been idle for the timeout.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if std::future::Future::poll(self.sleep.as_mut(), cx).is_pending() {
                return Poll::Pending;
            }
            match self.idle.idle_until(self.peer) {
                Some(at) if at <= Instant::now() => return Poll::Ready(()),
                Some(at) => self.sleep.as_mut().reset(at),
                None => self.sleep.as_mut().reset(Instant::now() + self.idle.timeout),
            }
        }
    }
}

impl Drop for IdleWatch {
    fn drop(&mut self) {
        if let Ok(mut c) = self.idle.conns.lock() {
            c.remove(&self.peer);
        }
    }
}

/// Counts a call as open from its request until its response body is done.
#[derive(Clone)]
pub struct IdleLayer(Idle);

impl<S> tower::Layer<S> for IdleLayer {
    type Service = IdleService<S>;

    fn layer(&self, inner: S) -> IdleService<S> {
        IdleService { inner, idle: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct IdleService<S> {
    inner: S,
    idle: Idle,
}

impl<S, B, R> tower::Service<http::Request<B>> for IdleService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Counted<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let open = req.extensions().get::<TcpConnectInfo>().and_then(|i| i.remote_addr()).map(|peer| OpenCall::new(&self.idle, peer));
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Counted { body, _open: open }))
        })
    }
}

/// A call open on a connection, until dropped.
struct OpenCall {
    idle: Idle,
    peer: SocketAddr,
}

impl OpenCall {
    fn new(idle: &Idle, peer: SocketAddr) -> OpenCall {
        idle.update(peer, |a| a.calls += 1);
        OpenCall { idle: idle.clone(), peer }
    }
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.idle.update(self.peer, |a| {
            a.calls = a.calls.saturating_sub(1);
            a.since = Instant::now();
        });
    }
}

/// A response body that keeps its call counted open until it is dropped.
pub struct Counted<B> {
    body: B,
    _open: Option<OpenCall>,
}

impl<B: http_body::Body + Unpin> http_body::Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Connected for Held {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Held {
    /// Reads, or the end of the stream once the connection is idle past
    /// its timeout: the HTTP/2 server then closes it.
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if read.is_pending() {
            if let Some(idle) = &mut self.idle {
                if idle.poll_idle(cx).is_ready() {
                    tracing::debug!(peer = %idle.peer, "closing an idle connection");
                    self.counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                    return Poll::Ready(Ok(()));
                }
            }
        }
        read
    }
}

impl AsyncWrite for Held {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
