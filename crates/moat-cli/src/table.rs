//! Plain-text tables: aligned with borders on a terminal, tab-separated
//! otherwise (as CockroachDB's `cert list` does).

/// Renders rows under a header. `pretty` draws an aligned table with a
/// `(N rows)` footer; otherwise the output is tab-separated.
pub fn render(header: &[&str], rows: &[Vec<String>], pretty: bool) -> String {
    let mut out = String::new();
    if !pretty {
        out.push_str(&header.join("\t"));
        out.push('\n');
        for r in rows {
            out.push_str(&r.join("\t"));
            out.push('\n');
        }
        return out;
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            let pad = widths[i] - c.chars().count();
            s.push_str(if i == 0 { "  " } else { " | " });
            s.push_str(c);
            s.push_str(&" ".repeat(pad));
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    out.push_str(&line(&mut header.iter().copied()));
    let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("  {}\n", sep.join("-+-")));
    for r in rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
    }
    out.push_str(&format!(
        "({} row{})\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    ));
    out
}
