//! Static type inference, for what SQLite cannot say before running a
//! statement: the types of `$n` parameters (from the columns they are
//! compared with or inserted into, casts, `LIMIT`), and the types of result
//! expressions without a declared type (`count(*)`, `1 + 2`, `a = b`,
//! `CAST(x AS date)`, `x::int8`, ...). Anything not recognised is `None`,
//! and the caller falls back to the first row's value type or TEXT.

use pgwire::api::Type;

use super::lexer::{matching_paren, split_commas, Kind, Token};
use super::types::from_decl;

/// What inference knows: the columns of the tables the statement names,
/// and the parameter types decided so far.
#[derive(Debug, Default)]
pub struct Env {
    /// (column name lowercased, type) of every table the statement uses.
    pub columns: Vec<(String, Option<Type>)>,
    /// Types of `$1`, `$2`, ... (index 0 is `$1`).
    pub params: Vec<Option<Type>>,
}

impl Env {
    fn column(&self, name: &str) -> Option<Type> {
        let n = name.to_ascii_lowercase();
        self.columns.iter().find(|(c, _)| *c == n).and_then(|(_, t)| t.clone())
    }
}

const VERBS: [&str; 7] = ["SELECT", "VALUES", "INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT"];

/// Index of the main verb (skipping a `WITH` clause).
pub fn main_verb(toks: &[Token]) -> Option<usize> {
    let mut depth = 0i32;
    for (k, t) in toks.iter().enumerate() {
        if t.is_op("(") {
            depth += 1;
        } else if t.is_op(")") {
            depth -= 1;
        } else if depth == 0 && VERBS.iter().any(|v| t.is(v)) {
            return Some(k);
        }
    }
    None
}

/// Names of the tables a statement reads or writes (after FROM, JOIN,
/// UPDATE, INTO, and in comma lists after FROM).
pub fn table_names(toks: &[Token]) -> Vec<String> {
    let mut out = Vec::new();
    let mut k = 0;
    while k < toks.len() {
        let t = &toks[k];
        if t.is("FROM") || t.is("JOIN") || t.is("UPDATE") || t.is("INTO") {
            let mut j = k + 1;
            loop {
                // Qualified names: keep the last part.
                let mut name = None;
                while j < toks.len() && matches!(toks[j].kind, Kind::Word | Kind::QIdent) {
                    name = toks[j].ident();
                    if toks.get(j + 1).is_some_and(|t| t.is_op(".")) {
                        j += 2;
                    } else {
                        j += 1;
                        break;
                    }
                }
                match name {
                    Some(n) if !["select", "values", "lateral", "only"].contains(&n.as_str()) => out.push(n),
                    _ => break,
                }
                // Skip an alias.
                if toks.get(j).is_some_and(|t| t.is("AS")) {
                    j += 1;
                }
                if toks
                    .get(j)
                    .is_some_and(|t| (t.kind == Kind::Word && !is_clause_word(t)) || t.kind == Kind::QIdent)
                {
                    j += 1;
                }
                if toks.get(j).is_some_and(|t| t.is_op(",")) && (t.is("FROM")) {
                    j += 1;
                    continue;
                }
                break;
            }
            k = j;
            continue;
        }
        k += 1;
    }
    out
}

fn is_clause_word(t: &Token) -> bool {
    const W: [&str; 28] = [
        "WHERE",
        "GROUP",
        "ORDER",
        "LIMIT",
        "OFFSET",
        "HAVING",
        "JOIN",
        "INNER",
        "LEFT",
        "RIGHT",
        "FULL",
        "CROSS",
        "NATURAL",
        "ON",
        "USING",
        "UNION",
        "EXCEPT",
        "INTERSECT",
        "SET",
        "VALUES",
        "DEFAULT",
        "SELECT",
        "RETURNING",
        "WINDOW",
        "FOR",
        "OUTER",
        "AS",
        "DO",
    ];
    W.iter().any(|w| t.is(w))
}

