//! Bounded TCP listeners for the gRPC servers (API and peer): at most so many
//! connections open at once (past it a new one is closed at once), and an
//! accept loop that backs off when the process is out of descriptors instead
//! of spinning on EMFILE (tonic's own `TcpIncoming` has neither).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The first and the longest wait after accept fails for want of descriptors.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// An accepted connection holding its place; dropping it frees the place.
pub struct Held {
    stream: TcpStream,
    _place: OwnedSemaphorePermit,
}

/// Connections from `listener`, at most `max` open at once; `what` names
/// the listener in logs.
pub fn bounded(listener: TcpListener, max: usize, what: &'static str) -> impl Stream<Item = io::Result<Held>> {
    let open = Arc::new(Semaphore::new(max));
    futures::stream::unfold((listener, open), move |(listener, open)| async move {
        let mut backoff = ACCEPT_BACKOFF_FIRST;
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => match open.clone().try_acquire_owned() {
                    Ok(place) => {
                        let _ = stream.set_nodelay(true);
                        return Some((Ok(Held { stream, _place: place }), (listener, open)));
                    }
                    Err(_) => {
                        tracing::debug!(%peer, listener = what, connections_max = max, "connection refused: too many open");
                        drop(stream);
                    }
                },
                Err(e) if switchboard_dns::out_of_descriptors(&e) => {
                    tracing::warn!(error = %e, listener = what, wait_ms = backoff.as_millis() as u64, "accept: out of file descriptors");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
                Err(e) => tracing::debug!(error = %e, listener = what, "accept"),
            }
        }
    })
}

impl Connected for Held {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Held {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
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
