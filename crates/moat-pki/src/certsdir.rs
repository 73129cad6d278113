//! Loading a certs directory with CockroachDB's rules, plus checks CockroachDB
//! does not make: every key is parsed and must match its certificate.
//!
//! The loader never fails because of one bad file: the problem is stored in
//! that file's [`CertEntry::error`] so that `moat cert list` can show it, and
//! servers decide what they cannot do without (see [`CertsDir::require`]).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use serde::Serialize;
use time::OffsetDateTime;

use crate::crl;
use crate::inspect::{parse_cert_pem, CertInfo};
use crate::keys::PrivateKey;
use crate::layout::{self, CertUsage, Classified};
use crate::perms;
use crate::{PkiError, Result};

/// Days before expiry from which a certificate is flagged.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// One certificate file of the directory, with its key when it has one.
#[derive(Serialize)]
pub struct CertEntry {
    /// What the file is for.
    pub usage: CertUsage,
    /// The certificate file.
    pub cert_path: PathBuf,
    /// The key file, when found (never for CAs).
    pub key_path: Option<PathBuf>,
    /// Every certificate in the file (leaf or signer first).
    #[serde(skip)]
    pub chain: Vec<CertificateDer<'static>>,
    /// Summary of every certificate in the file.
    pub certs: Vec<CertInfo>,
    /// The private key, when loaded and matching.
    #[serde(skip)]
    pub key: Option<PrivateKeyDer<'static>>,
    /// Why this entry is unusable, if it is.
    pub error: Option<String>,
}

impl std::fmt::Debug for CertEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertEntry")
            .field("usage", &self.usage)
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl CertEntry {
    /// The first certificate's summary, if the file parsed.
    pub fn leaf(&self) -> Option<&CertInfo> {
        self.certs.first()
    }

    /// Whether the entry can be used (parsed, key present and matching).
    pub fn is_valid(&self) -> bool {
        self.error.is_none() && !self.chain.is_empty()
    }

    /// Notes about expiry of the first certificate: `expired`, `expires in N days`.
    pub fn expiry_note(&self, now: OffsetDateTime) -> Option<String> {
        let leaf = self.leaf()?;
        let days = leaf.days_left(now);
        if leaf.not_after <= now {
            Some(format!("EXPIRED on {}", leaf.not_after.date()))
        } else if leaf.not_before > now {
            Some(format!("not valid before {}", leaf.not_before.date()))
        } else if days < EXPIRY_WARNING_DAYS {
            Some(format!("expires in {days} days"))
        } else {
            None
        }
    }

    /// A rustls-ready copy of the key, if valid.
    pub fn key_der(&self) -> Option<PrivateKeyDer<'static>> {
        self.key.as_ref().map(|k| k.clone_key())
    }
}

/// A `*.crl` file of the directory: one or more certificate revocation lists.
#[derive(Clone, Serialize)]
pub struct CrlEntry {
    /// The CRL file.
    pub path: PathBuf,
    /// Every CRL in the file (DER), in file order.
    #[serde(skip)]
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// Issuer DN of the first CRL (same form as [`CertInfo::issuer`]).
    pub issuer: Option<String>,
    /// thisUpdate of the first CRL.
    #[serde(with = "time::serde::rfc3339::option")]
    pub this_update: Option<OffsetDateTime>,
    /// nextUpdate of the first CRL.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_update: Option<OffsetDateTime>,
    /// Number of revoked entries over all CRLs of the file.
    pub revoked: usize,
    /// Why the file is unusable: unparsable, or a CRL not issued by any CA
    /// of the directory (`ca.crt`, `ca-client.crt`, `ca-ui.crt`, or an
    /// intermediate CA carried in a leaf file and issued by one of those).
    pub error: Option<String>,
}

impl std::fmt::Debug for CrlEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrlEntry")
            .field("path", &self.path)
            .field("crls", &self.crls.len())
            .field("issuer", &self.issuer)
            .field("next_update", &self.next_update)
            .field("revoked", &self.revoked)
            .field("error", &self.error)
            .finish()
    }
}

