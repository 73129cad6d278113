//! SQL users: `CREATE USER`, `ALTER USER`, `DROP USER`, `SHOW USERS`, kept in
//! the system table `moat_users` with SCRAM-SHA-256 verifiers only. `root`
//! always exists and cannot be dropped. Only `root` may manage users.
//!
//! The statement text is parsed here and never logged (it may hold a password).

use rusqlite::{params, Connection, OptionalExtension};

use crate::scram::Verifier;

/// Name of the system table of users (never reachable from user SQL).
pub const USERS_TABLE: &str = "moat_users";
/// Prefix of every system table; the SQL engine denies user SQL access to them.
pub const SYSTEM_PREFIX: &str = "moat_";
/// The superuser.
pub const ROOT: &str = "root";

/// An error of a user statement, with its SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    /// SQLSTATE.
    pub code: &'static str,
    /// Message for the client.
    pub message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> UserError {
    UserError {
        code,
        message: message.into(),
    }
}

fn db_err(e: rusqlite::Error) -> UserError {
    err("XX000", format!("user store error: {e}"))
}

/// Creates the system table and `root`.
pub fn ensure_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {USERS_TABLE} (name TEXT PRIMARY KEY NOT NULL, scram TEXT);
         INSERT OR IGNORE INTO {USERS_TABLE} (name, scram) VALUES ('{ROOT}', NULL);"
    ))
}

/// Whether a user exists.
pub fn exists(conn: &Connection, name: &str) -> Result<bool, UserError> {
    conn.query_row(
        &format!("SELECT 1 FROM {USERS_TABLE} WHERE name = ?1"),
        params![name],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
    .map_err(db_err)
}

/// The stored verifier of a user (`None`: no such user, or no password).
pub fn verifier(conn: &Connection, name: &str) -> Result<Option<Verifier>, UserError> {
    let text: Option<Option<String>> = conn
        .query_row(
            &format!("SELECT scram FROM {USERS_TABLE} WHERE name = ?1"),
            params![name],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?;
    Ok(text.flatten().and_then(|t| Verifier::parse(&t)))
}

/// Every user with its stored SCRAM verifier text (`None`: no password),
/// for the login cache.
pub fn all(conn: &Connection) -> rusqlite::Result<Vec<(String, Option<String>)>> {
    let mut st = conn.prepare_cached(&format!("SELECT name, scram FROM {USERS_TABLE}"))?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))?;
    rows.collect()
}

