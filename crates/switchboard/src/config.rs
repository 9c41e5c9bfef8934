//! The node config file (examples in `config/`): one TOML file per node, every field with a
//! default, unknown fields refused, cross-field rules checked by `validate`.
//! Errors name the file, and the line and key where TOML knows them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_node_id")]
    pub node_id: u64,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Where the node runs (a DNS label, e.g. "eu-west"): carried in its
    /// health reports. Empty when not set.
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub cluster: Cluster,
    #[serde(default)]
    pub raft: Raft,
    #[serde(default)]
    pub api: Api,
    #[serde(default)]
    pub dns: Dns,
    #[serde(default)]
    pub storage: Storage,
    /// The certificate of DNS over TLS and QUIC (`[tls]`).
    #[serde(default)]
    pub tls: Tls,
    /// The file this config was read from, for error messages.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// The DNS listener's limits. Unset: `switchboard_dns::TcpLimits::default()`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// TCP connections open at once, in all and from one source address;
    /// past either, a new connection is closed at once. The total is
    /// lowered at start to fit the open-files limit.
    #[serde(default)]
    pub tcp_connections_max: Option<usize>,
    #[serde(default)]
    pub tcp_connections_per_source_max: Option<usize>,
    /// A TCP connection that sends nothing for this long is closed.
    #[serde(default)]
    pub tcp_idle_timeout_ms: Option<u64>,
    /// UDP worker threads, each with a socket of its own (default: one
    /// per core).
    #[serde(default)]
    pub udp_workers: Option<usize>,
    /// Answer every UDP query on the full path, never the fast one (for
    /// comparing the two; the answers are the same, only slower).
    #[serde(default)]
    pub full_path_only: bool,
    /// RRSIGs of signed zones kept for reuse (default 100,000, a few
    /// hundred bytes each): a signature in the cache is not made again until its
    /// refresh time. 0 turns the cache off (every answer signed afresh).
    #[serde(default)]
    pub signatures_cached: Option<usize>,
    /// Most seconds a TSIG-signed message's time may differ from this
    /// node's clock, whatever fudge the client asks for (RFC 8945 §10
    /// recommends 300). A captured signed message verifies for twice this
    /// long, and a replay within that span is answered from the request-id
    /// window, so it may be at most half that window (1,800). Unset:
    /// `switchboard_dns::TSIG_FUDGE_MAX_DEFAULT` (300).
    #[serde(default)]
    pub tsig_fudge_max_secs: Option<u16>,
    /// RFC 2136 UPDATEs one TSIG key may commit to one zone through this
    /// node, a minute, and at once (a burst); past them REFUSED and
    /// counted. 0 a minute: no bound. Unset:
    /// `switchboard_dns::UPDATES_PER_MINUTE_DEFAULT` (600) and
    /// `UPDATES_BURST_DEFAULT` (60).
    #[serde(default)]
    pub updates_per_minute: Option<u32>,
    #[serde(default)]
    pub updates_burst: Option<u32>,
    /// Response rate limiting (`[dns.rrl]`); off unless responses_per_second > 0.
    #[serde(default)]
    pub rrl: Rrl,
    /// DNS cookies (`[dns.cookies]`).
    #[serde(default)]
    pub cookies: Cookies,
    /// The dnstap query log (`[dns.dnstap]`); absent: off.
    #[serde(default)]
    pub dnstap: Option<Dnstap>,
    /// The address NOTIFY leaves from (any port). Absent: `listen.dns`'s
    /// address, or the kernel's choice when DNS listens on 0.0.0.0 or ::.
    /// Secondaries accept NOTIFY only from the primaries they list.
    #[serde(default)]
    pub notify_source: Option<std::net::IpAddr>,
}

/// `[dns.rrl]`: Knot/NSD-style response rate limiting over UDP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rrl {
    /// Responses per second per client prefix and answer class; 0: off.
    #[serde(default)]
    pub responses_per_second: u32,
    /// Every slip-th limited response goes out truncated (TC=1); 0: drop all.
    #[serde(default = "default_rrl_slip")]
    pub slip: u32,
    /// Seconds of excess a prefix's debt may reach (and must repay).
    #[serde(default = "default_rrl_window_secs")]
    pub window_secs: u32,
    #[serde(default = "default_rrl_ipv4_prefix_len")]
    pub ipv4_prefix_len: u8,
    #[serde(default = "default_rrl_ipv6_prefix_len")]
    pub ipv6_prefix_len: u8,
}

fn default_rrl_slip() -> u32 {
    switchboard_dns::RrlSettings::default().slip
}
fn default_rrl_window_secs() -> u32 {
    switchboard_dns::RrlSettings::default().window_secs
}
fn default_rrl_ipv4_prefix_len() -> u8 {
    switchboard_dns::RrlSettings::default().ipv4_prefix_len
}
fn default_rrl_ipv6_prefix_len() -> u8 {
    switchboard_dns::RrlSettings::default().ipv6_prefix_len
}