/// The result expressions of a statement (select list, first VALUES row,
/// RETURNING list); `None` when there is a `*` or no list.
pub fn result_exprs(toks: &[Token]) -> Option<Vec<&[Token]>> {
    let v = main_verb(toks)?;
    let list: &[Token] = if toks[v].is("SELECT") {
        let mut s = v + 1;
        if toks.get(s).is_some_and(|t| t.is("DISTINCT") || t.is("ALL")) {
            s += 1;
            if toks.get(s).is_some_and(|t| t.is("ON")) && toks.get(s + 1).is_some_and(|t| t.is_op("(")) {
                s = matching_paren(toks, s + 1)? + 1;
            }
        }
        const END: [&str; 13] = [
            "FROM",
            "WHERE",
            "GROUP",
            "HAVING",
            "ORDER",
            "LIMIT",
            "OFFSET",
            "UNION",
            "INTERSECT",
            "EXCEPT",
            "WINDOW",
            "FOR",
            "INTO",
        ];
        let e = depth0_find(toks, s, |t| END.iter().any(|w| t.is(w))).unwrap_or(toks.len());
        &toks[s..e]
    } else if toks[v].is("VALUES") {
        if !toks.get(v + 1).is_some_and(|t| t.is_op("(")) {
            return None;
        }
        let close = matching_paren(toks, v + 1)?;
        &toks[v + 2..close]
    } else {
        let r = depth0_find(toks, v, |t| t.is("RETURNING"))?;
        &toks[r + 1..]
    };
    let items = split_commas(list);
    if items.iter().any(|it| it.last().is_some_and(|t| t.is_op("*"))) {
        return None;
    }
    Some(items)
}

/// First index at or after `from` at parenthesis depth 0 matching `f`.
fn depth0_find(toks: &[Token], from: usize, f: impl Fn(&Token) -> bool) -> Option<usize> {
    let mut depth = 0i32;
    for (k, t) in toks.iter().enumerate().skip(from) {
        if t.is_op("(") {
            depth += 1;
        } else if t.is_op(")") {
            depth -= 1;
        } else if depth == 0 && f(t) {
            return Some(k);
        }
    }
    None
}

fn strip_alias(e: &[Token]) -> &[Token] {
    let n = e.len();
    if n >= 2 && e[n - 2].is("AS") {
        return &e[..n - 2];
    }
    if n >= 2 && matches!(e[n - 1].kind, Kind::Word | Kind::QIdent) {
        let last = &e[n - 1];
        let prev = &e[n - 2];
        const NOT_ALIAS: [&str; 10] = [
            "END",
            "NULL",
            "TRUE",
            "FALSE",
            "CURRENT_TIMESTAMP",
            "CURRENT_DATE",
            "CURRENT_TIME",
            "ISNULL",
            "NOTNULL",
            "COLLATE",
        ];
        const KW: [&str; 14] = [
            "NOT", "DISTINCT", "CASE", "ELSE", "THEN", "WHEN", "AND", "OR", "IS", "LIKE", "IN", "COLLATE", "BETWEEN",
            "EXISTS",
        ];
        let last_ok = last.kind == Kind::QIdent || !NOT_ALIAS.iter().any(|w| last.is(w));
        let prev_ok = match prev.kind {
            Kind::Op => prev.text == ")",
            Kind::Word => !KW.iter().any(|w| prev.is(w)),
            _ => true,
        };
        if last_ok && prev_ok {
            return &e[..n - 1];
        }
    }
    e
}

const CMP_OPS: [&str; 8] = ["=", "==", "<>", "!=", "<", ">", "<=", ">="];
const CMP_WORDS: [&str; 11] = [
    "IS", "IN", "LIKE", "ILIKE", "GLOB", "BETWEEN", "REGEXP", "MATCH", "ISNULL", "NOTNULL", "EXISTS",
];

