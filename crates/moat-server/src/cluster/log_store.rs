//! The Raft log, vote and node id of a node: `raft.db` in the store
//! directory (SQLite, WAL, every append fsynced before Raft is told the
//! entries are durable).
//!
//! One thread owns the database and runs every operation in order. Appends
//! return at once and are group-committed: the thread writes every append
//! waiting in its queue in one transaction, with one fsync, then reports
//! each as flushed (openraft's `LogFlushed` callback), so concurrent writes
//! share fsyncs instead of queueing behind each other's.
//!
//! The newest entries are also kept in memory ([`Tail`]): applying and
//! replicating an entry right after it was appended reads it from there,
//! without a round trip to the log thread.

// openraft's StorageError is large; it is its type, not ours.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, Entry, RaftLogReader, StorageError, StorageIOError, Vote};
use rusqlite::{params, Connection, OptionalExtension};

use super::types::{LogId, NodeId, TypeConfig};

/// File name of the log inside the store directory.
pub const LOG_FILE: &str = "raft.db";

type Job = Box<dyn FnOnce(&Connection) + Send>;

/// Encoded entries by index.
type Rows = Vec<(u64, Vec<u8>)>;

enum Op {
    Append(Rows, LogFlushed<TypeConfig>),
    Run(Job),
}

/// The log store; clones share the log thread and the tail.
#[derive(Clone)]
pub struct LogStore {
    ops: mpsc::Sender<Op>,
    tail: Arc<Mutex<Tail>>,
}

/// The most recently appended entries, by index: what the state machine and
/// replication read right after an append. Changed in the same order as the
/// log thread's queue (at the call, before queueing), so a read sees every
/// append, truncation and purge made before it.
#[derive(Default)]
struct Tail {
    /// Entries with their encoded size.
    entries: BTreeMap<u64, (Entry<TypeConfig>, usize)>,
    /// The sum of the sizes.
    bytes: usize,
}

impl Tail {
    /// How many entries it keeps at most.
    const CAPACITY: usize = 1024;
    /// How many encoded bytes it keeps at most (an entry may hold large
    /// statements).
    const MAX_BYTES: usize = 32 << 20;

    /// Adds entries (with their encoded sizes), replacing any at or after
    /// the first one's index.
    fn append(&mut self, entries: &[(Entry<TypeConfig>, usize)]) {
        for (e, size) in entries {
            // An append at an index replaces what follows it (Raft
            // truncates first, but never rely on it).
            self.truncate(e.log_id.index);
            self.entries.insert(e.log_id.index, (e.clone(), *size));
            self.bytes += size;
        }
        while self.entries.len() > Self::CAPACITY || self.bytes > Self::MAX_BYTES {
            match self.entries.pop_first() {
                Some((_, (_, size))) => self.bytes -= size,
                None => break,
            }
        }
    }

    /// Drops the entries at `index` and after.
    fn truncate(&mut self, index: u64) {
        for (_, (_, size)) in self.entries.split_off(&index) {
            self.bytes -= size;
        }
    }

    /// Drops the entries up to `index`, inclusive.
    fn purge(&mut self, index: u64) {
        let kept = self.entries.split_off(&(index + 1));
        for (_, (_, size)) in std::mem::replace(&mut self.entries, kept) {
            self.bytes -= size;
        }
    }

    /// Entries `start..end` if all are here.
    fn get(&self, start: u64, end: Option<u64>) -> Option<Vec<Entry<TypeConfig>>> {
        let first = *self.entries.keys().next()?;
        let last = *self.entries.keys().next_back()?;
        let end = end.unwrap_or(last + 1).min(last + 1);
        if start < first || start > end {
            return None;
        }
        Some(self.entries.range(start..end).map(|(_, (e, _))| e.clone()).collect())
    }
}

fn lock_tail(t: &Mutex<Tail>) -> std::sync::MutexGuard<'_, Tail> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_err(e: impl ToString) -> StorageError<NodeId> {
    StorageIOError::read_logs(AnyError::error(e)).into()
}

fn write_err(e: impl ToString) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::error(e)).into()
}

fn get_meta<T: serde::de::DeserializeOwned>(c: &Connection, key: &str) -> Result<Option<T>, String> {
    let v: Option<String> = c
        .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0))
        .optional()
        .map_err(|e| e.to_string())?;
    v.map(|v| serde_json::from_str(&v).map_err(|e| format!("{key}: {e}")))
        .transpose()
}