impl Default for Rrl {
    fn default() -> Self {
        let d = switchboard_dns::RrlSettings::default();
        Rrl {
            responses_per_second: d.responses_per_second,
            slip: d.slip,
            window_secs: d.window_secs,
            ipv4_prefix_len: d.ipv4_prefix_len,
            ipv6_prefix_len: d.ipv6_prefix_len,
        }
    }
}

impl Rrl {
    pub fn settings(&self) -> switchboard_dns::RrlSettings {
        switchboard_dns::RrlSettings {
            responses_per_second: self.responses_per_second,
            slip: self.slip,
            window_secs: self.window_secs,
            ipv4_prefix_len: self.ipv4_prefix_len,
            ipv6_prefix_len: self.ipv6_prefix_len,
        }
    }
}

/// `[dns.cookies]`: DNS cookies (RFC 7873, RFC 9018 server cookies).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cookies {
    /// Answer COOKIE options (default: true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The server secret, 32 hex digits, the same on every node behind one
    /// anycast address so each accepts the others' cookies; or the
    /// environment variable SWITCHBOARD_COOKIE_SECRET. Unset: a random
    /// secret per process (cookies then do not survive a restart).
    #[serde(default)]
    pub secret: Option<String>,
}

fn default_true() -> bool {
    true
}

impl Default for Cookies {
    fn default() -> Self {
        Cookies { enabled: true, secret: None }
    }
}

/// `[dns.dnstap]`: sampled queries and responses as dnstap over Frame Streams.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dnstap {
    /// A Unix socket a reader (fstrm_capture, a collector) listens on...
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// ...or a file, written from the start.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// One query in `sample` is logged, with its response.
    #[serde(default = "default_dnstap_sample")]
    pub sample: u64,
    /// Messages waiting for the writer; past it they are dropped and counted.
    #[serde(default = "default_dnstap_queue")]
    pub queue: usize,
    /// The identity field of each message (default: the host name).
    #[serde(default)]
    pub identity: Option<String>,
}

fn default_dnstap_sample() -> u64 {
    1
}
fn default_dnstap_queue() -> usize {
    4096
}

impl Dns {
    pub fn tcp_limits(&self) -> switchboard_dns::TcpLimits {
        let d = switchboard_dns::TcpLimits::default();
        switchboard_dns::TcpLimits {
            connections_max: self.tcp_connections_max.unwrap_or(d.connections_max),
            connections_per_source_max: self.tcp_connections_per_source_max.unwrap_or(d.connections_per_source_max),
            idle_timeout: self.tcp_idle_timeout_ms.map_or(d.idle_timeout, std::time::Duration::from_millis),
        }
    }
}

/// The data dir's disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Below this much free space (MiB) on the data dir's file system,
    /// writes are refused (RESOURCE_EXHAUSTED), `/readyz` says "disk full"
    /// and the node does not lead; all of it ends by itself when space
    /// returns. What is left is for the writes already in flight.
    #[serde(default = "default_free_space_min_mb")]
    pub free_space_min_mb: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Storage { free_space_min_mb: default_free_space_min_mb() }
    }
}

fn default_free_space_min_mb() -> u64 {
    switchboard_consensus::RaftSettings::default().free_space_min_bytes / (1024 * 1024)
}

/// How the public API authenticates callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every call needs a token: the bootstrap admin token or a stored credential.
    Token,
    /// No authentication: anyone who reaches the API may do anything.
    None,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// Unset: `token` when a bootstrap token is configured, `none` when the
    /// API listens on loopback only; anything else refuses to start.
    #[serde(default)]
    pub auth: Option<AuthMode>,
    /// A file holding the bootstrap admin token (at least 16 characters;
    /// surrounding whitespace ignored): admin on this node before any
    /// credential exists, and what a learner joins with.
    /// `SWITCHBOARD_BOOTSTRAP_TOKEN` overrides it.
    #[serde(default)]
    pub bootstrap_token_file: Option<PathBuf>,
    /// Watch streams this node serves at once, and per stored credential;
    /// and how long a stream may wait for its reader before it is ended.
    /// Unset: `switchboard_api::WatchLimits::default()`.
    #[serde(default)]
    pub watch_streams_max: Option<usize>,
    #[serde(default)]
    pub watch_streams_per_credential_max: Option<usize>,
    #[serde(default)]
    pub watch_send_timeout_ms: Option<u64>,
    /// API connections open at once (past it a new one is closed at once),
    /// and concurrent calls (HTTP/2 streams) on one connection.
    #[serde(default)]
    pub connections_max: Option<usize>,
    #[serde(default)]
    pub streams_per_connection_max: Option<u32>,
    /// A connection with no call open for this long is closed.
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
}

/// The API listener's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiConnectionLimits {
    pub connections_max: usize,
    pub streams_per_connection_max: u32,
    pub idle_timeout: std::time::Duration,
}

impl Default for ApiConnectionLimits {
    fn default() -> Self {
        ApiConnectionLimits { connections_max: 256, streams_per_connection_max: 256, idle_timeout: std::time::Duration::from_secs(300) }
    }
}

/// The shortest wait for a watch reader that makes sense (a reader across an ocean).
const WATCH_SEND_TIMEOUT_MIN_MS: u64 = 100;

