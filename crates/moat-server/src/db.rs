//! The embedded SQLite store: one database file under `--store`, in WAL mode
//! with a full fsync on every commit. SQL sessions borrow connections from
//! a pool (`sql::session::ConnPool`) for a statement or a
//! transaction at a time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::sql::session::ConnPool;
use crate::ServerError;

/// File name of the database inside the store directory.
pub const DB_FILE: &str = "moat.db";

/// The database of a node.
#[derive(Debug)]
pub struct Database {
    path: PathBuf,
    /// Connections lent to SQL sessions.
    sessions: ConnPool,
}

impl Database {
    /// Opens (creating if needed) the store directory and its database, and
    /// makes sure the system tables exist.
    pub fn open(store_dir: &Path) -> Result<Database, ServerError> {
        use std::os::unix::fs::DirBuilderExt;
        let err = |problem: String, fix: &str| ServerError::Store {
            path: store_dir.to_path_buf(),
            problem,
            fix: fix.to_string(),
        };
        if !store_dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(store_dir)
                .map_err(|e| {
                    err(
                        format!("cannot create the store directory: {e}"),
                        "check the parent's permissions",
                    )
                })?;
        } else if !store_dir.is_dir() {
            return Err(err(
                "exists but is not a directory".into(),
                "pass a directory to --store",
            ));
        }
        let db = Database {
            path: store_dir.join(DB_FILE),
            sessions: ConnPool::default(),
        };
        let conn = db.connect()?;
        crate::users::ensure_schema(&conn).map_err(|e| {
            err(
                format!("cannot initialise the database: {e}"),
                "check the store is not corrupt",
            )
        })?;
        Ok(db)
    }

    /// The connections lent to SQL sessions.
    pub(crate) fn session_pool(&self) -> &ConnPool {
        &self.sessions
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new connection: WAL, `synchronous=FULL` (every commit is fsynced),
    /// foreign keys on, a 5 s busy timeout, the deterministic clock and
    /// random functions of [`crate::determinism`].
    pub fn connect(&self) -> Result<Connection, ServerError> {
        let err = |e: rusqlite::Error| ServerError::Store {
            path: self.path.clone(),
            problem: format!("cannot open the database: {e}"),
            fix: "check the store directory's permissions and free space".into(),
        };
        crate::determinism::register_vfs();
        let conn =
            Connection::open_with_flags_and_vfs(&self.path, rusqlite::OpenFlags::default(), crate::determinism::VFS)
                .map_err(err)?;
        crate::determinism::register(&conn).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(err)?;
        Ok(conn)
    }
}
