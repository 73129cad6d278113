//! The replicated state machine: the node's SQLite database (`moat.db`).
//!
//! Entries are applied in log order, in one SQLite transaction per batch,
//! together with the id of the last applied entry and the membership
//! (`moat_raft_state`), so a crash can never apply an entry twice or lose
//! one. Each SQL command runs in a savepoint under its fixed clock and
//! random seed (see [`crate::determinism`]): all or nothing, with the same
//! outcome on every replica. A snapshot is a copy of the database file made
//! with SQLite's backup API; installing one restores it in place.

// openraft's StorageError/RPCError are large; they are its types, not ours.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, Entry, EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use rusqlite::{params, Connection, OptionalExtension};

use super::types::{Command, CommandResult, LogId, Node, NodeId, SnapshotData, TypeConfig, WireError};
use crate::db::Database;
use crate::sql::error::{from_sqlite, ErrorContext};
use crate::sql::SqlError;

/// Snapshot file kept in the store directory.
const SNAPSHOT_FILE: &str = "raft-snapshot.db";
const SNAPSHOT_META: &str = "raft-snapshot.json";

type Membership = StoredMembership<NodeId, Node>;

struct Inner {
    conn: Connection,
    user: Arc<Mutex<String>>,
    denied: Arc<Mutex<Option<String>>>,
    applied: Option<LogId>,
    membership: Membership,
    settings_changed: bool,
}

/// The state machine of a node. Clones share it.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<Inner>>,
    store_dir: PathBuf,
    applied_tx: Arc<tokio::sync::watch::Sender<u64>>,
    settings_tx: Arc<tokio::sync::watch::Sender<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sm_err(e: impl ToString) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::error(e)).into()
}

fn snap_err(e: impl ToString) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, AnyError::error(e)).into()
}

/// Creates the state tables.
fn ensure_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS moat_raft_state (id INTEGER PRIMARY KEY CHECK (id = 1), applied TEXT, membership TEXT);
         CREATE TABLE IF NOT EXISTS moat_cluster (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    )
}

fn read_state(conn: &Connection) -> Result<(Option<LogId>, Membership), String> {
    let row: Option<(Option<String>, Option<String>)> = conn
        .query_row(
            "SELECT applied, membership FROM moat_raft_state WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| e.to_string())?;
    let Some((applied, membership)) = row else {
        return Ok((None, Membership::default()));
    };
    let applied = match applied {
        Some(a) => serde_json::from_str(&a).map_err(|e| e.to_string())?,
        None => None,
    };
    let membership = match membership {
        Some(m) => serde_json::from_str(&m).map_err(|e| e.to_string())?,
        None => Membership::default(),
    };
    Ok((applied, membership))
}

fn write_state(conn: &Connection, applied: &Option<LogId>, membership: &Membership) -> rusqlite::Result<()> {
    let a = serde_json::to_string(applied).unwrap_or_else(|_| "null".into());
    let m = serde_json::to_string(membership).unwrap_or_else(|_| "null".into());
    conn.execute(
        "INSERT INTO moat_raft_state (id, applied, membership) VALUES (1, ?1, ?2)
         ON CONFLICT(id) DO UPDATE SET applied = excluded.applied, membership = excluded.membership",
        params![a, m],
    )
    .map(|_| ())
}

/// Runs `f` until SQLite stops answering BUSY (a session's own write
/// transaction on this node holds the lock; the apply waits for it).
fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let mut waited = 0u32;
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                waited += 1;
                if waited % 10 == 1 {
                    tracing::warn!("applying the Raft log waits for a local write transaction to finish");
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

impl StateMachine {
    /// Opens the state machine on the node's database.
    pub fn open(db: &Database, store_dir: &Path) -> Result<StateMachine, String> {
        let conn = db.connect().map_err(|e| e.to_string())?;
        conn.busy_timeout(std::time::Duration::from_secs(1))
            .map_err(|e| e.to_string())?;
        ensure_schema(&conn).map_err(|e| e.to_string())?;
        // The Raft log is the durable record (fsynced before a write is
        // acknowledged); the state machine can be rebuilt from it after a
        // crash (the applied index commits atomically with the data), so its
        // commits need no fsync of their own. It is made durable before a
        // snapshot lets the log be purged (see `build_snapshot`).
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| e.to_string())?;
        let user = Arc::new(Mutex::new(String::new()));
        let denied = Arc::new(Mutex::new(None));
        crate::sql::session::register_functions(
            &conn,
            user.clone(),
            Arc::new(Mutex::new(crate::sql::intercept::Vars::new(""))),
            Arc::new(std::sync::atomic::AtomicU8::new(0)),
        )
        .map_err(|e| e.to_string())?;
        let (applied, membership) = read_state(&conn)?;
        let (applied_tx, _) = tokio::sync::watch::channel(applied.map(|l| l.index).unwrap_or(0));
        let (settings_tx, _) = tokio::sync::watch::channel(0);
        Ok(StateMachine {
            inner: Arc::new(Mutex::new(Inner {
                conn,
                user,
                denied,
                applied,
                membership,
                settings_changed: false,
            })),
            store_dir: store_dir.to_path_buf(),
            applied_tx: Arc::new(applied_tx),
            settings_tx: Arc::new(settings_tx),
        })
    }

    /// Bumped whenever a cluster setting may have changed (a setting
    /// command applied, a snapshot installed).
    pub fn settings_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.settings_tx.subscribe()
    }

    /// A cluster setting's value, if set.
    pub fn setting(&self, name: &str) -> Option<String> {
        self.cluster_value(&format!("setting.{name}"))
    }

    /// Index of the last applied entry, as it changes.
    pub fn applied_index(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    /// A value of the replicated `moat_cluster` table.
    pub fn cluster_value(&self, key: &str) -> Option<String> {
        let g = lock(&self.inner);
        g.conn
            .query_row("SELECT value FROM moat_cluster WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .ok()
            .flatten()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&StateMachine) -> Result<T, StorageError<NodeId>> + Send + 'static,
    ) -> Result<T, StorageError<NodeId>> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| sm_err(format!("state machine thread failed: {e}")))?
    }
}

