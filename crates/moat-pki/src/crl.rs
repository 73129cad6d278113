//! Certificate revocation lists (CRLs): reading them (PEM `X509 CRL` blocks or
//! DER), checking which CA issued them, and signing new ones for a moat CA.
//!
//! moat keeps one CRL per CA file, beside it in the certs directory:
//! `ca.crt` → `ca.crl`, `ca-client.crt` → `ca-client.crl`, `ca-ui.crt` →
//! `ca-ui.crl` (any other CA file `X.crt` → `X.crl`). A CRL is only trusted
//! when its issuer name equals the CA's subject byte for byte (as webpki,
//! and so rustls, compares them) and its signature verifies with the CA's key.

use std::path::{Path, PathBuf};

use rcgen::{CertificateRevocationListParams, Issuer, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber};
use rustls_pki_types::CertificateRevocationListDer;
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::ca::SigningCa;
use crate::{PkiError, Result};

/// PEM label of a CRL.
pub const CRL_PEM_LABEL: &str = "X509 CRL";
/// File name extension of CRL files in a certs directory.
pub const CRL_EXTENSION: &str = "crl";
/// CRL of `ca.crt`.
pub const CA_CRL: &str = "ca.crl";
/// CRL of `ca-client.crt`.
pub const CLIENT_CA_CRL: &str = "ca-client.crl";
/// CRL of `ca-ui.crt`.
pub const UI_CA_CRL: &str = "ca-ui.crl";
/// Default time between a CRL's thisUpdate and nextUpdate: after it, the CRL
/// is stale and must be re-signed (`moat cert revoke --refresh`).
pub const DEFAULT_CRL_LIFETIME: Duration = Duration::days(30);

/// The revocation reasons accepted for new entries, with their RFC 5280 names.
/// (`certificateHold` and `removeFromCRL` are left out: moat never un-revokes.)
const REASONS: &[(&str, RevocationReason)] = &[
    ("unspecified", RevocationReason::Unspecified),
    ("keyCompromise", RevocationReason::KeyCompromise),
    ("cACompromise", RevocationReason::CaCompromise),
    ("affiliationChanged", RevocationReason::AffiliationChanged),
    ("superseded", RevocationReason::Superseded),
    ("cessationOfOperation", RevocationReason::CessationOfOperation),
    ("privilegeWithdrawn", RevocationReason::PrivilegeWithdrawn),
    ("aACompromise", RevocationReason::AaCompromise),
];

/// Names accepted by [`parse_reason`], in RFC 5280 order.
pub const REASON_NAMES: &[&str] = &[
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
    "aACompromise",
];

/// Parses a revocation reason by its RFC 5280 name, ignoring case.
pub fn parse_reason(name: &str) -> Result<RevocationReason> {
    REASONS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
        .map(|(_, r)| *r)
        .ok_or_else(|| {
            PkiError::invalid(
                format!("unknown revocation reason {name:?}"),
                format!("use one of {}", REASON_NAMES.join(", ")),
            )
        })
}

/// The RFC 5280 name of a reason.
pub fn reason_name(reason: RevocationReason) -> &'static str {
    match reason {
        RevocationReason::Unspecified => "unspecified",
        RevocationReason::KeyCompromise => "keyCompromise",
        RevocationReason::CaCompromise => "cACompromise",
        RevocationReason::AffiliationChanged => "affiliationChanged",
        RevocationReason::Superseded => "superseded",
        RevocationReason::CessationOfOperation => "cessationOfOperation",
        RevocationReason::CertificateHold => "certificateHold",
        RevocationReason::RemoveFromCrl => "removeFromCRL",
        RevocationReason::PrivilegeWithdrawn => "privilegeWithdrawn",
        RevocationReason::AaCompromise => "aACompromise",
    }
}

fn reason_from_code(code: u8) -> Option<RevocationReason> {
    Some(match code {
        0 => RevocationReason::Unspecified,
        1 => RevocationReason::KeyCompromise,
        2 => RevocationReason::CaCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        6 => RevocationReason::CertificateHold,
        8 => RevocationReason::RemoveFromCrl,
        9 => RevocationReason::PrivilegeWithdrawn,
        10 => RevocationReason::AaCompromise,
        _ => return None,
    })
}

