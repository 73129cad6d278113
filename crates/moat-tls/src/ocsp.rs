//! OCSP checks of a verified peer chain (CockroachDB's `security.ocsp.mode`).
//!
//! After a handshake has verified the peer's chain, [`check_peer_chain`] asks the
//! OCSP responder named in each certificate's Authority Information Access
//! extension whether that certificate is still good. This is network I/O, so it
//! runs after the handshake and before the first byte is served (never inside
//! rustls' synchronous verifier callbacks).
//!
//! What it does, per certificate of the chain that names responders (self-signed
//! roots are skipped):
//! - finds the issuer (the next certificate of the chain, else a trust anchor
//!   whose subject is the certificate's issuer and whose key verifies it);
//! - builds an OCSP request with a SHA-256 CertID and POSTs it
//!   (`Content-Type: application/ocsp-request`, plain `http://` only) to each
//!   responder URL concurrently, the first definite answer winning;
//! - requires HTTP 200 with `application/ocsp-response` (body capped at 1 MiB),
//!   parses the BasicOCSPResponse and verifies its signature with aws-lc-rs: the
//!   signer is the issuer itself, or a delegated responder certificate carried in
//!   the response, signed by the issuer, valid now and holding the
//!   id-kp-OCSPSigning extended key usage;
//! - checks that the answer is for the certificate asked about (same CertID),
//!   that `thisUpdate` is not in the future and `nextUpdate` (if any) not past,
//!   both with 5 minutes of allowed clock skew.
//!
//! A revoked certificate is always an error. Any other failure (status unknown,
//! network error, timeout, bad signature, malformed answer) is an error in
//! [`OcspMode::Strict`] and a logged warning in [`OcspMode::Lax`]. The whole check
//! is bounded by [`OcspConfig::timeout`].

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use bytes::Bytes;
use der::asn1::{Null, ObjectIdentifier, OctetString};
use der::{Decode, DecodeValue, Encode, Header, Length, Reader, SliceReader, Tag};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, ACCEPT, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls_pki_types::CertificateDer;
use spki::AlgorithmIdentifierOwned;
use tokio::net::TcpStream;
use tokio::task::{JoinHandle, JoinSet};
use x509_cert::serial_number::SerialNumber;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, ResponderId, SingleResponse,
    TbsRequest, Version,
};
use x509_parser::asn1_rs::BitString;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_OCSP;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;
use x509_parser::x509::AlgorithmIdentifier;

/// Largest OCSP response body accepted, in bytes.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Clock skew tolerated on `thisUpdate` and `nextUpdate`.
const ALLOWED_SKEW: Duration = Duration::from_secs(5 * 60);
/// At most this many responder URLs of one certificate are asked.
const MAX_URLS_PER_CERT: usize = 8;
/// The media types of OCSP over HTTP (RFC 6960, appendix A).
const OCSP_REQUEST_TYPE: &str = "application/ocsp-request";
const OCSP_RESPONSE_TYPE: &str = "application/ocsp-response";

const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
/// Signature algorithms refused for OCSP responses and responder certificates
/// (MD5 and SHA-1 based).
const WEAK_SIGNATURE_OIDS: &[&str] = &[
    "1.2.840.113549.1.1.4", // md5WithRSAEncryption
    "1.2.840.113549.1.1.5", // sha1WithRSAEncryption
    "1.3.14.3.2.29",        // sha1WithRSA (OIW)
    "1.2.840.10045.4.1",    // ecdsa-with-SHA1
    "1.2.840.10040.4.3",    // dsa-with-sha1
];

/// How OCSP is used (CockroachDB's `security.ocsp.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OcspMode {
    /// No OCSP check at all (the default).
    #[default]
    Off,
    /// Check; a revoked certificate fails, any other problem is logged and accepted.
    Lax,
    /// Check; anything but a verified "good" answer for every certificate fails.
    Strict,
}

impl OcspMode {
    /// The setting's spelling: `off`, `lax` or `strict`.
    pub fn as_str(self) -> &'static str {
        match self {
            OcspMode::Off => "off",
            OcspMode::Lax => "lax",
            OcspMode::Strict => "strict",
        }
    }
}

impl fmt::Display for OcspMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OcspMode {
    type Err = String;