fn numeric_kind(t: &Type) -> u8 {
    match *t {
        Type::INT2 | Type::INT4 | Type::INT8 => 1,
        Type::FLOAT4 | Type::FLOAT8 => 2,
        Type::NUMERIC => 3,
        _ => 0,
    }
}

/// The type of a result expression, when it can be told statically.
pub fn expr_type(e: &[Token], env: &Env) -> Option<Type> {
    let e = strip_alias(e);
    if e.is_empty() {
        return None;
    }
    // Scan depth-0 operators (parentheses and CASE ... END nest).
    let mut depth = 0i32;
    let mut bool_op = false;
    let mut concat = false;
    let mut arith = Vec::new();
    let mut bit = false;
    let mut json: Option<Type> = None;
    let mut last_cast = None;
    for (k, t) in e.iter().enumerate() {
        if t.is_op("(") || t.is("CASE") {
            depth += 1;
            continue;
        }
        if t.is_op(")") || t.is("END") {
            depth -= 1;
            continue;
        }
        if depth != 0 {
            continue;
        }
        if t.is("AND")
            || t.is("OR")
            || (t.is("NOT") && k == 0)
            || (t.is("EXISTS") && k == 0)
            || (t.kind == Kind::Op && CMP_OPS.contains(&t.text.as_str()))
            || CMP_WORDS.iter().any(|w| t.is(w))
        {
            bool_op = true;
        } else if t.is_op("||") {
            concat = true;
        } else if t.is_op("->>") {
            json = Some(Type::TEXT);
        } else if t.is_op("->") && json.is_none() {
            json = Some(Type::JSON);
        } else if ["+", "-", "*", "/", "%"].iter().any(|o| t.is_op(o)) && k > 0 && !is_operator(&e[k - 1]) {
            arith.push(k);
        } else if ["&", "|", "<<", ">>", "~"].iter().any(|o| t.is_op(o)) {
            bit = true;
        } else if t.is_op("::") {
            last_cast = Some(k);
        }
    }
    if bool_op {
        return Some(Type::BOOL);
    }
    if concat {
        return Some(Type::TEXT);
    }
    if let Some(j) = json {
        return Some(j);
    }
    if !arith.is_empty() {
        let mut parts = Vec::new();
        let mut s = 0;
        for &k in &arith {
            parts.push(&e[s..k]);
            s = k + 1;
        }
        parts.push(&e[s..]);
        let mut kind = 0u8;
        for p in parts {
            let t = expr_type(p, env)?;
            let nk = numeric_kind(&t);
            if nk == 0 {
                return None;
            }
            kind = kind.max(nk);
        }
        return Some(match kind {
            1 => Type::INT8,
            2 => Type::FLOAT8,
            _ => Type::NUMERIC,
        });
    }
    if bit {
        return Some(Type::INT8);
    }
    if let Some(k) = last_cast {
        return cast_type(&e[k + 1..]);
    }
    primary_type(e, env)
}

fn is_operator(t: &Token) -> bool {
    t.kind == Kind::Op && t.text != ")"
        || ["AND", "OR", "NOT", "THEN", "ELSE", "WHEN", "CASE"]
            .iter()
            .any(|w| t.is(w))
}

/// PostgreSQL's name for a result column written without an alias, when
/// SQLite's (the expression's text) would differ: a function's name, a
/// cast's operand or type name, `case`, or `?column?`. `None`: SQLite's name
/// is right (an alias, a column).
pub fn column_name(e: &[Token]) -> Option<String> {
    if e.is_empty() || strip_alias(e).len() != e.len() {
        return None;
    }
    if e.len() == 1 && e[0].kind == Kind::QIdent {
        return None;
    }
    if e.len() == 1 && e[0].kind == Kind::Word && !is_special_word(&e[0]) {
        return None;
    }
    if e.len() == 3 && e[1].is_op(".") {
        return None;
    }
    Some(pg_name(e).unwrap_or_else(|| "?column?".into()))
}

