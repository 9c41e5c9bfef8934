//! ARCHITECTURE.md stays true: every crate has a heading in its code map.

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
