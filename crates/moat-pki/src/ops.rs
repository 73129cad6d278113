//! The `moat cert` operations, as library calls: each checks everything it can
//! before writing, then writes its files all-or-nothing (see [`crate::writer`]).

use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ca::SigningCa;
use crate::crl;
use crate::csr;
use crate::inspect::{certs_to_pem, read_cert_pem, CertInfo};
use crate::keys::{KeyType, PrivateKey};
use crate::layout;
use crate::lifetime::{DEFAULT_CA_LIFETIME, DEFAULT_LEAF_LIFETIME};
use crate::profile::{self, Profile};
use crate::username;
use crate::writer::{ensure_dir, FileSet};
use crate::{PkiError, Result};

/// What an operation wrote.
#[derive(Debug)]
pub struct Outcome {
    /// Files written, in order.
    pub written: Vec<PathBuf>,
    /// The new certificate.
    pub cert: Option<CertInfo>,
    /// Things the user should know (not errors).
    pub warnings: Vec<String>,
}

/// Options shared by the `create-*` operations.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// The certs directory.
    pub certs_dir: PathBuf,
    /// The CA key: created by CA operations, read by the others.
    pub ca_key: PathBuf,
    /// The CA certificate to sign with; `None` picks the profile's default
    /// (`ca.crt`, or `ca-client.crt` / `ca-ui.crt` when present).
    pub ca_cert: Option<PathBuf>,
    /// Lifetime; `None` is CockroachDB's default for the kind.
    pub lifetime: Option<Duration>,
    /// Replace existing files.
    pub overwrite: bool,
    /// Type of the new key.
    pub key_type: KeyType,
    /// OCSP responder URL written into leaf certificates (Authority
    /// Information Access); `None` writes none. Not used for CAs.
    pub ocsp_url: Option<String>,
}

impl CreateOptions {
    /// Options with defaults for a certs directory and CA key.
    pub fn new(certs_dir: impl Into<PathBuf>, ca_key: impl Into<PathBuf>) -> Self {
        CreateOptions {
            certs_dir: certs_dir.into(),
            ca_key: ca_key.into(),
            ca_cert: None,
            lifetime: None,
            overwrite: false,
            key_type: KeyType::default(),
            ocsp_url: None,
        }
    }

    /// Adds the OCSP responder URL, if any, to leaf parameters.
    fn add_ocsp_url(&self, params: &mut rcgen::CertificateParams) -> Result<()> {
        match &self.ocsp_url {
            Some(url) => profile::add_ocsp_url(params, url),
            None => Ok(()),
        }
    }

    fn lifetime_for(&self, profile: Profile) -> Duration {
        self.lifetime.unwrap_or(if profile.is_ca() {
            DEFAULT_CA_LIFETIME
        } else {
            DEFAULT_LEAF_LIFETIME
        })
    }
}

fn cert_file_for_ca(profile: Profile) -> &'static str {
    match profile {
        Profile::ClientCa => layout::CLIENT_CA_CERT,
        Profile::UiCa => layout::UI_CA_CERT,
        _ => layout::CA_CERT,
    }
}

