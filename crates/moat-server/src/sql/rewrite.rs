//! PostgreSQL spellings rewritten for SQLite: `$n` parameters, `x::type`
//! casts, `E'..'` and dollar-quoted strings, `ILIKE`, bare `current_user`,
//! `pg_catalog.` function prefixes, trailing `FOR UPDATE`, `UPSERT`, and the
//! CockroachDB/PostgreSQL column types `SERIAL`, `STRING`, `BYTES` in DDL.

use std::collections::HashMap;

use super::error::SqlError;
use super::lexer::{quote_literal, Kind, Token};
use super::types::cast_target;

struct Edit {
    pos: usize,
    end: usize,
    text: String,
    seq: usize,
}

#[derive(Default)]
struct Edits(Vec<Edit>);

impl Edits {
    fn replace(&mut self, pos: usize, end: usize, text: impl Into<String>) {
        let seq = self.0.len();
        self.0.push(Edit {
            pos,
            end,
            text: text.into(),
            seq,
        });
    }

    fn apply(mut self, src: &str) -> String {
        // Same position: the later edit (an outer cast's "CAST(") goes first.
        self.0.sort_by(|a, b| a.pos.cmp(&b.pos).then(b.seq.cmp(&a.seq)));
        let mut out = String::with_capacity(src.len() + 16);
        let mut cursor = 0;
        for e in self.0 {
            if e.pos >= cursor {
                out.push_str(&src[cursor..e.pos]);
            }
            out.push_str(&e.text);
            cursor = cursor.max(e.end);
        }
        out.push_str(&src[cursor..]);
        out
    }
}

fn open_paren_before(toks: &[Token], close: usize) -> Option<usize> {
    let mut depth = 0i32;
    for k in (0..=close).rev() {
        if toks[k].is_op(")") {
            depth += 1;
        } else if toks[k].is_op("(") {
            depth -= 1;
            if depth == 0 {
                return Some(k);
            }
        }
    }
    None
}

const NOT_FUNCTIONS: [&str; 37] = [
    "IN",
    "AND",
    "OR",
    "NOT",
    "EXISTS",
    "AS",
    "VALUES",
    "WHERE",
    "ON",
    "THEN",
    "ELSE",
    "WHEN",
    "CASE",
    "SELECT",
    "BY",
    "HAVING",
    "FROM",
    "JOIN",
    "RETURNING",
    "SET",
    "LIMIT",
    "OFFSET",
    "DISTINCT",
    "ALL",
    "ANY",
    "SOME",
    "IS",
    "LIKE",
    "BETWEEN",
    "USING",
    "INTO",
    "WITH",
    "UNION",
    "RECURSIVE",
    "TABLE",
    "CHECK",
    "DEFAULT",
];

/// Where the operand of a `::` cast at `j` starts.
fn operand_start(toks: &[Token], j: usize, ends: &HashMap<usize, usize>) -> Option<usize> {
    let p = j.checked_sub(1)?;
    if let Some(s) = ends.get(&p) {
        return Some(*s);
    }
    let t = &toks[p];
    match t.kind {
        Kind::Op if t.text == ")" => {
            let o = open_paren_before(toks, p)?;
            if o > 0 && toks[o - 1].kind == Kind::Word && !NOT_FUNCTIONS.iter().any(|w| toks[o - 1].is(w)) {
                let mut s = o - 1;
                while s >= 2 && toks[s - 1].is_op(".") && toks[s - 2].kind == Kind::Word {
                    s -= 2;
                }
                Some(s)
            } else {
                Some(o)
            }
        }
        Kind::Word | Kind::QIdent => {
            let mut s = p;
            while s >= 2 && toks[s - 1].is_op(".") && matches!(toks[s - 2].kind, Kind::Word | Kind::QIdent) {
                s -= 2;
            }
            Some(s)
        }
        Kind::Str | Kind::Int | Kind::Float | Kind::Param | Kind::Other => Some(p),
        _ => None,
    }
}

/// The tokens naming a cast's type, from `from`; returns (last index, name).
fn type_name(toks: &[Token], from: usize) -> Option<(usize, String)> {
    let first = toks.get(from).filter(|t| matches!(t.kind, Kind::Word | Kind::QIdent))?;
    let mut words = vec![first.text.to_ascii_lowercase()];
    let mut k = from;
    let next_is = |k: usize, w: &str| toks.get(k).is_some_and(|t| t.is(w));
    if (first.is("double") && next_is(k + 1, "precision")) || (first.is("character") && next_is(k + 1, "varying")) {
        k += 1;
        words.push(toks[k].text.to_ascii_lowercase());
    } else if (first.is("timestamp") || first.is("time"))
        && (next_is(k + 1, "with") || next_is(k + 1, "without"))
        && next_is(k + 2, "time")
        && next_is(k + 3, "zone")
    {
        for _ in 0..3 {
            k += 1;
            words.push(toks[k].text.to_ascii_lowercase());
        }
    }
    if toks.get(k + 1).is_some_and(|t| t.is_op("(")) {
        k = super::lexer::matching_paren(toks, k + 1)?;
    }
    if toks.get(k + 1).is_some_and(|t| t.is_op("[")) {
        return Some((k + 1, format!("{}[]", words.join(" "))));
    }
    Some((k, words.join(" ")))
}

