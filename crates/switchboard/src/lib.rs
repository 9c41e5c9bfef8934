//! The Switchboard server as a library: the node config (`config`), the
//! wiring of a node (`serve`), its HTTP health and metrics endpoint
//! (`http`) and the dnstap query log writer (`dnstap`). The only code that
//! reads config files, the environment and signals; `main.rs` only chooses
//! between this and the CLI.

pub mod certs;
pub mod config;
pub mod dnstap;
pub mod http;
mod listen;
pub mod metrics;
pub mod serve;

pub use config::Config;
pub use serve::run;
