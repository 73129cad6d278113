//! Certificate signing requests: a node or user makes its key and a CSR
//! locally (the key never leaves), and the CA holder signs the CSR. The CA,
//! not the request, decides the profile, the usages, the names and the
//! validity; a request that asks for more than its profile grants is refused
//! with the reason.

use std::path::Path;

use rcgen::{
    CertificateSigningRequestParams, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType,
};

use crate::inspect::{rsa_modulus_bits, KeyKind};
use crate::profile::Profile;
use crate::{username, PkiError, Result};

/// What a CSR asks for, after its signature was verified.
pub struct ParsedCsr {
    /// The verified request.
    pub request: CertificateSigningRequestParams,
    /// The subject common name, if any.
    pub common_name: Option<String>,
    /// Requested DNS and IP names, as host strings.
    pub hosts: Vec<String>,
    /// The subject's public key, with its algorithm read from the key itself.
    pub public_key: CsrPublicKey,
}

/// A CSR's public key. rcgen infers the key's algorithm from the CSR's
/// *signature* algorithm, which is wrong for e.g. a P-384 key signed with
/// SHA-256 (OpenSSL's default); this type takes it from the key's own
/// SubjectPublicKeyInfo instead.
pub struct CsrPublicKey {
    raw: Vec<u8>,
    alg: &'static rcgen::SignatureAlgorithm,
    /// Human name of the key type.
    pub description: String,
}

impl rcgen::PublicKeyData for CsrPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.alg
    }
}

fn csr_public_key(path: &Path, der: &[u8]) -> Result<CsrPublicKey> {
    use x509_parser::prelude::FromDer;
    let bad = |why: &str| PkiError::CsrRefused {
        path: path.into(),
        reason: why.to_string(),
    };
    let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|_| bad("not a valid PKCS#10 request"))?;
    let spki = &req.certification_request_info.subject_pki;
    let raw = spki.subject_public_key.data.to_vec();
    let kind = KeyKind::of(spki);
    let alg = match kind {
        KeyKind::Rsa(_) => &rcgen::PKCS_RSA_SHA256,
        KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
        KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyKind::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyKind::EcdsaP521 => &rcgen::PKCS_ECDSA_P521_SHA512,
        KeyKind::Other(_) => {
            return Err(bad(
                "its key type is not supported (use ECDSA P-256/P-384/P-521, Ed25519 or RSA)",
            ))
        }
    };
    let description = kind.to_string();
    Ok(CsrPublicKey { raw, alg, description })
}

/// Parses a PEM CSR and verifies its self-signature. RSA keys shorter than
/// 2048 bits are refused.
pub fn parse_csr(path: &Path, text: &[u8]) -> Result<ParsedCsr> {
    let fix = "pass a PEM PKCS#10 request (-----BEGIN CERTIFICATE REQUEST-----)";
    let blocks = pem::parse_many(text).map_err(|e| PkiError::bad_file(path, format!("not valid PEM ({e})"), fix))?;
    let block = match blocks.as_slice() {
        [b] if b.tag() == "CERTIFICATE REQUEST" || b.tag() == "NEW CERTIFICATE REQUEST" => b,
        [b] => {
            return Err(PkiError::bad_file(
                path,
                format!("PEM block is of type {}, not CERTIFICATE REQUEST", b.tag()),
                fix,
            ))
        }
        [] => return Err(PkiError::bad_file(path, "no PEM block found", fix)),
        _ => {
            return Err(PkiError::bad_file(
                path,
                "more than one PEM block",
                "keep only the request in the file",
            ))
        }
    };
    // Read the key first: a weak key must be refused for what it is, before
    // the signature check (which aws-lc refuses for RSA < 2048 anyway).
    let public_key = csr_public_key(path, block.contents())?;
    if public_key.alg == &rcgen::PKCS_RSA_SHA256 {
        let bits = rsa_modulus_bits(&public_key.raw).unwrap_or(0);
        if bits < 2048 {
            return Err(PkiError::CsrRefused {
                path: path.into(),
                reason: format!("its RSA key has {bits} bits; at least 2048 are required"),
            });
        }
    }
    let request = CertificateSigningRequestParams::from_der(&block.contents().into()).map_err(|e| match e {
        rcgen::Error::InvalidCertificationRequestSignature => PkiError::CsrRefused {
            path: path.into(),
            reason: "its signature does not verify (altered, or not signed by its own key)".into(),
        },
        rcgen::Error::UnsupportedExtension => PkiError::CsrRefused {
            path: path.into(),
            reason: "it requests an extension moat does not sign (only subject alternative names, key usage, extended key usage and basic constraints)".into(),
        },
        rcgen::Error::UnsupportedSignatureAlgorithm => PkiError::CsrRefused {
            path: path.into(),
            reason: "its key or signature algorithm is not supported (use ECDSA P-256/P-384, Ed25519 or RSA)".into(),
        },
        other => PkiError::bad_file(path, format!("not a valid PKCS#10 request ({other})"), fix),
    })?;
    let common_name = request
        .params
        .distinguished_name
        .get(&DnType::CommonName)
        .and_then(dn_string);
    let mut hosts = Vec::new();
    for san in &request.params.subject_alt_names {
        match san {
            SanType::DnsName(d) => hosts.push(d.as_str().to_string()),
            SanType::IpAddress(ip) => hosts.push(ip.to_string()),
            other => {
                return Err(PkiError::CsrRefused {
                    path: path.into(),
                    reason: format!("it requests a subject alternative name moat does not sign: {other:?}"),
                })
            }
        }
    }
    Ok(ParsedCsr {
        request,
        common_name,
        hosts,
        public_key,
    })
}

