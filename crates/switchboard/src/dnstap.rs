//! The dnstap writer: the query log's tapped messages (`switchboard_dns::Tap`)
//! encoded as dnstap `AUTH_QUERY` / `AUTH_RESPONSE` messages and written in
//! Frame Streams (fstrm), the framing Knot, BIND, NSD and Unbound use, to a
//! file or to a reader listening on a Unix socket (`fstrm_capture`, dnstap
//! collectors).
//!
//! Frame Streams, as libfstrm's `fstrm/control.h` specifies it: a data frame
//! is a 32-bit big-endian length and that many bytes (one encoded `Dnstap`);
//! a length of zero escapes a control frame: its own 32-bit big-endian
//! length, a 32-bit type and fields, of which the only one defined is the
//! content type (type 1, a 32-bit length, the bytes). Content type here:
//! `protobuf:dnstap.Dnstap`.
//!
//! - File sink (uni-directional): `START`, data frames, `STOP` when the
//!   writer ends. The file is created or truncated when the writer opens it,
//!   as libfstrm's file writer (Knot's, BIND's) does: one node life, one
//!   file, always a complete stream. Reopening after a write error first
//!   moves what was written aside (`PATH.UNIXTIME`), so an error never
//!   erases the log.
//! - Socket sink (bi-directional, we connect to the reader): `READY` with our
//!   content type, the reader's `ACCEPT` (which must list ours if it lists
//!   any), `START`, data frames; when the writer ends, `STOP` and the
//!   reader's `FINISH`.
//!
//! The writer is one task reading the tap's bounded queue; the DNS path only
//! ever `try_send`s into it, so a slow or absent reader costs dropped copies
//! (counted by the tap), never a query's time. Messages taken from the queue
//! while there is no reader, or in a batch whose write failed, are counted
//! `lost`; the writer reopens the sink with a doubling pause (100 ms up to
//! 5 s). Writes are buffered and flushed whenever the queue is momentarily
//! empty (or every `BATCH_MAX` messages), so a reader sees messages promptly.
//! The stream is ended (`STOP`) when the queue's senders are all gone, or at
//! shutdown by `Writer::finish`, which closes the queue first: the DNS tasks
//! holding the tap need not be stopped before it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use prost::Message as _;
use switchboard_dns::{TapKind, TapMessage, Transport};
use switchboard_proto::dnstap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The Frame Streams content type of dnstap.
pub const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";

/// Largest control frame (after its length) we accept, libfstrm's
/// `FSTRM_CONTROL_FRAME_LENGTH_MAX`.
const CONTROL_BYTES_MAX: u32 = 512;
/// Largest content type field, libfstrm's
/// `FSTRM_CONTROL_FIELD_CONTENT_TYPE_LENGTH_MAX`.
const CONTENT_TYPE_BYTES_MAX: u32 = 256;
/// The content type field's type.
const FIELD_CONTENT_TYPE: u32 = 1;

/// Messages written between two flushes at most, when the queue keeps up.
const BATCH_MAX: usize = 1024;
/// The write buffer in front of the sink.
const BUFFER_BYTES: usize = 64 * 1024;
/// Time to connect and finish the handshake (or create the file).
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Time one batch may take to write and flush; past it the reader is
/// treated as gone (a partly written frame leaves the stream unusable).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time the reader has to answer `STOP` with `FINISH`.
const FINISH_TIMEOUT: Duration = Duration::from_secs(1);
/// Pauses between attempts to reopen the sink: from the first, doubling, to the longest.
const REOPEN_PAUSE_FIRST: Duration = Duration::from_millis(100);
const REOPEN_PAUSE_MAX: Duration = Duration::from_secs(5);

/// Where the messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// A Frame Streams reader listening on this Unix stream socket.
    Socket(PathBuf),
    /// A file, created or truncated when the writer starts.
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub sink: Sink,
    /// The `identity` of every message (typically the host name); empty: left out.
    pub identity: String,
    /// The `version` of every message; empty: left out.
    pub version: String,
}

/// What the writer has done, for metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages written and flushed to the sink.
    pub written: AtomicU64,
    /// Messages taken from the queue but not written: no reader, or a write
    /// error (a failed batch counts whole, though the reader may have got
    /// part of it).
    pub lost: AtomicU64,
    /// Successful opens of the sink (connections with a finished handshake,
    /// or file creations).
    pub connects: AtomicU64,
}

