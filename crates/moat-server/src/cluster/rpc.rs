//! Node-to-node gRPC (tonic) over moat's own mutual TLS.
//!
//! Server side: the shared SQL/RPC listener hands every TLS connection that
//! negotiated ALPN `h2` (with the RPC role's verifier: client certificate
//! required, principal checked) to [`serve`] as an [`RpcStream`]; handlers
//! see the peer's principal and refuse what it may not do. Client side: one
//! lazily connected channel per peer address, dialled with `client.node.crt`
//! (else `node.crt`) from the live certificate store, so rotations apply to
//! new connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use moat_tls::store::CertStore;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use super::core::Core;

/// The generated service and client.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("moat.rpc");
}

use proto::node_client::NodeClient;
use proto::node_server::{Node as NodeService, NodeServer};
use proto::{Json, SnapshotChunk};

/// Largest RPC message (snapshot chunks are 3 MiB).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Who is calling, as the TLS handshake established it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The principal its certificate names (`node` or `root`); `None` on the
    /// benchmark's plaintext listener.
    pub principal: Option<&'static str>,
}

/// A connection handed to the RPC server.
pub struct RpcStream<S> {
    io: S,
    info: PeerInfo,
    certs: Option<(Arc<CertStore>, u64)>,
}

impl<S> RpcStream<S> {
    /// Wraps an established connection and who is on the other end.
    pub fn new(io: S, info: PeerInfo) -> Self {
        RpcStream { io, info, certs: None }
    }

    /// Ends the connection when `store` reloads (its generation moves past
    /// `generation`, the one the handshake used): the peer reconnects and
    /// meets the new CAs and CRLs, so a revoked node loses its established
    /// channels too, not only new handshakes.
    pub fn until_reload(mut self, store: Arc<CertStore>, generation: u64) -> Self {
        self.certs = Some((store, generation));
        self
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RpcStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if let Some((store, generation)) = &self.certs {
            if store.snapshot().generation != *generation {
                tracing::info!(peer = %self.info.addr, "closing an RPC connection: certificates were reloaded");
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "certificates reloaded: reconnect",
                )));
            }
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RpcStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<S> tonic::transport::server::Connected for RpcStream<S> {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

/// Encodes a payload.
pub fn to_json<T: Serialize>(v: &T) -> Json {
    Json {
        data: serde_json::to_vec(v).unwrap_or_default(),
    }
}

/// Decodes a payload.
pub fn from_json<T: DeserializeOwned>(j: &Json) -> Result<T, Status> {
    serde_json::from_slice(&j.data).map_err(|e| Status::invalid_argument(format!("bad payload: {e}")))
}

/// The service, backed by a node's cluster core.
pub struct Service {
    core: Arc<Core>,
}

/// What a caller may do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Node-to-node: only the `node` principal.
    Node,
    /// Administration (`moat init`): `node` or `root`.
    Admin,
    /// The echo RPC: anyone who completed the handshake.
    Any,
}

fn check<T>(req: &Request<T>, need: Need) -> Result<PeerInfo, Status> {
    let info = req
        .extensions()
        .get::<PeerInfo>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no peer identity"))?;
    let ok = matches!(
        (need, info.principal),
        (Need::Any, _) | (Need::Node, Some("node")) | (Need::Admin, Some("node" | "root"))
    );
    if !ok {
        tracing::warn!(peer = %info.addr, principal = ?info.principal, "RPC refused: the certificate does not name the node principal");
        metrics::counter!("rpc.refused", "reason" => "principal").increment(1);
        return Err(Status::permission_denied(
            "this RPC is only answered for the node principal",
        ));
    }
    Ok(info)
}

#[tonic::async_trait]
impl NodeService for Service {
    async fn append_entries(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        check(&req, Need::Node)?;
        let rpc = from_json(req.get_ref())?;
        let raft = self.core.raft_or_unavailable()?;
        Ok(Response::new(to_json(&raft.append_entries(rpc).await)))
    }

    async fn vote(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        check(&req, Need::Node)?;
        let rpc = from_json(req.get_ref())?;
        let raft = self.core.raft_or_unavailable()?;
        Ok(Response::new(to_json(&raft.vote(rpc).await)))
    }

    async fn install_snapshot(&self, req: Request<SnapshotChunk>) -> Result<Response<Json>, Status> {
        check(&req, Need::Node)?;
        let chunk = req.into_inner();
        let mut rpc: openraft::raft::InstallSnapshotRequest<super::types::TypeConfig> =
            serde_json::from_slice(&chunk.header).map_err(|e| Status::invalid_argument(format!("bad header: {e}")))?;
        rpc.data = chunk.data;
        let raft = self.core.raft_or_unavailable()?;
        Ok(Response::new(to_json(&raft.install_snapshot(rpc).await)))
    }

    async fn forward(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        check(&req, Need::Node)?;
        let cmd = from_json(req.get_ref())?;
        Ok(Response::new(to_json(&self.core.leader_write(cmd).await)))
    }

    async fn read_index(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        check(&req, Need::Node)?;
        Ok(Response::new(to_json(&self.core.leader_read_index().await)))
    }

    async fn join(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        let peer = check(&req, Need::Node)?;
        let join = from_json(req.get_ref())?;
        Ok(Response::new(to_json(&self.core.handle_join(join, peer.addr).await)))
    }