fn dn_string(v: &DnValue) -> Option<String> {
    match v {
        DnValue::Utf8String(s) => Some(s.clone()),
        DnValue::PrintableString(s) => Some(s.as_str().to_string()),
        DnValue::Ia5String(s) => Some(s.as_str().to_string()),
        DnValue::TeletexString(s) => Some(s.as_str().to_string()),
        DnValue::BmpString(_) | DnValue::UniversalString(_) => None,
        _ => None,
    }
}

/// What the CA grants a CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The subject CN of the certificate to issue.
    pub common_name: String,
    /// The host names (node and UI).
    pub hosts: Vec<String>,
    /// Whether the subject key is RSA (adds keyEncipherment).
    pub rsa: bool,
}

/// Applies the CA's policy for `profile` to a CSR.
///
/// * No CA rights, no keyCertSign/cRLSign, no usage beyond the profile's.
/// * `client`: the CN must be a valid SQL user name (and equal `user` when
///   given); no host names.
/// * `node`: CN `node`; `ui`: any CN (replaced by the first host).
/// * Host names: when `allowed_hosts` is not empty, every requested name must
///   be in it and the certificate gets exactly `allowed_hosts`; otherwise the
///   requested names are granted. A node or UI certificate needs at least one.
pub fn decide(
    path: &Path,
    csr: &ParsedCsr,
    profile: Profile,
    user: Option<&str>,
    allowed_hosts: &[String],
) -> Result<Grant> {
    let refuse = |reason: String| PkiError::CsrRefused {
        path: path.into(),
        reason,
    };
    if profile.is_ca() {
        return Err(refuse(
            "moat signs only node, client and ui certificates from a CSR".into(),
        ));
    }
    let p = &csr.request.params;
    if let IsCa::Ca(_) = p.is_ca {
        return Err(refuse("it asks for CA rights (basicConstraints CA:TRUE)".into()));
    }
    if p.key_usages
        .iter()
        .any(|k| matches!(k, KeyUsagePurpose::KeyCertSign | KeyUsagePurpose::CrlSign))
    {
        return Err(refuse("it asks for certificate or CRL signing key usage".into()));
    }
    let granted = profile.ext_key_usages();
    for eku in &p.extended_key_usages {
        let name = match eku {
            ExtendedKeyUsagePurpose::ServerAuth => "serverAuth",
            ExtendedKeyUsagePurpose::ClientAuth => "clientAuth",
            ExtendedKeyUsagePurpose::Any => "anyExtendedKeyUsage",
            ExtendedKeyUsagePurpose::CodeSigning => "codeSigning",
            ExtendedKeyUsagePurpose::EmailProtection => "emailProtection",
            ExtendedKeyUsagePurpose::TimeStamping => "timeStamping",
            ExtendedKeyUsagePurpose::OcspSigning => "OCSPSigning",
            _ => "an unknown usage",
        };
        if !granted.contains(&name) {
            return Err(refuse(format!(
                "it asks for {name}, which the {} profile does not grant (it grants {})",
                profile_name(profile),
                granted.join(" + ")
            )));
        }
    }
    let rsa = csr.public_key.alg == &rcgen::PKCS_RSA_SHA256;
    match profile {
        Profile::Client => {
            if !csr.hosts.is_empty() {
                return Err(refuse(format!(
                    "a client certificate carries no host names, but it asks for {}",
                    csr.hosts.join(", ")
                )));
            }
            let cn = csr
                .common_name
                .as_deref()
                .ok_or_else(|| refuse("it has no common name; a client CSR must name the SQL user in its CN".into()))?;
            let name = username::normalize_and_validate(cn).map_err(|e| refuse(e.to_string()))?;
            if let Some(u) = user {
                let want = username::normalize(u);
                if want != name {
                    return Err(refuse(format!("it is for user {name:?}, not {want:?}")));
                }
            }
            Ok(Grant {
                common_name: name,
                hosts: vec![],
                rsa,
            })
        }
        Profile::Node | Profile::Ui => {
            if profile == Profile::Node {
                if let Some(cn) = csr.common_name.as_deref() {
                    if cn != crate::profile::NODE_COMMON_NAME {
                        return Err(refuse(format!(
                            "a node CSR must have CN \"node\", this one has CN {cn:?} (use the client profile for users)"
                        )));
                    }
                }
            }
            let hosts = if allowed_hosts.is_empty() {
                csr.hosts.clone()
            } else {
                let allowed: Vec<String> = allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
                if let Some(extra) = csr.hosts.iter().find(|h| !allowed.contains(&h.to_ascii_lowercase())) {
                    return Err(refuse(format!(
                        "it asks for host {extra:?}, which is not among the allowed hosts"
                    )));
                }
                allowed_hosts.to_vec()
            };
            if hosts.is_empty() {
                return Err(refuse(format!(
                    "it names no host; a {} certificate needs at least one (pass --host)",
                    profile_name(profile)
                )));
            }
            let common_name = if profile == Profile::Node {
                crate::profile::NODE_COMMON_NAME.to_string()
            } else {
                hosts[0].clone()
            };
            Ok(Grant {
                common_name,
                hosts,
                rsa,
            })
        }
        _ => unreachable!("CA profiles refused above"),
    }
}

fn profile_name(p: Profile) -> &'static str {
    match p {
        Profile::Node => "node",
        Profile::Client => "client",
        Profile::Ui => "ui",
        Profile::Ca => "ca",
        Profile::ClientCa => "client-ca",
        Profile::UiCa => "ui-ca",
    }
}
