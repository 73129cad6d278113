//! # The HTTPS console and metrics
//!
//! One port (`--http-addr`, default 8080) serves:
//!
//! - HTTPS with the TLS layer's HTTP role (`ui.crt`, else `node.crt`; no
//!   client certificate). Every connection takes the store's current
//!   snapshot, so a certificate reload applies to the next handshake.
//! - Plain HTTP on the same port: the first byte of each connection tells
//!   (0x16 starts a TLS ClientHello). Plain requests are redirected (308) to
//!   `https://` on the same host and path, except `/health`, which answers
//!   `200 ok` in clear for load balancers.
//!
//! | path | what | who |
//! |---|---|---|
//! | `/health` | `ok` (HTTP and HTTPS) | anyone |
//! | `/_status/vars` | Prometheus text format (CockroachDB's path) | anyone, as in CockroachDB |
//! | `/login` | the login form (GET) and password check (POST `username`, `password`, `next`) | anyone |
//! | `/logout` | POST: ends the session | a session |
//! | `/` | overview: nodes, liveness, uptime, versions | a session |
//! | `/certificates/local`, `/certificates/{node}` | the certificates page of a node | a session |
//! | `/_status/certificates[/local]`, `/_status/nodes` | JSON behind the pages | a session (else 401) |
//!
//! Sessions ([`session`]): a SQL user's password is checked against the
//! stored SCRAM verifier; the cookie `moat_session` is `Secure; HttpOnly;
//! SameSite=Strict; Path=/` and expires (1 h by default); failed logins are
//! slowed per user and per client address ([`throttle`]). Root can also get
//! a session over SQL (`SELECT moat_create_console_session('alice')`, used by
//! `moat auth-session login`). Passwords are never logged.

mod acceptor;
mod api;
mod html;
mod login;
pub mod metrics;
mod pages;
mod redirect;
mod report;
pub mod session;
pub mod throttle;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use moat_tls::store::CertStore;
use serde::Serialize;
use time::OffsetDateTime;

use crate::db::Database;
use crate::ServerError;

pub use metrics::install_metrics_recorder;
pub use report::{CertReport, CertificatesReport, CrlReport, ReloadReport};

/// What the console needs from the node.
#[derive(Clone)]
pub struct HttpContext {
    /// The certificate store, opened with `StoreRole::Node` (HTTP role
    /// config, certificates page, reload stats).
    pub store: Arc<CertStore>,
    /// The database (users and their SCRAM verifiers).
    pub db: Arc<Database>,
    /// This node's id.
    pub node_id: u64,
    /// When this node started.
    pub started_at: OffsetDateTime,
    /// This node's SQL address.
    pub sql_addr: SocketAddr,
    /// The cluster, when there is one; `None` shows this node alone.
    pub cluster: Option<Arc<dyn ClusterView>>,
}

/// What the console shows about the nodes of a cluster.
pub trait ClusterView: Send + Sync {
    /// Every node known to the cluster, this one included.
    fn nodes(&self) -> Vec<NodeSummary>;
    /// This node's id now (0 until it has joined).
    fn node_id(&self) -> u64;
}

impl HttpContext {
    /// This node's id: the cluster's, read live (a node gets its id when it
    /// joins, after the console has started), else the configured one.
    pub fn node_id(&self) -> u64 {
        self.cluster.as_ref().map(|c| c.node_id()).unwrap_or(self.node_id)
    }
}

/// One node, as the overview and `/_status/nodes` show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeSummary {
    /// Node id.
    pub id: u64,
    /// Its RPC address (also its SQL address unless split with `--sql-addr`).
    pub address: String,
    /// Its SQL address, when known.
    pub sql_address: Option<String>,
    /// Its console address (`host:port`), when known: the certificates page
    /// of another node is served by that node's console.
    pub http_address: Option<String>,
    /// Whether it is live (heartbeating).
    pub live: bool,
    /// Whether it leads the cluster (Raft leader).
    pub is_leader: bool,
    /// When it started, if known.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// Its version (`moat 0.1.0`).
    pub version: String,
    /// NotAfter of its node certificate, unix seconds, if known.
    pub cert_expiry: Option<i64>,
}

/// Tunables of the console (defaults: [`ConsoleOptions::default`]).
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// Lifetime of a session made by a password login.
    pub session_ttl: Duration,
    /// Deadline for the first byte and the TLS handshake of a connection.
    pub handshake_timeout: Duration,
    /// Brute-force slowing.
    pub throttle: throttle::ThrottleConfig,
}

