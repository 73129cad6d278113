//! The validated TLS material of a certs directory: trust stores, certified
//! keys and CRLs, ready for rustls. Building it is all-or-nothing: any file a
//! role would use that is present but broken (unparsable, half-written, key
//! not matching, wrong usage) makes the whole load fail, so a reload never
//! swaps in something that cannot serve.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use moat_pki::certsdir::{CertEntry, CertsDir, EXPIRY_WARNING_DAYS};
use moat_pki::layout::{self, CertUsage};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::CertificateRevocationListDer;
use time::OffsetDateTime;

use crate::provider::provider;
use crate::TlsError;

/// Certificate kinds a reload may never lose once they were valid.
pub const PROTECTED: [(&str, &str); 6] = [
    ("ca", "CA cert"),
    ("client-ca", "CA certificate for client verification"),
    ("ui-ca", "CA certificate for UI"),
    ("node", "node cert"),
    ("node-client", "client cert for 'node'"),
    ("ui", "UI certificate"),
];

/// Validated TLS material from one scan of a certs directory.
pub struct TlsMaterial {
    certs: CertsDir,
    ca_roots: Option<Arc<RootCertStore>>,
    client_roots: Option<Arc<RootCertStore>>,
    ui_roots: Option<Arc<RootCertStore>>,
    node: Option<Arc<CertifiedKey>>,
    node_client: Option<Arc<CertifiedKey>>,
    ui: Option<Arc<CertifiedKey>>,
    clients: HashMap<String, Arc<CertifiedKey>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    loaded_at: OffsetDateTime,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("dir", &self.certs.dir)
            .field("kinds", &self.present_kinds())
            .finish_non_exhaustive()
    }
}

fn broken(e: &CertEntry, problem: impl Into<String>) -> TlsError {
    TlsError::Broken {
        path: e.cert_path.clone(),
        problem: problem.into(),
    }
}

fn roots_of(e: &CertEntry) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for c in &e.chain {
        store
            .add(c.clone())
            .map_err(|err| broken(e, format!("not usable as a trust anchor: {err}")))?;
    }
    Ok(Arc::new(store))
}

fn key_of(e: &CertEntry) -> Result<Arc<CertifiedKey>, TlsError> {
    let key = e.key_der().ok_or_else(|| broken(e, "its key is missing"))?;
    CertifiedKey::from_der(e.chain.clone(), key, &provider())
        .map(Arc::new)
        .map_err(|err| broken(e, format!("cannot be used with its key: {err}")))
}

fn require_eku(e: &CertEntry, eku: &str, why: &str) -> Result<(), TlsError> {
    match e.leaf() {
        Some(leaf) if leaf.allows_eku(eku) => Ok(()),
        _ => Err(broken(
            e,
            format!("lacks the {eku} extended key usage, which it needs {why}"),
        )),
    }
}

