//! The one crypto provider of the whole binary (aws-lc-rs), restricted to
//! AEAD cipher suites, with the post-quantum hybrid key exchange
//! X25519MLKEM768 offered first.

use std::sync::{Arc, OnceLock};

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::SupportedProtocolVersion;

/// TLS 1.3 and 1.2 (SQL and HTTP listeners).
pub static TLS12_AND_13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
/// TLS 1.3 only (between nodes).
pub static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The provider every config is built with: aws-lc-rs with the three TLS 1.3
/// suites and the six ECDHE + AEAD TLS 1.2 suites CockroachDB enables.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            use aws_lc_rs::cipher_suite as cs;
            let mut p = aws_lc_rs::default_provider();
            p.cipher_suites = vec![
                cs::TLS13_AES_128_GCM_SHA256,
                cs::TLS13_AES_256_GCM_SHA384,
                cs::TLS13_CHACHA20_POLY1305_SHA256,
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ];
            // The default order already prefers X25519MLKEM768, then X25519,
            // P-256 and P-384; keep it.
            Arc::new(p)
        })
        .clone()
}

/// Installs [`provider`] as the process default, so that nothing in the
/// binary can pick another one. Safe to call more than once.
pub fn install_default() {
    let _ = CryptoProvider::install_default((*provider()).clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_aead_suites_and_pq_first() {
        let p = provider();
        assert_eq!(p.cipher_suites.len(), 9);
        for s in &p.cipher_suites {
            let name = format!("{:?}", s.suite());
            assert!(name.contains("GCM") || name.contains("CHACHA20_POLY1305"), "{name}");
        }
        assert_eq!(format!("{:?}", p.kx_groups[0].name()), "X25519MLKEM768");
    }
}