/// A serial number without leading zero bytes (at least one byte), so that
/// `00 8f ..` (DER's positive form) and `8f ..` compare equal.
pub fn normalize_serial(raw: &[u8]) -> Vec<u8> {
    let skip = raw
        .iter()
        .take_while(|b| **b == 0)
        .count()
        .min(raw.len().saturating_sub(1));
    raw[skip..].to_vec()
}

/// Parses a serial number written in hex (`5f3a..`, `5F:3A:..`, `0x5f3a..`).
pub fn parse_serial(text: &str) -> Result<Vec<u8>> {
    let bad = |why: &str| {
        PkiError::invalid(
            format!("invalid serial number {text:?}: {why}"),
            "write it in hex as `openssl x509 -serial` or `moat cert list --format json` show it",
        )
    };
    let t = text.trim();
    let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    let mut digits: String = t.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() {
        return Err(bad("empty"));
    }
    if digits.len() % 2 == 1 {
        digits.insert(0, '0');
    }
    let bytes = hex::decode(&digits).map_err(|_| bad("not hexadecimal"))?;
    let serial = normalize_serial(&bytes);
    if serial.len() > 20 {
        return Err(bad("longer than 20 bytes"));
    }
    Ok(serial)
}

/// Lower-case hex of a serial number.
pub fn serial_hex(serial: &[u8]) -> String {
    hex::encode(serial)
}

/// The CRL file of a CA file, in the certs directory: `ca.crt` → `ca.crl`,
/// `ca-client.crt` → `ca-client.crl`, `ca-ui.crt` → `ca-ui.crl`, `X.pem` → `X.crl`.
pub fn crl_path_for(certs_dir: &Path, ca_cert: &Path) -> PathBuf {
    let name = ca_cert.with_extension(CRL_EXTENSION);
    let name = name
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| CA_CRL.into());
    certs_dir.join(name)
}

/// Splits the bytes of a CRL file into its CRLs: PEM `X509 CRL` blocks (and
/// nothing else), or one or more concatenated DER CRLs. Every CRL must parse.
pub fn parse_crl_file(bytes: &[u8]) -> std::result::Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let looks_pem = bytes.windows(10).any(|w| w == b"-----BEGIN");
    let ders: Vec<Vec<u8>> = if looks_pem {
        let blocks = pem::parse_many(bytes).map_err(|e| format!("not valid PEM ({e})"))?;
        if blocks.is_empty() {
            return Err("no CRL found".into());
        }
        let mut out = Vec::new();
        for (i, b) in blocks.into_iter().enumerate() {
            if b.tag() != CRL_PEM_LABEL {
                return Err(format!("block #{} is of type {}, not {CRL_PEM_LABEL}", i + 1, b.tag()));
            }
            out.push(b.into_contents());
        }
        out
    } else {
        if bytes.is_empty() {
            return Err("empty file".into());
        }
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (next, _) =
                CertificateRevocationList::from_der(rest).map_err(|e| format!("neither PEM nor a DER CRL ({e})"))?;
            out.push(rest[..rest.len() - next.len()].to_vec());
            rest = next;
        }
        out
    };
    for (i, der) in ders.iter().enumerate() {
        let (rest, _) = CertificateRevocationList::from_der(der)
            .map_err(|e| format!("block #{} is not a valid CRL ({e})", i + 1))?;
        if !rest.is_empty() {
            return Err(format!("block #{} has trailing bytes after the CRL", i + 1));
        }
    }
    Ok(ders.into_iter().map(CertificateRevocationListDer::from).collect())
}

