//! Accepting console connections: peek at the first byte (0x16 opens a TLS
//! ClientHello), then either the TLS handshake with the store's current HTTP
//! config (a new acceptor per connection: a reload applies to the next
//! handshake) or plain HTTP, which is only ever redirected. Failures are
//! counted by `moat_tls::accept::handshake` (`listener="http"`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::Request;
use axum_server::accept::Accept;
use moat_tls::store::CertStore;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tower_service::Service;

use super::ConnMeta;

/// First byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE: u8 = 0x16;

/// The console's acceptor.
#[derive(Clone)]
pub(crate) struct ConsoleAcceptor {
    store: Arc<CertStore>,
    timeout: Duration,
}

impl ConsoleAcceptor {
    pub fn new(store: Arc<CertStore>, timeout: Duration) -> Self {
        ConsoleAcceptor { store, timeout }
    }
}

/// Counts open console connections (`http.connections.open`, label `kind`:
/// `https` or `http`).
struct OpenGuard(&'static str);

impl OpenGuard {
    fn new(kind: &'static str) -> Self {
        ::metrics::gauge!("http.connections.open", "kind" => kind).increment(1.0);
        OpenGuard(kind)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        ::metrics::gauge!("http.connections.open", "kind" => self.0).decrement(1.0);
    }
}

enum Inner {
    Tls(Box<TlsStream<TcpStream>>),
    Plain(TcpStream),
}

/// An accepted connection, TLS or not.
pub(crate) struct Conn {
    inner: Inner,
    _open: OpenGuard,
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Inner::Plain(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Inner::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Tls(s) => s.is_write_vectored(),
            Inner::Plain(s) => s.is_write_vectored(),
        }
    }
}

/// The router, with the connection's [`ConnMeta`] added to each request.
#[derive(Clone)]
pub(crate) struct MetaService<S> {
    inner: S,
    meta: ConnMeta,
}

impl<S, B> Service<Request<B>> for MetaService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.meta);
        self.inner.call(req)
    }
}

impl<S: Send + 'static> Accept<TcpStream, S> for ConsoleAcceptor {
    type Stream = Conn;
    type Service = MetaService<S>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Conn, MetaService<S>)>> + Send>>;

    fn accept(&self, tcp: TcpStream, service: S) -> Self::Future {
        let store = self.store.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let peer = tcp.peer_addr()?;
            let local = tcp.local_addr()?;
            let _ = tcp.set_nodelay(true);
            let mut first = [0u8; 1];
            let n = tokio::time::timeout(timeout, tcp.peek(&mut first))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request within the deadline"))??;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a request"));
            }
            let tls = first[0] == TLS_HANDSHAKE;
            let conn = if tls {
                let config = store.snapshot().http_server();
                let s = moat_tls::accept::handshake(config, tcp, peer, "http", timeout)
                    .await
                    .map_err(|f| io::Error::other(f.to_string()))?;
                Conn {
                    inner: Inner::Tls(Box::new(s)),
                    _open: OpenGuard::new("https"),
                }
            } else {
                Conn {
                    inner: Inner::Plain(tcp),
                    _open: OpenGuard::new("http"),
                }
            };
            let meta = ConnMeta { peer, local, tls };
            Ok((conn, MetaService { inner: service, meta }))
        })
    }
}