/// `CAST(x AS pgtype)` at `k`: the type becomes one whose SQLite affinity
/// gives the PostgreSQL meaning (`CAST('2024-01-02' AS date)` must stay
/// text, not become the number 2024); `AS boolean` becomes `moat_bool(x)`.
fn cast_call(toks: &[Token], k: usize, edits: &mut Edits) {
    let Some(close) = super::lexer::matching_paren(toks, k + 1) else {
        return;
    };
    let mut depth = 0i32;
    let mut as_at = None;
    for (j, t) in toks.iter().enumerate().take(close).skip(k + 2) {
        if t.is_op("(") {
            depth += 1;
        } else if t.is_op(")") {
            depth -= 1;
        } else if depth == 0 && t.is("AS") {
            as_at = Some(j);
        }
    }
    let Some(a) = as_at.filter(|a| a + 1 < close) else {
        return;
    };
    let Some((end, name)) = type_name(toks, a + 1) else {
        return;
    };
    if end + 1 != close {
        return;
    }
    match cast_target(&name) {
        Some((_, f)) if f.ends_with('(') => {
            edits.replace(toks[k].start, toks[k].end, f.trim_end_matches('('));
            edits.replace(toks[a - 1].end, toks[end].end, "");
        }
        Some((_, sqlite)) => edits.replace(toks[a + 1].start, toks[end].end, sqlite),
        None => {}
    }
}

