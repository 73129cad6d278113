//! Deterministic SQL: the clock and the random numbers a statement sees.
//!
//! Every node replays the same statements from the Raft log and must reach
//! the same state, so a replicated statement may not read the wall clock or
//! the system random generator. Before running one, the proposer fixes a
//! [`Context`] (its timestamp and a random seed) and puts it in the log
//! entry; every replica runs the statement under that same context.
//!
//! What reads it: SQLite's own clock (`CURRENT_TIMESTAMP`, `datetime('now')`
//! and every other `'now'`) through the `moat` VFS registered here, which is
//! the system VFS with its clock replaced; `random()` and `randomblob()`,
//! overridden by [`register`]; and moat's `now()`, `gen_random_uuid()` and
//! `unique_rowid()`. Outside a context everything reads the real clock and
//! the system random generator.

use std::cell::RefCell;
use std::ffi::{c_int, CStr};
use std::sync::OnceLock;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rusqlite::{ffi, Connection};

/// Name of the VFS every moat connection opens its database with.
pub const VFS: &CStr = c"moat";

/// Unix epoch as a Julian day number, in milliseconds.
const UNIX_EPOCH_JD_MS: i64 = 210_866_760_000_000;

/// The fixed clock and random seed of one replicated statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Context {
    /// The statement's time, microseconds since the Unix epoch.
    pub unix_us: i64,
    /// Seed of the statement's random numbers.
    pub seed: u64,
    /// The proposing node (for `unique_rowid()`).
    pub node: u64,
}

impl Context {
    /// A fresh context: the current time (strictly increasing within this
    /// process) and a random seed.
    pub fn fresh(node: u64) -> Context {
        use std::sync::atomic::{AtomicI64, Ordering};
        static LAST: AtomicI64 = AtomicI64::new(0);
        let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
        let mut last = LAST.load(Ordering::SeqCst);
        let unix_us = loop {
            // Steps of 10 µs keep unique_rowid() (10 µs units) unique.
            let next = now.max(last + 10);
            match LAST.compare_exchange(last, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break next,
                Err(v) => last = v,
            }
        };
        let mut seed = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut seed);
        Context {
            unix_us,
            seed: u64::from_le_bytes(seed),
            node,
        }
    }

    /// The context of the `i`-th statement of a transaction with this context:
    /// same clock, its own random stream.
    pub fn nth(&self, i: u64) -> Context {
        Context {
            seed: self.seed ^ (i.wrapping_add(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ..*self
        }
    }
}

struct Active {
    ctx: Context,
    rng: ChaCha12Rng,
    rowids: u64,
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
}

/// Runs `f` with `ctx` as this thread's clock and random source.
pub fn with_context<T>(ctx: Context, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Active>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            ACTIVE.with(|a| *a.borrow_mut() = prev);
        }
    }
    let prev = ACTIVE.with(|a| {
        a.borrow_mut().replace(Active {
            ctx,
            rng: ChaCha12Rng::seed_from_u64(ctx.seed),
            rowids: 0,
        })
    });
    let _restore = Restore(prev);
    f()
}

/// Microseconds since the Unix epoch: the context's, else the real clock.
pub fn now_unix_us() -> i64 {
    ACTIVE
        .with(|a| a.borrow().as_ref().map(|a| a.ctx.unix_us))
        .unwrap_or_else(|| (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64)
}

/// Fills `buf` from the context's random stream, else the system generator.
pub fn fill_random(buf: &mut [u8]) {
    let done = ACTIVE.with(|a| match a.borrow_mut().as_mut() {
        Some(a) => {
            a.rng.fill_bytes(buf);
            true
        }
        None => false,
    });
    if !done {
        // A failure leaves zeros; callers never depend on secrecy here.
        let _ = aws_lc_rs::rand::fill(buf);
    }
}

/// A CockroachDB-style `unique_rowid()`: the time in 10 µs units, then the
/// node and a per-statement counter.
pub fn unique_rowid() -> i64 {
    let (us, node, n) = ACTIVE.with(|a| match a.borrow_mut().as_mut() {
        Some(a) => {
            a.rowids += 1;
            (a.ctx.unix_us, a.ctx.node, a.rowids)
        }
        None => {
            let c = Context::fresh(0);
            (c.unix_us, 0, 0)
        }
    });
    let ts = (us / 10) as u64;
    (((ts << 15) | ((node & 0x7f) << 8) | (n & 0xff)) & (i64::MAX as u64)) as i64
}

static BASE_VFS: OnceLock<usize> = OnceLock::new();

unsafe extern "C" fn current_time_int64(vfs: *mut ffi::sqlite3_vfs, out: *mut ffi::sqlite3_int64) -> c_int {
    let fixed = ACTIVE.with(|a| a.borrow().as_ref().map(|a| a.ctx.unix_us));
    if let Some(us) = fixed {
        // SAFETY: SQLite passes a valid out pointer.
        unsafe { *out = UNIX_EPOCH_JD_MS + us / 1000 };
        return ffi::SQLITE_OK;
    }
    let base = *BASE_VFS.get().expect("registered") as *mut ffi::sqlite3_vfs;
    // SAFETY: the base VFS is the system's default, alive for the process;
    // a version >= 2 VFS has xCurrentTimeInt64.
    unsafe {
        match (*base).xCurrentTimeInt64 {
            Some(f) => f(base, out),
            None => {
                let _ = vfs;
                ffi::SQLITE_ERROR
            }
        }
    }
}

unsafe extern "C" fn current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    let mut ms: ffi::sqlite3_int64 = 0;
    // SAFETY: forwarding SQLite's own arguments.
    let rc = unsafe { current_time_int64(vfs, &mut ms) };
    if rc == ffi::SQLITE_OK {
        // SAFETY: SQLite passes a valid out pointer.
        unsafe { *out = ms as f64 / 86_400_000.0 };
    }
    rc
}

