//! A SQL session: its transaction state, its variables, and the SQLite
//! connection it borrows from the node's pool ([`ConnPool`]) for a statement
//! or a whole transaction, and gives back when idle (an idle session holds
//! none). Every statement runs through [`Engine::execute`], on a blocking
//! thread, except a lone read-only `SELECT` outside a transaction, which
//! [`Session::try_inline`] runs on the async thread within a time budget;
//! this is the one place to route statements elsewhere (replication).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use pgwire::api::portal::{Format, PortalExecutionState};
use pgwire::api::results::{FieldFormat, FieldInfo, Tag};
use pgwire::api::Type;
use pgwire::messages::data::DataRow;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::Value;
use rusqlite::Connection;

use super::error::{from_sqlite, ErrorContext, SqlError};
use super::infer::{self, Env};
use super::intercept::{classify, version_string, Statement, StmtKind, Vars, Verb, DATABASE};
use super::lexer::quote_ident;
use super::rewrite::to_sqlite;
use super::types::{self, from_decl};
use crate::cluster::types::{Command, CommandResult, RawOut, SqlStmt, SqlValue};
use crate::cluster::Replicator;
use crate::db::Database;
use crate::determinism::{with_context, Context};
use crate::users::{self, UserResult, UserStatement};

/// Transaction state of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tx {
    /// No transaction.
    Idle = 0,
    /// In an explicit transaction.
    Open = 1,
    /// In a transaction that failed: only ROLLBACK (TO) / COMMIT are accepted.
    Failed = 2,
}

impl Tx {
    fn from_u8(v: u8) -> Tx {
        match v {
            1 => Tx::Open,
            2 => Tx::Failed,
            _ => Tx::Idle,
        }
    }
}

/// A statement ready to run: classified, rewritten for SQLite, and what
/// Describe told the client (the types it must then be sent).
#[derive(Debug)]
pub struct Prepared {
    /// The statement.
    pub stmt: Statement,
    /// The SQL SQLite runs, for statements that go to SQLite.
    pub sqlite: Option<String>,
    /// Parameter types the client declared in Parse (`None`: unspecified).
    pub client_types: Vec<Option<Type>>,
    /// Parameter types, once decided.
    pub params: Mutex<Option<Vec<Type>>>,
    /// Result columns, once described.
    pub columns: Mutex<Option<Option<Vec<Column>>>>,
}

impl Prepared {
    /// Classifies and rewrites one statement; `client_types` are the
    /// parameter types declared in Parse.
    pub fn new(text: &str, client_types: &[Option<Type>]) -> Result<Prepared, SqlError> {
        let stmt = classify(text)?;
        let sqlite = match &stmt.kind {
            StmtKind::Sql { sqlite: Some(s), .. } => Some(s.clone()),
            StmtKind::Sql { sqlite: None, .. } => Some(to_sqlite(&stmt.text, &stmt.tokens)?),
            _ => None,
        };
        Ok(Prepared {
            stmt,
            sqlite,
            client_types: client_types.to_vec(),
            params: Mutex::new(None),
            columns: Mutex::new(None),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Name.
    pub name: String,
    /// PostgreSQL type.
    pub ty: Type,
}

fn text_columns(names: &[&str]) -> Vec<Column> {
    names
        .iter()
        .map(|n| Column {
            name: n.to_string(),
            ty: Type::TEXT,
        })
        .collect()
}

/// What a statement did.
#[derive(Debug)]
pub enum Outcome {
    /// Only comments.
    Empty,
    /// Rows, with the command tag before its row count (`SELECT`,
    /// `INSERT 0`, `UPDATE`, `DELETE`).
    Rows {
        /// Columns.
        columns: Vec<Column>,
        /// Values.
        rows: Vec<Vec<Value>>,
        /// Tag.
        tag: String,
    },
    /// No rows: this tag.
    Done(Tag),
    /// A transaction started (BEGIN).
    TxStart(Tag),
    /// A transaction ended (COMMIT, ROLLBACK).
    TxEnd(Tag),
}

/// The reply to one statement: its outcome, plus notices and changed
/// reported parameters to send with it.
#[derive(Debug)]
pub struct Reply {
    /// Outcome or error.
    pub outcome: Result<Outcome, SqlError>,
    /// Warnings (e.g. "there is already a transaction in progress").
    pub notices: Vec<String>,
    /// ParameterStatus updates.
    pub params: Vec<(String, String)>,
}

/// A result already encoded for the wire.
pub struct Encoded {
    /// RowDescription fields.
    pub fields: Arc<Vec<FieldInfo>>,
    /// Rows.
    pub rows: Vec<DataRow>,
    /// Tag before the row count.
    pub tag: String,
}

fn is_binary(f: &Format, i: usize) -> bool {
    match f {
        Format::UnifiedText => false,
        Format::UnifiedBinary => true,
        Format::Individual(v) => v.get(i) == Some(&1),
    }
}

fn type_size(t: &Type) -> i16 {
    match *t {
        Type::BOOL => 1,
        Type::INT2 => 2,
        Type::INT4 | Type::FLOAT4 | Type::DATE | Type::OID => 4,
        Type::INT8 | Type::FLOAT8 | Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ => 8,
        Type::UUID => 16,
        _ => -1,
    }
}

/// RowDescription fields for columns.
pub fn fields(columns: &[Column], format: &Format) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let f = if is_binary(format, i) {
                FieldFormat::Binary
            } else {
                FieldFormat::Text
            };
            FieldInfo::new(c.name.clone(), None, None, c.ty.clone(), f).with_type_size(type_size(&c.ty))
        })
        .collect()
}

/// Encodes rows as DataRows in the given result format.
pub fn encode_rows(columns: &[Column], rows: Vec<Vec<Value>>, format: &Format) -> Result<Vec<DataRow>, SqlError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut buf = BytesMut::with_capacity(64);
        for (i, (v, c)) in row.iter().zip(columns).enumerate() {
            types::encode(v, &c.ty, is_binary(format, i), &mut buf).map_err(|e| {
                let mut e = e;
                e.message = format!("column {:?}: {}", c.name, e.message);
                e
            })?;
        }
        out.push(DataRow::new(buf, columns.len() as i16));
    }
    Ok(out)
}

/// A column whose type may not be known yet.
type MaybeTyped = (String, Option<Type>);

/// Runs one statement with its parameters and collects what it returned.
pub(crate) fn run_raw(conn: &Connection, sql: &str, params: &[Value]) -> rusqlite::Result<RawOut> {
    let mut st = conn.prepare_cached(sql)?;
    let want = st.parameter_count();
    if want != params.len() {
        return Err(rusqlite::Error::InvalidParameterCount(params.len(), want));
    }
    for (i, v) in params.iter().enumerate() {
        st.raw_bind_parameter(i + 1, v)?;
    }
    let ncols = st.column_count();
    if ncols == 0 {
        // sqlite3_changes() keeps the count of the last INSERT/UPDATE/DELETE:
        // a statement that changed no rows (DDL) must report 0, not that.
        let before = conn.total_changes();
        let n = st.raw_execute()?;
        let changes = if conn.total_changes() == before { 0 } else { n as u64 };
        return Ok(RawOut {
            names: Vec::new(),
            decls: Vec::new(),
            rows: None,
            changes,
        });
    }
    let names: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
    let decls: Vec<Option<String>> = st.columns().iter().map(|c| c.decl_type().map(str::to_string)).collect();
    let mut rows = Vec::new();
    {
        let mut r = st.raw_query();
        while let Some(row) = r.next()? {
            let mut vals = Vec::with_capacity(ncols);
            for i in 0..ncols {
                vals.push(SqlValue::from(&Value::from(row.get_ref(i)?)));
            }
            rows.push(vals);
        }
    }
    Ok(RawOut {
        names,
        decls,
        rows: Some(rows),
        changes: 0,
    })
}

/// Identifies a portal (its execution state is one allocation per portal).
pub type PortalKey = Arc<tokio::sync::Mutex<PortalExecutionState>>;

enum Pending {
    Types(Vec<Type>),
    Ran(Outcome),
}

/// The state shared by a connection's handlers.
pub struct Session {
    tx: Arc<AtomicU8>,
    /// Built at the first statement, for the session's user: a session
    /// that only logs in costs no engine.
    engine: Mutex<Option<Engine>>,
    interrupt: Arc<Mutex<Option<rusqlite::InterruptHandle>>>,
    db: Arc<Database>,
    repl: Option<Arc<dyn Replicator>>,
}

impl Session {
    /// A session on `db`, replicating its writes through `repl` when the
    /// node is in a cluster; nothing is opened yet.
    pub fn new(db: Arc<Database>, repl: Option<Arc<dyn Replicator>>) -> Session {
        Session {
            tx: Arc::new(AtomicU8::new(Tx::Idle as u8)),
            engine: Mutex::new(None),
            interrupt: Arc::new(Mutex::new(None)),
            db,
            repl,
        }
    }

