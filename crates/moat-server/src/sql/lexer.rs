//! A small SQL lexer: enough to split a query string into statements, to
//! recognise the statements moat answers itself, and to rewrite the few
//! PostgreSQL spellings SQLite does not know (`$1`, `::type`, `ILIKE`, ...).
//! It never needs to understand SQL fully: SQLite parses what it is given.

use super::error::SqlError;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An unquoted identifier or keyword.
    Word,
    /// A `"quoted"` (or `` `quoted` ``) identifier; `text` is unquoted.
    QIdent,
    /// A string literal; `text` is its value (quotes and escapes removed).
    Str,
    /// An integer literal.
    Int,
    /// A literal with a fraction or an exponent.
    Float,
    /// `$n`, a PostgreSQL parameter; `text` is the number.
    Param,
    /// Punctuation and operators (`(`, `,`, `::`, `<=`, `||` ...).
    Op,
    /// Anything else SQLite understands that we pass through untouched
    /// (`X'00'` blobs, `?`, `:name`, `@name` parameters).
    Other,
}

/// A token and where it is in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: Kind,
    /// Its text (see [`Kind`] for quoted forms).
    pub text: String,
    /// Byte offset of its first character.
    pub start: usize,
    /// Byte offset just after it.
    pub end: usize,
    /// For `Str`: the literal needs rewriting to be standard SQL (it was
    /// `E'...'` or dollar-quoted).
    pub nonstandard: bool,
}

impl Token {
    /// Whether this is the keyword `kw` (case-insensitive).
    pub fn is(&self, kw: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(kw)
    }

    /// Whether this is the operator `op`.
    pub fn is_op(&self, op: &str) -> bool {
        self.kind == Kind::Op && self.text == op
    }

    /// Uppercased word, or empty for other tokens.
    pub fn upper(&self) -> String {
        if self.kind == Kind::Word {
            self.text.to_ascii_uppercase()
        } else {
            String::new()
        }
    }

    /// The name this token denotes as an identifier (words lowercased like
    /// PostgreSQL folds them, quoted identifiers as written).
    pub fn ident(&self) -> Option<String> {
        match self.kind {
            Kind::Word => Some(self.text.to_ascii_lowercase()),
            Kind::QIdent => Some(self.text.clone()),
            _ => None,
        }
    }
}

fn syntax(msg: impl Into<String>) -> SqlError {
    SqlError::new("42601", msg)
}