impl Api {
    pub fn connection_limits(&self) -> ApiConnectionLimits {
        let d = ApiConnectionLimits::default();
        ApiConnectionLimits {
            connections_max: self.connections_max.unwrap_or(d.connections_max),
            streams_per_connection_max: self.streams_per_connection_max.unwrap_or(d.streams_per_connection_max),
            idle_timeout: self.idle_timeout_ms.map_or(d.idle_timeout, std::time::Duration::from_millis),
        }
    }

    pub fn watch_limits(&self) -> switchboard_api::WatchLimits {
        let d = switchboard_api::WatchLimits::default();
        switchboard_api::WatchLimits {
            streams_max: self.watch_streams_max.unwrap_or(d.streams_max),
            streams_per_credential_max: self.watch_streams_per_credential_max.unwrap_or(d.streams_per_credential_max),
            send_timeout: self.watch_send_timeout_ms.map_or(d.send_timeout, std::time::Duration::from_millis),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    #[serde(default = "default_dns")]
    pub dns: SocketAddr,
    #[serde(default = "default_api")]
    pub api: SocketAddr,
    #[serde(default = "default_peer")]
    pub peer: SocketAddr,
    #[serde(default = "default_http")]
    pub http: SocketAddr,
    /// DNS over TLS (RFC 7858) and zone transfers over it (RFC 9103): off
    /// unless set (853 is the standard port). Needs `[tls]`.
    #[serde(default)]
    pub dot: Option<SocketAddr>,
    /// DNS over QUIC (RFC 9250), UDP: off unless set (853 is the standard
    /// port). Needs `[tls]`.
    #[serde(default)]
    pub doq: Option<SocketAddr>,
}

/// `[tls]`: the certificate DNS over TLS and QUIC serve, and their limits
/// (each listener has its own). The files are read at start and checked
/// every `TLS_RELOAD_EVERY`: a changed pair is served from the next
/// handshake on, a broken one is logged and counted and the old pair kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificates, the server's first, then its chain.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Its PEM private key (PKCS#8, SEC1 or PKCS#1).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Connections open at once, in all and from one source address; the
    /// total is lowered at start to fit the open-files limit.
    #[serde(default)]
    pub connections_max: Option<usize>,
    #[serde(default)]
    pub connections_per_source_max: Option<usize>,
    /// A connection that sends nothing for this long is closed.
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
    /// A handshake not done within this long is given up.
    #[serde(default)]
    pub handshake_timeout_ms: Option<u64>,
    /// New handshakes one source address may start a second.
    #[serde(default)]
    pub handshakes_per_source_per_second: Option<u32>,
}

impl Tls {
    pub fn limits(&self) -> switchboard_dns::TlsLimits {
        let d = switchboard_dns::TlsLimits::default();
        let ms = std::time::Duration::from_millis;
        switchboard_dns::TlsLimits {
            connections_max: self.connections_max.unwrap_or(d.connections_max),
            connections_per_source_max: self.connections_per_source_max.unwrap_or(d.connections_per_source_max),
            idle_timeout: self.idle_timeout_ms.map_or(d.idle_timeout, ms),
            handshake_timeout: self.handshake_timeout_ms.map_or(d.handshake_timeout, ms),
            handshakes_per_source_per_second: self.handshakes_per_source_per_second.unwrap_or(d.handshakes_per_source_per_second),
        }
    }

    /// The certificate and key files, when both are set.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        self.cert_file.as_deref().zip(self.key_file.as_deref())
    }
}

/// How often `[tls]`'s files are checked for a new certificate.
pub const TLS_RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Votes; listed in `cluster.voters`.
    Voter,
    /// Replicates and serves DNS without voting; joins through `cluster.join`.
    Learner,
    /// Not a Raft member: follows the change stream of `cluster.upstreams`
    /// (voters, learners or other edges) and serves DNS from it.
    Edge,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Name shared by every node of one cluster; peers of another are refused.
    #[serde(default = "default_cluster_name")]
    pub name: String,
    #[serde(default = "default_role")]
    pub role: Role,
    /// Past this long without hearing from a leader, /readyz reports not ready.
    #[serde(default = "default_max_stale_ms")]
    pub max_stale_ms: u64,
    /// The initial voter set; empty means this node alone.
    #[serde(default)]
    pub voters: Vec<Voter>,
    /// For learners: API URLs of voters to join through (any reachable one forwards to the leader).
    #[serde(default)]
    pub join: Vec<String>,
    /// For edges: peer URLs of the nodes to follow, in order of preference
    /// (the next is followed when one is lost).
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// A file holding the cluster secret (at least 16 bytes; surrounding
    /// whitespace ignored) that signs every peer message; nodes refuse peer
    /// messages not signed with it. `SWITCHBOARD_CLUSTER_SECRET` overrides it.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Voter {
    pub id: u64,
    pub peer: String,
    pub api: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raft {
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    #[serde(default = "default_election_timeout_min_ms")]
    pub election_timeout_min_ms: u64,
    #[serde(default = "default_election_timeout_max_ms")]
    pub election_timeout_max_ms: u64,
    #[serde(default = "default_snapshot_every_entries")]
    pub snapshot_every_entries: u64,
    #[serde(default = "default_keep_entries_after_snapshot")]
    pub keep_entries_after_snapshot: u64,
    #[serde(default = "default_install_snapshot_timeout_ms")]
    pub install_snapshot_timeout_ms: u64,
}

