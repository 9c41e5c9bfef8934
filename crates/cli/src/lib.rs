//! The `switchboard` command line: its flags and subcommands ([`Cli`]) and
//! every subcommand but `serve`, each a client of a node's gRPC API ([`run`]).
//! The binary parses [`Cli`], runs `serve` itself and hands the rest here.
//!
//! Layout: `transport` reaches a node (token, leader redirect), one module
//! per command group makes the calls, `view` is what they print and
//! `output` prints it, as `comfy-table` tables or, with `--json`, as JSON.

mod acme;
mod args;
mod batch;
mod cluster;
mod dnssec;
pub mod error;
mod import;
mod node;
mod output;
mod tenant;
mod token;
mod transport;
mod tsig;
mod view;
mod watch;
mod zone;
pub mod zonefile;

use std::io::Write;
use std::process::ExitCode;

use switchboard_proto::v1;

pub use args::{
    AcmeCmd, AliasCmd, Cli, ClusterCmd, ClusterPut, ClusterState, Cmd, DnssecCmd, Kind, LogFormat, MemberCmd, Role, TenantCmd, TokenCmd,
    TsigCmd, Wait, ZoneCmd,
};

pub use error::{CliError, Result, StatusError};
use output::Output;
use transport::{Ch, Transport};

/// What every command may need besides its arguments.
struct Ctx {
    transport: Transport,
    /// The write options of the global flags, sent with every write.
    options: v1::WriteOptions,
}

/// Run a client command (anything but `serve`) against `--server`, print
/// its result, and fail if the call failed or the result says so.
pub async fn run(cli: Cli) -> Result<()> {
    // Bulk and streaming calls run as long as their work takes.
    let bulk = matches!(
        cli.command,
        Cmd::Tenant(TenantCmd::Import { .. })
            | Cmd::Batch { .. }
            | Cmd::Rebalance { .. }
            | Cmd::Zone(ZoneCmd::Export { .. })
            | Cmd::Watch { .. }
    );
    let ctx = Ctx {
        transport: Transport::new(&cli.server, cli.token.as_deref(), bulk)?,
        options: v1::WriteOptions {
            wait: v1::write_options::Wait::from(cli.wait) as i32,
            wait_timeout_ms: cli.wait_timeout_ms,
            expected_revision: cli.expect_revision,
            request_id: cli.request_id.unwrap_or_default(),
        },
    };
    let command = cli.command;
    let out = ctx.transport.call(|channel| execute(channel, &ctx, &command)).await?;
    let mut stdout = std::io::stdout().lock();
    out.print(cli.json, &mut stdout).and_then(|()| stdout.flush()).map_err(CliError::io("writing to standard output"))?;
    match out.failure {
        Some(why) => Err(CliError::Failed(why)),
        None => Ok(()),
    }
}

async fn execute(channel: Ch, ctx: &Ctx, command: &Cmd) -> Result<Output> {
    match command {
        Cmd::Serve { .. } => Err(CliError::input("serve is not a client command")),
        Cmd::Zone(c) => zone::run(channel, ctx, c).await,
        Cmd::Cluster(c) => cluster::run(channel, ctx, c).await,
        Cmd::Tenant(c) => tenant::run(channel, ctx, c).await,
        Cmd::Status => node::status(channel, ctx).await,
        Cmd::Member(c) => node::member(channel, c).await,
        Cmd::Acme(c) => acme::run(channel, ctx, c).await,
        Cmd::Token(c) => token::run(channel, ctx, c).await,
        Cmd::Tsig(c) => tsig::run(channel, ctx, c).await,
        Cmd::Dnssec(c) => dnssec::run(channel, ctx, c).await,
        Cmd::Watch { after, kind, cluster, count } => watch::run(channel, *after, kind, cluster.clone(), *count).await,
        Cmd::Rebalance { dry_run, apply: _, max } => tenant::rebalance(channel, *dry_run, max.unwrap_or(0)).await,
        Cmd::Batch { file, atomic } => batch::run(channel, ctx, file, *atomic).await,
    }
}

/// [`run`] on a runtime of its own (one thread: a CLI call needs no more),
/// then [`report`]: what the binary's `main` calls for a client command.
pub fn main(cli: Cli) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::io("starting the client runtime"))
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        result => report(result.map_err(|e| one_line(&e))),
    }
}

/// The exit code of a command, printing its error (already one line) on
/// standard error as `error: ` and the line (scripts match `error: <gRPC
/// code>: `). A reader that went away (`switchboard zone list | head -1`)
/// is no error: the caller passes success.
pub fn report(result: std::result::Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => {
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}

/// An error and its sources on one line, outermost first.
pub fn one_line(e: &dyn std::error::Error) -> String {
    transport::source_text(e).replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn clap_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_keep_their_spellings_and_defaults() {
        let cli = Cli::try_parse_from(["switchboard", "status"]).unwrap();
        assert_eq!((cli.server.as_str(), cli.wait, cli.wait_timeout_ms, cli.json), ("http://127.0.0.1:50051", Wait::Committed, 0, false));
        let cli = Cli::try_parse_from(["switchboard", "tenant", "create", "t1", "--wait", "everywhere", "--json"]).unwrap();
        assert_eq!((cli.wait, cli.json), (Wait::Everywhere, true));
        assert!(Cli::try_parse_from(["switchboard", "--wait", "Here", "status"]).is_err(), "--wait is case-sensitive, as before");
        let cli = Cli::try_parse_from(["switchboard", "cluster", "put", "mt1", "--state", "DRAINING"]).unwrap();
        assert!(matches!(cli.command, Cmd::Cluster(ClusterCmd::Put(ClusterPut { state: ClusterState::Draining, .. }))));
        let cli = Cli::try_parse_from(["switchboard", "watch", "--kind", "tenant,acme"]).unwrap();
        assert!(matches!(cli.command, Cmd::Watch { kind, .. } if kind == [Kind::Tenant, Kind::Acme]));
        assert!(Cli::try_parse_from(["switchboard", "token", "create", "x", "--role", "root"]).is_err());
        assert!(Cli::try_parse_from(["switchboard", "rebalance", "--apply"]).is_err(), "--apply needs --max");
        assert!(matches!(
            Cli::try_parse_from(["switchboard", "serve"]).unwrap().command,
            Cmd::Serve { config: None, log_format: LogFormat::Human }
        ));
    }

    #[test]
    fn a_closed_pipe_is_not_an_error_and_errors_are_one_line() {
        let e = CliError::io("writing to standard output")(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(e.is_broken_pipe());
        assert!(!CliError::input("--token: not a printable ASCII token").is_broken_pipe());
        let e = CliError::io("reading zone.toml")(std::io::Error::new(std::io::ErrorKind::NotFound, "no such\nfile"));
        assert_eq!(one_line(&e), "reading zone.toml: no such file");
    }
}