fn is_special_word(t: &Token) -> bool {
    const W: [&str; 12] = [
        "CURRENT_USER",
        "SESSION_USER",
        "CURRENT_ROLE",
        "CURRENT_CATALOG",
        "CURRENT_SCHEMA",
        "CURRENT_TIMESTAMP",
        "CURRENT_DATE",
        "CURRENT_TIME",
        "TRUE",
        "FALSE",
        "NULL",
        "USER",
    ];
    W.iter().any(|w| t.is(w))
}

fn pg_name(e: &[Token]) -> Option<String> {
    let mut depth = 0i32;
    let mut cast = None;
    for (k, t) in e.iter().enumerate() {
        if t.is_op("(") || t.is("CASE") {
            depth += 1;
        } else if t.is_op(")") || t.is("END") {
            depth -= 1;
        } else if depth == 0 && t.is_op("::") {
            cast = Some(k);
        }
    }
    if let Some(k) = cast {
        return pg_name(&e[..k]).or_else(|| cast_type(&e[k + 1..]).map(|t| t.name().to_string()));
    }
    let first = e.first()?;
    if e.len() == 1 {
        return match first.kind {
            Kind::Word if first.is("TRUE") || first.is("FALSE") => Some("bool".into()),
            Kind::Word if first.is("NULL") => None,
            Kind::Word | Kind::QIdent => first.ident(),
            _ => None,
        };
    }
    if e.len() == 3 && e[1].is_op(".") {
        return e[2].ident();
    }
    if first.is("CASE") {
        return Some("case".into());
    }
    if first.is_op("(") && matching_paren(e, 0) == Some(e.len() - 1) {
        return pg_name(&e[1..e.len() - 1]);
    }
    if first.kind == Kind::Word && e[1].is_op("(") {
        let close = matching_paren(e, 1)?;
        if first.is("CAST") && close == e.len() - 1 {
            let inner = &e[2..close];
            let as_at = depth0_find(inner, 0, |t| t.is("AS"))?;
            return pg_name(&inner[..as_at]).or_else(|| cast_type(&inner[as_at + 1..]).map(|t| t.name().to_string()));
        }
        if close == e.len() - 1 || e.get(close + 1).is_some_and(|t| t.is("OVER") || t.is("FILTER")) {
            return first.ident();
        }
    }
    None
}

/// The type named by the tokens of a cast target (`int8`, `varchar(10)`,
/// `timestamp with time zone`).
pub fn cast_type(t: &[Token]) -> Option<Type> {
    let words: Vec<String> = t
        .iter()
        .take_while(|t| t.kind == Kind::Word)
        .map(|t| t.text.clone())
        .collect();
    from_decl(&words.join(" "))
}