/// Splits `sql` into tokens; comments and white space are dropped.
pub fn lex(sql: &str) -> Result<Vec<Token>, SqlError> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            // PostgreSQL nests block comments.
            let mut depth = 0usize;
            loop {
                if i + 1 >= b.len() {
                    return Err(syntax("unterminated /* comment"));
                }
                if b[i] == b'/' && b[i + 1] == b'*' {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b[i + 1] == b'/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            continue;
        }
        if c == b'\'' {
            let (text, end) = quoted(sql, i, b'\'')?;
            out.push(tok(Kind::Str, text, start, end));
            i = end;
            continue;
        }
        if (c == b'e' || c == b'E') && b.get(i + 1) == Some(&b'\'') {
            let (text, end) = escape_string(sql, i + 1)?;
            let mut t = tok(Kind::Str, text, start, end);
            t.nonstandard = true;
            out.push(t);
            i = end;
            continue;
        }
        if (c == b'x' || c == b'X') && b.get(i + 1) == Some(&b'\'') {
            let (_, end) = quoted(sql, i + 1, b'\'')?;
            out.push(tok(Kind::Other, sql[start..end].to_string(), start, end));
            i = end;
            continue;
        }
        if c == b'"' || c == b'`' {
            let (text, end) = quoted(sql, i, c)?;
            out.push(tok(Kind::QIdent, text, start, end));
            i = end;
            continue;
        }
        if c == b'$' {
            if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                out.push(tok(Kind::Param, sql[i + 1..j].to_string(), start, j));
                i = j;
                continue;
            }
            // Dollar quoting: $$...$$ or $tag$...$tag$.
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if b.get(j) == Some(&b'$') {
                let tag = &sql[i..=j];
                let body_start = j + 1;
                let Some(rel) = sql[body_start..].find(tag) else {
                    return Err(syntax("unterminated dollar-quoted string"));
                };
                let end = body_start + rel + tag.len();
                let mut t = tok(Kind::Str, sql[body_start..body_start + rel].to_string(), start, end);
                t.nonstandard = true;
                out.push(t);
                i = end;
                continue;
            }
            // A SQLite $name parameter.
            out.push(tok(Kind::Other, sql[i..j].to_string(), start, j));
            i = j.max(i + 1);
            continue;
        }
        if c == b'?' || (c == b':' && b.get(i + 1).is_some_and(|d| d.is_ascii_alphabetic())) || c == b'@' {
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            out.push(tok(Kind::Other, sql[i..j].to_string(), start, j));
            i = j;
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let mut j = i;
            let mut float = false;
            if c == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X')) {
                j += 2;
                while j < b.len() && b[j].is_ascii_hexdigit() {
                    j += 1;
                }
            } else {
                while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'_') {
                    j += 1;
                }
                if b.get(j) == Some(&b'.') {
                    float = true;
                    j += 1;
                    while j < b.len() && b[j].is_ascii_digit() {
                        j += 1;
                    }
                }
                if matches!(b.get(j), Some(b'e' | b'E'))
                    && (b.get(j + 1).is_some_and(u8::is_ascii_digit)
                        || (matches!(b.get(j + 1), Some(b'+' | b'-')) && b.get(j + 2).is_some_and(u8::is_ascii_digit)))
                {
                    float = true;
                    j += 2;
                    while j < b.len() && b[j].is_ascii_digit() {
                        j += 1;
                    }
                }
            }
            let kind = if float { Kind::Float } else { Kind::Int };
            out.push(tok(kind, sql[i..j].to_string(), start, j));
            i = j;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'$' || b[j] >= 0x80) {
                j += 1;
            }
            out.push(tok(Kind::Word, sql[i..j].to_string(), start, j));
            i = j;
            continue;
        }
        // Operators: longest match first.
        const OPS: [&str; 12] = ["->>", "::", "<=", ">=", "<>", "!=", "==", "||", "->", "<<", ">>", "#>"];
        if let Some(op) = OPS.iter().find(|op| sql[i..].starts_with(**op)) {
            out.push(tok(Kind::Op, op.to_string(), start, i + op.len()));
            i += op.len();
            continue;
        }
        let ch = sql[i..].chars().next().unwrap_or(' ');
        out.push(tok(Kind::Op, ch.to_string(), start, i + ch.len_utf8()));
        i += ch.len_utf8();
    }
    Ok(out)
}

fn tok(kind: Kind, text: String, start: usize, end: usize) -> Token {
    Token {
        kind,
        text,
        start,
        end,
        nonstandard: false,
    }
}

/// A quoted string or identifier starting at `i` (the quote); doubled quotes
/// escape a quote. Returns the content and the offset after the closing quote.
fn quoted(sql: &str, i: usize, q: u8) -> Result<(String, usize), SqlError> {
    let b = sql.as_bytes();
    let mut j = i + 1;
    let mut s = String::new();
    let mut seg = j;
    loop {
        if j >= b.len() {
            return Err(syntax(if q == b'\'' {
                "unterminated quoted string"
            } else {
                "unterminated quoted identifier"
            }));
        }
        if b[j] == q {
            s.push_str(&sql[seg..j]);
            if b.get(j + 1) == Some(&q) {
                s.push(q as char);
                j += 2;
                seg = j;
                continue;
            }
            return Ok((s, j + 1));
        }
        j += 1;
    }
}

/// A PostgreSQL `E'...'` string starting at the quote `i`.
fn escape_string(sql: &str, i: usize) -> Result<(String, usize), SqlError> {
    let mut chars = sql[i + 1..].char_indices().peekable();
    let mut s = String::new();
    while let Some((off, c)) = chars.next() {
        match c {
            '\'' => {
                if let Some((_, '\'')) = chars.peek() {
                    chars.next();
                    s.push('\'');
                } else {
                    return Ok((s, i + 1 + off + 1));
                }
            }
            '\\' => match chars.next() {
                Some((_, 'n')) => s.push('\n'),
                Some((_, 't')) => s.push('\t'),
                Some((_, 'r')) => s.push('\r'),
                Some((_, 'b')) => s.push('\u{8}'),
                Some((_, 'f')) => s.push('\u{c}'),
                Some((_, o)) => s.push(o),
                None => break,
            },
            o => s.push(o),
        }
    }
    Err(syntax("unterminated quoted string"))
}