/// `create-ca`, `create-client-ca`, `create-ui-ca`: makes (or, with
/// `allow_key_reuse`, reuses) the CA key at `ca_key` and a self-signed CA
/// certificate; an existing certificate file is kept after the new one in the
/// same file (CockroachDB's rotation bundle), which needs `overwrite`.
pub fn create_ca(opts: &CreateOptions, profile: Profile, allow_key_reuse: bool) -> Result<Outcome> {
    let cn = match profile {
        Profile::Ca => profile::CA_COMMON_NAME,
        Profile::ClientCa => profile::CLIENT_CA_COMMON_NAME,
        Profile::UiCa => profile::UI_CA_COMMON_NAME,
        _ => return Err(PkiError::invalid("not a CA profile", "use ca, client-ca or ui-ca")),
    };
    require_path(&opts.ca_key, "--ca-key")?;
    ensure_dir(&opts.certs_dir)?;
    let cert_path = opts.certs_dir.join(cert_file_for_ca(profile));
    let mut warnings = Vec::new();
    if let (Ok(k), Ok(d)) = (opts.ca_key.canonicalize(), opts.certs_dir.canonicalize()) {
        if k.parent() == Some(d.as_path()) {
            warnings.push(format!(
                "the CA key {} is inside the certs directory; keep it elsewhere so nodes never hold it",
                opts.ca_key.display()
            ));
        }
    } else if opts
        .ca_key
        .parent()
        .map(|p| p.canonicalize().ok() == opts.certs_dir.canonicalize().ok())
        .unwrap_or(false)
    {
        warnings.push(format!(
            "the CA key {} is inside the certs directory; keep it elsewhere so nodes never hold it",
            opts.ca_key.display()
        ));
    }
    let key_exists = std::fs::symlink_metadata(&opts.ca_key).is_ok();
    if key_exists && !allow_key_reuse {
        return Err(PkiError::bad_file(
            &opts.ca_key,
            "CA key exists, but key reuse is disabled",
            "pass --allow-ca-key-reuse to renew the CA with this key, or move the key away to make a new one",
        ));
    }
    let existing = if cert_path.exists() {
        if !opts.overwrite {
            return Err(PkiError::Exists { path: cert_path });
        }
        read_cert_pem(&cert_path).map_err(|e| {
            PkiError::bad_file(
                &cert_path,
                format!("the existing CA file cannot be kept in the new bundle ({e})"),
                "move the broken file away and rerun",
            )
        })?
    } else {
        vec![]
    };
    let key = if key_exists {
        PrivateKey::read(&opts.ca_key)?
    } else {
        PrivateKey::generate(opts.key_type)?
    };
    let now = OffsetDateTime::now_utc();
    let params = profile::params(profile, cn, &[], opts.lifetime_for(profile), now, false)?;
    let cert = params
        .self_signed(key.key_pair())
        .map_err(|e| PkiError::crypto("self-signing the CA", e))?;
    let mut bundle = vec![cert.der().clone()];
    bundle.extend(existing);
    let mut files = FileSet::new(opts.overwrite);
    if !key_exists {
        files.add_key(&opts.ca_key, key.to_pem());
    }
    files.add_cert(&cert_path, certs_to_pem(&bundle));
    let written = files.commit()?;
    if bundle.len() > 1 {
        warnings.push(format!(
            "{} now holds {} certificates: the new CA first, then the previous ones (rotation)",
            cert_path.display(),
            bundle.len()
        ));
    }
    Ok(Outcome {
        written,
        cert: CertInfo::from_der(&bundle[0]).ok(),
        warnings,
    })
}

fn require_path(p: &Path, flag: &str) -> Result<()> {
    if p.as_os_str().is_empty() {
        return Err(PkiError::invalid(
            format!("the path to the CA key is required ({flag})"),
            format!("pass {flag} or set MOAT_CA_KEY"),
        ));
    }
    Ok(())
}

/// Picks the CA that signs a profile: an explicit `ca_cert`, else
/// `ca-client.crt` (clients) or `ca-ui.crt` (UI) when present, else `ca.crt`.
fn signer_for(opts: &CreateOptions, profile: Profile) -> Result<SigningCa> {
    require_path(&opts.ca_key, "--ca-key")?;
    let path = match &opts.ca_cert {
        Some(p) => p.clone(),
        None => {
            let special = match profile {
                Profile::Client => Some(layout::CLIENT_CA_CERT),
                Profile::Ui => Some(layout::UI_CA_CERT),
                _ => None,
            };
            match special.map(|f| opts.certs_dir.join(f)) {
                Some(p) if p.exists() => p,
                _ => opts.certs_dir.join(layout::CA_CERT),
            }
        }
    };
    if !path.exists() {
        return Err(PkiError::bad_file(
            &path,
            "CA certificate not found",
            "create the CA first (moat cert create-ca) or pass --ca-cert",
        ));
    }
    SigningCa::load(&path, &opts.ca_key)
}

