//! BIND 9 (`named`) and PowerDNS (`pdns_server`) as secondaries of a
//! Switchboard node, with their default NOTIFY policies (issue 27): each
//! accepts NOTIFY only from an address it lists as its primary, so the node
//! must send it from its DNS address, not from whatever the kernel picks
//! (127.0.0.1 here). The node listens on 127.0.0.2, PowerDNS on 127.0.0.4
//! and BIND on 127.0.0.1 (it listens only on addresses an interface holds,
//! and `lo` holds 127.0.0.1 alone; where a secondary listens does not
//! matter here, where NOTIFY comes from does). The SOA refresh is an hour,
//! so within the test a secondary learns of a change by NOTIFY or not at all.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context};
use common::{eventually, free_port, query, which, Killed, Node};
use hickory_proto::rr::{RData, RecordType};

const APEX: &str = "apps.example.test.";
const NODE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const BIND_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;
const PDNS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
/// Long enough for a transfer on a loaded CI machine; NOTIFY itself is
/// sent within a second (`NOTIFY_INTERVAL`), against a refresh of an hour.
const CONVERGE: Duration = Duration::from_secs(30);

/// The SOA serial `server` answers for the zone, if it serves it.
fn serial(server: SocketAddr) -> Option<u32> {
    query(server, APEX, RecordType::SOA).ok().and_then(|m| {
        m.answers.iter().find_map(|r| match &r.data {
            RData::SOA(s) => Some(s.serial),
            _ => None,
        })
    })
}

/// The A records `server` answers for `name`, as text.
fn addresses(server: SocketAddr, name: &str) -> Vec<String> {
    query(server, name, RecordType::A).map(|m| common::answers(&m)).unwrap_or_default()
}

/// `pdns_server` in the foreground with the BIND-file backend holding the
/// zone as a secondary of the node (unsigned transfers: the zone allows
/// loopback); `allow-notify-from` and the rest at their defaults.
fn start_pdns(dir: &Path, port: u16, primary: SocketAddr) -> anyhow::Result<Killed> {
    let pdns = which("pdns_server").ok_or_else(|| {
        anyhow!("pdns_server not found: install Debian's `pdns-server` and `pdns-backend-bind` packages (./x setup does)")
    })?;
    let d = dir.display();
    std::fs::write(
        dir.join("zones.conf"),
        format!("zone \"{APEX}\" {{\n  type slave;\n  masters {{ {primary}; }};\n  file \"{d}/zone.db\";\n}};\n"),
    )?;
    std::fs::write(
        dir.join("pdns.conf"),
        format!(
            "launch=bind\nbind-config={d}/zones.conf\nlocal-address={PDNS_IP}\nlocal-port={port}\nsecondary=yes\n\
             socket-dir={d}\nguardian=no\ndaemon=no\ndisable-syslog=yes\nloglevel=6\nsecurity-poll-suffix=\n"
        ),
    )?;
    let log = std::fs::File::create(dir.join("pdns.log"))?;
    let child =
        Command::new(pdns).arg(format!("--config-dir={d}")).stdout(Stdio::null()).stderr(log).spawn().context("starting pdns_server")?;
    Ok(Killed(child))
}

#[test]
fn bind_and_powerdns_secondaries_accept_notify_from_the_node_dns_address() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut node = Node::prepare(dir.path(), 1)?;
    let dns = SocketAddr::new(IpAddr::V4(NODE_IP), node.ports.dns);
    node.write_config_at(1, dns, "")?;
    node.spawn()?;
    node.wait_leader(Duration::from_secs(30))?;

    // Targets no secondary listens on are refused, naming the field.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, format!("{}\n[transfer]\nnotify = [\"0.0.0.0:53\"]\n", common::ZONE))?;
    let e = node.cli(&["zone", "put", bad.to_str().unwrap_or_default()]).unwrap_err().to_string();
    assert!(e.contains("transfer.notify[0]") && e.contains("unspecified"), "{e}");

    let (bind_port, pdns_port) = (free_port(), free_port());
    let bind = SocketAddr::new(IpAddr::V4(BIND_IP), bind_port);
    let pdns = SocketAddr::new(IpAddr::V4(PDNS_IP), pdns_port);
    // The node's own DNS address too: accepted in the zone (the API does
    // not know which node will lead), skipped when sending.
    let zone = format!("{}\n[transfer]\nnotify = [\"{bind}\", \"{pdns}\", \"{dns}\"]\nallow = [\"127.0.0.0/8\"]\n", common::ZONE);
    let file = dir.path().join("zone.toml");
    std::fs::write(&file, zone)?;
    node.cli(&["zone", "put", file.to_str().unwrap_or_default()])?;
    node.cli(&["cluster", "put", "mt1", "--ipv4", "198.51.100.1"])?;
    node.cli(&["tenant", "create", "before", "--cluster", "mt1"])?;
    let key = node.cli(&["tsig", "create", "bind-secondary", "--algorithm", "hmac-sha256", "--zones", APEX, "--allow", "transfer"])?;

    let bind_dir = dir.path().join("bind");
    let pdns_dir = dir.path().join("pdns");
    std::fs::create_dir_all(&bind_dir)?;
    std::fs::create_dir_all(&pdns_dir)?;
    let _bind = common::start_bind_secondary(&bind_dir, bind_port, APEX, dns, key.trim(), common::BindTransfer::Tcp)?;
    let _pdns = start_pdns(&pdns_dir, pdns_port, dns)?;
    let logs = || {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "named log:\n{}\npdns log:\n{}\nnode log:\n{}",
            read(&bind_dir.join("named.log")),
            read(&pdns_dir.join("pdns.log")),
            node.log()
        )
    };
    let follow = |what: &str| -> anyhow::Result<()> {
        let target = serial(dns).ok_or_else(|| anyhow!("the node serves no SOA"))?;
        for (who, secondary) in [("BIND", bind), ("PowerDNS", pdns)] {
            eventually(CONVERGE, &format!("{who} at the node's serial {target} {what}"), || serial(secondary) == Some(target))
                .map_err(|e| anyhow!("{e}\n{}", logs()))?;
        }
        Ok(())
    };
    // Each takes the zone when it starts, NOTIFY or not.
    follow("after its first transfer")?;

    // A change: only NOTIFY tells them before the hour's refresh.
    node.cli(&["tenant", "create", "after", "--cluster", "mt1"])?;
    follow("after a change, by NOTIFY")?;
    let name = format!("after.{APEX}");
    for secondary in [bind, pdns] {
        assert_eq!(addresses(secondary, &name), addresses(dns, &name), "{secondary}\n{}", logs());
    }
    let all = logs();
    assert!(!all.contains("refused notify") && !all.contains("not a master") && !all.contains("not a primary"), "{all}");
    assert!(all.contains("NOTIFY target skipped") && all.contains(&dns.to_string()), "{all}");
    Ok(())
}