    async fn init(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        let peer = check(&req, Need::Admin)?;
        tracing::info!(peer = %peer.addr, principal = ?peer.principal, "init requested");
        Ok(Response::new(to_json(&self.core.handle_init().await)))
    }

    async fn heartbeat(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        check(&req, Need::Node)?;
        let info = from_json(req.get_ref())?;
        Ok(Response::new(to_json(&self.core.handle_heartbeat(info))))
    }

    async fn ping(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        check(&req, Need::Any)?;
        Ok(Response::new(req.into_inner()))
    }
}

/// Serves RPC on the connections sent to the returned sender, until the
/// sender and its clones are dropped.
pub fn serve<S>(core: Arc<Core>) -> tokio::sync::mpsc::Sender<RpcStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<RpcStream<S>>(256);
    let incoming = futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok::<_, std::io::Error>);
    let svc = NodeServer::new(Service { core })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    tokio::spawn(async move {
        let r = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = r {
            tracing::error!("RPC server stopped: {e}");
        }
    });
    tx
}

/// How a node reaches others: one channel per address, over mutual TLS.
pub struct Peers {
    store: Arc<CertStore>,
    /// Channels by address, for the certificate generation they were made with.
    channels: Mutex<(u64, HashMap<String, Channel>)>,
}

impl Peers {
    /// Peers dialled with the node's certificates from `store`.
    pub fn new(store: Arc<CertStore>) -> Self {
        Peers {
            store,
            channels: Mutex::new((0, HashMap::new())),
        }
    }

    /// A client for `addr` (`host:port`); connects on first use.
    pub fn client(&self, addr: &str) -> Result<NodeClient<Channel>, String> {
        let generation = self.store.snapshot().generation;
        let mut guard = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if guard.0 != generation {
            // Certificates reloaded: new connections, new handshakes (the old
            // channels close when their last call ends).
            guard.1.clear();
            guard.0 = generation;
        }
        let map = &mut guard.1;
        let ch = match map.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = tls_channel(self.store.clone(), addr)?;
                map.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(NodeClient::new(ch)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }
}

/// A lazily connected channel to `addr` over mutual TLS with the node's
/// RPC client configuration; the server's certificate must name the host.
pub fn tls_channel(store: Arc<CertStore>, addr: &str) -> Result<Channel, String> {
    channel_with(addr, move || store.snapshot().rpc_client())
}

/// A lazily connected channel to `addr` over TLS with the client
/// configuration `config` returns at each connection (it must offer ALPN
/// `h2` and a client certificate naming `node` or `root`).
pub fn channel_with(
    addr: &str,
    config: impl Fn() -> Arc<rustls::ClientConfig> + Send + Sync + 'static,
) -> Result<Channel, String> {
    let config = Arc::new(config);
    let ep = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad node address {addr:?}: {e}"))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    Ok(
        ep.connect_with_connector_lazy(tower::service_fn(move |uri: tonic::codegen::http::Uri| {
            let config = config.clone();
            async move {
                let host = uri.host().unwrap_or_default().trim_matches(['[', ']']).to_string();
                let port = uri.port_u16().unwrap_or(26257);
                let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                let _ = tcp.set_nodelay(true);
                let name = rustls_pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| std::io::Error::other(format!("bad host name {host:?}: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(config()).connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        })),
    )
}

/// Asks the node at `addr` to initialise a new cluster (`moat init`),
/// dialling with `config` (a `root` or `node` client certificate).
pub async fn request_init(config: Arc<rustls::ClientConfig>, addr: &str) -> Result<super::InitReply, String> {
    let mut cfg = (*config).clone();
    cfg.alpn_protocols = vec![moat_tls::roles::ALPN_RPC.to_vec()];
    let cfg = Arc::new(cfg);
    let channel = channel_with(addr, move || cfg.clone())?;
    let mut client = NodeClient::new(channel);
    match tokio::time::timeout(Duration::from_secs(60), client.init(to_json(&()))).await {
        Err(_) => Err(format!("{addr}: no answer within 60 s")),
        Ok(Err(status)) => Err(describe_status(addr, &status)),
        Ok(Ok(resp)) => from_json(resp.get_ref()).map_err(|e| format!("{addr}: {}", e.message())),
    }
}

/// A plaintext channel (the RPC benchmark's baseline only).
pub fn plain_channel(addr: &str) -> Result<Channel, String> {
    let ep = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad address {addr:?}: {e}"))?
        .tcp_nodelay(true);
    Ok(ep.connect_lazy())
}

/// Calls `f` on `addr`'s client with a deadline, decoding the JSON reply.
pub async fn call<T, F, Fut>(peers: &Peers, addr: &str, timeout: Duration, f: F) -> Result<T, String>
where
    T: DeserializeOwned,
    F: FnOnce(NodeClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<Json>, Status>>,
{
    let client = peers.client(addr)?;
    match tokio::time::timeout(timeout, f(client)).await {
        Err(_) => Err(format!("{addr}: no answer within {timeout:?}")),
        Ok(Err(status)) => Err(describe_status(addr, &status)),
        Ok(Ok(resp)) => serde_json::from_slice(&resp.get_ref().data).map_err(|e| format!("{addr}: bad reply: {e}")),
    }
}

/// A readable account of a failed RPC, with the TLS error when there is one.
pub fn describe_status(addr: &str, status: &Status) -> String {
    use std::error::Error;
    let mut msg = format!("{addr}: {}", status.message());
    let mut src: Option<&(dyn Error + 'static)> = status.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        src = s.source();
    }
    msg
}
