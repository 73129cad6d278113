//! What moat answers itself, before SQLite: transaction control, `SET` /
//! `SHOW` / `RESET` of session variables, user management, the statements
//! PostgreSQL clients send that SQLite does not know, and the refusals.
//! Everything else becomes SQLite SQL (see `rewrite`).

use std::collections::BTreeMap;

use super::error::SqlError;
use super::infer::main_verb;
use super::lexer::{lex, quote_literal, Kind, Token};
use crate::users::{self, UserError, UserStatement};

/// `server_version` reported by `SHOW server_version` (CockroachDB reports
/// a PostgreSQL 13 server too).
pub const SERVER_VERSION: &str = "13.0.0";
/// `server_version_num`.
pub const SERVER_VERSION_NUM: &str = "130000";
/// The one database.
pub const DATABASE: &str = "defaultdb";

/// What `SELECT version()` returns.
pub fn version_string() -> String {
    format!(
        "moat {} (SQL over SQLite {}; CockroachDB-compatible TLS and authentication)",
        env!("CARGO_PKG_VERSION"),
        rusqlite::version()
    )
}

/// A statement, classified.
#[derive(Debug)]
pub struct Statement {
    /// The original text.
    pub text: String,
    /// Its tokens.
    pub tokens: Vec<Token>,
    /// What it is.
    pub kind: StmtKind,
}

/// How a statement that returns no rows is tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// SELECT, VALUES, PRAGMA, EXPLAIN...
    Select,
    /// INSERT / REPLACE / UPSERT.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// Anything else: this tag.
    Tag(String),
}