    /// The reply of a portal that Describe already ran ([`Pending::Ran`]: a
    /// read whose column types could not be told without running it), taken
    /// here on the async thread when the engine is free and the result small
    /// enough to encode here; otherwise `None`, and Execute takes it on a
    /// blocking thread.
    pub fn take_ran(&self, key: &PortalKey) -> Option<Reply> {
        /// Rows encoded on the async thread at most.
        const QUICK_ROWS: usize = 256;
        let mut guard = self.engine.try_lock().ok()?;
        let eng = guard.as_mut()?;
        let small = match &eng.pending {
            Some((k, Pending::Ran(outcome))) if Arc::ptr_eq(k, key) => match outcome {
                Outcome::Rows { rows, .. } => rows.len() <= QUICK_ROWS,
                _ => true,
            },
            _ => false,
        };
        if !small {
            return None;
        }
        match eng.pending.take() {
            Some((_, Pending::Ran(outcome))) => Some(reply(Ok(outcome))),
            _ => None,
        }
    }

    /// The engine of the session's user (at its first statement).
    fn new_engine(&self, user: &str) -> Engine {
        let vars = Arc::new(Mutex::new(Vars::new(user)));
        let denied = Arc::new(Mutex::new(None));
        let refs = Arc::new(SessionRefs {
            user: Arc::new(Mutex::new(user.to_string())),
            vars: vars.clone(),
            tx: self.tx.clone(),
            denied: denied.clone(),
        });
        Engine {
            db: self.db.clone(),
            conn: None,
            refs,
            user: Some(user.to_string()),
            vars,
            denied,
            tx: self.tx.clone(),
            read_only: false,
            pending: None,
            interrupt: self.interrupt.clone(),
            repl: self.repl.clone(),
            txlog: Vec::new(),
            tx_ctx: None,
            savepoints: Vec::new(),
            implicit: false,
            barrier_done: false,
        }
    }

    /// The transaction state.
    pub fn tx(&self) -> Tx {
        Tx::from_u8(self.tx.load(Ordering::SeqCst))
    }

    /// Marks an open transaction failed (an error happened outside the
    /// engine, e.g. in Bind).
    pub fn fail_open_transaction(&self) {
        let _ = self
            .tx
            .compare_exchange(Tx::Open as u8, Tx::Failed as u8, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The fast path of the commonest statement: one read-only `SELECT`
    /// outside a transaction, sent alone in a simple query. It runs here,
    /// on the async thread, after the read barrier (awaited), on an idle
    /// connection of the pool, with SQLite's progress handler stopping it
    /// after [`INLINE_BUDGET`], so the async thread is never held longer.
    /// `None` when the fast path does not apply, or the statement was
    /// stopped: the caller then runs it the ordinary way, on a blocking
    /// thread (a read-only statement can run again). Saves the two thread
    /// hand-offs of [`Session::run`], most of the CPU a short query costs.
    pub async fn try_inline(&self, user: &str, p: &Prepared, format: &Format) -> Option<(Reply, Option<Encoded>)> {
        if !matches!(p.stmt.kind, StmtKind::Sql { verb: Verb::Select, .. }) || self.tx() != Tx::Idle {
            return None;
        }
        let repl = {
            let mut guard = self.engine.try_lock().ok()?;
            let eng = guard.get_or_insert_with(|| self.new_engine(user));
            if eng.in_transaction() || !eng.checkout_idle() || !eng.is_readonly(p) {
                eng.release_idle();
                return None;
            }
            eng.repl.clone()
        };
        if let Some(repl) = repl {
            if repl.read_barrier_async().await.is_err() {
                // The ordinary path reports it.
                return None;
            }
        }
        let mut guard = self.engine.try_lock().ok()?;
        let eng = guard.get_or_insert_with(|| self.new_engine(user));
        if eng.in_transaction() || !eng.checkout_idle() {
            eng.release_idle();
            return None;
        }
        let stopped = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        if let Some(c) = &eng.conn {
            let s = stopped.clone();
            c.progress_handler(
                1000,
                Some(move || {
                    let over = start.elapsed() > INLINE_BUDGET;
                    if over {
                        s.store(true, Ordering::Relaxed);
                    }
                    over
                }),
            );
        }
        eng.barrier_done = true;
        let r = eng.execute(p, &[], None);
        eng.barrier_done = false;
        if let Some(c) = &eng.conn {
            c.progress_handler(0, None::<fn() -> bool>);
        }
        let out = (!stopped.load(Ordering::Relaxed)).then(|| encode_reply(r, format));
        eng.release_idle();
        out
    }

    /// Runs `f` on the engine on a blocking thread. If the caller stops
    /// waiting (query cancelled, connection gone), the running SQLite
    /// statement is interrupted.
    pub async fn run<T, F>(self: &Arc<Self>, user: String, f: F) -> Result<T, SqlError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Engine) -> Result<T, SqlError> + Send + 'static,
    {
        struct Guard {
            interrupt: Arc<Mutex<Option<rusqlite::InterruptHandle>>>,
            done: bool,
        }
        impl Drop for Guard {
            fn drop(&mut self) {
                if !self.done {
                    if let Some(h) = lock(&self.interrupt).as_ref() {
                        h.interrupt();
                    }
                }
            }
        }
        let mut guard = Guard {
            interrupt: self.interrupt.clone(),
            done: false,
        };
        let me = self.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut guard = lock(&me.engine);
            let eng = guard.get_or_insert_with(|| me.new_engine(&user));
            let r = f(eng);
            eng.release_idle();
            r
        })
        .await
        .map_err(|e| SqlError::new("XX000", format!("internal error: the statement's thread failed: {e}")));
        guard.done = true;
        r?
    }
}

/// The SQLite side of a session. Only ever used on a blocking thread.
pub struct Engine {
    db: Arc<Database>,
    /// A connection of the node's pool, checked out for a statement (or a
    /// transaction) and given back when the session is idle again.
    conn: Option<PooledConn>,
    /// What the checked-out connection's functions and authorizer see.
    refs: Arc<SessionRefs>,
    user: Option<String>,
    vars: Arc<Mutex<Vars>>,
    denied: Arc<Mutex<Option<String>>>,
    tx: Arc<AtomicU8>,
    read_only: bool,
    pending: Option<(PortalKey, Pending)>,
    interrupt: Arc<Mutex<Option<rusqlite::InterruptHandle>>>,
    /// The cluster, when the node is in one: writes go through it.
    repl: Option<Arc<dyn Replicator>>,
    /// In a transaction (cluster): the writes run so far, replayed through
    /// the log at COMMIT.
    txlog: Vec<SqlStmt>,
    /// In a transaction (cluster): its clock and seed.
    tx_ctx: Option<Context>,
    /// In a transaction (cluster): savepoints and the log length at each.
    savepoints: Vec<(String, usize)>,
    /// A multi-statement simple query runs in an implicit transaction.
    implicit: bool,
    /// The read barrier of the statement being run was already passed
    /// (by [`Session::try_inline`], asynchronously).
    barrier_done: bool,
}

impl Drop for Engine {
    /// The session ends: its connection goes back to the pool if it is
    /// clean (a transaction left open is closed with its connection).
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            if !self.read_only {
                self.db.session_pool().give(c);
            }
        }
    }
}

/// Pragmas user SQL may not run even read-only.
const DENIED_PRAGMAS: [&str; 6] = [
    "writable_schema",
    "journal_mode",
    "synchronous",
    "key",
    "rekey",
    "temp_store_directory",
];

fn is_system(name: &str) -> bool {
    name.len() >= users::SYSTEM_PREFIX.len()
        && name[..users::SYSTEM_PREFIX.len()].eq_ignore_ascii_case(users::SYSTEM_PREFIX)
}

/// Pragmas that only read, even with an argument: they leave nothing on
/// the connection.
const READ_PRAGMAS: [&str; 16] = [
    "table_info",
    "table_xinfo",
    "table_list",
    "index_info",
    "index_xinfo",
    "index_list",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
    "function_list",
    "module_list",
    "pragma_list",
    "collation_list",
    "database_list",
    "compile_options",
];

/// Whether an action leaves state on the connection that another session
/// must not inherit: a temporary object, or a pragma that sets something.
fn leaves_state(ctx: &AuthContext<'_>) -> bool {
    match ctx.action {
        AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. } => true,
        AuthAction::CreateTable { .. }
        | AuthAction::CreateIndex { .. }
        | AuthAction::CreateTrigger { .. }
        | AuthAction::CreateView { .. }
        | AuthAction::CreateVtable { .. } => ctx.database_name.is_some_and(|d| d.eq_ignore_ascii_case("temp")),
        AuthAction::Pragma {
            pragma_name,
            pragma_value: Some(_),
        } => !READ_PRAGMAS.iter().any(|p| p.eq_ignore_ascii_case(pragma_name)),
        _ => false,
    }
}

/// Where an authorizer reports.
enum AuthSink {
    /// A connection of its own (the state machine's): denials only.
    Fixed(Arc<Mutex<Option<String>>>),
    /// A pooled connection: denials go to the session that has it checked
    /// out; a statement that leaves state on it pins it to that session.
    Pooled(Arc<ConnShared>),
}

/// Installs the authorizer that keeps user SQL away from system tables.
pub(crate) fn install_authorizer(conn: &Connection, denied: Arc<Mutex<Option<String>>>) {
    authorize(conn, AuthSink::Fixed(denied));
}