impl Inner {
    fn sql_error(&self, e: &rusqlite::Error) -> WireError {
        let ctx = ErrorContext {
            denied: lock(&self.denied).take(),
            in_transaction: false,
        };
        WireError::from(&from_sqlite(e, &ctx))
    }

    fn apply_command(&mut self, cmd: &Command) -> rusqlite::Result<CommandResult> {
        match cmd {
            Command::Sql { user, ctx, stmts } => {
                *lock(&self.user) = user.clone();
                self.conn.execute_batch("SAVEPOINT moat_entry")?;
                crate::sql::session::install_authorizer(&self.conn, self.denied.clone());
                let mut outs = Vec::with_capacity(stmts.len());
                let mut failure: Option<WireError> = None;
                for (i, s) in stmts.iter().enumerate() {
                    let params: Vec<rusqlite::types::Value> = s.params.iter().cloned().map(Into::into).collect();
                    let r = crate::determinism::with_context(ctx.nth(i as u64), || {
                        crate::sql::session::run_raw(&self.conn, &s.sql, &params)
                    });
                    match r {
                        Ok(mut out) => {
                            if let Some(expect) = s.expect {
                                if out.fingerprint() != expect {
                                    failure = Some(WireError::from(&restart_error()));
                                    break;
                                }
                            }
                            if s.read {
                                // Validated; its rows are not sent back.
                                out.rows = None;
                            }
                            outs.push(out);
                        }
                        Err(e) => {
                            failure = Some(self.sql_error(&e));
                            break;
                        }
                    }
                }
                self.conn
                    .authorizer(None::<fn(rusqlite::hooks::AuthContext<'_>) -> rusqlite::hooks::Authorization>);
                match failure {
                    Some(f) => {
                        self.conn.execute_batch("ROLLBACK TO moat_entry; RELEASE moat_entry")?;
                        Ok(CommandResult::Sql(Err(f)))
                    }
                    None => {
                        self.conn.execute_batch("RELEASE moat_entry")?;
                        Ok(CommandResult::Sql(Ok(outs)))
                    }
                }
            }
            Command::User { current_user, stmt } => {
                self.conn.execute_batch("SAVEPOINT moat_entry")?;
                let r = crate::users::execute_replicated(&self.conn, stmt, current_user);
                match r {
                    Ok(res) => {
                        self.conn.execute_batch("RELEASE moat_entry")?;
                        let tag = match res {
                            crate::users::UserResult::Tag(t) => t.to_string(),
                            crate::users::UserResult::Rows(_) => "SHOW USERS".to_string(),
                        };
                        Ok(CommandResult::User(Ok(tag)))
                    }
                    Err(e) => {
                        self.conn.execute_batch("ROLLBACK TO moat_entry; RELEASE moat_entry")?;
                        Ok(CommandResult::User(Err(WireError {
                            code: e.code.to_string(),
                            message: e.message,
                            detail: None,
                            hint: None,
                        })))
                    }
                }
            }
            Command::SetSetting {
                current_user,
                name,
                value,
            } => {
                if current_user != crate::users::ROOT {
                    return Ok(CommandResult::Setting(Err(WireError {
                        code: "42501".into(),
                        message: "only root may change cluster settings".into(),
                        detail: None,
                        hint: None,
                    })));
                }
                let key = format!("setting.{name}");
                match value {
                    Some(v) => self.conn.execute(
                        "INSERT INTO moat_cluster (key, value) VALUES (?1, ?2)
                         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        params![key, v],
                    )?,
                    None => self
                        .conn
                        .execute("DELETE FROM moat_cluster WHERE key = ?1", params![key])?,
                };
                self.settings_changed = true;
                Ok(CommandResult::Setting(Ok("SET CLUSTER SETTING".into())))
            }
            Command::AllocNodeId { addr } => {
                let next: i64 = self
                    .conn
                    .query_row(
                        "SELECT CAST(value AS INTEGER) FROM moat_cluster WHERE key = 'next_node_id'",
                        [],
                        |r| r.get(0),
                    )
                    .optional()?
                    .unwrap_or(2);
                self.conn.execute(
                    "INSERT INTO moat_cluster (key, value) VALUES ('next_node_id', ?1)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    params![(next + 1).to_string()],
                )?;
                tracing::info!(node_id = next, %addr, "allocated a node id");
                Ok(CommandResult::NodeId(next as u64))
            }
            Command::Bootstrap { cluster_id } => {
                self.conn.execute(
                    "INSERT OR IGNORE INTO moat_cluster (key, value) VALUES ('cluster_id', ?1)",
                    params![cluster_id],
                )?;
                Ok(CommandResult::None)
            }
        }
    }
}

/// SQLSTATE 40001: the data changed between the session's run of a
/// transaction and its replication.
pub fn restart_error() -> SqlError {
    SqlError::new(
        "40001",
        "restart transaction: the data this transaction read or wrote changed before it committed",
    )
    .hint("retry the transaction")
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        self.blocking(|sm| {
            let g = lock(&sm.inner);
            // Make every applied entry durable first: openraft purges the log
            // up to this snapshot afterwards. A commit with synchronous=FULL
            // fsyncs the WAL, and with it every earlier transaction.
            let durable = g
                .conn
                .pragma_update(None, "synchronous", "FULL")
                .and_then(|_| retry_busy(|| g.conn.execute_batch("BEGIN IMMEDIATE")))
                .and_then(|_| write_state(&g.conn, &g.applied, &g.membership))
                .and_then(|_| g.conn.execute_batch("COMMIT"));
            let _ = g.conn.pragma_update(None, "synchronous", "NORMAL");
            if let Err(e) = durable {
                if !g.conn.is_autocommit() {
                    let _ = g.conn.execute_batch("ROLLBACK");
                }
                return Err(snap_err(format!(
                    "cannot make the state durable before a snapshot: {e}"
                )));
            }
            let tmp = sm.store_dir.join(format!("{SNAPSHOT_FILE}.tmp"));
            let _ = std::fs::remove_file(&tmp);
            g.conn.backup("main", &tmp, None).map_err(snap_err)?;
            let meta = SnapshotMeta {
                last_log_id: g.applied,
                last_membership: g.membership.clone(),
                snapshot_id: format!(
                    "{}-{}",
                    g.applied.map(|l| l.leader_id.term).unwrap_or(0),
                    g.applied.map(|l| l.index).unwrap_or(0)
                ),
            };
            drop(g);
            let data = std::fs::read(&tmp).map_err(snap_err)?;
            save_current(&sm.store_dir, &tmp, &meta)?;
            tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "built a snapshot");
            Ok(Snapshot {
                meta,
                snapshot: Box::new(std::io::Cursor::new(data)),
            })
        })
        .await
    }
}