/// A running writer, to end at shutdown.
pub struct Writer {
    counters: Arc<Counters>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Writer {
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Close the queue (the tap's later sends fail and count as dropped),
    /// write what is in it, end the stream and wait for the writer to
    /// return. Bounded by the writer's timeouts: a reader that stopped
    /// reading can hold it for `OPEN_TIMEOUT` or `WRITE_TIMEOUT` and
    /// `FINISH_TIMEOUT`, a few seconds.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "dnstap: the writer failed");
        }
    }
}

/// Start the writer on the current Tokio runtime: it writes what arrives on
/// `rx` until every sender is dropped or [`Writer::finish`] is called, then
/// ends the stream (`STOP`, and `FINISH` from a socket reader) and returns.
/// Dropping the `Writer` leaves the task running until `rx` closes.
pub fn start(settings: Settings, rx: mpsc::Receiver<TapMessage>) -> Writer {
    let counters = Arc::new(Counters::default());
    let (stop, stop_rx) = oneshot::channel();
    let task = tokio::spawn(run(settings, rx, stop_rx, counters.clone()));
    Writer { counters, stop, task }
}

/// Resolves when `Writer::finish` asks the writer to stop; never if the
/// `Writer` was dropped instead.
async fn stop_asked(stop: &mut Option<oneshot::Receiver<()>>) {
    if let Some(rx) = stop {
        if rx.await.is_ok() {
            return;
        }
        *stop = None;
    }
    std::future::pending().await
}

/// The writer's loop: open the sink when there is none and its pause is
/// over, take what is queued, write it or count it lost. Asked to stop, it
/// closes the queue and goes on until the queue is empty, opening no new
/// sink (what the queue held is lost if there is none).
async fn run(settings: Settings, mut rx: mpsc::Receiver<TapMessage>, stop: oneshot::Receiver<()>, counters: Arc<Counters>) {
    let mut stop = Some(stop);
    // Asked to stop: the queue is closed and no new sink is opened.
    let mut stopping = false;
    let identity = settings.identity.as_bytes();
    let version = settings.version.as_bytes();
    let mut pauses = reopen_pauses();
    let mut retry_at = Instant::now();
    let mut out: Option<Output> = None;
    // Whether the last attempt (open or write) succeeded: warn once per outage.
    let mut healthy = true;
    let mut batch: Vec<TapMessage> = Vec::with_capacity(BATCH_MAX);
    let mut scratch = Vec::new();
    loop {
        if out.is_none() && !stopping && Instant::now() >= retry_at {
            match tokio::time::timeout(OPEN_TIMEOUT, Output::open(&settings.sink, counters.connects.load(Ordering::Relaxed) > 0)).await {
                Ok(Ok(o)) => {
                    counters.connects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(sink = ?settings.sink, "dnstap: sink open");
                    out = Some(o);
                }
                failed => {
                    let error = match failed {
                        Ok(Err(e)) => e,
                        _ => io::Error::new(io::ErrorKind::TimedOut, "no handshake in time"),
                    };
                    let pause = pauses.next().unwrap_or(REOPEN_PAUSE_MAX);
                    if healthy {
                        tracing::warn!(sink = ?settings.sink, %error, "dnstap: cannot open the sink; messages are lost until it opens");
                    } else {
                        tracing::debug!(sink = ?settings.sink, %error, ?pause, "dnstap: cannot open the sink");
                    }
                    healthy = false;
                    retry_at = Instant::now() + pause;
                }
            }
        }

        let first = tokio::select! {
            m = rx.recv() => m,
            () = stop_asked(&mut stop) => {
                rx.close();
                stop = None;
                stopping = true;
                continue;
            }
            () = tokio::time::sleep_until(retry_at), if out.is_none() && !stopping => continue,
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;

        let Some(o) = &mut out else {
            counters.lost.fetch_add(n, Ordering::Relaxed);
            batch.clear();
            continue;
        };
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            for m in &batch {
                scratch.clear();
                to_dnstap(m, identity, version).encode(&mut scratch).map_err(io::Error::other)?;
                o.write_data(&scratch).await?;
            }
            o.write.flush().await
        })
        .await;
        batch.clear();
        match written {
            Ok(Ok(())) => {
                counters.written.fetch_add(n, Ordering::Relaxed);
                if !healthy {
                    healthy = true;
                    pauses = reopen_pauses();
                }
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e,
                    _ => io::Error::new(io::ErrorKind::TimedOut, "the reader took no data in time"),
                };
                counters.lost.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(sink = ?settings.sink, %error, "dnstap: writing failed; reopening the sink");
                out = None;
                healthy = false;
                retry_at = Instant::now() + pauses.next().unwrap_or(REOPEN_PAUSE_MAX);
            }
        }
    }

    if let Some(o) = out {
        match o.close().await {
            Ok(()) => tracing::info!(sink = ?settings.sink, "dnstap: stream ended"),
            Err(error) => tracing::warn!(sink = ?settings.sink, %error, "dnstap: ending the stream failed"),
        }
    }
}