fn authorize(conn: &Connection, sink: AuthSink) {
    conn.authorizer(Some(move |ctx: AuthContext<'_>| {
        if let AuthSink::Pooled(shared) = &sink {
            if leaves_state(&ctx) {
                shared.pinned.store(true, Ordering::Relaxed);
            }
        }
        let hit: Option<String> = match ctx.action {
            AuthAction::Read { table_name, .. }
            | AuthAction::Insert { table_name }
            | AuthAction::Update { table_name, .. }
            | AuthAction::Delete { table_name }
            | AuthAction::CreateTable { table_name }
            | AuthAction::CreateTempTable { table_name }
            | AuthAction::DropTable { table_name }
            | AuthAction::DropTempTable { table_name }
            | AuthAction::AlterTable { table_name, .. }
            | AuthAction::CreateIndex { table_name, .. }
            | AuthAction::CreateTempIndex { table_name, .. }
            | AuthAction::DropIndex { table_name, .. }
            | AuthAction::DropTempIndex { table_name, .. }
            | AuthAction::CreateTrigger { table_name, .. }
            | AuthAction::CreateTempTrigger { table_name, .. }
            | AuthAction::DropTrigger { table_name, .. }
            | AuthAction::DropTempTrigger { table_name, .. }
            | AuthAction::CreateVtable { table_name, .. }
            | AuthAction::DropVtable { table_name, .. } => is_system(table_name).then(|| table_name.to_string()),
            AuthAction::CreateView { view_name }
            | AuthAction::CreateTempView { view_name }
            | AuthAction::DropView { view_name }
            | AuthAction::DropTempView { view_name } => is_system(view_name).then(|| view_name.to_string()),
            AuthAction::Pragma {
                pragma_name,
                pragma_value,
            } => {
                if pragma_value.is_some_and(is_system) {
                    pragma_value.map(str::to_string)
                } else if DENIED_PRAGMAS.contains(&pragma_name.to_ascii_lowercase().as_str()) {
                    Some(format!("PRAGMA {pragma_name}"))
                } else {
                    None
                }
            }
            AuthAction::Attach { .. } | AuthAction::Detach { .. } => Some("ATTACH/DETACH".into()),
            _ => None,
        };
        match hit {
            Some(name) => {
                match &sink {
                    AuthSink::Fixed(denied) => *lock(denied) = Some(name),
                    AuthSink::Pooled(shared) => {
                        if let Some(s) = shared.session() {
                            *lock(&s.denied) = Some(name);
                        }
                    }
                }
                Authorization::Deny
            }
            None => Authorization::Allow,
        }
    }));
}

/// What a connection's SQL functions and authorizer need of the session
/// running statements on it.
pub(crate) struct SessionRefs {
    user: Arc<Mutex<String>>,
    vars: Arc<Mutex<Vars>>,
    tx: Arc<AtomicU8>,
    denied: Arc<Mutex<Option<String>>>,
}

/// State shared between a pooled connection and its callbacks.
#[derive(Default)]
pub(crate) struct ConnShared {
    /// The session that has the connection checked out.
    session: Mutex<Option<Arc<SessionRefs>>>,
    /// Set when a statement left state on the connection (a temporary
    /// object, a pragma setting): it then stays with its session and is
    /// closed with it, never lent to another.
    pinned: AtomicBool,
}

impl ConnShared {
    fn session(&self) -> Option<Arc<SessionRefs>> {
        lock(&self.session).clone()
    }
}

/// Whose context a connection's functions use.
#[derive(Clone)]
enum FnOwner {
    /// Always the same (the state machine's connection).
    Fixed(Arc<SessionRefs>),
    /// A pooled connection: the session that has it checked out.
    Pooled(Arc<ConnShared>),
}

impl FnOwner {
    fn get(&self) -> Option<Arc<SessionRefs>> {
        match self {
            FnOwner::Fixed(r) => Some(r.clone()),
            FnOwner::Pooled(s) => s.session(),
        }
    }

    fn user(&self) -> String {
        self.get().map(|r| lock(&r.user).clone()).unwrap_or_default()
    }
}

/// A SQLite connection of the node's session pool: opened once, with the
/// pragmas, the authorizer and the functions installed once, then lent to
/// one session at a time.
pub(crate) struct PooledConn {
    conn: Connection,
    shared: Arc<ConnShared>,
}

impl std::ops::Deref for PooledConn {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl PooledConn {
    fn open(db: &Database) -> Result<PooledConn, SqlError> {
        let conn = db.connect().map_err(|e| SqlError::new("58030", e.to_string()))?;
        let shared = Arc::new(ConnShared::default());
        authorize(&conn, AuthSink::Pooled(shared.clone()));
        register_with(&conn, FnOwner::Pooled(shared.clone()))
            .map_err(|e| SqlError::new("XX000", format!("cannot set up the session: {e}")))?;
        Ok(PooledConn { conn, shared })
    }

    fn pinned(&self) -> bool {
        self.shared.pinned.load(Ordering::Relaxed)
    }

    /// Runs the engine's own settings (`PRAGMA query_only`, always undone
    /// before the connection is given back): they do not pin it.
    fn internal_batch(&self, sql: &str) -> rusqlite::Result<()> {
        let was = self.pinned();
        let r = self.conn.execute_batch(sql);
        if !was {
            self.shared.pinned.store(false, Ordering::Relaxed);
        }
        r
    }

    /// Puts the system-table authorizer back (after a user statement).
    fn reauthorize(&self) {
        authorize(&self.conn, AuthSink::Pooled(self.shared.clone()));
    }
}

/// Longest a statement runs on an async thread ([`Session::try_inline`]).
const INLINE_BUDGET: Duration = Duration::from_micros(500);

/// Most idle connections the pool keeps; more are closed when given back.
const POOL_MAX_IDLE: usize = 16;

/// The node's SQLite connections for SQL sessions. A session checks one
/// out for a statement, or for a whole transaction, and gives it back when
/// idle: an idle session holds none, and a new session opens none while
/// one is idle in the pool.
#[derive(Default)]
pub struct ConnPool {
    idle: Mutex<Vec<PooledConn>>,
}

impl std::fmt::Debug for ConnPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnPool")
            .field("idle", &lock(&self.idle).len())
            .finish()
    }
}

impl ConnPool {
    fn try_take(&self) -> Option<PooledConn> {
        lock(&self.idle).pop()
    }

    fn take(&self, db: &Database) -> Result<PooledConn, SqlError> {
        let idle = lock(&self.idle).pop();
        match idle {
            Some(c) => Ok(c),
            None => PooledConn::open(db),
        }
    }

    /// Takes a connection back: kept if it is clean (no transaction, not
    /// pinned) and the pool has room, else closed.
    fn give(&self, c: PooledConn) {
        *lock(&c.shared.session) = None;
        if c.pinned() || !c.is_autocommit() {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < POOL_MAX_IDLE {
            idle.push(c);
        }
    }
}

fn now_text() -> String {
    let us = crate::determinism::now_unix_us();
    let now =
        time::OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00:00",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond()
    )
}

/// Functions whose value depends on the session, the connection or the
/// process, not on the data: a replica re-running a read that calls one
/// would get another answer, so such reads are not validated at COMMIT.
const LOCAL_STATE_FUNCTIONS: &[&str] = &[
    "pg_backend_pid",
    "current_setting",
    "set_config",
    "changes",
    "total_changes",
    "last_insert_rowid",
];

/// Whether a statement calls one of [`LOCAL_STATE_FUNCTIONS`].
fn reads_local_state(tokens: &[super::lexer::Token]) -> bool {
    tokens
        .windows(2)
        .any(|w| w[1].is_op("(") && LOCAL_STATE_FUNCTIONS.iter().any(|f| w[0].is(f)))
}

fn random_uuid() -> String {
    let mut b = [0u8; 16];
    crate::determinism::fill_random(&mut b);
    types::uuid_v4_text(b)
}

fn unique_rowid() -> i64 {
    crate::determinism::unique_rowid()
}

/// Registers moat's SQL functions on a connection of its own (the state
/// machine's): they always see this user, these variables, this state.
pub(crate) fn register_functions(
    conn: &Connection,
    user: Arc<Mutex<String>>,
    vars: Arc<Mutex<Vars>>,
    tx: Arc<AtomicU8>,
) -> rusqlite::Result<()> {
    let refs = SessionRefs {
        user,
        vars,
        tx,
        denied: Arc::new(Mutex::new(None)),
    };
    register_with(conn, FnOwner::Fixed(Arc::new(refs)))
}

