//! SQL errors with their SQLSTATE, and the mapping of SQLite's errors to
//! PostgreSQL's codes.

use pgwire::error::{ErrorInfo, PgWireError, SEVERITY_ERROR};
use rusqlite::ErrorCode;

/// An error for the client: SQLSTATE, message, optional detail and hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// SQLSTATE.
    pub code: &'static str,
    /// Primary message.
    pub message: String,
    /// Detail.
    pub detail: Option<String>,
    /// Hint.
    pub hint: Option<String>,
}

impl SqlError {
    /// An error with a code and a message.
    pub fn new(code: &'static str, message: impl Into<String>) -> SqlError {
        SqlError {
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// Adds a detail.
    pub fn detail(mut self, detail: impl Into<String>) -> SqlError {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> SqlError {
        self.hint = Some(hint.into());
        self
    }

    /// `0A000`: a feature moat does not have.
    pub fn unsupported(what: impl Into<String>) -> SqlError {
        SqlError::new("0A000", format!("{} is not supported", what.into()))
    }

    /// `25P02`: the transaction failed earlier.
    pub fn aborted() -> SqlError {
        SqlError::new(
            "25P02",
            "current transaction is aborted, commands ignored until end of transaction block",
        )
        .hint("send ROLLBACK (or ROLLBACK TO a savepoint)")
    }

    /// The pgwire form.
    pub fn to_info(&self) -> ErrorInfo {
        let mut info = ErrorInfo::new(SEVERITY_ERROR.to_owned(), self.code.to_owned(), self.message.clone());
        info.detail = self.detail.clone();
        info.hint = self.hint.clone();
        info
    }

    /// The pgwire error.
    pub fn into_pgwire(self) -> PgWireError {
        PgWireError::UserError(Box::new(self.to_info()))
    }
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl From<crate::users::UserError> for SqlError {
    fn from(e: crate::users::UserError) -> SqlError {
        SqlError::new(e.code, e.message)
    }
}

/// Context of a SQLite error that SQLite itself does not give.
#[derive(Debug, Default, Clone)]
pub struct ErrorContext {
    /// The system table the authorizer refused, if it refused.
    pub denied: Option<String>,
    /// Whether an explicit transaction is open.
    pub in_transaction: bool,
}

fn after<'a>(msg: &'a str, prefix: &str) -> Option<&'a str> {
    msg.find(prefix).map(|i| msg[i + prefix.len()..].trim())
}

fn is_catalog(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("pg_") || n.starts_with("information_schema") || n.starts_with("crdb_internal")
}

/// Maps a SQLite error to SQLSTATE and a PostgreSQL-style message. The
/// message never contains the statement text.
pub fn from_sqlite(e: &rusqlite::Error, ctx: &ErrorContext) -> SqlError {
    use rusqlite::Error as E;
    let (code, ext, msg) = match e {
        E::SqliteFailure(f, m) => (f.code, f.extended_code, m.clone().unwrap_or_else(|| f.to_string())),
        E::SqlInputError { error, msg, .. } => (error.code, error.extended_code, msg.clone()),
        E::InvalidParameterCount(got, want) => {
            return SqlError::new(
                "08P01",
                format!("the statement has {want} parameters but {got} were supplied"),
            )
        }
        E::MultipleStatement => {
            return SqlError::new("42601", "cannot insert multiple commands into a prepared statement")
        }
        E::IntegralValueOutOfRange(_, v) => return SqlError::new("22003", format!("value {v} is out of range")),
        E::InvalidParameterName(n) => return SqlError::new("42P02", format!("there is no parameter {n}")),
        other => return SqlError::new("XX000", format!("internal error: {other}")),
    };
    match code {
        ErrorCode::AuthorizationForStatementDenied => {
            let table = ctx.denied.clone().unwrap_or_else(|| "a system table".into());
            return SqlError::new(
                "42501",
                format!("permission denied: {table} is a system table and cannot be read or changed from SQL"),
            )
            .hint("manage users with CREATE USER, ALTER USER, DROP USER and SHOW USERS");
        }
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
            // SQLITE_BUSY_SNAPSHOT: the transaction read an older snapshot
            // than the one it must write to.
            return if ext == 517 || ctx.in_transaction {
                SqlError::new("40001", format!("restart transaction: {msg}"))
                    .hint("another transaction wrote concurrently; roll back and retry the transaction")
            } else {
                SqlError::new("55P03", format!("lock not available: {msg}"))
                    .hint("another session holds a write transaction; retry later")
            };
        }
        ErrorCode::ReadOnly => {
            return SqlError::new("25006", format!("cannot execute in a read-only transaction ({msg})"))
        }
        ErrorCode::OperationInterrupted => return SqlError::new("57014", "canceling statement due to user request"),
        ErrorCode::TooBig => return SqlError::new("54000", msg),
        ErrorCode::DiskFull => return SqlError::new("53100", format!("could not write: {msg}")),
        ErrorCode::TypeMismatch => return SqlError::new("42804", format!("datatype mismatch: {msg}")),
        ErrorCode::ParameterOutOfRange => return SqlError::new("08P01", format!("bind parameter out of range: {msg}")),
        ErrorCode::ConstraintViolation => {
            return match ext {
                2067 | 1555 => {
                    let cols = after(&msg, "failed:").unwrap_or("");
                    SqlError::new("23505", "duplicate key value violates unique constraint")
                        .detail(format!("Key ({cols}) already exists."))
                }
                1299 => {
                    let col = after(&msg, "failed:").unwrap_or("");
                    SqlError::new(
                        "23502",
                        format!("null value in column {col} violates not-null constraint"),
                    )
                }
                787 => SqlError::new("23503", "insert, update or delete violates a foreign key constraint"),
                275 => {
                    let name = after(&msg, "failed:").unwrap_or("");
                    SqlError::new("23514", format!("new row violates check constraint {name}"))
                }
                _ => SqlError::new("23000", format!("integrity constraint violation: {msg}")),
            };
        }
        _ => {}
    }
    // SQLITE_ERROR and friends: classify by message.
    if let Some(t) = after(&msg, "no such table:") {
        if is_catalog(t) {
            return SqlError::unsupported(format!("the PostgreSQL system catalog {t}"))
                .hint("moat speaks PostgreSQL's protocol over SQLite; it has no pg_catalog or information_schema");
        }
        return SqlError::new("42P01", format!("relation \"{t}\" does not exist"));
    }
    if let Some(c) = after(&msg, "no such column:") {
        return SqlError::new("42703", format!("column \"{c}\" does not exist"));
    }
    if msg.contains("has no column named") {
        return SqlError::new("42703", msg);
    }
    if let Some(f) = after(&msg, "no such function:") {
        if is_catalog(f) {
            return SqlError::unsupported(format!("the PostgreSQL catalog function {f}()"));
        }
        return SqlError::new("42883", format!("function {f}() does not exist"));
    }
    if msg.contains("unknown database") {
        return SqlError::new("3F000", msg);
    }
    if msg.contains("already exists") {
        return SqlError::new("42P07", msg);
    }
    if msg.starts_with("no such index") || msg.starts_with("no such view") || msg.starts_with("no such trigger") {
        return SqlError::new("42704", msg);
    }
    if msg.contains("no such savepoint") {
        return SqlError::new("3B001", msg);
    }
    if msg.contains("ambiguous column name") {
        return SqlError::new("42702", msg);
    }
    if msg.contains("wrong number of arguments") {
        return SqlError::new("42883", msg);
    }
    if msg.contains("misuse of aggregate") || msg.contains("misuse of window function") {
        return SqlError::new("42803", msg);
    }
    if msg.contains("syntax error")
        || msg.contains("incomplete input")
        || msg.contains("unrecognized token")
        || msg.contains("values were supplied")
        || msg.contains("columns but")
    {
        return SqlError::new("42601", format!("syntax error: {msg}"));
    }
    if msg.contains("foreign key mismatch") {
        return SqlError::new("42830", msg);
    }
    SqlError::new("XX000", msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(sql: &str) -> SqlError {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT NOT NULL UNIQUE, c INT CHECK (c > 0))")
            .unwrap();
        c.execute_batch("INSERT INTO t VALUES (1, 'x', 1)").unwrap();
        let e = c.execute_batch(sql).unwrap_err();
        from_sqlite(&e, &ErrorContext::default())
    }

    #[test]
    fn codes() {
        assert_eq!(err_of("SELEC 1").code, "42601");
        assert_eq!(err_of("SELECT * FROM nope").code, "42P01");
        assert_eq!(err_of("SELECT * FROM pg_catalog.pg_type").code, "0A000");
        assert_eq!(err_of("SELECT nope FROM t").code, "42703");
        assert_eq!(err_of("INSERT INTO t VALUES (2, 'x', 1)").code, "23505");
        assert_eq!(err_of("INSERT INTO t VALUES (1, 'y', 1)").code, "23505");
        assert_eq!(err_of("INSERT INTO t VALUES (2, NULL, 1)").code, "23502");
        assert_eq!(err_of("INSERT INTO t VALUES (2, 'z', 0)").code, "23514");
        assert_eq!(err_of("CREATE TABLE t (x)").code, "42P07");
        assert_eq!(err_of("SELECT nofn(1)").code, "42883");
    }
}