fn reopen_pauses() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(REOPEN_PAUSE_FIRST)
        .with_factor(2.0)
        .with_max_delay(REOPEN_PAUSE_MAX)
        .without_max_times()
        .build()
}

/// An open sink: the buffered stream we write, and for a socket the read
/// side the reader answers on.
struct Output {
    write: BufWriter<Box<dyn AsyncWrite + Send + Unpin>>,
    read: Option<tokio::net::unix::OwnedReadHalf>,
}

impl Output {
    /// Create the file and write `START`, or connect and shake hands. A
    /// file opened `again` (after a write error) is moved aside first.
    async fn open(sink: &Sink, again: bool) -> io::Result<Output> {
        match sink {
            Sink::File(path) => {
                if again && tokio::fs::metadata(path).await.is_ok_and(|m| m.len() > 0) {
                    let stamp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    let mut aside = path.clone().into_os_string();
                    aside.push(format!(".{stamp}"));
                    tokio::fs::rename(path, &aside).await.map_err(|e| with_path(e, path))?;
                }
                let file = tokio::fs::File::create(path).await.map_err(|e| with_path(e, path))?;
                let mut write = BufWriter::with_capacity(BUFFER_BYTES, Box::new(file) as Box<dyn AsyncWrite + Send + Unpin>);
                write.write_all(&control_frame(Control::Start, Some(CONTENT_TYPE))).await?;
                write.flush().await?;
                Ok(Output { write, read: None })
            }
            Sink::Socket(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(|e| with_path(e, path))?;
                let (mut read, write) = stream.into_split();
                let mut write = BufWriter::with_capacity(BUFFER_BYTES, Box::new(write) as Box<dyn AsyncWrite + Send + Unpin>);
                write.write_all(&control_frame(Control::Ready, Some(CONTENT_TYPE))).await?;
                write.flush().await?;
                let accept = read_control(&mut read).await?;
                if accept.kind != Control::Accept {
                    return Err(invalid(format!("the reader answered READY with {:?}, not ACCEPT", accept.kind)));
                }
                if !accept.content_types.is_empty() && !accept.content_types.iter().any(|t| t == CONTENT_TYPE) {
                    return Err(invalid(format!(
                        "the reader accepts only {:?}, not protobuf:dnstap.Dnstap",
                        accept.content_types.iter().map(|t| String::from_utf8_lossy(t)).collect::<Vec<_>>()
                    )));
                }
                write.write_all(&control_frame(Control::Start, Some(CONTENT_TYPE))).await?;
                write.flush().await?;
                Ok(Output { write, read: Some(read) })
            }
        }
    }

    /// One data frame, into the buffer.
    async fn write_data(&mut self, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len()).map_err(|_| invalid("a dnstap message over 4 GiB".into()))?;
        self.write.write_all(&len.to_be_bytes()).await?;
        self.write.write_all(payload).await
    }

    /// `STOP`, flushed; from a socket reader, its `FINISH`.
    async fn close(mut self) -> io::Result<()> {
        tokio::time::timeout(WRITE_TIMEOUT, async {
            self.write.write_all(&control_frame(Control::Stop, None)).await?;
            self.write.shutdown().await
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "STOP not written in time"))??;
        if let Some(read) = &mut self.read {
            let finish = tokio::time::timeout(FINISH_TIMEOUT, read_control(read))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no FINISH in time"))??;
            if finish.kind != Control::Finish {
                return Err(invalid(format!("the reader answered STOP with {:?}, not FINISH", finish.kind)));
            }
        }
        Ok(())
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// The Frame Streams control frame types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Accept = 1,
    Start = 2,
    Stop = 3,
    Ready = 4,
    Finish = 5,
}