/// Signs a fresh key for a leaf profile and writes `<base>.crt` + `<base>.key`.
fn create_leaf(
    opts: &CreateOptions,
    profile: Profile,
    common_name: &str,
    hosts: &[String],
    base: &str,
    extra: impl FnOnce(&PrivateKey, &mut FileSet),
) -> Result<Outcome> {
    if let Some(url) = &opts.ocsp_url {
        profile::check_ocsp_url(url)?;
    }
    ensure_dir(&opts.certs_dir)?;
    let cert_path = opts.certs_dir.join(format!("{base}.crt"));
    let key_path = opts.certs_dir.join(format!("{base}.key"));
    let mut probe = FileSet::new(opts.overwrite);
    probe.add_cert(&cert_path, "").add_key(&key_path, "");
    probe.check_targets()?;
    let ca = signer_for(opts, profile)?;
    let now = OffsetDateTime::now_utc();
    let mut params = profile::params(
        profile,
        common_name,
        hosts,
        opts.lifetime_for(profile),
        now,
        matches!(opts.key_type, KeyType::Rsa(_)),
    )?;
    opts.add_ocsp_url(&mut params)?;
    ca.check_lifetime(params.not_after, now)?;
    let key = PrivateKey::generate(opts.key_type)?;
    let chain = ca.sign(&params, key.key_pair())?;
    let mut files = FileSet::new(opts.overwrite);
    files
        .add_cert(&cert_path, certs_to_pem(&chain))
        .add_key(&key_path, key.to_pem());
    extra(&key, &mut files);
    let written = files.commit()?;
    Ok(Outcome {
        written,
        cert: CertInfo::from_der(&chain[0]).ok(),
        warnings: vec![],
    })
}

/// `create-node <host>...`: `node.crt`/`node.key` with CN `node`, usable as
/// server and client, signed by `ca.crt`.
pub fn create_node(opts: &CreateOptions, hosts: &[String]) -> Result<Outcome> {
    if hosts.is_empty() {
        return Err(PkiError::invalid(
            "create-node requires at least one host name or address, none was specified",
            "pass the names and IPs clients use to reach the node, e.g. `create-node localhost 127.0.0.1`",
        ));
    }
    profile::hosts_to_sans(hosts)?;
    create_leaf(opts, Profile::Node, profile::NODE_COMMON_NAME, hosts, "node", |_, _| {})
}

/// `create-client <user>`: `client.<user>.crt`/`.key` with CN = the
/// normalised user, signed by `ca-client.crt` if present, else `ca.crt`;
/// `pk8` also writes `client.<user>.key.pk8` (DER PKCS#8, for Java).
pub fn create_client(opts: &CreateOptions, user: &str, pk8: bool) -> Result<Outcome> {
    let user = username::normalize_and_validate(user)?;
    let pk8_path = opts.certs_dir.join(layout::client_pk8(&user));
    if pk8 && !opts.overwrite && pk8_path.exists() {
        return Err(PkiError::Exists { path: pk8_path });
    }
    create_leaf(
        opts,
        Profile::Client,
        &user,
        &[],
        &format!("client.{user}"),
        |key, files| {
            if pk8 {
                files.add_key(&pk8_path, key.pkcs8_der().to_vec());
            }
        },
    )
}

/// `create-ui <host>...`: `ui.crt`/`ui.key` for the HTTPS console (serverAuth
/// only, CN = first host), signed by `ca-ui.crt` if present, else `ca.crt`.
pub fn create_ui(opts: &CreateOptions, hosts: &[String]) -> Result<Outcome> {
    if hosts.is_empty() {
        return Err(PkiError::invalid(
            "create-ui requires at least one host name or address, none was specified",
            "pass the names and IPs browsers use to reach the console",
        ));
    }
    profile::hosts_to_sans(hosts)?;
    create_leaf(opts, Profile::Ui, &hosts[0], hosts, "ui", |_, _| {})
}