impl Default for ConsoleOptions {
    /// 1 h sessions, 10 s handshakes, [`throttle::ThrottleConfig::default`].
    fn default() -> Self {
        ConsoleOptions {
            session_ttl: session::DEFAULT_TTL,
            handshake_timeout: Duration::from_secs(10),
            throttle: throttle::ThrottleConfig::default(),
        }
    }
}

/// The console, serving. Dropping it (or [`HttpServer::stop`]) closes the
/// listener and every connection.
pub struct HttpServer {
    /// The address the listener is bound to.
    pub addr: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Stops serving.
    pub fn stop(&self) {
        self.handle.shutdown();
        self.task.abort();
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// State shared by the handlers.
pub(crate) struct AppState {
    pub ctx: HttpContext,
    /// The console's own address.
    pub addr: SocketAddr,
    pub opts: ConsoleOptions,
    pub sessions: &'static session::SessionStore,
    pub throttle: throttle::Throttle,
}

pub(crate) type Shared = Arc<AppState>;

/// Per-connection facts the acceptor adds to every request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnMeta {
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener's address (for redirects without a Host header).
    pub local: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// Binds `addr` and serves the console with the default options.
pub async fn serve(ctx: HttpContext, addr: SocketAddr) -> Result<HttpServer, ServerError> {
    serve_with(ctx, addr, ConsoleOptions::default()).await
}

/// Binds `addr` and serves the console.
pub async fn serve_with(ctx: HttpContext, addr: SocketAddr, opts: ConsoleOptions) -> Result<HttpServer, ServerError> {
    if let Err(e) = install_metrics_recorder() {
        tracing::warn!("/_status/vars will be empty: {e}");
    }
    // The gauges were set when the store loaded, maybe before the recorder.
    moat_tls::expiry::publish(&ctx.store.snapshot().material);
    let io = |what: String| move |source| ServerError::Io { what, source };
    let listener = std::net::TcpListener::bind(addr).map_err(io(format!("cannot listen on {addr}")))?;
    listener.set_nonblocking(true).map_err(io("listener setup".into()))?;
    let local = listener.local_addr().map_err(io("listener address".into()))?;
    let state = Arc::new(AppState {
        throttle: throttle::Throttle::new(opts.throttle.clone()),
        sessions: session::SessionStore::global(),
        addr: local,
        ctx,
        opts,
    });
    let acceptor = acceptor::ConsoleAcceptor::new(state.ctx.store.clone(), state.opts.handshake_timeout);
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp(listener)
        .map_err(io(format!("cannot serve on {local}")))?
        .acceptor(acceptor)
        .handle(handle.clone())
        .first_request_timeout(Duration::from_secs(30));
    let app = router(state);
    let task = tokio::spawn(async move {
        if let Err(e) = server.serve(app.into_make_service()).await {
            tracing::error!(%local, "the console stopped: {e}");
        }
    });
    tracing::info!(addr = %local, "console serving HTTPS (plain HTTP is redirected)");
    Ok(HttpServer {
        addr: local,
        handle,
        task,
    })
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/_status/vars", get(metrics::vars))
        .route("/_status/certificates", get(api::certificates))
        .route("/_status/certificates/{node}", get(api::certificates_of))
        .route("/_status/nodes", get(api::nodes))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/", get(pages::overview))
        .route("/certificates", get(pages::certificates_index))
        .route("/certificates/{node}", get(pages::certificates))
        .fallback(pages::not_found)
        .layer(middleware::from_fn(secure_headers))
        .layer(middleware::from_fn(redirect::plain_http))
        .with_state(state)
}

async fn health() -> &'static str {
    "ok\n"
}

/// Headers every HTTPS answer carries: no sniffing, no framing, no
/// referrer to other sites (`same-origin`: with `no-referrer` browsers send
/// `Origin: null` on our own form posts, which the login's origin check
/// refuses), no caching unless a handler says otherwise, and a content
/// policy that allows only our own inline styles (the pages have no
/// scripts and load nothing).
async fn secure_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    for (k, v) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        // Only HTTPS answers get here (plain HTTP is redirected before), as
        // RFC 6797 wants; found missing by testssl.sh.
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'",
        ),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

/// A JSON error answer.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}
