//! Bounded TCP listeners for the gRPC servers (API and peer): at most so many
//! connections open at once (past it a new one is closed at once), and an
//! accept loop that backs off when the process is out of descriptors instead
//! of spinning on EMFILE (tonic's own `TcpIncoming` has neither).

use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted connection holding its place; dropping it frees the place.
pub struct Held {
    stream: TcpStream,
    _place: OwnedSemaphorePermit,
}

/// Connections from `listener`, at most `max` open at once (past it a new
/// one is closed at once); `what` names the listener in logs. Accepts
/// through `switchboard_dns::accept`, which backs off on EMFILE.
pub fn bounded(listener: TcpListener, max: usize, what: &'static str) -> impl Stream<Item = io::Result<Held>> {
    let open = Arc::new(Semaphore::new(max));
    let backoffs = Arc::new(AtomicU64::new(0));
    futures::stream::unfold((listener, open, backoffs), move |(listener, open, backoffs)| async move {
        loop {
            let (stream, peer) = switchboard_dns::accept(&listener, what, &backoffs).await;
            match open.clone().try_acquire_owned() {
                Ok(place) => {
                    let _ = stream.set_nodelay(true);
                    return Some((Ok(Held { stream, _place: place }), (listener, open, backoffs)));
                }
                Err(_) => tracing::debug!(%peer, listener = what, connections_max = max, "connection refused: too many open"),
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