/// Registers the `moat` VFS (once per process): the default VFS with its
/// clock read from the active [`Context`].
pub fn register_vfs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS, which lives
        // for the process. We copy it (keeping its pAppData, which the unix
        // VFS needs), swap the clock functions and the name, and leak the
        // copy so SQLite may keep the pointer forever.
        unsafe {
            ffi::sqlite3_initialize();
            let base = ffi::sqlite3_vfs_find(std::ptr::null());
            if base.is_null() {
                return;
            }
            let _ = BASE_VFS.set(base as usize);
            let mut v: ffi::sqlite3_vfs = *base;
            v.zName = VFS.as_ptr();
            v.pNext = std::ptr::null_mut();
            v.xCurrentTime = Some(current_time);
            v.xCurrentTimeInt64 = Some(current_time_int64);
            let leaked: &'static mut ffi::sqlite3_vfs = Box::leak(Box::new(v));
            ffi::sqlite3_vfs_register(leaked, 0);
        }
    });
}

/// Overrides SQLite's `random()` and `randomblob(n)` on `conn` with the
/// context's random stream.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    let flags = FunctionFlags::SQLITE_UTF8;
    conn.create_scalar_function("random", 0, flags, |_| {
        let mut b = [0u8; 8];
        fill_random(&mut b);
        Ok(i64::from_le_bytes(b))
    })?;
    conn.create_scalar_function("randomblob", 1, flags, |ctx| {
        let n: i64 = ctx.get::<Option<i64>>(0)?.unwrap_or(1);
        let n = n.clamp(1, 1_000_000_000) as usize;
        if n > 64 * 1024 * 1024 {
            return Err(rusqlite::Error::UserFunctionError("randomblob: at most 64 MiB".into()));
        }
        let mut b = vec![0u8; n];
        fill_random(&mut b);
        Ok(b)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        register_vfs();
        let c = Connection::open_with_flags_and_vfs(
            ":memory:",
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_CREATE,
            VFS,
        )
        .unwrap();
        register(&c).unwrap();
        c
    }

    #[test]
    fn same_context_same_results() {
        let ctx = Context {
            unix_us: 1_700_000_000_123_456,
            seed: 42,
            node: 3,
        };
        let q = "SELECT datetime('now'), CURRENT_TIMESTAMP, random(), hex(randomblob(8)), julianday('now')";
        let run = |c: &Connection| {
            with_context(ctx, || {
                c.query_row(q, [], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, f64>(4)?,
                    ))
                })
                .unwrap()
            })
        };
        let (a, b) = (run(&conn()), run(&conn()));
        assert_eq!(a, b);
        assert_eq!(a.0, "2023-11-14 22:13:20");
        assert_eq!(a.1, a.0);
        // Outside a context: the real clock and real randomness.
        let c = conn();
        let year: String = c.query_row("SELECT strftime('%Y','now')", [], |r| r.get(0)).unwrap();
        assert!(year.as_str() >= "2025");
        let r1: i64 = c.query_row("SELECT random()", [], |r| r.get(0)).unwrap();
        let r2: i64 = c.query_row("SELECT random()", [], |r| r.get(0)).unwrap();
        assert_ne!(r1, r2);
    }

    #[test]
    fn unique_rowids_differ_within_a_statement() {
        let ctx = Context::fresh(5);
        let (a, b) = with_context(ctx, || (unique_rowid(), unique_rowid()));
        assert_ne!(a, b);
        assert!(a > 0 && b > a);
    }
}
