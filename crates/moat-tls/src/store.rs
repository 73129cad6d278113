//! The certificate store: the current, validated view of the certs
//! directory and the rustls configs built from it, swapped atomically on
//! reload. Reloads come from SIGHUP, from changes in the directory (debounced,
//! since a rotation writes several files) and from code; each is
//! all-or-nothing, logged and counted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::{ClientConfig, ServerConfig};
use time::OffsetDateTime;

use crate::material::TlsMaterial;
use crate::principal::IdentityPolicy;
use crate::roles::{self, ALPN_POSTGRES, ALPN_RPC};
use crate::{expiry, TlsError};

/// What the process uses the certs directory for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreRole {
    /// A node: needs `ca.crt` and `node.crt`; builds the server and RPC client configs.
    Node,
    /// A SQL client as a user (`None`: password login, only `ca.crt` needed).
    SqlClient(Option<String>),
}

/// Configs built from one generation of material.
pub struct Snapshot {
    /// The material they were built from.
    pub material: Arc<TlsMaterial>,
    /// Reload generation (1 for the first load).
    pub generation: u64,
    configs: Configs,
}

#[derive(Default)]
struct Configs {
    sql: Option<Arc<ServerConfig>>,
    rpc: Option<Arc<ServerConfig>>,
    http: Option<Arc<ServerConfig>>,
    rpc_client: Option<Arc<ClientConfig>>,
    sql_client: Option<Arc<ClientConfig>>,
}

impl Snapshot {
    fn expect<T: Clone>(v: &Option<T>, what: &str) -> T {
        v.clone()
            .unwrap_or_else(|| panic!("{what} config requested from a store opened for another role"))
    }
    /// Server config of the shared SQL+RPC port (ALPN `h2` and `postgresql`).
    pub fn sql_server(&self) -> Arc<ServerConfig> {
        Self::expect(&self.configs.sql, "SQL server")
    }
    /// Server config of a dedicated RPC port.
    pub fn rpc_server(&self) -> Arc<ServerConfig> {
        Self::expect(&self.configs.rpc, "RPC server")
    }
    /// Server config of the console.
    pub fn http_server(&self) -> Arc<ServerConfig> {
        Self::expect(&self.configs.http, "HTTP server")
    }
    /// Client config for dialling other nodes.
    pub fn rpc_client(&self) -> Arc<ClientConfig> {
        Self::expect(&self.configs.rpc_client, "RPC client")
    }
    /// Client config of a SQL client store.
    pub fn sql_client(&self) -> Arc<ClientConfig> {
        Self::expect(&self.configs.sql_client, "SQL client")
    }
}

/// Reload statistics.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Successful reloads (not counting the first load).
    pub successes: AtomicU64,
    /// Refused reloads.
    pub failures: AtomicU64,
    last: Mutex<ReloadRecord>,
}

/// The outcome of the last reload attempt.
#[derive(Debug, Default, Clone)]
pub struct ReloadRecord {
    /// When the last successful load or reload happened.
    pub last_success: Option<OffsetDateTime>,
    /// When the last attempt happened.
    pub last_attempt: Option<OffsetDateTime>,
    /// The error of the last attempt, if it failed.
    pub last_error: Option<String>,
}

