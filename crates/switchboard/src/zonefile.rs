//! The zone file of `switchboard zone put FILE` (SPEC §6): TOML, read here
//! and sent as an API `Zone`. Errors name the file, line and key.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use switchboard_api::proto;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneFile {
    apex: String,
    environment: String,
    ttl: Option<u32>,
    ns: Vec<String>,
    #[serde(default)]
    soa: SoaFile,
    #[serde(default)]
    rules: Vec<RuleFile>,
    #[serde(default)]
    records: Vec<RecordFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SoaFile {
    mname: Option<String>,
    rname: Option<String>,
    refresh: Option<u32>,
    retry: Option<u32>,
    expire: Option<u32>,
    minimum: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum RuleFile {
    ServiceTenant { services: Vec<String>, target: String, ttl: Option<u32> },
    TenantHost { ttl: Option<u32> },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordFile {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    ttl: Option<u32>,
    data: String,
}

/// Read a zone file and check it as the server will.
pub fn load(path: &Path) -> anyhow::Result<proto::Zone> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading zone file {}", path.display()))?;
    parse(&text).with_context(|| format!("zone file {}", path.display()))
}

pub fn parse(text: &str) -> anyhow::Result<proto::Zone> {
    let f: ZoneFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    let zone = proto::Zone {
        apex: f.apex,
        environment: f.environment,
        ttl: f.ttl,
        ns: f.ns,
        soa: Some(proto::Soa {
            mname: f.soa.mname.unwrap_or_default(),
            rname: f.soa.rname.unwrap_or_default(),
            refresh: f.soa.refresh,
            retry: f.soa.retry,
            expire: f.soa.expire,
            minimum: f.soa.minimum,
        }),
        rules: f
            .rules
            .into_iter()
            .map(|r| proto::Rule {
                kind: Some(match r {
                    RuleFile::ServiceTenant { services, target, ttl } => {
                        proto::rule::Kind::ServiceTenant(proto::ServiceTenantRule { services, target, ttl })
                    }
                    RuleFile::TenantHost { ttl } => proto::rule::Kind::TenantHost(proto::TenantHostRule { ttl }),
                }),
            })
            .collect(),
        records: f.records.into_iter().map(|r| proto::StaticRecord { name: r.name, r#type: r.rtype, ttl: r.ttl, data: r.data }).collect(),
        revision: 0,
        serial: 0,
    };
    // The same checks the server makes, so mistakes show before any network call.
    switchboard_api::convert::zone_in(zone.clone())?;
    Ok(zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rule_kind_names_line() {
        let e = parse("apex = \"a.test.\"\nenvironment = \"prod\"\nns = [\"ns.a.test.\"]\n[[rules]]\nkind = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4") || e.contains("line 5"), "{e}");
    }

    #[test]
    fn invalid_record_names_field() {
        let text = "apex = \"a.test.\"\nenvironment = \"prod\"\nns = [\"ns.a.test.\"]\n[[records]]\nname = \"www\"\ntype = \"A\"\ndata = \"999.1.1.1\"\n";
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains("zone.records[0].data"), "{e}");
    }
}
