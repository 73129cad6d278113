//! Connecting: the rustls client config from moat-tls, a `MakeTlsConnect`
//! for tokio-postgres on tokio-rustls (tokio-postgres-rustls would bring the
//! `ring` crate in beside aws-lc-rs), the password, and one-line
//! explanations of every way a connection fails.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use moat_tls::principal::IdentityPolicy;
use moat_tls::store::{CertStore, StoreRole};
use moat_tls::TlsError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::{AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::DbError;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::{AsyncMessage, Client, Connection, Socket};

use super::target::{certs_view, Target};

/// A failure to show the user: a server error (`ERROR: ...; SQLSTATE: ...`)
/// or anything else (`error: ...`), one line each.
#[derive(Debug)]
pub enum Failure {
    /// An error the server sent, already formatted.
    Sql(String),
    /// A client-side or connection failure.
    Other(String),
}

impl Failure {
    /// Prints it on stderr.
    pub fn print(&self) {
        match self {
            Failure::Sql(line) => eprintln!("{line}"),
            Failure::Other(line) => eprintln!("error: {line}"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// State one connection shares with its stream.
#[derive(Default)]
pub struct Shared {
    /// Command tags (`CREATE TABLE`, `INSERT 0 1`; empty for an empty
    /// query) read off the wire, oldest first: tokio-postgres only reports
    /// the row count of a command, `cockroach sql` shows the tag.
    pub tags: Mutex<VecDeque<String>>,
    /// "TLS 1.3, TLS13_AES_128_GCM_SHA256" once the handshake is done.
    pub tls: Mutex<Option<String>>,
    /// Why the connection ended, when it ended with an error.
    pub lost: Mutex<Option<tokio_postgres::Error>>,
}

/// Verifies like moat-tls' SQL client verifier, and remembers the server's
/// certificate so that failures can say what it was.
#[derive(Debug)]
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    seen: Arc<Mutex<Option<CertificateDer<'static>>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *lock(&self.seen) = Some(end_entity.clone().into_owned());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// `MakeTlsConnect` for tokio-postgres over tokio-rustls.
#[derive(Clone)]
pub struct RustlsMaker {
    config: Arc<ClientConfig>,
    shared: Arc<Shared>,
}

impl<S> MakeTlsConnect<S> for RustlsMaker
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TapStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls_pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            name: ServerName::try_from(domain)?.to_owned(),
            connector: tokio_rustls::TlsConnector::from(self.config.clone()),
            shared: self.shared.clone(),
        })
    }
}

/// One TLS handshake.
pub struct RustlsConnect {
    name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    shared: Arc<Shared>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TapStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TapStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = self.connector.connect(self.name, stream).await?;
            let (_, conn) = tls.get_ref();
            if let (Some(v), Some(s)) = (conn.protocol_version(), conn.negotiated_cipher_suite()) {
                let v = format!("{v:?}").replace("TLSv1_", "TLS 1.");
                *lock(&self.shared.tls) = Some(format!("{v}, {:?}", s.suite()));
            }
            Ok(TapStream {
                inner: tls,
                tap: Tap::default(),
                shared: self.shared,
            })
        })
    }
}

/// Follows the framing of the backend messages read through the stream and
/// keeps the tags of CommandComplete ('C') and EmptyQueryResponse ('I').
#[derive(Default)]
struct Tap {
    header: [u8; 5],
    have: usize,
    left: usize,
    body: Vec<u8>,
}

impl Tap {
    fn feed(&mut self, mut data: &[u8], tags: &Mutex<VecDeque<String>>) {
        while !data.is_empty() {
            if self.have < 5 {
                let n = (5 - self.have).min(data.len());
                self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
                self.have += n;
                data = &data[n..];
                if self.have == 5 {
                    let len = u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]);
                    self.left = (len as usize).saturating_sub(4);
                    self.body.clear();
                    if self.left == 0 {
                        self.finish(tags);
                    }
                }
                continue;
            }
            let n = self.left.min(data.len());
            if self.header[0] == b'C' && self.body.len() < 4096 {
                self.body.extend_from_slice(&data[..n]);
            }
            self.left -= n;
            data = &data[n..];
            if self.left == 0 {
                self.finish(tags);
            }
        }
    }

    fn finish(&mut self, tags: &Mutex<VecDeque<String>>) {
        match self.header[0] {
            b'C' => {
                let tag = self.body.split(|b| *b == 0).next().unwrap_or_default();
                lock(tags).push_back(String::from_utf8_lossy(tag).into_owned());
            }
            b'I' => lock(tags).push_back(String::new()),
            _ => {}
        }
        self.have = 0;
    }
}