impl CrlEntry {
    /// Whether the CRLs of this file can be used.
    pub fn is_valid(&self) -> bool {
        self.error.is_none() && !self.crls.is_empty()
    }

    /// Whether the first CRL's nextUpdate has passed (it should have been
    /// re-issued; relying parties that enforce CRL expiry reject it).
    pub fn is_stale(&self, now: OffsetDateTime) -> bool {
        self.next_update.is_some_and(|n| n <= now)
    }

    /// The first common name of the first CRL's issuer.
    pub fn issuer_common_name(&self) -> Option<String> {
        self.summary().and_then(|s| s.issuer_common_name)
    }

    /// The first CRL's CRL number, in decimal.
    pub fn crl_number(&self) -> Option<String> {
        self.summary().and_then(|s| s.crl_number_text)
    }

    /// Lower-case hex serials revoked by the CRLs of the file.
    pub fn revoked_serials(&self) -> Vec<String> {
        self.crls
            .iter()
            .filter_map(|c| crl::summarize(c).ok())
            .flat_map(|s| s.revoked.into_iter().map(|r| crl::serial_hex(&r.serial)))
            .collect()
    }

    fn summary(&self) -> Option<crl::CrlSummary> {
        self.crls.first().and_then(|c| crl::summarize(c).ok())
    }
}

/// A `.crt` file that was not loaded, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

/// The result of scanning a certs directory.
#[derive(Debug, Default, Serialize)]
pub struct CertsDir {
    /// The directory.
    pub dir: PathBuf,
    /// Recognised certificate files, in a stable order (CA, client CA, UI CA,
    /// node, UI, then clients by name).
    pub entries: Vec<CertEntry>,
    /// `.crt` files that were not recognised.
    pub skipped: Vec<Skipped>,
    /// `*.crl` files, sorted by file name.
    pub crls: Vec<CrlEntry>,
}

impl CertsDir {
    /// Scans `dir`. A missing directory yields an empty result (as
    /// CockroachDB); an unreadable one is an error.
    pub fn load(dir: &Path) -> Result<CertsDir> {
        let mut out = CertsDir {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        // Roll back any commit a crash left half done before reading.
        crate::writer::recover(dir);
        let read = match fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(PkiError::io(dir, e, "check the certs directory's permissions")),
        };
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for entry in read {
            let entry = entry.map_err(|e| PkiError::io(dir, e, "check the certs directory's permissions"))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            names.push((name, entry.path()));
        }
        names.sort();
        let mut found: BTreeMap<CertUsage, CertEntry> = BTreeMap::new();
        let mut crl_paths = Vec::new();
        for (name, path) in names {
            if fs::metadata(&path).map(|m| m.is_dir()).unwrap_or(false) {
                continue;
            }
            // CRLs (not `.crt`, so ignored by CockroachDB's classification);
            // dot files are moat's own temporary and backup files.
            if name.ends_with(".crl") && !name.starts_with('.') {
                crl_paths.push(path);
                continue;
            }
            match layout::classify(&name) {
                Classified::Ignored => {}
                Classified::Skipped(reason) => out.skipped.push(Skipped { path, reason }),
                Classified::Cert(usage) => {
                    let entry = load_entry(usage.clone(), &path);
                    found.insert(usage, entry);
                }
            }
        }
        out.entries = found.into_values().collect();
        let issuers = crl_issuers(&out.entries);
        out.crls = crl_paths.iter().map(|p| load_crl(p, &issuers)).collect();
        Ok(out)
    }