/// The kinds of statements.
#[derive(Debug)]
pub enum StmtKind {
    /// Only comments.
    Empty,
    /// CREATE/ALTER/DROP USER, SHOW USERS (never logged: may hold a password).
    User(Result<UserStatement, UserError>),
    /// BEGIN / START TRANSACTION.
    Begin {
        /// READ ONLY.
        read_only: bool,
        /// SQLite's BEGIN mode.
        mode: &'static str,
    },
    /// COMMIT / END.
    Commit,
    /// ROLLBACK / ABORT.
    Rollback,
    /// SAVEPOINT name.
    Savepoint(String),
    /// RELEASE [SAVEPOINT] name.
    Release(String),
    /// ROLLBACK TO [SAVEPOINT] name.
    RollbackTo(String),
    /// SET name = value (`None`: DEFAULT).
    Set {
        /// Variable (lowercase).
        name: String,
        /// Value.
        value: Option<String>,
    },
    /// SET TRANSACTION ... / SET SESSION CHARACTERISTICS ...: accepted.
    SetTransaction {
        /// READ ONLY was asked.
        read_only: bool,
    },
    /// RESET name / RESET ALL (`None`).
    Reset(Option<String>),
    /// SHOW name / SHOW ALL (`None`).
    Show(Option<String>),
    /// SHOW NODES: the cluster's nodes (root only).
    ShowNodes,
    /// SET CLUSTER SETTING name = value / RESET CLUSTER SETTING name (`None`):
    /// replicated to every node (root only).
    SetClusterSetting {
        /// Setting name.
        name: String,
        /// New value; `None` restores the default.
        value: Option<String>,
    },
    /// SHOW CLUSTER SETTING name.
    ShowClusterSetting(String),
    /// DISCARD ALL: resets the session variables.
    Discard,
    /// A statement accepted and ignored, answered with this tag.
    NoOp(&'static str),
    /// Refused with this error.
    Refused(SqlError),
    /// For SQLite.
    Sql {
        /// The statement SQLite runs (rewritten), or generated for a SHOW.
        sqlite: Option<String>,
        /// The tag when it returns no rows.
        verb: Verb,
    },
}

impl StmtKind {
    /// Whether this statement controls transactions (a batch holding one
    /// is not wrapped in an implicit transaction).
    pub fn is_transaction_control(&self) -> bool {
        matches!(
            self,
            StmtKind::Begin { .. }
                | StmtKind::Commit
                | StmtKind::Rollback
                | StmtKind::Savepoint(_)
                | StmtKind::Release(_)
                | StmtKind::RollbackTo(_)
        )
    }
}

fn word_at(t: &[Token], i: usize, w: &str) -> bool {
    t.get(i).is_some_and(|t| t.is(w))
}

fn ident_at(t: &[Token], i: usize) -> Result<String, SqlError> {
    t.get(i)
        .and_then(Token::ident)
        .ok_or_else(|| SqlError::new("42601", "syntax error: a name is expected"))
}

/// Classifies one statement (as split by `lexer::split`).
pub fn classify(text: &str) -> Result<Statement, SqlError> {
    if let Some(user) = users::parse(text) {
        return Ok(Statement {
            text: text.to_string(),
            tokens: Vec::new(),
            kind: StmtKind::User(user),
        });
    }
    let tokens = lex(text)?;
    let kind = match console_session_call(&tokens) {
        Some(kind) => kind?,
        None => kind_of(&tokens)?,
    };
    Ok(Statement {
        text: text.to_string(),
        tokens,
        kind,
    })
}

/// A reference to PostgreSQL's (or CockroachDB's) system catalogs.
fn catalog_reference(t: &[Token]) -> Option<String> {
    const SCHEMAS: [&str; 4] = ["pg_catalog", "information_schema", "crdb_internal", "pg_toast"];
    for (k, x) in t.iter().enumerate() {
        if SCHEMAS.iter().any(|s| x.is(s))
            && t.get(k + 1).is_some_and(|d| d.is_op("."))
            && !t.get(k + 3).is_some_and(|p| p.is_op("("))
        {
            let name = t.get(k + 2).map(|n| n.text.as_str()).unwrap_or("");
            return Some(format!("{}.{name}", x.text.to_ascii_lowercase()));
        }
    }
    super::infer::table_names(t).into_iter().find(|n| n.starts_with("pg_"))
}

fn kind_of(t: &[Token]) -> Result<StmtKind, SqlError> {
    let Some(first) = t.first() else {
        return Ok(StmtKind::Empty);
    };
    if let Some(name) = catalog_reference(t) {
        return Ok(StmtKind::Refused(
            SqlError::unsupported(format!("the PostgreSQL system catalog {name}"))
                .hint("moat speaks PostgreSQL's protocol over SQLite; it has no pg_catalog or information_schema (use SHOW TABLES, SHOW COLUMNS FROM t)"),
        ));
    }
    let head = first.upper();
    let second = t.get(1).map(Token::upper).unwrap_or_default();
    let sql = |verb: Verb| -> Result<StmtKind, SqlError> { Ok(StmtKind::Sql { sqlite: None, verb }) };
    let refuse = |what: &str| -> Result<StmtKind, SqlError> { Ok(StmtKind::Refused(SqlError::unsupported(what))) };
    Ok(match head.as_str() {
        "BEGIN" | "START" => {
            if head == "START" && second != "TRANSACTION" {
                return Err(SqlError::new("42601", "syntax error at or near \"START\""));
            }
            let words: Vec<String> = t.iter().map(Token::upper).collect();
            let has = |w: &str| words.iter().any(|x| x == w);
            let read_only = words.windows(2).any(|w| w[0] == "READ" && w[1] == "ONLY");
            let mode = if has("IMMEDIATE") {
                "IMMEDIATE"
            } else if has("EXCLUSIVE") {
                "EXCLUSIVE"
            } else {
                "DEFERRED"
            };
            StmtKind::Begin { read_only, mode }
        }
        "COMMIT" | "END" => {
            if second == "PREPARED" {
                return refuse("two-phase commit (COMMIT PREPARED)");
            }
            StmtKind::Commit
        }
        "ROLLBACK" | "ABORT" => {
            if second == "PREPARED" {
                return refuse("two-phase commit (ROLLBACK PREPARED)");
            }
            match t.iter().position(|x| x.is("TO")) {
                Some(p) => {
                    let at = if word_at(t, p + 1, "SAVEPOINT") { p + 2 } else { p + 1 };
                    StmtKind::RollbackTo(ident_at(t, at)?)
                }
                None => StmtKind::Rollback,
            }
        }
        "SAVEPOINT" => StmtKind::Savepoint(ident_at(t, 1)?),
        "RELEASE" => StmtKind::Release(ident_at(t, if second == "SAVEPOINT" { 2 } else { 1 })?),
        "SET" => parse_set(&t[1..])?,
        "RESET" if second == "CLUSTER" && t.get(2).is_some_and(|x| x.is("SETTING")) => StmtKind::SetClusterSetting {
            name: var_name(&t[3..])?.0,
            value: None,
        },
        "RESET" => {
            if second == "ALL" {
                StmtKind::Reset(None)
            } else {
                StmtKind::Reset(Some(var_name(&t[1..])?.0))
            }
        }
        "SHOW" => parse_show(&t[1..])?,
        "USE" => StmtKind::Set {
            name: "database".into(),
            value: Some(ident_at(t, 1)?),
        },
        "DISCARD" => StmtKind::Discard,
        "DEALLOCATE" => StmtKind::NoOp("DEALLOCATE"),
        "TRUNCATE" => {
            let at = if second == "TABLE" { 2 } else { 1 };
            let name = ident_at(t, at)?;
            if t.len() > at + 1 {
                return refuse("TRUNCATE of several tables or with options");
            }
            StmtKind::Sql {
                sqlite: Some(format!("DELETE FROM {}", super::lexer::quote_ident(&name))),
                verb: Verb::Tag("TRUNCATE TABLE".into()),
            }
        }
        "PREPARE" | "EXECUTE" => refuse("SQL-level PREPARE/EXECUTE (use the extended query protocol)")?,
        "COPY" => refuse("COPY")?,
        "LISTEN" | "NOTIFY" | "UNLISTEN" => refuse("LISTEN/NOTIFY")?,
        "DECLARE" | "FETCH" | "MOVE" | "CLOSE" => refuse("cursors (DECLARE/FETCH/MOVE/CLOSE)")?,
        "LOCK" => refuse("LOCK TABLE")?,
        "GRANT" | "REVOKE" => refuse("GRANT/REVOKE (moat has users but no privileges: only root manages users)")?,
        "ATTACH" | "DETACH" => refuse("ATTACH/DETACH")?,
        "CALL" | "DO" => refuse(&format!("{head} (no stored procedures)"))?,
        "PRAGMA" => {
            if t.iter().any(|x| x.is_op("=")) {
                return Ok(StmtKind::Refused(SqlError::new(
                    "42501",
                    "PRAGMA assignments are not allowed: the node manages SQLite's settings",
                )));
            }
            sql(Verb::Select)?
        }
        "VACUUM" if t.iter().any(|x| x.is("INTO")) => refuse("VACUUM INTO")?,
        "EXPLAIN" if second == "ANALYZE" || second == "ANALYSE" || second == "(" => refuse("EXPLAIN ANALYZE")?,
        "CREATE" | "DROP" | "ALTER" => {
            let obj = t
                .iter()
                .skip(1)
                .map(Token::upper)
                .find(|w| {
                    ![
                        "UNIQUE",
                        "TEMP",
                        "TEMPORARY",
                        "VIRTUAL",
                        "OR",
                        "REPLACE",
                        "MATERIALIZED",
                        "IF",
                        "NOT",
                        "EXISTS",
                    ]
                    .contains(&w.as_str())
                })
                .unwrap_or_default();
            match obj.as_str() {
                "DATABASE" | "SCHEMA" => {
                    return refuse(&format!(
                        "{head} {obj} (a node has one database, {DATABASE}, schema public)"
                    ))
                }
                "SEQUENCE" | "TYPE" | "DOMAIN" | "EXTENSION" | "FUNCTION" | "PROCEDURE" | "ROLE" | "POLICY" => {
                    return refuse(&format!("{head} {obj}"))
                }
                _ => {}
            }
            if head == "ALTER" {
                // Renaming a table into the system prefix.
                if let Some(p) = t.windows(2).position(|w| w[0].is("RENAME") && w[1].is("TO")) {
                    if t.get(p + 2)
                        .and_then(Token::ident)
                        .is_some_and(|n| n.to_ascii_lowercase().starts_with(users::SYSTEM_PREFIX))
                    {
                        return Ok(StmtKind::Refused(system_name()));
                    }
                }
            }
            sql(Verb::Tag(format!("{head} {obj}")))?
        }
        "WITH" | "SELECT" | "VALUES" | "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "UPSERT" | "(" | "" => {
            let verb = match main_verb(t).map(|i| t[i].upper()).as_deref() {
                Some("INSERT" | "REPLACE" | "UPSERT") => Verb::Insert,
                Some("UPDATE") => Verb::Update,
                Some("DELETE") => Verb::Delete,
                _ => Verb::Select,
            };
            sql(verb)?
        }
        other => sql(Verb::Tag(other.to_string()))?,
    })
}

// ------------------------------------------------ console sessions over SQL

/// The SQL function root calls to get a console session for a user
/// (`moat auth-session login`, CockroachDB's `auth-session login`).
pub const CONSOLE_SESSION_FN: &str = "moat_create_console_session";
/// The computed, root-only setting the call is answered through:
/// `moat_create_console_session/<user>/<seconds>`.
const CONSOLE_SESSION_VAR: &str = "moat_create_console_session/";

/// `SELECT moat_create_console_session('user' [, 'lifetime'])`, the whole
/// statement, answers one row, one column (`moat_create_console_session`):
/// the cookie `moat_session=<id>` of a new console session for the user,
/// valid for `lifetime` (`1h` by default, at most `30d`; `90m`, `2h`, `1d`).
/// Only root may run it: it is answered as the computed setting
/// `moat_create_console_session/<user>/<seconds>` (see [`Vars::get`]),
/// which knows the session's user; anyone else gets 42704. The session is
/// honoured only while the user exists.
fn console_session_call(t: &[Token]) -> Option<Result<StmtKind, SqlError>> {
    let t = match t.last() {
        Some(x) if x.is_op(";") => &t[..t.len() - 1],
        _ => t,
    };
    if t.len() < 2 || !t[0].is("SELECT") || !t[1].is(CONSOLE_SESSION_FN) {
        return None;
    }
    let usage = || {
        SqlError::new(
            "42601",
            format!("syntax error: expected SELECT {CONSOLE_SESSION_FN}('user' [, 'lifetime'])"),
        )
    };
    let args: Vec<&Token> = match t.get(2..) {
        Some([open, a, close]) if open.is_op("(") && close.is_op(")") => vec![a],
        Some([open, a, comma, b, close]) if open.is_op("(") && comma.is_op(",") && close.is_op(")") => vec![a, b],
        _ => return Some(Err(usage())),
    };
    if args.iter().any(|a| a.kind != Kind::Str) {
        return Some(Err(usage()));
    }
    let user = match moat_pki::username::normalize_and_validate(&args[0].text) {
        Ok(u) => u,
        Err(e) => return Some(Err(SqlError::new("42602", e.to_string()))),
    };
    let ttl = match args.get(1) {
        None => crate::http::session::DEFAULT_TTL,
        Some(a) => match moat_pki::lifetime::parse_lifetime(&a.text) {
            Ok(d) if d <= time::Duration::try_from(crate::http::session::MAX_TTL).unwrap_or(time::Duration::MAX) => {
                std::time::Duration::from_secs(d.whole_seconds().max(1) as u64)
            }
            Ok(_) => return Some(Err(SqlError::new("22023", "a console session lasts at most 30d"))),
            Err(e) => return Some(Err(SqlError::new("22023", e.to_string()))),
        },
    };
    Some(Ok(StmtKind::Show(Some(format!(
        "{CONSOLE_SESSION_VAR}{user}/{}",
        ttl.as_secs()
    )))))
}

/// Answers the computed setting behind [`console_session_call`]: a new
/// session's cookie when the session's user is root, else nothing.
fn console_session_setting(current_user: &str, rest: &str) -> Option<String> {
    let (user, secs) = rest.rsplit_once('/')?;
    let secs: u64 = secs.parse().ok()?;
    if current_user != users::ROOT || user.is_empty() {
        return None;
    }
    Some(crate::http::session::issue_for_sql(
        user,
        std::time::Duration::from_secs(secs),
    ))
}

fn system_name() -> SqlError {
    SqlError::new(
        "42501",
        format!(
            "permission denied: names starting with {:?} are reserved for system tables",
            users::SYSTEM_PREFIX
        ),
    )
}

/// A variable name (`a` or `a.b`) at the start of `t`; returns it lowercase
/// and the number of tokens used.
fn var_name(t: &[Token]) -> Result<(String, usize), SqlError> {
    let mut name = t
        .first()
        .and_then(Token::ident)
        .ok_or_else(|| SqlError::new("42601", "syntax error: a variable name is expected"))?;
    let mut used = 1;
    while t.get(used).is_some_and(|x| x.is_op(".")) {
        name.push('.');
        name.push_str(
            &t.get(used + 1)
                .and_then(Token::ident)
                .ok_or_else(|| SqlError::new("42601", "syntax error in variable name"))?,
        );
        used += 2;
    }
    Ok((name.to_ascii_lowercase(), used))
}

/// The value of a SET: items joined with ", "; `None` for DEFAULT.
fn set_value(t: &[Token]) -> Result<Option<String>, SqlError> {
    if t.is_empty() {
        return Err(SqlError::new("42601", "syntax error: SET needs a value"));
    }
    if t.len() == 1 && (t[0].is("DEFAULT") || t[0].is("LOCAL")) {
        return Ok(None);
    }
    let mut items = Vec::new();
    let mut cur = String::new();
    for x in t {
        if x.is_op(",") {
            items.push(std::mem::take(&mut cur));
            continue;
        }
        match x.kind {
            Kind::Str | Kind::QIdent | Kind::Word | Kind::Int | Kind::Float => cur.push_str(&x.text),
            Kind::Op if x.text == "-" || x.text == "+" || x.text == "." => cur.push_str(&x.text),
            _ => {
                return Err(SqlError::new(
                    "42601",
                    format!("syntax error at or near {:?} in SET", x.text),
                ))
            }
        }
    }
    items.push(cur);
    Ok(Some(items.join(", ")))
}

fn parse_set(t: &[Token]) -> Result<StmtKind, SqlError> {
    let mut t = t;
    if t.first().is_some_and(|x| x.is("SESSION") || x.is("LOCAL")) {
        if t.get(1).is_some_and(|x| x.is("AUTHORIZATION")) {
            return Ok(StmtKind::Refused(SqlError::new(
                "42501",
                "SET SESSION AUTHORIZATION is not allowed: a session keeps the user it authenticated as",
            )));
        }
        if t.get(1).is_some_and(|x| x.is("CHARACTERISTICS")) {
            return Ok(StmtKind::SetTransaction {
                read_only: t.windows(2).any(|w| w[0].is("READ") && w[1].is("ONLY")),
            });
        }
        t = &t[1..];
    }
    let Some(first) = t.first() else {
        return Err(SqlError::new("42601", "syntax error: SET what?"));
    };
    if first.is("CLUSTER") && t.get(1).is_some_and(|x| x.is("SETTING")) {
        let (name, used) = var_name(&t[2..])?;
        let rest = &t[2 + used..];
        let rest = match rest.first() {
            Some(x) if x.is_op("=") || x.is("TO") => &rest[1..],
            _ => {
                return Err(SqlError::new(
                    "42601",
                    format!("syntax error: expected = or TO after SET CLUSTER SETTING {name}"),
                ))
            }
        };
        let value = if rest.len() == 1 && rest[0].kind == Kind::Str {
            Some(rest[0].text.clone())
        } else {
            set_value(rest)?
        };
        return Ok(StmtKind::SetClusterSetting { name, value });
    }
    if first.is("TRANSACTION") {
        return Ok(StmtKind::SetTransaction {
            read_only: t.windows(2).any(|w| w[0].is("READ") && w[1].is("ONLY")),
        });
    }
    if first.is("ROLE") {
        return Ok(StmtKind::Refused(SqlError::new(
            "42501",
            "SET ROLE is not allowed: a session keeps the user it authenticated as",
        )));
    }
    if first.is("TIME") && t.get(1).is_some_and(|x| x.is("ZONE")) {
        let rest = &t[2..];
        let rest = if rest.first().is_some_and(|x| x.is("INTERVAL")) {
            &rest[1..]
        } else {
            rest
        };
        return Ok(StmtKind::Set {
            name: "timezone".into(),
            value: set_value(rest)?,
        });
    }
    if first.is("NAMES") {
        return Ok(StmtKind::Set {
            name: "client_encoding".into(),
            value: set_value(&t[1..])?,
        });
    }
    if first.is("SCHEMA") {
        return Ok(StmtKind::Set {
            name: "search_path".into(),
            value: set_value(&t[1..])?,
        });
    }
    let (name, used) = var_name(t)?;
    let rest = &t[used..];
    let rest = match rest.first() {
        Some(x) if x.is_op("=") || x.is("TO") => &rest[1..],
        _ => {
            return Err(SqlError::new(
                "42601",
                format!("syntax error: expected = or TO after SET {name}"),
            ))
        }
    };
    Ok(StmtKind::Set {
        name,
        value: set_value(rest)?,
    })
}

fn parse_show(t: &[Token]) -> Result<StmtKind, SqlError> {
    let up: Vec<String> = t.iter().map(Token::upper).collect();
    let words: Vec<&str> = up.iter().map(String::as_str).collect();
    let filter_system = format!(
        "name NOT LIKE '{}%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        users::SYSTEM_PREFIX.replace('_', "\\_")
    );
    Ok(match words.as_slice() {
        ["ALL"] => StmtKind::Show(None),
        ["NODES"] => StmtKind::ShowNodes,
        ["CLUSTER", "SETTING", ..] => StmtKind::ShowClusterSetting(var_name(&t[2..])?.0),
        ["TIME", "ZONE"] => StmtKind::Show(Some("timezone".into())),
        ["TRANSACTION", "ISOLATION", "LEVEL"] => StmtKind::Show(Some("transaction_isolation".into())),
        ["TRANSACTION", "STATUS"] => StmtKind::Show(Some("transaction_status".into())),
        ["SESSION_USER"] => StmtKind::Show(Some("session_user".into())),
        ["TABLES"] => StmtKind::Sql {
            sqlite: Some(format!(
                "SELECT 'public' AS schema_name, name AS table_name, type FROM sqlite_schema \
                 WHERE type IN ('table', 'view') AND {filter_system} ORDER BY name"
            )),
            verb: Verb::Select,
        },
        ["DATABASES"] => StmtKind::Sql {
            sqlite: Some(format!("SELECT '{DATABASE}' AS database_name")),
            verb: Verb::Select,
        },
        ["COLUMNS", "FROM", ..] | ["CREATE", "TABLE", ..] | ["CREATE", ..] => {
            let at = if words[0] == "COLUMNS" || words.get(1) == Some(&"TABLE") {
                2
            } else {
                1
            };
            let name = t
                .get(at)
                .and_then(Token::ident)
                .ok_or_else(|| SqlError::new("42601", "syntax error: a table name is expected"))?;
            if name.to_ascii_lowercase().starts_with(users::SYSTEM_PREFIX) {
                return Ok(StmtKind::Refused(system_name()));
            }
            let sqlite = if words[0] == "COLUMNS" {
                format!(
                    "SELECT name AS column_name, type AS data_type, NOT \"notnull\" AS is_nullable, \
                     dflt_value AS column_default FROM pragma_table_info({}) ORDER BY cid",
                    quote_literal(&name)
                )
            } else {
                format!(
                    "SELECT name AS table_name, sql AS create_statement FROM sqlite_schema WHERE name = {} AND {filter_system}",
                    quote_literal(&name)
                )
            };
            StmtKind::Sql {
                sqlite: Some(sqlite),
                verb: Verb::Select,
            }
        }
        _ => StmtKind::Show(Some(var_name(t)?.0)),
    })
}

// ------------------------------------------------------- session variables

/// The variables of a session.
#[derive(Debug, Clone)]
pub struct Vars {
    map: BTreeMap<String, String>,
    user: String,
}

/// (name, canonical spelling, default, read-only, reported to the client
/// in ParameterStatus, description)
const KNOWN: &[(&str, &str, &str, bool, bool, &str)] = &[
    (
        "application_name",
        "application_name",
        "",
        false,
        true,
        "the client's application name",
    ),
    (
        "bytea_output",
        "bytea_output",
        "hex",
        false,
        false,
        "output format of bytea (hex only)",
    ),
    (
        "client_encoding",
        "client_encoding",
        "UTF8",
        false,
        true,
        "the client's character set (UTF8 only)",
    ),
    (
        "client_min_messages",
        "client_min_messages",
        "notice",
        false,
        false,
        "lowest message level sent",
    ),
    ("database", "database", DATABASE, false, false, "the current database"),
    (
        "datestyle",
        "DateStyle",
        "ISO, MDY",
        false,
        true,
        "display format of dates",
    ),
    (
        "default_transaction_isolation",
        "default_transaction_isolation",
        "serializable",
        false,
        false,
        "always serializable",
    ),
    (
        "default_transaction_read_only",
        "default_transaction_read_only",
        "off",
        false,
        false,
        "new transactions are read only",
    ),
    (
        "extra_float_digits",
        "extra_float_digits",
        "1",
        false,
        false,
        "floats are always shown with the shortest exact digits",
    ),
    (
        "idle_in_transaction_session_timeout",
        "idle_in_transaction_session_timeout",
        "0",
        false,
        false,
        "accepted, not enforced",
    ),
    (
        "integer_datetimes",
        "integer_datetimes",
        "on",
        true,
        false,
        "datetimes are integers",
    ),
    (
        "intervalstyle",
        "IntervalStyle",
        "postgres",
        false,
        true,
        "display format of intervals",
    ),
    (
        "lock_timeout",
        "lock_timeout",
        "0",
        false,
        false,
        "accepted; SQLite waits 5 s for locks",
    ),
    (
        "max_identifier_length",
        "max_identifier_length",
        "128",
        true,
        false,
        "longest identifier",
    ),
    ("node_id", "node_id", "1", true, false, "the node's id"),
    (
        "search_path",
        "search_path",
        "public",
        false,
        false,
        "one schema: public",
    ),
    (
        "server_encoding",
        "server_encoding",
        "UTF8",
        true,
        false,
        "the server's character set",
    ),
    (
        "server_version",
        "server_version",
        SERVER_VERSION,
        true,
        false,
        "the PostgreSQL version moat speaks",
    ),
    (
        "server_version_num",
        "server_version_num",
        SERVER_VERSION_NUM,
        true,
        false,
        "the same as a number",
    ),
    (
        "standard_conforming_strings",
        "standard_conforming_strings",
        "on",
        false,
        true,
        "backslashes are literal in '...'",
    ),
    (
        "statement_timeout",
        "statement_timeout",
        "0",
        false,
        false,
        "accepted, not enforced",
    ),
    (
        "timezone",
        "TimeZone",
        "UTC",
        false,
        true,
        "accepted; timestamps are shown in UTC",
    ),
    (
        "transaction_isolation",
        "transaction_isolation",
        "serializable",
        false,
        false,
        "SQLite transactions are serializable",
    ),
];

fn known(name: &str) -> Option<&'static (&'static str, &'static str, &'static str, bool, bool, &'static str)> {
    KNOWN.iter().find(|k| k.0 == name)
}

