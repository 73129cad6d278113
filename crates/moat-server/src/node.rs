//! A running node: the certificate store with its reloader, the store, and
//! the SQL listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use moat_tls::ocsp::OcspConfig;
use moat_tls::principal::IdentityPolicy;
use moat_tls::store::{CertStore, Reloader, StoreRole};
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;

use crate::auth::{AuthContext, AuthStartup};
use crate::db::Database;
use crate::hba::HbaConfig;
use crate::ServerError;

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The certs directory.
    pub certs_dir: PathBuf,
    /// The store directory.
    pub store_dir: PathBuf,
    /// Address of the SQL (and, later, RPC) listener.
    pub listen_addr: SocketAddr,
    /// Address of the HTTPS console (`None`: no console).
    pub http_addr: Option<SocketAddr>,
    /// Principal map and pinned DNs.
    pub policy: IdentityPolicy,
    /// HBA rules.
    pub hba: HbaConfig,
    /// Accept SQL clients without TLS (HBA still decides; `cert` never matches).
    pub accept_sql_without_tls: bool,
    /// OCSP checking of client certificates.
    pub ocsp: OcspConfig,
    /// Deadline for the TLS negotiation (SSLRequest + handshake).
    pub handshake_timeout: Duration,
    /// Deadline for the PostgreSQL startup and authentication.
    pub startup_timeout: Duration,
    /// Most SQL sessions open at once; more are refused with SQLSTATE 53300.
    pub max_connections: usize,
    /// Most connections still negotiating TLS / authenticating at once;
    /// more are closed at once (each also has the deadlines above), so
    /// stalled handshakes cannot starve established clients.
    pub max_pending: usize,
    /// A separate address for SQL clients (`--sql-addr`): then
    /// `listen_addr` serves node-to-node RPC only.
    pub sql_addr: Option<SocketAddr>,
    /// Nodes to join through (`moat start --join`).
    pub join: Vec<String>,
    /// Initialise a one-node cluster at once (`start-single-node`).
    pub single_node: bool,
    /// The RPC address other nodes dial (default: the listen address).
    pub advertise_addr: Option<String>,
    /// Raft entries between snapshots.
    pub snapshot_logs: u64,
    /// Largest PostgreSQL message accepted from a logged-in client, in bytes
    /// (its length field; default 16 MiB, CockroachDB's
    /// `sql.conn.max_read_buffer_message_size`; PostgreSQL allows 1 GiB). A
    /// bigger one is refused from its header with FATAL 08P01. Before
    /// authentication the bound is 64 KiB (or this, if smaller).
    pub max_message_bytes: usize,
}

impl NodeConfig {
    /// A configuration with defaults for everything but the directories.
    pub fn new(certs_dir: impl Into<PathBuf>, store_dir: impl Into<PathBuf>, listen_addr: SocketAddr) -> Self {
        NodeConfig {
            certs_dir: certs_dir.into(),
            store_dir: store_dir.into(),
            listen_addr,
            http_addr: None,
            policy: IdentityPolicy::default(),
            hba: HbaConfig::default_config(),
            accept_sql_without_tls: false,
            ocsp: OcspConfig::default(),
            handshake_timeout: Duration::from_secs(10),
            startup_timeout: Duration::from_secs(10),
            max_connections: 5000,
            max_pending: 4096,
            sql_addr: None,
            join: Vec::new(),
            single_node: true,
            advertise_addr: None,
            snapshot_logs: 5000,
            max_message_bytes: 16 << 20,
        }
    }
}

/// State shared by all connections of a node.
pub(crate) struct Shared {
    pub store: Arc<CertStore>,
    pub db: Arc<Database>,
    pub auth: Arc<AuthContext>,
    pub ocsp: OcspConfig,
    pub handshake_timeout: Duration,
    pub startup_timeout: Duration,
    pub sessions: Arc<tokio::sync::Semaphore>,
    pub max_connections: usize,
    pub pending: Arc<tokio::sync::Semaphore>,
    pub max_message_bytes: usize,
    pub cluster: Arc<crate::cluster::Cluster>,
}

/// The handlers of one connection.
pub(crate) struct ConnHandlers {
    pub startup: Arc<AuthStartup>,
    pub queries: Arc<crate::sql::QueryHandlers>,
}