impl Control {
    fn from_u32(v: u32) -> Option<Control> {
        Some(match v {
            1 => Control::Accept,
            2 => Control::Start,
            3 => Control::Stop,
            4 => Control::Ready,
            5 => Control::Finish,
            _ => return None,
        })
    }
}

/// A control frame as read: its type and content type fields.
#[derive(Debug, PartialEq, Eq)]
struct ControlFrame {
    kind: Control,
    content_types: Vec<Vec<u8>>,
}

/// A control frame with its escape and length, and a content type field if given.
fn control_frame(kind: Control, content_type: Option<&[u8]>) -> Vec<u8> {
    let mut body = (kind as u32).to_be_bytes().to_vec();
    if let Some(t) = content_type {
        body.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
        body.extend_from_slice(&(t.len() as u32).to_be_bytes());
        body.extend_from_slice(t);
    }
    let mut frame = Vec::with_capacity(8 + body.len());
    frame.extend_from_slice(&0u32.to_be_bytes());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Read one control frame (escape, length, body) from the reader.
async fn read_control<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<ControlFrame> {
    let escape = r.read_u32().await?;
    if escape != 0 {
        return Err(invalid(format!("a data frame ({escape} bytes) where a control frame was due")));
    }
    let len = r.read_u32().await?;
    if len > CONTROL_BYTES_MAX {
        return Err(invalid(format!("a control frame of {len} bytes (at most {CONTROL_BYTES_MAX})")));
    }
    let mut body = vec![0; len as usize];
    r.read_exact(&mut body).await?;
    parse_control(&body)
}

/// A control frame's body (after its length): type, then fields.
fn parse_control(body: &[u8]) -> io::Result<ControlFrame> {
    fn take_u32(rest: &mut &[u8]) -> io::Result<u32> {
        let (head, tail) = rest.split_first_chunk::<4>().ok_or_else(|| invalid("a truncated control frame".into()))?;
        *rest = tail;
        Ok(u32::from_be_bytes(*head))
    }
    let mut rest = body;
    let kind = take_u32(&mut rest)?;
    let kind = Control::from_u32(kind).ok_or_else(|| invalid(format!("an unknown control frame type {kind}")))?;
    let mut content_types = Vec::new();
    while !rest.is_empty() {
        let field = take_u32(&mut rest)?;
        if field != FIELD_CONTENT_TYPE {
            return Err(invalid(format!("an unknown control field type {field}")));
        }
        let len = take_u32(&mut rest)?;
        if len > CONTENT_TYPE_BYTES_MAX || len as usize > rest.len() {
            return Err(invalid(format!("a content type of {len} bytes in a control frame of {}", body.len())));
        }
        let (t, tail) = rest.split_at(len as usize);
        content_types.push(t.to_vec());
        rest = tail;
    }
    Ok(ControlFrame { kind, content_types })
}

/// The dnstap message of a tapped query or response.
fn to_dnstap(m: &TapMessage, identity: &[u8], version: &[u8]) -> dnstap::Dnstap {
    let client = canonical(m.client);
    let server = canonical(m.server);
    let family = match client.ip() {
        IpAddr::V4(_) => dnstap::SocketFamily::Inet,
        IpAddr::V6(_) => dnstap::SocketFamily::Inet6,
    };
    let protocol = match m.transport {
        Transport::Udp => dnstap::SocketProtocol::Udp,
        Transport::Tcp => dnstap::SocketProtocol::Tcp,
        Transport::Dot => dnstap::SocketProtocol::Dot,
        Transport::Doq => dnstap::SocketProtocol::Doq,
    };
    let (query_sec, query_nsec) = unix_time(m.query_time);
    let mut message = dnstap::Message {
        socket_family: Some(family as i32),
        socket_protocol: Some(protocol as i32),
        query_address: Some(ip_bytes(client.ip())),
        query_port: Some(u32::from(client.port())),
        query_time_sec: Some(query_sec),
        query_time_nsec: Some(query_nsec),
        ..Default::default()
    };
    // Both addresses are read by the one family: leave out a responder of
    // the other (there is none on a socket, but a config could mix them).
    if client.is_ipv4() == server.is_ipv4() {
        message.response_address = Some(ip_bytes(server.ip()));
        message.response_port = Some(u32::from(server.port()));
    }
    match m.kind {
        TapKind::Query => {
            message.r#type = dnstap::message::Type::AuthQuery as i32;
            message.query_message = Some(m.wire.clone());
        }
        TapKind::Response => {
            message.r#type = dnstap::message::Type::AuthResponse as i32;
            if let Some(t) = m.response_time {
                let (sec, nsec) = unix_time(t);
                message.response_time_sec = Some(sec);
                message.response_time_nsec = Some(nsec);
            }
            message.response_message = Some(m.wire.clone());
        }
    }
    dnstap::Dnstap {
        identity: (!identity.is_empty()).then(|| identity.to_vec()),
        version: (!version.is_empty()).then(|| version.to_vec()),
        extra: None,
        r#type: dnstap::dnstap::Type::Message as i32,
        message: Some(message),
    }
}

/// An IPv4 client on a dual-stack socket (`::ffff:a.b.c.d`) as IPv4, as it is.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// Seconds and nanoseconds since the Unix epoch (zero before it).
fn unix_time(t: SystemTime) -> (u64, u32) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    (d.as_secs(), d.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use tokio::net::UnixListener;

    use super::*;

    /// The content type's 22 bytes, as the spec's frames carry them.
    const CT: &[u8] = b"protobuf:dnstap.Dnstap";

    fn message(kind: TapKind, transport: Transport, client: SocketAddr, wire: &[u8]) -> TapMessage {
        let query_time = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        TapMessage {
            kind,
            transport,
            client,
            server: SocketAddr::from(([127, 0, 0, 1], 53)),
            query_time,
            response_time: (kind == TapKind::Response).then(|| query_time + Duration::from_micros(250)),
            wire: wire.to_vec(),
        }
    }

    /// A whole uni-directional stream: START's content type, the data
    /// frames' payloads, and whether STOP ended it.
    fn decode_stream(mut bytes: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, bool) {
        let take = |n: usize, bytes: &mut &[u8]| -> Vec<u8> {
            let (head, tail) = bytes.split_at(n);
            *bytes = tail;
            head.to_vec()
        };
        let u32_at = |v: Vec<u8>| u32::from_be_bytes(v.try_into().unwrap());
        assert_eq!(u32_at(take(4, &mut bytes)), 0, "the stream opens with a control frame");
        let len = u32_at(take(4, &mut bytes)) as usize;
        let start = parse_control(&take(len, &mut bytes)).unwrap();
        assert_eq!(start.kind, Control::Start);
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let len = u32_at(take(4, &mut bytes)) as usize;
            if len == 0 {
                let len = u32_at(take(4, &mut bytes)) as usize;
                let stop = parse_control(&take(len, &mut bytes)).unwrap();
                assert_eq!(stop.kind, Control::Stop);
                assert!(bytes.is_empty(), "nothing after STOP");
                return (start.content_types, frames, true);
            }
            frames.push(take(len, &mut bytes));
        }
        (start.content_types, frames, false)
    }

    #[test]
    fn control_frames_are_encoded_as_the_spec_says() {
        let mut ready = vec![0, 0, 0, 0, 0, 0, 0, 34, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 22];
        ready.extend_from_slice(CT);
        assert_eq!(control_frame(Control::Ready, Some(CONTENT_TYPE)), ready);
        let mut start = vec![0, 0, 0, 0, 0, 0, 0, 34, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 22];
        start.extend_from_slice(CT);
        assert_eq!(control_frame(Control::Start, Some(CONTENT_TYPE)), start);
        assert_eq!(control_frame(Control::Stop, None), [0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 3]);
        assert_eq!(control_frame(Control::Finish, None), [0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 5]);
        let mut accept = vec![0, 0, 0, 0, 0, 0, 0, 34, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 22];
        accept.extend_from_slice(CT);
        assert_eq!(control_frame(Control::Accept, Some(CONTENT_TYPE)), accept);
    }

    #[test]
    fn control_frames_are_parsed_and_malformed_ones_refused() {
        let accept = control_frame(Control::Accept, Some(CT));
        let parsed = parse_control(&accept[8..]).unwrap();
        assert_eq!(parsed, ControlFrame { kind: Control::Accept, content_types: vec![CT.to_vec()] });
        // Two content types (a reader may offer several), and none.
        let mut two = vec![0, 0, 0, 1];
        for t in [&b"a"[..], b"protobuf:dnstap.Dnstap"] {
            two.extend_from_slice(&1u32.to_be_bytes());
            two.extend_from_slice(&(t.len() as u32).to_be_bytes());
            two.extend_from_slice(t);
        }
        assert_eq!(parse_control(&two).unwrap().content_types.len(), 2);
        assert_eq!(parse_control(&[0, 0, 0, 5]).unwrap(), ControlFrame { kind: Control::Finish, content_types: vec![] });

        assert!(parse_control(&[0, 0, 0, 9]).is_err(), "unknown type");
        assert!(parse_control(&[0, 0, 0]).is_err(), "truncated type");
        assert!(parse_control(&[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0]).is_err(), "unknown field");
        assert!(parse_control(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 5, b'a']).is_err(), "field longer than the frame");
        let mut long = vec![0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 1];
        long.extend_from_slice(&[b'x'; 257]);
        assert!(parse_control(&long).is_err(), "content type over 256 bytes");
    }

    #[tokio::test]
    async fn oversized_and_data_frames_are_refused_where_control_is_due() {
        let mut big = vec![0, 0, 0, 0, 0, 0, 2, 1];
        big.extend_from_slice(&[0; 513]);
        assert!(read_control(&mut &big[..]).await.is_err());
        assert!(read_control(&mut &[0, 0, 0, 4, 1, 2, 3, 4][..]).await.is_err());
        let stop = control_frame(Control::Stop, None);
        assert_eq!(read_control(&mut &stop[..]).await.unwrap().kind, Control::Stop);
    }

    #[test]
    fn messages_map_to_auth_query_and_auth_response() {
        let v6 = SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7), 40000));
        let q = to_dnstap(&message(TapKind::Query, Transport::Tcp, v6, b"query"), b"", b"");
        assert_eq!(q.identity, None);
        assert_eq!(q.version, None);
        let m = q.message.unwrap();
        assert_eq!(m.r#type, dnstap::message::Type::AuthQuery as i32);
        assert_eq!(m.socket_family, Some(dnstap::SocketFamily::Inet6 as i32));
        assert_eq!(m.socket_protocol, Some(dnstap::SocketProtocol::Tcp as i32));
        assert_eq!(m.query_address.as_deref().map(<[u8]>::len), Some(16));
        assert_eq!(m.response_address, None, "a v4 server is not given in a v6 message");
        assert_eq!(m.query_message.as_deref(), Some(&b"query"[..]));

        // A v4 client on a dual-stack socket is written as v4.
        let mapped = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped(), 5353));
        let r = to_dnstap(&message(TapKind::Response, Transport::Udp, mapped, b"resp"), b"ns1", b"1.0").message.unwrap();
        assert_eq!(r.socket_family, Some(dnstap::SocketFamily::Inet as i32));
        assert_eq!(r.query_address.as_deref(), Some(&[192, 0, 2, 1][..]));
        assert_eq!(r.response_address.as_deref(), Some(&[127, 0, 0, 1][..]));
        assert_eq!(r.response_port, Some(53));
        assert_eq!((r.response_time_sec, r.response_time_nsec), (Some(1_700_000_000), Some(123_706_789)));
        assert_eq!(r.query_message, None);
        assert_eq!(r.response_message.as_deref(), Some(&b"resp"[..]));
    }

    #[tokio::test]
    async fn a_file_sink_holds_a_complete_stream_of_every_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tap.fstrm");
        std::fs::write(&path, b"left from before").unwrap();
        let (tx, rx) = mpsc::channel(16);
        let settings = Settings { sink: Sink::File(path.clone()), identity: "ns1".into(), version: "switchboard 0.1".into() };
        let counters = start(settings, rx).counters();
        let client = SocketAddr::from(([198, 51, 100, 7], 33333));
        tx.send(message(TapKind::Query, Transport::Udp, client, b"q1")).await.unwrap();
        tx.send(message(TapKind::Response, Transport::Udp, client, b"r1")).await.unwrap();
        // The last sender gone, the writer ends the stream by itself.
        drop(tx);
        let stop = control_frame(Control::Stop, None);
        let mut bytes = Vec::new();
        for _ in 0..500 {
            bytes = std::fs::read(&path).unwrap();
            if bytes.ends_with(&stop) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (content_types, frames, stopped) = decode_stream(&bytes);
        assert_eq!(content_types, vec![CT.to_vec()]);
        assert!(stopped, "STOP written when the queue closed");
        let decoded: Vec<dnstap::Dnstap> = frames.iter().map(|f| dnstap::Dnstap::decode(&f[..]).unwrap()).collect();
        assert_eq!(decoded.len(), 2);
        for d in &decoded {
            assert_eq!(d.r#type, dnstap::dnstap::Type::Message as i32);
            assert_eq!(d.identity.as_deref(), Some(&b"ns1"[..]));
            assert_eq!(d.version.as_deref(), Some(&b"switchboard 0.1"[..]));
            let m = d.message.as_ref().unwrap();
            assert_eq!(m.query_address.as_deref(), Some(&[198, 51, 100, 7][..]));
            assert_eq!(m.query_port, Some(33333));
            assert_eq!((m.query_time_sec, m.query_time_nsec), (Some(1_700_000_000), Some(123_456_789)));
            assert_eq!(m.socket_protocol, Some(dnstap::SocketProtocol::Udp as i32));
        }
        let [q, r] = [&decoded[0], &decoded[1]].map(|d| d.message.clone().unwrap());
        assert_eq!(q.r#type, dnstap::message::Type::AuthQuery as i32);
        assert_eq!(q.query_message.as_deref(), Some(&b"q1"[..]));
        assert_eq!(r.r#type, dnstap::message::Type::AuthResponse as i32);
        assert_eq!(r.response_message.as_deref(), Some(&b"r1"[..]));
        assert_eq!(counters.written.load(Ordering::Relaxed), 2);
        assert_eq!(counters.lost.load(Ordering::Relaxed), 0);
        assert_eq!(counters.connects.load(Ordering::Relaxed), 1);
    }

    /// Accept one connection on `listener` and shake hands as a Frame
    /// Streams reader: READY, answered with ACCEPT of `accept`, then START.
    async fn handshake(listener: &UnixListener, accept: &[u8]) -> io::Result<tokio::net::UnixStream> {
        let (mut s, _) = listener.accept().await?;
        let ready = read_control(&mut s).await?;
        assert_eq!(ready.kind, Control::Ready);
        assert_eq!(ready.content_types, vec![CT.to_vec()]);
        s.write_all(&control_frame(Control::Accept, Some(accept))).await?;
        let start = read_control(&mut s).await?;
        assert_eq!(start, ControlFrame { kind: Control::Start, content_types: vec![CT.to_vec()] });
        Ok(s)
    }

    /// A Frame Streams reader on `listener` for one connection: the
    /// handshake, then every data frame until STOP, answered with FINISH.
    async fn reader(listener: &UnixListener, accept: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let mut s = handshake(listener, accept).await?;
        let mut frames = Vec::new();
        loop {
            let len = s.read_u32().await?;
            if len == 0 {
                let len = s.read_u32().await?;
                let mut body = vec![0; len as usize];
                s.read_exact(&mut body).await?;
                assert_eq!(parse_control(&body)?.kind, Control::Stop);
                s.write_all(&control_frame(Control::Finish, None)).await?;
                return Ok(frames);
            }
            let mut frame = vec![0; len as usize];
            s.read_exact(&mut frame).await?;
            frames.push(frame);
        }
    }

    #[tokio::test]
    async fn a_socket_sink_shakes_hands_and_reconnects_after_the_reader_appears() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("tap.sock");
        let (tx, rx) = mpsc::channel(16);
        let settings = Settings { sink: Sink::Socket(sock.clone()), identity: String::new(), version: String::new() };
        let writer = start(settings, rx);
        let counters = writer.counters();
        let client = SocketAddr::from(([127, 0, 0, 1], 4444));

        // --- no reader yet: taken from the queue and counted lost
        tx.send(message(TapKind::Query, Transport::Udp, client, b"lost")).await.unwrap();
        until("counted lost", || counters.lost.load(Ordering::Relaxed) == 1).await;
        assert_eq!(counters.connects.load(Ordering::Relaxed), 0);

        // --- the reader appears: the writer connects within its pause
        let listener = UnixListener::bind(&sock).unwrap();
        let reading = tokio::spawn(async move { reader(&listener, CT).await });
        until("connected", || counters.connects.load(Ordering::Relaxed) == 1).await;
        tx.send(message(TapKind::Query, Transport::Tcp, client, b"kept")).await.unwrap();

        // --- finish while the sender lives: what was queued is written, then STOP
        writer.finish().await;
        assert!(tx.try_send(message(TapKind::Query, Transport::Tcp, client, b"late")).is_err(), "the queue is closed");
        let frames = reading.await.unwrap().unwrap();
        assert_eq!(frames.len(), 1);
        let m = dnstap::Dnstap::decode(&frames[0][..]).unwrap().message.unwrap();
        assert_eq!(m.query_message.as_deref(), Some(&b"kept"[..]));
        assert_eq!(counters.written.load(Ordering::Relaxed), 1);
        assert_eq!(counters.lost.load(Ordering::Relaxed), 1);
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: not within 5 s");
    }

    #[tokio::test]
    async fn a_reader_that_goes_away_costs_one_batch_and_is_reconnected_to() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("tap.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let (tx, rx) = mpsc::channel(16);
        let settings = Settings { sink: Sink::Socket(sock), identity: String::new(), version: String::new() };
        let writer = start(settings, rx);
        let counters = writer.counters();
        let client = SocketAddr::from(([127, 0, 0, 1], 4444));

        // --- the first reader shakes hands and hangs up
        drop(handshake(&listener, CT).await.unwrap());
        tx.send(message(TapKind::Query, Transport::Udp, client, b"into the void")).await.unwrap();
        until("the failed write counted lost", || counters.lost.load(Ordering::Relaxed) == 1).await;

        // --- the writer comes back to the next reader
        let reading = tokio::spawn(async move { reader(&listener, CT).await });
        until("reconnected", || counters.connects.load(Ordering::Relaxed) == 2).await;
        tx.send(message(TapKind::Query, Transport::Udp, client, b"kept")).await.unwrap();
        writer.finish().await;
        let frames = reading.await.unwrap().unwrap();
        assert_eq!(frames.len(), 1);
        let m = dnstap::Dnstap::decode(&frames[0][..]).unwrap().message.unwrap();
        assert_eq!(m.query_message.as_deref(), Some(&b"kept"[..]));
        assert_eq!((counters.written.load(Ordering::Relaxed), counters.lost.load(Ordering::Relaxed)), (1, 1));
    }

    #[tokio::test]
    async fn a_reader_of_another_content_type_is_not_written_to() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("tap.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let (tx, rx) = mpsc::channel(16);
        let settings = Settings { sink: Sink::Socket(sock), identity: String::new(), version: String::new() };
        let writer = start(settings, rx);
        let counters = writer.counters();
        let (mut s, _) = listener.accept().await.unwrap();
        assert_eq!(read_control(&mut s).await.unwrap().kind, Control::Ready);
        s.write_all(&control_frame(Control::Accept, Some(b"protobuf:other.Thing"))).await.unwrap();
        // No second reader: the writer's next attempt is refused at once.
        drop(listener);
        // The writer hangs up rather than send START.
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "nothing after ACCEPT: {rest:?}");
        tx.send(message(TapKind::Query, Transport::Udp, SocketAddr::from(([127, 0, 0, 1], 1)), b"q")).await.unwrap();
        drop(tx);
        writer.finish().await;
        assert_eq!(counters.connects.load(Ordering::Relaxed), 0);
        assert_eq!(counters.lost.load(Ordering::Relaxed), 1);
    }
}
