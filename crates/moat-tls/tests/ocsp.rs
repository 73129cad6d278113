//! OCSP checks against real responders: openssl's OCSP responder logic (`openssl ocsp -index`,
//! run once per request behind a small HTTP server of the test), plus raw TCP peers that
//! misbehave (silent, garbage, oversized answers). Every listener binds 127.0.0.1 only.

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use der::asn1::{Ia5String, ObjectIdentifier};
use der::Encode;
use moat_tls::ocsp::{check_peer_chain, responder_urls, OcspConfig, OcspError, OcspMode, OcspOutcome};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};

const ID_AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
const ID_PE_AIA: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
/// Upper bound of any one test.
const TEST_LIMIT: Duration = Duration::from_secs(30);

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, fut).await.expect("test took too long")
}

fn cfg(mode: OcspMode) -> OcspConfig {
    OcspConfig {
        mode,
        timeout: Duration::from_secs(5),
    }
}

/// A CA or a certificate with its key, written to PEM files for openssl.
struct Identity {
    der: CertificateDer<'static>,
    cert_path: PathBuf,
    key_path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "moat");
    dn.push(DnType::CommonName, cn);
    dn
}

fn base_params(cn: &str, serial: u32) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2040, 1, 1);
    params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
    params
}

fn write_identity(
    dir: &Path,
    name: &str,
    der: CertificateDer<'static>,
    pem: String,
    key: KeyPair,
    params: CertificateParams,
) -> Identity {
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, pem).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    Identity {
        der,
        cert_path,
        key_path,
        issuer: Issuer::new(params, key),
    }
}

fn make_ca(dir: &Path, name: &str) -> Identity {
    let key = KeyPair::generate().unwrap();
    let mut params = base_params(name, 0x1000_0000);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    write_identity(dir, name, cert.der().clone(), cert.pem(), key, params)
}

/// DER of an Authority Information Access extension listing OCSP responder URLs.
fn aia(urls: &[&str]) -> Vec<u8> {
    AuthorityInfoAccessSyntax(
        urls.iter()
            .map(|url| AccessDescription {
                access_method: ID_AD_OCSP,
                access_location: GeneralName::UniformResourceIdentifier(Ia5String::new(url).unwrap()),
            })
            .collect(),
    )
    .to_der()
    .unwrap()
}

/// A certificate signed by `ca`, with OCSP responder URLs (none: no AIA) and extended key usages.
fn make_cert(
    dir: &Path,
    ca: &Identity,
    name: &str,
    serial: u32,
    urls: &[&str],
    eku: Vec<ExtendedKeyUsagePurpose>,
) -> Identity {
    let key = KeyPair::generate().unwrap();
    let mut params = base_params(name, serial);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = eku;
    params.use_authority_key_identifier_extension = true;
    if !urls.is_empty() {
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(ID_PE_AIA, aia(urls)));
    }
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    write_identity(dir, name, cert.der().clone(), cert.pem(), key, params)
}

fn leaf(dir: &Path, ca: &Identity, name: &str, serial: u32, urls: &[&str]) -> Identity {
    make_cert(
        dir,
        ca,
        name,
        serial,
        urls,
        vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth],
    )
}