/// Keeps `file` as the current snapshot, with its metadata (both fsynced).
fn save_current(store_dir: &Path, file: &Path, meta: &SnapshotMeta<NodeId, Node>) -> Result<(), StorageError<NodeId>> {
    let sync = |p: &Path| std::fs::File::open(p).and_then(|f| f.sync_all()).map_err(snap_err);
    sync(file)?;
    std::fs::rename(file, store_dir.join(SNAPSHOT_FILE)).map_err(snap_err)?;
    let meta_tmp = store_dir.join(format!("{SNAPSHOT_META}.tmp"));
    std::fs::write(&meta_tmp, serde_json::to_vec(meta).map_err(snap_err)?).map_err(snap_err)?;
    sync(&meta_tmp)?;
    std::fs::rename(&meta_tmp, store_dir.join(SNAPSHOT_META)).map_err(snap_err)?;
    sync(store_dir)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError<NodeId>> {
        let g = lock(&self.inner);
        Ok((g.applied, g.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        self.blocking(move |sm| {
            let mut g = lock(&sm.inner);
            retry_busy(|| g.conn.execute_batch("BEGIN IMMEDIATE")).map_err(sm_err)?;
            let mut results = Vec::with_capacity(entries.len());
            let mut applied = g.applied;
            let mut membership = g.membership.clone();
            for e in &entries {
                let r = match &e.payload {
                    EntryPayload::Blank => CommandResult::None,
                    EntryPayload::Membership(m) => {
                        membership = StoredMembership::new(Some(e.log_id), m.clone());
                        CommandResult::None
                    }
                    EntryPayload::Normal(cmd) => match g.apply_command(cmd) {
                        Ok(r) => r,
                        Err(err) => {
                            let _ = g.conn.execute_batch("ROLLBACK");
                            return Err(StorageIOError::apply(e.log_id, AnyError::error(err)).into());
                        }
                    },
                };
                applied = Some(e.log_id);
                results.push(r);
            }
            let commit = write_state(&g.conn, &applied, &membership).and_then(|_| g.conn.execute_batch("COMMIT"));
            if let Err(err) = commit {
                let _ = g.conn.execute_batch("ROLLBACK");
                return Err(sm_err(err));
            }
            g.applied = applied;
            g.membership = membership;
            let idx = applied.map(|l| l.index).unwrap_or(0);
            let settings = std::mem::take(&mut g.settings_changed);
            drop(g);
            sm.applied_tx.send_replace(idx);
            if settings {
                sm.settings_tx.send_modify(|n| *n += 1);
            }
            Ok(results)
        })
        .await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError<NodeId>> {
        Ok(Box::new(std::io::Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError<NodeId>> {
        let meta = meta.clone();
        self.blocking(move |sm| {
            let incoming = sm.store_dir.join(format!("{SNAPSHOT_FILE}.in"));
            std::fs::write(&incoming, snapshot.get_ref()).map_err(snap_err)?;
            let mut g = lock(&sm.inner);
            retry_busy(|| g.conn.restore("main", &incoming, None::<fn(rusqlite::backup::Progress)>))
                .map_err(snap_err)?;
            let (applied, membership) = read_state(&g.conn).map_err(snap_err)?;
            if applied != meta.last_log_id {
                tracing::warn!(?applied, expected = ?meta.last_log_id, "snapshot state differs from its metadata; using the metadata");
            }
            g.applied = meta.last_log_id;
            g.membership = if applied == meta.last_log_id {
                membership
            } else {
                meta.last_membership.clone()
            };
            // Durable before openraft purges the log up to the snapshot.
            let _ = g.conn.pragma_update(None, "synchronous", "FULL");
            let written = write_state(&g.conn, &g.applied, &g.membership);
            let _ = g.conn.pragma_update(None, "synchronous", "NORMAL");
            written.map_err(snap_err)?;
            let idx = g.applied.map(|l| l.index).unwrap_or(0);
            drop(g);
            save_current(&sm.store_dir, &incoming, &meta)?;
            sm.applied_tx.send_replace(idx);
            sm.settings_tx.send_modify(|n| *n += 1);
            tracing::info!(snapshot = %meta.snapshot_id, "installed a snapshot");
            Ok(())
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        self.blocking(|sm| {
            let meta_path = sm.store_dir.join(SNAPSHOT_META);
            let Ok(meta_bytes) = std::fs::read(&meta_path) else {
                return Ok(None);
            };
            let meta: SnapshotMeta<NodeId, Node> = serde_json::from_slice(&meta_bytes).map_err(snap_err)?;
            let data = std::fs::read(sm.store_dir.join(SNAPSHOT_FILE)).map_err(snap_err)?;
            Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(std::io::Cursor::new(data)),
            }))
        })
        .await
    }
}
