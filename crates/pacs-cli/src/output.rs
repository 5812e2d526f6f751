//! Output of query results: an aligned table, JSON or CSV.

use std::io::Write;

use pacs_core::{Attribute, QueryRow};

/// Output format of `pacs query`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// A JSON array of objects keyed by attribute keyword.
    Json,
    /// Comma-separated values with a header line (RFC 4180 quoting).
    Csv,
}

/// Writes `rows` with the columns `columns`.
pub fn write(out: &mut dyn Write, format: Format, columns: &[Attribute], rows: &[QueryRow]) -> std::io::Result<()> {
    let cell = |row: &QueryRow, a: &Attribute| row.get(a).cloned().unwrap_or_default();
    match format {
        Format::Json => {
            let array: Vec<serde_json::Map<String, serde_json::Value>> = rows
                .iter()
                .map(|row| columns.iter().filter_map(|a| row.get(a).map(|v| (a.keyword().to_owned(), serde_json::Value::String(v.clone())))).collect())
                .collect();
            serde_json::to_writer_pretty(&mut *out, &array)?;
            writeln!(out)
        }
        Format::Csv => {
            let quote = |s: &str| if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() };
            writeln!(out, "{}", columns.iter().map(|a| a.keyword()).collect::<Vec<_>>().join(","))?;
            for row in rows {
                writeln!(out, "{}", columns.iter().map(|a| quote(&cell(row, a))).collect::<Vec<_>>().join(","))?;
            }
            Ok(())
        }
        Format::Table => {
            let widths: Vec<usize> =
                columns.iter().map(|a| rows.iter().map(|r| cell(r, a).chars().count()).max().unwrap_or(0).max(a.keyword().len())).collect();
            let line = |values: Vec<String>| -> String {
                values.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}", w = *w)).collect::<Vec<_>>().join("  ").trim_end().to_owned()
            };
            writeln!(out, "{}", line(columns.iter().map(|a| a.keyword().to_owned()).collect()))?;
            for row in rows {
                writeln!(out, "{}", line(columns.iter().map(|a| cell(row, a)).collect()))?;
            }
            Ok(())
        }
    }
}