/// Splits a query string into statements at top-level `;` (a `CREATE
/// TRIGGER ... BEGIN ...; END` body stays whole). Empty statements are
/// dropped; each statement is returned trimmed, without its `;`.
pub fn split(sql: &str) -> Result<Vec<String>, SqlError> {
    let toks = lex(sql)?;
    let mut out = Vec::new();
    let mut first = 0usize; // token index where the current statement starts
    let mut depth = 0i32; // BEGIN/CASE ... END nesting inside a trigger
    let mut i = 0;
    while i < toks.len() {
        let is_trigger = {
            let t = &toks[first..];
            t.first().is_some_and(|t| t.is("CREATE")) && t.iter().skip(1).take(2).any(|t| t.is("TRIGGER"))
        };
        let t = &toks[i];
        if is_trigger && (t.is("BEGIN") || t.is("CASE")) {
            depth += 1;
        } else if is_trigger && t.is("END") {
            depth -= 1;
        } else if t.is_op(";") && depth <= 0 {
            if i > first {
                out.push(sql[toks[first].start..toks[i - 1].end].to_string());
            }
            first = i + 1;
            depth = 0;
        }
        i += 1;
    }
    if first < toks.len() {
        out.push(sql[toks[first].start..toks[toks.len() - 1].end].to_string());
    }
    Ok(out)
}

/// Quotes `s` as a SQL string literal.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Quotes `s` as a SQL identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Index of the token closing the parenthesis opened at `open`.
pub fn matching_paren(toks: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (k, t) in toks.iter().enumerate().skip(open) {
        if t.is_op("(") {
            depth += 1;
        } else if t.is_op(")") {
            depth -= 1;
            if depth == 0 {
                return Some(k);
            }
        }
    }
    None
}

/// Splits `toks` at top-level commas.
pub fn split_commas(toks: &[Token]) -> Vec<&[Token]> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (k, t) in toks.iter().enumerate() {
        if t.is_op("(") || t.is_op("[") {
            depth += 1;
        } else if t.is_op(")") || t.is_op("]") {
            depth -= 1;
        } else if t.is_op(",") && depth == 0 {
            out.push(&toks[start..k]);
            start = k + 1;
        }
    }
    if start < toks.len() {
        out.push(&toks[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements() {
        assert_eq!(
            split("select 1; select 'a;b' ;; -- c;\n select 2").unwrap(),
            vec!["select 1", "select 'a;b'", "select 2"]
        );
        assert_eq!(split(" ; ").unwrap(), Vec::<String>::new());
        let trig = "CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES (CASE WHEN 1 THEN 2 END); DELETE FROM c; END";
        assert_eq!(split(&format!("{trig}; SELECT 1")).unwrap(), vec![trig, "SELECT 1"]);
        assert!(split("select 'x").is_err());
        assert_eq!(
            split("select /* a /* b */ ; */ 1").unwrap(),
            vec!["select /* a /* b */ ; */ 1"]
        );
    }

    #[test]
    fn tokens() {
        let t = lex("SELECT $1::int8, E'a\\nb', $$x'y$$, 1.5e3, x'00', \"Q\"\"x\"").unwrap();
        let kinds: Vec<Kind> = t.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Word,
                Kind::Param,
                Kind::Op,
                Kind::Word,
                Kind::Op,
                Kind::Str,
                Kind::Op,
                Kind::Str,
                Kind::Op,
                Kind::Float,
                Kind::Op,
                Kind::Other,
                Kind::Op,
                Kind::QIdent
            ]
        );
        assert_eq!(t[5].text, "a\nb");
        assert_eq!(t[7].text, "x'y");
        assert_eq!(t[13].text, "Q\"x");
    }
}