/// `create-csr`: makes a key and a CSR locally (`<base>.key`, `<base>.csr` in
/// the certs directory); the key never leaves this machine.
pub fn create_csr(
    certs_dir: &Path,
    profile: Profile,
    subject: &[String],
    key_type: KeyType,
    overwrite: bool,
) -> Result<Outcome> {
    let (cn, hosts, base) = match profile {
        Profile::Node => {
            if subject.is_empty() {
                return Err(PkiError::invalid(
                    "a node CSR requires at least one host name or address, none was specified",
                    "pass the node's names and IPs",
                ));
            }
            (
                profile::NODE_COMMON_NAME.to_string(),
                subject.to_vec(),
                "node".to_string(),
            )
        }
        Profile::Ui => {
            if subject.is_empty() {
                return Err(PkiError::invalid(
                    "a ui CSR requires at least one host name or address, none was specified",
                    "pass the console's names and IPs",
                ));
            }
            (subject[0].clone(), subject.to_vec(), "ui".to_string())
        }
        Profile::Client => {
            let [user] = subject else {
                return Err(PkiError::invalid(
                    "a client CSR takes exactly one user name",
                    "pass the SQL user",
                ));
            };
            let user = username::normalize_and_validate(user)?;
            (user.clone(), vec![], format!("client.{user}"))
        }
        _ => {
            return Err(PkiError::invalid(
                "CSRs are for node, client and ui certificates",
                "use one of those",
            ))
        }
    };
    ensure_dir(certs_dir)?;
    let key_path = certs_dir.join(format!("{base}.key"));
    let csr_path = certs_dir.join(format!("{base}.csr"));
    let mut probe = FileSet::new(overwrite);
    probe.add_key(&key_path, "").add_cert(&csr_path, "");
    probe.check_targets()?;
    let key = PrivateKey::generate(key_type)?;
    let mut params = profile::params(
        profile,
        &cn,
        &hosts,
        Duration::days(1),
        OffsetDateTime::now_utc(),
        matches!(key_type, KeyType::Rsa(_)),
    )?;
    params.serial_number = None;
    params.use_authority_key_identifier_extension = false;
    let request = params
        .serialize_request(key.key_pair())
        .map_err(|e| PkiError::crypto("making a CSR", e))?;
    let pem = request.pem().map_err(|e| PkiError::crypto("encoding a CSR", e))?;
    let mut files = FileSet::new(overwrite);
    files.add_key(&key_path, key.to_pem()).add_cert(&csr_path, pem);
    let written = files.commit()?;
    Ok(Outcome {
        written,
        cert: None,
        warnings: vec![],
    })
}

/// Options of `sign-csr`.
#[derive(Debug, Clone)]
pub struct SignCsrOptions {
    /// The CSR file.
    pub csr: PathBuf,
    /// The profile the CA grants.
    pub profile: Profile,
    /// For `client`: the user the CSR must be for.
    pub user: Option<String>,
    /// For `node`/`ui`: the hosts allowed (and granted); empty = as requested.
    pub hosts: Vec<String>,
    /// Where to write the certificate; `None` = the CSR path with `.crt`.
    pub out: Option<PathBuf>,
}

/// `sign-csr`: checks a CSR against the CA's policy for the profile (see
/// [`csr::decide`]) and writes the signed certificate (with the chain when the
/// CA is an intermediate).
pub fn sign_csr(opts: &CreateOptions, req: &SignCsrOptions) -> Result<Outcome> {
    if let Some(url) = &opts.ocsp_url {
        profile::check_ocsp_url(url)?;
    }
    let text = std::fs::read(&req.csr).map_err(|e| PkiError::io(&req.csr, e, "check the CSR path"))?;
    let parsed = csr::parse_csr(&req.csr, &text)?;
    let grant = csr::decide(&req.csr, &parsed, req.profile, req.user.as_deref(), &req.hosts)?;
    let out = req.out.clone().unwrap_or_else(|| req.csr.with_extension("crt"));
    let mut probe = FileSet::new(opts.overwrite);
    probe.add_cert(&out, "");
    probe.check_targets()?;
    let ca = signer_for(opts, req.profile)?;
    let now = OffsetDateTime::now_utc();
    let mut params = profile::params(
        req.profile,
        &grant.common_name,
        &grant.hosts,
        opts.lifetime_for(req.profile),
        now,
        grant.rsa,
    )?;
    opts.add_ocsp_url(&mut params)?;
    ca.check_lifetime(params.not_after, now)?;
    let chain = ca.sign(&params, &parsed.public_key)?;
    let mut files = FileSet::new(opts.overwrite);
    files.add_cert(&out, certs_to_pem(&chain));
    let written = files.commit()?;
    Ok(Outcome {
        written,
        cert: CertInfo::from_der(&chain[0]).ok(),
        warnings: vec![],
    })
}