fn primary_type(e: &[Token], env: &Env) -> Option<Type> {
    let first = &e[0];
    if e.len() == 1 {
        return match first.kind {
            Kind::Int => Some(Type::INT8),
            Kind::Float => Some(Type::FLOAT8),
            Kind::Str => Some(Type::TEXT),
            Kind::Other if first.text.starts_with(['x', 'X']) => Some(Type::BYTEA),
            Kind::Param => first
                .text
                .parse::<usize>()
                .ok()
                .and_then(|n| env.params.get(n.checked_sub(1)?).cloned().flatten()),
            Kind::Word => match first.upper().as_str() {
                "TRUE" | "FALSE" => Some(Type::BOOL),
                "NULL" => None,
                "CURRENT_TIMESTAMP" | "LOCALTIMESTAMP" => Some(Type::TIMESTAMPTZ),
                "CURRENT_DATE" => Some(Type::DATE),
                "CURRENT_TIME" | "LOCALTIME" => Some(Type::TIME),
                "CURRENT_USER" | "SESSION_USER" | "CURRENT_ROLE" | "CURRENT_CATALOG" | "CURRENT_SCHEMA" | "USER" => {
                    env.column(&first.text).or(Some(Type::TEXT))
                }
                _ => env.column(&first.text),
            },
            Kind::QIdent => env.column(&first.text),
            _ => None,
        };
    }
    // Unary sign.
    if first.is_op("-") || first.is_op("+") {
        return expr_type(&e[1..], env);
    }
    // Qualified column.
    if e.len() == 3 && e[1].is_op(".") && matches!(e[2].kind, Kind::Word | Kind::QIdent) {
        return env.column(&e[2].text);
    }
    // ( expr ) or ( SELECT ... )
    if first.is_op("(") && matching_paren(e, 0) == Some(e.len() - 1) {
        let inner = &e[1..e.len() - 1];
        if inner
            .first()
            .is_some_and(|t| t.is("SELECT") || t.is("WITH") || t.is("VALUES"))
        {
            return result_exprs(inner).and_then(|items| items.first().and_then(|i| expr_type(i, env)));
        }
        return expr_type(inner, env);
    }
    if first.is("CASE") {
        return case_type(e, env);
    }
    if first.is("CAST") && e.get(1).is_some_and(|t| t.is_op("(")) && matching_paren(e, 1) == Some(e.len() - 1) {
        let inner = &e[2..e.len() - 1];
        let as_at = depth0_find(inner, 0, |t| t.is("AS"))?;
        return cast_type(&inner[as_at + 1..]);
    }
    // Function call: name ( args ), possibly with FILTER/OVER after.
    if first.kind == Kind::Word && e[1].is_op("(") {
        let close = matching_paren(e, 1)?;
        if close != e.len() - 1 && !e.get(close + 1).is_some_and(|t| t.is("OVER") || t.is("FILTER")) {
            return None;
        }
        let args = split_commas(&e[2..close]);
        return function_type(&first.text.to_ascii_lowercase(), &args, env);
    }
    None
}

fn case_type(e: &[Token], env: &Env) -> Option<Type> {
    // Branches: tokens after THEN / ELSE up to the next WHEN/ELSE/END of this CASE.
    let mut depth = 0i32;
    let mut start = None;
    let mut found = Vec::new();
    for (k, t) in e.iter().enumerate() {
        if t.is("CASE") || t.is_op("(") {
            depth += 1;
            continue;
        }
        if t.is("END") || t.is_op(")") {
            if depth == 1 && t.is("END") {
                if let Some(s) = start.take() {
                    found.push(&e[s..k]);
                }
            }
            depth -= 1;
            continue;
        }
        if depth == 1 && (t.is("WHEN") || t.is("ELSE") || t.is("THEN")) {
            if let Some(s) = start.take() {
                found.push(&e[s..k]);
            }
            if t.is("THEN") || t.is("ELSE") {
                start = Some(k + 1);
            }
        }
    }
    found.into_iter().find_map(|b| expr_type(b, env))
}