    /// Parses `off`, `lax` or `strict` (any case, surrounding spaces ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(OcspMode::Off),
            "lax" => Ok(OcspMode::Lax),
            "strict" => Ok(OcspMode::Strict),
            _ => Err(format!("invalid OCSP mode {s:?}: expected off, lax or strict")),
        }
    }
}

/// OCSP settings: the mode and the time bound of one whole chain check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OcspConfig {
    /// Off, lax or strict.
    pub mode: OcspMode,
    /// Upper bound on the whole check of one chain (CockroachDB's `security.ocsp.timeout`).
    pub timeout: Duration,
}

impl Default for OcspConfig {
    /// Off, with a 3 s timeout (CockroachDB's defaults).
    fn default() -> Self {
        OcspConfig {
            mode: OcspMode::Off,
            timeout: Duration::from_secs(3),
        }
    }
}

/// The result of a chain check that lets the connection go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OcspOutcome {
    /// Nothing was checked: the mode is off, or no certificate names a responder.
    Skipped,
    /// Every certificate that names a responder got a verified "good" answer.
    Good {
        /// How many certificates were checked.
        checked: usize,
    },
    /// Lax mode: the check could not conclude, and the connection is accepted anyway.
    LaxAccepted {
        /// Why the check could not conclude.
        reason: String,
    },
}

/// Why a chain check refuses the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcspError {
    /// A responder answered, with a verified signature, that the certificate is revoked.
    #[error("OCSP responder says certificate {subject} (serial {serial}) is revoked")]
    Revoked {
        /// Subject of the revoked certificate.
        subject: String,
        /// Its serial number, upper-case hex.
        serial: String,
    },
    /// Strict mode: the check could not conclude.
    #[error("OCSP check failed in strict mode: {reason}")]
    Failed {
        /// What failed.
        reason: String,
    },
}

/// The OCSP responder URLs a certificate names in its Authority Information Access extension.
///
/// Returns an empty list when there are none or the certificate cannot be parsed.
pub fn responder_urls(cert: &CertificateDer<'_>) -> Vec<String> {
    match X509Certificate::from_der(cert.as_ref()) {
        Ok((_, cert)) => urls_of(&cert),
        Err(_) => Vec::new(),
    }
}

fn urls_of(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut urls = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() {
            for desc in &aia.accessdescs {
                if desc.access_method == OID_PKIX_ACCESS_DESCRIPTOR_OCSP {
                    if let GeneralName::URI(uri) = &desc.access_location {
                        urls.push((*uri).to_string());
                    }
                }
            }
        }
    }
    urls
}