/// The TLS stream handed to tokio-postgres.
pub struct TapStream<S> {
    inner: tokio_rustls::client::TlsStream<S>,
    tap: Tap,
    shared: Arc<Shared>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TapStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.tap.feed(&buf.filled()[before..], &this.shared.tags);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TapStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for TapStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, conn) = self.inner.get_ref();
        conn.peer_certificates()
            .and_then(|c| c.first())
            .and_then(|leaf| server_end_point(leaf))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

/// RFC 5929 tls-server-end-point: the hash of the server certificate, with
/// the hash of its signature algorithm (SHA-256 for MD5 and SHA-1). None
/// for algorithms without one (Ed25519, RSA-PSS): SCRAM then runs without
/// channel binding, as with libpq.
fn server_end_point(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    use aws_lc_rs::digest;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let alg = match parsed.signature_algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.2" => &digest::SHA256,
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => &digest::SHA384,
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => &digest::SHA512,
        _ => return None,
    };
    Some(digest::digest(alg, cert.as_ref()).as_ref().to_vec())
}

/// What the server's certificate says, for messages.
struct PeerInfo {
    subject: String,
    issuer: String,
    names: Vec<String>,
    not_after: time::OffsetDateTime,
    not_before: time::OffsetDateTime,
}

fn peer_info(der: &CertificateDer<'_>) -> Option<PeerInfo> {
    use x509_parser::extensions::GeneralName;
    let (_, c) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_string()),
                GeneralName::IPAddress(b) if b.len() == 4 => {
                    names.push(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string())
                }
                GeneralName::IPAddress(b) if b.len() == 16 => {
                    let a: [u8; 16] = (*b).try_into().ok()?;
                    names.push(std::net::Ipv6Addr::from(a).to_string())
                }
                _ => {}
            }
        }
    }
    Some(PeerInfo {
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        names,
        not_after: c.validity().not_after.to_datetime(),
        not_before: c.validity().not_before.to_datetime(),
    })
}

fn when(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{} {:02}:{:02}:{:02} UTC", t.date(), t.hour(), t.minute(), t.second())
}

fn from_unix(t: UnixTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.as_secs() as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// `DnsName("localhost")` / `IpAddress(127.0.0.1)` (webpki's names) → `localhost` / `127.0.0.1`.
fn clean_presented(names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|n| {
            let inner = n.split_once('(').map(|(_, r)| r.trim_end_matches(')')).unwrap_or(n);
            inner.trim_matches('"').to_string()
        })
        .collect()
}

/// A live connection.
pub struct Session {
    /// The tokio-postgres client.
    pub client: Client,
    /// What the stream saw.
    pub shared: Arc<Shared>,
}

/// Everything needed to (re)connect: target, TLS config, password.
pub struct Connector {
    /// Where and as whom.
    pub target: Target,
    config: Arc<ClientConfig>,
    seen: Arc<Mutex<Option<CertificateDer<'static>>>>,
    /// True when logging in with `client.<user>.crt`.
    pub cert_login: bool,
    password: Option<String>,
    /// Subjects of the certificates in ca.crt.
    ca_subjects: Vec<String>,
}

