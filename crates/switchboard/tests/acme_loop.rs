//! The whole ACME DNS-01 loop with clients nobody here wrote (issue 12):
//! Pebble (Let's Encrypt's test CA) validates against a Switchboard node,
//! and lego (`--dns rfc2136`) obtains a wildcard and apex certificate for a
//! tenant through a key scoped to that tenant, by RFC 2136 UPDATE signed
//! with TSIG; the challenge is gone afterwards.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use common::{eventually, free_port, query, Killed};
use hickory_proto::rr::RecordType;

const APEX: &str = "apps.example.test.";

/// A self-signed certificate for Pebble's own listener, which lego is told to trust.
fn pebble_cert(dir: &Path) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!("openssl: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Pebble on free ports, validating DNS-01 against `dns`; its directory
/// URL and the certificate its listener presents.
struct Pebble {
    _child: Killed,
    url: String,
    cert: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Pebble {
    fn start(dir: &Path, dns: std::net::SocketAddr) -> anyhow::Result<Pebble> {
        std::fs::create_dir_all(dir)?;
        pebble_cert(dir)?;
        let (acme_port, management_port) = (free_port(), free_port());
        let config = dir.join("pebble.json");
        std::fs::write(
            &config,
            serde_json::json!({"pebble": {
                "listenAddress": format!("127.0.0.1:{acme_port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": dir.join("cert.pem"),
                "privateKey": dir.join("key.pem"),
                "httpPort": free_port(),
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }})
            .to_string(),
        )?;
        let log = dir.join("pebble.log");
        let child = Killed(
            Command::new("pebble")
                .arg("-config")
                .arg(&config)
                .args(["-dnsserver", &dns.to_string()])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()
                .context("starting pebble (Debian's pebble; ./x setup installs it)")?,
        );
        let pebble = Pebble { _child: child, url: format!("https://127.0.0.1:{acme_port}/dir"), cert: dir.join("cert.pem"), log };
        eventually(Duration::from_secs(20), "pebble listening", || std::net::TcpStream::connect(("127.0.0.1", acme_port)).is_ok())
            .map_err(|e| anyhow!("{e}\n{}", pebble.log()))?;
        Ok(pebble)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A node serving the zone with an `acme` rule and tenant t1, and a TSIG
/// key scoped to t1 (`ALG:NAME:SECRET` split).
fn tenant_node(algorithm: &str) -> anyhow::Result<(tempfile::TempDir, common::Node, [String; 3])> {
    let zone = format!("{}\n[[rules]]\nkind = \"acme\"\n", common::ZONE);
    let (dir, node) = common::single_with(&zone, &[&["mt1", "--ipv4", "198.51.100.1"]])?;
    node.cli(&["tenant", "create", "t1", "--cluster", "mt1"])?;
    let key = node.cli(&["tsig", "create", "acme-t1", "--algorithm", algorithm, "--tenant", "t1", "--allow", "update"])?;
    let parts: Vec<String> = key.trim().split(':').map(str::to_string).collect();
    let key: [String; 3] = parts.try_into().map_err(|_| anyhow!("tsig create printed {key}"))?;
    Ok((dir, node, key))
}

/// The certificate at `path` covers the tenant and its wildcard, and the
/// client cleaned up after itself (by UPDATE): the challenge is gone.
fn issued(node: &common::Node, path: &Path) -> anyhow::Result<()> {
    let text = Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(path).output()?;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("DNS:t1.apps.example.test") && text.contains("DNS:*.t1.apps.example.test"), "{text}");
    let m = query(node.dns(), &format!("_acme-challenge.t1.{APEX}"), RecordType::TXT)?;
    assert!(m.answers.is_empty(), "{:?}", m.answers);
    // The node's own account: updates applied, signed with the tenant's key.
    let log = node.log();
    let applied = log.lines().filter(|l| l.contains("applied") && l.contains("update") && l.contains("acme-t1.")).count();
    assert!(applied >= 2, "updates applied with the key:\n{log}");
    Ok(())
}

#[test]
fn lego_gets_a_wildcard_certificate_through_a_tenant_key() -> anyhow::Result<()> {
    let (dir, node, [_, name, secret]) = tenant_node("hmac-sha256")?;
    let pebble = Pebble::start(&dir.path().join("pebble"), node.dns())?;
    let lego_dir = dir.path().join("lego");
    let out = Command::new("lego")
        .env("LEGO_CA_CERTIFICATES", &pebble.cert)
        .env("RFC2136_NAMESERVER", node.dns().to_string())
        .env("RFC2136_TSIG_ALGORITHM", "hmac-sha256.")
        .env("RFC2136_TSIG_KEY", &name)
        .env("RFC2136_TSIG_SECRET", &secret)
        .env("RFC2136_PROPAGATION_TIMEOUT", "30")
        .env("RFC2136_POLLING_INTERVAL", "1")
        .env("RFC2136_SEQUENCE_INTERVAL", "1")
        .args(["--server", &pebble.url, "--email", "ops@example.test", "--accept-tos"])
        .args(["--dns", "rfc2136", "--dns.resolvers", &node.dns().to_string(), "--dns.disable-cp"])
        .args(["-d", "t1.apps.example.test", "-d", "*.t1.apps.example.test", "--key-type", "ec256"])
        .arg("--path")
        .arg(&lego_dir)
        .arg("run")
        .output()
        .context("running lego (Debian's lego; ./x setup installs it)")?;
    if !out.status.success() {
        bail!(
            "lego failed:\n{}{}\npebble:\n{}\nnode:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            pebble.log(),
            node.log()
        );
    }
    issued(&node, &lego_dir.join("certificates").join("t1.apps.example.test.crt"))
}

#[test]
fn certbot_gets_a_wildcard_certificate_through_a_tenant_key() -> anyhow::Result<()> {
    // hmac-md5: cert-manager's default, and certbot-dns-rfc2136 takes it.
    let (dir, node, [_, name, secret]) = tenant_node("hmac-md5")?;
    let pebble = Pebble::start(&dir.path().join("pebble"), node.dns())?;
    let certbot_dir = dir.path().join("certbot");
    std::fs::create_dir_all(&certbot_dir)?;
    let credentials = certbot_dir.join("rfc2136.ini");
    std::fs::write(
        &credentials,
        format!(
            "dns_rfc2136_server = {ip}\ndns_rfc2136_port = {port}\ndns_rfc2136_name = {name}\ndns_rfc2136_secret = {secret}\ndns_rfc2136_algorithm = HMAC-MD5\n",
            ip = node.dns().ip(),
            port = node.dns().port(),
        ),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600))?;
    let out = Command::new("certbot")
        .env("REQUESTS_CA_BUNDLE", &pebble.cert)
        .args(["certonly", "--non-interactive", "--agree-tos", "-m", "ops@example.test", "--server", &pebble.url])
        .args(["--dns-rfc2136", "--dns-rfc2136-propagation-seconds", "1", "--dns-rfc2136-credentials"])
        .arg(&credentials)
        .args(["-d", "t1.apps.example.test", "-d", "*.t1.apps.example.test", "--cert-name", "t1"])
        .arg("--config-dir")
        .arg(certbot_dir.join("config"))
        .arg("--work-dir")
        .arg(certbot_dir.join("work"))
        .arg("--logs-dir")
        .arg(certbot_dir.join("logs"))
        .output()
        .context("running certbot (PyPI certbot and certbot-dns-rfc2136; ./x setup installs them)")?;
    if !out.status.success() {
        let log = std::fs::read_to_string(certbot_dir.join("logs").join("letsencrypt.log")).unwrap_or_default();
        bail!(
            "certbot failed:\n{}{}\n{log}\npebble:\n{}\nnode:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            pebble.log(),
            node.log()
        );
    }
    issued(&node, &certbot_dir.join("config").join("live").join("t1").join("cert.pem"))
}