/// Checks every certificate of a verified peer chain that names an OCSP responder.
///
/// `chain` is the peer's chain as presented (leaf first), already verified;
/// `trust_anchors` are the CA certificates it was verified against, used to find
/// the issuer of the last chain certificate. See the module documentation for the
/// exact rules.
pub async fn check_peer_chain(
    cfg: &OcspConfig,
    chain: &[CertificateDer<'_>],
    trust_anchors: &[CertificateDer<'_>],
) -> Result<OcspOutcome, OcspError> {
    if cfg.mode == OcspMode::Off {
        return Ok(OcspOutcome::Skipped);
    }
    let result = match tokio::time::timeout(cfg.timeout, check_chain(chain, trust_anchors)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Other(format!("OCSP check timed out after {:?}", cfg.timeout))),
    };
    match result {
        Ok(outcome) => Ok(outcome),
        Err(Failure::Revoked { subject, serial }) => Err(OcspError::Revoked { subject, serial }),
        Err(Failure::Other(reason)) => match cfg.mode {
            OcspMode::Strict => Err(OcspError::Failed { reason }),
            _ => {
                tracing::warn!(%reason, "OCSP check failed; accepting the peer in lax mode");
                Ok(OcspOutcome::LaxAccepted { reason })
            }
        },
    }
}

/// Internal result of a chain check, before the mode decides.
enum Failure {
    Revoked { subject: String, serial: String },
    Other(String),
}

/// One certificate to ask about.
struct Target {
    subject: String,
    serial: String,
    /// The CertID sent, compared with the one answered.
    cert_id: CertId,
    /// The DER of the OCSP request.
    request: Vec<u8>,
    /// The issuer's certificate (DER): signer of direct answers, issuer of delegated responders.
    issuer: Vec<u8>,
    urls: Vec<String>,
}

/// What one responder said about one certificate.
enum Answer {
    Good,
    Revoked,
}

async fn check_chain(
    chain: &[CertificateDer<'_>],
    trust_anchors: &[CertificateDer<'_>],
) -> Result<OcspOutcome, Failure> {
    let targets = build_targets(chain, trust_anchors).map_err(Failure::Other)?;
    if targets.is_empty() {
        return Ok(OcspOutcome::Skipped);
    }
    let targets: Vec<Arc<Target>> = targets.into_iter().map(Arc::new).collect();
    let mut set = JoinSet::new();
    for (index, target) in targets.iter().enumerate() {
        for url in &target.urls {
            let target = Arc::clone(target);
            let url = url.clone();
            set.spawn(async move {
                let answer = query(&target, &url).await;
                (index, url, answer)
            });
        }
    }

    let mut good = vec![false; targets.len()];
    let mut errors: Vec<Vec<String>> = vec![Vec::new(); targets.len()];
    let mut task_errors = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (index, url, answer) = match joined {
            Ok(v) => v,
            Err(e) => {
                task_errors.push(format!("OCSP query task failed: {e}"));
                continue;
            }
        };
        match answer {
            Ok(Answer::Revoked) => {
                let t = &targets[index];
                return Err(Failure::Revoked {
                    subject: t.subject.clone(),
                    serial: t.serial.clone(),
                });
            }
            Ok(Answer::Good) => {
                good[index] = true;
                if good.iter().all(|g| *g) {
                    break;
                }
            }
            Err(reason) => errors[index].push(format!("{url}: {reason}")),
        }
    }
    if good.iter().all(|g| *g) {
        return Ok(OcspOutcome::Good { checked: targets.len() });
    }
    let mut reasons = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        if good[index] {
            continue;
        }
        let why = if errors[index].is_empty() {
            "no answer".to_string()
        } else {
            errors[index].join(", ")
        };
        reasons.push(format!(
            "certificate {} (serial {}): {why}",
            target.subject, target.serial
        ));
    }
    reasons.extend(task_errors);
    Err(Failure::Other(reasons.join("; ")))
}

/// Picks the certificates to check and prepares their requests.
fn build_targets(chain: &[CertificateDer<'_>], trust_anchors: &[CertificateDer<'_>]) -> Result<Vec<Target>, String> {
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        let (_, cert) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| format!("cannot parse certificate #{i} of the peer chain: {e}"))?;
        parsed.push(cert);
    }
    let mut anchors = Vec::with_capacity(trust_anchors.len());
    for der in trust_anchors {
        // An unparsable anchor cannot be anybody's issuer: ignore it.
        if let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) {
            anchors.push((cert, der.as_ref()));
        }
    }

    let mut targets = Vec::new();
    for (i, cert) in parsed.iter().enumerate() {
        let mut urls = urls_of(cert);
        if urls.is_empty() || is_self_signed(cert) {
            continue;
        }
        urls.truncate(MAX_URLS_PER_CERT);
        let subject = cert.subject().to_string();
        let serial = serial_hex(cert.raw_serial());
        let next = parsed.get(i + 1).map(|c| (c, chain[i + 1].as_ref()));
        let issuer = next
            .into_iter()
            .chain(anchors.iter().map(|(c, der)| (c, *der)))
            .find(|(candidate, _)| issued_by(cert, candidate))
            .map(|(_, der)| der.to_vec())
            .ok_or_else(|| {
                format!(
                    "certificate {subject} (serial {serial}): its issuer is neither in the chain nor a trust anchor"
                )
            })?;
        let (_, issuer_cert) =
            X509Certificate::from_der(&issuer).map_err(|e| format!("cannot parse issuer of {subject}: {e}"))?;
        let cert_id = cert_id(cert, &issuer_cert)
            .map_err(|e| format!("certificate {subject} (serial {serial}): cannot build OCSP CertID: {e}"))?;
        let request = OcspRequest {
            tbs_request: TbsRequest {
                version: Version::V1,
                requestor_name: None,
                request_list: vec![x509_ocsp::Request {
                    req_cert: cert_id.clone(),
                    single_request_extensions: None,
                }],
                request_extensions: None,
            },
            optional_signature: None,
        }
        .to_der()
        .map_err(|e| format!("certificate {subject} (serial {serial}): cannot encode OCSP request: {e}"))?;
        targets.push(Target {
            subject,
            serial,
            cert_id,
            request,
            issuer,
            urls,
        });
    }
    Ok(targets)
}

