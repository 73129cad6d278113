//! One client connection on the SQL port, from the first byte to the end:
//! the PostgreSQL SSLRequest or a direct TLS ClientHello (PostgreSQL 17,
//! ALPN `postgresql`), our own TLS handshake through moat-tls (deadline,
//! failure reasons in the log, OCSP), then pgwire's message loop with this
//! connection's handlers. Plaintext reaches the startup handler, which
//! refuses it unless `--accept-sql-without-tls`.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use pgwire::api::{ClientInfo, DefaultClient, NoopHandler, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::{process_error, process_message, MaybeTls, PgWireMessageServerCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::frame_guard::next_message;
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
    /// Node-to-node RPC: the TLS stream, the peer's principal, and the
    /// certificate generation of the handshake.
    Rpc(Box<tokio_rustls::server::TlsStream<TcpStream>>, &'static str, u64),
}

/// Waits until the first 8 bytes have arrived (or the first byte is a TLS
/// record) and returns them without consuming them, so that the TLS
/// acceptors still get the whole `TcpStream`; `None` at end of stream, or
/// when the client half-closed before 8 bytes. Event-driven: while a client
/// has sent 1 to 7 bytes, the task sleeps until more bytes, the end of
/// stream or an error arrive (the caller's deadline ends the wait).
async fn peek_head(tcp: &TcpStream) -> std::io::Result<Option<[u8; 8]>> {
    let mut head = [0u8; 8];
    loop {
        let ready = tcp.ready(Interest::READABLE).await?;
        // An incomplete head answers WouldBlock, which clears the readiness
        // observed before the peek: any later event wakes us again.
        let peeked = tcp.try_io(Interest::READABLE, || {
            let n = peek_now(tcp, &mut head)?;
            if (1..8).contains(&n) && head[0] != TLS_HANDSHAKE_RECORD {
                Err(std::io::ErrorKind::WouldBlock.into())
            } else {
                Ok(n)
            }
        });
        match peeked {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(head)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if ready.is_read_closed() {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// One non-blocking `recv(MSG_PEEK)`: the bytes waiting, not consumed
/// (`WouldBlock` when there are none).
fn peek_now(tcp: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the
        // whole call, and the descriptor belongs to `tcp`, which outlives it.
        let n = unsafe {
            libc::recv(
                tcp.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match usize::try_from(n) {
            Ok(n) => return Ok(n),
            Err(_) => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serves {
    /// SQL and RPC (the default: one port, as in CockroachDB).
    Both,
    /// RPC only (`--listen-addr` when `--sql-addr` is set).
    RpcOnly,
    /// SQL only (`--sql-addr`).
    SqlOnly,
}

async fn negotiate(shared: &Shared, mut tcp: TcpStream, peer: SocketAddr, serves: Serves) -> Option<Transport> {
    loop {
        let head = peek_head(&tcp).await.ok()??;
        let direct = head[0] == TLS_HANDSHAKE_RECORD;
        if serves == Serves::RpcOnly && !direct && head != GSSENC_REQUEST {
            tracing::warn!(%peer, "SQL connection closed: this port serves node-to-node RPC only (SQL is on --sql-addr)");
            return None;
        }
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
            if (route == moat_tls::accept::Route::Rpc && serves == Serves::SqlOnly)
                || (route == moat_tls::accept::Route::Sql && serves == Serves::RpcOnly)
            {
                tracing::warn!(%peer, ?route, ?serves, "connection closed: this port does not serve that protocol");
                return None;
            }
            if route == moat_tls::accept::Route::Rpc {
                let conn = tls.get_ref().1;
                let chain = conn.peer_certificates().map(|c| c.to_vec());
                // The handshake already refused any other principal.
                let principal = shared.store.policy().authorize_rpc(chain.as_ref()?.first()?).ok()?;
                let anchors = snap.material.client_anchor_certs();
                moat_tls::accept::check_ocsp(&shared.ocsp, chain.as_deref(), &anchors, peer, "rpc")
                    .await
                    .ok()?;
                return Some(Transport::Rpc(Box::new(tls), principal, snap.generation));
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
    serves: Serves,
) {
    let _ = tcp.set_nodelay(true);
    let _open = crate::node::OpenGuard::new("sql");
    let transport = match tokio::time::timeout(shared.handshake_timeout, negotiate(&shared, tcp, peer, serves)).await {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(_) => {
            metrics::counter!("security.tls.handshake_failures", "listener" => "sql", "reason" => "timeout")
                .increment(1);
            tracing::warn!(%peer, "connection closed: no TLS negotiation within {:?}", shared.handshake_timeout);
            return;
        }
    };
    if let Transport::Rpc(tls, principal, generation) = transport {
        drop(pending);
        let info = crate::cluster::rpc::PeerInfo {
            addr: peer,
            principal: Some(principal),
        };
        shared
            .cluster
            .serve_rpc(crate::cluster::rpc::RpcStream::new(*tls, info).until_reload(shared.store.clone(), generation))
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
    let max_message_bytes = shared.max_message_bytes;
    if let Err(e) = message_loop(
        &mut socket,
        handlers,
        shared.startup_timeout,
        max_message_bytes,
        pending,
    )
    .await
    {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

type Statement = <crate::sql::QueryHandlers as pgwire::api::query::ExtendedQueryHandler>::Statement;

/// pgwire's message loop (as `process_socket` runs it), with our startup
/// deadline instead of its fixed 60 s, and every frame's length checked
/// before pgwire decodes it ([`crate::frame_guard`]).
async fn message_loop(
    socket: &mut Framed<MaybeTls, PgWireMessageServerCodec<Statement>>,
    handlers: crate::node::ConnHandlers,
    startup_timeout: Duration,
    max_message_bytes: usize,
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
            match tokio::time::timeout_at(deadline, next_message(socket, max_message_bytes)).await {
                Ok(m) => m,
                Err(_) => {
                    tracing::warn!(peer = %socket.socket_addr(), "connection closed: startup not finished within {startup_timeout:?}");
                    None
                }
            }
        } else {
            // Authenticated: no longer counts as a pending connection.
            pending.take();
            next_message(socket, max_message_bytes).await
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            None => break,
            Some(Err(PgWireError::IoError(_))) => break,
            Some(Err(e)) => {
                // A frame refused from its header (length below 4, over the
                // bound), or a message pgwire cannot decode (unknown protocol
                // version ...): say so, then close.
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
