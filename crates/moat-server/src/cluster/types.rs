//! What goes through the Raft log ([`Command`]) and what applying it returns
//! ([`CommandResult`]), and openraft's type configuration.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::determinism::Context;
use crate::sql::SqlError;
use crate::users::UserStatement;

openraft::declare_raft_types!(
    /// moat's Raft types: node ids are `u64`, nodes are known by their RPC address.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
);

/// A node id.
pub type NodeId = u64;
/// A node as membership records it (its RPC address).
pub type Node = openraft::BasicNode;
/// A Raft log id.
pub type LogId = openraft::LogId<NodeId>;
/// The Raft instance of a node.
pub type Raft = openraft::Raft<TypeConfig>;
/// Snapshot data (a copy of the SQLite database file).
pub type SnapshotData = Cursor<Vec<u8>>;

/// A SQLite value as the log carries it (floats by their bits, so that NaN
/// and infinities survive JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SqlValue {
    /// NULL.
    Null,
    /// INTEGER.
    Int(i64),
    /// REAL, as `f64::to_bits`.
    Real(u64),
    /// TEXT.
    Text(String),
    /// BLOB.
    Blob(Vec<u8>),
}

impl From<&rusqlite::types::Value> for SqlValue {
    fn from(v: &rusqlite::types::Value) -> Self {
        use rusqlite::types::Value as V;
        match v {
            V::Null => SqlValue::Null,
            V::Integer(i) => SqlValue::Int(*i),
            V::Real(f) => SqlValue::Real(f.to_bits()),
            V::Text(t) => SqlValue::Text(t.clone()),
            V::Blob(b) => SqlValue::Blob(b.clone()),
        }
    }
}

impl From<SqlValue> for rusqlite::types::Value {
    fn from(v: SqlValue) -> Self {
        use rusqlite::types::Value as V;
        match v {
            SqlValue::Null => V::Null,
            SqlValue::Int(i) => V::Integer(i),
            SqlValue::Real(f) => V::Real(f64::from_bits(f)),
            SqlValue::Text(t) => V::Text(t),
            SqlValue::Blob(b) => V::Blob(b),
        }
    }
}

/// One statement of a replicated write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlStmt {
    /// The SQL SQLite runs (already rewritten from PostgreSQL's dialect).
    pub sql: String,
    /// Bound parameters.
    pub params: Vec<SqlValue>,
    /// In an explicit transaction: the fingerprint of what the statement
    /// returned when the session ran it; a replica that gets another result
    /// refuses the whole transaction (SQLSTATE 40001) instead of committing
    /// something the client never saw.
    pub expect: Option<u64>,
    /// A read of the transaction (validated, never replayed for its effects):
    /// committing checks that it would still return what the client saw, so
    /// the whole transaction is as if it ran at its place in the log.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read: bool,
}

/// A write, replicated through the log and applied by every node in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// SQL statements run in one SQLite transaction, all or nothing; the
    /// `i`-th under `ctx.nth(i)`.
    Sql {
        /// The session user (`current_user`).
        user: String,
        /// Clock and random seed.
        ctx: Context,
        /// The statements.
        stmts: Vec<SqlStmt>,
    },
    /// A user statement; passwords already replaced by their SCRAM verifiers
    /// (a password never enters the log).
    User {
        /// Who runs it.
        current_user: String,
        /// The statement.
        stmt: UserStatement,
    },
    /// Sets (or, with `None`, resets) a cluster setting.
    SetSetting {
        /// Who runs it (only root may).
        current_user: String,
        /// Setting name.
        name: String,
        /// Value, already validated by the proposer.
        value: Option<String>,
    },
    /// Allocates the next node id for a joining node.
    AllocNodeId {
        /// The joining node's RPC address.
        addr: String,
    },
    /// The first entry of a new cluster.
    Bootstrap {
        /// The cluster's id.
        cluster_id: String,
    },
}

/// A SQL error as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// SQLSTATE.
    pub code: String,
    /// Message.
    pub message: String,
    /// Detail.
    pub detail: Option<String>,
    /// Hint.
    pub hint: Option<String>,
}

impl From<&SqlError> for WireError {
    fn from(e: &SqlError) -> Self {
        WireError {
            code: e.code.to_string(),
            message: e.message.clone(),
            detail: e.detail.clone(),
            hint: e.hint.clone(),
        }
    }
}

impl From<WireError> for SqlError {
    fn from(w: WireError) -> Self {
        SqlError {
            code: static_code(&w.code),
            message: w.message,
            detail: w.detail,
            hint: w.hint,
        }
    }
}

/// A SQLSTATE as `&'static str`: interned, one allocation per distinct
/// well-formed code; anything else becomes `XX000`.
fn static_code(code: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static CODES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    if code.len() != 5 || !code.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()) {
        return "XX000";
    }
    let mut set = CODES
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(c) = set.get(code) {
        return c;
    }
    let c: &'static str = Box::leak(code.to_string().into_boxed_str());
    set.insert(c);
    c
}

/// What one statement returned: column names, declared types, rows
/// (`None`: the statement returns none) and the number of rows changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawOut {
    /// Column names.
    pub names: Vec<String>,
    /// Declared column types.
    pub decls: Vec<Option<String>>,
    /// Rows, for statements that return rows.
    pub rows: Option<Vec<Vec<SqlValue>>>,
    /// Rows changed.
    pub changes: u64,
}

impl RawOut {
    /// A fingerprint of what the client sees (rows and count), to compare a
    /// session's run of a statement with the replicas'.
    pub fn fingerprint(&self) -> u64 {
        let bytes = serde_json::to_vec(&(&self.rows, self.changes)).unwrap_or_default();
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
        let mut b = [0u8; 8];
        b.copy_from_slice(&d.as_ref()[..8]);
        u64::from_le_bytes(b)
    }
}

/// What applying a [`Command`] returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Nothing (membership changes, blank entries).
    None,
    /// The results of a SQL write, one per statement, or its error (nothing
    /// of it was applied).
    Sql(Result<Vec<RawOut>, WireError>),
    /// The command tag of a user statement, or its error.
    User(Result<String, WireError>),
    /// A newly allocated node id.
    NodeId(NodeId),
    /// The command tag of a cluster setting change, or its error.
    Setting(Result<String, WireError>),
}
