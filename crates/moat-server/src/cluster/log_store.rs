//! The Raft log, vote and node id of a node: `raft.db` in the store
//! directory (SQLite, WAL, every commit fsynced before Raft is told the
//! entries are durable).

// openraft's StorageError/RPCError are large; they are its types, not ours.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, Entry, RaftLogReader, StorageError, StorageIOError, Vote};
use rusqlite::{params, Connection, OptionalExtension};

use super::types::{LogId, NodeId, TypeConfig};

/// File name of the log inside the store directory.
pub const LOG_FILE: &str = "raft.db";

/// The log store; clones share one connection.
#[derive(Clone)]
pub struct LogStore {
    conn: Arc<Mutex<Connection>>,
}

fn lock(c: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_err(e: impl ToString) -> StorageError<NodeId> {
    StorageIOError::read_logs(AnyError::error(e)).into()
}

fn write_err(e: impl ToString) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::error(e)).into()
}

impl LogStore {
    /// Opens (creating) `raft.db` in `store_dir`.
    pub fn open(store_dir: &Path) -> rusqlite::Result<LogStore> {
        let conn = Connection::open(store_dir.join(LOG_FILE))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )?;
        Ok(LogStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, String> {
        let c = lock(&self.conn);
        let v: Option<String> = c
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0))
            .optional()
            .map_err(|e| e.to_string())?;
        v.map(|v| serde_json::from_str(&v).map_err(|e| format!("{key}: {e}")))
            .transpose()
    }

    fn set_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), String> {
        let v = serde_json::to_string(value).map_err(|e| e.to_string())?;
        lock(&self.conn)
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, v],
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// This node's id, once it has one.
    pub fn node_id(&self) -> Result<Option<NodeId>, String> {
        self.get_meta("node_id")
    }

    /// Records this node's id (durably, before the node uses it).
    pub fn set_node_id(&self, id: NodeId) -> Result<(), String> {
        self.set_meta("node_id", &id)
    }

    /// The id of the cluster this node belongs to.
    pub fn cluster_id(&self) -> Result<Option<String>, String> {
        self.get_meta("cluster_id")
    }

    /// Records the cluster id.
    pub fn set_cluster_id(&self, id: &str) -> Result<(), String> {
        self.set_meta("cluster_id", &id)
    }

    fn last_purged(&self) -> Result<Option<LogId>, String> {
        self.get_meta("last_purged")
    }

    fn entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry<TypeConfig>>, String> {
        let c = lock(&self.conn);
        let mut st = c
            .prepare_cached("SELECT entry FROM log WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")
            .map_err(|e| e.to_string())?;
        let end = end.map(|e| e.min(i64::MAX as u64) as i64).unwrap_or(i64::MAX);
        let rows = st
            .query_map(params![start.min(i64::MAX as u64) as i64, end], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for r in rows {
            let bytes = r.map_err(|e| e.to_string())?;
            out.push(serde_json::from_slice(&bytes).map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&LogStore) -> Result<T, StorageError<NodeId>> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, StorageError<NodeId>>> {
        let me = self.clone();
        async move {
            tokio::task::spawn_blocking(move || f(&me))
                .await
                .map_err(|e| write_err(format!("log thread failed: {e}")))?
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => Some(e + 1),
            Bound::Excluded(e) => Some(*e),
            Bound::Unbounded => None,
        };
        self.blocking(move |s| s.entries(start, end).map_err(read_err)).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.blocking(|s| {
            let last_purged = s.last_purged().map_err(read_err)?;
            let last: Option<Vec<u8>> = lock(&s.conn)
                .query_row("SELECT entry FROM log ORDER BY idx DESC LIMIT 1", [], |r| r.get(0))
                .optional()
                .map_err(read_err)?;
            let last_log_id = match last {
                Some(b) => {
                    let e: Entry<TypeConfig> = serde_json::from_slice(&b).map_err(read_err)?;
                    Some(e.log_id)
                }
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let vote = *vote;
        self.blocking(move |s| {
            s.set_meta("vote", &vote)
                .map_err(|e| StorageIOError::write_vote(AnyError::error(e)).into())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.blocking(|s| {
            s.get_meta("vote")
                .map_err(|e| StorageIOError::read_vote(AnyError::error(e)).into())
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError<NodeId>> {
        // A hint for restarts, not a promise: without an fsync, a crash
        // leaves an older committed id, which is always safe (never a newer
        // one). Saves an fsync per commit.
        self.blocking(move |s| {
            let c = lock(&s.conn);
            let _ = c.pragma_update(None, "synchronous", "NORMAL");
            drop(c);
            let r = s.set_meta("committed", &committed).map_err(write_err);
            let _ = lock(&s.conn).pragma_update(None, "synchronous", "FULL");
            r
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        self.blocking(|s| Ok(s.get_meta::<Option<LogId>>("committed").map_err(read_err)?.flatten()))
            .await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut rows = Vec::new();
        for e in entries {
            rows.push((e.log_id.index, serde_json::to_vec(&e).map_err(write_err)?));
        }
        let r = self
            .blocking(move |s| {
                let mut c = lock(&s.conn);
                let tx = c.transaction().map_err(write_err)?;
                {
                    let mut st = tx
                        .prepare_cached("INSERT OR REPLACE INTO log (idx, entry) VALUES (?1, ?2)")
                        .map_err(write_err)?;
                    for (idx, bytes) in &rows {
                        st.execute(params![*idx as i64, bytes]).map_err(write_err)?;
                    }
                }
                // synchronous=FULL: durable when commit returns.
                tx.commit().map_err(write_err)
            })
            .await;
        match &r {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        r
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.blocking(move |s| {
            lock(&s.conn)
                .execute("DELETE FROM log WHERE idx >= ?1", params![log_id.index as i64])
                .map(|_| ())
                .map_err(write_err)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.blocking(move |s| {
            s.set_meta("last_purged", &log_id).map_err(write_err)?;
            lock(&s.conn)
                .execute("DELETE FROM log WHERE idx <= ?1", params![log_id.index as i64])
                .map(|_| ())
                .map_err(write_err)
        })
        .await
    }
}