/// One line of an OpenSSL CA index file.
enum Entry {
    Valid(u32, &'static str),
    Revoked(u32, &'static str),
}

fn index_text(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| match e {
            Entry::Valid(serial, cn) => format!("V\t400101000000Z\t\t{serial:08X}\tunknown\t/O=moat/CN={cn}\n"),
            Entry::Revoked(serial, cn) => {
                format!("R\t400101000000Z\t240101000000Z,keyCompromise\t{serial:08X}\tunknown\t/O=moat/CN={cn}\n")
            }
        })
        .collect()
}

fn free_port() -> u16 {
    StdListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Largest request head or body the test responder reads.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// How long the test responder waits for one request, or for openssl to answer it.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// What a responder needs to answer: files handed to `openssl ocsp`.
struct ResponderFiles {
    dir: PathBuf,
    tag: String,
    index: PathBuf,
    ca_cert: PathBuf,
    signer_cert: PathBuf,
    signer_key: PathBuf,
    /// Numbers the request/response file pairs.
    next: AtomicUsize,
    /// openssl's output and the responder's own errors, for assertion messages.
    log: Mutex<String>,
}

impl ResponderFiles {
    fn note(&self, line: &str) {
        let mut log = self.log.lock().unwrap();
        log.push_str(line);
        if !line.ends_with('\n') {
            log.push('\n');
        }
    }
}

/// An OCSP responder on 127.0.0.1: a minimal HTTP/1.1 server in the test that answers each
/// POSTed request with one run of openssl's real responder (`openssl ocsp -index ... -reqin
/// ... -respout ...`). (`openssl ocsp -port` would listen on every interface.) Stops on drop.
struct Responder {
    url: String,
    files: Arc<ResponderFiles>,
    server: JoinHandle<()>,
}

impl Responder {
    fn url(&self) -> String {
        self.url.clone()
    }

    /// Serves answers from `entries` for certificates of `ca`, signed with `signer`.
    /// Must be called within a tokio runtime.
    fn start(dir: &Path, tag: &str, entries: &[Entry], ca: &Identity, signer: &Identity) -> Responder {
        let index = dir.join(format!("index-{tag}.txt"));
        std::fs::write(&index, index_text(entries)).unwrap();
        let files = Arc::new(ResponderFiles {
            dir: dir.to_path_buf(),
            tag: tag.to_string(),
            index,
            ca_cert: ca.cert_path.clone(),
            signer_cert: signer.cert_path.clone(),
            signer_key: signer.key_path.clone(),
            next: AtomicUsize::new(0),
            log: Mutex::new(String::new()),
        });
        let std_listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(std_listener).unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let server = tokio::spawn(serve(listener, Arc::clone(&files)));
        Responder { url, files, server }
    }

    fn log(&self) -> String {
        self.files.log.lock().unwrap().clone()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        // Dropping the accept loop drops its connection tasks, and with them any openssl child
        // (kill_on_drop).
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, files: Arc<ResponderFiles>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((sock, _)) => {
                    let files = Arc::clone(&files);
                    connections.spawn(async move {
                        if let Err(e) = handle_connection(sock, &files).await {
                            files.note(&format!("connection: {e}"));
                        }
                    });
                }
                Err(e) => files.note(&format!("accept: {e}")),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Answers one request on `sock`, then closes it.
async fn handle_connection(mut sock: TcpStream, files: &ResponderFiles) -> std::io::Result<()> {
    let reply = match tokio::time::timeout(REQUEST_LIMIT, read_request(&mut sock)).await {
        Err(_) => return Err(std::io::Error::other("no complete request in time")),
        // Closed before sending a request: nothing to answer.
        Ok(Ok(None)) => return Ok(()),
        Ok(Err((status, why))) => {
            files.note(&format!("bad request: {why}"));
            http_reply(status, "text/plain", why.as_bytes())
        }
        Ok(Ok(Some(body))) => match run_openssl(files, &body).await {
            Ok(resp) => http_reply("200 OK", "application/ocsp-response", &resp),
            Err(why) => {
                files.note(&why);
                http_reply("500 Internal Server Error", "text/plain", why.as_bytes())
            }
        },
    };
    sock.write_all(&reply).await?;
    sock.shutdown().await
}

/// Reads one `POST` request with a `Content-Length` body. `Ok(None)` when the peer closes
/// before sending anything; `Err((status, why))` for a request that cannot be served.
async fn read_request(sock: &mut TcpStream) -> Result<Option<Vec<u8>>, (&'static str, String)> {
    let io = |e: std::io::Error| ("400 Bad Request", format!("read error: {e}"));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Err(("431 Request Header Fields Too Large", "request head too large".into()));
        }
        let n = sock.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(("400 Bad Request", "connection closed inside the request head".into()))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| ("400 Bad Request", "head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, version) = (parts.next(), parts.nth(1));
    if method != Some("POST") {
        return Err((
            "405 Method Not Allowed",
            format!("unexpected request line {request_line:?}"),
        ));
    }
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(("400 Bad Request", format!("unexpected request line {request_line:?}")));
    }
    let mut content_length = None;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| ("400 Bad Request", format!("malformed header line {line:?}")))?;
        if name.trim().eq_ignore_ascii_case("transfer-encoding") {
            return Err(("501 Not Implemented", "Transfer-Encoding is not supported".into()));
        }
        if name.trim().eq_ignore_ascii_case("content-length") {
            let len = value
                .trim()
                .parse::<usize>()
                .map_err(|_| ("400 Bad Request", format!("bad Content-Length {value:?}")))?;
            content_length = Some(len);
        }
    }
    let len = content_length.ok_or_else(|| ("411 Length Required", "no Content-Length".to_string()))?;
    if len > MAX_REQUEST_BYTES {
        return Err(("413 Content Too Large", format!("body of {len} bytes")));
    }
    let mut body = buf.split_off(head_end);
    while body.len() < len {
        let n = sock.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err(("400 Bad Request", "connection closed inside the body".into()));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Ok(Some(body))
}

/// Runs openssl's one-shot responder on the DER request `req`; returns the DER response.
async fn run_openssl(files: &ResponderFiles, req: &[u8]) -> Result<Vec<u8>, String> {
    let n = files.next.fetch_add(1, Ordering::Relaxed);
    let reqin = files.dir.join(format!("req-{}-{n}.der", files.tag));
    let respout = files.dir.join(format!("resp-{}-{n}.der", files.tag));
    tokio::fs::write(&reqin, req)
        .await
        .map_err(|e| format!("cannot write {}: {e}", reqin.display()))?;
    let run = tokio::process::Command::new("openssl")
        .arg("ocsp")
        .arg("-index")
        .arg(&files.index)
        .arg("-CA")
        .arg(&files.ca_cert)
        .arg("-rsigner")
        .arg(&files.signer_cert)
        .arg("-rkey")
        .arg(&files.signer_key)
        .arg("-reqin")
        .arg(&reqin)
        .arg("-respout")
        .arg(&respout)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(REQUEST_LIMIT, run)
        .await
        .map_err(|_| "openssl ocsp did not finish in time".to_string())?
        .map_err(|e| format!("cannot run openssl (must be installed): {e}"))?;
    let output = format!(
        "openssl ocsp #{n}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    files.note(&output);
    let resp = tokio::fs::read(&respout).await.unwrap_or_default();
    if !out.status.success() || resp.is_empty() {
        return Err(format!("openssl ocsp produced no response: {output}"));
    }
    Ok(resp)
}

/// A port nobody listens on.
fn closed_url() -> String {
    format!("http://127.0.0.1:{}/", free_port())
}

/// A TCP peer that answers every connection with `reply` (after reading the request), or never
/// answers when `reply` is None. Ends with the test's runtime.
async fn raw_peer(reply: Option<Vec<u8>>) -> String {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            match &reply {
                None => held.push(sock),
                Some(reply) => {
                    let reply = reply.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        let _ = sock.read(&mut buf).await;
                        let _ = sock.write_all(&reply).await;
                        let _ = sock.shutdown().await;
                    });
                }
            }
        }
    });
    url
}

