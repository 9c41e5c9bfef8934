//! The file of `switchboard tenant import`: JSON lines or CSV, one tenant
//! per line. Parsing is local and total: every line becomes a record or an
//! error naming its line; the server checks the records themselves.

use std::path::Path;

use serde::Deserialize;
use switchboard_api::proto::ImportRecord;

/// A line that could not be read: (line, id if known, why).
pub type LineError = (u64, String, String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine {
    id: Id,
    #[serde(default)]
    cluster: Option<String>,
}

/// Ids are labels, but numeric ones are often written as JSON numbers.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Text(String),
    Number(u64),
}

/// Read records from `text`: JSON lines when the file ends in `.jsonl` or
/// `.json` or its first non-blank line starts with `{`, else CSV
/// (`id[,cluster]`; a first line `id,cluster` is a header). Blank lines and
/// lines starting with `#` are skipped.
pub fn parse(text: &str, path: &Path) -> (Vec<ImportRecord>, Vec<LineError>) {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or_default();
    let json = matches!(ext.as_str(), "jsonl" | "json" | "ndjson") || (ext != "csv" && first.starts_with('{'));
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n as u64 + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if json {
            match serde_json::from_str::<JsonLine>(l) {
                Ok(j) => {
                    let id = match j.id {
                        Id::Text(t) => t,
                        Id::Number(n) => n.to_string(),
                    };
                    records.push(ImportRecord { id, cluster: j.cluster.unwrap_or_default(), line })
                }
                Err(e) => errors.push((line, String::new(), format!("InvalidArgument: not a tenant JSON object: {e}"))),
            }
            continue;
        }
        let fields: Vec<&str> = l.split(',').map(str::trim).collect();
        if records.is_empty() && errors.is_empty() && fields.first().is_some_and(|f| f.eq_ignore_ascii_case("id")) {
            continue; // header
        }
        match fields.as_slice() {
            [id] => records.push(ImportRecord { id: (*id).to_string(), cluster: String::new(), line }),
            [id, cluster] => records.push(ImportRecord { id: (*id).to_string(), cluster: (*cluster).to_string(), line }),
            _ => errors.push((
                line,
                fields.first().map(|f| f.to_string()).unwrap_or_default(),
                format!("InvalidArgument: {} fields, expected id[,cluster]", fields.len()),
            )),
        }
    }
    (records, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_with_errors_by_line() {
        let text =
            "{\"id\": \"a1\", \"cluster\": \"mt1\"}\n\n{\"id\": \"a2\"}\n{\"id\": 123456}\n{\"id\": \"a4\", \"extra\": 1}\n{\"id\": [1]}\n";
        let (r, e) = parse(text, Path::new("t.jsonl"));
        assert_eq!(
            r.iter().map(|x| (x.id.as_str(), x.cluster.as_str(), x.line)).collect::<Vec<_>>(),
            vec![("a1", "mt1", 1), ("a2", "", 3), ("123456", "", 4)]
        );
        assert_eq!(e.iter().map(|x| x.0).collect::<Vec<_>>(), vec![5, 6]);
    }

    #[test]
    fn csv_with_header_and_bad_rows() {
        let (r, e) = parse("id,cluster\nb1,mt2\nb2\n# comment\nb3,mt1,extra\n", Path::new("t.csv"));
        assert_eq!(
            r.iter().map(|x| (x.id.as_str(), x.cluster.as_str(), x.line)).collect::<Vec<_>>(),
            vec![("b1", "mt2", 2), ("b2", "", 3)]
        );
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].0, e[0].1.as_str()), (5, "b3"));
    }
}