fn default_node_id() -> u64 {
    1
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./switchboard-data")
}
fn default_dns() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1053))
}
fn default_api() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50051))
}
fn default_peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50052))
}
fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9153))
}
fn default_cluster_name() -> String {
    "switchboard".into()
}
fn default_role() -> Role {
    Role::Voter
}
fn default_max_stale_ms() -> u64 {
    30_000
}
fn default_heartbeat_ms() -> u64 {
    switchboard_consensus::RaftSettings::default().heartbeat_ms
}
fn default_election_timeout_min_ms() -> u64 {
    switchboard_consensus::RaftSettings::default().election_timeout_min_ms
}
fn default_election_timeout_max_ms() -> u64 {
    switchboard_consensus::RaftSettings::default().election_timeout_max_ms
}
fn default_snapshot_every_entries() -> u64 {
    switchboard_consensus::RaftSettings::default().snapshot_every_entries
}
fn default_keep_entries_after_snapshot() -> u64 {
    switchboard_consensus::RaftSettings::default().keep_entries_after_snapshot
}
fn default_install_snapshot_timeout_ms() -> u64 {
    switchboard_consensus::RaftSettings::default().install_snapshot_timeout_ms
}

impl Default for Listen {
    fn default() -> Self {
        Listen { dns: default_dns(), api: default_api(), peer: default_peer(), http: default_http(), dot: None, doq: None }
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            name: default_cluster_name(),
            role: default_role(),
            max_stale_ms: default_max_stale_ms(),
            voters: Vec::new(),
            join: Vec::new(),
            upstreams: Vec::new(),
            secret_file: None,
        }
    }
}

impl Default for Raft {
    fn default() -> Self {
        Raft {
            heartbeat_ms: default_heartbeat_ms(),
            election_timeout_min_ms: default_election_timeout_min_ms(),
            election_timeout_max_ms: default_election_timeout_max_ms(),
            snapshot_every_entries: default_snapshot_every_entries(),
            keep_entries_after_snapshot: default_keep_entries_after_snapshot(),
            install_snapshot_timeout_ms: default_install_snapshot_timeout_ms(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: default_node_id(),
            data_dir: default_data_dir(),
            region: String::new(),
            listen: Listen::default(),
            cluster: Cluster::default(),
            raft: Raft::default(),
            api: Api::default(),
            dns: Dns::default(),
            storage: Storage::default(),
            tls: Tls::default(),
            file: None,
        }
    }
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        let mut config = Config::parse(&text).with_context(|| format!("config file {}", path.display()))?;
        config.file = Some(path.to_path_buf());
        Ok(config)
    }

    /// Where the config came from, for errors: the file, or the embedded default.
    pub fn origin(&self) -> String {
        self.file.as_ref().map_or_else(|| "the embedded default config".to_string(), |f| format!("config file {}", f.display()))
    }

    /// How the API authenticates, and the bootstrap admin token (from
    /// `SWITCHBOARD_BOOTSTRAP_TOKEN` or `api.bootstrap_token_file`). An API
    /// reachable beyond loopback without auth is refused unless
    /// `api.auth = "none"` says so.
    pub fn api_auth(&self) -> anyhow::Result<(switchboard_api::Auth, Option<String>)> {
        let bootstrap = self.bootstrap_token().with_context(|| self.origin())?;
        let auth = match (self.api.auth, &bootstrap) {
            (Some(AuthMode::None), _) => switchboard_api::Auth::none(),
            (Some(AuthMode::Token), b) | (None, b @ Some(_)) => switchboard_api::Auth::tokens(b.as_deref()),
            (None, None) if self.listen.api.ip().is_loopback() => switchboard_api::Auth::none(),
            (None, None) => bail!(
                "{}: listen.api: {} is reachable beyond loopback and the API has no auth: set api.bootstrap_token_file \
                 (or SWITCHBOARD_BOOTSTRAP_TOKEN), or say api.auth = \"none\" to serve it without auth",
                self.origin(),
                self.listen.api
            ),
        };
        // Forwarded writes arrive on the peer port: with tokens on the API
        // but an open peer port, anyone reaching it could write unchecked.
        if auth.enforced() && !self.listen.peer.ip().is_loopback() && self.cluster_secret()?.is_none() {
            bail!(
                "{}: listen.peer: {} is reachable beyond loopback without a cluster secret, so anyone reaching it could \
                 write past the API's tokens: set cluster.secret_file (or SWITCHBOARD_CLUSTER_SECRET)",
                self.origin(),
                self.listen.peer
            );
        }
        Ok((auth, bootstrap))
    }