fn http_reply(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend_from_slice(body);
    reply
}

fn failed_reason(result: Result<OcspOutcome, OcspError>) -> String {
    match result {
        Err(OcspError::Failed { reason }) => reason,
        other => panic!("expected Failed, got {other:?}"),
    }
}

fn lax_reason(result: Result<OcspOutcome, OcspError>) -> String {
    match result {
        Ok(OcspOutcome::LaxAccepted { reason }) => reason,
        other => panic!("expected LaxAccepted, got {other:?}"),
    }
}

#[test]
fn responder_urls_reads_aia() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), "ca");
    let with = leaf(
        dir.path(),
        &ca,
        "a",
        0x1000_0001,
        &["http://127.0.0.1:1/ocsp", "http://ocsp.example.com/"],
    );
    let without = leaf(dir.path(), &ca, "b", 0x1000_0002, &[]);
    assert_eq!(
        responder_urls(&with.der),
        ["http://127.0.0.1:1/ocsp", "http://ocsp.example.com/"]
    );
    assert!(responder_urls(&without.der).is_empty());
    assert!(responder_urls(&ca.der).is_empty());
}

#[tokio::test]
async fn good_answer_signed_by_the_ca() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(dir.path(), "ca");
        let responder = Responder::start(dir.path(), "good", &[Entry::Valid(0x1000_0001, "node")], &ca, &ca);
        let node = leaf(dir.path(), &ca, "node", 0x1000_0001, &[&responder.url()]);
        let anchors = [ca.der.clone()];

        // Issuer found among the trust anchors.
        for mode in [OcspMode::Strict, OcspMode::Lax] {
            let got = check_peer_chain(&cfg(mode), std::slice::from_ref(&node.der), &anchors).await;
            assert_eq!(got, Ok(OcspOutcome::Good { checked: 1 }), "{mode}: {}", responder.log());
        }
        // Issuer found in the chain; the self-signed root is not checked.
        let got = check_peer_chain(&cfg(OcspMode::Strict), &[node.der.clone(), ca.der.clone()], &[]).await;
        assert_eq!(got, Ok(OcspOutcome::Good { checked: 1 }));
    })
    .await
}

