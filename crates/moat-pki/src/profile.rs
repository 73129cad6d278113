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

#[cfg(test)]
mod tests {
    use super::*;

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