fn function_type(name: &str, args: &[&[Token]], env: &Env) -> Option<Type> {
    let arg = |i: usize| args.get(i).and_then(|a| expr_type(a, env));
    Some(match name {
        "count" | "length" | "octet_length" | "char_length" | "character_length" | "instr" | "unicode" | "changes"
        | "total_changes" | "last_insert_rowid" | "random" | "row_number" | "rank" | "dense_rank" | "ntile"
        | "sign" | "pg_backend_pid" | "unique_rowid" | "strpos" | "position" | "ascii" | "bit_length" => Type::INT8,
        "avg" | "total" | "round" | "sqrt" | "pow" | "power" | "exp" | "ln" | "log" | "log10" | "log2" | "sin"
        | "cos" | "tan" | "asin" | "acos" | "atan" | "atan2" | "pi" | "degrees" | "radians" | "percent_rank"
        | "cume_dist" | "julianday" | "ceil" | "ceiling" | "floor" | "trunc" | "mod" => {
            if ["ceil", "ceiling", "floor", "trunc", "mod"].contains(&name) {
                return arg(0);
            }
            Type::FLOAT8
        }
        "lower" | "upper" | "trim" | "ltrim" | "rtrim" | "btrim" | "substr" | "substring" | "replace" | "printf"
        | "format" | "quote" | "hex" | "char" | "chr" | "typeof" | "group_concat" | "string_agg" | "concat"
        | "concat_ws" | "date" | "time" | "datetime" | "strftime" | "version" | "current_database"
        | "current_schema" | "current_setting" | "set_config" | "sqlite_version" | "current_user" | "session_user"
        | "current_role" | "left" | "right" | "lpad" | "rpad" | "repeat" | "reverse" | "md5" | "initcap"
        | "soundex" | "json_type" | "timediff" | "to_char" | "split_part" | "unistr" | "quote_ident"
        | "quote_literal" => Type::TEXT,
        "json" | "json_object" | "json_array" | "json_group_array" | "json_group_object" | "json_set"
        | "json_insert" | "json_replace" | "json_remove" | "json_patch" | "json_build_object" | "json_build_array" => {
            Type::JSON
        }
        "jsonb" | "jsonb_object" | "jsonb_array" | "jsonb_build_object" | "jsonb_build_array" => Type::JSONB,
        "json_valid" | "moat_bool" => Type::BOOL,
        "now" | "transaction_timestamp" | "statement_timestamp" | "clock_timestamp" => Type::TIMESTAMPTZ,
        "gen_random_uuid" | "uuid_generate_v4" => Type::UUID,
        "randomblob" | "zeroblob" | "unhex" | "decode" => Type::BYTEA,
        "sum" | "min" | "max" | "abs" | "coalesce" | "ifnull" | "nullif" | "first_value" | "last_value" | "lag"
        | "lead" | "nth_value" | "likely" | "unlikely" | "likelihood" | "greatest" | "least" | "any_value" => {
            return (0..args.len().max(1)).find_map(arg);
        }
        "iif" | "if" => return arg(1).or_else(|| arg(2)),
        _ => return None,
    })
}