#[tokio::test]
async fn good_answer_from_a_delegated_responder() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(dir.path(), "ca");
        let ocsp = make_cert(
            dir.path(),
            &ca,
            "ocsp",
            0x1000_00FF,
            &[],
            vec![ExtendedKeyUsagePurpose::OcspSigning],
        );
        let responder = Responder::start(
            dir.path(),
            "delegated",
            &[Entry::Valid(0x1000_0001, "node")],
            &ca,
            &ocsp,
        );
        let node = leaf(dir.path(), &ca, "node", 0x1000_0001, &[&responder.url()]);
        let got = check_peer_chain(
            &cfg(OcspMode::Strict),
            std::slice::from_ref(&node.der),
            std::slice::from_ref(&ca.der),
        )
        .await;
        assert_eq!(got, Ok(OcspOutcome::Good { checked: 1 }), "{}", responder.log());
    })
    .await
}

#[tokio::test]
async fn delegated_responder_without_ocsp_signing_is_refused() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(dir.path(), "ca");
        // Issued by the right CA, but only for TLS.
        let other = leaf(dir.path(), &ca, "other", 0x1000_00FE, &[]);
        let responder = Responder::start(dir.path(), "noeku", &[Entry::Valid(0x1000_0001, "node")], &ca, &other);
        let node = leaf(dir.path(), &ca, "node", 0x1000_0001, &[&responder.url()]);
        let reason = failed_reason(
            check_peer_chain(
                &cfg(OcspMode::Strict),
                std::slice::from_ref(&node.der),
                std::slice::from_ref(&ca.der),
            )
            .await,
        );
        assert!(reason.contains("OCSPSigning"), "{reason}");
    })
    .await
}

#[tokio::test]
async fn revoked_fails_in_lax_and_strict() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(dir.path(), "ca");
        let responder = Responder::start(dir.path(), "revoked", &[Entry::Revoked(0x1000_0002, "alice")], &ca, &ca);
        let alice = leaf(dir.path(), &ca, "alice", 0x1000_0002, &[&responder.url()]);
        for mode in [OcspMode::Strict, OcspMode::Lax] {
            let got = check_peer_chain(
                &cfg(mode),
                std::slice::from_ref(&alice.der),
                std::slice::from_ref(&ca.der),
            )
            .await;
            match got {
                Err(OcspError::Revoked { subject, serial }) => {
                    assert!(subject.contains("CN=alice"), "{subject}");
                    assert_eq!(serial, "10000002");
                }
                other => panic!("{mode}: expected Revoked, got {other:?}; {}", responder.log()),
            }
        }
    })
    .await
}

#[tokio::test]
async fn unknown_status_fails_strict_and_is_accepted_lax() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(dir.path(), "ca");
        let responder = Responder::start(dir.path(), "unknown", &[Entry::Valid(0x1000_0001, "node")], &ca, &ca);
        let stranger = leaf(dir.path(), &ca, "stranger", 0x1000_0003, &[&responder.url()]);
        let chain = [stranger.der.clone()];
        let anchors = [ca.der.clone()];
        let reason = failed_reason(check_peer_chain(&cfg(OcspMode::Strict), &chain, &anchors).await);
        assert!(
            reason.contains("status unknown") && reason.contains("10000003"),
            "{reason}"
        );
        let reason = lax_reason(check_peer_chain(&cfg(OcspMode::Lax), &chain, &anchors).await);
        assert!(reason.contains("status unknown"), "{reason}");
    })
    .await
}

