//! How the CLI reaches a node: the channel, the caller's token on every call
//! (`authorization: Bearer`), gRPC errors as [`StatusError`](crate::error::StatusError), and the leader
//! redirect: a node that could neither lead nor reach the leader answers
//! `UNAVAILABLE` with the leader's API address in metadata, and the call is
//! made once more there, paced by the shared [`switchboard_proto::retry`]
//! policy.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use backon::Retryable;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::error::{CliError, Result, StatusError};

/// Time to connect and to complete one call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect and call timeout when `status` asks each member directly.
const MEMBER_STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// Calls made again at the leader a node names: once, so two nodes that
/// disagree about the leader cannot bounce a call between them.
const LEADER_REDIRECTS_MAX: usize = 1;

/// Adds the caller's token to every call as `authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Bearer {
    /// The header for `token`, if any; refused if it cannot be a header value.
    pub fn new(token: Option<&str>) -> Result<Bearer> {
        Ok(Bearer(match token {
            Some(t) => Some(format!("Bearer {}", t.trim()).parse().map_err(|_| CliError::input("--token: not a printable ASCII token"))?),
            None => None,
        }))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

/// A channel whose calls carry the token.
pub type Ch = InterceptedService<Channel, Bearer>;

/// A gRPC status as an error; `UNAVAILABLE` keeps the leader it names.
pub fn status(s: tonic::Status) -> CliError {
    let leader = if s.code() == tonic::Code::Unavailable {
        s.metadata().get(switchboard_proto::LEADER_API_METADATA).and_then(|v| v.to_str().ok()).map(str::to_string)
    } else {
        None
    };
    CliError::Status(StatusError { code: s.code(), message: s.message().to_string(), leader })
}

/// An error and its sources on one line.
pub fn source_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Where calls go and what they carry.
#[derive(Debug, Clone)]
pub struct Transport {
    server: String,
    bearer: Bearer,
    /// Bulk and streaming calls run as long as their work takes.
    bulk: bool,
}

/// Where the next attempt of a call goes.
#[derive(Debug, Clone)]
enum Target {
    Server,
    Leader(String),
}

impl Transport {
    pub fn new(server: &str, token: Option<&str>, bulk: bool) -> Result<Transport> {
        Ok(Transport { server: server.to_string(), bearer: Bearer::new(token)?, bulk })
    }

    fn endpoint(&self, url: String) -> std::result::Result<Endpoint, tonic::transport::Error> {
        let e = Endpoint::from_shared(url)?.connect_timeout(CONNECT_TIMEOUT);
        Ok(if self.bulk { e } else { e.timeout(CALL_TIMEOUT) })
    }

    async fn connect(&self, target: &Target) -> Result<Ch> {
        let channel = match target {
            Target::Server => {
                let server = &self.server;
                let endpoint = self.endpoint(server.clone()).map_err(|e| CliError::input(format!("--server {server:?}: {e}")))?;
                endpoint.connect().await.map_err(|e| CliError::Connect { target: server.clone(), reason: source_text(&e) })?
            }
            Target::Leader(leader) => {
                let endpoint =
                    self.endpoint(format!("http://{leader}")).map_err(|e| CliError::input(format!("leader address {leader:?}: {e}")))?;
                endpoint
                    .connect()
                    .await
                    .map_err(|e| CliError::Connect { target: format!("the leader at {leader}"), reason: source_text(&e) })?
            }
        };
        Ok(Ch::new(channel, self.bearer.clone()))
    }

    /// Make `call` on the server; if it answers that it could not reach the
    /// leader and names it, make it again at the leader (once).
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(Ch) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let target = Mutex::new(Target::Server);
        let (target, call) = (&target, &call);
        let attempt = || {
            let at = target.lock().map(|t| t.clone()).unwrap_or(Target::Server);
            async move { call(self.connect(&at).await?).await }
        };
        attempt
            .retry(switchboard_proto::retry::policy().with_max_times(LEADER_REDIRECTS_MAX))
            .when(|e| e.leader().is_some())
            .notify(|e, _| {
                if let (Some(leader), Ok(mut t)) = (e.leader(), target.lock()) {
                    *t = Target::Leader(leader);
                }
            })
            .await
    }

    /// A channel to another node by its API address (`host:port`), with
    /// the short timeouts `status` uses to ask every member.
    pub async fn member(&self, api: &str) -> std::result::Result<Ch, String> {
        let endpoint = Endpoint::from_shared(format!("http://{api}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(MEMBER_STATUS_TIMEOUT)
            .timeout(MEMBER_STATUS_TIMEOUT);
        let channel = endpoint.connect().await.map_err(|e| source_text(&e))?;
        Ok(Ch::new(channel, self.bearer.clone()))
    }
}

#[cfg(test)]
mod tests;
