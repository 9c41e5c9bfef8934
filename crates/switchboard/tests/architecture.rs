//! The docs stay true: every workspace crate has a heading in
//! ARCHITECTURE.md's code map whose "Depends on" line is exactly its
//! Cargo.toml's dependencies on our crates, every stored kind of the
//! registry is in the code map's table of kinds, and every API call has a
//! row in README.md's table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Our crates a manifest depends on (normal dependencies, optional ones included), by package name.
fn our_dependencies(manifest: &Path) -> anyhow::Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(manifest)?;
    let doc: toml::Table = text.parse()?;
    let deps = doc.get("dependencies").and_then(|d| d.as_table()).cloned().unwrap_or_default();
    Ok(deps.keys().filter(|k| k.starts_with("switchboard-")).cloned().collect())
}

/// The code-map section under `heading`: its text up to the next heading.
fn section<'a>(doc: &'a str, heading: &str) -> Option<&'a str> {
    let start = doc.find(heading)? + heading.len();
    let rest = &doc[start..];
    Some(&rest[..rest.find("\n#").unwrap_or(rest.len())])
}

#[test]
fn every_crate_is_in_the_code_map_with_its_dependencies() -> anyhow::Result<()> {
    let root = root();
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md"))?;
    let mut dirs: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(root.join("crates"))? {
        dirs.push(format!("crates/{}", entry?.file_name().to_string_lossy()));
    }
    dirs.push("bench".into());
    assert!(dirs.len() >= 9, "only {dirs:?}");
    for dir in dirs {
        let manifest = root.join(&dir).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)?;
        let package: toml::Table = text.parse()?;
        let name = package.get("package").and_then(|p| p.get("name")).and_then(|n| n.as_str()).unwrap_or_default().to_string();
        let heading = format!("### `{dir}` ({name})");
        let Some(body) = section(&doc, &heading) else {
            panic!("ARCHITECTURE.md has no code-map heading {heading:?}");
        };
        let line =
            body.lines().find_map(|l| l.strip_prefix("Depends on: ")).unwrap_or_else(|| panic!("{heading} has no \"Depends on: \" line"));
        // The crate names are the line's backticked words; the rest is prose.
        let written: BTreeSet<String> = line.split('`').skip(1).step_by(2).map(str::to_string).collect();
        assert_eq!(written, our_dependencies(&manifest)?, "{heading}: \"Depends on\" differs from {}", manifest.display());
    }
    Ok(())
}

/// The code map's table of stored kinds lists every kind of the registry
/// with its key prefix, and no other.
#[test]
fn every_stored_kind_is_in_the_code_map() -> anyhow::Result<()> {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md"))?;
    let table: BTreeSet<(String, String)> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| kind `"))
        .filter_map(|rest| {
            let mut cells = rest.split('|').map(str::trim);
            let name = cells.next()?.trim_end_matches('`').to_string();
            let prefix = cells.next()?.trim_matches('`').to_string();
            Some((name, prefix))
        })
        .collect();
    let registry: BTreeSet<(String, String)> =
        switchboard_domain::Kind::ALL.iter().map(|k| (format!("{k:?}"), format!("{}/", char::from(k.prefix())))).collect();
    assert_eq!(table, registry, "ARCHITECTURE.md's table of stored kinds differs from the registry (crates/domain/src/kind.rs)");
    Ok(())
}

/// README.md's table of API calls lists every rpc of the public protos,
/// with the service it belongs to.
#[test]
fn every_api_call_is_in_the_readme_table() -> std::io::Result<()> {
    let root = root();
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let mut seen = 0;
    for entry in std::fs::read_dir(root.join("proto/switchboard/v1"))? {
        let text = std::fs::read_to_string(entry?.path())?;
        let mut service = "";
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.trim_end_matches('{').trim();
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let rpc = rest.split('(').next().unwrap_or_default().trim();
                let row = format!("| {service} | {rpc} |");
                assert!(readme.contains(&row), "README.md's API table has no row starting {row:?}");
                seen += 1;
            }
        }
    }
    assert!(seen >= 32, "only {seen} rpcs found");
    Ok(())
}