/// Parameter types inferred from where each `$n` appears (index 0 is `$1`).
pub fn param_types(toks: &[Token], n: usize, env: &Env) -> Vec<Option<Type>> {
    let mut out: Vec<Option<Type>> = vec![None; n];
    let set = |out: &mut Vec<Option<Type>>, p: &Token, t: Option<Type>| {
        if let (Ok(i), Some(t)) = (p.text.parse::<usize>(), t) {
            if i >= 1 && i <= out.len() && out[i - 1].is_none() {
                out[i - 1] = Some(t);
            }
        }
    };
    // INSERT INTO t [(cols)] VALUES (...), (...)
    if let Some(v) = main_verb(toks) {
        if toks[v].is("INSERT") || toks[v].is("REPLACE") || toks[v].is("UPSERT") {
            if let Some(into) = toks.iter().skip(v).position(|t| t.is("INTO")).map(|p| p + v) {
                let mut j = into + 1;
                while j + 1 < toks.len() && toks[j + 1].is_op(".") {
                    j += 2;
                }
                let cols: Option<Vec<String>> = if toks.get(j + 1).is_some_and(|t| t.is_op("(")) {
                    let close = matching_paren(toks, j + 1).unwrap_or(toks.len() - 1);
                    let list = split_commas(&toks[j + 2..close])
                        .iter()
                        .filter_map(|c| c.first().and_then(Token::ident))
                        .collect();
                    j = close + 1;
                    Some(list)
                } else {
                    j += 1;
                    None
                };
                let cols = cols.unwrap_or_else(|| env.columns.iter().map(|(c, _)| c.clone()).collect());
                if toks.get(j).is_some_and(|t| t.is("VALUES")) {
                    let mut k = j + 1;
                    while toks.get(k).is_some_and(|t| t.is_op("(")) {
                        let close = matching_paren(toks, k).unwrap_or(toks.len() - 1);
                        for (pos, item) in split_commas(&toks[k + 1..close]).iter().enumerate() {
                            if item.first().is_some_and(|t| t.kind == Kind::Param) {
                                let t = if item.len() >= 3 && item[1].is_op("::") {
                                    cast_type(&item[2..])
                                } else if item.len() == 1 {
                                    cols.get(pos).and_then(|c| env.column(c))
                                } else {
                                    None
                                };
                                set(&mut out, &item[0], t);
                            }
                        }
                        k = close + 1;
                        if toks.get(k).is_some_and(|t| t.is_op(",")) {
                            k += 1;
                        }
                    }
                }
            }
        }
    }
    let col_before = |k: usize| -> Option<Type> {
        // A column reference ending at k.
        let t = toks.get(k)?;
        match t.kind {
            Kind::Word | Kind::QIdent => env.column(&t.text),
            Kind::Int => Some(Type::INT8),
            Kind::Float => Some(Type::FLOAT8),
            _ => None,
        }
    };
    let col_after = |k: usize| -> Option<Type> {
        let mut j = k;
        while toks.get(j + 1).is_some_and(|t| t.is_op(".")) {
            j += 2;
        }
        let t = toks.get(j)?;
        match t.kind {
            Kind::Word | Kind::QIdent => env.column(&t.text),
            Kind::Int => Some(Type::INT8),
            Kind::Float => Some(Type::FLOAT8),
            _ => None,
        }
    };
    let is_cmp = |t: &Token| {
        (t.kind == Kind::Op && CMP_OPS.contains(&t.text.as_str())) || t.is("LIKE") || t.is("ILIKE") || t.is("GLOB")
    };
    let is_arith = |t: &Token| ["+", "-", "*", "/", "%"].iter().any(|o| t.is_op(o));
    for (k, p) in toks.iter().enumerate() {
        if p.kind != Kind::Param {
            continue;
        }
        // $n::type
        if toks.get(k + 1).is_some_and(|t| t.is_op("::")) {
            set(&mut out, p, cast_type(&toks[k + 2..]));
            continue;
        }
        // CAST($n AS type)
        if k >= 2 && toks[k - 1].is_op("(") && toks[k - 2].is("CAST") && toks.get(k + 1).is_some_and(|t| t.is("AS")) {
            set(&mut out, p, cast_type(&toks[k + 2..]));
            continue;
        }
        if k >= 1 && (toks[k - 1].is("LIMIT") || toks[k - 1].is("OFFSET")) {
            set(&mut out, p, Some(Type::INT8));
            continue;
        }
        if k >= 2 && (is_cmp(&toks[k - 1]) || is_arith(&toks[k - 1]) || toks[k - 1].is("BETWEEN")) {
            set(&mut out, p, col_before(k - 2));
        }
        if k >= 4 && toks[k - 1].is("AND") && toks[k - 2].kind == Kind::Param && toks[k - 3].is("BETWEEN") {
            set(&mut out, p, col_before(k - 4));
        }
        if toks.get(k + 1).is_some_and(|t| is_cmp(t) || is_arith(t)) {
            set(&mut out, p, col_after(k + 2));
        }
        // col [NOT] IN ($1, $2)
        let mut j = k;
        while j >= 2 && toks[j - 1].is_op(",") && toks[j - 2].kind == Kind::Param {
            j -= 2;
        }
        if j >= 2 && toks[j - 1].is_op("(") && toks[j - 2].is("IN") {
            let before = if j >= 4 && toks[j - 3].is("NOT") { j - 4 } else { j - 3 };
            if j >= 3 {
                set(&mut out, p, col_before(before));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::lexer::lex;
    use super::*;

    fn env() -> Env {
        Env {
            columns: vec![
                ("id".into(), Some(Type::INT8)),
                ("name".into(), Some(Type::TEXT)),
                ("price".into(), Some(Type::FLOAT8)),
                ("ok".into(), Some(Type::BOOL)),
            ],
            params: vec![Some(Type::INT4)],
        }
    }

    fn types(sql: &str) -> Vec<Option<Type>> {
        let t = lex(sql).unwrap();
        result_exprs(&t).unwrap().iter().map(|e| expr_type(e, &env())).collect()
    }

    #[test]
    fn results() {
        assert_eq!(
            types("SELECT count(*), 1 + 2, 1.5 * id, 'a' || name, id = 1, CAST(name AS date), $1, x::int2 AS y, NULL, (SELECT 1) z FROM t"),
            vec![
                Some(Type::INT8),
                Some(Type::INT8),
                Some(Type::FLOAT8),
                Some(Type::TEXT),
                Some(Type::BOOL),
                Some(Type::DATE),
                Some(Type::INT4),
                Some(Type::INT2),
                None,
                Some(Type::INT8)
            ]
        );
        assert_eq!(
            types("SELECT CASE WHEN id > 1 THEN 'a' ELSE 'b' END, max(price), coalesce(NULL, id), now(), version()"),
            vec![
                Some(Type::TEXT),
                Some(Type::FLOAT8),
                Some(Type::INT8),
                Some(Type::TIMESTAMPTZ),
                Some(Type::TEXT)
            ]
        );
        assert_eq!(
            types("INSERT INTO t VALUES (1) RETURNING id, name n"),
            vec![Some(Type::INT8), Some(Type::TEXT)]
        );
        assert!(result_exprs(&lex("SELECT * FROM t").unwrap()).is_none());
    }

    #[test]
    fn names() {
        let t = lex("SELECT count(*), a, t.b, x AS y, 1, 1::int4, b::text, current_user, CASE WHEN 1 THEN 2 END, \"Q\", lower(a) l").unwrap();
        let names: Vec<Option<String>> = result_exprs(&t).unwrap().iter().map(|e| column_name(e)).collect();
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            names,
            vec![
                s("count"),
                None,
                None,
                None,
                s("?column?"),
                s("int4"),
                s("b"),
                s("current_user"),
                s("case"),
                None,
                None
            ]
        );
    }

    #[test]
    fn params() {
        let p = |sql: &str, n| {
            param_types(
                &lex(sql).unwrap(),
                n,
                &Env {
                    columns: env().columns,
                    params: vec![],
                },
            )
        };
        assert_eq!(
            p("INSERT INTO t (name, id, ok) VALUES ($1, $2, $3), ($4::int2, 1, 2)", 4),
            vec![Some(Type::TEXT), Some(Type::INT8), Some(Type::BOOL), Some(Type::INT2)]
        );
        assert_eq!(
            p(
                "SELECT * FROM t WHERE id = $1 AND $2 < price AND name IN ($3, $4) LIMIT $5",
                6
            ),
            vec![
                Some(Type::INT8),
                Some(Type::FLOAT8),
                Some(Type::TEXT),
                Some(Type::TEXT),
                Some(Type::INT8),
                None
            ]
        );
        assert_eq!(
            p("UPDATE t SET ok = $1 WHERE t.id BETWEEN $2 AND $3", 3),
            vec![Some(Type::BOOL), Some(Type::INT8), Some(Type::INT8)]
        );
        assert_eq!(
            p("SELECT $1 + 1, CAST($2 AS float8)", 2),
            vec![Some(Type::INT8), Some(Type::FLOAT8)]
        );
        assert_eq!(
            table_names(&lex("SELECT 1 FROM a x, main.b JOIN c ON 1 WHERE 1").unwrap()),
            vec!["a", "b", "c"]
        );
    }
}