fn register_with(conn: &Connection, owner: FnOwner) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    let det = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    let nondet = FunctionFlags::SQLITE_UTF8;
    conn.create_scalar_function("version", 0, det, |_| Ok(version_string()))?;
    conn.create_scalar_function("current_database", 0, det, |_| Ok(DATABASE.to_string()))?;
    conn.create_scalar_function("current_schema", 0, det, |_| Ok("public".to_string()))?;
    for f in ["current_user", "session_user", "current_role", "user"] {
        let o = owner.clone();
        conn.create_scalar_function(f, 0, det, move |_| Ok(o.user()))?;
    }
    conn.create_scalar_function("pg_backend_pid", 0, det, |_| Ok(std::process::id() as i64))?;
    for f in ["now", "transaction_timestamp", "statement_timestamp", "clock_timestamp"] {
        conn.create_scalar_function(f, 0, nondet, |_| Ok(now_text()))?;
    }
    conn.create_scalar_function("gen_random_uuid", 0, nondet, |_| Ok(random_uuid()))?;
    conn.create_scalar_function("uuid_generate_v4", 0, nondet, |_| Ok(random_uuid()))?;
    conn.create_scalar_function("unique_rowid", 0, nondet, |_| Ok(unique_rowid()))?;
    conn.create_scalar_function("moat_bool", 1, det, |ctx| {
        use rusqlite::types::ValueRef;
        Ok(match ctx.get_raw(0) {
            ValueRef::Null => None,
            ValueRef::Integer(i) => Some(i != 0),
            ValueRef::Real(f) => Some(f != 0.0),
            ValueRef::Text(t) => match String::from_utf8_lossy(t).trim().to_ascii_lowercase().as_str() {
                "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
                "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
                other => {
                    return Err(rusqlite::Error::UserFunctionError(
                        format!("invalid input syntax for type boolean: {other:?}").into(),
                    ))
                }
            },
            ValueRef::Blob(_) => {
                return Err(rusqlite::Error::UserFunctionError(
                    "cannot cast a blob to boolean".into(),
                ))
            }
        })
    })?;
    let o = owner.clone();
    let current_setting = move |ctx: &rusqlite::functions::Context<'_>| -> rusqlite::Result<Option<String>> {
        let name: String = ctx.get(0)?;
        let missing_ok = ctx.len() > 1 && ctx.get::<bool>(1).unwrap_or(false);
        let found = o.get().and_then(|r| {
            let in_tx = match Tx::from_u8(r.tx.load(Ordering::SeqCst)) {
                Tx::Idle => None,
                _ => Some("in transaction"),
            };
            let v = lock(&r.vars).get(&name, in_tx);
            v
        });
        match found {
            Some(s) => Ok(Some(s)),
            None if missing_ok => Ok(None),
            None => Err(rusqlite::Error::UserFunctionError(
                format!("unrecognized configuration parameter \"{name}\"").into(),
            )),
        }
    };
    let cs2 = current_setting.clone();
    conn.create_scalar_function("current_setting", 1, nondet, current_setting)?;
    conn.create_scalar_function("current_setting", 2, nondet, cs2)?;
    conn.create_scalar_function("set_config", 3, nondet, move |ctx| {
        let name: String = ctx.get(0)?;
        let value: Option<String> = ctx.get(1)?;
        let Some(r) = owner.get() else {
            return Err(rusqlite::Error::UserFunctionError("no session".into()));
        };
        lock(&r.vars)
            .set(&name.to_ascii_lowercase(), value.as_deref())
            .map_err(|e| rusqlite::Error::UserFunctionError(e.message.into()))?;
        Ok(value)
    })?;
    Ok(())
}

impl Engine {
    fn user(&self) -> &str {
        self.user.as_deref().unwrap_or("")
    }

    fn tx(&self) -> Tx {
        Tx::from_u8(self.tx.load(Ordering::SeqCst))
    }

    fn set_tx(&self, t: Tx) {
        self.tx.store(t as u8, Ordering::SeqCst);
    }

    /// The connection the session is using; checked out of the node's pool
    /// (opened if none is idle) on first use.
    fn conn(&mut self) -> Result<&Connection, SqlError> {
        let c = match self.conn.take() {
            Some(c) => c,
            None => {
                let c = self.db.session_pool().take(&self.db)?;
                *lock(&c.shared.session) = Some(self.refs.clone());
                *lock(&self.interrupt) = Some(c.get_interrupt_handle());
                c
            }
        };
        Ok(&self.conn.insert(c).conn)
    }

    /// Makes sure the session holds a connection without opening one: one
    /// it holds already, or an idle one of the pool. `false` when the pool
    /// has none idle (opening is for blocking threads).
    fn checkout_idle(&mut self) -> bool {
        if self.conn.is_some() {
            return true;
        }
        let Some(c) = self.db.session_pool().try_take() else {
            return false;
        };
        *lock(&c.shared.session) = Some(self.refs.clone());
        *lock(&self.interrupt) = Some(c.get_interrupt_handle());
        self.conn = Some(c);
        true
    }

    /// Gives the connection back to the pool when nothing ties it to the
    /// session any more: no transaction (explicit or implicit), not read
    /// only, no SQLite transaction, not pinned. Called after every call
    /// into the engine.
    fn release_idle(&mut self) {
        if self.in_transaction() || self.read_only {
            return;
        }
        let Some(c) = self.conn.take() else {
            return;
        };
        if c.pinned() || !c.is_autocommit() {
            self.conn = Some(c);
            return;
        }
        *lock(&self.interrupt) = None;
        self.db.session_pool().give(c);
    }

    /// Runs the engine's own `PRAGMA query_only` (does not pin the connection).
    fn internal_batch(&mut self, sql: &str) -> Result<(), SqlError> {
        self.conn()?;
        let r = match &self.conn {
            Some(c) => c.internal_batch(sql),
            None => Ok(()),
        };
        r.map_err(|e| self.sqlite_err(e))
    }

    fn sqlite_err(&self, e: rusqlite::Error) -> SqlError {
        from_sqlite(
            &e,
            &ErrorContext {
                denied: lock(&self.denied).take(),
                in_transaction: self.tx() != Tx::Idle,
            },
        )
    }

    fn batch(&mut self, sql: &str) -> Result<(), SqlError> {
        let r = self.conn()?.execute_batch(sql);
        r.map_err(|e| self.sqlite_err(e))
    }

    /// Rolls back SQLite's transaction if it still has one.
    fn rollback_sqlite(&mut self) {
        if let Some(c) = &self.conn {
            if !c.is_autocommit() {
                let _ = c.execute_batch("ROLLBACK");
            }
            if self.read_only {
                let _ = c.internal_batch("PRAGMA query_only = 0");
            }
        }
        self.read_only = false;
    }

    fn end_read_only(&mut self) {
        if self.read_only {
            if let Some(c) = &self.conn {
                let _ = c.internal_batch("PRAGMA query_only = 0");
            }
            self.read_only = false;
        }
    }

    fn clear_txlog(&mut self) {
        self.txlog.clear();
        self.tx_ctx = None;
        self.savepoints.clear();
    }

    /// Commits the open SQLite transaction; in a cluster, rolls it back
    /// instead and replicates its writes as one log entry (all or nothing,
    /// refused with 40001 if a replica would see other results).
    fn commit_sqlite(&mut self) -> Result<(), SqlError> {
        if self.repl.is_some() && !self.tx_has_writes() {
            // Nothing was written; no SQLite transaction is open in a cluster.
            let r = self.validate_reads();
            self.rollback_sqlite();
            self.clear_txlog();
            return r;
        }
        let Some(repl) = self.repl.clone().filter(|_| !self.txlog.is_empty()) else {
            let r = self.batch("COMMIT");
            if r.is_err() {
                self.rollback_sqlite();
            }
            self.clear_txlog();
            return r;
        };
        self.rollback_sqlite();
        let stmts = std::mem::take(&mut self.txlog);
        let ctx = self.tx_ctx.take().unwrap_or_else(|| Context::fresh(repl.node_id()));
        self.savepoints.clear();
        let cmd = Command::Sql {
            user: self.user().to_string(),
            ctx,
            stmts,
        };
        match repl.write(cmd)? {
            CommandResult::Sql(Ok(_)) => Ok(()),
            CommandResult::Sql(Err(e)) => Err(e.into()),
            other => Err(SqlError::new(
                "XX000",
                format!("unexpected replication result {other:?}"),
            )),
        }
    }

    /// Whether the transaction has written anything (in a cluster).
    fn tx_has_writes(&self) -> bool {
        self.txlog.iter().any(|s| !s.read)
    }

    /// A read-only transaction in a cluster: its reads ran one after
    /// another on the latest data, so each saw its own moment. At COMMIT they
    /// run again, together in one SQLite read transaction after a read
    /// barrier: if each returns what the client saw, the transaction is as if
    /// it ran at that one moment (serializable); otherwise 40001. One read
    /// alone needs no check.
    fn validate_reads(&mut self) -> Result<(), SqlError> {
        let Some(repl) = self.repl.clone() else {
            return Ok(());
        };
        if self.txlog.len() < 2 {
            return Ok(());
        }
        let Some(ctx) = self.tx_ctx else {
            return Ok(());
        };
        repl.read_barrier()?;
        let log = std::mem::take(&mut self.txlog);
        self.batch("BEGIN")?;
        let r = (|| {
            for (i, s) in log.iter().enumerate() {
                let params: Vec<Value> = s.params.iter().cloned().map(Into::into).collect();
                let conn = self.conn()?;
                let out = with_context(ctx.nth(i as u64), || run_raw(conn, &s.sql, &params))
                    .map_err(|e| self.sqlite_err(e))?;
                if Some(out.fingerprint()) != s.expect {
                    metrics::counter!("sql.txn.read_validation_failures").increment(1);
                    return Err(crate::cluster::state_machine::restart_error());
                }
            }
            Ok(())
        })();
        self.rollback_sqlite();
        r
    }