#[tokio::test]
async fn responder_not_listening() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(dir.path(), "ca");
        let node = leaf(dir.path(), &ca, "node", 0x1000_0001, &[&closed_url()]);
        let chain = [node.der.clone()];
        let anchors = [ca.der.clone()];
        let reason = failed_reason(check_peer_chain(&cfg(OcspMode::Strict), &chain, &anchors).await);
        assert!(reason.contains("cannot connect"), "{reason}");
        let reason = lax_reason(check_peer_chain(&cfg(OcspMode::Lax), &chain, &anchors).await);
        assert!(reason.contains("cannot connect"), "{reason}");
    })
    .await
}

#[tokio::test]
async fn silent_responder_hits_the_timeout() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(dir.path(), "ca");
        let url = raw_peer(None).await;
        let node = leaf(dir.path(), &ca, "node", 0x1000_0001, &[&url]);
        let chain = [node.der.clone()];
        let anchors = [ca.der.clone()];
        for mode in [OcspMode::Strict, OcspMode::Lax] {
            let cfg = OcspConfig {
                mode,
                timeout: Duration::from_millis(300),
            };
            let start = Instant::now();
            let got = check_peer_chain(&cfg, &chain, &anchors).await;
            let elapsed = start.elapsed();
            assert!(elapsed < Duration::from_secs(2), "{mode}: took {elapsed:?}");
            assert!(
                elapsed >= Duration::from_millis(250),
                "{mode}: returned early after {elapsed:?}: {got:?}"
            );
            let reason = match mode {
                OcspMode::Strict => failed_reason(got),
                _ => lax_reason(got),
            };
            assert_eq!(reason, "OCSP check timed out after 300ms");
        }
    })
    .await
}

#[tokio::test]
async fn response_signed_by_an_unrelated_key_fails() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(dir.path(), "ca");
        let foreign = make_ca(dir.path(), "foreign");
        let responder = Responder::start(
            dir.path(),
            "foreign",
            &[Entry::Valid(0x1000_0001, "node")],
            &ca,
            &foreign,
        );
        let node = leaf(dir.path(), &ca, "node", 0x1000_0001, &[&responder.url()]);
        let chain = [node.der.clone()];
        let anchors = [ca.der.clone()];
        let reason = failed_reason(check_peer_chain(&cfg(OcspMode::Strict), &chain, &anchors).await);
        assert!(reason.contains("not issued by the certificate's issuer"), "{reason}");
        lax_reason(check_peer_chain(&cfg(OcspMode::Lax), &chain, &anchors).await);

        // An impostor with the CA's very name (so the ResponderID names the issuer) but another key.
        let impostor_dir = dir.path().join("impostor");
        std::fs::create_dir(&impostor_dir).unwrap();
        let impostor = make_ca(&impostor_dir, "ca");
        let responder = Responder::start(
            dir.path(),
            "impostor",
            &[Entry::Valid(0x1000_0001, "node")],
            &ca,
            &impostor,
        );
        let node = leaf(dir.path(), &ca, "node", 0x1000_0001, &[&responder.url()]);
        let reason =
            failed_reason(check_peer_chain(&cfg(OcspMode::Strict), std::slice::from_ref(&node.der), &anchors).await);
        assert!(reason.contains("signature by the issuer does not verify"), "{reason}");
    })
    .await
}

#[tokio::test]
async fn first_definite_answer_wins() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(dir.path(), "ca");
        let responder = Responder::start(dir.path(), "second", &[Entry::Valid(0x1000_0001, "node")], &ca, &ca);
        let node = leaf(dir.path(), &ca, "node", 0x1000_0001, &[&closed_url(), &responder.url()]);
        let got = check_peer_chain(
            &cfg(OcspMode::Strict),
            std::slice::from_ref(&node.der),
            std::slice::from_ref(&ca.der),
        )
        .await;
        assert_eq!(got, Ok(OcspOutcome::Good { checked: 1 }));
    })
    .await
}

