//! The `switchboard` binary: `serve` runs a node (this package's library);
//! every other subcommand is a client of the gRPC API (`switchboard-cli`).

use std::process::ExitCode;

use clap::Parser;
use switchboard_cli::{Cli, Cmd, LogFormat};

/// mimalloc, not glibc's malloc: after a bulk import of a million tenants
/// (each a copy-on-write of the state's maps) glibc held 330 MiB free but
/// fragmented across two arenas, which `malloc_trim` could not return, so
/// the node kept three times its restarted size. mimalloc gives freed
/// pages back to the system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve { config, log_format } => {
            init_logging(log_format);
            let config = match config {
                Some(path) => switchboard::Config::load(&path),
                None => Ok(switchboard::Config::default()),
            };
            // `error: ` and the causes on one line, exit 1, like every command.
            let result = config.and_then(switchboard::run);
            switchboard_cli::report(
                result.map_err(|e| e.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ").replace('\n', " ")),
            )
        }
        // Its own runtime, output and exit code; a closed stdout exits quietly.
        _ => switchboard_cli::main(cli),
    }
}

/// Log to stderr, filtered by RUST_LOG (default: info, quieter libraries).
/// No line is written per query at any default level.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,hickory_server=warn,hickory_net=warn,hickory_proto=error,openraft=warn")
    });
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Human => fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => fmt.json().flatten_event(true).with_current_span(false).init(),
    }
}
