//! Server-side handshakes with a deadline, a named reason for every failure
//! (logged with the peer's address and counted by reason), and the checks
//! that run right after the handshake, before a byte is served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::ocsp::{self, OcspConfig, OcspError, OcspOutcome};

/// Why a handshake failed, as a metric label and a readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeFailure {
    /// Short label: `timeout`, `no_certificate`, `unknown_ca`, `expired`,
    /// `not_yet_valid`, `bad_usage`, `revoked`, `principal`, `bad_certificate`,
    /// `protocol`, `io`.
    pub reason: &'static str,
    /// The detail (rustls' error text).
    pub detail: String,
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.reason)
    }
}

/// Classifies a rustls error.
pub fn classify(err: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match err {
        rustls::Error::NoCertificatesPresented => "no_certificate",
        rustls::Error::InvalidCertificate(c) => match c {
            // A chain that does not end at a trusted CA; a bad signature means
            // a CA of the same name, not ours, issued it.
            C::UnknownIssuer | C::BadSignature => "unknown_ca",
            C::Expired | C::ExpiredContext { .. } => "expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "not_yet_valid",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "bad_usage",
            C::Revoked => "revoked",
            C::Other(o) if o.0.is::<crate::roles::PrincipalRefused>() => "principal",
            _ => "bad_certificate",
        },
        rustls::Error::AlertReceived(_) => "alert_received",
        _ => "protocol",
    }
}

fn failure_from_io(e: &std::io::Error) -> HandshakeFailure {
    if let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return HandshakeFailure {
            reason: classify(r),
            detail: r.to_string(),
        };
    }
    HandshakeFailure {
        reason: "io",
        detail: e.to_string(),
    }
}

/// Runs a server handshake on `tcp` with `config`, bounded by `deadline`.
/// Failures are logged with the peer address and counted
/// (`security.tls.handshake_failures`, label `reason`).
pub async fn handshake(
    config: Arc<ServerConfig>,
    tcp: TcpStream,
    peer: SocketAddr,
    listener: &'static str,
    deadline: Duration,
) -> Result<TlsStream<TcpStream>, HandshakeFailure> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let result = match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
        Err(_) => Err(HandshakeFailure {
            reason: "timeout",
            detail: format!("no complete handshake within {deadline:?}"),
        }),
        Ok(Err(e)) => Err(failure_from_io(&e)),
        Ok(Ok(s)) => Ok(s),
    };
    if let Err(f) = &result {
        metrics::counter!("security.tls.handshake_failures", "listener" => listener, "reason" => f.reason).increment(1);
        tracing::warn!(%peer, listener, reason = f.reason, "TLS handshake failed: {}", f.detail);
    }
    result
}

/// What a direct TLS connection on the shared SQL/RPC port asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// SQL (ALPN `postgresql`, or none).
    Sql,
    /// Node-to-node RPC (ALPN `h2`).
    Rpc,
}

/// The handshake of the shared port: reads the ClientHello first, then
/// completes the handshake with the RPC configuration when the client
/// offers ALPN `h2` (client certificate required, principal checked in the
/// handshake) and with the SQL configuration otherwise. Bounded by
/// `deadline`; failures are logged and counted with the listener `rpc` or
/// `sql`.
pub async fn handshake_shared(
    sql: Arc<ServerConfig>,
    rpc: Arc<ServerConfig>,
    tcp: TcpStream,
    peer: SocketAddr,
    deadline: Duration,
) -> Result<(TlsStream<TcpStream>, Route), HandshakeFailure> {
    let mut route = Route::Sql;
    let fut = async {
        let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
            .await
            .map_err(|e| failure_from_io(&e))?;
        let wants_rpc = start
            .client_hello()
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == crate::roles::ALPN_RPC));
        let config = if wants_rpc {
            route = Route::Rpc;
            rpc
        } else {
            sql
        };
        start.into_stream(config).await.map_err(|e| failure_from_io(&e))
    };
    let result = match tokio::time::timeout(deadline, fut).await {
        Err(_) => Err(HandshakeFailure {
            reason: "timeout",
            detail: format!("no complete handshake within {deadline:?}"),
        }),
        Ok(r) => r,
    };
    let listener = match route {
        Route::Sql => "sql",
        Route::Rpc => "rpc",
    };
    match result {
        Ok(s) => Ok((s, route)),
        Err(f) => {
            metrics::counter!("security.tls.handshake_failures", "listener" => listener, "reason" => f.reason)
                .increment(1);
            tracing::warn!(%peer, listener, reason = f.reason, "TLS handshake failed: {}", f.detail);
            Err(f)
        }
    }
}

/// Checks a peer's verified chain with OCSP, right after the handshake and
/// before any byte is served (never inside the handshake). Runs after every
/// handshake, resumed ones included, so a certificate revoked at the
/// responder cannot come back through session resumption. Refusals are
/// logged and counted like handshake failures (`revoked`, `ocsp_failed`).
pub async fn check_ocsp(
    cfg: &OcspConfig,
    peer_chain: Option<&[CertificateDer<'static>]>,
    anchors: &[CertificateDer<'static>],
    peer: SocketAddr,
    listener: &'static str,
) -> Result<(), HandshakeFailure> {
    let Some(chain) = peer_chain.filter(|c| !c.is_empty()) else {
        return Ok(());
    };
    let failure = match ocsp::check_peer_chain(cfg, chain, anchors).await {
        Ok(OcspOutcome::LaxAccepted { reason }) => {
            tracing::warn!(%peer, listener, "OCSP check failed, accepted in lax mode: {reason}");
            return Ok(());
        }
        Ok(_) => return Ok(()),
        Err(e @ OcspError::Revoked { .. }) => HandshakeFailure {
            reason: "revoked",
            detail: e.to_string(),
        },
        Err(e) => HandshakeFailure {
            reason: "ocsp_failed",
            detail: format!("{e} (OCSP check failed in strict mode)"),
        },
    };
    metrics::counter!("security.tls.handshake_failures", "listener" => listener, "reason" => failure.reason)
        .increment(1);
    tracing::warn!(%peer, listener, reason = failure.reason, "peer refused after the handshake: {}", failure.detail);
    Err(failure)
}
