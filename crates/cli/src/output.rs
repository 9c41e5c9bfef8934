//! What a command prints, through one model: a serde view (printed as JSON
//! with `--json`) and how people see it (a `comfy-table` table, the view
//! as indented JSON, or nothing when the command wrote its own output),
//! plus an error to exit with after printing.

use std::io::{self, Write};

use comfy_table::{presets, Table};
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;

/// How a command's result looks without `--json`.
#[derive(Debug)]
pub enum Human {
    /// A line above (followed by a blank line), then the table.
    Table { title: Option<String>, table: Box<Table> },
    /// The JSON view, indented.
    Json,
    /// One line of text (a form other tools read, such as `ALG:NAME:SECRET`).
    Line(String),
}

#[derive(Debug)]
pub struct Output {
    /// The view as JSON (`None`: the command printed its output itself).
    value: Option<Value>,
    human: Human,
    /// Printed after the output, and the command exits non-zero.
    pub failure: Option<String>,
}

impl Output {
    /// `view` as JSON, or as `table` under `title`.
    pub fn table(view: &impl Serialize, title: Option<String>, table: Table) -> Result<Output> {
        Ok(Output { value: Some(to_value(view)?), human: Human::Table { title, table: Box::new(table) }, failure: None })
    }

    /// `view` as JSON either way (indented for people).
    pub fn json(view: &impl Serialize) -> Result<Output> {
        Ok(Output { value: Some(to_value(view)?), human: Human::Json, failure: None })
    }

    /// `view` as JSON, or for people this one line.
    pub fn line(view: &impl Serialize, line: String) -> Result<Output> {
        Ok(Output { value: Some(to_value(view)?), human: Human::Line(line), failure: None })
    }

    /// Nothing more to print: the command wrote to standard output itself.
    pub fn done() -> Output {
        Output { value: None, human: Human::Json, failure: None }
    }

    pub fn failing(mut self, why: impl Into<String>) -> Output {
        self.failure = Some(why.into());
        self
    }

    pub fn failing_if(self, failed: bool, why: impl Into<String>) -> Output {
        if failed {
            self.failing(why)
        } else {
            self
        }
    }

    /// Print as JSON (one line) or for people.
    pub fn print(&self, json: bool, out: &mut impl Write) -> io::Result<()> {
        let Some(value) = &self.value else { return Ok(()) };
        match (&self.human, json) {
            (Human::Table { title, table }, false) => {
                if let Some(title) = title {
                    writeln!(out, "{title}\n")?;
                }
                // Cells are padded to their column's width; lines end at their last character.
                for line in table.lines() {
                    writeln!(out, "{}", line.trim_end())?;
                }
                Ok(())
            }
            (_, true) => writeln!(out, "{value}"),
            (Human::Line(line), false) => writeln!(out, "{line}"),
            (Human::Json, false) => writeln!(out, "{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        }
    }
}

/// A view as a JSON value. Going through `Value` (rather than straight to
/// text) keeps keys in the order the CLI has always printed them: sorted.
fn to_value(view: &impl Serialize) -> Result<Value> {
    Ok(serde_json::to_value(view)?)
}

/// A table for people: a header row, no borders, columns two spaces apart,
/// no wrapping (a terminal's width is not consulted).
pub fn table<R: IntoIterator<Item = String>>(headers: &[&str], rows: impl IntoIterator<Item = R>) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(headers.iter().copied());
    for r in rows {
        t.add_row(r.into_iter().collect::<Vec<_>>());
    }
    let last = headers.len().saturating_sub(1);
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { 2 }));
    }
    t
}

/// `FIELD VALUE` rows: the table of a single entity or result.
pub fn fields(rows: impl IntoIterator<Item = (String, String)>) -> Table {
    table(&["FIELD", "VALUE"], rows.into_iter().map(|(k, v)| [k, v]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(o: &Output, json: bool) -> String {
        let mut buf = Vec::new();
        o.print(json, &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[derive(Serialize)]
    struct View {
        zebra: u32,
        apple: &'static str,
    }

    #[test]
    fn json_keys_are_sorted_and_on_one_line() {
        let o = Output::table(&View { zebra: 1, apple: "a" }, None, fields([])).unwrap();
        assert_eq!(printed(&o, true), "{\"apple\":\"a\",\"zebra\":1}\n");
    }

    #[test]
    fn tables_align_columns_two_spaces_apart() {
        let t = table(&["ID", "KIND"], [vec!["1".to_string(), "voter".to_string()], vec!["10".into(), "learner".into()]]);
        let o = Output::table(&View { zebra: 1, apple: "a" }, Some("title".into()), t).unwrap();
        let text = printed(&o, false);
        assert_eq!(text, "title\n\nID  KIND\n1   voter\n10  learner\n");
    }

    #[test]
    fn json_views_print_indented_without_json() {
        let o = Output::json(&View { zebra: 1, apple: "a" }).unwrap();
        assert_eq!(printed(&o, false), "{\n  \"apple\": \"a\",\n  \"zebra\": 1\n}\n");
        assert_eq!(printed(&Output::done(), false), "");
    }
}
