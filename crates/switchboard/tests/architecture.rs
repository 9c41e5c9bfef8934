//! The docs stay true: every crate has a heading in ARCHITECTURE.md's code
//! map, and every API call a row in README.md's table.

#[test]
fn every_crate_is_in_the_code_map() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md"))?;
    for entry in std::fs::read_dir(root.join("crates"))? {
        let name = entry?.file_name().to_string_lossy().to_string();
        assert!(doc.contains(&format!("### `crates/{name}`")), "ARCHITECTURE.md has no code-map heading for crates/{name}");
    }
    Ok(())
}

/// README.md's table of API calls lists every rpc of the public protos,
/// with the service it belongs to.
#[test]
fn every_api_call_is_in_the_readme_table() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
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