/// What `revoke` adds to a CRL.
#[derive(Debug, Clone)]
pub enum RevokeTarget {
    /// A certificate file: its first certificate is revoked, in the CRL of
    /// the CA that issued it.
    Cert(PathBuf),
    /// A serial number in hex, revoked in the CRL of `ca.crt` (or of
    /// [`RevokeOptions::ca_cert`]).
    Serial(String),
    /// Nothing: re-sign the CRL with fresh dates and the next CRL number
    /// (before it goes stale), or make an empty CRL.
    Refresh,
}

/// Options of `revoke`.
#[derive(Debug, Clone)]
pub struct RevokeOptions {
    /// The certs directory, where the CRL is written.
    pub certs_dir: PathBuf,
    /// The CA key.
    pub ca_key: PathBuf,
    /// The CA: `None` finds the issuer of a certificate among `ca.crt`,
    /// `ca-client.crt` and `ca-ui.crt`, and means `ca.crt` for a serial or a refresh.
    pub ca_cert: Option<PathBuf>,
    /// What to revoke.
    pub target: RevokeTarget,
    /// The reason written in the CRL entry (`None`: no reason code, i.e. unspecified).
    pub reason: Option<rcgen::RevocationReason>,
    /// Time to nextUpdate; `None` is [`crl::DEFAULT_CRL_LIFETIME`].
    pub crl_lifetime: Option<Duration>,
}

impl RevokeOptions {
    /// Options for a certs directory and CA key.
    pub fn new(certs_dir: impl Into<PathBuf>, ca_key: impl Into<PathBuf>, target: RevokeTarget) -> Self {
        RevokeOptions {
            certs_dir: certs_dir.into(),
            ca_key: ca_key.into(),
            ca_cert: None,
            target,
            reason: None,
            crl_lifetime: None,
        }
    }
}

/// What `revoke` did.
#[derive(Debug)]
pub struct RevokeOutcome {
    /// The CRL file.
    pub crl_path: PathBuf,
    /// The CA certificate file that signed it.
    pub ca_cert: PathBuf,
    /// The serial concerned (hex), if any.
    pub serial: Option<String>,
    /// Subject of the revoked certificate, when revoked from its file.
    pub subject: Option<String>,
    /// Set when the serial was already in the CRL: nothing was written.
    pub already_revoked: Option<crl::Revoked>,
    /// The CRL number of the CRL now in the file (decimal).
    pub crl_number: String,
    /// Number of entries in the CRL now in the file.
    pub revoked: usize,
    /// nextUpdate of the CRL now in the file.
    pub next_update: Option<OffsetDateTime>,
    /// Files written (empty for a no-op).
    pub written: Vec<PathBuf>,
    /// Things the user should know.
    pub warnings: Vec<String>,
}

/// The CA files a certificate may come from, most likely first: the client
/// CA for client-only certificates, the UI CA for server-only ones.
fn issuer_candidates(certs_dir: &Path, info: &CertInfo) -> Vec<PathBuf> {
    let eku = &info.ext_key_usage;
    let client_only = eku.iter().any(|e| e == "clientAuth") && !eku.iter().any(|e| e == "serverAuth");
    let server_only = eku.iter().any(|e| e == "serverAuth") && !eku.iter().any(|e| e == "clientAuth");
    let order = if client_only {
        [layout::CLIENT_CA_CERT, layout::CA_CERT, layout::UI_CA_CERT]
    } else if server_only {
        [layout::UI_CA_CERT, layout::CA_CERT, layout::CLIENT_CA_CERT]
    } else {
        [layout::CA_CERT, layout::CLIENT_CA_CERT, layout::UI_CA_CERT]
    };
    order.iter().map(|f| certs_dir.join(f)).filter(|p| p.exists()).collect()
}

/// Whether `cert` names `ca` as issuer and carries its signature.
fn signed_by(cert: &X509Certificate<'_>, ca: &[u8]) -> bool {
    match X509Certificate::from_der(ca) {
        Ok((_, ca)) => {
            cert.issuer().as_raw() == ca.subject().as_raw() && cert.verify_signature(Some(ca.public_key())).is_ok()
        }
        Err(_) => false,
    }
}