    /// Runs a read of a cluster transaction and records it for COMMIT to
    /// validate (see [`SqlStmt::read`]); after writes, on top of them.
    /// Reads on a connection holding temporary objects or pragma settings
    /// (which exist only in this session), and reads of session or node
    /// state ([`reads_local_state`]), are not recorded: a replica would
    /// answer them differently.
    fn transaction_read(
        &mut self,
        repl: &Arc<dyn Replicator>,
        sql: &str,
        params: &[Value],
        record: bool,
    ) -> Result<RawOut, SqlError> {
        let ctx = *self.tx_ctx.get_or_insert_with(|| Context::fresh(repl.node_id()));
        let i = self.txlog.len() as u64;
        let out = if self.tx_has_writes() {
            self.with_replayed(|eng| {
                let conn = eng.conn()?;
                with_context(ctx.nth(i), || run_raw(conn, sql, params)).map_err(|e| eng.sqlite_err(e))
            })?
        } else {
            lock(&self.denied).take();
            let conn = self.conn()?;
            with_context(ctx.nth(i), || run_raw(conn, sql, params)).map_err(|e| self.sqlite_err(e))?
        };
        if record && !self.conn.as_ref().is_some_and(|c| c.pinned()) {
            self.txlog.push(SqlStmt {
                sql: sql.to_string(),
                params: params.iter().map(SqlValue::from).collect(),
                expect: Some(out.fingerprint()),
                read: true,
            });
        }
        Ok(out)
    }

    /// Whether statements run inside a transaction (explicit or implicit).
    fn in_transaction(&self) -> bool {
        self.implicit || self.tx() != Tx::Idle
    }

    /// Runs a write statement: alone, through the log; in a transaction, on
    /// this session's connection (so the client sees its effects) and
    /// recorded for COMMIT.
    fn replicated_write(&mut self, repl: Arc<dyn Replicator>, sql: &str, params: &[Value]) -> Result<RawOut, SqlError> {
        let values: Vec<SqlValue> = params.iter().map(SqlValue::from).collect();
        if !self.in_transaction() {
            let cmd = Command::Sql {
                user: self.user().to_string(),
                ctx: Context::fresh(repl.node_id()),
                stmts: vec![SqlStmt {
                    sql: sql.to_string(),
                    params: values,
                    expect: None,
                    read: false,
                }],
            };
            return match repl.write(cmd)? {
                CommandResult::Sql(Ok(mut outs)) if outs.len() == 1 => Ok(outs.remove(0)),
                CommandResult::Sql(Err(e)) => Err(e.into()),
                other => Err(SqlError::new(
                    "XX000",
                    format!("unexpected replication result {other:?}"),
                )),
            };
        }
        let ctx = *self.tx_ctx.get_or_insert_with(|| Context::fresh(repl.node_id()));
        let i = self.txlog.len() as u64;
        let out = self.with_replayed(|eng| {
            let conn = eng.conn()?;
            with_context(ctx.nth(i), || run_raw(conn, sql, params)).map_err(|e| eng.sqlite_err(e))
        })?;
        self.txlog.push(SqlStmt {
            sql: sql.to_string(),
            params: values,
            expect: Some(out.fingerprint()),
            read: false,
        });
        Ok(out)
    }

