//! openraft's network: Raft messages as RPCs over the node-to-node channels.

// openraft's StorageError/RPCError are large; they are its types, not ours.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::AnyError;

use super::rpc::{describe_status, to_json, Peers};
use super::types::{Node, NodeId, TypeConfig};

/// Makes a client per peer.
pub struct Network {
    peers: Arc<Peers>,
}

impl Network {
    /// A network over `peers`' channels.
    pub fn new(peers: Arc<Peers>) -> Self {
        Network { peers }
    }
}

/// The Raft client of one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
        }
    }
}

type RpcErr<E> = RPCError<NodeId, Node, RaftError<NodeId, E>>;

impl PeerClient {
    async fn send<T, E>(
        &self,
        option: &RPCOption,
        f: impl AsyncFnOnce(
            super::rpc::proto::node_client::NodeClient<tonic::transport::Channel>,
        ) -> Result<tonic::Response<super::rpc::proto::Json>, tonic::Status>,
    ) -> Result<T, RpcErr<E>>
    where
        T: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let client = self
            .peers
            .client(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&AnyError::error(e))))?;
        let ttl = option.hard_ttl().max(Duration::from_millis(200));
        let resp = match tokio::time::timeout(ttl, f(client)).await {
            Err(_) => {
                return Err(RPCError::Network(NetworkError::new(&AnyError::error(format!(
                    "{}: no answer within {ttl:?}",
                    self.addr
                )))))
            }
            Ok(Err(status)) => {
                let msg = describe_status(&self.addr, &status);
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                        RPCError::Unreachable(Unreachable::new(&AnyError::error(msg)))
                    }
                    _ => RPCError::Network(NetworkError::new(&AnyError::error(msg))),
                });
            }
            Ok(Ok(r)) => r,
        };
        let decoded: Result<T, RaftError<NodeId, E>> = serde_json::from_slice(&resp.get_ref().data).map_err(|e| {
            RPCError::Network(NetworkError::new(&AnyError::error(format!(
                "{}: bad reply: {e}",
                self.addr
            ))))
        })?;
        decoded.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        let body = to_json(&rpc);
        self.send(&option, async move |mut c| c.append_entries(body).await)
            .await
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let data = std::mem::take(&mut rpc.data);
        let chunk = super::rpc::proto::SnapshotChunk {
            header: serde_json::to_vec(&rpc).unwrap_or_default(),
            data,
        };
        self.send(&option, async move |mut c| c.install_snapshot(chunk).await)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        let body = to_json(&rpc);
        self.send(&option, async move |mut c| c.vote(body).await).await
    }
}
