//! Health of ingress addresses: what a cluster declares to be checked, and
//! the verdicts probers give. `ingress` decides from committed verdicts
//! which addresses a cluster's tenants are answered with, and when a
//! quorum of probers' verdicts makes a change.

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::name;

/// Bounds of a check's settings.
pub const INTERVAL_MS_MIN: u32 = 500;
pub const INTERVAL_MS_MAX: u32 = 600_000;
pub const INTERVAL_MS_DEFAULT: u32 = 10_000;
pub const TIMEOUT_MS_MIN: u32 = 100;
pub const TIMEOUT_MS_DEFAULT: u32 = 2_000;
/// Consecutive results needed to change a prober's verdict.
pub const STREAK_MAX: u32 = 10;
pub const FAILURES_DEFAULT: u32 = 3;
pub const SUCCESSES_DEFAULT: u32 = 2;
/// Longest chain of failover clusters followed.
pub const FAILOVER_HOPS: usize = 4;
const PATH_BYTES_MAX: usize = 1024;

/// How every ingress address of a cluster is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub probe: Probe,
    /// How often each prober checks each address.
    pub interval_ms: u32,
    /// A probe not done within this is a failure.
    pub timeout_ms: u32,
    /// Consecutive failures that make a prober call a healthy address down.
    pub failures: u32,
    /// Consecutive successes that make a prober call a down address healthy.
    pub successes: u32,
}

/// One probe of an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Probe {
    /// A TCP connection to the port is accepted.
    Tcp { port: u16 },
    /// An HTTP/1.1 GET of `path` answers with `status`, or with any 2xx or
    /// 3xx status when `status` is `None`. Over TLS when `tls` (the
    /// certificate is not verified: the address is probed, not a name, as
    /// Route 53's and most load balancers' HTTPS checks do).
    Http { port: u16, tls: bool, path: String, host: Option<String>, status: Option<u16> },
}

impl Probe {
    /// `tcp`, `http` or `https`: how the CLI, the API and `Display` name it.
    pub fn scheme(&self) -> &'static str {
        match self {
            Probe::Tcp { .. } => "tcp",
            Probe::Http { tls: false, .. } => "http",
            Probe::Http { tls: true, .. } => "https",
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Probe::Tcp { port } | Probe::Http { port, .. } => *port,
        }
    }

    /// `tcp:PORT`, `http:PORT/PATH` or `https:PORT/PATH`, as the CLI takes it.
    pub fn parse(field: &str, s: &str) -> Result<Probe, ValidationError> {
        let bad = || ValidationError::new(field, format!("{s:?} is not tcp:PORT, http:PORT/PATH or https:PORT/PATH"));
        let (scheme, rest) = s.split_once(':').ok_or_else(bad)?;
        let (port, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        match scheme {
            "tcp" if path.is_empty() => Ok(Probe::Tcp { port }),
            "http" | "https" => Ok(Probe::Http {
                port,
                tls: scheme == "https",
                path: if path.is_empty() { "/".into() } else { path.into() },
                host: None,
                status: None,
            }),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Tcp { port } => write!(f, "tcp:{port}"),
            Probe::Http { port, path, .. } => write!(f, "{}:{port}{path}", self.scheme()),
        }
    }
}

impl Check {
    /// A check with the default interval, timeout and thresholds.
    pub fn new(probe: Probe) -> Check {
        Check {
            probe,
            interval_ms: INTERVAL_MS_DEFAULT,
            timeout_ms: TIMEOUT_MS_DEFAULT,
            failures: FAILURES_DEFAULT,
            successes: SUCCESSES_DEFAULT,
        }
    }

    /// Validate a check as a client sent it; fields are named `cluster.check.*`.
    pub fn validate(mut self) -> Result<Check, ValidationError> {
        if !(INTERVAL_MS_MIN..=INTERVAL_MS_MAX).contains(&self.interval_ms) {
            return Err(ValidationError::new(
                "cluster.check.interval_ms",
                format!("{} is outside {INTERVAL_MS_MIN}..={INTERVAL_MS_MAX}", self.interval_ms),
            ));
        }
        if self.timeout_ms < TIMEOUT_MS_MIN || self.timeout_ms > self.interval_ms {
            return Err(ValidationError::new(
                "cluster.check.timeout_ms",
                format!("{} is outside {TIMEOUT_MS_MIN}..={} (the interval)", self.timeout_ms, self.interval_ms),
            ));
        }
        for (field, n) in [("cluster.check.failures", self.failures), ("cluster.check.successes", self.successes)] {
            if !(1..=STREAK_MAX).contains(&n) {
                return Err(ValidationError::new(field, format!("{n} is outside 1..={STREAK_MAX}")));
            }
        }
        if self.probe.port() == 0 {
            return Err(ValidationError::new("cluster.check.port", "must be 1..=65535"));
        }
        if let Probe::Http { path, host, status, .. } = &mut self.probe {
            if !path.starts_with('/') || path.len() > PATH_BYTES_MAX || path.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err(ValidationError::new(
                    "cluster.check.path",
                    format!("{path:?} is not an absolute path of printable ASCII up to {PATH_BYTES_MAX} bytes"),
                ));
            }
            if let Some(h) = host {
                let relative = h.strip_suffix('.').unwrap_or(h);
                *h = name::absolute("cluster.check.host", &format!("{relative}."))?.trim_end_matches('.').to_string();
            }
            if let Some(s) = status {
                if !(100..=599).contains(s) {
                    return Err(ValidationError::new("cluster.check.status", format!("{s} is not an HTTP status")));
                }
            }
        }
        Ok(self)
    }
}

/// What a cluster's tenants are answered with when every one of its
/// addresses is down and no failover cluster has a healthy one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AllDown {
    /// Every address, as if none were checked: a check that fails
    /// everywhere at once is more often the checker's fault.
    #[default]
    FailOpen,
    /// No address: the names answer as those of a cluster without
    /// addresses (its host name's CNAME, or nothing).
    FailClosed,
}

/// How a cluster stands, from its committed verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not checked, or no address is down.
    Healthy,
    /// Some addresses are down; the others are answered.
    Degraded,
    /// Every address is down.
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }
}

/// A prober's verdict on one address of one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Up,
    Down,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse_and_print() {
        for s in ["tcp:443", "http:8080/healthz", "https:443/"] {
            assert_eq!(Probe::parse("check", s).unwrap().to_string(), s);
        }
        assert_eq!(Probe::parse("check", "http:80").unwrap().to_string(), "http:80/");
        for bad in ["tcp", "udp:53", "tcp:80/x", "tcp:99999", "http:/x"] {
            assert_eq!(Probe::parse("check", bad).unwrap_err().field, "check", "{bad}");
        }
    }
}
