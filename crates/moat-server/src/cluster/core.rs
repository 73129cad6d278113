//! The cluster side of a node: its Raft instance, how it is created (`moat
//! init`, joining through `--join`, or alone for `start-single-node`), how
//! writes reach the leader and reads see committed data, and liveness.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use moat_tls::store::CertStore;
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tonic::Status;

use super::log_store::LogStore;
use super::network::Network;
use super::rpc::{self, to_json, Peers};
use super::state_machine::StateMachine;
use super::types::{Command, CommandResult, NodeId, Raft, TypeConfig};
use crate::http::NodeSummary;
use crate::sql::SqlError;

/// How long a node counts as live after its last heartbeat (CockroachDB's
/// liveness interval).
pub const LIVENESS: Duration = Duration::from_millis(4500);
const HEARTBEAT: Duration = Duration::from_secs(1);
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// How a node takes part in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The address other nodes dial (RPC).
    pub advertise_addr: String,
    /// Nodes to join through (`--join`).
    pub join: Vec<String>,
    /// Initialise alone at once (`start-single-node`).
    pub single_node: bool,
    /// This node's SQL address.
    pub sql_addr: String,
    /// This node's console address.
    pub http_addr: Option<String>,
    /// Entries between snapshots.
    pub snapshot_logs: u64,
}

/// What a node tells others about itself in heartbeats.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node id (0: none yet).
    pub id: NodeId,
    /// RPC address.
    pub addr: String,
    /// SQL address.
    pub sql_addr: String,
    /// Console address.
    pub http_addr: Option<String>,
    /// Start time, unix seconds.
    pub started_at: i64,
    /// NotAfter of its node certificate, unix seconds.
    pub cert_expiry: Option<i64>,
    /// Version.
    pub version: String,
}

/// A join request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The joining node's RPC address.
    pub addr: String,
    /// `None`: allocate an id; `Some`: this node runs Raft with that id,
    /// add it.
    #[serde(default)]
    pub node_id: Option<NodeId>,
}

/// The answer to a join request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum JoinReply {
    /// Welcome: your id.
    Joined {
        /// The new node's id.
        node_id: NodeId,
        /// The cluster id.
        cluster_id: String,
    },
    /// Ask the leader.
    NotLeader {
        /// The leader's RPC address, when known.
        leader: Option<String>,
    },
    /// Refused, with the reason.
    Refused(String),
}

/// The answer to `moat init`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum InitReply {
    /// This node is node 1 of a new cluster.
    Initialized {
        /// The cluster id.
        cluster_id: String,
    },
    /// It was initialised before.
    AlreadyInitialized,
    /// Something failed.
    Failed(String),
}

/// The answer of the leader to a forwarded write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardReply {
    /// Applied at `index` with this result.
    Done {
        /// Log index of the write.
        index: u64,
        /// What applying it returned.
        result: CommandResult,
    },
    /// Not the leader (nothing was proposed).
    NotLeader {
        /// The leader's address, when known.
        leader: Option<String>,
    },
    /// Failed.
    Failed(String),
}

/// The answer to a read-index request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReadIndexReply {
    /// Every write committed before the request is at or below this index.
    Index(u64),
    /// Not the leader.
    NotLeader {
        /// The leader's address, when known.
        leader: Option<String>,
    },
    /// Failed.
    Failed(String),
}

/// The cluster state of a node.
pub struct Core {
    cfg: ClusterConfig,
    store: Arc<CertStore>,
    log: LogStore,
    sm: StateMachine,
    peers: Arc<Peers>,
    raft: OnceLock<Raft>,
    node_id: OnceLock<NodeId>,
    init_lock: tokio::sync::Mutex<()>,
    started_at: OffsetDateTime,
    liveness: Mutex<HashMap<NodeId, (Instant, NodeInfo)>>,
    http_addr: OnceLock<String>,
    /// See [`Core::reads_are_local`].
    local_reads: std::sync::atomic::AtomicBool,
}

fn unavailable() -> SqlError {
    SqlError::new(
        "57P03",
        "this node is not part of an initialised cluster yet: initialise it with `moat init` or wait until it has joined",
    )
}

fn no_leader() -> SqlError {
    SqlError::new(
        "57P03",
        "the cluster has no leader right now (too many nodes are down, or it is electing one)",
    )
    .hint("retry when a majority of the nodes is live")
}