fn is_self_signed(cert: &X509Certificate<'_>) -> bool {
    cert.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(None).is_ok()
}

/// Whether `issuer` names `cert`'s issuer and its key verifies `cert`'s signature.
fn issued_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    let same_name = cert.issuer().as_raw() == issuer.subject().as_raw()
        || cert.issuer().to_string() == issuer.subject().to_string();
    same_name && cert.verify_signature(Some(issuer.public_key())).is_ok()
}

/// Serial number as upper-case hex without leading zero bytes (the form of OpenSSL's index files).
fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len().saturating_sub(1));
    raw[start..].iter().map(|b| format!("{b:02X}")).collect()
}

/// The SHA-256 CertID of `cert` (RFC 6960 §4.1.1).
fn cert_id(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> Result<CertId, der::Error> {
    let raw_serial = cert.raw_serial();
    let header = Header::new(Tag::Integer, Length::try_from(raw_serial.len())?)?;
    let serial_number = SerialNumber::decode_value(&mut SliceReader::new(raw_serial)?, header)?;
    Ok(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: OID_SHA256,
            parameters: Some(Null.into()),
        },
        issuer_name_hash: OctetString::new(digest::digest(&digest::SHA256, issuer.subject().as_raw()).as_ref())?,
        issuer_key_hash: OctetString::new(
            digest::digest(&digest::SHA256, &issuer.public_key().subject_public_key.data).as_ref(),
        )?,
        serial_number,
    })
}

/// Asks one responder about one certificate.
async fn query(target: &Target, url: &str) -> Result<Answer, String> {
    let body = post(url, target.request.clone()).await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    evaluate(&body, target, now)
}

/// Aborts a spawned task when dropped (the HTTP connection driver of an abandoned query).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// POSTs an OCSP request over plain HTTP/1.1 and returns the response body.
async fn post(url: &str, request: Vec<u8>) -> Result<Vec<u8>, String> {
    let uri: Uri = url.parse().map_err(|e| format!("invalid responder URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err("https responder URLs are not supported (OCSP is fetched over plain http)".to_string())
        }
        _ => return Err("unsupported responder URL scheme (only http:// is supported)".to_string()),
    }
    let authority = uri.authority().ok_or("responder URL has no host")?.clone();
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let path = if path.is_empty() { "/" } else { path };

    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));

    let host_header = HeaderValue::from_str(authority.as_str()).map_err(|e| format!("invalid Host header: {e}"))?;
    let req = Request::post(path)
        .header(HOST, host_header)
        .header(CONTENT_TYPE, OCSP_REQUEST_TYPE)
        .header(ACCEPT, OCSP_RESPONSE_TYPE)
        .header(CONNECTION, "close")
        .body(Full::new(Bytes::from(request)))
        .map_err(|e| format!("cannot build HTTP request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP request failed: {e}"))?;

    if resp.status() != StatusCode::OK {
        return Err(format!("responder answered HTTP {}", resp.status()));
    }
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case(OCSP_RESPONSE_TYPE) {
        return Err(format!(
            "responder answered Content-Type {content_type:?}, expected {OCSP_RESPONSE_TYPE}"
        ));
    }
    let too_large = || format!("response body larger than {MAX_RESPONSE_BYTES} bytes");
    if let Some(len) = resp.headers().get(CONTENT_LENGTH) {
        let len = len.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok());
        if len.is_some_and(|len| len > MAX_RESPONSE_BYTES as u64) {
            return Err(too_large());
        }
    }
    let collected = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                format!("cannot read response body: {e}")
            }
        })?;
    Ok(collected.to_bytes().to_vec())
}