impl ReloadStats {
    /// A copy of the last outcome.
    pub fn record(&self) -> ReloadRecord {
        self.last.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// The certificate store.
pub struct CertStore {
    dir: PathBuf,
    role: StoreRole,
    policy: IdentityPolicy,
    current: ArcSwap<Snapshot>,
    reload_lock: Mutex<()>,
    /// Reload counters and last outcome.
    pub stats: ReloadStats,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("dir", &self.dir)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

fn build(
    material: TlsMaterial,
    role: &StoreRole,
    policy: &IdentityPolicy,
    generation: u64,
) -> Result<Snapshot, TlsError> {
    let mut c = Configs::default();
    match role {
        StoreRole::Node => {
            c.sql = Some(Arc::new(roles::sql_server(&material, &[ALPN_RPC, ALPN_POSTGRES])?));
            c.rpc = Some(Arc::new(roles::rpc_server(&material, policy)?));
            c.http = Some(Arc::new(roles::http_server(&material)?));
            c.rpc_client = Some(Arc::new(roles::rpc_client(&material)?));
        }
        StoreRole::SqlClient(user) => {
            c.sql_client = Some(Arc::new(roles::sql_client(&material, user.as_deref())?));
        }
    }
    Ok(Snapshot {
        material: Arc::new(material),
        generation,
        configs: c,
    })
}

impl CertStore {
    /// Loads the certs directory for a role; fails (with the file and the
    /// fix) if anything the role needs is missing or broken.
    pub fn open(dir: &Path, role: StoreRole, policy: IdentityPolicy) -> Result<Arc<Self>, TlsError> {
        let material = TlsMaterial::load(dir)?;
        let snap = build(material, &role, &policy, 1)?;
        expiry::publish(&snap.material);
        let store = CertStore {
            dir: dir.to_path_buf(),
            role,
            policy,
            current: ArcSwap::from_pointee(snap),
            reload_lock: Mutex::new(()),
            stats: ReloadStats::default(),
        };
        if let Ok(mut r) = store.stats.last.lock() {
            r.last_success = Some(OffsetDateTime::now_utc());
        }
        Ok(Arc::new(store))
    }

    /// The current snapshot (cheap: one atomic load).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The certs directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The identity policy (principal map, DNs).
    pub fn policy(&self) -> &IdentityPolicy {
        &self.policy
    }

    /// Rescans the directory and swaps in the result, or keeps the current
    /// certificates and returns why not. Refused when anything used is
    /// broken or a previously valid CA, node, client.node or UI certificate
    /// would be lost. Returns the new generation.
    pub fn reload(&self, trigger: &str) -> Result<u64, TlsError> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let now = OffsetDateTime::now_utc();
        let current = self.current.load_full();
        let result = TlsMaterial::load(&self.dir).and_then(|m| {
            current.material.check_keeps(&m)?;
            build(m, &self.role, &self.policy, current.generation + 1)
        });
        let mut rec = self.stats.last.lock().unwrap_or_else(|p| p.into_inner());
        rec.last_attempt = Some(now);
        match result {
            Ok(snap) => {
                let generation = snap.generation;
                expiry::publish(&snap.material);
                self.current.store(Arc::new(snap));
                self.stats.successes.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("security.certificate.reloads", "result" => "success").increment(1);
                rec.last_success = Some(now);
                rec.last_error = None;
                tracing::info!(trigger, generation, dir = %self.dir.display(), "certificates reloaded");
                Ok(generation)
            }
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("security.certificate.reloads", "result" => "failure").increment(1);
                let e = match e {
                    TlsError::ReloadRefused { .. } => e,
                    other => TlsError::ReloadRefused {
                        reason: other.to_string(),
                    },
                };
                rec.last_error = Some(e.to_string());
                tracing::warn!(trigger, dir = %self.dir.display(), "could not reload certificates: {e}");
                Err(e)
            }
        }
    }

    /// Starts reloading on SIGHUP and on changes in the certs directory
    /// (after `quiet` without further changes, at most `max_wait` after the
    /// first), and refreshing the expiry gauges every minute. Runs until the
    /// returned handle is dropped or aborted. Needs a tokio runtime.
    pub fn spawn_reloader(self: &Arc<Self>, quiet: Duration, max_wait: Duration) -> Result<Reloader, TlsError> {
        use notify::{RecursiveMode, Watcher};
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev {
                if !matches!(ev.kind, notify::EventKind::Access(_)) {
                    let _ = tx.send(());
                }
            }
        })
        .map_err(|e| TlsError::Invalid(format!("cannot watch {}: {e}", self.dir.display())))?;
        watcher
            .watch(&self.dir, RecursiveMode::NonRecursive)
            .map_err(|e| TlsError::Invalid(format!("cannot watch {}: {e}", self.dir.display())))?;
        let store = Arc::clone(self);
        let task = tokio::spawn(async move {
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                let trigger = tokio::select! {
                    Some(()) = rx.recv() => {
                        // Debounce: wait for a quiet period, bounded by max_wait.
                        let deadline = tokio::time::Instant::now() + max_wait;
                        loop {
                            match tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + quiet), rx.recv()).await {
                                Ok(Some(())) if tokio::time::Instant::now() < deadline => continue,
                                _ => break,
                            }
                        }
                        "file change"
                    }
                    Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                        tracing::info!("received SIGHUP, triggering certificate reload");
                        "SIGHUP"
                    }
                    _ = tick.tick() => {
                        expiry::publish(&store.snapshot().material);
                        continue;
                    }
                };
                let store = Arc::clone(&store);
                let _ = tokio::task::spawn_blocking(move || store.reload(trigger)).await;
            }
        });
        Ok(Reloader {
            _watcher: watcher,
            task,
        })
    }
}

/// Keeps the reloader running; dropping it stops it.
pub struct Reloader {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.task.abort();
    }
}
