//! The file of `switchboard tenant import`: JSON lines or CSV, one tenant
//! per record. Parsing is local and total: every record becomes an import
//! record or an error naming its line; the server checks the records
//! themselves.

use std::path::Path;

use serde::Deserialize;
use switchboard_proto::v1::ImportRecord;

/// A record that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// Where the record starts, from 1.
    pub line: u64,
    /// Its id, if one could be read.
    pub id: String,
    /// Why, starting with the gRPC code the server would have used.
    pub error: String,
}

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

/// Read records from `text`: JSON lines when the file ends in `.jsonl`,
/// `.json` or `.ndjson`, or its first non-blank line starts with `{`, else
/// CSV (`id[,cluster]`, quoted fields as RFC 4180 has them; a first record
/// `id,cluster` is a header). Blank lines and lines starting with `#` are
/// skipped.
pub fn parse(text: &str, path: &Path) -> (Vec<ImportRecord>, Vec<LineError>) {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or_default();
    let json = matches!(ext.as_str(), "jsonl" | "json" | "ndjson") || (ext != "csv" && first.starts_with('{'));
    if json {
        json_lines(text)
    } else {
        csv_records(text)
    }
}

fn json_lines(text: &str) -> (Vec<ImportRecord>, Vec<LineError>) {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n as u64 + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        match serde_json::from_str::<JsonLine>(l) {
            Ok(j) => {
                let id = match j.id {
                    Id::Text(t) => t,
                    Id::Number(n) => n.to_string(),
                };
                records.push(ImportRecord { id, cluster: j.cluster.unwrap_or_default(), line })
            }
            Err(e) => errors.push(LineError { line, id: String::new(), error: format!("InvalidArgument: not a tenant JSON object: {e}") }),
        }
    }
    (records, errors)
}

fn csv_records(text: &str) -> (Vec<ImportRecord>, Vec<LineError>) {
    // Blank and comment lines go before the CSV reader sees the text (its
    // own comment handling loses count of lines); `lines[i]` is the file's
    // line number of the kept text's line i + 1.
    let (mut kept, mut lines) = (String::with_capacity(text.len()), Vec::new());
    for (n, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if !l.is_empty() && !l.starts_with('#') {
            kept.push_str(raw);
            kept.push('\n');
            lines.push(n as u64 + 1);
        }
    }
    let line_of = |p: Option<&csv::Position>, i: usize| {
        let at = p.map_or(i as u64 + 1, csv::Position::line);
        usize::try_from(at).ok().and_then(|at| lines.get(at.wrapping_sub(1))).copied().unwrap_or(at)
    };
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(kept.as_bytes());
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for (i, result) in reader.records().enumerate() {
        let record = match result {
            Ok(r) => r,
            Err(e) => {
                let line = line_of(e.position(), i);
                errors.push(LineError { line, id: String::new(), error: format!("InvalidArgument: not a CSV record: {e}") });
                continue;
            }
        };
        let line = line_of(record.position(), i);
        let fields: Vec<&str> = record.iter().collect();
        if records.is_empty() && errors.is_empty() && fields.first().is_some_and(|f| f.eq_ignore_ascii_case("id")) {
            continue; // header
        }
        match fields.as_slice() {
            [id] => records.push(ImportRecord { id: (*id).to_string(), cluster: String::new(), line }),
            [id, cluster] => records.push(ImportRecord { id: (*id).to_string(), cluster: (*cluster).to_string(), line }),
            _ => errors.push(LineError {
                line,
                id: fields.first().map(|f| f.to_string()).unwrap_or_default(),
                error: format!("InvalidArgument: {} fields, expected id[,cluster]", fields.len()),
            }),
        }
    }
    (records, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(r: &[ImportRecord]) -> Vec<(&str, &str, u64)> {
        r.iter().map(|x| (x.id.as_str(), x.cluster.as_str(), x.line)).collect()
    }

    #[test]
    fn json_lines_with_errors_by_line() {
        let text =
            "{\"id\": \"a1\", \"cluster\": \"mt1\"}\n\n{\"id\": \"a2\"}\n{\"id\": 123456}\n{\"id\": \"a4\", \"extra\": 1}\n{\"id\": [1]}\n";
        let (r, e) = parse(text, Path::new("t.jsonl"));
        assert_eq!(ok(&r), vec![("a1", "mt1", 1), ("a2", "", 3), ("123456", "", 4)]);
        assert_eq!(e.iter().map(|x| x.line).collect::<Vec<_>>(), vec![5, 6]);
        assert!(e[0].error.starts_with("InvalidArgument: not a tenant JSON object: "), "{e:?}");
    }

    #[test]
    fn csv_with_header_and_bad_rows() {
        let (r, e) = parse("id,cluster\nb1,mt2\nb2\n# comment\nb3,mt1,extra\n", Path::new("t.csv"));
        assert_eq!(ok(&r), vec![("b1", "mt2", 2), ("b2", "", 3)]);
        assert_eq!(e, vec![LineError { line: 5, id: "b3".into(), error: "InvalidArgument: 3 fields, expected id[,cluster]".into() }]);
    }

    #[test]
    fn csv_quoted_fields_may_hold_commas() {
        // The old parser split on every comma: this was "3 fields".
        let (r, e) = parse("\"c1\",\"mt,1\"\n\"c2\", mt2 \n\"multi\nline\",mt3\nc4,\"mt\"\"4\"\n", Path::new("t.csv"));
        assert_eq!(ok(&r), vec![("c1", "mt,1", 1), ("c2", "mt2", 2), ("multi\nline", "mt3", 3), ("c4", "mt\"4", 5)]);
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn csv_skips_blank_and_comment_lines_and_counts_them() {
        let text = "\n   \n# a comment, with a comma and a \"quote\n  # indented\nd1,mt1\n\nd2,mt2,x,y\n";
        let (r, e) = parse(text, Path::new("tenants.txt"));
        assert_eq!(ok(&r), vec![("d1", "mt1", 5)]);
        assert_eq!((e.len(), e[0].line, e[0].id.as_str()), (1, 7, "d2"));
        assert!(e[0].error.contains("4 fields"), "{e:?}");
    }

    #[test]
    fn a_header_only_counts_first() {
        let (r, e) = parse("x1\nid,cluster\n", Path::new("t.csv"));
        assert_eq!(ok(&r), vec![("x1", "", 1), ("id", "cluster", 2)]);
        assert!(e.is_empty());
    }
}
