//! One client connection on the SQL port, from the first byte to the end:
//! the PostgreSQL SSLRequest or a direct TLS ClientHello (PostgreSQL 17,
//! ALPN `postgresql`), our own TLS handshake through moat-tls (deadline,
//! failure reasons in the log, OCSP), then pgwire's message loop with this
//! connection's handlers. Plaintext reaches the startup handler, which
//! refuses it unless `--accept-sql-without-tls`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use pgwire::api::{ClientInfo, DefaultClient, NoopHandler, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::{process_error, process_message, MaybeTls, PgWireMessageServerCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::node::Shared;

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// How the connection will carry PostgreSQL messages.
enum Transport {
    Tls(
        Box<tokio_rustls::server::TlsStream<TcpStream>>,
        Arc<moat_tls::store::Snapshot>,
    ),
    Plain(TcpStream),
    /// Node-to-node RPC: the TLS stream and the peer's principal.
    Rpc(Box<tokio_rustls::server::TlsStream<TcpStream>>, &'static str),
}

async fn peek_head(tcp: &TcpStream) -> std::io::Result<Option<[u8; 8]>> {
    let mut head = [0u8; 8];
    loop {
        let n = tcp.peek(&mut head).await?;
        if n == 0 {
            return Ok(None);
        }
        if n == 8 || head[0] == TLS_HANDSHAKE_RECORD {
            return Ok(Some(head));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn negotiate(shared: &Shared, mut tcp: TcpStream, peer: SocketAddr) -> Option<Transport> {
    loop {
        let head = peek_head(&tcp).await.ok()??;
        let direct = head[0] == TLS_HANDSHAKE_RECORD;
        if head == GSSENC_REQUEST {
            let mut skip = [0u8; 8];
            tcp.read_exact(&mut skip).await.ok()?;
            tcp.write_all(b"N").await.ok()?;
            continue;
        }
        if head != SSL_REQUEST && !direct {
            return Some(Transport::Plain(tcp));
        }
        if !direct {
            let mut skip = [0u8; 8];
            tcp.read_exact(&mut skip).await.ok()?;
            tcp.write_all(b"S").await.ok()?;
        }
        let snap = shared.store.snapshot();
        let tls = if direct {
            let (tls, route) = moat_tls::accept::handshake_shared(
                snap.sql_server(),
                snap.rpc_server(),
                tcp,
                peer,
                shared.handshake_timeout,
            )
            .await
            .ok()?;
            if route == moat_tls::accept::Route::Rpc {
                let conn = tls.get_ref().1;
                let chain = conn.peer_certificates().map(|c| c.to_vec());
                // The handshake already refused any other principal.
                let principal = shared.store.policy().authorize_rpc(chain.as_ref()?.first()?).ok()?;
                let anchors = snap.material.client_anchor_certs();
                moat_tls::accept::check_ocsp(&shared.ocsp, chain.as_deref(), &anchors, peer, "rpc")
                    .await
                    .ok()?;
                return Some(Transport::Rpc(Box::new(tls), principal));
            }
            tls
        } else {
            moat_tls::accept::handshake(snap.sql_server(), tcp, peer, "sql", shared.handshake_timeout)
                .await
                .ok()?
        };
        let conn = tls.get_ref().1;
        if direct && conn.alpn_protocol() != Some(moat_tls::roles::ALPN_POSTGRES) {
            tracing::warn!(%peer, "direct TLS connection without ALPN \"postgresql\" or \"h2\" closed");
            return None;
        }
        let chain = conn.peer_certificates().map(|c| c.to_vec());
        let anchors = snap.material.client_anchor_certs();
        moat_tls::accept::check_ocsp(&shared.ocsp, chain.as_deref(), &anchors, peer, "sql")
            .await
            .ok()?;
        return Some(Transport::Tls(Box::new(tls), snap));
    }
}

/// Refuses a session over the connection limit the PostgreSQL way: read the
/// startup packet (bounded), answer FATAL 53300, close.
async fn refuse_too_many<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut io: S, max: usize) {
    let mut len = [0u8; 4];
    if io.read_exact(&mut len).await.is_ok() {
        let n = u32::from_be_bytes(len) as usize;
        if (8..=10_000).contains(&n) {
            let mut rest = vec![0u8; n - 4];
            let _ = io.read_exact(&mut rest).await;
        }
    }
    let msg = format!("sorry, too many clients already (the node allows {max} connections)");
    let mut fields = Vec::new();
    for (code, text) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', "53300"), (b'M', msg.as_str())] {
        fields.push(code);
        fields.extend_from_slice(text.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&fields);
    let _ = io.write_all(&out).await;
    let _ = io.shutdown().await;
}

/// Serves one connection to its end. `pending` is held while the
/// connection negotiates and authenticates.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    pending: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = tcp.set_nodelay(true);
    let _open = crate::node::OpenGuard::new("sql");
    let transport = match tokio::time::timeout(shared.handshake_timeout, negotiate(&shared, tcp, peer)).await {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(_) => {
            metrics::counter!("security.tls.handshake_failures", "listener" => "sql", "reason" => "timeout")
                .increment(1);
            tracing::warn!(%peer, "connection closed: no TLS negotiation within {:?}", shared.handshake_timeout);
            return;
        }
    };
    if let Transport::Rpc(tls, principal) = transport {
        drop(pending);
        let info = crate::cluster::rpc::PeerInfo {
            addr: peer,
            principal: Some(principal),
        };
        shared
            .cluster
            .serve_rpc(crate::cluster::rpc::RpcStream::new(*tls, info))
            .await;
        return;
    }
    let Ok(_session) = shared.sessions.clone().try_acquire_owned() else {
        metrics::counter!("sql.connections.refused", "reason" => "max_connections").increment(1);
        tracing::warn!(%peer, "connection refused: {} SQL connections already open", shared.max_connections);
        match transport {
            Transport::Tls(tls, _) => refuse_too_many(tls, shared.max_connections).await,
            Transport::Plain(tcp) => refuse_too_many(tcp, shared.max_connections).await,
            Transport::Rpc(..) => {}
        }
        return;
    };
    let (io, server_cert, secure) = match transport {
        Transport::Tls(tls, snap) => {
            let cert = snap.material.node().ok().map(|k| k.cert[0].clone());
            (MaybeTls::Tls(tls), cert, true)
        }
        Transport::Plain(tcp) => (MaybeTls::Plain(tcp), None, false),
        Transport::Rpc(..) => return,
    };
    let handlers = crate::node::ConnHandlers::new(&shared, server_cert);
    let client = DefaultClient::new(peer, secure);
    let mut socket = Framed::new(io, PgWireMessageServerCodec::new(client));
    socket.set_state(PgWireConnectionState::AwaitingStartup);
    if let Err(e) = message_loop(&mut socket, handlers, shared.startup_timeout, pending).await {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

type Statement = <crate::sql::QueryHandlers as pgwire::api::query::ExtendedQueryHandler>::Statement;

/// pgwire's message loop (as `process_socket` runs it), with our startup
/// deadline instead of its fixed 60 s.
async fn message_loop(
    socket: &mut Framed<MaybeTls, PgWireMessageServerCodec<Statement>>,
    handlers: crate::node::ConnHandlers,
    startup_timeout: Duration,
    pending: tokio::sync::OwnedSemaphorePermit,
) -> std::io::Result<()> {
    let mut pending = Some(pending);
    let startup = handlers.startup;
    let queries = handlers.queries;
    let noop = Arc::new(NoopHandler);
    let deadline = tokio::time::Instant::now() + startup_timeout;
    loop {
        let msg = if matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress
        ) {
            match tokio::time::timeout_at(deadline, socket.next()).await {
                Ok(m) => m,
                Err(_) => {
                    tracing::warn!(peer = %socket.socket_addr(), "connection closed: startup not finished within {startup_timeout:?}");
                    None
                }
            }
        } else {
            // Authenticated: no longer counts as a pending connection.
            pending.take();
            socket.next().await
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            None => break,
            Some(Err(PgWireError::IoError(_))) => break,
            Some(Err(e)) => {
                // A message pgwire cannot decode (bad length, unknown protocol
                // version, oversized startup packet ...): say so, then close.
                tracing::warn!(peer = %socket.socket_addr(), "closing connection: invalid message: {e}");
                metrics::counter!("sql.connections.refused", "reason" => "protocol").increment(1);
                let info = ErrorInfo::new("FATAL".into(), "08P01".into(), format!("invalid message: {e}"));
                let _ = process_error(socket, PgWireError::UserError(Box::new(info)), false).await;
                break;
            }
        };
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let is_extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(e) => e,
            _ => msg.is_extended_query(),
        };
        let is_cancel = matches!(msg, PgWireFrontendMessage::CancelRequest(_));
        if let Err(e) = process_message(
            msg,
            socket,
            startup.clone(),
            queries.clone(),
            queries.clone(),
            noop.clone(),
            noop.clone(),
        )
        .await
        {
            let fatal = e.is_fatal();
            process_error(socket, e, is_extended).await?;
            if fatal {
                break;
            }
        }
        if is_cancel {
            break;
        }
    }
    Ok(())
}