    fn bootstrap_token(&self) -> anyhow::Result<Option<String>> {
        let file = self.api.bootstrap_token_file.as_deref();
        let Some((token, from)) = secret("SWITCHBOARD_BOOTSTRAP_TOKEN", "api.bootstrap_token_file", file)? else { return Ok(None) };
        if token.len() < switchboard_api::BOOTSTRAP_TOKEN_LEN_MIN || !token.iter().all(u8::is_ascii_graphic) {
            bail!("{from}: the token must be at least {} printable characters without spaces", switchboard_api::BOOTSTRAP_TOKEN_LEN_MIN);
        }
        // Printable ASCII, checked just above.
        Ok(Some(token.iter().map(|&b| char::from(b)).collect()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        config.validate()?;
        Ok(config)
    }

    /// Cross-field rules; each error names its key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.node_id == 0 {
            bail!("node_id: must be at least 1");
        }
        if !self.region.is_empty() {
            switchboard_domain::name::label("region", &self.region)?;
        }
        if self.cluster.name.is_empty() || self.cluster.name.len() > 64 {
            bail!("cluster.name: must be 1 to 64 characters");
        }
        let tcp = self.dns.tcp_limits();
        if tcp.connections_max == 0 || tcp.connections_per_source_max == 0 || tcp.idle_timeout.is_zero() {
            bail!("dns.tcp_connections_max, dns.tcp_connections_per_source_max and dns.tcp_idle_timeout_ms: must be at least 1");
        }
        let rrl = &self.dns.rrl;
        if rrl.responses_per_second > switchboard_dns::RrlSettings::RATE_MAX {
            bail!("dns.rrl.responses_per_second: must be at most {}", switchboard_dns::RrlSettings::RATE_MAX);
        }
        if rrl.window_secs == 0 || rrl.window_secs > switchboard_dns::RrlSettings::WINDOW_MAX {
            bail!("dns.rrl.window_secs: must be 1 to {}", switchboard_dns::RrlSettings::WINDOW_MAX);
        }
        if rrl.ipv4_prefix_len > 32 {
            bail!("dns.rrl.ipv4_prefix_len: must be 0 to 32");
        }
        if rrl.ipv6_prefix_len > 128 {
            bail!("dns.rrl.ipv6_prefix_len: must be 0 to 128");
        }
        if self.dns.tsig_fudge_max_secs.is_some_and(|f| f == 0 || f > switchboard_dns::TSIG_FUDGE_MAX_LIMIT) {
            bail!("dns.tsig_fudge_max_secs: must be 1 to {}", switchboard_dns::TSIG_FUDGE_MAX_LIMIT);
        }
        if self.dns.udp_workers == Some(0) {
            bail!("dns.udp_workers: must be at least 1");
        }
        if self.dns.signatures_cached.is_some_and(|n| n > 100_000_000) {
            bail!("dns.signatures_cached: at most 100000000");
        }
        if let Some(tap) = &self.dns.dnstap {
            if tap.socket.is_some() == tap.file.is_some() {
                bail!("dns.dnstap: set exactly one of socket and file");
            }
            if tap.sample == 0 || tap.queue == 0 {
                bail!("dns.dnstap.sample and dns.dnstap.queue: must be at least 1");
            }
        }
        if self.dns.updates_burst == Some(0) {
            bail!("dns.updates_burst: must be at least 1 (to refuse every UPDATE, give no key `update`)");
        }
        if let Some(ip) = self.dns.notify_source {
            if ip.is_unspecified() || ip.is_multicast() || matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast()) {
                bail!("dns.notify_source: {ip} cannot be a source address: name one of this host's addresses");
            }
        }
        self.cookie_secret()?;
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            bail!("tls.cert_file and tls.key_file: set both, or neither");
        }
        for (key, addr) in [("listen.dot", self.listen.dot), ("listen.doq", self.listen.doq)] {
            if addr.is_some() && self.tls.files().is_none() {
                bail!("{key}: DNS over TLS and QUIC need a certificate: set tls.cert_file and tls.key_file");
            }
        }
        let tls = self.tls.limits();
        if tls.connections_max == 0 || tls.connections_per_source_max == 0 || tls.handshakes_per_source_per_second == 0 {
            bail!("tls.connections_max, tls.connections_per_source_max and tls.handshakes_per_source_per_second: must be at least 1");
        }
        if tls.idle_timeout < std::time::Duration::from_millis(100) || tls.handshake_timeout < std::time::Duration::from_millis(100) {
            bail!("tls.idle_timeout_ms and tls.handshake_timeout_ms: must be at least 100");
        }
        let api = self.api.connection_limits();
        if api.connections_max == 0 || api.streams_per_connection_max == 0 {
            bail!("api.connections_max and api.streams_per_connection_max: must be at least 1");
        }
        if api.idle_timeout < std::time::Duration::from_secs(1) {
            bail!("api.idle_timeout_ms: must be at least 1000");
        }
        let watch = self.api.watch_limits();
        if watch.streams_max == 0 || watch.streams_per_credential_max == 0 {
            bail!("api.watch_streams_max and api.watch_streams_per_credential_max: must be at least 1");
        }
        if watch.send_timeout < std::time::Duration::from_millis(WATCH_SEND_TIMEOUT_MIN_MS) {
            bail!("api.watch_send_timeout_ms: must be at least {WATCH_SEND_TIMEOUT_MIN_MS}");
        }
        let mut ids = BTreeSet::new();
        for (i, v) in self.cluster.voters.iter().enumerate() {
            if v.id == 0 {
                bail!("cluster.voters[{i}].id: must be at least 1");
            }
            if !ids.insert(v.id) {
                bail!("cluster.voters[{i}].id: node {} is listed twice", v.id);
            }
            for (key, addr) in [("peer", &v.peer), ("api", &v.api)] {
                if addr.parse::<SocketAddr>().is_err() && !addr.contains(':') {
                    bail!("cluster.voters[{i}].{key}: {addr:?} is not host:port");
                }
            }
        }
        if self.cluster.role != Role::Edge && !self.cluster.upstreams.is_empty() {
            bail!("cluster.upstreams: only an edge (cluster.role = \"edge\") follows upstreams");
        }
        match self.cluster.role {
            Role::Voter => {
                if !self.cluster.voters.is_empty() && !ids.contains(&self.node_id) {
                    bail!("cluster.voters: node_id {} is a voter but not among the listed voters", self.node_id);
                }
                if !self.cluster.join.is_empty() {
                    bail!("cluster.join: only learners join; voters are listed in cluster.voters");
                }
            }
            Role::Edge => {
                if ids.contains(&self.node_id) {
                    bail!("cluster.voters: node_id {} is an edge but listed as a voter", self.node_id);
                }
                if !self.cluster.join.is_empty() {
                    bail!("cluster.join: only learners join; an edge follows cluster.upstreams");
                }
                if self.cluster.upstreams.is_empty() {
                    bail!("cluster.upstreams: an edge needs at least one peer URL to follow");
                }
                for (i, url) in self.cluster.upstreams.iter().enumerate() {
                    let host_port = url.strip_prefix("http://").unwrap_or_default();
                    if host_port.is_empty() || !host_port.contains(':') || host_port.contains('/') {
                        bail!("cluster.upstreams[{i}]: {url:?} is not a peer URL (http://host:port)");
                    }
                }
            }
            Role::Learner => {
                if ids.contains(&self.node_id) {
                    bail!("cluster.voters: node_id {} is a learner but listed as a voter", self.node_id);
                }
                if self.cluster.join.is_empty() {
                    bail!("cluster.join: a learner needs at least one voter API URL to join through");
                }
                for (i, url) in self.cluster.join.iter().enumerate() {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        bail!("cluster.join[{i}]: {url:?} is not an http:// URL");
                    }
                }
                for (key, addr) in [("listen.peer", self.listen.peer), ("listen.api", self.listen.api)] {
                    if addr.ip().is_unspecified() || addr.port() == 0 {
                        bail!("{key}: a learner announces this address to the cluster; {addr} cannot be reached");
                    }
                }
            }
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0 || r.election_timeout_min_ms <= r.heartbeat_ms {
            bail!("raft.election_timeout_min_ms: must exceed raft.heartbeat_ms ({} <= {})", r.election_timeout_min_ms, r.heartbeat_ms);
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            bail!("raft.election_timeout_max_ms: must exceed raft.election_timeout_min_ms");
        }
        if r.snapshot_every_entries == 0 {
            bail!("raft.snapshot_every_entries: must be at least 1");
        }
        if self.cluster.max_stale_ms == 0 {
            bail!("cluster.max_stale_ms: must be at least 1");
        }
        let l = &self.listen;
        // (key, address, uses TCP, uses UDP): DNS uses both, DoQ UDP, the
        // others TCP; two that share an address and a protocol clash.
        let mut addrs = vec![("listen.dns", l.dns, true, true), ("listen.api", l.api, true, false)];
        addrs.extend([("listen.peer", l.peer, true, false), ("listen.http", l.http, true, false)]);
        addrs.extend(l.dot.map(|a| ("listen.dot", a, true, false)));
        addrs.extend(l.doq.map(|a| ("listen.doq", a, false, true)));
        for (i, (ka, a, a_tcp, a_udp)) in addrs.iter().enumerate() {
            for (kb, b, b_tcp, b_udp) in &addrs[i + 1..] {
                if a == b && a.port() != 0 && ((*a_tcp && *b_tcp) || (*a_udp && *b_udp)) {
                    bail!("{kb}: {b} is already used by {ka}");
                }
            }
        }
        Ok(())
    }

    /// The DNS cookie secret: `None` when cookies are off, random when no
    /// secret is configured.
    pub fn cookie_secret(&self) -> anyhow::Result<Option<switchboard_dns::CookieSecret>> {
        if !self.dns.cookies.enabled {
            return Ok(None);
        }
        let configured = match std::env::var("SWITCHBOARD_COOKIE_SECRET") {
            Ok(v) => Some((v, "the environment variable SWITCHBOARD_COOKIE_SECRET".to_string())),
            Err(_) => self.dns.cookies.secret.clone().map(|v| (v, format!("{}: dns.cookies.secret", self.origin()))),
        };
        let Some((hex, whence)) = configured else {
            return Ok(Some(switchboard_dns::CookieSecret::random().map_err(|e| anyhow::anyhow!("a random DNS cookie secret: {e}"))?));
        };
        let hex = hex.trim();
        let bytes: Option<Vec<u8>> = (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| (0..16).map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect())
            .flatten();
        match bytes.and_then(|b| <[u8; 16]>::try_from(b).ok()) {
            Some(b) => Ok(Some(switchboard_dns::CookieSecret::new(b))),
            None => bail!("{whence}: must be 32 hex digits (16 bytes)"),
        }
    }

    /// The cluster secret, from `SWITCHBOARD_CLUSTER_SECRET` or
    /// `cluster.secret_file`; `None` when neither is set.
    pub fn cluster_secret(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let file = self.cluster.secret_file.as_deref();
        let Some((secret, from)) = secret("SWITCHBOARD_CLUSTER_SECRET", "cluster.secret_file", file)? else { return Ok(None) };
        if secret.len() < switchboard_consensus::CLUSTER_SECRET_LEN_MIN {
            bail!("{from}: the secret is {} bytes, at least {} are needed", secret.len(), switchboard_consensus::CLUSTER_SECRET_LEN_MIN);
        }
        Ok(Some(secret))
    }

    pub fn raft_settings(&self, peer_auth: switchboard_consensus::PeerAuth) -> switchboard_consensus::RaftSettings {
        switchboard_consensus::RaftSettings {
            peer_auth,
            cluster_name: self.cluster.name.clone(),
            heartbeat_ms: self.raft.heartbeat_ms,
            election_timeout_min_ms: self.raft.election_timeout_min_ms,
            election_timeout_max_ms: self.raft.election_timeout_max_ms,
            snapshot_every_entries: self.raft.snapshot_every_entries,
            keep_entries_after_snapshot: self.raft.keep_entries_after_snapshot,
            install_snapshot_timeout_ms: self.raft.install_snapshot_timeout_ms,
            free_space_min_bytes: self.storage.free_space_min_mb.saturating_mul(1024 * 1024),
            region: self.region.to_ascii_lowercase(),
        }
    }
}

