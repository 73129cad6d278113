//! Rendering result sets: aligned tables with a `(N rows)` footer (the
//! default on a terminal), tab-separated or CSV values (the default when the
//! output is a file or a pipe is TSV, as in `cockroach sql`). NULL prints as
//! `NULL`.

use clap::ValueEnum;

/// Output format of result sets.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns with a `(N rows)` footer.
    Table,
    /// Tab-separated values with a header line.
    Tsv,
    /// Comma-separated values (RFC 4180) with a header line.
    Csv,
}

/// The rows of one statement.
#[derive(Debug, Default)]
pub struct ResultSet {
    /// Column names.
    pub columns: Vec<String>,
    /// Values, `None` for NULL.
    pub rows: Vec<Vec<Option<String>>>,
}

fn cell(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "NULL".to_string())
}

/// Quotes a field for a delimited format when it needs it.
fn delimited(field: &str, sep: char) -> String {
    if field.contains([sep, '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Renders one result set.
pub fn render(rs: &ResultSet, format: Format) -> String {
    match format {
        Format::Table => {
            let header: Vec<&str> = rs.columns.iter().map(String::as_str).collect();
            let rows: Vec<Vec<String>> = rs.rows.iter().map(|r| r.iter().map(cell).collect()).collect();
            if header.is_empty() {
                let n = rows.len();
                return format!("({n} row{})\n", if n == 1 { "" } else { "s" });
            }
            crate::table::render(&header, &rows, true)
        }
        Format::Tsv | Format::Csv => {
            let sep = if format == Format::Tsv { '\t' } else { ',' };
            let line = |fields: &mut dyn Iterator<Item = String>| {
                let mut s = fields
                    .map(|f| delimited(&f, sep))
                    .collect::<Vec<_>>()
                    .join(&sep.to_string());
                s.push('\n');
                s
            };
            let mut out = line(&mut rs.columns.iter().cloned());
            for r in &rs.rows {
                out.push_str(&line(&mut r.iter().map(cell)));
            }
            out
        }
    }
}

/// A duration as `cockroach sql` prints it after a statement.
pub fn elapsed(d: std::time::Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("Time: {ms:.3}ms")
    } else {
        format!("Time: {:.3}s", ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ResultSet {
        ResultSet {
            columns: vec!["id".into(), "name".into()],
            rows: vec![
                vec![Some("1".into()), Some("alice".into())],
                vec![Some("22".into()), None],
            ],
        }
    }

    #[test]
    fn table() {
        let out = render(&sample(), Format::Table);
        assert_eq!(out, "  id | name\n  ---+------\n  1  | alice\n  22 | NULL\n(2 rows)\n");
    }

    #[test]
    fn tsv_and_csv() {
        assert_eq!(render(&sample(), Format::Tsv), "id\tname\n1\talice\n22\tNULL\n");
        let rs = ResultSet {
            columns: vec!["a".into()],
            rows: vec![vec![Some("x,\"y\"".into())]],
        };
        assert_eq!(render(&rs, Format::Csv), "a\n\"x,\"\"y\"\"\"\n");
        assert_eq!(render(&rs, Format::Tsv), "a\n\"x,\"\"y\"\"\"\n");
    }

    #[test]
    fn no_columns() {
        let rs = ResultSet {
            columns: vec![],
            rows: vec![vec![]],
        };
        assert_eq!(render(&rs, Format::Table), "(1 row)\n");
    }
}