/// Parses and verifies an OCSP response for `target`. `now` is the time since the Unix epoch.
fn evaluate(body: &[u8], target: &Target, now: Duration) -> Result<Answer, String> {
    let response = OcspResponse::from_der(body).map_err(|e| format!("malformed OCSP response: {e}"))?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(format!("responder answered status {:?}", response.response_status));
    }
    let bytes = response
        .response_bytes
        .ok_or("successful OCSP response without a body")?;
    if bytes.response_type != OID_OCSP_BASIC {
        return Err(format!("unsupported OCSP response type {}", bytes.response_type));
    }
    let basic_der = bytes.response.as_bytes();
    let basic = BasicOcspResponse::from_der(basic_der).map_err(|e| format!("malformed BasicOCSPResponse: {e}"))?;
    let tbs = raw_first_element(basic_der).map_err(|e| format!("malformed BasicOCSPResponse: {e}"))?;
    let signature = basic
        .signature
        .as_bytes()
        .ok_or("OCSP response signature is not a whole number of bytes")?;

    let (_, issuer) = X509Certificate::from_der(&target.issuer).map_err(|e| format!("cannot parse issuer: {e}"))?;
    verify_response_signer(&basic, tbs, signature, &issuer, now)?;

    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| same_cert_id(&r.cert_id, &target.cert_id))
        .ok_or("OCSP response does not cover the certificate asked about (CertID mismatch)")?;
    check_times(single, now)?;
    match single.cert_status {
        CertStatus::Good(_) => Ok(Answer::Good),
        CertStatus::Revoked(_) => Ok(Answer::Revoked),
        CertStatus::Unknown(_) => Err("responder does not know the certificate (status unknown)".to_string()),
    }
}

/// The complete encoding (tag, length, value) of the first element of a DER SEQUENCE:
/// the signed bytes of a BasicOCSPResponse, exactly as received.
fn raw_first_element(der: &[u8]) -> der::Result<&[u8]> {
    let mut reader = SliceReader::new(der)?;
    let header = Header::decode(&mut reader)?;
    header.tag.assert_eq(Tag::Sequence)?;
    reader.tlv_bytes()
}

/// Finds who signed the response and verifies the signature.
fn verify_response_signer(
    basic: &BasicOcspResponse,
    tbs: &[u8],
    signature: &[u8],
    issuer: &X509Certificate<'_>,
    now: Duration,
) -> Result<(), String> {
    let responder_id = &basic.tbs_response_data.responder_id;
    if responder_is(responder_id, issuer) {
        return verify_signature(issuer, &basic.signature_algorithm, signature, tbs)
            .map_err(|e| format!("OCSP response signature by the issuer does not verify: {e}"));
    }
    let mut last_error = None;
    for cert in basic.certs.iter().flatten() {
        let der = match cert.to_der() {
            Ok(der) => der,
            Err(e) => {
                last_error = Some(format!("cannot encode a responder certificate: {e}"));
                continue;
            }
        };
        let (_, responder) = match X509Certificate::from_der(&der) {
            Ok(parsed) => parsed,
            Err(e) => {
                last_error = Some(format!("cannot parse a responder certificate: {e}"));
                continue;
            }
        };
        if !responder_is(responder_id, &responder) {
            continue;
        }
        match check_delegated_responder(&responder, issuer, now)
            .and_then(|()| verify_signature(&responder, &basic.signature_algorithm, signature, tbs))
        {
            Ok(()) => return Ok(()),
            Err(e) => last_error = Some(format!("delegated responder {}: {e}", responder.subject())),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        "OCSP response is signed by neither the issuer nor a responder certificate it includes".to_string()
    }))
}

/// Whether a ResponderID designates `cert` (by subject name, or by SHA-1 of its public key).
fn responder_is(id: &ResponderId, cert: &X509Certificate<'_>) -> bool {
    match id {
        ResponderId::ByName(name) => name.to_der().is_ok_and(|der| der == cert.subject().as_raw()),
        ResponderId::ByKey(hash) => {
            let key = &cert.public_key().subject_public_key.data;
            digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, key).as_ref() == hash.as_bytes()
        }
    }
}

