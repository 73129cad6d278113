//! A signing CA: a CA certificate (the first of its PEM file) with its private
//! key, checked before anything is signed.
//!
//! Works with CAs made by moat, by CockroachDB and by an organisation's own
//! tooling (openssl: RSA or ECDSA, PKCS#1/PKCS#8/SEC1 keys), including
//! intermediate CAs: when the signer is not self-signed, the non-root
//! certificates of its file are appended to every leaf it signs, so the leaf
//! file carries the chain and `ca.crt` only the root.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, Issuer, PublicKeyData};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::inspect::{read_cert_pem, CertInfo};
use crate::keys::PrivateKey;
use crate::lifetime::format_hours;
use crate::{PkiError, Result};

/// A CA that can sign certificates.
pub struct SigningCa {
    cert_path: PathBuf,
    key_path: PathBuf,
    /// Every certificate of the CA file (the signer first).
    bundle: Vec<CertificateDer<'static>>,
    info: CertInfo,
    key: PrivateKey,
}

impl std::fmt::Debug for SigningCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCa")
            .field("cert_path", &self.cert_path)
            .field("subject", &self.info.subject)
            .finish_non_exhaustive()
    }
}

impl SigningCa {
    /// Loads and checks a CA certificate file and its key: the first
    /// certificate must be a CA (Basic Constraints CA:TRUE, keyCertSign when
    /// Key Usage is present) and the key must be its key.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self> {
        let bundle = read_cert_pem(cert_path)?;
        let info = CertInfo::from_der(&bundle[0])
            .map_err(|e| PkiError::bad_file(cert_path, e, "regenerate or recopy the CA certificate"))?;
        if !info.is_ca {
            return Err(PkiError::bad_file(
                cert_path,
                format!(
                    "certificate {:?} is not a CA (Basic Constraints CA:TRUE missing)",
                    info.subject
                ),
                "pass the CA certificate, not a leaf certificate",
            ));
        }
        if !info.key_usage.is_empty() && !info.key_usage.iter().any(|k| k == "keyCertSign") {
            return Err(PkiError::bad_file(
                cert_path,
                format!("CA certificate {:?} lacks the keyCertSign key usage", info.subject),
                "use a CA certificate that may sign certificates",
            ));
        }
        let key = PrivateKey::read(key_path)?;
        if key.public_key_raw() != info.public_key_raw.as_slice() {
            return Err(PkiError::bad_file(
                key_path,
                format!("CA key does not match the CA certificate {}", cert_path.display()),
                "pass the key that belongs to the first certificate of that file with --ca-key",
            ));
        }
        Ok(SigningCa {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            bundle,
            info,
            key,
        })
    }

    /// Builds a signing CA from a freshly made certificate and key.
    pub fn from_parts(
        cert_path: &Path,
        key_path: &Path,
        cert: CertificateDer<'static>,
        key: PrivateKey,
    ) -> Result<Self> {
        let info = CertInfo::from_der(&cert).map_err(|e| PkiError::crypto("reading a new CA", e))?;
        Ok(SigningCa {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            bundle: vec![cert],
            info,
            key,
        })
    }

    /// The CA certificate's summary.
    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// Path of the CA certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Path of the CA key file.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// The CA certificate (the first certificate of its file), DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.bundle[0]
    }

    /// The CA's private key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// Whether the CA's key is RSA.
    pub fn is_rsa(&self) -> bool {
        self.info.key_type.starts_with("RSA")
    }

    /// Refuses a leaf that would outlive the CA, with CockroachDB's message.
    pub fn check_lifetime(&self, not_after: OffsetDateTime, now: OffsetDateTime) -> Result<()> {
        if self.info.not_after <= now {
            return Err(PkiError::bad_file(
                &self.cert_path,
                format!("CA certificate expired on {}", self.info.not_after.date()),
                "renew the CA first (create-ca --overwrite, with --allow-ca-key-reuse to keep its key)",
            ));
        }
        if not_after > self.info.not_after {
            let ca_left = self.info.not_after - now;
            let wanted = not_after - now;
            return Err(PkiError::invalid(
                format!(
                    "CA lifetime is {}, shorter than the requested {}",
                    format_hours(ca_left),
                    format_hours(wanted)
                ),
                format!(
                    "renew the CA certificate, or rerun with --lifetime={}h for a shorter duration",
                    ca_left.whole_hours()
                ),
            ));
        }
        Ok(())
    }

    /// Signs a certificate for `subject_key` with the given parameters and
    /// returns the chain to store in the leaf file: the new certificate,
    /// followed by the intermediates when this CA is not a root.
    pub fn sign(
        &self,
        params: &CertificateParams,
        subject_key: &impl PublicKeyData,
    ) -> Result<Vec<CertificateDer<'static>>> {
        let issuer = Issuer::from_ca_cert_der(&self.bundle[0], self.key.key_pair()).map_err(|e| {
            PkiError::bad_file(
                &self.cert_path,
                format!("cannot use as issuer: {e}"),
                "check the CA certificate",
            )
        })?;
        let cert = params
            .signed_by(subject_key, &issuer)
            .map_err(|e| PkiError::crypto("signing a certificate", e))?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.intermediates());
        Ok(chain)
    }

    /// The certificates of the CA file that a leaf should carry: every
    /// certificate that is not self-signed (none for a root CA).
    pub fn intermediates(&self) -> Vec<CertificateDer<'static>> {
        self.bundle
            .iter()
            .filter(|c| CertInfo::from_der(c).map(|i| !i.self_signed).unwrap_or(false))
            .cloned()
            .collect()
    }
}