impl Connector {
    /// Loads the certificates (client certificate when there is one for the
    /// user, else one-sided TLS and a password) and builds the TLS config.
    pub fn new(target: Target) -> Result<Self, Failure> {
        let other = |e: anyhow::Error| Failure::Other(format!("{e:#}"));
        let view = certs_view(&target).map_err(other)?;
        let login = view.has_client_cert.then(|| target.user.clone());
        let store = CertStore::open(
            &view.dir,
            StoreRole::SqlClient(login.clone()),
            IdentityPolicy::default(),
        )
        .map_err(|e| load_error(&target, &view.dir, e))?;
        let snap = store.snapshot();
        let mut config = (*snap.sql_client()).clone();
        let roots = snap.material.ca_roots().map_err(|e| Failure::Other(e.to_string()))?;
        let inner = WebPkiServerVerifier::builder_with_provider(roots, moat_tls::provider::provider())
            .with_crls(snap.material.crls().iter().cloned())
            .allow_unknown_revocation_status()
            .build()
            .map_err(|e| Failure::Other(format!("building the server verifier: {e}")))?;
        let seen = Arc::new(Mutex::new(None));
        config.dangerous().set_certificate_verifier(Arc::new(Recorder {
            inner,
            seen: seen.clone(),
        }));
        let ca_subjects = snap
            .material
            .ca_anchor_certs()
            .iter()
            .filter_map(|c| {
                x509_parser::parse_x509_certificate(c.as_ref())
                    .ok()
                    .map(|(_, x)| x.subject().to_string())
            })
            .collect();
        let cert_login = login.is_some();
        let password = if cert_login {
            None
        } else {
            target
                .password
                .clone()
                .or_else(|| std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()))
                .or_else(|| rpassword::prompt_password(format!("Enter password for {}: ", target.user)).ok())
        };
        Ok(Connector {
            target,
            config: Arc::new(config),
            seen,
            cert_login,
            password,
            ca_subjects,
        })
    }

    /// How we log in, for the shell's greeting.
    pub fn login_kind(&self) -> String {
        if self.cert_login {
            format!("client certificate {}", self.target.client_cert.display())
        } else {
            "password".to_string()
        }
    }

    /// Connects (TLS required: SSLRequest, then the handshake) and logs in.
    pub async fn connect(&self) -> Result<Session, Failure> {
        let t = &self.target;
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&t.host)
            .port(t.port)
            .user(&t.user)
            .dbname(&t.database)
            .ssl_mode(SslMode::Require)
            .application_name("moat sql")
            .connect_timeout(t.connect_timeout);
        if let Some(p) = &self.password {
            cfg.password(p.as_bytes());
        }
        *lock(&self.seen) = None;
        let shared = Arc::new(Shared::default());
        let maker = RustlsMaker {
            config: self.config.clone(),
            shared: shared.clone(),
        };
        let (client, connection) = cfg.connect(maker).await.map_err(|e| self.explain(&e))?;
        tokio::spawn(drive(connection, shared.clone()));
        Ok(Session { client, shared })
    }

    /// One line for a tokio-postgres error: the server's error with its
    /// SQLSTATE, or the TLS / network cause and its fix.
    pub fn explain(&self, e: &tokio_postgres::Error) -> Failure {
        if let Some(db) = e.as_db_error() {
            return Failure::Sql(self.db_line(db));
        }
        let chain = error_chain(e);
        for x in &chain {
            if let Some(r) = x.downcast_ref::<rustls::Error>() {
                if let Some(m) = self.tls_message(r) {
                    return Failure::Other(m);
                }
            }
        }
        let t = &self.target;
        let addr = t.addr();
        for x in &chain {
            if let Some(io) = x.downcast_ref::<io::Error>() {
                use io::ErrorKind::*;
                match io.kind() {
                    ConnectionRefused => {
                        return Failure::Other(format!(
                            "cannot connect to {addr}: connection refused; is a moat node running and listening there? (--host HOST:PORT)"
                        ))
                    }
                    TimedOut => {
                        return Failure::Other(format!(
                            "cannot connect to {addr}: no answer within {}s; check the host, the port and the network",
                            t.connect_timeout.as_secs()
                        ))
                    }
                    UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => {
                        return Failure::Other(format!(
                            "the server at {addr} closed the connection during the TLS handshake or the login ({io}); see the node's log for why"
                        ))
                    }
                    _ => {}
                }
            }
        }
        let mut text = String::new();
        for x in &chain {
            let s = x.to_string();
            if !text.contains(&s) {
                if !text.is_empty() {
                    text.push_str(": ");
                }
                text.push_str(&s);
            }
        }
        if text.contains("server does not support TLS") {
            return Failure::Other(format!(
                "the server at {addr} does not accept TLS connections; moat sql only connects over TLS"
            ));
        }
        if text.contains("password missing") {
            return Failure::Other(format!(
                "the server asks user {} for a password: set PGPASSWORD or run in a terminal to be prompted, or log in with a client certificate ({})",
                t.user,
                t.client_cert.display()
            ));
        }
        if text.contains("lookup address") || text.contains("not known") {
            return Failure::Other(format!("cannot resolve the host name {}: {text}", t.host));
        }
        if text.contains("connection closed") {
            return Failure::Other(format!("the connection to {addr} was closed"));
        }
        Failure::Other(format!("cannot talk to {addr}: {text}"))
    }

    /// Why a session's connection ended, if it ended with an error.
    pub fn lost_reason(&self, session: &Session) -> Option<Failure> {
        let e = lock(&session.shared.lost).take()?;
        Some(self.explain(&e))
    }

    fn db_line(&self, db: &DbError) -> String {
        let one = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut s = format!("ERROR: {}", one(db.message()));
        if let Some(d) = db.detail() {
            s.push_str(&format!("; DETAIL: {}", one(d)));
        }
        let code = db.code().code();
        let hint = db.hint().map(one).or_else(|| match code {
            "28P01" if !self.cert_login => Some(format!(
                "check the password (PGPASSWORD or the prompt), or log in with a client certificate: `moat cert create-client {}` makes {}",
                self.target.user,
                self.target.client_cert.display()
            )),
            _ => None,
        });
        if let Some(h) = hint {
            s.push_str(&format!("; HINT: {h}"));
        }
        s.push_str(&format!("; SQLSTATE: {code}"));
        s
    }

    fn tls_message(&self, r: &rustls::Error) -> Option<String> {
        let t = &self.target;
        let addr = t.addr();
        let peer = lock(&self.seen).clone();
        let info = peer.as_ref().and_then(peer_info);
        Some(match r {
            rustls::Error::InvalidCertificate(ce) => match ce {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    let what = match &info {
                        Some(i) if self.ca_subjects.contains(&i.issuer) => format!(
                            "the node at {addr} presented {:?}, issued by another CA with the same name {:?} (another cluster, or a recreated CA)",
                            i.subject, i.issuer
                        ),
                        Some(i) => format!("the node at {addr} presented {:?}, issued by {:?}", i.subject, i.issuer),
                        None => format!("the node at {addr} presented a certificate from another CA"),
                    };
                    format!(
                        "the server's certificate is not signed by {}: {what}; put the ca.crt of the node's cluster in {} (or use --certs-dir)",
                        t.ca_file.display(),
                        t.certs_dir.display()
                    )
                }
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    let mut names = info.as_ref().map(|i| i.names.clone()).unwrap_or_default();
                    if names.is_empty() {
                        if let CertificateError::NotValidForNameContext { presented, .. } = ce {
                            names = clean_presented(presented);
                        }
                    }
                    let names = if names.is_empty() {
                        "no host names".to_string()
                    } else {
                        names.join(", ")
                    };
                    format!(
                        "the server's certificate is not valid for {}; it names {names}: connect with one of those (--host), or add {} to the node's certificate (moat cert create-node --overwrite ... {})",
                        t.host, t.host, t.host
                    )
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    let date = match (ce, &info) {
                        (CertificateError::ExpiredContext { not_after, .. }, _) => when(from_unix(*not_after)),
                        (_, Some(i)) => when(i.not_after),
                        _ => "an earlier date".to_string(),
                    };
                    format!(
                        "the server's certificate expired on {date}: renew the node's certificate (moat cert create-node --overwrite) on the node at {addr}"
                    )
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    let date = match (ce, &info) {
                        (CertificateError::NotValidYetContext { not_before, .. }, _) => when(from_unix(*not_before)),
                        (_, Some(i)) => when(i.not_before),
                        _ => "a later date".to_string(),
                    };
                    format!("the server's certificate is not valid before {date}: check the clocks of this machine and of the node at {addr}")
                }
                CertificateError::Revoked => format!(
                    "the server's certificate has been revoked (a CRL in {} lists it): the node at {addr} needs a new certificate",
                    t.certs_dir.display()
                ),
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => format!(
                    "the server's certificate at {addr} is not for servers (it lacks the serverAuth usage): recreate node.crt with moat cert create-node"
                ),
                other => format!("the server's certificate at {addr} was refused: {}", rustls::Error::InvalidCertificate(other.clone())),
            },
            rustls::Error::AlertReceived(a) => {
                use AlertDescription as A;
                let cert = t.client_cert.display();
                let user = &t.user;
                match a {
                    A::CertificateRequired => format!(
                        "the server requires a client certificate for user {user}: create {cert} (moat cert create-client {user})"
                    ),
                    A::BadCertificate
                    | A::UnsupportedCertificate
                    | A::CertificateRevoked
                    | A::CertificateExpired
                    | A::CertificateUnknown
                    | A::UnknownCA
                    | A::AccessDenied
                    | A::DecryptError
                        if self.cert_login =>
                    {
                        let why = match a {
                            A::CertificateExpired => "it has expired",
                            A::CertificateRevoked => "it is revoked",
                            A::UnknownCA => "it is not signed by a CA the node trusts for clients (its ca-client.crt, else ca.crt)",
                            _ => "it must be signed by the CA the node trusts for clients, unexpired and not revoked",
                        };
                        format!(
                            "the server refused our client certificate {cert} (TLS alert {a:?}): {why}; get a new one with `moat cert create-client {user}` from the cluster's CA"
                        )
                    }
                    A::HandshakeFailure | A::ProtocolVersion | A::InsufficientSecurity => format!(
                        "no TLS version or cipher suite in common with the server at {addr} (TLS alert {a:?})"
                    ),
                    other => format!("the server at {addr} ended the TLS connection (TLS alert {other:?})"),
                }
            }
            rustls::Error::PeerIncompatible(p) => {
                format!("no TLS version or cipher suite in common with the server at {addr} ({p:?})")
            }
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!(
                "the server at {addr} does not speak TLS as expected ({r}); is it a moat or PostgreSQL server?"
            ),
            _ => return None,
        })
    }
}