/// A delegated responder must be issued by the certificate's issuer, be valid now and
/// carry the id-kp-OCSPSigning extended key usage.
fn check_delegated_responder(
    responder: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
    now: Duration,
) -> Result<(), String> {
    if responder.issuer().as_raw() != issuer.subject().as_raw() {
        return Err("not issued by the certificate's issuer".to_string());
    }
    refuse_weak(&responder.signature_algorithm.algorithm.to_id_string())?;
    responder
        .verify_signature(Some(issuer.public_key()))
        .map_err(|e| format!("not signed by the certificate's issuer ({e})"))?;
    let at = i64::try_from(now.as_secs())
        .ok()
        .and_then(|s| ASN1Time::from_timestamp(s).ok())
        .ok_or("current time out of range")?;
    if !responder.validity().is_valid_at(at) {
        return Err("not valid now".to_string());
    }
    match responder.extended_key_usage() {
        Ok(Some(eku)) if eku.value.ocsp_signing => Ok(()),
        Ok(_) => Err("lacks the OCSPSigning extended key usage".to_string()),
        Err(e) => Err(format!("unreadable extended key usage: {e}")),
    }
}

fn refuse_weak(oid: &str) -> Result<(), String> {
    if WEAK_SIGNATURE_OIDS.contains(&oid) {
        Err(format!("signature algorithm {oid} (MD5/SHA-1) is refused"))
    } else {
        Ok(())
    }
}

/// Verifies `signature` over `message` with `signer`'s public key (aws-lc-rs, through
/// x509-parser's `verify-aws` backend, which maps the algorithm identifiers).
fn verify_signature(
    signer: &X509Certificate<'_>,
    algorithm: &AlgorithmIdentifierOwned,
    signature: &[u8],
    message: &[u8],
) -> Result<(), String> {
    refuse_weak(&algorithm.oid.to_string())?;
    let alg_der = algorithm
        .to_der()
        .map_err(|e| format!("cannot encode signature algorithm: {e}"))?;
    let (_, alg) = AlgorithmIdentifier::from_der(&alg_der).map_err(|e| format!("bad signature algorithm: {e}"))?;
    let sig = BitString {
        unused_bits: 0,
        data: Cow::Borrowed(signature),
    };
    x509_parser::verify::verify_signature(signer.public_key(), &alg, &sig, message).map_err(|e| match e {
        x509_parser::error::X509Error::SignatureUnsupportedAlgorithm => {
            format!("unsupported signature algorithm {}", algorithm.oid)
        }
        _ => "bad signature".to_string(),
    })
}

fn same_cert_id(a: &CertId, b: &CertId) -> bool {
    a.hash_algorithm.oid == b.hash_algorithm.oid
        && a.issuer_name_hash == b.issuer_name_hash
        && a.issuer_key_hash == b.issuer_key_hash
        && a.serial_number.as_bytes() == b.serial_number.as_bytes()
}

fn check_times(single: &SingleResponse, now: Duration) -> Result<(), String> {
    let this_update = single.this_update.0.to_unix_duration();
    if this_update > now + ALLOWED_SKEW {
        return Err(format!(
            "OCSP response thisUpdate {} is in the future",
            single.this_update.0.to_date_time()
        ));
    }
    if let Some(next_update) = &single.next_update {
        if next_update.0.to_unix_duration() + ALLOWED_SKEW < now {
            return Err(format!(
                "OCSP response expired (nextUpdate {})",
                next_update.0.to_date_time()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_parses_and_displays() {
        for mode in [OcspMode::Off, OcspMode::Lax, OcspMode::Strict] {
            assert_eq!(mode.to_string().parse::<OcspMode>(), Ok(mode));
        }
        assert_eq!(" Strict ".parse::<OcspMode>(), Ok(OcspMode::Strict));
        assert!("on".parse::<OcspMode>().is_err());
        assert_eq!(OcspMode::default(), OcspMode::Off);
        let cfg = OcspConfig::default();
        assert_eq!((cfg.mode, cfg.timeout), (OcspMode::Off, Duration::from_secs(3)));
    }

    #[test]
    fn serial_hex_strips_leading_zeros() {
        assert_eq!(serial_hex(&[0x00, 0x8A, 0x01]), "8A01");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[]), "");
    }

    #[test]
    fn garbage_never_panics() {
        assert!(responder_urls(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01])).is_empty());
        assert!(raw_first_element(&[0x30, 0x80]).is_err());
        assert!(raw_first_element(&[]).is_err());
    }
}