    /// Every CRL of the CRL files that loaded without error.
    pub fn valid_crls(&self) -> Vec<CertificateRevocationListDer<'static>> {
        self.crls
            .iter()
            .filter(|c| c.error.is_none())
            .flat_map(|c| c.crls.iter().cloned())
            .collect()
    }

    /// The entry for a usage.
    pub fn get(&self, usage: &CertUsage) -> Option<&CertEntry> {
        self.entries.iter().find(|e| &e.usage == usage)
    }

    /// `ca.crt`.
    pub fn ca(&self) -> Option<&CertEntry> {
        self.get(&CertUsage::Ca)
    }

    /// The CA that verifies client certificates: `ca-client.crt` if present, else `ca.crt`.
    pub fn client_verification_ca(&self) -> Option<&CertEntry> {
        self.get(&CertUsage::ClientCa).or_else(|| self.ca())
    }

    /// The CA that console clients trust: `ca-ui.crt` if present, else `ca.crt`.
    pub fn ui_verification_ca(&self) -> Option<&CertEntry> {
        self.get(&CertUsage::UiCa).or_else(|| self.ca())
    }

    /// `node.crt`.
    pub fn node(&self) -> Option<&CertEntry> {
        self.get(&CertUsage::Node)
    }

    /// The node's outgoing client certificate: `client.node.crt` if present, else `node.crt`.
    pub fn node_client(&self) -> Option<&CertEntry> {
        self.client(layout::NODE_USER).or_else(|| self.node())
    }

    /// The console's server certificate: `ui.crt` if present, else `node.crt`.
    pub fn ui_server(&self) -> Option<&CertEntry> {
        self.get(&CertUsage::Ui).or_else(|| self.node())
    }

    /// `client.<user>.crt`.
    pub fn client(&self, user: &str) -> Option<&CertEntry> {
        self.get(&CertUsage::Client(user.to_string()))
    }

    /// Returns the entry if present and valid; otherwise an error naming the
    /// file and what to do.
    pub fn require<'a>(&self, entry: Option<&'a CertEntry>, what: &str, file: &str) -> Result<&'a CertEntry> {
        match entry {
            None => Err(PkiError::bad_file(
                self.dir.join(file),
                format!("missing: {what} is required"),
                format!("create it with `moat cert` in {}", self.dir.display()),
            )),
            Some(e) => match &e.error {
                Some(err) => Err(PkiError::bad_file(&e.cert_path, err.clone(), "fix or regenerate it")),
                None => Ok(e),
            },
        }
    }
}

/// Loads one certificate file (and its key, for non-CA usages).
fn load_entry(usage: CertUsage, path: &Path) -> CertEntry {
    let mut entry = CertEntry {
        usage: usage.clone(),
        cert_path: path.to_path_buf(),
        key_path: None,
        chain: vec![],
        certs: vec![],
        key: None,
        error: None,
    };
    let chain = match fs::read(path)
        .map_err(|e| format!("could not read: {e}"))
        .and_then(|bytes| parse_cert_pem(path, &bytes).map_err(|e| strip_path(e, path)))
    {
        Ok(c) => c,
        Err(e) => {
            entry.error = Some(e);
            return entry;
        }
    };
    entry.certs = chain.iter().filter_map(|c| CertInfo::from_der(c).ok()).collect();
    entry.chain = chain;
    if usage.is_ca() {
        if let Some(bad) = entry.certs.iter().find(|c| !c.is_ca) {
            entry.error = Some(format!("certificate {:?} in a CA file is not a CA", bad.subject));
        }
        return entry;
    }
    if entry.certs[0].is_ca {
        entry.error = Some("a CA certificate is used as a leaf certificate".into());
        return entry;
    }
    let key_path = layout::key_for(path);
    let meta = match fs::metadata(&key_path) {
        Ok(m) => m,
        Err(e) => {
            entry.error = Some(format!("could not stat key file {}: {e}", key_path.display()));
            return entry;
        }
    };
    entry.key_path = Some(key_path.clone());
    if !meta.is_file() {
        entry.error = Some(format!("key file {} is not a regular file", key_path.display()));
        return entry;
    }
    if let Err(e) = perms::check_key_permissions(&key_path, &meta) {
        entry.error = Some(e);
        return entry;
    }
    match PrivateKey::read(&key_path) {
        Err(e) => entry.error = Some(e.to_string()),
        Ok(key) => {
            if key.public_key_raw() != entry.certs[0].public_key_raw.as_slice() {
                entry.error = Some(format!(
                    "key file {} does not match the certificate",
                    key_path.display()
                ));
            } else {
                entry.key = Some(key.to_private_key_der());
            }
        }
    }
    entry
}