    /// In a cluster, a transaction keeps no SQLite transaction open between
    /// statements (that would hold this node's write lock and stall the
    /// replication log's apply): each statement runs inside a savepoint
    /// after replaying the transaction's writes so far (each checked
    /// against what the client saw: 40001 if the data changed under them),
    /// and everything is rolled back afterwards. COMMIT replicates the
    /// writes as one log entry.
    fn with_replayed<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, SqlError>) -> Result<T, SqlError> {
        lock(&self.denied).take();
        self.batch("SAVEPOINT moat_speculation")?;
        let log = self.txlog.clone();
        let ctx = self.tx_ctx;
        let r = (|| {
            if let Some(ctx) = ctx {
                // Reads have no effect to replay (COMMIT validates them).
                for (i, s) in log.iter().enumerate().filter(|(_, s)| !s.read) {
                    let params: Vec<Value> = s.params.iter().cloned().map(Into::into).collect();
                    let conn = self.conn()?;
                    let out = with_context(ctx.nth(i as u64), || run_raw(conn, &s.sql, &params))
                        .map_err(|e| self.sqlite_err(e))?;
                    if Some(out.fingerprint()) != s.expect {
                        return Err(crate::cluster::state_machine::restart_error());
                    }
                }
            }
            f(self)
        })();
        if let Some(c) = &self.conn {
            if !c.is_autocommit() {
                // Undo everything; if SQLite already rolled the transaction
                // back on an error, the savepoint is gone and so is the work.
                if c.execute_batch("ROLLBACK TO moat_speculation; RELEASE moat_speculation")
                    .is_err()
                {
                    let _ = c.execute_batch("ROLLBACK");
                }
            }
        }
        r
    }

    /// Runs a simple-query string: its statements in order, stopping at the
    /// first error. Several statements outside a transaction run in one
    /// implicit transaction (as in PostgreSQL), unless they control
    /// transactions themselves.
    pub fn run_batch(
        &mut self,
        stmts: Vec<Result<Prepared, SqlError>>,
        format: &Format,
    ) -> Vec<(Reply, Option<Encoded>)> {
        let mut out = Vec::new();
        // In a cluster, user statements and cluster settings replicate on
        // their own: a batch holding one runs statement by statement.
        let replicated_alone = |k: &StmtKind| {
            matches!(
                k,
                StmtKind::User(Ok(UserStatement::Create { .. }))
                    | StmtKind::User(Ok(UserStatement::AlterPassword { .. }))
                    | StmtKind::User(Ok(UserStatement::Drop { .. }))
                    | StmtKind::SetClusterSetting { .. }
            )
        };
        let implicit = stmts.len() > 1
            && self.tx() == Tx::Idle
            && stmts.iter().all(|s| {
                s.as_ref().is_ok_and(|p| {
                    !(p.stmt.kind.is_transaction_control() || self.repl.is_some() && replicated_alone(&p.stmt.kind))
                })
            });
        if implicit {
            // In a cluster, as at BEGIN: the batch's reads start from every
            // write acknowledged before it (they take no barrier of their own).
            let started = match self.repl.clone() {
                Some(repl) => repl.read_barrier(),
                None => self.batch("BEGIN"),
            };
            if let Err(e) = started {
                out.push((reply(Err(e)), None));
                return out;
            }
            self.implicit = true;
        }
        let mut failed = false;
        for s in stmts {
            let r = match s {
                Ok(p) => self.execute(&p, &[], None),
                Err(e) => {
                    if self.tx() == Tx::Open {
                        self.set_tx(Tx::Failed);
                    }
                    reply(Err(e))
                }
            };
            let (r, enc) = encode_reply(r, format);
            let err = r.outcome.is_err();
            out.push((r, enc));
            if err {
                failed = true;
                break;
            }
        }
        if implicit {
            self.implicit = false;
            if failed {
                self.rollback_sqlite();
                self.clear_txlog();
            } else if let Err(e) = self.commit_sqlite() {
                out.push((reply(Err(e)), None));
            }
        }
        out
    }

    /// Describes a prepared statement: parameter types and result columns
    /// (`None`: no rows). Fixes both for later executions.
    pub fn describe_statement(&mut self, p: &Prepared) -> Result<(Vec<Type>, Option<Vec<Column>>), SqlError> {
        let params = self.param_types(p)?;
        if let Some(c) = lock(&p.columns).clone() {
            return Ok((params, c));
        }
        let columns = match self.static_columns(p, &params)? {
            Some(cols) if cols.iter().any(|c| c.1.is_none()) => {
                // Unknown types: a read-only statement without parameters
                // can be run to look at its first row.
                let peek = if params.is_empty() && self.tx() != Tx::Failed && self.is_readonly(p) {
                    match self.execute_sql(p, &[], None) {
                        Ok(Outcome::Rows { columns, .. }) => Some(columns),
                        _ => None,
                    }
                } else {
                    None
                };
                Some(peek.unwrap_or_else(|| finish_columns(cols, None)))
            }
            Some(cols) => Some(finish_columns(cols, None)),
            None => None,
        };
        *lock(&p.columns) = Some(columns.clone());
        Ok((params, columns))
    }

    /// Describes a bound portal. A read-only statement whose column types
    /// cannot be told statically is run now, and its rows kept for Execute.
    pub fn describe_portal(
        &mut self,
        p: &Prepared,
        raw: Vec<Option<bytes::Bytes>>,
        pformat: Format,
        key: PortalKey,
    ) -> Result<Option<Vec<Column>>, SqlError> {
        if let Some(c) = lock(&p.columns).clone() {
            return Ok(c);
        }
        let params = self.param_types(p)?;
        let cols = match self.static_columns(p, &params)? {
            None => return Ok(None),
            Some(c) => c,
        };
        if cols.iter().all(|c| c.1.is_some()) || !self.is_readonly(p) {
            let cols = finish_columns(cols, None);
            self.pending = Some((key, Pending::Types(cols.iter().map(|c| c.ty.clone()).collect())));
            return Ok(Some(cols));
        }
        let values = decode_params(&raw, &pformat, &params)?;
        let r = self.execute(p, &values, None);
        match r.outcome {
            Ok(outcome) => {
                let cols = match &outcome {
                    Outcome::Rows { columns, .. } => Some(columns.clone()),
                    _ => None,
                };
                self.pending = Some((key, Pending::Ran(outcome)));
                Ok(cols)
            }
            Err(e) => Err(e),
        }
    }

    /// Executes a bound portal.
    pub fn execute_portal(
        &mut self,
        p: &Prepared,
        raw: Vec<Option<bytes::Bytes>>,
        pformat: Format,
        key: PortalKey,
    ) -> Reply {
        if let Some((k, pending)) = self.pending.take() {
            if Arc::ptr_eq(&k, &key) {
                match pending {
                    Pending::Ran(outcome) => return reply(Ok(outcome)),
                    Pending::Types(t) => return self.execute_raw(p, raw, pformat, Some(t)),
                }
            }
        }
        let frozen = lock(&p.columns)
            .clone()
            .flatten()
            .map(|c| c.into_iter().map(|c| c.ty).collect());
        self.execute_raw(p, raw, pformat, frozen)
    }

    fn execute_raw(
        &mut self,
        p: &Prepared,
        raw: Vec<Option<bytes::Bytes>>,
        pformat: Format,
        frozen: Option<Vec<Type>>,
    ) -> Reply {
        let values = match self.param_types(p).and_then(|t| decode_params(&raw, &pformat, &t)) {
            Ok(v) => v,
            Err(e) => {
                if self.tx() == Tx::Open {
                    self.set_tx(Tx::Failed);
                }
                return reply(Err(e));
            }
        };
        self.execute(p, &values, frozen)
    }

    fn is_readonly(&mut self, p: &Prepared) -> bool {
        let Some(sql) = p.sqlite.clone() else {
            return true;
        };
        match self.conn() {
            Ok(c) => c.prepare_cached(&sql).map(|s| s.readonly()).unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Parameter types: the client's where it gave them, else inferred,
    /// else TEXT. Fixed at the first call.
    fn param_types(&mut self, p: &Prepared) -> Result<Vec<Type>, SqlError> {
        if let Some(t) = lock(&p.params).clone() {
            return Ok(t);
        }
        let client = &p.client_types;
        let n = match &p.sqlite {
            Some(sql) => {
                let sql = sql.clone();
                let conn = self.conn()?;
                let r = conn.prepare_cached(&sql).map(|s| s.parameter_count());
                r.map_err(|e| self.sqlite_err(e))?
            }
            None => 0,
        };
        let n = n.max(client.len());
        let inferred = if n > 0 {
            let env = Env {
                columns: self.columns_of(&infer::table_names(&p.stmt.tokens)),
                params: Vec::new(),
            };
            infer::param_types(&p.stmt.tokens, n, &env)
        } else {
            Vec::new()
        };
        let t: Vec<Type> = (0..n)
            .map(|i| {
                client
                    .get(i)
                    .cloned()
                    .flatten()
                    .filter(|t| *t != Type::UNKNOWN)
                    .or_else(|| inferred.get(i).cloned().flatten())
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        *lock(&p.params) = Some(t.clone());
        Ok(t)
    }

    /// Columns (name, type) of tables, by `PRAGMA table_info`.
    fn columns_of(&mut self, tables: &[String]) -> Vec<(String, Option<Type>)> {
        let mut out = Vec::new();
        for t in tables {
            let Ok(conn) = self.conn() else { break };
            let q = format!("PRAGMA table_info({})", quote_ident(t));
            let Ok(mut st) = conn.prepare(&q) else {
                continue;
            };
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?)));
            if let Ok(rows) = rows {
                for (name, decl) in rows.flatten() {
                    out.push((name.to_ascii_lowercase(), decl.as_deref().and_then(from_decl)));
                }
            }
        }
        lock(&self.denied).take();
        out
    }

    /// Result columns of a statement with the types known without running
    /// it (`None` type: unknown). `None`: the statement returns no rows.
    fn static_columns(&mut self, p: &Prepared, params: &[Type]) -> Result<Option<Vec<MaybeTyped>>, SqlError> {
        match &p.stmt.kind {
            StmtKind::Show(Some(name)) => return Ok(Some(vec![(Vars::display_name(name), Some(Type::TEXT))])),
            StmtKind::Show(None) => {
                return Ok(Some(
                    ["name", "setting", "description"]
                        .iter()
                        .map(|n| (n.to_string(), Some(Type::TEXT)))
                        .collect(),
                ))
            }
            StmtKind::ShowClusterSetting(name) => return Ok(Some(vec![(name.clone(), Some(Type::TEXT))])),
            StmtKind::ShowNodes => return Ok(Some(node_columns().into_iter().map(|c| (c.name, Some(c.ty))).collect())),
            StmtKind::User(Ok(UserStatement::Show)) => {
                return Ok(Some(vec![
                    ("username".into(), Some(Type::TEXT)),
                    ("options".into(), Some(Type::TEXT)),
                ]))
            }
            StmtKind::Sql { .. } => {}
            _ => return Ok(None),
        }
        let sql = p.sqlite.clone().unwrap_or_default();
        let (names, decls) = {
            let conn = self.conn()?;
            let r = conn.prepare_cached(&sql).map(|st| {
                let cols = st.columns();
                let names: Vec<String> = cols.iter().map(|c| c.name().to_string()).collect();
                let decls: Vec<Option<Type>> = cols.iter().map(|c| c.decl_type().and_then(from_decl)).collect();
                (names, decls)
            });
            r.map_err(|e| self.sqlite_err(e))?
        };
        if names.is_empty() {
            return Ok(None);
        }
        let mut types = decls;
        if types.iter().any(Option::is_none) {
            if let Some(exprs) = infer::result_exprs(&p.stmt.tokens).filter(|e| e.len() == types.len()) {
                let env = Env {
                    columns: self.columns_of(&infer::table_names(&p.stmt.tokens)),
                    params: params.iter().cloned().map(Some).collect(),
                };
                for (t, e) in types.iter_mut().zip(exprs) {
                    if t.is_none() {
                        *t = infer::expr_type(e, &env);
                    }
                }
            }
        }
        Ok(Some(pg_names(p, names).into_iter().zip(types).collect()))
    }

    /// Executes one statement. The one place statements run.
    pub fn execute(&mut self, p: &Prepared, params: &[Value], frozen: Option<Vec<Type>>) -> Reply {
        let mut notices = Vec::new();
        let mut reported = Vec::new();
        let outcome = self.execute_inner(p, params, frozen, &mut notices, &mut reported);
        if outcome.is_err() && self.tx() == Tx::Open {
            self.set_tx(Tx::Failed);
        }
        Reply {
            outcome,
            notices,
            params: reported,
        }
    }

    fn execute_inner(
        &mut self,
        p: &Prepared,
        params: &[Value],
        frozen: Option<Vec<Type>>,
        notices: &mut Vec<String>,
        reported: &mut Vec<(String, String)>,
    ) -> Result<Outcome, SqlError> {
        let tx = self.tx();
        let kind = &p.stmt.kind;
        if tx == Tx::Failed
            && !matches!(
                kind,
                StmtKind::Commit | StmtKind::Rollback | StmtKind::RollbackTo(_) | StmtKind::Empty
            )
        {
            return Err(SqlError::aborted());
        }
        if !params.is_empty() && !matches!(kind, StmtKind::Sql { .. }) {
            return Err(SqlError::new(
                "08P01",
                format!("this statement takes no parameters, {} were supplied", params.len()),
            ));
        }
        let in_tx = match tx {
            Tx::Idle => None,
            _ if self.read_only => Some("read only"),
            _ => Some("in transaction"),
        };
        let show = |name: &str, rows: Vec<Vec<Value>>| Outcome::Rows {
            columns: text_columns(&[name]),
            rows,
            tag: "SHOW".into(),
        };
        match kind {
            StmtKind::Empty => Ok(Outcome::Empty),
            StmtKind::Refused(e) => Err(e.clone()),
            StmtKind::User(Err(e)) => Err(e.clone().into()),
            StmtKind::User(Ok(stmt)) => self.user_statement(stmt),
            StmtKind::Begin { read_only, mode } => {
                if tx != Tx::Idle {
                    notices.push("there is already a transaction in progress".into());
                    return Ok(Outcome::TxStart(Tag::new("BEGIN")));
                }
                if let Some(repl) = self.repl.clone() {
                    repl.read_barrier()?;
                }
                self.clear_txlog();
                if self.repl.is_none() {
                    self.batch(&format!("BEGIN {mode}"))?;
                }
                if *read_only {
                    self.internal_batch("PRAGMA query_only = 1")?;
                    self.read_only = true;
                }
                self.set_tx(Tx::Open);
                Ok(Outcome::TxStart(Tag::new("BEGIN")))
            }
            StmtKind::Commit => match tx {
                Tx::Idle => {
                    notices.push("there is no transaction in progress".into());
                    Ok(Outcome::TxEnd(Tag::new("COMMIT")))
                }
                Tx::Failed => {
                    self.rollback_sqlite();
                    self.clear_txlog();
                    self.set_tx(Tx::Idle);
                    Ok(Outcome::TxEnd(Tag::new("ROLLBACK")))
                }
                Tx::Open => {
                    let r = self.commit_sqlite();
                    self.end_read_only();
                    self.set_tx(Tx::Idle);
                    r.map(|_| Outcome::TxEnd(Tag::new("COMMIT")))
                }
            },
            StmtKind::Rollback => {
                if tx == Tx::Idle {
                    notices.push("there is no transaction in progress".into());
                }
                self.rollback_sqlite();
                self.clear_txlog();
                self.set_tx(Tx::Idle);
                Ok(Outcome::TxEnd(Tag::new("ROLLBACK")))
            }
            StmtKind::Savepoint(name) | StmtKind::Release(name) | StmtKind::RollbackTo(name) => {
                if tx == Tx::Idle {
                    let what = match kind {
                        StmtKind::Savepoint(_) => "SAVEPOINT",
                        StmtKind::Release(_) => "RELEASE SAVEPOINT",
                        _ => "ROLLBACK TO SAVEPOINT",
                    };
                    return Err(SqlError::new(
                        "25P01",
                        format!("{what} can only be used in transaction blocks"),
                    ));
                }
                let (sql, tag) = match kind {
                    StmtKind::Savepoint(_) => (format!("SAVEPOINT {}", quote_ident(name)), "SAVEPOINT"),
                    StmtKind::Release(_) => (format!("RELEASE SAVEPOINT {}", quote_ident(name)), "RELEASE"),
                    _ => (format!("ROLLBACK TO SAVEPOINT {}", quote_ident(name)), "ROLLBACK"),
                };
                let found = self.savepoints.iter().rposition(|(n, _)| n.eq_ignore_ascii_case(name));
                if self.repl.is_some() {
                    // A cluster transaction's writes live in its log (no
                    // SQLite transaction stays open): a savepoint marks a
                    // position in it.
                    if found.is_none() && !matches!(kind, StmtKind::Savepoint(_)) {
                        return Err(SqlError::new("3B001", format!("savepoint \"{name}\" does not exist")));
                    }
                } else {
                    if self.conn()?.is_autocommit() {
                        return Err(SqlError::new(
                            "25P02",
                            "the transaction was rolled back by the storage engine; send ROLLBACK",
                        ));
                    }
                    self.batch(&sql)?;
                }
                match kind {
                    StmtKind::Savepoint(_) => self.savepoints.push((name.clone(), self.txlog.len())),
                    StmtKind::Release(_) => {
                        if let Some(i) = found {
                            self.savepoints.truncate(i);
                        }
                    }
                    _ => {
                        if let Some(i) = found {
                            // Reads made before the first write after the
                            // savepoint saw nothing that is now undone: the
                            // client saw them, so COMMIT still validates them
                            // (at the same places in the log).
                            let at = self.savepoints[i].1;
                            let kept: Vec<SqlStmt> = self.txlog[at..].iter().take_while(|s| s.read).cloned().collect();
                            self.txlog.truncate(at);
                            self.txlog.extend(kept);
                            self.savepoints.truncate(i + 1);
                        }
                    }
                }
                if matches!(kind, StmtKind::RollbackTo(_)) {
                    self.set_tx(Tx::Open);
                }
                Ok(Outcome::Done(Tag::new(tag)))
            }
            StmtKind::Set { name, value } => {
                if let Some(r) = lock(&self.vars).set(name, value.as_deref())? {
                    reported.push(r);
                }
                Ok(Outcome::Done(Tag::new("SET")))
            }
            StmtKind::SetTransaction { read_only } => {
                if *read_only && tx == Tx::Open && !self.read_only {
                    self.internal_batch("PRAGMA query_only = 1")?;
                    self.read_only = true;
                }
                Ok(Outcome::Done(Tag::new("SET")))
            }
            StmtKind::Reset(Some(name)) => {
                if let Some(r) = lock(&self.vars).set(name, None)? {
                    reported.push(r);
                }
                Ok(Outcome::Done(Tag::new("RESET")))
            }
            StmtKind::Reset(None) | StmtKind::Discard => {
                reported.extend(lock(&self.vars).reset_all());
                Ok(Outcome::Done(Tag::new(if matches!(kind, StmtKind::Discard) {
                    "DISCARD ALL"
                } else {
                    "RESET"
                })))
            }
            StmtKind::Show(Some(name)) => {
                let v = lock(&self.vars).get(name, in_tx);
                match v {
                    Some(v) => Ok(show(&Vars::display_name(name), vec![vec![Value::Text(v)]])),
                    None => Err(SqlError::new(
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    )),
                }
            }
            StmtKind::Show(None) => {
                let all = lock(&self.vars).all(in_tx);
                Ok(Outcome::Rows {
                    columns: text_columns(&["name", "setting", "description"]),
                    rows: all
                        .into_iter()
                        .map(|(n, s, d)| vec![Value::Text(n), Value::Text(s), Value::Text(d)])
                        .collect(),
                    tag: "SHOW".into(),
                })
            }
            StmtKind::NoOp(tag) => Ok(Outcome::Done(Tag::new(tag))),
            StmtKind::ShowNodes => self.show_nodes(),
            StmtKind::SetClusterSetting { name, value } => self.set_cluster_setting(name, value.as_deref()),
            StmtKind::ShowClusterSetting(name) => {
                check_setting_name(name)?;
                let repl = self
                    .repl
                    .clone()
                    .ok_or_else(|| SqlError::unsupported("cluster settings outside a node"))?;
                if !self.in_transaction() {
                    repl.read_barrier()?;
                }
                let v = repl.setting(name).unwrap_or_default();
                Ok(show(name, vec![vec![Value::Text(v)]]))
            }
            StmtKind::Sql { .. } => self.execute_sql(p, params, frozen),
        }
    }

    /// A user statement, on the session's connection with the system-table
    /// authorizer lifted for its duration (it runs only users.rs' own SQL).
    fn user_statement(&mut self, stmt: &UserStatement) -> Result<Outcome, SqlError> {
        let user = self.user().to_string();
        if let Some(repl) = self.repl.clone().filter(|_| !matches!(stmt, UserStatement::Show)) {
            if self.in_transaction() {
                return Err(SqlError::new(
                    "25001",
                    "user statements cannot run inside a transaction on a cluster node; run it on its own",
                ));
            }
            // Hash passwords only for root: anyone else is refused anyway.
            let stmt = if user == users::ROOT {
                users::with_verifiers(stmt)
            } else {
                UserStatement::Show
            };
            if stmt == UserStatement::Show {
                return Err(users::UserError {
                    code: "42501",
                    message: format!("user {user:?} does not have CREATEROLE privilege; only root may manage users"),
                }
                .into());
            }
            return match repl.write(Command::User {
                current_user: user,
                stmt,
            })? {
                CommandResult::User(Ok(tag)) => Ok(Outcome::Done(Tag::new(&tag))),
                CommandResult::User(Err(e)) => Err(e.into()),
                other => Err(SqlError::new(
                    "XX000",
                    format!("unexpected replication result {other:?}"),
                )),
            };
        }
        if matches!(stmt, UserStatement::Show) {
            if let Some(repl) = self.repl.clone() {
                if !self.in_transaction() {
                    repl.read_barrier()?;
                }
            }
        }
        self.conn()?;
        let Some(conn) = self.conn.as_ref() else {
            return Err(SqlError::new("XX000", "internal error: no connection"));
        };
        struct Restore<'a>(&'a PooledConn);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                self.0.reauthorize();
            }
        }
        conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
        let restore = Restore(conn);
        let r = users::execute(conn, stmt, &user);
        drop(restore);
        match r? {
            UserResult::Tag(t) => Ok(Outcome::Done(Tag::new(t))),
            UserResult::Rows(rows) => Ok(Outcome::Rows {
                columns: text_columns(&["username", "options"]),
                rows: rows
                    .into_iter()
                    .map(|(u, o)| vec![Value::Text(u), Value::Text(o)])
                    .collect(),
                tag: "SELECT".into(),
            }),
        }
    }

    /// `SHOW NODES` (root only): every node of the cluster, whether it is
    /// live, whether it leads, and when its certificate expires.
    fn show_nodes(&mut self) -> Result<Outcome, SqlError> {
        if self.user() != users::ROOT {
            return Err(SqlError::new("42501", "only root may list the nodes"));
        }
        let nodes = match &self.repl {
            Some(r) => r.nodes(),
            None => Vec::new(),
        };
        let ts = |t: Option<i64>| match t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok()) {
            Some(t) => Value::Text(
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            ),
            None => Value::Null,
        };
        let rows = nodes
            .into_iter()
            .map(|n| {
                vec![
                    Value::Integer(n.id as i64),
                    Value::Text(n.address),
                    n.sql_address.map(Value::Text).unwrap_or(Value::Null),
                    n.http_address.map(Value::Text).unwrap_or(Value::Null),
                    Value::Integer(n.live as i64),
                    Value::Integer(n.is_leader as i64),
                    ts(n.started_at.map(|t| t.unix_timestamp())),
                    ts(n.cert_expiry),
                    Value::Text(n.version),
                ]
            })
            .collect();
        Ok(Outcome::Rows {
            columns: node_columns(),
            rows,
            tag: "SELECT".into(),
        })
    }

    /// `SET CLUSTER SETTING` / `RESET CLUSTER SETTING` (root only,
    /// validated here, replicated to every node).
    fn set_cluster_setting(&mut self, name: &str, value: Option<&str>) -> Result<Outcome, SqlError> {
        check_setting_name(name)?;
        if self.user() != users::ROOT {
            return Err(SqlError::new("42501", "only root may change cluster settings"));
        }
        if self.in_transaction() {
            return Err(SqlError::new(
                "25001",
                "SET CLUSTER SETTING cannot run inside a transaction; run it on its own",
            ));
        }
        if let Some(text) = value {
            crate::hba::HbaConfig::parse(text).map_err(|e| {
                SqlError::new("22023", format!("invalid value for {name}: {e}"))
                    .hint("the value is an HBA configuration in pg_hba syntax, one rule per line")
            })?;
        }
        let repl = self
            .repl
            .clone()
            .ok_or_else(|| SqlError::unsupported("cluster settings outside a node"))?;
        match repl.write(Command::SetSetting {
            current_user: self.user().to_string(),
            name: name.to_string(),
            value: value.map(str::to_string),
        })? {
            CommandResult::Setting(Ok(tag)) => Ok(Outcome::Done(Tag::new(&tag))),
            CommandResult::Setting(Err(e)) => Err(e.into()),
            other => Err(SqlError::new(
                "XX000",
                format!("unexpected replication result {other:?}"),
            )),
        }
    }

    fn execute_sql(&mut self, p: &Prepared, params: &[Value], frozen: Option<Vec<Type>>) -> Result<Outcome, SqlError> {
        let StmtKind::Sql { verb, .. } = &p.stmt.kind else {
            return Err(SqlError::new("XX000", "internal error: not a SQL statement"));
        };
        let sql = p.sqlite.clone().unwrap_or_default();
        let param_types: Vec<Type> = lock(&p.params).clone().unwrap_or_default();
        if let Some(repl) = self.repl.clone() {
            if !self.is_readonly(p) {
                let out = self.replicated_write(repl, &sql, params)?;
                return self.outcome(p, verb, out, frozen, param_types);
            }
            if !self.in_transaction() {
                if !self.barrier_done {
                    repl.read_barrier()?;
                }
            } else {
                // Reads see the transaction's own writes, and are validated
                // at COMMIT.
                let record = !reads_local_state(&p.stmt.tokens);
                let out = self.transaction_read(&repl, &sql, params, record)?;
                return self.outcome(p, verb, out, frozen, param_types);
            }
        }
        lock(&self.denied).take();
        let conn = self.conn()?;
        let result = run_raw(conn, &sql, params);
        let out = result.map_err(|e| self.sqlite_err(e))?;
        self.outcome(p, verb, out, frozen, param_types)
    }

    /// Builds the client's outcome from what SQLite returned.
    fn outcome(
        &mut self,
        p: &Prepared,
        verb: &Verb,
        out: RawOut,
        frozen: Option<Vec<Type>>,
        param_types: Vec<Type>,
    ) -> Result<Outcome, SqlError> {
        let names = out.names;
        let decls: Vec<Option<Type>> = out.decls.iter().map(|d| d.as_deref().and_then(from_decl)).collect();
        let changes = out.changes;
        let rows: Option<Vec<Vec<Value>>> = out.rows.map(|rows| {
            rows.into_iter()
                .map(|r| r.into_iter().map(Value::from).collect())
                .collect()
        });
        let Some(rows) = rows else {
            let tag = match verb {
                Verb::Insert => Tag::new("INSERT").with_oid(0).with_rows(changes as usize),
                Verb::Update => Tag::new("UPDATE").with_rows(changes as usize),
                Verb::Delete => Tag::new("DELETE").with_rows(changes as usize),
                Verb::Select => Tag::new("SELECT").with_rows(0),
                Verb::Tag(t) if t == "TRUNCATE TABLE" => Tag::new("TRUNCATE TABLE"),
                Verb::Tag(t) => Tag::new(t),
            };
            return Ok(Outcome::Done(tag));
        };
        let types: Vec<Type> = match frozen.filter(|f| f.len() == names.len()) {
            Some(f) => f,
            None => {
                let mut t = decls;
                if t.iter().any(Option::is_none) {
                    if let Some(exprs) = infer::result_exprs(&p.stmt.tokens).filter(|e| e.len() == t.len()) {
                        let env = Env {
                            columns: self.columns_of(&infer::table_names(&p.stmt.tokens)),
                            params: param_types.into_iter().map(Some).collect(),
                        };
                        for (ty, e) in t.iter_mut().zip(exprs) {
                            if ty.is_none() {
                                *ty = infer::expr_type(e, &env);
                            }
                        }
                    }
                }
                let cols: Vec<(String, Option<Type>)> = names.iter().cloned().zip(t).collect();
                finish_columns(cols, rows.first()).into_iter().map(|c| c.ty).collect()
            }
        };
        let tag = match verb {
            Verb::Insert => "INSERT 0",
            Verb::Update => "UPDATE",
            Verb::Delete => "DELETE",
            _ => "SELECT",
        };
        Ok(Outcome::Rows {
            columns: pg_names(p, names)
                .into_iter()
                .zip(types)
                .map(|(name, ty)| Column { name, ty })
                .collect(),
            rows,
            tag: tag.into(),
        })
    }
}