impl TlsMaterial {
    /// Scans and validates a certs directory.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        Self::from_certs_dir(CertsDir::load(dir)?)
    }

    /// Validates a scanned certs directory.
    pub fn from_certs_dir(certs: CertsDir) -> Result<Self, TlsError> {
        // Files a role uses must be sound; ordinary client certificates may be
        // broken or missing without stopping anything (they are skipped).
        for e in &certs.entries {
            let singleton = !matches!(&e.usage, CertUsage::Client(u) if u != layout::NODE_USER);
            match (&e.error, singleton) {
                (Some(err), true) => return Err(broken(e, err.clone())),
                (Some(err), false) => {
                    tracing::warn!(file = %e.cert_path.display(), "skipping client certificate: {err}")
                }
                _ => {}
            }
        }
        // An unreadable CRL (e.g. half-written) stops a load: serving without
        // revocation data the operator put there would let revoked peers in.
        // A readable CRL from a CA that is not ours is skipped with a warning.
        for crl in &certs.crls {
            match &crl.error {
                Some(err) if crl.crls.is_empty() => {
                    return Err(TlsError::Broken {
                        path: crl.path.clone(),
                        problem: err.clone(),
                    })
                }
                Some(err) => tracing::warn!(file = %crl.path.display(), "ignoring CRL: {err}"),
                None => {}
            }
        }
        let roots = |u: &CertUsage| certs.get(u).map(roots_of).transpose();
        let ca_roots = roots(&CertUsage::Ca)?;
        let client_ca = roots(&CertUsage::ClientCa)?;
        let ui_ca = roots(&CertUsage::UiCa)?;
        let node_entry = certs.node();
        let node_client_entry = certs.client(layout::NODE_USER);
        if let Some(n) = node_entry {
            require_eku(n, "serverAuth", "to serve RPC and SQL")?;
            if node_client_entry.is_none() {
                require_eku(n, "clientAuth", "to dial other nodes (or add client.node.crt)")?;
            }
        }
        if let Some(nc) = node_client_entry {
            require_eku(nc, "clientAuth", "to dial other nodes")?;
        }
        let ui_entry = certs.get(&CertUsage::Ui);
        if let Some(u) = ui_entry {
            require_eku(u, "serverAuth", "to serve the console")?;
        }
        let node = node_entry.map(key_of).transpose()?;
        let node_client = node_client_entry.map(key_of).transpose()?;
        let ui = ui_entry.map(key_of).transpose()?;
        let mut clients = HashMap::new();
        for e in &certs.entries {
            if let CertUsage::Client(user) = &e.usage {
                if e.error.is_none() {
                    if let Ok(k) = key_of(e) {
                        clients.insert(user.clone(), k);
                    }
                }
            }
        }
        let now = OffsetDateTime::now_utc();
        for e in &certs.entries {
            if let Some(leaf) = e.leaf() {
                let days = leaf.days_left(now);
                if leaf.not_after <= now {
                    tracing::warn!(file = %e.cert_path.display(), "certificate EXPIRED on {}", leaf.not_after.date());
                } else if days < EXPIRY_WARNING_DAYS {
                    tracing::warn!(file = %e.cert_path.display(), "certificate expires in {days} days ({})", leaf.not_after.date());
                }
            }
        }
        let crls = certs.valid_crls();
        Ok(TlsMaterial {
            client_roots: client_ca.or_else(|| ca_roots.clone()),
            ui_roots: ui_ca.or_else(|| ca_roots.clone()),
            ca_roots,
            node_client: node_client.or_else(|| node.clone()),
            ui: ui.or_else(|| node.clone()),
            node,
            clients,
            crls,
            certs,
            loaded_at: now,
        })
    }

    fn missing(&self, file: &str, what: &str) -> TlsError {
        TlsError::Missing {
            path: self.certs.dir.join(file),
            what: what.to_string(),
        }
    }

    /// The scanned directory (every entry with its details and errors).
    pub fn certs(&self) -> &CertsDir {
        &self.certs
    }

    /// The certs directory.
    pub fn dir(&self) -> &PathBuf {
        &self.certs.dir
    }

    /// When this material was loaded.
    pub fn loaded_at(&self) -> OffsetDateTime {
        self.loaded_at
    }

    /// Trust anchors for verifying servers (`ca.crt`).
    pub fn ca_roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        self.ca_roots
            .clone()
            .ok_or_else(|| self.missing(layout::CA_CERT, "the CA certificate"))
    }

    /// Trust anchors for verifying client certificates (`ca-client.crt`, else `ca.crt`).
    pub fn client_roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        self.client_roots
            .clone()
            .ok_or_else(|| self.missing(layout::CA_CERT, "the CA certificate"))
    }

    /// Trust anchors for verifying the console (`ca-ui.crt`, else `ca.crt`).
    pub fn ui_roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        self.ui_roots
            .clone()
            .ok_or_else(|| self.missing(layout::CA_CERT, "the CA certificate"))
    }

    /// The node's server certificate (`node.crt`).
    pub fn node(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        self.node
            .clone()
            .ok_or_else(|| self.missing(layout::NODE_CERT, "the node certificate"))
    }

    /// The node's outgoing client certificate (`client.node.crt`, else `node.crt`).
    pub fn node_client(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        self.node_client
            .clone()
            .ok_or_else(|| self.missing(layout::NODE_CERT, "the node certificate"))
    }

    /// The console certificate (`ui.crt`, else `node.crt`).
    pub fn ui(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        self.ui
            .clone()
            .ok_or_else(|| self.missing(layout::NODE_CERT, "the node or UI certificate"))
    }

    /// A SQL user's client certificate (`client.<user>.crt`).
    pub fn client(&self, user: &str) -> Result<Arc<CertifiedKey>, TlsError> {
        self.clients.get(user).cloned().ok_or_else(|| {
            self.missing(
                &layout::client_cert(user),
                &format!("a client certificate for user {user:?}"),
            )
        })
    }

    /// The certificates of `ca-client.crt` (else `ca.crt`): the anchors of
    /// client chains, for OCSP issuer lookup.
    pub fn client_anchor_certs(&self) -> Vec<rustls_pki_types::CertificateDer<'static>> {
        self.certs
            .client_verification_ca()
            .map(|e| e.chain.clone())
            .unwrap_or_default()
    }

    /// The certificates of `ca.crt`: the anchors of server chains.
    pub fn ca_anchor_certs(&self) -> Vec<rustls_pki_types::CertificateDer<'static>> {
        self.certs.ca().map(|e| e.chain.clone()).unwrap_or_default()
    }

    /// Every valid CRL of the directory.
    pub fn crls(&self) -> &[CertificateRevocationListDer<'static>] {
        &self.crls
    }

    /// The kinds present and valid, by their metric names (see [`PROTECTED`]),
    /// with the SHA-256 of their first certificate.
    pub fn present_kinds(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for e in &self.certs.entries {
            if let (Some(kind), Some(leaf), None) = (e.usage.metric_kind(), e.leaf(), &e.error) {
                out.push((kind, leaf.sha256.clone()));
            }
        }
        out
    }

    /// Refuses a new scan that would lose a protected kind this one has.
    pub fn check_keeps(&self, next: &TlsMaterial) -> Result<(), TlsError> {
        let now: Vec<&str> = next.present_kinds().into_iter().map(|(k, _)| k).collect();
        for (kind, _) in self.present_kinds() {
            if !now.contains(&kind) {
                let what = PROTECTED
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map(|(_, w)| *w)
                    .unwrap_or(kind);
                return Err(TlsError::ReloadRefused {
                    reason: format!("reload would lose valid {what}"),
                });
            }
        }
        Ok(())
    }
}
