//! rustls configurations for each role a node plays (CockroachDB's model).
//!
//! | role | presents | verifies the peer with | versions |
//! |---|---|---|---|
//! | SQL server (and the shared SQL+RPC port) | `node.crt` | client cert optional, verified when given: `ca-client.crt` or `ca.crt`, CRLs | 1.2, 1.3 |
//! | RPC server (dedicated port) | `node.crt` | client cert required + principal `node`/`root` | 1.3 |
//! | HTTP server | `ui.crt` or `node.crt` | no client cert | 1.2, 1.3 |
//! | RPC client | `client.node.crt` or `node.crt` | `ca.crt` + host name, CRLs | 1.3 |
//! | SQL client as user U | `client.U.crt` | `ca.crt` + host name | 1.2, 1.3 |
//! | console client | none | `ca-ui.crt` or `ca.crt` + host name | 1.2, 1.3 |
//!
//! Every config is new per certificate generation, with its own session
//! cache and its own cache of verified client chains
//! ([`crate::verify_cache`]): a session from before a reload (e.g. before a CRL revoked its
//! client certificate) can never be resumed after it. The SQL listener
//! resumes no sessions at all (its clients never try).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::CertificateRevocationListDer;

use crate::material::TlsMaterial;
use crate::principal::IdentityPolicy;
use crate::provider::{provider, TLS12_AND_13, TLS13_ONLY};
use crate::verify_cache::{CachingClientVerifier, LeafCheck};
use crate::TlsError;

/// ALPN protocol id of node-to-node RPC (gRPC over HTTP/2).
pub const ALPN_RPC: &[u8] = b"h2";
/// ALPN protocol id of PostgreSQL direct TLS (PostgreSQL 17+).
pub const ALPN_POSTGRES: &[u8] = b"postgresql";

#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn client_verifier(
    roots: Arc<RootCertStore>,
    crls: &[CertificateRevocationListDer<'static>],
    optional: bool,
    check: Option<LeafCheck>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut b = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .with_crls(crls.iter().cloned())
        .allow_unknown_revocation_status();
    if optional {
        b = b.allow_unauthenticated();
    }
    let inner = b.build().map_err(|e| TlsError::Config {
        role: "client verification",
        source: rustls::Error::General(e.to_string()),
    })?;
    // Remembers accepted chains for this generation's roots and CRLs only:
    // the next reload builds a new verifier with an empty cache.
    Ok(Arc::new(match check {
        Some(check) => CachingClientVerifier::with_leaf_check(inner, check),
        None => CachingClientVerifier::new(inner),
    }))
}

fn server_verifier(
    roots: Arc<RootCertStore>,
    crls: &[CertificateRevocationListDer<'static>],
) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    WebPkiServerVerifier::builder_with_provider(roots, provider())
        .with_crls(crls.iter().cloned())
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| TlsError::Config {
            role: "server verification",
            source: rustls::Error::General(e.to_string()),
        })
}

fn server(
    role: &'static str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    verifier: Arc<dyn ClientCertVerifier>,
    cert: Arc<CertifiedKey>,
    alpn: &[&[u8]],
) -> Result<ServerConfig, TlsError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|source| TlsError::Config { role, source })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(FixedCert(cert)));
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg.ignore_client_order = true;
    Ok(cfg)
}

/// The SQL listener (also the shared SQL+RPC port when `alpn` includes
/// [`ALPN_RPC`]): presents `node.crt`; a client certificate is optional but
/// verified when given.
///
/// Resumes no sessions (no TLS 1.3 tickets, no TLS 1.2 session cache):
/// libpq (psql, pgbench, psycopg) never resumes one, so each ticket would
/// be CPU (a session encoded and cached) and a record for nothing. A client
/// that offers ALPN `h2` on the shared port gets the [`rpc_server`]
/// configuration, which resumes.
pub fn sql_server(m: &TlsMaterial, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
    let verifier = client_verifier(m.client_roots()?, m.crls(), true, None)?;
    let mut cfg = server("SQL", TLS12_AND_13, verifier, m.node()?, alpn)?;
    cfg.send_tls13_tickets = 0;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(cfg)
}

/// A dedicated RPC listener: TLS 1.3, a client certificate is required and
/// must name the principal `node` or `root` (see [`IdentityPolicy::authorize_rpc`]).
pub fn rpc_server(m: &TlsMaterial, policy: &IdentityPolicy) -> Result<ServerConfig, TlsError> {
    // The principal rule runs in the handshake, so that a certificate from
    // the right CA that names neither `node` nor `root` fails it.
    let policy = policy.clone();
    let principal: LeafCheck = Arc::new(move |leaf| {
        policy.authorize_rpc(leaf).map(|_| ()).map_err(|reason| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                PrincipalRefused(reason),
            ))))
        })
    });
    let verifier = client_verifier(m.client_roots()?, m.crls(), false, Some(principal))?;
    server("RPC", TLS13_ONLY, verifier, m.node()?, &[ALPN_RPC])
}

/// The HTTPS console: `ui.crt` (else `node.crt`), no client certificate.
pub fn http_server(m: &TlsMaterial) -> Result<ServerConfig, TlsError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS12_AND_13)
        .map_err(|source| TlsError::Config { role: "HTTP", source })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedCert(m.ui()?)));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The server picks the suite, as on the other listeners.
    cfg.ignore_client_order = true;
    Ok(cfg)
}

fn client(
    role: &'static str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    verifier: Arc<WebPkiServerVerifier>,
    cert: Option<Arc<CertifiedKey>>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, TlsError> {
    let b = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|source| TlsError::Config { role, source })?
        .with_webpki_verifier(verifier);
    let mut cfg = match cert {
        Some(c) => b.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(c))),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// A node dialling another node: presents `client.node.crt` (else
/// `node.crt`), verifies the peer against `ca.crt` and the dialled name.
pub fn rpc_client(m: &TlsMaterial) -> Result<ClientConfig, TlsError> {
    client(
        "RPC client",
        TLS13_ONLY,
        server_verifier(m.ca_roots()?, m.crls())?,
        Some(m.node_client()?),
        &[ALPN_RPC],
    )
}

/// A SQL client logging in as `user` with `client.<user>.crt`; `user = None`
/// for a password login (no client certificate).
pub fn sql_client(m: &TlsMaterial, user: Option<&str>) -> Result<ClientConfig, TlsError> {
    let cert = user.map(|u| m.client(u)).transpose()?;
    client(
        "SQL client",
        TLS12_AND_13,
        server_verifier(m.ca_roots()?, m.crls())?,
        cert,
        &[],
    )
}

/// A client of the console: verifies `ui.crt` against `ca-ui.crt` (else `ca.crt`).
pub fn ui_client(m: &TlsMaterial) -> Result<ClientConfig, TlsError> {
    client(
        "console client",
        TLS12_AND_13,
        server_verifier(m.ui_roots()?, m.crls())?,
        None,
        &[b"http/1.1"],
    )
}

/// The refusal of a peer whose certificate names no allowed principal.
#[derive(Debug)]
pub struct PrincipalRefused(pub String);

impl std::fmt::Display for PrincipalRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PrincipalRefused {}