/// The cluster settings moat has.
fn check_setting_name(name: &str) -> Result<(), SqlError> {
    if name == crate::hba::HBA_SETTING {
        Ok(())
    } else {
        Err(SqlError::new("42704", format!("unknown cluster setting {name:?}"))
            .hint(format!("moat has one cluster setting: {}", crate::hba::HBA_SETTING)))
    }
}

fn node_columns() -> Vec<Column> {
    [
        ("id", Type::INT8),
        ("address", Type::TEXT),
        ("sql_address", Type::TEXT),
        ("http_address", Type::TEXT),
        ("is_live", Type::BOOL),
        ("is_leader", Type::BOOL),
        ("started_at", Type::TEXT),
        ("cert_expires_at", Type::TEXT),
        ("build", Type::TEXT),
    ]
    .into_iter()
    .map(|(n, t)| Column {
        name: n.to_string(),
        ty: t,
    })
    .collect()
}

/// PostgreSQL's column names where SQLite's differ (`count` for
/// `count(*)`, `?column?` for `1 + 1`).
fn pg_names(p: &Prepared, names: Vec<String>) -> Vec<String> {
    match infer::result_exprs(&p.stmt.tokens).filter(|e| e.len() == names.len()) {
        Some(exprs) => names
            .into_iter()
            .zip(exprs)
            .map(|(n, e)| infer::column_name(e).unwrap_or(n))
            .collect(),
        None => names,
    }
}