fn load_error(target: &Target, dir: &std::path::Path, e: TlsError) -> Failure {
    if let TlsError::Missing { path, .. } = &e {
        if path.file_name() == Some(std::ffi::OsStr::new(&moat_pki::layout::client_cert(&target.user))) {
            let why = moat_pki::certsdir::CertsDir::load(dir)
                .ok()
                .and_then(|c| c.client(&target.user).and_then(|x| x.error.clone()))
                .unwrap_or_else(|| "it cannot be used".to_string());
            return Failure::Other(format!(
                "{}: {why}; fix or regenerate it (moat cert create-client {})",
                target.client_cert.display(),
                target.user
            ));
        }
    }
    Failure::Other(e.to_string())
}

/// The error and its causes, looking inside `io::Error`s (whose `source()`
/// skips the wrapped error).
fn error_chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut cur = Some(e);
    while let Some(x) = cur {
        out.push(x);
        if out.len() > 16 {
            break;
        }
        if let Some(inner) = x.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            cur = Some(inner as &(dyn std::error::Error + 'static));
            continue;
        }
        cur = x.source();
    }
    out
}

/// Drives the connection: prints notices, keeps the error that ended it.
async fn drive(mut conn: Connection<Socket, TapStream<Socket>>, shared: Arc<Shared>) {
    loop {
        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notice(n))) => eprintln!("{}: {}", n.severity(), n.message()),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                *lock(&shared.lost) = Some(e);
                break;
            }
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_reads_tags_across_reads() {
        let tags = Mutex::new(VecDeque::new());
        let mut tap = Tap::default();
        let mut wire = Vec::new();
        for (kind, body) in [
            (
                b'T',
                &b"\x00\x01a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"[..],
            ),
            (b'C', b"INSERT 0 1\0"),
            (b'I', b""),
            (b'C', b"CREATE TABLE\0"),
            (b'Z', b"I"),
        ] {
            wire.push(kind);
            wire.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
            wire.extend_from_slice(body);
        }
        for chunk in wire.chunks(3) {
            tap.feed(chunk, &tags);
        }
        let got: Vec<String> = lock(&tags).drain(..).collect();
        assert_eq!(
            got,
            vec!["INSERT 0 1".to_string(), String::new(), "CREATE TABLE".to_string()]
        );
    }

    #[test]
    fn presented_names() {
        let v = clean_presented(&["DnsName(\"localhost\")".into(), "IpAddress(127.0.0.1)".into()]);
        assert_eq!(v, vec!["localhost", "127.0.0.1"]);
    }
}