/// Finds the CA file whose first certificate issued `cert`.
fn find_issuer(opts: &RevokeOptions, cert_path: &Path, cert: &X509Certificate<'_>, info: &CertInfo) -> Result<PathBuf> {
    let candidates = match &opts.ca_cert {
        Some(p) => vec![p.clone()],
        None => issuer_candidates(&opts.certs_dir, info),
    };
    if candidates.is_empty() {
        return Err(PkiError::bad_file(
            opts.certs_dir.join(layout::CA_CERT),
            "CA certificate not found",
            "pass the issuing CA's certificate with --ca-cert",
        ));
    }
    let mut older = None;
    for path in &candidates {
        let bundle = read_cert_pem(path)?;
        if signed_by(cert, &bundle[0]) {
            return Ok(path.clone());
        }
        if let Some(i) = bundle.iter().skip(1).position(|ca| signed_by(cert, ca)) {
            older.get_or_insert((path.clone(), i + 2));
        }
    }
    let names: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(match older {
        Some((path, n)) => PkiError::bad_file(
            cert_path,
            format!(
                "issued by certificate #{n} of {} (a previous CA), and moat signs CRLs with the first CA of a file",
                path.display()
            ),
            "save that CA certificate to a file and pass it with --ca-cert, with its key as --ca-key",
        ),
        None => PkiError::bad_file(
            cert_path,
            format!(
                "not issued by the CA in {} (issuer {:?})",
                names.join(" or "),
                info.issuer
            ),
            "pass the issuing CA's certificate with --ca-cert",
        ),
    })
}

/// An exclusive advisory lock on a directory, held while a CRL is read,
/// extended and rewritten, so concurrent `revoke`s do not lose entries.
/// The lock is released when the file is closed (dropped).
struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(dir).map_err(|e| PkiError::io(dir, e, "check the certs directory"))?;
        // SAFETY: flock on a valid, owned file descriptor.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(PkiError::io(
                dir,
                std::io::Error::last_os_error(),
                "could not lock the certs directory",
            ));
        }
        Ok(DirLock { _file: f })
    }
}

/// The existing CRL of a CA, checked: it must parse, hold one CRL and have
/// been issued by this CA.
fn read_existing_crl(crl_path: &Path, ca: &SigningCa) -> Result<Option<crl::CrlSummary>> {
    let bytes = match std::fs::read(crl_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PkiError::io(crl_path, e, "check the CRL file's permissions")),
    };
    let fix = "restore it from a backup, or move it away to start a new CRL (then revoke its certificates again)";
    let crls = crl::parse_crl_file(&bytes)
        .map_err(|e| PkiError::bad_file(crl_path, format!("the existing CRL is unreadable: {e}"), fix))?;
    if crls.len() != 1 {
        return Err(PkiError::bad_file(
            crl_path,
            format!("holds {} CRLs; moat keeps exactly one CRL per CA file", crls.len()),
            fix,
        ));
    }
    crl::verify_issued_by(&crls[0], ca.cert_der()).map_err(|e| {
        PkiError::bad_file(
            crl_path,
            format!("the existing CRL does not belong to {}: {e}", ca.cert_path().display()),
            "pass the CA that issued this CRL (--ca-cert), or move the file away",
        )
    })?;
    crl::summarize(&crls[0])
        .map(Some)
        .map_err(|e| PkiError::bad_file(crl_path, format!("the existing CRL is unreadable: {e}"), fix))
}