impl ConnHandlers {
    pub fn new(shared: &Shared, server_cert: Option<CertificateDer<'static>>) -> Self {
        ConnHandlers {
            startup: Arc::new(AuthStartup::new(shared.auth.clone(), server_cert)),
            queries: Arc::new(crate::sql::QueryHandlers::new(
                shared.db.clone(),
                Some(shared.cluster.clone() as Arc<dyn crate::cluster::Replicator>),
            )),
        }
    }
}

/// Counts open connections by kind (`sql.connections.open`).
pub(crate) struct OpenGuard(&'static str);

impl OpenGuard {
    pub fn new(kind: &'static str) -> Self {
        metrics::gauge!("sql.connections.open", "kind" => kind).increment(1.0);
        OpenGuard(kind)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        metrics::gauge!("sql.connections.open", "kind" => self.0).decrement(1.0);
    }
}

fn spawn_accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    serves: crate::conn::Serves,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((tcp, peer)) => {
                    let Ok(pending) = shared.pending.clone().try_acquire_owned() else {
                        metrics::counter!("sql.connections.refused", "reason" => "pending_limit").increment(1);
                        tracing::debug!(%peer, "closed at once: too many connections still negotiating");
                        drop(tcp);
                        continue;
                    };
                    tokio::spawn(crate::conn::serve(shared.clone(), tcp, peer, pending, serves));
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
}

/// A node that is serving.
pub struct RunningNode {
    /// The address SQL clients connect to.
    pub sql_addr: SocketAddr,
    /// The address of node-to-node RPC (the same as `sql_addr` unless
    /// `--sql-addr` split them).
    pub rpc_addr: SocketAddr,
    /// The address the console is bound to, when it runs.
    pub http_addr: Option<SocketAddr>,
    _http: Option<crate::http::HttpServer>,
    /// The certificate store (reload, snapshots, stats).
    pub store: Arc<CertStore>,
    /// The node's cluster membership.
    pub cluster: Arc<crate::cluster::Cluster>,
    accept: Vec<tokio::task::JoinHandle<()>>,
    _reloader: Reloader,
}

impl RunningNode {
    /// Stops accepting connections (established ones end with the runtime).
    pub fn stop(&self) {
        for a in &self.accept {
            a.abort();
        }
    }

    /// Waits until the accept loops end.
    pub async fn wait(self) {
        for a in self.accept {
            let _ = a.await;
        }
    }
}

/// Starts a single node: checks the certs directory (refusing to start
/// without `ca.crt` and a valid `node.crt`/`node.key` with the usages a node
/// needs), opens the store, binds the listener, starts the reloader.
pub async fn start(cfg: NodeConfig) -> Result<RunningNode, ServerError> {
    // Metrics first, so the gauges set while loading are recorded.
    crate::http::install_metrics_recorder()?;
    let started_at = time::OffsetDateTime::now_utc();
    let store = CertStore::open(&cfg.certs_dir, StoreRole::Node, cfg.policy.clone())?;
    // The certificate this node dials other nodes with must name the node
    // principal, or every other node refuses it (as CockroachDB requires).
    if let Ok(k) = store.snapshot().material.node_client() {
        match cfg.policy.authorize_rpc(&k.cert[0]) {
            Ok("node") => {}
            Ok(other) => {
                return Err(ServerError::Invalid(format!(
                    "{}: the node's certificate (client.node.crt, else node.crt) names the principal {other:?}, not \"node\": other nodes would refuse it; make one with `moat cert create-node` (CN=node)",
                    cfg.certs_dir.display()
                )))
            }
            Err(why) => {
                return Err(ServerError::Invalid(format!(
                    "{}: the node's certificate (client.node.crt, else node.crt) cannot be used between nodes: {why}; make one with `moat cert create-node` (CN=node) or map its name with --cert-principal-map",
                    cfg.certs_dir.display()
                )))
            }
        }
    }
    let db = Arc::new(Database::open(&cfg.store_dir)?);
    let reloader = store.spawn_reloader(Duration::from_millis(200), Duration::from_millis(800))?;
    let bind = |addr: SocketAddr| async move {
        let l = TcpListener::bind(addr).await.map_err(|e| ServerError::Io {
            what: format!("cannot listen on {addr}"),
            source: e,
        })?;
        let bound = l.local_addr().map_err(|e| ServerError::Io {
            what: "listener address".into(),
            source: e,
        })?;
        Ok::<_, ServerError>((l, bound))
    };
    let (listener, rpc_addr) = bind(cfg.listen_addr).await?;
    let sql_listener = match cfg.sql_addr {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let sql_addr = sql_listener.as_ref().map(|(_, a)| *a).unwrap_or(rpc_addr);
    let advertise = match &cfg.advertise_addr {
        Some(a) => a.clone(),
        None if rpc_addr.ip().is_unspecified() => format!("localhost:{}", rpc_addr.port()),
        None => rpc_addr.to_string(),
    };
    let cluster_cfg = crate::cluster::ClusterConfig {
        advertise_addr: advertise,
        join: cfg.join.clone(),
        single_node: cfg.single_node,
        sql_addr: sql_addr.to_string(),
        http_addr: None,
        snapshot_logs: cfg.snapshot_logs,
    };
    let mut cluster_cfg = cluster_cfg;
    cluster_cfg.http_addr = cfg.http_addr.map(|a| a.to_string());
    let cluster = crate::cluster::Cluster::start(cluster_cfg, store.clone(), &db, &cfg.store_dir, started_at).await?;
    let shared = Arc::new(Shared {
        cluster: cluster.clone(),
        auth: Arc::new(AuthContext::new(
            db.clone(),
            cfg.hba.clone(),
            cfg.policy.clone(),
            cfg.accept_sql_without_tls,
        )),
        store: store.clone(),
        db,
        ocsp: cfg.ocsp,
        handshake_timeout: cfg.handshake_timeout,
        startup_timeout: cfg.startup_timeout,
        sessions: Arc::new(tokio::sync::Semaphore::new(cfg.max_connections)),
        max_connections: cfg.max_connections,
        pending: Arc::new(tokio::sync::Semaphore::new(cfg.max_pending)),
        max_message_bytes: cfg.max_message_bytes,
    });
    // The cluster's HBA setting, now and whenever it changes.
    {
        let auth = shared.auth.clone();
        let sm = cluster.core().state_machine().clone();
        let mut changes = sm.settings_changes();
        auth.set_cluster_hba(sm.setting(crate::hba::HBA_SETTING).as_deref());
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let text = sm.setting(crate::hba::HBA_SETTING);
                tracing::info!(
                    source = if text.is_some() {
                        "cluster setting"
                    } else {
                        "node configuration"
                    },
                    "HBA configuration changed"
                );
                auth.set_cluster_hba(text.as_deref());
            }
        });
    }
    let http = match cfg.http_addr {
        Some(addr) => {
            let ctx = crate::http::HttpContext {
                store: store.clone(),
                db: shared.db.clone(),
                node_id: cluster.core().node_id(),
                started_at,
                sql_addr,
                cluster: Some(cluster.clone() as Arc<dyn crate::http::ClusterView>),
            };
            let server = crate::http::serve(ctx, addr).await?;
            cluster.core().set_http_addr(server.addr.to_string());
            tracing::info!(http_addr = %server.addr, "console serving HTTPS");
            Some(server)
        }
        None => None,
    };
    tracing::info!(%sql_addr, %rpc_addr, certs_dir = %cfg.certs_dir.display(), store = %cfg.store_dir.display(), "node serving SQL and RPC over TLS");
    let mut accept = Vec::new();
    match sql_listener {
        None => accept.push(spawn_accept(listener, shared, crate::conn::Serves::Both)),
        Some((sql, _)) => {
            accept.push(spawn_accept(listener, shared.clone(), crate::conn::Serves::RpcOnly));
            accept.push(spawn_accept(sql, shared, crate::conn::Serves::SqlOnly));
        }
    }
    Ok(RunningNode {
        sql_addr,
        rpc_addr,
        http_addr: http.as_ref().map(|h| h.addr),
        _http: http,
        store,
        cluster,
        accept,
        _reloader: reloader,
    })
}
