//! The node's Prometheus registry: the DNS front end's, consensus's and
//! the state's collectors, gRPC API calls by method and code (counted by
//! `ApiCallsLayer` on the API server), dnstap's writer and build info.
//! Each collector reads its own counters at scrape time.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::listen::ListenerCounters;

/// API calls by method (the gRPC path) and status code.
pub type ApiCalls = Family<[(&'static str, String); 2], Counter>;

/// What `/metrics` reads.
pub(crate) struct Sources {
    pub(crate) node: Arc<switchboard_consensus::Node>,
    pub(crate) dns: Arc<switchboard_dns::DnsStats>,
    pub(crate) api_calls: ApiCalls,
    /// The gRPC listeners' counters, by listener name.
    pub(crate) listeners: Vec<(&'static str, Arc<ListenerCounters>)>,
    pub(crate) dnstap: Option<Arc<crate::dnstap::Counters>>,
    /// Held weakly: the health holds the registry.
    pub(crate) health: std::sync::Weak<crate::http::Health>,
}

/// Everything `/metrics` shows.
pub(crate) fn registry(sources: Sources) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(BuildInfo));
    registry.register_collector(Box::new(Ready(sources.health)));
    registry.register_collector(Box::new(switchboard_consensus::NodeMetrics(sources.node)));
    registry.register_collector(Box::new(sources.dns));
    registry.register("switchboard_api_requests", "gRPC API calls answered, by method and status code.", sources.api_calls);
    registry.register_collector(Box::new(Listeners(sources.listeners)));
    if let Some(counters) = sources.dnstap {
        registry.register_collector(Box::new(Dnstap(counters)));
    }
    registry
}

/// The API's and peers' connection limits at work.
#[derive(Debug)]
struct Listeners(Vec<(&'static str, Arc<ListenerCounters>)>);

/// A field of `ListenerCounters`.
type Field = fn(&ListenerCounters) -> &std::sync::atomic::AtomicU64;

impl Collector for Listeners {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let series: [(&str, &str, MetricType, Field); 4] = [
            ("switchboard_grpc_connections_open", "gRPC connections open, by listener.", MetricType::Gauge, |c| &c.open),
            (
                "switchboard_grpc_connections_refused",
                "gRPC connections closed at accept: the listener's connection limit was reached.",
                MetricType::Counter,
                |c| &c.refused,
            ),
            (
                "switchboard_grpc_accept_backoffs",
                "Times a gRPC listener's accept waited for want of file descriptors.",
                MetricType::Counter,
                |c| &c.accept_backoffs,
            ),
            (
                "switchboard_grpc_connections_idle_closed",
                "gRPC connections closed for having no call open past the idle timeout.",
                MetricType::Counter,
                |c| &c.idle_closed,
            ),
        ];
        for (name, help, kind, field) in series {
            let mut family = e.encode_descriptor(name, help, None, kind)?;
            for (listener, counters) in &self.0 {
                let labels = [("listener", *listener)];
                let v = field(counters).load(Ordering::Relaxed);
                if matches!(kind, MetricType::Gauge) {
                    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(family.encode_family(&labels)?)?;
                } else {
                    ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct BuildInfo;

impl Collector for BuildInfo {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = e.encode_descriptor("switchboard_build_info", "The version of this build; always 1.", None, MetricType::Gauge)?;
        let labels = [("version", env!("CARGO_PKG_VERSION"))];
        ConstGauge::new(1i64).encode(family.encode_family(&labels)?)
    }
}

/// Whether `/readyz` says ready (the registry is held by the health it
/// reads, hence the weak reference).
#[derive(Debug)]
struct Ready(std::sync::Weak<crate::http::Health>);

impl Collector for Ready {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ready = self.0.upgrade().is_some_and(|h| h.ready().is_ok());
        ConstGauge::new(i64::from(ready)).encode(e.encode_descriptor(
            "switchboard_ready",
            "1 when /readyz reports ready.",
            None,
            MetricType::Gauge,
        )?)
    }
}

#[derive(Debug)]
struct Dnstap(Arc<crate::dnstap::Counters>);

impl Collector for Dnstap {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = e.encode_descriptor(
            "switchboard_dnstap_messages",
            "dnstap messages taken from the queue: written, or lost (no reader connected, write error).",
            None,
            MetricType::Counter,
        )?;
        for (outcome, v) in [("written", &self.0.written), ("lost", &self.0.lost)] {
            let labels = [("outcome", outcome)];
            ConstCounter::new(v.load(Ordering::Relaxed)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Counts every API call by method and final `grpc-status`: from the
/// response headers for a trailers-only answer (every error), else from
/// the trailers when the body ends; a body dropped before either is a call
/// the client cancelled.
#[derive(Clone)]
pub struct ApiCallsLayer(pub ApiCalls);

impl<S> tower::Layer<S> for ApiCallsLayer {
    type Service = ApiCallsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiCallsService { inner, calls: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct ApiCallsService<S> {
    inner: S,
    calls: ApiCalls,
}

impl<S, B, R> tower::Service<http::Request<B>> for ApiCallsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Recorded<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_string();
        let calls = self.calls.clone();
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            let mut call = Some(Call { calls, method });
            if let Some(code) = status(response.headers()) {
                if let Some(c) = call.take() {
                    c.record(code);
                }
            }
            Ok(response.map(|body| Recorded { body, call }))
        })
    }
}

/// The name of a `grpc-status` value (`OK`, `NOT_FOUND`, ...).
fn status(headers: &http::HeaderMap) -> Option<&'static str> {
    let v = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(match tonic::Code::from_i32(v) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    })
}

/// A call not yet counted.
struct Call {
    calls: ApiCalls,
    method: String,
}

impl Call {
    /// Count the call. A path no service serves (UNIMPLEMENTED) is counted
    /// as method `unknown`: anyone can send any path, and each would
    /// otherwise be a series of its own, kept for ever.
    fn record(self, code: &'static str) {
        let method = if code == "UNIMPLEMENTED" { "unknown".to_string() } else { self.method };
        self.calls.get_or_create(&[("method", method), ("code", code.to_string())]).inc();
    }
}

/// A response body that counts its call when its trailers pass, or when
/// it is dropped without them.
pub struct Recorded<B> {
    body: B,
    call: Option<Call>,
}

impl<B> Drop for Recorded<B> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.record("CANCELLED");
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Recorded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(code) = frame.trailers_ref().and_then(status) {
                if let Some(call) = self.call.take() {
                    call.record(code);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