/// A secret from the environment variable `env`, else from the file the
/// config key `key` names; surrounding whitespace ignored. With where it
/// came from, for errors; `None` when neither is set.
fn secret(env: &str, key: &str, file: Option<&Path>) -> anyhow::Result<Option<(Vec<u8>, String)>> {
    match std::env::var(env) {
        Ok(s) if !s.trim().is_empty() => Ok(Some((s.trim().as_bytes().to_vec(), env.to_string()))),
        _ => match file {
            None => Ok(None),
            Some(path) => {
                let bytes = std::fs::read(path).with_context(|| format!("{key}: reading {}", path.display()))?;
                Ok(Some((bytes.trim_ascii().to_vec(), format!("{key} {}", path.display()))))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_config_parses() -> anyhow::Result<()> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let mut seen = 0;
        for dir in [root.clone(), root.join("three-node")] {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "toml") {
                    Config::load(&path)?;
                    seen += 1;
                }
            }
        }
        for entry in std::fs::read_dir(root.join("zones"))? {
            let path = entry?.path();
            switchboard_cli::zonefile::load(&path)?;
            seen += 1;
        }
        assert!(seen >= 6, "config/ should hold working examples");
        Ok(())
    }

    #[test]
    fn empty_file_is_the_embedded_default() -> anyhow::Result<()> {
        let c = Config::parse("")?;
        assert_eq!(c.listen.dns, default_dns());
        assert_eq!(c.data_dir, default_data_dir());
        Ok(())
    }

    #[test]
    fn unknown_fields_are_errors_naming_line_and_key() {
        let e = Config::parse("node_id = 1\n[listen]\ndnz = \"127.0.0.1:53\"\n").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("dnz"), "{e}");
    }

    #[test]
    fn cross_field_errors_name_the_key() {
        let e = Config::parse("node_id = 2\n[[cluster.voters]]\nid = 1\npeer = \"127.0.0.1:1\"\napi = \"127.0.0.1:2\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster.voters"), "{e}");
        let e = Config::parse("[listen]\napi = \"127.0.0.1:9153\"\n").unwrap_err().to_string();
        assert!(e.contains("listen.http"), "{e}");
    }

    #[test]
    fn an_edge_needs_peer_urls_to_follow_and_only_an_edge_has_them() -> anyhow::Result<()> {
        let c = Config::parse("node_id = 9\n[cluster]\nrole = \"edge\"\nupstreams = [\"http://10.0.1.4:50052\"]\n")?;
        assert_eq!(c.cluster.role, Role::Edge);
        assert_eq!(c.cluster.upstreams, vec!["http://10.0.1.4:50052".to_string()]);
        for (toml, key) in [
            ("[cluster]\nrole = \"edge\"\n", "cluster.upstreams: an edge needs"),
            ("[cluster]\nrole = \"edge\"\nupstreams = [\"10.0.1.4:50052\"]\n", "cluster.upstreams[0]"),
            ("[cluster]\nrole = \"edge\"\nupstreams = [\"http://10.0.1.4\"]\n", "cluster.upstreams[0]"),
            ("[cluster]\nrole = \"edge\"\nupstreams = [\"http://a:1\"]\njoin = [\"http://a:2\"]\n", "cluster.join"),
            ("[cluster]\nupstreams = [\"http://10.0.1.4:50052\"]\n", "cluster.upstreams: only an edge"),
        ] {
            let e = Config::parse(&format!("node_id = 9\n{toml}")).unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
        Ok(())
    }

    #[test]
    fn a_region_is_a_dns_label() -> anyhow::Result<()> {
        assert_eq!(Config::parse("region = \"eu-west\"\n")?.raft_settings(Default::default()).region, "eu-west");
        let e = Config::parse("region = \"eu west\"\n").unwrap_err().to_string();
        assert!(e.contains("region"), "{e}");
        Ok(())
    }

    #[test]
    fn update_bounds_parse_and_a_burst_of_none_is_refused() -> anyhow::Result<()> {
        let c = Config::parse("[dns]\nupdates_per_minute = 0\nupdates_burst = 5\n")?;
        assert_eq!((c.dns.updates_per_minute, c.dns.updates_burst), (Some(0), Some(5)));
        assert_eq!(Config::parse("")?.dns.updates_per_minute, None);
        let e = Config::parse("[dns]\nupdates_burst = 0\n").unwrap_err().to_string();
        assert!(e.contains("dns.updates_burst"), "{e}");
        Ok(())
    }

    #[test]
    fn notify_source_is_an_address_of_this_host() -> anyhow::Result<()> {
        assert_eq!(Config::parse("")?.dns.notify_source, None);
        let c = Config::parse("[dns]\nnotify_source = \"192.0.2.53\"\n")?;
        assert_eq!(c.dns.notify_source, Some("192.0.2.53".parse()?));
        let e = Config::parse("[dns]\nnotify_source = \"0.0.0.0\"\n").unwrap_err().to_string();
        assert!(e.contains("dns.notify_source"), "{e}");
        let e = Config::parse("[dns]\nnotify_source = \"ns1.example.\"\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("notify_source"), "{e}");
        Ok(())
    }

    #[test]
    fn the_tsig_fudge_cap_defaults_to_300_and_stays_within_the_dedup_window() -> anyhow::Result<()> {
        assert_eq!(Config::parse("")?.dns.tsig_fudge_max_secs, None);
        assert_eq!(Config::parse("[dns]\ntsig_fudge_max_secs = 60\n")?.dns.tsig_fudge_max_secs, Some(60));
        for bad in [0, u32::from(switchboard_dns::TSIG_FUDGE_MAX_LIMIT) + 1] {
            let e = Config::parse(&format!("[dns]\ntsig_fudge_max_secs = {bad}\n")).unwrap_err().to_string();
            assert!(e.contains("dns.tsig_fudge_max_secs"), "{bad}: {e}");
        }
        Ok(())
    }

    #[test]
    fn an_api_beyond_loopback_needs_auth_or_says_none() -> anyhow::Result<()> {
        let open = Config::parse("[listen]\napi = \"0.0.0.0:50051\"\n")?;
        let e = open.api_auth().unwrap_err().to_string();
        assert!(e.contains("listen.api") && e.contains("api.auth = \"none\""), "{e}");
        let said = Config::parse("[listen]\napi = \"0.0.0.0:50051\"\n[api]\nauth = \"none\"\n")?;
        assert!(!said.api_auth()?.0.enforced());
        // Loopback without a bootstrap token: open, as the embedded default is.
        assert!(!Config::default().api_auth()?.0.enforced());
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("token");
        std::fs::write(&file, "short\n")?;
        let text = format!("[api]\nbootstrap_token_file = {:?}\n", file.display().to_string());
        let e = format!("{:#}", Config::parse(&text)?.api_auth().unwrap_err());
        assert!(e.contains("api.bootstrap_token_file") && e.contains("at least 16"), "{e}");
        std::fs::write(&file, "0123456789abcdef0123\n")?;
        let (auth, token) = Config::parse(&text)?.api_auth()?;
        assert!(auth.enforced());
        assert_eq!(token.as_deref(), Some("0123456789abcdef0123"));
        // Tokens on the API, and a peer port open to the network without a secret: refused.
        let open_peer = format!("{text}[listen]\npeer = \"0.0.0.0:50052\"\n");
        let e = format!("{:#}", Config::parse(&open_peer)?.api_auth().unwrap_err());
        assert!(e.contains("listen.peer") && e.contains("cluster.secret_file"), "{e}");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "a-cluster-secret-of-enough-bytes\n")?;
        let with_secret = format!("{open_peer}[cluster]\nsecret_file = {:?}\n", secret.display().to_string());
        assert!(Config::parse(&with_secret)?.api_auth()?.0.enforced());
        Ok(())
    }
}
