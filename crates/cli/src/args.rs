//! The command line: global flags and every subcommand, `serve` included so
//! that `switchboard --help` lists it (the binary runs it; [`crate::run`]
//! runs all the others). Every enumerated option is a `ValueEnum`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use switchboard_proto::v1;

#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about = "Tenant-aware authoritative DNS on a Raft-replicated map")]
pub struct Cli {
    /// API address of the node to talk to.
    #[arg(long, global = true, env = "SWITCHBOARD_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// The API token to call with (see `token create`); not needed by a
    /// node whose API runs without auth.
    #[arg(long, global = true, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Writes: also wait until the write is applied on the node asked
    /// (`here`) or on every voter and learner (`everywhere`).
    #[arg(long, global = true, value_enum, default_value_t = Wait::Committed)]
    pub wait: Wait,
    /// Writes: how long --wait may take, in ms (default 5000, at most 60000).
    #[arg(long, global = true, default_value_t = 0)]
    pub wait_timeout_ms: u32,
    /// Writes: compare-and-set; apply only if the zone, cluster or tenant
    /// changed is at this revision now (0: it must not exist).
    #[arg(long, global = true)]
    pub expect_revision: Option<u64>,
    /// Writes: an id that makes a retry of this call apply once.
    #[arg(long, global = true)]
    pub request_id: Option<String>,
    #[command(subcommand)]
    pub command: Cmd,
}