fn canonical_name(name: &str) -> String {
    match name {
        "time_zone" => "timezone".into(),
        "names" => "client_encoding".into(),
        "transaction_isolation_level" => "transaction_isolation".into(),
        n => n.to_string(),
    }
}

impl Vars {
    /// The defaults, for `user`.
    pub fn new(user: &str) -> Vars {
        Vars {
            map: KNOWN.iter().map(|k| (k.0.to_string(), k.2.to_string())).collect(),
            user: user.to_string(),
        }
    }

    /// The value of a variable (`None`: unknown).
    pub fn get(&self, name: &str, in_tx: Option<&str>) -> Option<String> {
        if let Some(rest) = name.strip_prefix(CONSOLE_SESSION_VAR) {
            return console_session_setting(&self.user, rest);
        }
        let name = canonical_name(&name.to_ascii_lowercase());
        match name.as_str() {
            "is_superuser" => Some(if self.user == users::ROOT { "on" } else { "off" }.into()),
            "session_user" | "session_authorization" | "current_user" => Some(self.user.clone()),
            "transaction_read_only" => Some(if in_tx == Some("read only") { "on" } else { "off" }.into()),
            "transaction_status" => in_tx.map(|s| s.to_string()).or(Some("NoTxn".into())),
            "crdb_version" => Some(version_string()),
            "server_version" => Some(SERVER_VERSION.into()),
            "server_version_num" => Some(SERVER_VERSION_NUM.into()),
            _ => self.map.get(&name).cloned(),
        }
    }