/// Rewrites a statement for SQLite. `toks` are the tokens of `src`.
pub fn to_sqlite(src: &str, toks: &[Token]) -> Result<String, SqlError> {
    let mut edits = Edits::default();
    let mut ends: HashMap<usize, usize> = HashMap::new();
    let first = toks.first();
    let is_ddl = first.is_some_and(|t| t.is("CREATE") || t.is("ALTER")) && toks.iter().take(4).any(|t| t.is("TABLE"));
    let mut depth = 0i32;
    for (k, t) in toks.iter().enumerate() {
        match t.kind {
            Kind::Param => edits.replace(t.start, t.end, format!("?{}", t.text)),
            Kind::Str if t.nonstandard => edits.replace(t.start, t.end, quote_literal(&t.text)),
            Kind::Op if t.text == "(" => depth += 1,
            Kind::Op if t.text == ")" => depth -= 1,
            Kind::Op if t.text == "::" => {
                let s = operand_start(toks, k, &ends)
                    .ok_or_else(|| SqlError::new("42601", "syntax error at or near \"::\""))?;
                let (end, name) = type_name(toks, k + 1)
                    .ok_or_else(|| SqlError::new("42601", "syntax error: a type name must follow \"::\""))?;
                if name.ends_with("[]") {
                    return Err(SqlError::unsupported(format!("the array type {name}")));
                }
                let (_, sqlite) = cast_target(&name).ok_or_else(|| SqlError::unsupported(format!("type {name}")))?;
                if sqlite.ends_with('(') {
                    edits.replace(toks[s].start, toks[s].start, sqlite);
                    edits.replace(t.start, toks[end].end, ")");
                } else {
                    edits.replace(toks[s].start, toks[s].start, "CAST(");
                    edits.replace(t.start, toks[end].end, format!(" AS {sqlite})"));
                }
                ends.insert(end, s);
            }
            Kind::Word => {
                let prev_dot = k > 0 && toks[k - 1].is_op(".");
                let next_paren = toks.get(k + 1).is_some_and(|t| t.is_op("("));
                let up = t.upper();
                match up.as_str() {
                    "CAST" if next_paren => cast_call(toks, k, &mut edits),
                    "ILIKE" => edits.replace(t.start, t.end, "LIKE"),
                    "CURRENT_USER" | "SESSION_USER" | "CURRENT_ROLE" | "CURRENT_SCHEMA" if !prev_dot && !next_paren => {
                        edits.replace(t.start, t.end, format!("{}()", up.to_ascii_lowercase()))
                    }
                    "CURRENT_CATALOG" if !prev_dot && !next_paren => {
                        edits.replace(t.start, t.end, "current_database()")
                    }
                    "PG_CATALOG"
                        if toks.get(k + 1).is_some_and(|t| t.is_op("."))
                            && toks.get(k + 3).is_some_and(|t| t.is_op("(")) =>
                    {
                        edits.replace(t.start, toks[k + 1].end, "")
                    }
                    "FOR"
                        if depth == 0
                            && k > 0
                            && toks
                                .get(k + 1)
                                .is_some_and(|n| n.is("UPDATE") || n.is("SHARE") || n.is("NO") || n.is("KEY")) =>
                    {
                        edits.replace(toks[k - 1].end, toks[toks.len() - 1].end, "");
                        break;
                    }
                    // SQLite wants a function call in DEFAULT parenthesised:
                    // DEFAULT now() -> DEFAULT (now()).
                    "DEFAULT"
                        if is_ddl
                            && toks.get(k + 1).is_some_and(|n| n.kind == Kind::Word)
                            && toks.get(k + 2).is_some_and(|n| n.is_op("(")) =>
                    {
                        if let Some(close) = super::lexer::matching_paren(toks, k + 2) {
                            edits.replace(toks[k + 1].start, toks[k + 1].start, "(");
                            edits.replace(toks[close].end, toks[close].end, ")");
                        }
                    }
                    "UPSERT" if k == 0 => edits.replace(t.start, t.end, "INSERT OR REPLACE"),
                    "EXPLAIN" if k == 0 && !toks.get(1).is_some_and(|n| n.is("QUERY")) => {
                        edits.replace(t.start, t.end, "EXPLAIN QUERY PLAN")
                    }
                    "SERIAL" | "BIGSERIAL" | "SERIAL8" | "SERIAL4" | "SMALLSERIAL" | "SERIAL2" if is_ddl => {
                        edits.replace(t.start, t.end, "INTEGER")
                    }
                    "STRING" if is_ddl && k > 0 && matches!(toks[k - 1].kind, Kind::Word | Kind::QIdent) => {
                        edits.replace(t.start, t.end, "TEXT")
                    }
                    "BYTES" if is_ddl && k > 0 && matches!(toks[k - 1].kind, Kind::Word | Kind::QIdent) => {
                        edits.replace(t.start, t.end, "BLOB")
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(edits.apply(src))
}

#[cfg(test)]
mod tests {
    use super::super::lexer::lex;
    use super::*;

    fn rw(s: &str) -> String {
        to_sqlite(s, &lex(s).unwrap()).unwrap()
    }

    #[test]
    fn rewrites() {
        assert_eq!(rw("SELECT $1::int8, $2"), "SELECT CAST(?1 AS INTEGER), ?2");
        assert_eq!(rw("SELECT '1'::int::text"), "SELECT CAST(CAST('1' AS INTEGER) AS TEXT)");
        assert_eq!(
            rw("SELECT count(*)::int4, t.a::bool FROM t"),
            "SELECT CAST(count(*) AS INTEGER), moat_bool(t.a) FROM t"
        );
        assert_eq!(rw("SELECT (1+2)::double precision"), "SELECT CAST((1+2) AS REAL)");
        assert_eq!(
            rw("SELECT x::timestamp with time zone, now()::date"),
            "SELECT CAST(x AS TEXT), date(now())"
        );
        assert_eq!(rw("SELECT E'it\\'s', $$a'b$$"), "SELECT 'it''s', 'a''b'");
        assert_eq!(
            rw("SELECT current_user, pg_catalog.version() WHERE a ILIKE 'x'"),
            "SELECT current_user(), version() WHERE a LIKE 'x'"
        );
        assert_eq!(
            rw("SELECT * FROM t WHERE id = 1 FOR UPDATE"),
            "SELECT * FROM t WHERE id = 1"
        );
        assert_eq!(
            rw("CREATE TABLE t (id SERIAL PRIMARY KEY, s STRING, b BYTES)"),
            "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, b BLOB)"
        );
        assert_eq!(
            rw("CREATE TABLE t (id UUID PRIMARY KEY DEFAULT gen_random_uuid(), at TIMESTAMPTZ DEFAULT now())"),
            "CREATE TABLE t (id UUID PRIMARY KEY DEFAULT (gen_random_uuid()), at TIMESTAMPTZ DEFAULT (now()))"
        );
        assert_eq!(rw("UPSERT INTO t VALUES (1)"), "INSERT OR REPLACE INTO t VALUES (1)");
        assert_eq!(
            rw("SELECT CAST(a AS date), CAST(b AS boolean), CAST(c AS foo)"),
            "SELECT date(a), moat_bool(b), CAST(c AS foo)"
        );
        assert!(to_sqlite("SELECT 1::regclass", &lex("SELECT 1::regclass").unwrap()).is_err());
    }
}
