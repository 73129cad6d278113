//! Certificate profiles: what each kind of certificate in a cluster contains.
//!
//! These follow CockroachDB's templates (random 128-bit serial, not-before one
//! day in the past for clock skew, node = serverAuth + clientAuth with CN
//! `node`, client = clientAuth with CN = user, CA = path length 1) with a few
//! deliberate differences: the organisation is `moat`, CAs may also sign CRLs,
//! leaves carry `CA:FALSE` and an Authority Key Identifier, and
//! keyEncipherment is only set on RSA leaves (it means nothing for EC keys).

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType, SerialNumber,
};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::{PkiError, Result};

/// Organisation written in every subject.
pub const ORGANIZATION: &str = "moat";
/// Common name of `ca.crt`.
pub const CA_COMMON_NAME: &str = "moat CA";
/// Common name of `ca-client.crt`.
pub const CLIENT_CA_COMMON_NAME: &str = "moat Client CA";
/// Common name of `ca-ui.crt`.
pub const UI_CA_COMMON_NAME: &str = "moat UI CA";
/// Common name of node certificates (CockroachDB's node principal).
pub const NODE_COMMON_NAME: &str = "node";
/// How far in the past not-before is set (clock skew allowance).
pub const BACKDATE: Duration = Duration::hours(24);

/// The kinds of certificate moat makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// The cluster CA (`ca.crt`).
    Ca,
    /// The client CA (`ca-client.crt`).
    ClientCa,
    /// The console CA (`ca-ui.crt`).
    UiCa,
    /// A node certificate: server and client.
    Node,
    /// A SQL user's client certificate.
    Client,
    /// A console (HTTPS) server certificate.
    Ui,
}

impl Profile {
    /// Parses a profile name (`node`, `client`, `ui`, `ca`, `client-ca`, `ui-ca`).
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "ca" => Profile::Ca,
            "client-ca" => Profile::ClientCa,
            "ui-ca" => Profile::UiCa,
            "node" => Profile::Node,
            "client" => Profile::Client,
            "ui" => Profile::Ui,
            other => {
                return Err(PkiError::invalid(
                    format!("unknown profile {other:?}"),
                    "use node, client or ui",
                ))
            }
        })
    }

    /// Whether the profile is a CA.
    pub fn is_ca(self) -> bool {
        matches!(self, Profile::Ca | Profile::ClientCa | Profile::UiCa)
    }

    /// The extended key usages the profile grants (`serverAuth`/`clientAuth`).
    pub fn ext_key_usages(self) -> &'static [&'static str] {
        match self {
            Profile::Node => &["serverAuth", "clientAuth"],
            Profile::Client => &["clientAuth"],
            Profile::Ui => &["serverAuth"],
            _ => &[],
        }
    }
}

/// Turns host arguments into SANs: IP literals become IP SANs, anything else
/// a DNS SAN (wildcards allowed), as `cockroach cert create-node` does.
pub fn hosts_to_sans(hosts: &[String]) -> Result<Vec<SanType>> {
    hosts
        .iter()
        .map(|h| {
            let h = h.trim();
            if let Ok(ip) = h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                return Ok(SanType::IpAddress(ip));
            }
            if h.is_empty() || h.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/') {
                return Err(PkiError::invalid(
                    format!("invalid host name {:?}", h.escape_debug().to_string()),
                    "pass DNS names or IP addresses",
                ));
            }
            let name = rcgen::string::Ia5String::try_from(h.to_string()).map_err(|_| {
                PkiError::invalid(format!("host name {h:?} is not ASCII"), "use the punycode (xn--) form")
            })?;
            Ok(SanType::DnsName(name))
        })
        .collect()
}

/// A random positive 128-bit serial number.
pub fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|e| PkiError::crypto("drawing a serial number", e))?;
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 1; // keep it 16 bytes long and positive
    }
    Ok(SerialNumber::from_slice(&bytes))
}

/// Builds the certificate parameters for a profile.
///
/// `common_name` is the subject CN; `hosts` become SANs (node and UI);
/// `rsa_leaf` adds keyEncipherment for RSA keys.
pub fn params(
    profile: Profile,
    common_name: &str,
    hosts: &[String],
    lifetime: Duration,
    now: OffsetDateTime,
    rsa_leaf: bool,
) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::OrganizationName, ORGANIZATION);
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.serial_number = Some(random_serial()?);
    p.not_before = now - BACKDATE;
    p.not_after = now + lifetime;
    if profile.is_ca() {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        return Ok(p);
    }
    p.is_ca = IsCa::ExplicitNoCa;
    p.use_authority_key_identifier_extension = true;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if rsa_leaf {
        p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    for eku in profile.ext_key_usages() {
        p.extended_key_usages.push(match *eku {
            "serverAuth" => ExtendedKeyUsagePurpose::ServerAuth,
            _ => ExtendedKeyUsagePurpose::ClientAuth,
        });
    }
    if matches!(profile, Profile::Node | Profile::Ui) {
        p.subject_alt_names = hosts_to_sans(hosts)?;
    }
    Ok(p)
}