/// A certificate that may have signed a CRL, and where it was found.
struct CrlIssuer {
    cert: CertificateDer<'static>,
    subject: String,
    file: String,
}

/// The CAs CRLs are checked against: every certificate of the CA files, and
/// the intermediate CAs carried in leaf files that one of those issued.
fn crl_issuers(entries: &[CertEntry]) -> Vec<CrlIssuer> {
    let file = |e: &CertEntry| {
        e.cert_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut out: Vec<CrlIssuer> = Vec::new();
    for e in entries.iter().filter(|e| e.usage.is_ca()) {
        for (der, info) in e.chain.iter().zip(&e.certs) {
            out.push(CrlIssuer {
                cert: der.clone(),
                subject: info.subject.clone(),
                file: file(e),
            });
        }
    }
    let roots = out.len();
    for e in entries.iter().filter(|e| !e.usage.is_ca()) {
        for (der, info) in e.chain.iter().zip(&e.certs).skip(1) {
            let known = out.iter().any(|i| i.cert == *der);
            if info.is_ca && !known && out[..roots].iter().any(|ca| issued_by(der, &ca.cert)) {
                out.push(CrlIssuer {
                    cert: der.clone(),
                    subject: info.subject.clone(),
                    file: format!("{} (intermediate)", file(e)),
                });
            }
        }
    }
    out
}

/// Whether `cert` was signed by `ca`.
fn issued_by(cert: &[u8], ca: &[u8]) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (Ok((_, cert)), Ok((_, ca))) = (X509Certificate::from_der(cert), X509Certificate::from_der(ca)) else {
        return false;
    };
    cert.issuer().as_raw() == ca.subject().as_raw() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// Loads one CRL file and checks each of its CRLs against the directory's CAs.
fn load_crl(path: &Path, issuers: &[CrlIssuer]) -> CrlEntry {
    let mut entry = CrlEntry {
        path: path.to_path_buf(),
        crls: vec![],
        issuer: None,
        this_update: None,
        next_update: None,
        revoked: 0,
        error: None,
    };
    let crls = match fs::read(path)
        .map_err(|e| format!("could not read: {e}"))
        .and_then(|b| crl::parse_crl_file(&b))
    {
        Ok(c) => c,
        Err(e) => {
            entry.error = Some(e);
            return entry;
        }
    };
    let mut errors = Vec::new();
    for (i, der) in crls.iter().enumerate() {
        let label = if crls.len() == 1 {
            "CRL".to_string()
        } else {
            format!("CRL #{}", i + 1)
        };
        let summary = match crl::summarize(der) {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("{label}: {e}"));
                continue;
            }
        };
        if i == 0 {
            entry.issuer = Some(summary.issuer.clone());
            entry.this_update = Some(summary.this_update);
            entry.next_update = summary.next_update;
        }
        entry.revoked += summary.revoked.len();
        let same_name: Vec<&CrlIssuer> = issuers.iter().filter(|c| c.subject == summary.issuer).collect();
        let verdicts: Vec<std::result::Result<(), String>> = same_name
            .iter()
            .map(|ca| crl::verify_issued_by(der, &ca.cert).map_err(|e| format!("{e} in {}", ca.file)))
            .collect();
        if verdicts.iter().any(|v| v.is_ok()) {
            continue;
        }
        match verdicts.into_iter().find_map(|v| v.err()) {
            Some(e) => errors.push(format!("{label}: {e}")),
            None => errors.push(format!(
                "{label}: issuer {:?} is not a CA of this directory (ca.crt, ca-client.crt, ca-ui.crt)",
                summary.issuer
            )),
        }
    }
    entry.crls = crls;
    if !errors.is_empty() {
        entry.error = Some(errors.join("; "));
    }
    entry
}

/// Errors about the entry's own file need not repeat its path.
fn strip_path(e: PkiError, path: &Path) -> String {
    let s = e.to_string();
    let prefix = format!("{}: ", path.display());
    s.strip_prefix(&prefix).map(str::to_owned).unwrap_or(s)
}