/// Encodes CRLs as PEM.
pub fn crls_to_pem(crls: &[CertificateRevocationListDer<'_>]) -> String {
    let cfg = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    crls.iter()
        .map(|c| pem::encode_config(&pem::Pem::new(CRL_PEM_LABEL, c.as_ref().to_vec()), cfg))
        .collect()
}

/// One revoked certificate of a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Serial number, without leading zero bytes.
    pub serial: Vec<u8>,
    /// When the CA revoked it.
    pub revocation_time: OffsetDateTime,
    /// Why, when the CRL says.
    pub reason: Option<RevocationReason>,
    /// When the certificate became invalid, when the CRL says.
    pub invalidity_date: Option<OffsetDateTime>,
}

/// What a CRL says.
#[derive(Debug, Clone)]
pub struct CrlSummary {
    /// Issuer DN (same form as [`crate::inspect::CertInfo::issuer`]).
    pub issuer: String,
    /// The issuer's first common name.
    pub issuer_common_name: Option<String>,
    /// thisUpdate.
    pub this_update: OffsetDateTime,
    /// nextUpdate, when present.
    pub next_update: Option<OffsetDateTime>,
    /// The CRL number (big-endian bytes), when present.
    pub crl_number: Option<Vec<u8>>,
    /// The CRL number in decimal, when present.
    pub crl_number_text: Option<String>,
    /// The revoked certificates, in the CRL's order.
    pub revoked: Vec<Revoked>,
}

/// Summarises a DER CRL.
pub fn summarize(der: &[u8]) -> std::result::Result<CrlSummary, String> {
    let (_, crl) = CertificateRevocationList::from_der(der).map_err(|e| format!("not a valid CRL ({e})"))?;
    let revoked = crl
        .iter_revoked_certificates()
        .map(|r| Revoked {
            serial: normalize_serial(r.raw_serial()),
            revocation_time: r.revocation_date.to_datetime(),
            reason: r.reason_code().and_then(|(_, c)| reason_from_code(c.0)),
            invalidity_date: r.invalidity_date().map(|(_, d)| d.to_datetime()),
        })
        .collect();
    let issuer_common_name = crl
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Ok(CrlSummary {
        issuer: crl.issuer().to_string(),
        issuer_common_name,
        this_update: crl.last_update().to_datetime(),
        next_update: crl.next_update().map(|t| t.to_datetime()),
        crl_number: crl.crl_number().map(|n| n.to_bytes_be()),
        crl_number_text: crl.crl_number().map(|n| n.to_string()),
        revoked,
    })
}

/// Checks that a CRL was issued by a CA certificate: the CRL's issuer equals
/// the CA's subject byte for byte, the CA may sign CRLs (cRLSign, when it has
/// a Key Usage extension) and the signature verifies with the CA's key.
/// The error says which of these failed.
pub fn verify_issued_by(crl_der: &[u8], ca_der: &[u8]) -> std::result::Result<(), String> {
    let (_, crl) = CertificateRevocationList::from_der(crl_der).map_err(|e| format!("not a valid CRL ({e})"))?;
    let (_, ca) = X509Certificate::from_der(ca_der).map_err(|e| format!("not a valid CA certificate ({e})"))?;
    if crl.issuer().as_raw() != ca.subject().as_raw() {
        return Err(format!(
            "issued by {:?}, not by the CA {:?}",
            crl.issuer().to_string(),
            ca.subject().to_string()
        ));
    }
    if let Ok(Some(ku)) = ca.key_usage() {
        if !ku.value.crl_sign() {
            return Err(format!(
                "the CA {:?} may not sign CRLs (its Key Usage lacks cRLSign)",
                ca.subject().to_string()
            ));
        }
    }
    crl.verify_signature(ca.public_key()).map_err(|e| {
        format!(
            "signature does not verify with the key of the CA {:?} ({e:?})",
            ca.subject().to_string()
        )
    })
}

/// Whether the CA certificate may sign CRLs: no Key Usage extension, or one
/// with cRLSign.
pub fn may_sign_crls(ca_der: &[u8]) -> bool {
    match X509Certificate::from_der(ca_der) {
        Ok((_, ca)) => match ca.key_usage() {
            Ok(Some(ku)) => ku.value.crl_sign(),
            Ok(None) => true,
            Err(_) => false,
        },
        Err(_) => false,
    }
}