/// OID of the Authority Information Access extension (id-pe-authorityInfoAccess).
pub const AUTHORITY_INFO_ACCESS_OID: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
/// DER content (without tag and length) of the id-ad-ocsp OID, 1.3.6.1.5.5.7.48.1.
const ID_AD_OCSP: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];

/// Checks an OCSP responder URL: `http://` or `https://`, printable ASCII
/// (it is written as an IA5String), no spaces, a host.
pub fn check_ocsp_url(url: &str) -> Result<()> {
    let bad = |why: &str| {
        PkiError::invalid(
            format!("invalid OCSP responder URL {:?}: {why}", url.escape_debug().to_string()),
            "pass an absolute http:// URL such as http://ocsp.example.com:8888/",
        )
    };
    if !url.chars().all(|c| c.is_ascii_graphic()) {
        return Err(bad(
            "only printable ASCII without spaces is allowed (percent-encode the rest)",
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad("the scheme must be http:// (or https://)"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(bad("no host"));
    }
    if url.len() > 2048 {
        return Err(bad("longer than 2048 characters"));
    }
    Ok(())
}

/// Appends a DER length.
fn der_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Appends a DER tag-length-value.
fn der_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    der_length(out, content.len());
    out.extend_from_slice(content);
}

/// The DER of an `AuthorityInfoAccessSyntax` (RFC 5280 4.2.2.1) holding one
/// `id-ad-ocsp` access description per URL, each a uniformResourceIdentifier.
pub fn authority_info_access_ocsp_der(urls: &[&str]) -> Vec<u8> {
    let mut descriptions = Vec::new();
    for url in urls {
        let mut desc = Vec::new();
        der_tlv(&mut desc, 0x06, ID_AD_OCSP); // accessMethod OBJECT IDENTIFIER
        der_tlv(&mut desc, 0x86, url.as_bytes()); // [6] IMPLICIT IA5String
        der_tlv(&mut descriptions, 0x30, &desc); // AccessDescription SEQUENCE
    }
    let mut out = Vec::new();
    der_tlv(&mut out, 0x30, &descriptions);
    out
}

/// Adds an Authority Information Access extension pointing at an OCSP
/// responder (non-critical) to leaf parameters. rcgen cannot write AIA itself.
pub fn add_ocsp_url(params: &mut CertificateParams, url: &str) -> Result<()> {
    check_ocsp_url(url)?;
    params.custom_extensions.push(rcgen::CustomExtension::from_oid_content(
        AUTHORITY_INFO_ACCESS_OID,
        authority_info_access_ocsp_der(&[url]),
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aia_der_is_exact() {
        let der = authority_info_access_ocsp_der(&["http://a/"]);
        let expected: Vec<u8> = [
            &[0x30, 0x17, 0x30, 0x15, 0x06, 0x08][..],
            ID_AD_OCSP,
            &[0x86, 0x09],
            b"http://a/",
        ]
        .concat();
        assert_eq!(der, expected);
        // Long URLs use the long length form, and x509-parser reads them back.
        let long = format!("http://ocsp.example.com/{}", "x".repeat(300));
        let der = authority_info_access_ocsp_der(&[&long, "http://b/"]);
        assert_eq!(&der[..2], &[0x30, 0x82]);
        let (rest, aia) =
            <x509_parser::extensions::AuthorityInfoAccess as x509_parser::prelude::FromDer<_>>::from_der(&der).unwrap();
        assert!(rest.is_empty());
        let urls: Vec<String> = aia
            .accessdescs
            .iter()
            .map(|d| {
                assert_eq!(d.access_method.to_id_string(), "1.3.6.1.5.5.7.48.1");
                match &d.access_location {
                    x509_parser::extensions::GeneralName::URI(u) => u.to_string(),
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert_eq!(urls, vec![long, "http://b/".to_string()]);
    }

    #[test]
    fn ocsp_urls_are_checked() {
        for good in [
            "http://127.0.0.1:8888/ocsp",
            "https://ocsp.example.com",
            "http://[::1]/",
        ] {
            check_ocsp_url(good).unwrap();
        }
        for bad in [
            "",
            "ftp://x/",
            "http://",
            "http:///x",
            "http://a b/",
            "http://é/",
            "ocsp.example.com",
        ] {
            assert!(check_ocsp_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sans_are_classified() {
        let sans = hosts_to_sans(&["127.0.0.1".into(), "::1".into(), "localhost".into(), "*.local".into()]).unwrap();
        assert!(matches!(sans[0], SanType::IpAddress(_)));
        assert!(matches!(sans[1], SanType::IpAddress(_)));
        assert!(matches!(sans[2], SanType::DnsName(_)));
        assert!(matches!(sans[3], SanType::DnsName(_)));
        assert!(hosts_to_sans(&["bad host".into()]).is_err());
        assert!(hosts_to_sans(&["".into()]).is_err());
    }

    #[test]
    fn serials_are_positive_128_bit() {
        for _ in 0..100 {
            let s = random_serial().unwrap().to_bytes();
            assert_eq!(s.len(), 16);
            assert!(s[0] & 0x80 == 0 && s[0] != 0);
        }
    }
}