/// How `serve` writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Cmd {
    /// Run a node (with no config: a single node on loopback, data in ./switchboard-data).
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Log lines for people (`human`) or one JSON object per line (`json`).
        #[arg(long, value_enum, default_value_t = LogFormat::Human)]
        log_format: LogFormat,
    },
    /// Zones: put FILE, list, get APEX, delete APEX, export APEX, import FILE.
    #[command(subcommand)]
    Zone(ZoneCmd),
    /// Clusters (scale units).
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Tenants and their placement.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// This node's role, leader and applied revision, and every member's
    /// role, applied revision, lag and staleness.
    Status,
    /// Cluster membership: list, add-learner, promote, remove.
    #[command(subcommand)]
    Member(MemberCmd),
    /// ACME DNS-01 challenges: set NAME VALUE, clear NAME [VALUE], list.
    #[command(subcommand)]
    Acme(AcmeCmd),
    /// API credentials (admin only): create, list, revoke.
    #[command(subcommand)]
    Token(TokenCmd),
    /// TSIG keys (admin only) for zone transfers and RFC 2136 UPDATE:
    /// create (the secret printed once), list, delete.
    #[command(subcommand)]
    Tsig(TsigCmd),
    /// DNSSEC keys of signed zones: status, ds (for the parent), rollover.
    #[command(subcommand)]
    Dnssec(DnssecCmd),
    /// Print every change after a revision as it commits, one JSON object
    /// per line (kind, key, revision, deleted, value); resumable with
    /// --after. Runs until interrupted, or until --count events.
    Watch {
        /// Changes after this revision (0: from the oldest the node holds).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Only these kinds (zone, cluster, tenant, acme), comma-separated.
        #[arg(long, value_enum, value_delimiter = ',')]
        kind: Vec<Kind>,
        /// Only tenants on this cluster or moved away from it, and the cluster itself.
        #[arg(long)]
        cluster: Option<String>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Many writes in one call, from a file of JSON lines, one command per
    /// line: {"create_tenant": {"id": "t1", "cluster": "mt1"}}, likewise
    /// delete_tenant, pin_tenant, unpin_tenant, move_tenant ({id, cluster}),
    /// add_alias, remove_alias ({tenant, alias}), set_challenge ({name,
    /// value, ttl, expires_in_s}), clear_challenge ({name, value}); each may
    /// carry "expected_revision". Rows commit together at one revision,
    /// each with its own result; fails if any was refused.
    Batch {
        file: PathBuf,
        /// All or nothing: one refused row and no row takes effect.
        #[arg(long)]
        atomic: bool,
    },
    /// Move unpinned tenants to where hashing places them today (after
    /// clusters were added, re-weighted or drained). Each move is
    /// compare-and-set: a tenant changed meanwhile is left alone.
    #[command(group(clap::ArgGroup::new("mode").required(true).args(["dry_run", "apply"])))]
    Rebalance {
        /// Only print what would move.
        #[arg(long)]
        dry_run: bool,
        /// Move them (needs --max).
        #[arg(long, requires = "max")]
        apply: bool,
        /// Move (or show) at most N.
        #[arg(long)]
        max: Option<u32>,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum MemberCmd {
    List,
    /// Add a non-voting member that replicates the log and serves DNS.
    AddLearner {
        id: u64,
        /// host:port of its peer (Raft) listener.
        #[arg(long)]
        peer: String,
        /// host:port of its API listener.
        #[arg(long)]
        api: String,
    },
    /// Make a learner a voter.
    Promote {
        id: u64,
    },
    /// Remove a voter or learner.
    Remove {
        id: u64,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenCmd {
    /// Create a token and print it once: only its hash is stored.
    Create {
        /// A label for people, such as ci-staging.
        name: String,
        /// admin, operator or tenant.
        #[arg(long, value_enum)]
        role: Role,
        /// Operators: only zones in these environments (comma-separated).
        #[arg(long, value_delimiter = ',')]
        environments: Vec<String>,
        /// Operators: only these zones (comma-separated apexes).
        #[arg(long, value_delimiter = ',')]
        zones: Vec<String>,
        /// Tenant tokens: the tenant it acts for.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Every credential: id, name, role and scope (never the token).
    List,
    /// Revoke a credential by id: every node refuses its token from then on.
    Revoke { id: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum TsigCmd {
    /// Create a key with a fresh random secret and print it once, as
    /// ALG:NAME:SECRET (what `nsupdate -y` and `kdig -y` take), or with
    /// --json as an object with name, algorithm and secret (base64).
    Create {
        /// The key's name, a domain name (acme-key or acme-key.).
        name: String,
        /// hmac-md5, hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384 or hmac-sha512.
        #[arg(long)]
        algorithm: String,
        /// Only zones in these environments (comma-separated).
        #[arg(long, value_delimiter = ',')]
        environments: Vec<String>,
        /// Only these zones (comma-separated apexes).
        #[arg(long, value_delimiter = ',')]
        zones: Vec<String>,
        /// Only this tenant's own _acme-challenge names (update only).
        #[arg(long)]
        tenant: Option<String>,
        /// What the key may do: transfer, update, or both (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        allow: Vec<String>,
    },
    /// Every key: name, algorithm, scope and uses (never the secret).
    List,
    /// Delete a key: every node refuses messages signed with it from then on.
    Delete { name: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum DnssecCmd {
    /// A signed zone's keys (role, tag, state and since when), what the
    /// leader does next and when, and its DS records.
    Status { apex: String },
    /// The DS records the parent zone should publish (the KSKs that CDS
    /// names), one per line in presentation form, or with --json.
    Ds { apex: String },
    /// Start a rollover now; it then runs by itself (see status).
    Rollover {
        apex: String,
        /// Roll the zone-signing key.
        #[arg(long, conflicts_with = "ksk", required_unless_present = "ksk")]
        zsk: bool,
        /// Roll the key-signing key (CDS and CDNSKEY name the new one).
        #[arg(long)]
        ksk: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum AcmeCmd {
    /// Add a TXT value at _acme-challenge.NAME (NAME may be *.name or the
    /// _acme-challenge name itself); setting it again refreshes it.
    Set {
        name: String,
        value: String,
        /// TTL of the TXT set (default 60).
        #[arg(long)]
        ttl: Option<u32>,
        /// Seconds until it disappears by itself (default 3600, at most 604800).
        #[arg(long)]
        expires_in: Option<u64>,
    },
    /// Remove one value, or all values of the name.
    Clear { name: String, value: Option<String> },
    /// Challenges, optionally only those within a zone or name.
    List {
        #[arg(long)]
        within: Option<String>,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum ZoneCmd {
    /// Create or replace a zone from a TOML zone file.
    Put {
        file: PathBuf,
    },
    List,
    Get {
        apex: String,
    },
    Delete {
        apex: String,
    },
    /// Write the whole zone, synthesised records included, as an RFC 1035
    /// master file that Knot DNS and NSD load unchanged.
    Export {
        apex: String,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Set a zone's SOA, name servers and static records from an RFC 1035
    /// master file; its rules and environment are kept. The zone is created
    /// when it does not exist (then --environment is required).
    Import {
        file: PathBuf,
        /// The zone's apex, when the file has no $ORIGIN before relative names.
        #[arg(long)]
        apex: Option<String>,
        /// Environment of a zone that does not exist yet.
        #[arg(long)]
        environment: Option<String>,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum ClusterCmd {
    /// Create or replace a cluster.
    Put(ClusterPut),
    List,
    Get {
        id: String,
    },
    /// Refused while the cluster holds tenants.
    Delete {
        id: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ClusterPut {
    pub id: String,
    /// Ingress IPv4 address (repeat for several).
    #[arg(long)]
    pub ipv4: Vec<String>,
    /// Ingress IPv6 address (repeat for several).
    #[arg(long)]
    pub ipv6: Vec<String>,
    /// Ingress host name (answered as CNAME when there are no addresses).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Receives tenants only by pin.
    #[arg(long)]
    pub dedicated: bool,
    /// Placement weight, 1..=10000 (default 100).
    #[arg(long)]
    pub weight: Option<u32>,
    /// active, draining or down (default active).
    #[arg(long, value_enum, ignore_case = true, default_value_t = ClusterState::Active)]
    pub state: ClusterState,
    /// Check every ingress address: tcp:PORT, http:PORT/PATH or https:PORT/PATH.
    #[arg(long, value_name = "PROBE")]
    pub check: Option<String>,
    /// How often each prober checks each address (default 10000).
    #[arg(long, requires = "check")]
    pub check_interval_ms: Option<u32>,
    /// A probe not done within this fails (default 2000, at most the interval).
    #[arg(long, requires = "check")]
    pub check_timeout_ms: Option<u32>,
    /// Consecutive failures for a prober to call an address down (default 3).
    #[arg(long, requires = "check")]
    pub check_failures: Option<u32>,
    /// Consecutive successes for a prober to call it healthy again (default 2).
    #[arg(long, requires = "check")]
    pub check_successes: Option<u32>,
    /// HTTP Host header of the probe (default: the address).
    #[arg(long, requires = "check")]
    pub check_host: Option<String>,
    /// HTTP status the probe expects (default: any 2xx or 3xx).
    #[arg(long, requires = "check")]
    pub check_status: Option<u32>,
    /// Answer this cluster's tenants with FAILOVER's addresses while every
    /// address of this one is down (or it is marked down).
    #[arg(long, value_name = "CLUSTER")]
    pub failover: Option<String>,
    /// With every address down and no answerable failover, answer no address
    /// (default: every address, failing open).
    #[arg(long)]
    pub fail_closed: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant; placed by hashing unless --cluster pins it. Prints its cluster.
    Create {
        id: String,
        #[arg(long)]
        cluster: Option<String>,
    },
    /// One tenant, from the node asked (it may lag), or with --consistent
    /// from the leader, seeing every write acknowledged before the call.
    Get {
        id: String,
        #[arg(long)]
        consistent: bool,
    },
    /// List tenants, paging through all of them.
    List {
        #[arg(long)]
        cluster: Option<String>,
        /// Stop after this many.
        #[arg(long)]
        limit: Option<u64>,
    },
    Delete {
        id: String,
    },
    /// Set the tenant's cluster and pin it there.
    Pin {
        id: String,
        cluster: String,
    },
    Unpin {
        id: String,
    },
    /// Move the tenant, recording a tombstone. With --ttl-first S, a staged
    /// move: every answer naming the tenant goes out with TTL S at once, the
    /// leader moves it once the longest old TTL has passed, and the TTL
    /// returns once another has ("tenant get" shows how far it is).
    Move {
        id: String,
        cluster: String,
        #[arg(long, value_name = "SECONDS")]
        ttl_first: Option<u32>,
    },
    /// Stop the tenant's staged move where it stands (moved or not); its
    /// answers take their own TTL again.
    CancelMove {
        id: String,
    },
    /// Aliases: add ID ALIAS, remove ID ALIAS.
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Bulk create from JSON lines ({"id": "123", "cluster": "mt1"}, cluster
    /// optional) or CSV (id[,cluster], optional header). Invalid records are
    /// reported by line, the rest created; exits non-zero if any was rejected.
    Import {
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum AliasCmd {
    Add { id: String, alias: String },
    Remove { id: String, alias: String },
}

/// `--wait`: how long a write waits before it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Wait {
    // No doc comments on the values: clap would print them as a list in
    // --help, which the flag's own doc already explains.
    Committed,
    Here,
    Everywhere,
}

impl From<Wait> for v1::write_options::Wait {
    fn from(w: Wait) -> Self {
        match w {
            Wait::Committed => v1::write_options::Wait::Committed,
            Wait::Here => v1::write_options::Wait::AppliedHere,
            Wait::Everywhere => v1::write_options::Wait::AppliedEverywhere,
        }
    }
}

/// `cluster put --state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterState {
    Active,
    Draining,
    Down,
}

impl From<ClusterState> for v1::ClusterState {
    fn from(s: ClusterState) -> Self {
        match s {
            ClusterState::Active => v1::ClusterState::Active,
            ClusterState::Draining => v1::ClusterState::Draining,
            ClusterState::Down => v1::ClusterState::Down,
        }
    }
}

/// `token create --role`, spelled as the API takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Admin,
    Operator,
    Tenant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Tenant => "tenant",
        }
    }
}

/// `watch --kind`, and the name an event prints for its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Zone,
    Cluster,
    Tenant,
    Acme,
    Move,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Zone, Kind::Cluster, Kind::Tenant, Kind::Acme, Kind::Move];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Zone => "zone",
            Kind::Cluster => "cluster",
            Kind::Tenant => "tenant",
            Kind::Acme => "acme",
            Kind::Move => "move",
        }
    }

    pub fn wire(self) -> v1::Kind {
        match self {
            Kind::Zone => v1::Kind::Zone,
            Kind::Cluster => v1::Kind::Cluster,
            Kind::Tenant => v1::Kind::Tenant,
            Kind::Acme => v1::Kind::Acme,
            Kind::Move => v1::Kind::Move,
        }
    }

    /// The kind of an event as the wire numbers it.
    pub fn from_wire(kind: i32) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.wire() as i32 == kind)
    }
}
