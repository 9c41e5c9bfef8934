//! The `switchboard` binary: `serve` runs a node (this package's library);
//! every other subcommand is a client of the gRPC API (`switchboard-cli`).

use std::process::ExitCode;

use clap::Parser;
use switchboard_cli::{Cli, Cmd};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve { config } => {
            init_logging();
            let config = match config {
                Some(path) => switchboard::Config::load(&path),
                None => Ok(switchboard::Config::default()),
            };
            // `error: ` and the causes on one line, exit 1, like every command.
            switchboard_cli::report(config.and_then(switchboard::run))
        }
        // Its own runtime, output and exit code; a closed stdout exits quietly.
        _ => switchboard_cli::main(cli),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hickory_server=warn,hickory_net=warn,openraft=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}
