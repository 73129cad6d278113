//! Reading certificates: PEM bundles and a readable summary of each
//! certificate (subject, SANs, issuer, validity, usages, key type).

use std::net::IpAddr;
use std::path::Path;

use rustls_pki_types::CertificateDer;
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{PkiError, Result};

/// Parses a PEM file that must hold one or more `CERTIFICATE` blocks and
/// nothing else (CockroachDB's rule: a key concatenated into a cert file makes
/// the whole file an error).
pub fn parse_cert_pem(path: &Path, text: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let fix = "the file must hold only PEM CERTIFICATE blocks";
    let blocks = pem::parse_many(text).map_err(|e| PkiError::bad_file(path, format!("not valid PEM ({e})"), fix))?;
    if blocks.is_empty() {
        return Err(PkiError::bad_file(path, "no certificates found", fix));
    }
    let mut out = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        if b.tag() != "CERTIFICATE" {
            let hint = if b.tag().contains("PRIVATE KEY") {
                "a private key does not belong in a certificate file: move it to the .key file"
            } else {
                fix
            };
            return Err(PkiError::bad_file(
                path,
                format!("block #{} is of type {}, not CERTIFICATE", i + 1, b.tag()),
                hint,
            ));
        }
        X509Certificate::from_der(b.contents()).map_err(|e| {
            PkiError::bad_file(
                path,
                format!("block #{} is not a valid X.509 certificate ({e})", i + 1),
                "the file may be truncated or corrupt: regenerate or recopy it",
            )
        })?;
        out.push(CertificateDer::from(b.contents().to_vec()));
    }
    Ok(out)
}

/// Reads and parses a PEM certificate file.
pub fn read_cert_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let text = std::fs::read(path).map_err(|e| PkiError::io(path, e, "check the path and its permissions"))?;
    parse_cert_pem(path, &text)
}

/// Encodes certificates as PEM.
pub fn certs_to_pem(certs: &[CertificateDer<'_>]) -> String {
    let cfg = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    certs
        .iter()
        .map(|c| pem::encode_config(&pem::Pem::new("CERTIFICATE", c.as_ref().to_vec()), cfg))
        .collect()
}

/// A readable summary of one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    /// Subject DN in RFC 4514 form.
    pub subject: String,
    /// The subject's first common name.
    pub common_name: Option<String>,
    /// Issuer DN in RFC 4514 form.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// URI subject alternative names.
    pub uris: Vec<String>,
    /// Basic Constraints CA flag.
    pub is_ca: bool,
    /// Basic Constraints path length, if any.
    pub path_len: Option<u32>,
    /// Key usages (`digitalSignature`, `keyCertSign`, ...).
    pub key_usage: Vec<String>,
    /// Extended key usages (`serverAuth`, `clientAuth`, ...).
    pub ext_key_usage: Vec<String>,
    /// Key type (`ECDSA P-256`, `RSA 2048`, `Ed25519`).
    pub key_type: String,
    /// Subject equals issuer.
    pub self_signed: bool,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
    /// OCSP responder URLs from the Authority Information Access extension.
    pub ocsp_urls: Vec<String>,
    /// The raw public key bits (for key matching); not serialised.
    #[serde(skip)]
    pub public_key_raw: Vec<u8>,
}

