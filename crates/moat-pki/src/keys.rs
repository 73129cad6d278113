//! Private keys: generation for every supported type, and label-agnostic
//! loading of PKCS#1, PKCS#8 and SEC1 PEM files as CockroachDB does.
//!
//! Generated keys are written as unencrypted PKCS#8 v1 (`PRIVATE KEY`), which
//! OpenSSL 3.0, libpq, Go and Java all read (Ed25519 PKCS#8 v2 is refused by
//! OpenSSL 3.0, so it is never written).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair};
use rcgen::{KeyPair, PublicKeyData};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{PkiError, Result};

/// The kind of key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// ECDSA on NIST P-256 (the default: fast to make and to handshake with).
    #[default]
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA with the given modulus size in bits (2048, 3072, 4096 or 8192).
    Rsa(u32),
}

impl KeyType {
    /// Builds a key type from the CLI's `--key-type` name and `--key-size`.
    pub fn from_name(name: &str, rsa_bits: u32) -> Result<Self> {
        let kt = match name.to_ascii_lowercase().as_str() {
            "ecdsa-p256" | "ecdsa" | "p256" | "p-256" => KeyType::EcdsaP256,
            "ecdsa-p384" | "p384" | "p-384" => KeyType::EcdsaP384,
            "ed25519" => KeyType::Ed25519,
            "rsa" => KeyType::Rsa(rsa_bits),
            other => {
                return Err(PkiError::invalid(
                    format!("unknown key type {other:?}"),
                    "use one of ecdsa-p256, ecdsa-p384, ed25519, rsa",
                ))
            }
        };
        if let KeyType::Rsa(bits) = kt {
            if ![2048, 3072, 4096, 8192].contains(&bits) {
                return Err(PkiError::invalid(
                    format!("unsupported RSA key size {bits}"),
                    "use --key-size 2048, 3072, 4096 or 8192",
                ));
            }
        }
        Ok(kt)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyType::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyType::EcdsaP384 => f.write_str("ECDSA P-384"),
            KeyType::Ed25519 => f.write_str("Ed25519"),
            KeyType::Rsa(bits) => write!(f, "RSA {bits}"),
        }
    }
}

impl FromStr for KeyType {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self> {
        KeyType::from_name(s, 2048)
    }
}

/// A private key with its PKCS#8 encoding, usable for signing.
pub struct PrivateKey {
    pkcs8: PrivatePkcs8KeyDer<'static>,
    pair: KeyPair,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.pair.algorithm())
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Generates a fresh key of the given type.
    pub fn generate(kind: KeyType) -> Result<Self> {
        let fail = |e: aws_lc_rs::error::Unspecified| PkiError::crypto("generating a key", e);
        let pkcs8: Vec<u8> = match kind {
            KeyType::EcdsaP256 => EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING)
                .and_then(|k| k.to_pkcs8v1())
                .map_err(fail)?
                .as_ref()
                .to_vec(),
            KeyType::EcdsaP384 => EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_ASN1_SIGNING)
                .and_then(|k| k.to_pkcs8v1())
                .map_err(fail)?
                .as_ref()
                .to_vec(),
            KeyType::Ed25519 => Ed25519KeyPair::generate()
                .and_then(|k| k.to_pkcs8v1())
                .map_err(fail)?
                .as_ref()
                .to_vec(),
            KeyType::Rsa(bits) => {
                use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
                let size = match bits {
                    2048 => KeySize::Rsa2048,
                    3072 => KeySize::Rsa3072,
                    4096 => KeySize::Rsa4096,
                    8192 => KeySize::Rsa8192,
                    other => {
                        return Err(PkiError::invalid(
                            format!("unsupported RSA key size {other}"),
                            "use --key-size 2048, 3072, 4096 or 8192",
                        ))
                    }
                };
                let pair = RsaKeyPair::generate(size).map_err(fail)?;
                let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).map_err(fail)?;
                der.as_ref().to_vec()
            }
        };
        Self::from_pkcs8(pkcs8)
    }

    fn from_pkcs8(pkcs8: Vec<u8>) -> Result<Self> {
        let pkcs8 = PrivatePkcs8KeyDer::from(pkcs8);
        let pair = KeyPair::try_from(&pkcs8).map_err(|e| PkiError::crypto("loading a generated key", e))?;
        Ok(PrivateKey { pkcs8, pair })
    }

    /// Parses a key from PEM text, whatever its label says: exactly one PEM
    /// block, labelled `PRIVATE KEY` or `... PRIVATE KEY`, holding PKCS#1,
    /// PKCS#8 or SEC1 DER. `path` is only used in error messages.
    pub fn from_pem(path: &Path, text: &[u8]) -> Result<Self> {
        let blocks = pem::parse_many(text).map_err(|e| {
            PkiError::bad_file(
                path,
                format!("not valid PEM ({e})"),
                "pass an unencrypted PEM private key",
            )
        })?;
        let block = match blocks.as_slice() {
            [] => {
                return Err(PkiError::bad_file(
                    path,
                    "no PEM block found",
                    "pass an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----)",
                ))
            }
            [one] => one,
            many => {
                return Err(PkiError::bad_file(
                    path,
                    format!("{} PEM blocks found, expected exactly one private key", many.len()),
                    "keep only the private key in this file",
                ))
            }
        };
        let tag = block.tag();
        if tag == "ENCRYPTED PRIVATE KEY"
            || block
                .headers()
                .get("Proc-Type")
                .is_some_and(|v| v.contains("ENCRYPTED"))
        {
            return Err(PkiError::bad_file(
                path,
                "the private key is encrypted",
                "decrypt it first (openssl pkey -in KEY -out KEY.plain) and keep it 0600",
            ));
        }
        if tag != "PRIVATE KEY" && !tag.ends_with(" PRIVATE KEY") {
            return Err(PkiError::bad_file(
                path,
                format!("PEM block is of type {tag:?}, not a private key"),
                "pass the private key file, not a certificate or CSR",
            ));
        }
        Self::from_der(path, block.contents())
    }

    /// Parses a key from DER in any of PKCS#1, PKCS#8 or SEC1.
    pub fn from_der(path: &Path, der: &[u8]) -> Result<Self> {
        let unparsable = || {
            PkiError::bad_file(
                path,
                "private key is not a valid RSA, ECDSA (P-256/P-384/P-521) or Ed25519 key in PKCS#1, PKCS#8 or SEC1",
                "check the file is complete and unencrypted",
            )
        };
        let classified = PrivateKeyDer::try_from(der).map_err(|_| unparsable())?;
        let pair = KeyPair::try_from(&classified).map_err(|_| unparsable())?;
        // Re-encode as PKCS#8 so that every key we hold has one canonical form.
        let pkcs8 = match &classified {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            _ => to_pkcs8(&pair, der).ok_or_else(unparsable)?,
        };
        Ok(PrivateKey {
            pkcs8: PrivatePkcs8KeyDer::from(pkcs8),
            pair,
        })
    }

    /// Reads and parses a key file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).map_err(|e| PkiError::io(path, e, "check the path and its permissions"))?;
        Self::from_pem(path, &text)
    }

    /// The PKCS#8 v1 DER encoding (what `.pk8` files hold).
    pub fn pkcs8_der(&self) -> &[u8] {
        self.pkcs8.secret_pkcs8_der()
    }

    /// The PEM encoding (`-----BEGIN PRIVATE KEY-----`, PKCS#8).
    pub fn to_pem(&self) -> String {
        pem::encode_config(
            &pem::Pem::new("PRIVATE KEY", self.pkcs8_der().to_vec()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    }

    /// The signing key pair, for rcgen.
    pub fn key_pair(&self) -> &KeyPair {
        &self.pair
    }

    /// The raw public key bits as they appear in a certificate's
    /// SubjectPublicKeyInfo BIT STRING.
    pub fn public_key_raw(&self) -> &[u8] {
        self.pair.der_bytes()
    }

    /// A human name for the key's type (`ECDSA P-256`, `RSA 2048`, `Ed25519`).
    pub fn describe(&self) -> String {
        describe_algorithm(self.pair.algorithm(), self.public_key_raw())
    }

    /// A rustls-ready copy of the key.
    pub fn to_private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.pkcs8.clone_key())
    }
}