    /// Sets a variable; returns the (canonical name, value) to report to
    /// the client in a ParameterStatus, if it is reported.
    pub fn set(&mut self, name: &str, value: Option<&str>) -> Result<Option<(String, String)>, SqlError> {
        let name = canonical_name(name);
        let k = known(&name);
        if let Some(k) = k {
            if k.3 {
                return Err(SqlError::new(
                    "55P02",
                    format!("parameter \"{}\" cannot be changed", k.1),
                ));
            }
        }
        if [
            "is_superuser",
            "session_user",
            "session_authorization",
            "role",
            "current_user",
        ]
        .contains(&name.as_str())
        {
            return Err(SqlError::new(
                "42501",
                format!("parameter \"{name}\" cannot be changed: a session keeps the user it authenticated as"),
            ));
        }
        let value = match value {
            None => k.map(|k| k.2.to_string()).unwrap_or_default(),
            Some(v) => v.to_string(),
        };
        let low = value.to_ascii_lowercase();
        let invalid = |why: &str| {
            Err(SqlError::new(
                "22023",
                format!("invalid value for parameter \"{name}\": {value:?} ({why})"),
            ))
        };
        match name.as_str() {
            "client_encoding" if !["utf8", "utf-8", "unicode"].contains(&low.as_str()) => {
                return invalid("moat speaks UTF8 only")
            }
            "standard_conforming_strings" if !["on", "true", "1", "yes"].contains(&low.as_str()) => {
                return invalid("only on is supported")
            }
            "bytea_output" if low != "hex" => return invalid("only hex is supported"),
            "datestyle" if !low.contains("iso") && !low.is_empty() => return invalid("only ISO output is supported"),
            "database" if value != DATABASE => {
                return Err(SqlError::new("3D000", format!("database \"{value}\" does not exist"))
                    .hint(format!("a node has one database: {DATABASE}")))
            }
            "extra_float_digits" if low.parse::<i32>().is_err() => return invalid("an integer is expected"),
            _ => {}
        }
        let value = if name == "client_encoding" {
            "UTF8".to_string()
        } else {
            value
        };
        self.map.insert(name.clone(), value.clone());
        Ok(k.filter(|k| k.4).map(|k| (k.1.to_string(), value)))
    }