fn set_meta<T: serde::Serialize>(c: &Connection, key: &str, value: &T) -> Result<(), String> {
    let v = serde_json::to_string(value).map_err(|e| e.to_string())?;
    c.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, v],
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn entries(c: &Connection, start: u64, end: Option<u64>) -> Result<Vec<Entry<TypeConfig>>, String> {
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

/// Writes queued appends in one transaction (one fsync) and reports each.
fn write_appends(c: &mut Connection, batch: Vec<(Rows, LogFlushed<TypeConfig>)>) {
    let r: rusqlite::Result<()> = (|| {
        let tx = c.transaction()?;
        {
            let mut st = tx.prepare_cached("INSERT OR REPLACE INTO log (idx, entry) VALUES (?1, ?2)")?;
            for (rows, _) in &batch {
                for (idx, bytes) in rows {
                    st.execute(params![*idx as i64, bytes])?;
                }
            }
        }
        // synchronous=FULL: durable when commit returns.
        tx.commit()
    })();
    metrics::histogram!("raft.log.appends_per_fsync").record(batch.len() as f64);
    for (_, cb) in batch {
        match &r {
            Ok(()) => cb.log_io_completed(Ok(())),
            Err(e) => cb.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
    }
    if let Err(e) = r {
        tracing::error!("cannot write the Raft log: {e}");
    }
}

fn run_thread(mut conn: Connection, ops: mpsc::Receiver<Op>) {
    let mut next: Option<Op> = None;
    loop {
        let op = match next.take() {
            Some(op) => op,
            None => match ops.recv() {
                Ok(op) => op,
                Err(_) => return,
            },
        };
        match op {
            Op::Run(job) => job(&conn),
            Op::Append(rows, cb) => {
                let mut batch = vec![(rows, cb)];
                loop {
                    match ops.try_recv() {
                        Ok(Op::Append(rows, cb)) => batch.push((rows, cb)),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                write_appends(&mut conn, batch);
            }
        }
    }
}

impl LogStore {
    /// Opens (creating) `raft.db` in `store_dir` and starts its thread.
    pub fn open(store_dir: &Path) -> rusqlite::Result<LogStore> {
        let conn = Connection::open(store_dir.join(LOG_FILE))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("moat-raft-log".into())
            .spawn(move || run_thread(conn, rx))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(LogStore {
            ops: tx,
            tail: Arc::default(),
        })
    }

    /// Runs `f` on the log thread and waits for it (from synchronous code).
    fn run_sync<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> T + Send + 'static) -> Result<T, String> {
        let (tx, rx) = mpsc::channel();
        self.ops
            .send(Op::Run(Box::new(move |c| {
                let _ = tx.send(f(c));
            })))
            .map_err(|_| "the Raft log thread has stopped".to_string())?;
        rx.recv().map_err(|_| "the Raft log thread has stopped".to_string())
    }

    /// Runs `f` on the log thread and awaits it.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StorageError<NodeId>> + Send + 'static,
    ) -> Result<T, StorageError<NodeId>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.ops
            .send(Op::Run(Box::new(move |c| {
                let _ = tx.send(f(c));
            })))
            .map_err(|_| write_err("the Raft log thread has stopped"))?;
        rx.await.map_err(|_| write_err("the Raft log thread has stopped"))?
    }

    /// This node's id, once it has one.
    pub fn node_id(&self) -> Result<Option<NodeId>, String> {
        self.run_sync(|c| get_meta(c, "node_id"))?
    }

    /// Records this node's id (durably, before the node uses it).
    pub fn set_node_id(&self, id: NodeId) -> Result<(), String> {
        self.run_sync(move |c| set_meta(c, "node_id", &id))?
    }

    /// The id of the cluster this node belongs to.
    pub fn cluster_id(&self) -> Result<Option<String>, String> {
        self.run_sync(|c| get_meta(c, "cluster_id"))?
    }

    /// Records the cluster id.
    pub fn set_cluster_id(&self, id: &str) -> Result<(), String> {
        let id = id.to_string();
        self.run_sync(move |c| set_meta(c, "cluster_id", &id))?
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
        if let Some(found) = lock_tail(&self.tail).get(start, end) {
            return Ok(found);
        }
        self.run(move |c| entries(c, start, end).map_err(read_err)).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.run(|c| {
            let last_purged: Option<LogId> = get_meta(c, "last_purged").map_err(read_err)?;
            let last: Option<Vec<u8>> = c
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
        self.run(move |c| set_meta(c, "vote", &vote).map_err(|e| StorageIOError::write_vote(AnyError::error(e)).into()))
            .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.run(|c| get_meta(c, "vote").map_err(|e| StorageIOError::read_vote(AnyError::error(e)).into()))
            .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError<NodeId>> {
        // A hint for restarts, not a promise: without an fsync, a crash
        // leaves an older committed id, which is always safe (never a newer
        // one). Saves an fsync per commit. Queued, not awaited: the thread
        // writes it in order with everything else, and Raft need not wait
        // for a hint (a thread round trip per commit).
        self.ops
            .send(Op::Run(Box::new(move |c| {
                let _ = c.pragma_update(None, "synchronous", "NORMAL");
                if let Err(e) = set_meta(c, "committed", &committed) {
                    tracing::warn!("cannot record the committed log id (a restart hint): {e}");
                }
                let _ = c.pragma_update(None, "synchronous", "FULL");
            })))
            .map_err(|_| write_err("the Raft log thread has stopped"))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        self.run(|c| Ok(get_meta::<Option<LogId>>(c, "committed").map_err(read_err)?.flatten()))
            .await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut rows = Vec::new();
        let mut sized = Vec::new();
        for e in entries {
            let bytes = serde_json::to_vec(&e).map_err(write_err)?;
            rows.push((e.log_id.index, bytes));
            sized.push((e, rows[rows.len() - 1].1.len()));
        }
        lock_tail(&self.tail).append(&sized);
        // Queued: the log thread writes it (with whatever else is queued)
        // and calls back once it is on disk.
        self.ops
            .send(Op::Append(rows, callback))
            .map_err(|_| write_err("the Raft log thread has stopped"))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        lock_tail(&self.tail).truncate(log_id.index);
        self.run(move |c| {
            c.execute("DELETE FROM log WHERE idx >= ?1", params![log_id.index as i64])
                .map(|_| ())
                .map_err(write_err)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        lock_tail(&self.tail).purge(log_id.index);
        self.run(move |c| {
            set_meta(c, "last_purged", &log_id).map_err(write_err)?;
            c.execute("DELETE FROM log WHERE idx <= ?1", params![log_id.index as i64])
                .map(|_| ())
                .map_err(write_err)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(v: Option<Vec<Entry<TypeConfig>>>) -> Option<Vec<(u64, u64)>> {
        v.map(|v| v.iter().map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect())
    }

    #[test]
    fn the_tail_answers_only_what_it_fully_holds() {
        let mut t = Tail::default();
        assert_eq!(indexes(t.get(1, None)), None);
        t.append(&[(entry(1, 5), 10), (entry(1, 6), 10), (entry(1, 7), 10)]);
        assert_eq!(indexes(t.get(5, Some(7))), Some(vec![(1, 5), (1, 6)]));
        assert_eq!(indexes(t.get(6, None)), Some(vec![(1, 6), (1, 7)]));
        assert_eq!(indexes(t.get(7, Some(100))), Some(vec![(1, 7)]));
        assert_eq!(indexes(t.get(8, None)), Some(vec![]), "nothing past the last entry");
        assert_eq!(indexes(t.get(4, Some(6))), None, "index 4 is only on disk");
        // A new leader's entry at 6 replaces 6 and 7.
        t.append(&[(entry(2, 6), 10)]);
        assert_eq!(indexes(t.get(5, None)), Some(vec![(1, 5), (2, 6)]));
        assert_eq!(t.bytes, 20);
    }

    #[test]
    fn the_tail_is_bounded() {
        let mut t = Tail::default();
        let many: Vec<_> = (1..=(Tail::CAPACITY as u64 + 10)).map(|i| (entry(1, i), 1)).collect();
        t.append(&many);
        assert_eq!(t.entries.len(), Tail::CAPACITY);
        assert_eq!(indexes(t.get(1, Some(3))), None);
        assert_eq!(indexes(t.get(11, Some(12))), Some(vec![(1, 11)]));
        // And by bytes: two big entries push out everything before them.
        t.append(&[
            (entry(1, 2000), Tail::MAX_BYTES / 2),
            (entry(1, 2001), Tail::MAX_BYTES / 2),
        ]);
        assert_eq!(t.entries.len(), 2, "{}", t.bytes);
        assert_eq!(t.bytes, Tail::MAX_BYTES);
        t.purge(2000);
        t.truncate(2001);
        assert_eq!((t.entries.len(), t.bytes), (0, 0));
    }

    #[tokio::test]
    async fn truncate_and_purge_reach_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(dir.path()).unwrap();
        // Appends through the thread (the callback is openraft's; write the
        // rows directly and mirror them in the tail as `append` does).
        let rows: Vec<_> = (1..=5).map(|i| entry(1, i)).collect();
        let sized: Vec<_> = rows.iter().map(|e| (e.clone(), 1)).collect();
        lock_tail(&log.tail).append(&sized);
        let encoded: Rows = rows
            .iter()
            .map(|e| (e.log_id.index, serde_json::to_vec(e).unwrap()))
            .collect();
        log.run(move |c| {
            for (i, b) in &encoded {
                c.execute("INSERT INTO log (idx, entry) VALUES (?1, ?2)", params![*i as i64, b])
                    .map_err(write_err)?;
            }
            Ok(())
        })
        .await
        .unwrap();
        log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 4)).await.unwrap();
        assert_eq!(
            indexes(Some(log.try_get_log_entries(1..10).await.unwrap())),
            Some(vec![(1, 1), (1, 2), (1, 3)])
        );
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 2)).await.unwrap();
        assert_eq!(
            indexes(Some(log.try_get_log_entries(3..10).await.unwrap())),
            Some(vec![(1, 3)])
        );
        // Purged entries are gone from memory and disk alike.
        assert_eq!(
            indexes(Some(log.try_get_log_entries(1..3).await.unwrap())),
            Some(vec![])
        );
    }
}