fn describe_algorithm(alg: &rcgen::SignatureAlgorithm, public_raw: &[u8]) -> String {
    if alg == &rcgen::PKCS_ED25519 {
        "Ed25519".into()
    } else if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        "ECDSA P-256".into()
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        "ECDSA P-384".into()
    } else if alg == &rcgen::PKCS_ECDSA_P521_SHA512 {
        "ECDSA P-521".into()
    } else {
        // RSAPublicKey DER: the modulus length gives the size.
        format!("RSA {}", crate::inspect::rsa_modulus_bits(public_raw).unwrap_or(0))
    }
}

/// Wraps a PKCS#1 or SEC1 key into PKCS#8 v1 by round-tripping through aws-lc.
fn to_pkcs8(pair: &KeyPair, der: &[u8]) -> Option<Vec<u8>> {
    let alg = pair.algorithm();
    if alg == &rcgen::PKCS_ECDSA_P256_SHA256
        || alg == &rcgen::PKCS_ECDSA_P384_SHA384
        || alg == &rcgen::PKCS_ECDSA_P521_SHA512
    {
        let signing = if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING
        } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
            &signature::ECDSA_P384_SHA384_ASN1_SIGNING
        } else {
            &signature::ECDSA_P521_SHA512_ASN1_SIGNING
        };
        let k = EcdsaKeyPair::from_private_key_der(signing, der).ok()?;
        Some(k.to_pkcs8v1().ok()?.as_ref().to_vec())
    } else {
        let k = aws_lc_rs::rsa::KeyPair::from_der(der).ok()?;
        let out = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&k).ok()?;
        Some(out.as_ref().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_and_reload_every_type() {
        for kt in [
            KeyType::EcdsaP256,
            KeyType::EcdsaP384,
            KeyType::Ed25519,
            KeyType::Rsa(2048),
        ] {
            let k = PrivateKey::generate(kt).unwrap();
            let again = PrivateKey::from_pem(Path::new("k"), k.to_pem().as_bytes()).unwrap();
            assert_eq!(k.public_key_raw(), again.public_key_raw(), "{kt}");
            assert_eq!(again.describe(), kt.to_string());
        }
    }

    #[test]
    fn ed25519_is_pkcs8_v1() {
        let k = PrivateKey::generate(KeyType::Ed25519).unwrap();
        // PKCS#8 v1: SEQUENCE { INTEGER 0, ... }; v2 would carry version 1.
        let der = k.pkcs8_der();
        assert_eq!(&der[2..5], &[0x02, 0x01, 0x00]);
        assert_eq!(der.len(), 48);
    }

    #[test]
    fn refuses_garbage_and_certificates() {
        let p = Path::new("x.key");
        assert!(PrivateKey::from_pem(p, b"hello")
            .unwrap_err()
            .to_string()
            .contains("no PEM block"));
        let cert = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        assert!(PrivateKey::from_pem(p, cert.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("not a private key"));
        let enc = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(PrivateKey::from_pem(p, enc.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("encrypted"));
        let junk = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
        assert!(PrivateKey::from_pem(p, junk.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("not a valid"));
    }
}