impl CertInfo {
    /// Summarises a DER certificate.
    pub fn from_der(der: &[u8]) -> std::result::Result<CertInfo, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("not a valid X.509 certificate ({e})"))?;
        let tbs = &cert.tbs_certificate;
        let mut info = CertInfo {
            subject: tbs.subject.to_string(),
            common_name: tbs
                .subject
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            issuer: tbs.issuer.to_string(),
            serial: hex::encode(tbs.raw_serial()),
            not_before: tbs.validity.not_before.to_datetime(),
            not_after: tbs.validity.not_after.to_datetime(),
            dns_names: vec![],
            ip_addresses: vec![],
            uris: vec![],
            is_ca: false,
            path_len: None,
            key_usage: vec![],
            ext_key_usage: vec![],
            key_type: describe_spki(&tbs.subject_pki),
            self_signed: tbs.subject.as_raw() == tbs.issuer.as_raw(),
            sha256: hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)),
            ocsp_urls: vec![],
            public_key_raw: tbs.subject_pki.subject_public_key.data.to_vec(),
        };
        if let Ok(Some(bc)) = cert.basic_constraints() {
            info.is_ca = bc.value.ca;
            info.path_len = bc.value.path_len_constraint;
        }
        if let Ok(Some(ku)) = cert.key_usage() {
            let k = ku.value;
            for (on, name) in [
                (k.digital_signature(), "digitalSignature"),
                (k.non_repudiation(), "contentCommitment"),
                (k.key_encipherment(), "keyEncipherment"),
                (k.data_encipherment(), "dataEncipherment"),
                (k.key_agreement(), "keyAgreement"),
                (k.key_cert_sign(), "keyCertSign"),
                (k.crl_sign(), "cRLSign"),
            ] {
                if on {
                    info.key_usage.push(name.into());
                }
            }
        }
        if let Ok(Some(eku)) = cert.extended_key_usage() {
            let e = eku.value;
            for (on, name) in [
                (e.any, "any"),
                (e.server_auth, "serverAuth"),
                (e.client_auth, "clientAuth"),
                (e.code_signing, "codeSigning"),
                (e.email_protection, "emailProtection"),
                (e.time_stamping, "timeStamping"),
                (e.ocsp_signing, "OCSPSigning"),
            ] {
                if on {
                    info.ext_key_usage.push(name.into());
                }
            }
            info.ext_key_usage.extend(e.other.iter().map(|o| o.to_id_string()));
        }
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => info.dns_names.push((*d).to_owned()),
                    GeneralName::URI(u) => info.uris.push((*u).to_owned()),
                    GeneralName::IPAddress(b) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*b) {
                            info.ip_addresses.push(IpAddr::from(a));
                        } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                            info.ip_addresses.push(IpAddr::from(a));
                        }
                    }
                    _ => {}
                }
            }
        }
        for ext in cert.extensions() {
            if let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() {
                for desc in &aia.accessdescs {
                    if desc.access_method.to_id_string() == "1.3.6.1.5.5.7.48.1" {
                        if let GeneralName::URI(u) = desc.access_location {
                            info.ocsp_urls.push(u.to_owned());
                        }
                    }
                }
            }
        }
        Ok(info)
    }

    /// Whether the certificate allows the given extended key usage (a
    /// certificate without the extension allows every usage).
    pub fn allows_eku(&self, eku: &str) -> bool {
        self.ext_key_usage.is_empty() || self.ext_key_usage.iter().any(|e| e == eku || e == "any")
    }

    /// Whole days until expiry (negative once expired).
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }
}

/// The type of a public key, read from its SubjectPublicKeyInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA with the modulus size in bits.
    Rsa(usize),
    /// Ed25519.
    Ed25519,
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// ECDSA on P-521.
    EcdsaP521,
    /// Anything else, with its algorithm (and curve) OID.
    Other(String),
}

impl KeyKind {
    /// Classifies a SubjectPublicKeyInfo.
    pub fn of(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> KeyKind {
        let alg = spki.algorithm.algorithm.to_id_string();
        match alg.as_str() {
            "1.2.840.113549.1.1.1" => KeyKind::Rsa(rsa_modulus_bits(&spki.subject_public_key.data).unwrap_or(0)),
            "1.3.101.112" => KeyKind::Ed25519,
            "1.2.840.10045.2.1" => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .unwrap_or_default();
                match curve.as_str() {
                    "1.2.840.10045.3.1.7" => KeyKind::EcdsaP256,
                    "1.3.132.0.34" => KeyKind::EcdsaP384,
                    "1.3.132.0.35" => KeyKind::EcdsaP521,
                    other => KeyKind::Other(format!("ECDSA ({other})")),
                }
            }
            other => KeyKind::Other(format!("unknown ({other})")),
        }
    }
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::Rsa(bits) => write!(f, "RSA {bits}"),
            KeyKind::Ed25519 => f.write_str("Ed25519"),
            KeyKind::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyKind::EcdsaP384 => f.write_str("ECDSA P-384"),
            KeyKind::EcdsaP521 => f.write_str("ECDSA P-521"),
            KeyKind::Other(s) => f.write_str(s),
        }
    }
}

fn describe_spki(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> String {
    KeyKind::of(spki).to_string()
}

/// The modulus size in bits of a DER `RSAPublicKey`.
pub fn rsa_modulus_bits(rsa_public_key_der: &[u8]) -> Option<usize> {
    let (_, key) = x509_parser::public_key::RSAPublicKey::from_der(rsa_public_key_der).ok()?;
    Some(key.key_size())
}