/// `revoke`: adds a certificate (or serial) to the CRL of the CA that issued
/// it (`ca.crl`, `ca-client.crl`, `ca-ui.crl` in the certs directory), keeping
/// every existing entry, with the next CRL number, thisUpdate = now and
/// nextUpdate = now + the CRL lifetime. Revoking a serial already in the CRL
/// changes nothing. The revoked certificate's files are left in place.
pub fn revoke(opts: &RevokeOptions) -> Result<RevokeOutcome> {
    require_path(&opts.ca_key, "--ca-key")?;
    if !opts.certs_dir.is_dir() {
        return Err(PkiError::bad_file(
            &opts.certs_dir,
            "certs directory not found",
            "pass the directory holding the CA certificate with --certs-dir",
        ));
    }
    let mut subject = None;
    let (serial, ca_path) = match &opts.target {
        RevokeTarget::Cert(given) => {
            // A bare name may also designate a file of the certs directory.
            let path = if !given.exists() && given.is_relative() && opts.certs_dir.join(given).exists() {
                opts.certs_dir.join(given)
            } else {
                given.clone()
            };
            let chain = read_cert_pem(&path)?;
            let (_, cert) = X509Certificate::from_der(&chain[0])
                .map_err(|e| PkiError::bad_file(&path, format!("unreadable certificate ({e})"), "check the file"))?;
            let info = CertInfo::from_der(&chain[0]).map_err(|e| PkiError::bad_file(&path, e, "check the file"))?;
            if info.self_signed {
                return Err(PkiError::bad_file(
                    &path,
                    "is a self-signed (root) certificate, which no CRL can revoke",
                    "stop trusting it instead: remove it from the CA file (after rotating to a new CA)",
                ));
            }
            let ca_path = find_issuer(opts, &path, &cert, &info)?;
            subject = Some(info.subject.clone());
            (Some(crl::normalize_serial(cert.raw_serial())), ca_path)
        }
        RevokeTarget::Serial(text) => (
            Some(crl::parse_serial(text)?),
            opts.ca_cert
                .clone()
                .unwrap_or_else(|| opts.certs_dir.join(layout::CA_CERT)),
        ),
        RevokeTarget::Refresh => (
            None,
            opts.ca_cert
                .clone()
                .unwrap_or_else(|| opts.certs_dir.join(layout::CA_CERT)),
        ),
    };
    if !ca_path.exists() {
        return Err(PkiError::bad_file(
            &ca_path,
            "CA certificate not found",
            "create the CA first or pass its certificate with --ca-cert",
        ));
    }
    let ca = SigningCa::load(&ca_path, &opts.ca_key)?;
    if !crl::may_sign_crls(ca.cert_der()) {
        return Err(PkiError::bad_file(
            &ca_path,
            format!(
                "CA certificate {:?} may not sign CRLs (its Key Usage lacks cRLSign)",
                ca.info().subject
            ),
            "revoke with a CA whose certificate has the cRLSign key usage (moat's CAs do)",
        ));
    }
    let crl_path = crl::crl_path_for(&opts.certs_dir, &ca_path);
    let _lock = DirLock::acquire(&opts.certs_dir)?;
    let existing = read_existing_crl(&crl_path, &ca)?;
    let mut revoked = existing.as_ref().map(|e| e.revoked.clone()).unwrap_or_default();
    let serial_hex = serial.as_deref().map(crl::serial_hex);
    if let Some(s) = &serial {
        if let Some(prev) = revoked.iter().find(|r| &r.serial == s) {
            let existing = existing.as_ref().expect("an entry implies a CRL");
            return Ok(RevokeOutcome {
                crl_path,
                ca_cert: ca_path,
                serial: serial_hex,
                subject,
                already_revoked: Some(prev.clone()),
                crl_number: existing.crl_number_text.clone().unwrap_or_default(),
                revoked: revoked.len(),
                next_update: existing.next_update,
                written: vec![],
                warnings: vec![],
            });
        }
    }
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    if let Some(s) = &serial {
        revoked.push(crl::Revoked {
            serial: s.clone(),
            revocation_time: now,
            reason: opts.reason.filter(|r| *r != rcgen::RevocationReason::Unspecified),
            invalidity_date: None,
        });
    }
    let number = crl::next_crl_number(existing.as_ref().and_then(|e| e.crl_number.as_deref()));
    let next_update = now + opts.crl_lifetime.unwrap_or(crl::DEFAULT_CRL_LIFETIME);
    let mut warnings = Vec::new();
    if next_update > ca.info().not_after {
        warnings.push(format!(
            "the CA certificate {} expires on {}, before this CRL's next update",
            ca_path.display(),
            ca.info().not_after.date()
        ));
    }
    let der = crl::sign_crl(
        &ca,
        &crl::NewCrl {
            revoked: &revoked,
            number: &number,
            this_update: now,
            next_update,
        },
    )?;
    let mut files = FileSet::new(true);
    files.add_cert(&crl_path, crl::crls_to_pem(&[der]));
    let written = files.commit()?;
    let number_text = x509_parser::num_bigint::BigUint::from_bytes_be(&number).to_string();
    Ok(RevokeOutcome {
        crl_path,
        ca_cert: ca_path,
        serial: serial_hex,
        subject,
        already_revoked: None,
        crl_number: number_text,
        revoked: revoked.len(),
        next_update: Some(next_update),
        written,
        warnings,
    })
}