    /// RESET ALL; returns the reported variables.
    pub fn reset_all(&mut self) -> Vec<(String, String)> {
        let user = self.user.clone();
        *self = Vars::new(&user);
        KNOWN
            .iter()
            .filter(|k| k.4)
            .map(|k| (k.1.to_string(), k.2.to_string()))
            .collect()
    }

    /// The canonical spelling of a variable (the SHOW column name).
    pub fn display_name(name: &str) -> String {
        if name.starts_with(CONSOLE_SESSION_VAR) {
            return CONSOLE_SESSION_FN.to_string();
        }
        let name = canonical_name(name);
        known(&name).map(|k| k.1.to_string()).unwrap_or(name)
    }

    /// `SHOW ALL`: (name, setting, description).
    pub fn all(&self, in_tx: Option<&str>) -> Vec<(String, String, String)> {
        let mut out: Vec<(String, String, String)> = self
            .map
            .iter()
            .map(|(n, v)| {
                let desc = known(n).map(|k| k.5).unwrap_or("");
                (Vars::display_name(n), v.clone(), desc.to_string())
            })
            .collect();
        for extra in ["is_superuser", "session_user", "transaction_read_only"] {
            out.push((extra.into(), self.get(extra, in_tx).unwrap_or_default(), String::new()));
        }
        out.sort_by_key(|a| a.0.to_ascii_lowercase());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> StmtKind {
        classify(s).unwrap().kind
    }

    #[test]
    fn classifies() {
        assert!(matches!(
            kind("BEGIN"),
            StmtKind::Begin {
                read_only: false,
                mode: "DEFERRED"
            }
        ));
        assert!(matches!(
            kind("start transaction read only"),
            StmtKind::Begin { read_only: true, .. }
        ));
        assert!(matches!(kind("END"), StmtKind::Commit));
        assert!(matches!(kind("ROLLBACK TO SAVEPOINT s1"), StmtKind::RollbackTo(ref s) if s == "s1"));
        assert!(
            matches!(kind("SET search_path TO public, \"x\""), StmtKind::Set { ref name, value: Some(ref v) } if name == "search_path" && v == "public, x")
        );
        assert!(matches!(kind("SET TIME ZONE 'UTC'"), StmtKind::Set { ref name, .. } if name == "timezone"));
        assert!(
            matches!(kind("set session extra_float_digits = 3"), StmtKind::Set { ref value, .. } if value.as_deref() == Some("3"))
        );
        assert!(matches!(
            kind("SET application_name = DEFAULT"),
            StmtKind::Set { value: None, .. }
        ));
        assert!(matches!(kind("SHOW server_version"), StmtKind::Show(Some(ref n)) if n == "server_version"));
        assert!(
            matches!(kind("SHOW TRANSACTION ISOLATION LEVEL"), StmtKind::Show(Some(ref n)) if n == "transaction_isolation")
        );
        assert!(matches!(kind("SHOW USERS"), StmtKind::User(Ok(UserStatement::Show))));
        assert!(matches!(kind("SET ROLE admin"), StmtKind::Refused(_)));
        assert!(matches!(kind("COPY t FROM STDIN"), StmtKind::Refused(_)));
        assert!(matches!(
            kind("INSERT INTO t VALUES (1)"),
            StmtKind::Sql { verb: Verb::Insert, .. }
        ));
        assert!(matches!(
            kind("WITH x AS (SELECT 1) DELETE FROM t"),
            StmtKind::Sql { verb: Verb::Delete, .. }
        ));
        assert!(
            matches!(kind("CREATE UNIQUE INDEX i ON t (a)"), StmtKind::Sql { verb: Verb::Tag(ref t), .. } if t == "CREATE INDEX")
        );
        assert!(matches!(kind("ALTER TABLE t RENAME TO moat_x"), StmtKind::Refused(_)));
        assert!(matches!(kind("PRAGMA synchronous = OFF"), StmtKind::Refused(_)));
        assert!(matches!(kind("-- nothing"), StmtKind::Empty));
    }

    #[test]
    fn console_sessions() {
        let StmtKind::Show(Some(var)) = kind("select moat_create_console_session('Alice', '2h');") else {
            panic!("not intercepted");
        };
        assert_eq!(var, "moat_create_console_session/alice/7200");
        assert_eq!(Vars::display_name(&var), CONSOLE_SESSION_FN);
        assert!(
            matches!(kind("SELECT moat_create_console_session('bob')"), StmtKind::Show(Some(ref v)) if v.ends_with("/bob/3600"))
        );
        assert_eq!(
            classify("SELECT moat_create_console_session(1)").unwrap_err().code,
            "42601"
        );
        assert_eq!(
            classify("SELECT moat_create_console_session('a', '31d')")
                .unwrap_err()
                .code,
            "22023"
        );
        assert_eq!(
            classify("SELECT moat_create_console_session('bad name')")
                .unwrap_err()
                .code,
            "42602"
        );
        let cookie = Vars::new("root").get(&var, None).unwrap();
        let token = cookie.strip_prefix("moat_session=").unwrap();
        let s = crate::http::session::SessionStore::global().lookup(token).unwrap();
        assert_eq!((s.user.as_str(), s.origin), ("alice", "sql"));
        assert!(Vars::new("alice").get(&var, None).is_none(), "only root");
    }

    #[test]
    fn vars() {
        let mut v = Vars::new("alice");
        assert_eq!(v.get("server_version", None).unwrap(), SERVER_VERSION);
        assert_eq!(
            v.set("application_name", Some("x")).unwrap(),
            Some(("application_name".into(), "x".into()))
        );
        assert_eq!(v.set("timezone", Some("Europe/Paris")).unwrap().unwrap().0, "TimeZone");
        assert_eq!(v.set("client_encoding", Some("latin1")).unwrap_err().code, "22023");
        assert_eq!(v.set("server_version", Some("1")).unwrap_err().code, "55P02");
        assert_eq!(v.set("database", Some("other")).unwrap_err().code, "3D000");
        v.set("myapp.x", Some("1")).unwrap();
        assert_eq!(v.get("myapp.x", None).unwrap(), "1");
        assert_eq!(v.get("is_superuser", None).unwrap(), "off");
        assert!(v.get("nope", None).is_none());
        v.reset_all();
        assert_eq!(v.get("application_name", None).unwrap(), "");
    }
}