/// Unknown column types: the first row's value type, else TEXT.
fn finish_columns(cols: Vec<(String, Option<Type>)>, first: Option<&Vec<Value>>) -> Vec<Column> {
    cols.into_iter()
        .enumerate()
        .map(|(i, (name, t))| Column {
            name,
            ty: t.unwrap_or_else(|| first.and_then(|r| r.get(i)).map(types::of_value).unwrap_or(Type::TEXT)),
        })
        .collect()
}

fn reply(outcome: Result<Outcome, SqlError>) -> Reply {
    Reply {
        outcome,
        notices: Vec::new(),
        params: Vec::new(),
    }
}

/// Encodes the rows of a reply (on the blocking thread).
pub fn encode_reply(mut r: Reply, format: &Format) -> (Reply, Option<Encoded>) {
    if let Ok(Outcome::Rows { .. }) = &r.outcome {
        let Ok(Outcome::Rows { columns, rows, tag }) = std::mem::replace(&mut r.outcome, Ok(Outcome::Empty)) else {
            unreachable!()
        };
        match encode_rows(&columns, rows, format) {
            Ok(data) => {
                let enc = Encoded {
                    fields: Arc::new(fields(&columns, format)),
                    rows: data,
                    tag: tag.clone(),
                };
                r.outcome = Ok(Outcome::Rows {
                    columns,
                    rows: Vec::new(),
                    tag,
                });
                return (r, Some(enc));
            }
            Err(e) => {
                r.outcome = Err(e);
                return (r, None);
            }
        }
    }
    (r, None)
}

/// Decodes bind parameters by their types.
pub fn decode_params(raw: &[Option<bytes::Bytes>], format: &Format, types: &[Type]) -> Result<Vec<Value>, SqlError> {
    if raw.len() != types.len() {
        return Err(SqlError::new(
            "08P01",
            format!(
                "bind message supplies {} parameters, but the prepared statement requires {}",
                raw.len(),
                types.len()
            ),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, b)| {
            types::decode_param(b.as_deref(), &types[i], is_binary(format, i)).map_err(|mut e| {
                e.message = format!("parameter ${}: {}", i + 1, e.message);
                e
            })
        })
        .collect()
}