/// The CRL number after `current` (1 when there is none).
pub fn next_crl_number(current: Option<&[u8]>) -> Vec<u8> {
    let mut n = current.map(normalize_serial).unwrap_or_else(|| vec![0]);
    for byte in n.iter_mut().rev() {
        if *byte == 0xff {
            *byte = 0;
        } else {
            *byte += 1;
            return n;
        }
    }
    n.insert(0, 1);
    n
}

/// What goes into a new CRL.
#[derive(Debug, Clone)]
pub struct NewCrl<'a> {
    /// The revoked certificates.
    pub revoked: &'a [Revoked],
    /// The CRL number.
    pub number: &'a [u8],
    /// thisUpdate.
    pub this_update: OffsetDateTime,
    /// nextUpdate.
    pub next_update: OffsetDateTime,
}

/// Signs a CRL with a CA, and checks the result as a relying party would
/// ([`verify_issued_by`]): rcgen rebuilds the issuer name from the CA
/// certificate, and a name it cannot reproduce exactly is refused.
pub fn sign_crl(ca: &SigningCa, new: &NewCrl<'_>) -> Result<CertificateRevocationListDer<'static>> {
    let ca_der = ca.cert_der();
    let bad_ca = |problem: String| {
        PkiError::bad_file(
            ca.cert_path(),
            problem,
            "use a CA whose certificate may sign CRLs (moat's CAs do)",
        )
    };
    if !may_sign_crls(ca_der) {
        return Err(bad_ca(format!(
            "CA certificate {:?} may not sign CRLs (its Key Usage lacks cRLSign)",
            ca.info().subject
        )));
    }
    let (_, parsed) = X509Certificate::from_der(ca_der).map_err(|e| bad_ca(format!("unreadable ({e})")))?;
    // The CRL's Authority Key Identifier must equal the CA's Subject Key
    // Identifier, or OpenSSL will not match them.
    let key_identifier_method = parsed
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(KeyIdMethod::PreSpecified(id.0.to_vec())),
            _ => None,
        })
        .unwrap_or(KeyIdMethod::Sha256);
    let issuer = Issuer::from_ca_cert_der(ca_der, ca.key().key_pair())
        .map_err(|e| bad_ca(format!("cannot be used to sign a CRL ({e})")))?;
    let params = CertificateRevocationListParams {
        this_update: new.this_update,
        next_update: new.next_update,
        crl_number: SerialNumber::from_slice(new.number),
        issuing_distribution_point: None,
        revoked_certs: new
            .revoked
            .iter()
            .map(|r| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&r.serial),
                revocation_time: r.revocation_time,
                reason_code: r.reason,
                invalidity_date: r.invalidity_date,
            })
            .collect(),
        key_identifier_method,
    };
    let crl = params
        .signed_by(&issuer)
        .map_err(|e| PkiError::crypto("signing a CRL", e))?;
    let der: CertificateRevocationListDer<'static> = crl.into();
    verify_issued_by(&der, ca_der).map_err(|e| bad_ca(format!("the new CRL does not check out: {e}")))?;
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip() {
        for name in REASON_NAMES {
            assert_eq!(reason_name(parse_reason(name).unwrap()), *name);
        }
        assert_eq!(parse_reason("KEYCOMPROMISE").unwrap(), RevocationReason::KeyCompromise);
        assert_eq!(parse_reason("caCompromise").unwrap(), RevocationReason::CaCompromise);
        assert!(parse_reason("certificateHold").is_err());
        assert!(parse_reason("bored").unwrap_err().to_string().contains("keyCompromise"));
    }

    #[test]
    fn serials() {
        assert_eq!(parse_serial("0x00A1:b2").unwrap(), vec![0xa1, 0xb2]);
        assert_eq!(parse_serial("abc").unwrap(), vec![0x0a, 0xbc]);
        assert_eq!(parse_serial("00").unwrap(), vec![0]);
        assert!(parse_serial("").is_err());
        assert!(parse_serial("xyz").is_err());
        assert!(parse_serial(&"11".repeat(21)).is_err());
        assert_eq!(normalize_serial(&[0, 0x8f, 1]), vec![0x8f, 1]);
        assert_eq!(normalize_serial(&[0]), vec![0]);
    }

    #[test]
    fn crl_numbers_increment() {
        assert_eq!(next_crl_number(None), vec![1]);
        assert_eq!(next_crl_number(Some(&[1])), vec![2]);
        assert_eq!(next_crl_number(Some(&[0x00, 0xff])), vec![1, 0]);
        assert_eq!(next_crl_number(Some(&[0xff, 0xff])), vec![1, 0, 0]);
    }

    #[test]
    fn crl_file_names() {
        let d = Path::new("/c");
        assert_eq!(crl_path_for(d, Path::new("/c/ca.crt")), Path::new("/c/ca.crl"));
        assert_eq!(
            crl_path_for(d, Path::new("/c/ca-client.crt")),
            Path::new("/c/ca-client.crl")
        );
        assert_eq!(crl_path_for(d, Path::new("/c/ca-ui.crt")), Path::new("/c/ca-ui.crl"));
        assert_eq!(crl_path_for(d, Path::new("/safe/int.pem")), Path::new("/c/int.crl"));
    }

    fn test_ca(cn: &str) -> SigningCa {
        let key = crate::keys::PrivateKey::generate(crate::keys::KeyType::EcdsaP256).unwrap();
        let now = OffsetDateTime::now_utc();
        let params =
            crate::profile::params(crate::profile::Profile::Ca, cn, &[], Duration::days(10), now, false).unwrap();
        let cert = params.self_signed(key.key_pair()).unwrap();
        SigningCa::from_parts(Path::new("ca.crt"), Path::new("ca.key"), cert.der().clone(), key).unwrap()
    }

    #[test]
    fn signs_and_reads_back() {
        let ca = test_ca("moat CA");
        let other = test_ca("moat CA"); // same name, other key
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let revoked = vec![
            Revoked {
                serial: vec![0x8f, 1],
                revocation_time: now,
                reason: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            },
            Revoked {
                serial: vec![7],
                revocation_time: now,
                reason: None,
                invalidity_date: Some(now - Duration::days(1)),
            },
        ];
        let der = sign_crl(
            &ca,
            &NewCrl {
                revoked: &revoked,
                number: &[2],
                this_update: now,
                next_update: now + DEFAULT_CRL_LIFETIME,
            },
        )
        .unwrap();
        let s = summarize(&der).unwrap();
        assert_eq!(s.revoked, revoked);
        assert_eq!(s.crl_number.as_deref(), Some(&[2u8][..]));
        assert_eq!(s.crl_number_text.as_deref(), Some("2"));
        assert_eq!(s.issuer_common_name.as_deref(), Some("moat CA"));
        assert_eq!(s.this_update, now);
        assert_eq!(s.next_update, Some(now + DEFAULT_CRL_LIFETIME));
        verify_issued_by(&der, ca.cert_der()).unwrap();
        let err = verify_issued_by(&der, other.cert_der()).unwrap_err();
        assert!(err.contains("signature does not verify"), "{err}");
        let err = verify_issued_by(&der, test_ca("x").cert_der()).unwrap_err();
        assert!(err.contains("not by the CA"), "{err}");
        let pem = crls_to_pem(&[der.clone(), der.clone()]);
        assert_eq!(parse_crl_file(pem.as_bytes()).unwrap(), vec![der.clone(), der.clone()]);
        let two_der = [der.as_ref(), der.as_ref()].concat();
        assert_eq!(parse_crl_file(&two_der).unwrap().len(), 2);
    }

    #[test]
    fn crl_files_are_parsed_strictly() {
        assert!(parse_crl_file(b"").is_err());
        assert!(parse_crl_file(b"garbage").is_err());
        let cert_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(parse_crl_file(cert_pem.as_bytes())
            .unwrap_err()
            .contains("not X509 CRL"));
        let bad_crl = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
        assert!(parse_crl_file(bad_crl.as_bytes())
            .unwrap_err()
            .contains("not a valid CRL"));
    }
}
