//! The certificate DNS over TLS and QUIC serve: read from `[tls]`'s files
//! at start, and again whenever their contents change (checked every
//! `TLS_RELOAD_EVERY`), so a renewed certificate is served without a
//! restart. A pair that does not load (a key written before its
//! certificate, say) is logged and counted and the old pair kept; the next
//! change is tried again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use switchboard_dns::Certs;

use crate::config::TLS_RELOAD_EVERY;

/// The pair in `cert` and `key`; errors name the files.
pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<Certs>> {
    let (chain, secret) = read(cert, key)?;
    let certs = Certs::from_pem(&chain, &secret)
        .with_context(|| format!("tls.cert_file {} with tls.key_file {}", cert.display(), key.display()))?;
    Ok(Arc::new(certs))
}

fn read(cert: &Path, key: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let chain = std::fs::read(cert).with_context(|| format!("tls.cert_file: reading {}", cert.display()))?;
    let secret = std::fs::read(key).with_context(|| format!("tls.key_file: reading {}", key.display()))?;
    Ok((chain, secret))
}

/// Serve the files' pair whenever it changes, until the task is dropped.
pub async fn watch(certs: Arc<Certs>, cert: PathBuf, key: PathBuf) {
    let mut served = read(&cert, &key).ok();
    let mut every = tokio::time::interval(TLS_RELOAD_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let now = match read(&cert, &key) {
            Ok(now) => now,
            // Between a rename and the next write, say: look again later.
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "TLS certificate files unreadable; the served pair stays");
                continue;
            }
        };
        if served.as_ref() == Some(&now) {
            continue;
        }
        match certs.replace(&now.0, &now.1) {
            Ok(()) => tracing::info!(
                cert_file = %cert.display(),
                pin = %certs.pin().map(|p| p.to_string()).unwrap_or_default(),
                "TLS certificate reloaded"
            ),
            Err(e) => tracing::error!(cert_file = %cert.display(), error = %e, "TLS certificate not reloaded; the old one is served"),
        }
        served = Some(now);
    }
}