fn ambiguous(e: impl std::fmt::Display) -> SqlError {
    SqlError::new("40003", format!("result is ambiguous: {e}"))
        .hint("the write may or may not have been applied; check before retrying")
}

impl Core {
    /// The cluster state, not started yet.
    pub fn new(
        cfg: ClusterConfig,
        store: Arc<CertStore>,
        log: LogStore,
        sm: StateMachine,
        started_at: OffsetDateTime,
    ) -> Arc<Core> {
        Arc::new(Core {
            cfg,
            peers: Arc::new(Peers::new(store.clone())),
            store,
            log,
            sm,
            raft: OnceLock::new(),
            node_id: OnceLock::new(),
            init_lock: tokio::sync::Mutex::new(()),
            started_at,
            liveness: Mutex::new(HashMap::new()),
            http_addr: OnceLock::new(),
            local_reads: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Records the console's bound address (known only once it listens).
    pub fn set_http_addr(&self, addr: String) {
        let _ = self.http_addr.set(addr);
    }

    /// Starts Raft if this node has an id; otherwise initialises alone
    /// (single node) or starts joining. Starts the heartbeats.
    pub async fn start(self: &Arc<Self>) -> Result<(), String> {
        if let Some(id) = self.log.node_id()? {
            self.start_raft(id).await?;
            tracing::info!(node_id = id, "node restarted with its Raft state");
            if !self.cfg.join.is_empty() && id != 1 {
                let me = self.clone();
                tokio::spawn(async move { me.announce_if_missing(id).await });
            }
        } else if self.cfg.single_node {
            match self.handle_init().await {
                InitReply::Initialized { cluster_id } => {
                    tracing::info!(%cluster_id, "initialised a single-node cluster")
                }
                InitReply::AlreadyInitialized => {}
                InitReply::Failed(e) => return Err(e),
            }
        } else if !self.cfg.join.is_empty() {
            let me = self.clone();
            tokio::spawn(async move { me.join_loop().await });
        } else {
            tracing::info!("waiting for `moat init`");
        }
        let me = self.clone();
        tokio::spawn(async move { me.heartbeat_loop().await });
        Ok(())
    }

    /// The Raft instance, once the node is part of a cluster.
    pub fn raft(&self) -> Option<&Raft> {
        self.raft.get()
    }

    /// The Raft instance, or `UNAVAILABLE` for RPC callers.
    pub fn raft_or_unavailable(&self) -> Result<Raft, Status> {
        self.raft
            .get()
            .cloned()
            .ok_or_else(|| Status::unavailable("this node has not joined a cluster yet"))
    }

    /// This node's id (0 before it has one).
    pub fn node_id(&self) -> NodeId {
        self.node_id.get().copied().unwrap_or(0)
    }

    /// The state machine.
    pub fn state_machine(&self) -> &StateMachine {
        &self.sm
    }

    /// The peers' channels.
    pub fn peers(&self) -> &Arc<Peers> {
        &self.peers
    }

    async fn start_raft(&self, id: NodeId) -> Result<(), String> {
        let config = openraft::Config {
            cluster_name: "moat".into(),
            heartbeat_interval: 250,
            election_timeout_min: 1500,
            election_timeout_max: 3000,
            install_snapshot_timeout: 20_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.cfg.snapshot_logs),
            max_in_snapshot_log_to_keep: self.cfg.snapshot_logs.min(1000),
            purge_batch_size: (self.cfg.snapshot_logs / 2).clamp(1, 256),
            ..Default::default()
        }
        .validate()
        .map_err(|e| format!("Raft configuration: {e}"))?;
        let raft = Raft::new(
            id,
            Arc::new(config),
            Network::new(self.peers.clone()),
            self.log.clone(),
            self.sm.clone(),
        )
        .await
        .map_err(|e| format!("cannot start Raft: {e}"))?;
        let _ = self.node_id.set(id);
        let _ = self.raft.set(raft);
        metrics::gauge!("cluster.node_id").set(id as f64);
        Ok(())
    }

    /// `moat init`: makes this node node 1 of a new cluster.
    pub async fn handle_init(&self) -> InitReply {
        let _g = self.init_lock.lock().await;
        match self.log.node_id() {
            Ok(Some(_)) => return InitReply::AlreadyInitialized,
            Ok(None) => {}
            Err(e) => return InitReply::Failed(e),
        }
        if self.raft.get().is_some() {
            return InitReply::AlreadyInitialized;
        }
        let cluster_id = random_id();
        let r: Result<(), String> = async {
            self.log.set_cluster_id(&cluster_id)?;
            self.log.set_node_id(1)?;
            self.start_raft(1).await?;
            let raft = self.raft.get().expect("started");
            let members = std::collections::BTreeMap::from([(1, BasicNode::new(&self.cfg.advertise_addr))]);
            raft.initialize(members).await.map_err(|e| format!("initialise: {e}"))?;
            raft.wait(Some(Duration::from_secs(30)))
                .state(ServerState::Leader, "init")
                .await
                .map_err(|e| format!("no leadership after init: {e}"))?;
            raft.client_write(Command::Bootstrap {
                cluster_id: cluster_id.clone(),
            })
            .await
            .map_err(|e| format!("bootstrap entry: {e}"))?;
            Ok(())
        }
        .await;
        match r {
            Ok(()) => {
                tracing::info!(%cluster_id, addr = %self.cfg.advertise_addr, "cluster initialised; this is node 1");
                InitReply::Initialized { cluster_id }
            }
            Err(e) => {
                tracing::error!("cluster initialisation failed: {e}");
                InitReply::Failed(e)
            }
        }
    }

    fn leader_addr(&self) -> Option<String> {
        let raft = self.raft.get()?;
        let m = raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    }

    fn is_leader(&self) -> bool {
        self.raft
            .get()
            .map(|r| r.metrics().borrow().current_leader == Some(self.node_id()))
            .unwrap_or(false)
    }

    /// A node asks to join: the leader allocates its id, adds it as a
    /// learner, and promotes it to voter once it has caught up.
    pub async fn handle_join(&self, req: JoinRequest, peer: SocketAddr) -> JoinReply {
        if self.cfg.single_node {
            tracing::warn!(%peer, addr = %req.addr, "refused a node that asked to join: this node runs alone");
            return JoinReply::Refused(
                "this node was started with `moat start-single-node` and takes no other nodes; \
                 to run a cluster, start every node with `moat start --join` and run `moat init` once"
                    .into(),
            );
        }
        let Some(raft) = self.raft.get() else {
            return JoinReply::Refused("the cluster is not initialised yet (run `moat init`)".into());
        };
        if !self.is_leader() {
            return JoinReply::NotLeader {
                leader: self.leader_addr(),
            };
        }
        let cluster_id = self.sm.cluster_value("cluster_id").unwrap_or_default();
        if let Some(id) = req.node_id {
            let known = raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&id)
                .is_some();
            if !known {
                if let Err(e) = raft.add_learner(id, BasicNode::new(&req.addr), false).await {
                    return JoinReply::Refused(format!("cannot add node {id}: {e}"));
                }
                tracing::info!(node_id = id, addr = %req.addr, %peer, "node joining");
            }
            let raft = raft.clone();
            tokio::spawn(async move { promote(raft, id).await });
            return JoinReply::Joined {
                node_id: id,
                cluster_id,
            };
        }
        match raft.client_write(Command::AllocNodeId { addr: req.addr.clone() }).await {
            Ok(r) => match r.data {
                CommandResult::NodeId(id) => JoinReply::Joined {
                    node_id: id,
                    cluster_id,
                },
                other => JoinReply::Refused(format!("unexpected allocation result {other:?}")),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => JoinReply::NotLeader {
                leader: self.leader_addr(),
            },
            Err(e) => JoinReply::Refused(format!("cannot allocate a node id: {e}")),
        }
    }

    /// Sends `req` to the join targets (and to the leader they name) until
    /// one answers `Joined`; `stop` ends the loop early.
    async fn ask_to_join(&self, req: JoinRequest, stop: impl Fn() -> bool) -> Option<(NodeId, String, String)> {
        let mut attempt = 0u64;
        let mut targets: Vec<String> = self.cfg.join.clone();
        loop {
            if stop() {
                return None;
            }
            attempt += 1;
            let mut next_targets = self.cfg.join.clone();
            for addr in targets.iter().filter(|a| **a != self.cfg.advertise_addr) {
                let body = to_json(&req);
                let r: Result<JoinReply, String> =
                    rpc::call(&self.peers, addr, Duration::from_secs(5), async move |mut c| {
                        c.join(body).await
                    })
                    .await;
                match r {
                    Ok(JoinReply::Joined { node_id, cluster_id }) => return Some((node_id, cluster_id, addr.clone())),
                    Ok(JoinReply::NotLeader { leader: Some(l) }) => next_targets.insert(0, l),
                    Ok(JoinReply::NotLeader { leader: None }) => {}
                    Ok(JoinReply::Refused(why)) => {
                        if attempt % 5 == 1 {
                            tracing::info!(via = %addr, "not joined yet: {why}");
                        }
                    }
                    Err(e) => {
                        if attempt % 5 == 1 {
                            tracing::warn!("cannot join via {e}");
                        }
                    }
                }
            }
            next_targets.dedup();
            targets = next_targets;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Joining, first phase: get an id from the leader, record it, start
    /// Raft; second phase: [`Core::announce`].
    async fn join_loop(self: Arc<Self>) {
        let req = JoinRequest {
            addr: self.cfg.advertise_addr.clone(),
            node_id: None,
        };
        let Some((node_id, cluster_id, via)) = self.ask_to_join(req, || self.raft.get().is_some()).await else {
            return;
        };
        {
            let _g = self.init_lock.lock().await;
            if self.raft.get().is_some() {
                return;
            }
            let saved = self
                .log
                .set_cluster_id(&cluster_id)
                .and_then(|_| self.log.set_node_id(node_id));
            if let Err(e) = saved {
                tracing::error!("cannot record the node id {node_id}: {e}");
                return;
            }
            if let Err(e) = self.start_raft(node_id).await {
                tracing::error!("got node id {node_id} but cannot start Raft: {e}");
                return;
            }
        }
        tracing::info!(node_id, via = %via, %cluster_id, "got a node id; joining");
        self.announce(node_id).await;
    }

    /// Joining, second phase: Raft runs here, so the leader may add this
    /// node (as a learner, promoted to voter once caught up).
    async fn announce(&self, node_id: NodeId) {
        let req = JoinRequest {
            addr: self.cfg.advertise_addr.clone(),
            node_id: Some(node_id),
        };
        if self.ask_to_join(req, || false).await.is_some() {
            tracing::info!(node_id, "joined the cluster");
        }
    }

    /// After a restart: a node that got its id but crashed before the leader
    /// added it announces itself again.
    async fn announce_if_missing(self: Arc<Self>, node_id: NodeId) {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let member = self
            .raft
            .get()
            .map(|r| {
                r.metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .get_node(&node_id)
                    .is_some()
            })
            .unwrap_or(true);
        if !member {
            self.announce(node_id).await;
        }
    }

    /// Runs a write on this node as leader (for a forwarding follower).
    pub async fn leader_write(&self, cmd: Command) -> ForwardReply {
        let Some(raft) = self.raft.get() else {
            return ForwardReply::NotLeader { leader: None };
        };
        match raft.client_write(cmd).await {
            Ok(r) => ForwardReply::Done {
                index: r.log_id.index,
                result: r.data,
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => ForwardReply::NotLeader {
                leader: f.leader_node.map(|n| n.addr),
            },
            Err(e) => ForwardReply::Failed(e.to_string()),
        }
    }

    /// The read index, on the leader.
    pub async fn leader_read_index(&self) -> ReadIndexReply {
        let Some(raft) = self.raft.get() else {
            return ReadIndexReply::NotLeader { leader: None };
        };
        match raft.ensure_linearizable().await {
            Ok(l) => ReadIndexReply::Index(l.map(|l| l.index).unwrap_or(0)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => ReadIndexReply::NotLeader {
                leader: f.leader_node.map(|n| n.addr),
            },
            Err(e) => ReadIndexReply::Failed(e.to_string()),
        }
    }

    async fn wait_applied(&self, index: u64) -> Result<(), SqlError> {
        let mut rx = self.sm.applied_index();
        let ok = matches!(
            tokio::time::timeout(WRITE_DEADLINE, rx.wait_for(|i| *i >= index)).await,
            Ok(Ok(_))
        );
        match ok {
            true => Ok(()),
            false => Err(SqlError::new(
                "57P03",
                format!("this node has not applied log entry {index} within {WRITE_DEADLINE:?}"),
            )),
        }
    }

    /// Replicates a write and returns what applying it returned; waits until
    /// this node has applied it too (so the session reads its own writes).
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, SqlError> {
        let deadline = Instant::now() + WRITE_DEADLINE;
        let mut leader_hint: Option<String> = None;
        loop {
            let Some(raft) = self.raft.get() else {
                return Err(unavailable());
            };
            let target = match leader_hint.take() {
                Some(l) => Some(l),
                None => match raft.client_write(cmd.clone()).await {
                    Ok(r) => return Ok(r.data),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => f.leader_node.map(|n| n.addr),
                    Err(RaftError::APIError(e)) => return Err(SqlError::new("XX000", format!("replication: {e}"))),
                    Err(e) => return Err(ambiguous(e)),
                },
            };
            if let Some(addr) = target {
                let body = to_json(&cmd);
                let r: Result<ForwardReply, String> =
                    rpc::call(&self.peers, &addr, WRITE_DEADLINE, async move |mut c| {
                        c.forward(body).await
                    })
                    .await;
                match r {
                    Ok(ForwardReply::Done { index, result }) => {
                        // Committed: say so even if this node is slow to apply
                        // it (a later read waits for it through the read index).
                        if let Err(e) = self.wait_applied(index).await {
                            tracing::warn!(
                                "write at log index {index} committed, not applied here yet: {}",
                                e.message
                            );
                        }
                        return Ok(result);
                    }
                    Ok(ForwardReply::NotLeader { leader }) => leader_hint = leader.filter(|l| *l != addr),
                    Ok(ForwardReply::Failed(e)) => return Err(ambiguous(e)),
                    Err(e) if e.contains("tcp connect") || e.contains("Connection refused") => {}
                    Err(e) => return Err(ambiguous(e)),
                }
            }
            if Instant::now() >= deadline {
                return Err(no_leader());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until this node has applied every write committed before the
    /// call (a linearizable read). Before the node is in a cluster, its
    /// local data is all there is.
    pub async fn read_barrier(&self) -> Result<(), SqlError> {
        let deadline = Instant::now() + WRITE_DEADLINE;
        let mut leader_hint: Option<String> = None;
        loop {
            let Some(raft) = self.raft.get() else {
                return Ok(());
            };
            if self.reads_are_local(raft) {
                return Ok(());
            }
            let target = match leader_hint.take() {
                Some(l) => Some(l),
                None => match raft.ensure_linearizable().await {
                    Ok(_) => {
                        if self.cfg.single_node {
                            self.local_reads.store(true, std::sync::atomic::Ordering::Release);
                        }
                        return Ok(());
                    }
                    Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => f.leader_node.map(|n| n.addr),
                    Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => None,
                    Err(e) => return Err(SqlError::new("XX000", format!("read barrier: {e}"))),
                },
            };
            if let Some(addr) = target {
                let r: Result<ReadIndexReply, String> =
                    rpc::call(&self.peers, &addr, WRITE_DEADLINE, async move |mut c| {
                        c.read_index(to_json(&())).await
                    })
                    .await;
                match r {
                    Ok(ReadIndexReply::Index(i)) => return self.wait_applied(i).await,
                    Ok(ReadIndexReply::NotLeader { leader }) => leader_hint = leader.filter(|l| *l != addr),
                    Ok(ReadIndexReply::Failed(_)) | Err(_) => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(no_leader());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether a read may skip the leader's read index: only on a node
    /// started alone (`start-single-node`, which refuses every join, so no
    /// other node can ever vote or lead), once it has passed one read index
    /// as leader (what was committed before it became leader is applied),
    /// while it is still the leader and the only voter. Then every write
    /// was applied here before it was acknowledged, and the local store is
    /// the linearizable state.
    fn reads_are_local(&self, raft: &Raft) -> bool {
        if !self.cfg.single_node || !self.local_reads.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        let Some(me) = self.node_id.get().copied() else {
            return false;
        };
        let m = raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.membership_config.membership().voter_ids().eq([me])
    }

    /// What this node tells others about itself.
    pub fn my_info(&self) -> NodeInfo {
        let cert_expiry = self
            .store
            .snapshot()
            .material
            .node()
            .ok()
            .and_then(|k| moat_pki::inspect::CertInfo::from_der(&k.cert[0]).ok())
            .map(|c| c.not_after.unix_timestamp());
        NodeInfo {
            id: self.node_id(),
            addr: self.cfg.advertise_addr.clone(),
            sql_addr: self.cfg.sql_addr.clone(),
            http_addr: self.http_addr.get().cloned().or_else(|| self.cfg.http_addr.clone()),
            started_at: self.started_at.unix_timestamp(),
            cert_expiry,
            version: format!("moat {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// A heartbeat from another node: note it, answer with ours.
    pub fn handle_heartbeat(&self, info: NodeInfo) -> NodeInfo {
        if info.id != 0 {
            self.liveness
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(info.id, (Instant::now(), info));
        }
        self.my_info()
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HEARTBEAT);
        loop {
            tick.tick().await;
            let Some(raft) = self.raft.get() else { continue };
            let me = self.node_id();
            let members: Vec<(NodeId, String)> = raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != me)
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect();
            let info = self.my_info();
            for (id, addr) in members {
                let core = self.clone();
                let body = to_json(&info);
                tokio::spawn(async move {
                    let r: Result<NodeInfo, String> = rpc::call(&core.peers, &addr, HEARTBEAT, async move |mut c| {
                        c.heartbeat(body).await
                    })
                    .await;
                    match r {
                        Ok(theirs) if theirs.id == id => {
                            core.liveness
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(id, (Instant::now(), theirs));
                        }
                        Ok(theirs) => {
                            tracing::warn!(expected = id, got = theirs.id, %addr, "heartbeat answered by another node")
                        }
                        Err(e) => tracing::debug!(node_id = id, "heartbeat failed: {e}"),
                    }
                });
            }
        }
    }

    /// Every member of the cluster (this node alone before it has joined).
    pub fn nodes(&self) -> Vec<NodeSummary> {
        let me = self.my_info();
        let summary = |info: &NodeInfo, live: bool, leader: bool| NodeSummary {
            id: info.id,
            address: info.addr.clone(),
            sql_address: Some(info.sql_addr.clone()),
            http_address: info.http_addr.clone(),
            live,
            is_leader: leader,
            started_at: OffsetDateTime::from_unix_timestamp(info.started_at).ok(),
            version: info.version.clone(),
            cert_expiry: info.cert_expiry,
        };
        let Some(raft) = self.raft.get() else {
            return vec![summary(&me, true, false)];
        };
        let m = raft.metrics().borrow().clone();
        let live = self.liveness.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = Vec::new();
        for (id, node) in m.membership_config.membership().nodes() {
            let leader = m.current_leader == Some(*id);
            if *id == me.id {
                out.push(summary(&me, true, leader));
                continue;
            }
            match live.get(id) {
                Some((seen, info)) => out.push(summary(info, seen.elapsed() < LIVENESS, leader)),
                None => out.push(NodeSummary {
                    id: *id,
                    address: node.addr.clone(),
                    sql_address: None,
                    http_address: None,
                    live: false,
                    is_leader: leader,
                    started_at: None,
                    version: String::new(),
                    cert_expiry: None,
                }),
            }
        }
        out.sort_by_key(|n| n.id);
        out
    }

    /// Whether `id` is a voter.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.raft
            .get()
            .map(|r| {
                r.metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == id)
            })
            .unwrap_or(false)
    }

    /// The SQL address of every live node (from heartbeats), this one first.
    pub fn sql_addrs(&self) -> Vec<String> {
        let mut out = vec![self.cfg.sql_addr.clone()];
        let live = self.liveness.lock().unwrap_or_else(|p| p.into_inner());
        let mut others: Vec<_> = live.values().filter(|(t, _)| t.elapsed() < LIVENESS).collect();
        others.sort_by_key(|(_, i)| i.id);
        out.extend(others.into_iter().map(|(_, i)| i.sql_addr.clone()));
        out
    }
}

/// Promotes a learner to voter once it has caught up with the leader.
async fn promote(raft: Raft, id: NodeId) {
    // One membership change at a time (openraft refuses overlapping ones).
    static PROMOTIONS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = PROMOTIONS.lock().await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let m = raft.metrics().borrow().clone();
        if m.membership_config.membership().voter_ids().any(|v| v == id) {
            return;
        }
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned())
            .flatten()
            .map(|l| l.index);
        let last = m.last_log_index.unwrap_or(0);
        if matched.is_none_or(|i| i + 100 < last) {
            continue;
        }
        match raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
        {
            Ok(_) => {
                tracing::info!(node_id = id, "node is now a voter");
                return;
            }
            Err(e) => tracing::debug!(node_id = id, "promotion deferred: {e}"),
        }
    }
    tracing::warn!(
        node_id = id,
        "node did not catch up within 120 s; it stays a learner until it is re-added"
    );
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut b);
    crate::sql::types::uuid_v4_text(b)
}

/// For `TypeConfig` users outside this module.
pub type Config = TypeConfig;