#[tokio::test]
async fn intermediate_and_leaf_are_both_checked() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let root = make_ca(dir.path(), "root");
        let root_responder = Responder::start(
            dir.path(),
            "root",
            &[Entry::Valid(0x2000_0001, "intermediate")],
            &root,
            &root,
        );
        // An intermediate CA with its own AIA, signed by the root.
        let key = KeyPair::generate().unwrap();
        let mut params = base_params("intermediate", 0x2000_0001);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        params.custom_extensions.push(CustomExtension::from_oid_content(
            ID_PE_AIA,
            aia(&[&root_responder.url()]),
        ));
        let cert = params.signed_by(&key, &root.issuer).unwrap();
        let inter = write_identity(dir.path(), "intermediate", cert.der().clone(), cert.pem(), key, params);
        let responder = Responder::start(
            dir.path(),
            "inter",
            &[Entry::Valid(0x1000_0001, "node")],
            &inter,
            &inter,
        );
        let node = leaf(dir.path(), &inter, "node", 0x1000_0001, &[&responder.url()]);

        let chain = [node.der.clone(), inter.der.clone()];
        let got = check_peer_chain(&cfg(OcspMode::Strict), &chain, std::slice::from_ref(&root.der)).await;
        assert_eq!(got, Ok(OcspOutcome::Good { checked: 2 }));
    })
    .await
}

#[tokio::test]
async fn mode_off_skips_without_network() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(dir.path(), "ca");
        let node = leaf(dir.path(), &ca, "node", 0x1000_0001, &[&closed_url()]);
        let start = Instant::now();
        let got = check_peer_chain(
            &OcspConfig::default(),
            std::slice::from_ref(&node.der),
            std::slice::from_ref(&ca.der),
        )
        .await;
        assert_eq!(got, Ok(OcspOutcome::Skipped));
        assert!(start.elapsed() < Duration::from_millis(100));
        // Off skips even garbage.
        let junk = [CertificateDer::from(vec![1u8, 2, 3])];
        assert_eq!(
            check_peer_chain(&OcspConfig::default(), &junk, &[]).await,
            Ok(OcspOutcome::Skipped)
        );
    })
    .await
}

#[tokio::test]
async fn chain_without_responders_is_skipped() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(dir.path(), "ca");
        let node = leaf(dir.path(), &ca, "node", 0x1000_0001, &[]);
        let got = check_peer_chain(
            &cfg(OcspMode::Strict),
            &[node.der.clone(), ca.der.clone()],
            std::slice::from_ref(&ca.der),
        )
        .await;
        assert_eq!(got, Ok(OcspOutcome::Skipped));
    })
    .await
}

#[tokio::test]
async fn hostile_or_broken_answers_fail_without_panicking() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(dir.path(), "ca");
        let anchors = [ca.der.clone()];
        let mut huge =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\nConnection: close\r\n\r\n".to_vec();
        huge.extend(std::iter::repeat_n(0x30u8, 2 * 1024 * 1024));
        let cases: Vec<(Option<Vec<u8>>, &str)> = vec![
            (
                Some(http_reply(
                    "200 OK",
                    "application/ocsp-response",
                    b"\x30\x82\xff\xffgarbage",
                )),
                "malformed OCSP response",
            ),
            (
                Some(http_reply(
                    "200 OK",
                    "application/ocsp-response",
                    &[0x30, 0x03, 0x0a, 0x01, 0x06],
                )),
                "Unauthorized",
            ),
            (
                Some(http_reply(
                    "500 Internal Server Error",
                    "application/ocsp-response",
                    b"",
                )),
                "HTTP 500",
            ),
            (
                Some(http_reply("200 OK", "text/html", b"<html></html>")),
                "Content-Type",
            ),
            (Some(huge), "larger than 1048576 bytes"),
            (Some(b"not http at all\r\n\r\n".to_vec()), "HTTP request failed"),
        ];
        for (i, (reply, expected)) in cases.into_iter().enumerate() {
            let url = raw_peer(reply).await;
            let node = leaf(dir.path(), &ca, &format!("node{i}"), 0x1000_0010 + i as u32, &[&url]);
            let reason = failed_reason(
                check_peer_chain(&cfg(OcspMode::Strict), std::slice::from_ref(&node.der), &anchors).await,
            );
            assert!(reason.contains(expected), "case {i}: {reason}");
        }
        // https responders are refused with a clear reason.
        let node = leaf(dir.path(), &ca, "tls", 0x1000_0020, &["https://127.0.0.1:1/"]);
        let reason =
            failed_reason(check_peer_chain(&cfg(OcspMode::Strict), std::slice::from_ref(&node.der), &anchors).await);
        assert!(reason.contains("https responder URLs are not supported"), "{reason}");
    })
    .await
}

