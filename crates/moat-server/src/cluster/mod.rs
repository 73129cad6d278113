//! The cluster: nodes that talk only over mutual TLS and replicate every
//! write through Raft (openraft).
//!
//! - [`types`]: what the log carries ([`types::Command`]) and returns.
//! - [`log_store`]: the Raft log, vote and node id (`raft.db`).
//! - [`state_machine`]: the node's SQLite database, applied in log order,
//!   snapshots by SQLite's backup API.
//! - [`rpc`]: gRPC between nodes on the shared port, principal-checked.
//! - [`network`]: openraft's messages over those RPCs.
//! - [`core`]: init, join, leader forwarding, linearizable reads, liveness.
//!
//! The SQL engine sees a cluster only through [`Replicator`].

pub mod core;
pub mod log_store;
pub mod network;
pub mod rpc;
pub mod state_machine;
pub mod types;

use std::path::Path;
use std::sync::Arc;

use moat_tls::store::CertStore;
use time::OffsetDateTime;

use self::core::Core;
pub use self::core::{ClusterConfig, InitReply, NodeInfo};
use self::types::{Command, CommandResult, NodeId};
use crate::db::Database;
use crate::http::{ClusterView, NodeSummary};
use crate::sql::SqlError;
use crate::ServerError;

/// What the SQL engine needs from a cluster. Called on blocking threads.
pub trait Replicator: Send + Sync {
    /// Replicates a write; returns what applying it returned (this node has
    /// applied it when this returns).
    fn write(&self, cmd: Command) -> Result<CommandResult, SqlError>;
    /// Waits until this node has applied every write committed so far.
    fn read_barrier(&self) -> Result<(), SqlError>;
    /// [`Replicator::read_barrier`] for async callers (on the runtime).
    fn read_barrier_async(&self) -> futures::future::BoxFuture<'_, Result<(), SqlError>>;
    /// This node's id.
    fn node_id(&self) -> NodeId;
    /// Every node, for `SHOW NODES`.
    fn nodes(&self) -> Vec<NodeSummary>;
    /// A cluster setting's value on this node, if set.
    fn setting(&self, name: &str) -> Option<String>;
}

/// The TLS connection type the shared listener hands to RPC.
pub type TlsRpcStream = rpc::RpcStream<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>;

/// A node's cluster membership.
pub struct Cluster {
    core: Arc<Core>,
    rt: tokio::runtime::Handle,
    rpc: tokio::sync::mpsc::Sender<TlsRpcStream>,
}

impl Cluster {
    /// Opens the log and the state machine, starts the RPC server, then
    /// Raft (restart), the init (single node) or the join loop.
    pub async fn start(
        cfg: ClusterConfig,
        store: Arc<CertStore>,
        db: &Database,
        store_dir: &Path,
        started_at: OffsetDateTime,
    ) -> Result<Arc<Cluster>, ServerError> {
        let err = |problem: String| ServerError::Store {
            path: store_dir.to_path_buf(),
            problem,
            fix: "check the store directory (permissions, free space, not corrupt)".into(),
        };
        let log = log_store::LogStore::open(store_dir).map_err(|e| err(format!("cannot open the Raft log: {e}")))?;
        let sm =
            state_machine::StateMachine::open(db, store_dir).map_err(|e| err(format!("cannot open the state: {e}")))?;
        let core = Core::new(cfg, store, log, sm, started_at);
        let rpc = rpc::serve(core.clone());
        core.start()
            .await
            .map_err(|e| err(format!("cannot start the cluster: {e}")))?;
        Ok(Arc::new(Cluster {
            core,
            rt: tokio::runtime::Handle::current(),
            rpc,
        }))
    }

    /// Hands an authenticated RPC connection to the RPC server.
    pub async fn serve_rpc(&self, stream: TlsRpcStream) {
        let _ = self.rpc.send(stream).await;
    }

    /// The cluster state (tests, the RPC benchmark).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }
}

impl Replicator for Cluster {
    fn write(&self, cmd: Command) -> Result<CommandResult, SqlError> {
        self.rt.block_on(self.core.propose(cmd))
    }

    fn read_barrier(&self) -> Result<(), SqlError> {
        self.rt.block_on(self.core.read_barrier())
    }

    fn read_barrier_async(&self) -> futures::future::BoxFuture<'_, Result<(), SqlError>> {
        Box::pin(self.core.read_barrier())
    }

    fn node_id(&self) -> NodeId {
        self.core.node_id()
    }

    fn nodes(&self) -> Vec<NodeSummary> {
        self.core.nodes()
    }

    fn setting(&self, name: &str) -> Option<String> {
        self.core.state_machine().setting(name)
    }
}

impl ClusterView for Cluster {
    fn nodes(&self) -> Vec<NodeSummary> {
        self.core.nodes()
    }

    fn node_id(&self) -> NodeId {
        self.core.node_id()
    }
}