/// A user management statement.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UserStatement {
    /// `CREATE USER [IF NOT EXISTS] name [WITH] [PASSWORD 'x' | PASSWORD NULL]`
    Create {
        /// The user.
        name: String,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// The password, if any.
        password: Option<String>,
    },
    /// `ALTER USER [IF EXISTS] name [WITH] PASSWORD 'x' | PASSWORD NULL`
    AlterPassword {
        /// The user.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
        /// The new password; `None` removes it.
        password: Option<String>,
    },
    /// `DROP USER [IF EXISTS] a, b`
    Drop {
        /// The users.
        names: Vec<String>,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SHOW USERS`
    Show,
}

impl std::fmt::Debug for UserStatement {
    // Never print a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserStatement::Create { name, .. } => write!(f, "CREATE USER {name}"),
            UserStatement::AlterPassword { name, .. } => write!(f, "ALTER USER {name}"),
            UserStatement::Drop { names, .. } => write!(f, "DROP USER {}", names.join(", ")),
            UserStatement::Show => f.write_str("SHOW USERS"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Quoted(String),
    Str(String),
    Comma,
    Semi,
}

fn tokenize(sql: &str) -> Result<Vec<Tok>, UserError> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == ',' {
            chars.next();
            out.push(Tok::Comma);
        } else if c == ';' {
            chars.next();
            out.push(Tok::Semi);
        } else if c == '\'' || c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err(err("42601", "unterminated quoted string")),
                    Some(q) if q == c => {
                        if chars.peek() == Some(&c) {
                            chars.next();
                            s.push(c);
                        } else {
                            break;
                        }
                    }
                    Some(o) => s.push(o),
                }
            }
            out.push(if c == '\'' { Tok::Str(s) } else { Tok::Quoted(s) });
        } else if c.is_alphanumeric() || c == '_' || c == '-' || c == '.' {
            let mut s = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_alphanumeric() || d == '_' || d == '-' || d == '.' || d == '$' {
                    s.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(Tok::Word(s));
        } else {
            return Err(err("42601", format!("syntax error at or near {c:?}")));
        }
    }
    while out.last() == Some(&Tok::Semi) {
        out.pop();
    }
    Ok(out)
}

fn kw(t: Option<&Tok>, word: &str) -> bool {
    matches!(t, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word))
}

fn name_of(t: Option<&Tok>) -> Result<String, UserError> {
    match t {
        Some(Tok::Word(w)) => moat_pki::username::normalize_and_validate(w).map_err(|e| err("42602", e.to_string())),
        Some(Tok::Quoted(q)) => moat_pki::username::normalize_and_validate(q).map_err(|e| err("42602", e.to_string())),
        _ => Err(err("42601", "syntax error: a user name is expected")),
    }
}

/// Parses a user management statement; `None` when `sql` is not one.
pub fn parse(sql: &str) -> Option<Result<UserStatement, UserError>> {
    let head: Vec<String> = sql.split_whitespace().take(2).map(|w| w.to_ascii_uppercase()).collect();
    let is_user = matches!(
        head.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
        ["CREATE", "USER"]
            | ["CREATE", "ROLE"]
            | ["ALTER", "USER"]
            | ["ALTER", "ROLE"]
            | ["DROP", "USER"]
            | ["DROP", "ROLE"]
    ) || head.iter().map(|s| s.trim_end_matches(';')).collect::<Vec<_>>() == ["SHOW", "USERS"]
        || head.iter().map(|s| s.trim_end_matches(';')).collect::<Vec<_>>() == ["SHOW", "ROLES"];
    if !is_user {
        return None;
    }
    Some(tokenize(sql).and_then(|t| parse_tokens(&t)))
}

fn parse_password(toks: &[Tok], mut i: usize) -> Result<(Option<String>, usize), UserError> {
    if kw(toks.get(i), "WITH") {
        i += 1;
    }
    if kw(toks.get(i), "LOGIN") {
        i += 1;
    }
    if !kw(toks.get(i), "PASSWORD") {
        return Err(err(
            "42601",
            "syntax error: expected PASSWORD 'secret' or PASSWORD NULL",
        ));
    }
    match toks.get(i + 1) {
        Some(Tok::Str(s)) if s.is_empty() => Err(err(
            "22023",
            "a password cannot be empty; use PASSWORD NULL to remove it",
        )),
        Some(Tok::Str(s)) => Ok((Some(s.clone()), i + 2)),
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("NULL") => Ok((None, i + 2)),
        _ => Err(err(
            "42601",
            "syntax error: expected PASSWORD 'secret' or PASSWORD NULL",
        )),
    }
}

fn parse_tokens(t: &[Tok]) -> Result<UserStatement, UserError> {
    let end = |i: usize| {
        if i == t.len() {
            Ok(())
        } else {
            Err(err(
                "42601",
                "syntax error: unexpected words at the end of the statement",
            ))
        }
    };
    if kw(t.first(), "SHOW") {
        end(2)?;
        return Ok(UserStatement::Show);
    }
    if kw(t.first(), "CREATE") {
        let mut i = 2;
        let if_not_exists = kw(t.get(2), "IF") && kw(t.get(3), "NOT") && kw(t.get(4), "EXISTS");
        if if_not_exists {
            i = 5;
        }
        let name = name_of(t.get(i))?;
        i += 1;
        let mut password = None;
        if i < t.len() {
            if kw(t.get(i), "LOGIN") && i + 1 == t.len() {
                i += 1;
            } else if (kw(t.get(i), "WITH") && kw(t.get(i + 1), "LOGIN") && i + 2 == t.len()) || kw(t.get(i), "NOLOGIN")
            {
                i = t.len();
            } else {
                let (p, next) = parse_password(t, i)?;
                password = p;
                i = next;
            }
        }
        end(i)?;
        return Ok(UserStatement::Create {
            name,
            if_not_exists,
            password,
        });
    }
    if kw(t.first(), "ALTER") {
        let mut i = 2;
        let if_exists = kw(t.get(2), "IF") && kw(t.get(3), "EXISTS");
        if if_exists {
            i = 4;
        }
        let name = name_of(t.get(i))?;
        let (password, next) = parse_password(t, i + 1)?;
        end(next)?;
        return Ok(UserStatement::AlterPassword {
            name,
            if_exists,
            password,
        });
    }
    // DROP
    let mut i = 2;
    let if_exists = kw(t.get(2), "IF") && kw(t.get(3), "EXISTS");
    if if_exists {
        i = 4;
    }
    let mut names = vec![name_of(t.get(i))?];
    i += 1;
    while t.get(i) == Some(&Tok::Comma) {
        names.push(name_of(t.get(i + 1))?);
        i += 2;
    }
    end(i)?;
    Ok(UserStatement::Drop { names, if_exists })
}

/// What a user statement returns: a command tag, or rows for `SHOW USERS`
/// (`username`, `options`).
#[derive(Debug, PartialEq, Eq)]
pub enum UserResult {
    /// Command tag (`CREATE ROLE`, `ALTER ROLE`, `DROP ROLE`).
    Tag(&'static str),
    /// Rows of `SHOW USERS`: user name and options (`PASSWORD` when set).
    Rows(Vec<(String, String)>),
}

/// Runs a user statement as `current_user`.
pub fn execute(conn: &Connection, stmt: &UserStatement, current_user: &str) -> Result<UserResult, UserError> {
    execute_with(conn, stmt, current_user, |p| Verifier::new(p).encode())
}

/// The statement with every password replaced by its SCRAM-SHA-256
/// verifier (fresh salt), for the replication log: a password never enters
/// the log, and every replica stores the same verifier.
pub fn with_verifiers(stmt: &UserStatement) -> UserStatement {
    let mut s = stmt.clone();
    match &mut s {
        UserStatement::Create { password, .. } | UserStatement::AlterPassword { password, .. } => {
            if let Some(p) = password.as_mut() {
                *p = Verifier::new(p).encode();
            }
        }
        _ => {}
    }
    s
}

/// Runs a statement made by [`with_verifiers`] (its password fields hold
/// encoded verifiers).
pub fn execute_replicated(
    conn: &Connection,
    stmt: &UserStatement,
    current_user: &str,
) -> Result<UserResult, UserError> {
    execute_with(conn, stmt, current_user, |v| v.to_string())
}

fn execute_with(
    conn: &Connection,
    stmt: &UserStatement,
    current_user: &str,
    scram_of: impl Fn(&str) -> String,
) -> Result<UserResult, UserError> {
    if !matches!(stmt, UserStatement::Show) && current_user != ROOT {
        return Err(err(
            "42501",
            format!("user {current_user:?} does not have CREATEROLE privilege; only root may manage users"),
        ));
    }
    let reserved = |name: &str| {
        if ["node", "public", "none"].contains(&name) || name.starts_with("pg_") || name.starts_with("crdb_internal_") {
            Err(err("42939", format!("role name {name:?} is reserved")))
        } else {
            Ok(())
        }
    };
    match stmt {
        UserStatement::Create {
            name,
            if_not_exists,
            password,
        } => {
            reserved(name)?;
            if exists(conn, name)? {
                return if *if_not_exists {
                    Ok(UserResult::Tag("CREATE ROLE"))
                } else {
                    Err(err("42710", format!("a role/user named {name} already exists")))
                };
            }
            let scram = password.as_deref().map(&scram_of);
            conn.execute(
                &format!("INSERT INTO {USERS_TABLE} (name, scram) VALUES (?1, ?2)"),
                params![name, scram],
            )
            .map_err(db_err)?;
            Ok(UserResult::Tag("CREATE ROLE"))
        }
        UserStatement::AlterPassword {
            name,
            if_exists,
            password,
        } => {
            if !exists(conn, name)? {
                return if *if_exists {
                    Ok(UserResult::Tag("ALTER ROLE"))
                } else {
                    Err(err("42704", format!("role/user {name:?} does not exist")))
                };
            }
            let scram = password.as_deref().map(&scram_of);
            conn.execute(
                &format!("UPDATE {USERS_TABLE} SET scram = ?2 WHERE name = ?1"),
                params![name, scram],
            )
            .map_err(db_err)?;
            Ok(UserResult::Tag("ALTER ROLE"))
        }
        UserStatement::Drop { names, if_exists } => {
            for name in names {
                if name == ROOT {
                    return Err(err("42501", "cannot drop user root"));
                }
                if !exists(conn, name)? && !*if_exists {
                    return Err(err("42704", format!("role/user {name:?} does not exist")));
                }
            }
            for name in names {
                conn.execute(&format!("DELETE FROM {USERS_TABLE} WHERE name = ?1"), params![name])
                    .map_err(db_err)?;
            }
            Ok(UserResult::Tag("DROP ROLE"))
        }
        UserStatement::Show => {
            let mut st = conn
                .prepare(&format!(
                    "SELECT name, scram IS NOT NULL FROM {USERS_TABLE} ORDER BY name"
                ))
                .map_err(db_err)?;
            let rows = st
                .query_map([], |r| {
                    let has: bool = r.get(1)?;
                    Ok((
                        r.get::<_, String>(0)?,
                        if has { "PASSWORD".to_string() } else { String::new() },
                    ))
                })
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            Ok(UserResult::Rows(rows))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        ensure_schema(&c).unwrap();
        c
    }

    fn run(c: &Connection, sql: &str, as_user: &str) -> Result<UserResult, UserError> {
        execute(c, &parse(sql).unwrap()?, as_user)
    }

    #[test]
    fn lifecycle() {
        let c = db();
        assert!(parse("SELECT 1").is_none());
        assert_eq!(
            run(&c, "CREATE USER Alice WITH PASSWORD 'it''s'", "root").unwrap(),
            UserResult::Tag("CREATE ROLE")
        );
        assert!(verifier(&c, "alice").unwrap().unwrap().matches("it's"));
        assert_eq!(run(&c, "create user alice", "root").unwrap_err().code, "42710");
        run(&c, "CREATE USER IF NOT EXISTS alice", "root").unwrap();
        run(&c, "ALTER USER alice WITH PASSWORD NULL;", "root").unwrap();
        assert!(verifier(&c, "alice").unwrap().is_none());
        run(&c, "CREATE USER bob LOGIN", "root").unwrap();
        let rows = run(&c, "SHOW USERS", "alice").unwrap();
        assert_eq!(
            rows,
            UserResult::Rows(vec![
                ("alice".into(), "".into()),
                ("bob".into(), "".into()),
                ("root".into(), "".into())
            ])
        );
        assert_eq!(run(&c, "CREATE USER carol", "alice").unwrap_err().code, "42501");
        assert_eq!(run(&c, "DROP USER root", "root").unwrap_err().code, "42501");
        assert_eq!(run(&c, "DROP USER nobody", "root").unwrap_err().code, "42704");
        run(&c, "DROP USER IF EXISTS nobody, bob", "root").unwrap();
        assert!(!exists(&c, "bob").unwrap());
        assert_eq!(run(&c, "CREATE USER node", "root").unwrap_err().code, "42939");
        assert_eq!(run(&c, "CREATE USER \"bad name\"", "root").unwrap_err().code, "42602");
        assert_eq!(run(&c, "CREATE USER x PASSWORD ''", "root").unwrap_err().code, "22023");
        assert_eq!(run(&c, "ALTER USER x WITH", "root").unwrap_err().code, "42601");
    }

    #[test]
    fn debug_never_shows_passwords() {
        let s = parse("CREATE USER a PASSWORD 'hunter2'").unwrap().unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