#[tokio::test]
async fn unknown_issuer_fails() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(dir.path(), "ca");
        let other = make_ca(dir.path(), "other");
        let node = leaf(dir.path(), &ca, "node", 0x1000_0001, &[&closed_url()]);
        let reason = failed_reason(
            check_peer_chain(
                &cfg(OcspMode::Strict),
                std::slice::from_ref(&node.der),
                std::slice::from_ref(&other.der),
            )
            .await,
        );
        assert!(
            reason.contains("issuer is neither in the chain nor a trust anchor"),
            "{reason}"
        );
    })
    .await
}

/// Log lines of the whole test process (only the listener test reads them).
#[derive(Clone, Default)]
struct GlobalLogs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for GlobalLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn listener_refuses_a_peer_revoked_at_the_responder_before_serving_a_byte() {
    use moat_tls::principal::IdentityPolicy;
    use moat_tls::store::{CertStore, StoreRole};
    use std::os::unix::fs::PermissionsExt;

    let logs = GlobalLogs::default();
    let sink = logs.clone();
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish(),
    );
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(dir.path(), "ca");
        let entries = [Entry::Valid(0x2000_0002, "root"), Entry::Revoked(0x2000_0003, "alice")];
        let responder = Responder::start(dir.path(), "listener", &entries, &ca, &ca);
        let node = make_cert(
            dir.path(),
            &ca,
            "node",
            0x2000_0001,
            &[],
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        );
        let root = leaf(dir.path(), &ca, "root", 0x2000_0002, &[&responder.url()]);
        let alice = leaf(dir.path(), &ca, "alice", 0x2000_0003, &[&responder.url()]);
        // A certs directory for the node.
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        std::fs::copy(&ca.cert_path, certs.join("ca.crt")).unwrap();
        std::fs::copy(&node.cert_path, certs.join("node.crt")).unwrap();
        std::fs::copy(&node.key_path, certs.join("node.key")).unwrap();
        std::fs::set_permissions(certs.join("node.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let store = CertStore::open(&certs, StoreRole::Node, IdentityPolicy::default()).unwrap();

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    return;
                };
                let snap = store.snapshot();
                tokio::spawn(async move {
                    let Ok(mut tls) =
                        moat_tls::accept::handshake(snap.sql_server(), tcp, peer, "sql", Duration::from_secs(5)).await
                    else {
                        return;
                    };
                    let chain = tls.get_ref().1.peer_certificates().map(|c| c.to_vec());
                    let anchors = snap.material.client_anchor_certs();
                    if moat_tls::accept::check_ocsp(&cfg(OcspMode::Strict), chain.as_deref(), &anchors, peer, "sql")
                        .await
                        .is_err()
                    {
                        return; // dropped: not a byte served
                    }
                    let _ = tls.write_all(b"hello\n").await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        let s_client = |who: &Identity| {
            let (cert, key) = (who.cert_path.clone(), who.key_path.clone());
            async move {
                let out = tokio::process::Command::new("openssl")
                    .args(["s_client", "-connect", &addr.to_string(), "-ign_eof", "-CAfile"])
                    .arg(certs_ca(&cert))
                    .arg("-cert")
                    .arg(&cert)
                    .arg("-key")
                    .arg(&key)
                    .stdin(Stdio::null())
                    .output()
                    .await
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).contains("hello")
            }
        };
        assert!(
            s_client(&root).await,
            "a good certificate is served; {}",
            responder.log()
        );
        assert!(!s_client(&alice).await, "a revoked certificate gets nothing");
        let mut text = String::new();
        for _ in 0..100 {
            text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
            if text.contains("reason=\"revoked\"") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            text.contains("reason=\"revoked\"") && text.contains("CN=alice"),
            "{text}"
        );
        server.abort();
    })
    .await
}

/// The CA file beside a test identity's certificate.
fn certs_ca(cert: &Path) -> PathBuf {
    cert.parent().unwrap().join("ca.crt")
}
