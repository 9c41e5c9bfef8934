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

/// The modules of one crate that each reach the others through `use`
/// (strongly connected), found from the text of its sources: for each
/// top-level module (a file `m.rs` or a folder `m/`), the modules it names
/// as `crate::m`, through `use crate::{m, ..}`, as a name the crate root
/// re-exports from `m` (`crate::Name`), or (from a top-level file) as
/// `super::m`. Unit tests (`tests.rs`, `mod tests { .. }`) are left out.
fn module_cycles(src: &Path) -> anyhow::Result<Vec<BTreeSet<String>>> {
    use std::collections::BTreeMap;
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
    // Names the root re-exports, by the module they come from.
    let mut reexported: BTreeMap<String, String> = BTreeMap::new();
    for root in ["lib.rs", "main.rs"] {
        let Ok(text) = std::fs::read_to_string(src.join(root)) else { continue };
        for line in text.lines().map(str::trim) {
            let Some(rest) = line.strip_prefix("pub use ") else { continue };
            let module = ident(rest);
            let Some(items) = rest.strip_prefix(&format!("{module}::")) else { continue };
            for item in items.trim_end_matches(';').trim_matches(|c| c == '{' || c == '}').split(',') {
                let name = item.rsplit(" as ").next().unwrap_or_default().trim();
                if !name.is_empty() {
                    reexported.insert(name.to_string(), module.clone());
                }
            }
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.to_path_buf()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                files.push(entry?.path());
            }
            continue;
        }
        let relative = path.strip_prefix(src)?.with_extension("");
        let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let top = parts[0].clone();
        if path.extension().is_none_or(|e| e != "rs") || ["lib", "main"].contains(&top.as_str()) || parts.iter().any(|p| p == "tests") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or_default();
        let mut named: BTreeSet<String> = BTreeSet::new();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::X, b, C}`: each item's first segment.
                let group = &group[..group.find('}').unwrap_or(group.len())];
                named.extend(group.split(',').map(|item| ident(item.trim())));
            } else {
                named.insert(ident(rest));
            }
        }
        if parts.len() == 1 {
            named.extend(text.match_indices("super::").map(|(i, _)| ident(&text[i + "super::".len()..])));
        }
        for name in named {
            let module = reexported.get(&name).cloned().unwrap_or(name);
            if !module.is_empty() && module != top && module.starts_with(|c: char| c.is_ascii_lowercase()) && module != "self" {
                edges.entry(top.clone()).or_default().insert(module);
            }
        }
    }
    // The modules that reach one another: each module's reach, then the
    // groups whose members reach each other.
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<String, BTreeSet<String>> = edges.keys().map(|m| (m.clone(), reach(m))).collect();
    let mut cycles: Vec<BTreeSet<String>> = Vec::new();
    for (m, r) in &reaches {
        if !r.contains(m) || cycles.iter().any(|c| c.contains(m)) {
            continue;
        }
        cycles.push(r.iter().filter(|o| reaches.get(*o).is_some_and(|back| back.contains(m))).cloned().collect());
    }
    Ok(cycles)
}

/// No module of a crate depends on itself through others (issue 26): a
/// cycle makes its modules one room that cannot be read, tested or moved
/// apart. The domain still has one, listed here until it is broken; any
/// other cycle, or a change to that one, fails.
#[test]
fn no_crate_has_a_module_cycle() -> anyhow::Result<()> {
    let known: BTreeSet<String> =
        ["command", "credential", "kind", "placement", "resolve", "state", "tsig"].into_iter().map(String::from).collect();
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    crates.push(root().join("bench"));
    for dir in crates {
        let cycles = module_cycles(&dir.join("src"))?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let expected: Vec<BTreeSet<String>> = if name == "domain" { vec![known.clone()] } else { Vec::new() };
        assert_eq!(cycles, expected, "module cycles in {name}");
    }
    Ok(())
}

/// The cycle finder finds what it should: a made-up crate with one cycle
/// through a re-export and `super::`, and a module outside it.
#[test]
fn the_module_cycle_finder_sees_reexports_and_super() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod c;\nmod d;\npub use c::{Thing, Other as Renamed};\n")?;
    std::fs::write(src.join("a.rs"), "use crate::{b::X, self as _};\n")?;
    std::fs::write(src.join("b.rs"), "fn f() -> crate::Renamed { todo() }\n")?;
    std::fs::write(src.join("c.rs"), "use super::a;\n#[cfg(test)]\nmod tests {\n    use crate::d;\n}\n")?;
    std::fs::write(src.join("d.rs"), "use crate::Thing;\n")?;
    let cycles = module_cycles(src)?;
    let abc: BTreeSet<String> = ["a", "b", "c"].into_iter().map(String::from).collect();
    // d reaches c (Thing), but only c's unit tests reach d back, and they do not count.
    assert_eq!(cycles, vec![abc]);
    Ok(())
}
