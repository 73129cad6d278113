//! Client-certificate chain verification, remembered per certificate.
//!
//! Verifying a client's chain costs a signature verification per link (about
//! 80 µs for ECDSA P-256 on the 2-core machine moat is measured on, a tenth
//! of a whole SQL connection). Clients present the same certificate on every
//! connection, so [`CachingClientVerifier`] remembers a successful
//! verification, keyed by the SHA-256 of the exact chain the client sent,
//! with the window of time in which every certificate of it is valid.
//!
//! What stays the same on a hit: the chain bytes (the key), the trust anchors
//! and CRLs (fixed for the verifier's life: every certificate reload builds a
//! new verifier, and so a new, empty cache, see [`crate::store`]), and the
//! time (checked against the remembered window on every hit). What is never
//! skipped: the handshake signature (`CertificateVerify`), which proves the
//! client holds the key; it is verified on every connection. Failures are not
//! remembered. A [`LeafCheck`] (the RPC principal rule, which depends only on
//! the certificate and the node's fixed identity policy) is remembered with
//! the chain.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::digest_cache::{digest_of, DigestCache};

/// How many distinct client chains a verifier remembers.
pub const CAPACITY: usize = 4096;

/// The seconds (Unix time) in which every certificate of a chain is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    not_before: i64,
    not_after: i64,
}

impl Window {
    fn of(chain: &[&CertificateDer<'_>]) -> Option<Window> {
        let mut w = Window {
            not_before: i64::MIN,
            not_after: i64::MAX,
        };
        for c in chain {
            let (_, x) = X509Certificate::from_der(c).ok()?;
            w.not_before = w.not_before.max(x.validity().not_before.timestamp());
            w.not_after = w.not_after.min(x.validity().not_after.timestamp());
        }
        Some(w)
    }

    fn contains(&self, now: UnixTime) -> bool {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        // webpki's rule: valid from notBefore through notAfter, inclusive.
        self.not_before <= now && now <= self.not_after
    }
}

/// A check of the leaf certificate after its chain verified (the RPC
/// principal rule): its refusal fails the handshake; what it accepts is
/// remembered with the chain.
pub type LeafCheck = Arc<dyn Fn(&CertificateDer<'_>) -> Result<(), rustls::Error> + Send + Sync>;

/// A [`ClientCertVerifier`] that remembers the chains `inner` accepted (see
/// the module docs), optionally with a [`LeafCheck`] on top; everything else
/// is `inner`'s.
pub struct CachingClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    check: Option<LeafCheck>,
    verified: DigestCache<Window>,
}

impl std::fmt::Debug for CachingClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingClientVerifier")
            .field("inner", &self.inner)
            .field("leaf_check", &self.check.is_some())
            .field("remembered", &self.remembered())
            .finish()
    }
}

impl CachingClientVerifier {
    /// Wraps `inner`, remembering up to [`CAPACITY`] chains.
    pub fn new(inner: Arc<dyn ClientCertVerifier>) -> Self {
        CachingClientVerifier {
            inner,
            check: None,
            verified: DigestCache::new(CAPACITY),
        }
    }

    /// [`CachingClientVerifier::new`], with `check` run on the leaf after
    /// `inner` accepted the chain (and before it is remembered).
    pub fn with_leaf_check(inner: Arc<dyn ClientCertVerifier>, check: LeafCheck) -> Self {
        CachingClientVerifier {
            check: Some(check),
            ..Self::new(inner)
        }
    }

    /// How many chains it remembers now.
    pub fn remembered(&self) -> usize {
        self.verified.len()
    }
}

impl ClientCertVerifier for CachingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let key = digest_of(std::iter::once(end_entity.as_ref()).chain(intermediates.iter().map(|c| c.as_ref())));
        match self.verified.get(&key) {
            Some(w) if w.contains(now) => return Ok(ClientCertVerified::assertion()),
            Some(_) => self.verified.remove(&key),
            None => {}
        }
        let ok = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        if let Some(check) = &self.check {
            check(end_entity)?;
        }
        let chain: Vec<&CertificateDer<'_>> = std::iter::once(end_entity).chain(intermediates).collect();
        if let Some(w) = Window::of(&chain) {
            self.verified.insert(key, w);
        }
        Ok(ok)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use rustls::server::WebPkiClientVerifier;
    use rustls::RootCertStore;

    use super::*;
    use crate::provider::provider;

    /// The real webpki verifier, with its calls counted.
    #[derive(Debug)]
    struct Counted {
        inner: Arc<dyn ClientCertVerifier>,
        calls: Arc<AtomicUsize>,
    }

    impl ClientCertVerifier for Counted {
        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            self.inner.root_hint_subjects()
        }
        fn verify_client_cert(
            &self,
            ee: &CertificateDer<'_>,
            im: &[CertificateDer<'_>],
            now: UnixTime,
        ) -> Result<ClientCertVerified, rustls::Error> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.inner.verify_client_cert(ee, im, now)
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(m, c, d)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(m, c, d)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    }

    struct Pki {
        ca: rcgen::Issuer<'static, rcgen::KeyPair>,
        ca_der: CertificateDer<'static>,
    }

    const DAY: i64 = 86_400;
    const NOW: i64 = 1_800_000_000;

    fn at(secs: i64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs as u64))
    }

    fn validity(p: &mut rcgen::CertificateParams, from: i64, to: i64) {
        p.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
        p.not_after = time::OffsetDateTime::from_unix_timestamp(to).unwrap();
    }

    fn pki() -> Pki {
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, "test CA");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        validity(&mut p, NOW - 100 * DAY, NOW + 100 * DAY);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Pki {
            ca_der: cert.der().clone(),
            ca: rcgen::Issuer::new(p, key),
        }
    }

    fn client(pki: &Pki, cn: &str, from: i64, to: i64) -> CertificateDer<'static> {
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut p, from, to);
        let key = rcgen::KeyPair::generate().unwrap();
        p.signed_by(&key, &pki.ca).unwrap().der().clone()
    }

    fn verifier(roots_of: &Pki) -> (CachingClientVerifier, Arc<AtomicUsize>) {
        let mut roots = RootCertStore::empty();
        roots.add(roots_of.ca_der.clone()).unwrap();
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Counted {
            inner,
            calls: calls.clone(),
        };
        (CachingClientVerifier::new(Arc::new(counted)), calls)
    }

    #[test]
    fn a_verified_chain_is_remembered() {
        let pki = pki();
        let (v, calls) = verifier(&pki);
        let alice = client(&pki, "alice", NOW - DAY, NOW + DAY);
        v.verify_client_cert(&alice, &[], at(NOW)).unwrap();
        v.verify_client_cert(&alice, &[], at(NOW + 60)).unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the second verification came from the cache"
        );
        assert_eq!(v.remembered(), 1);
        // Another certificate, or the same one with intermediates, is another key.
        let bob = client(&pki, "bob", NOW - DAY, NOW + DAY);
        v.verify_client_cert(&bob, &[], at(NOW)).unwrap();
        assert!(v
            .verify_client_cert(&alice, std::slice::from_ref(&bob), at(NOW))
            .is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_window_is_checked_on_every_hit() {
        let pki = pki();
        let (v, calls) = verifier(&pki);
        let alice = client(&pki, "alice", NOW - DAY, NOW + DAY);
        v.verify_client_cert(&alice, &[], at(NOW)).unwrap();
        // Expired since: the cache does not answer, webpki refuses.
        let err = v.verify_client_cert(&alice, &[], at(NOW + 2 * DAY)).unwrap_err();
        assert!(format!("{err:?}").contains("Expired"), "{err:?}");
        // Not yet valid.
        let err = v.verify_client_cert(&alice, &[], at(NOW - 2 * DAY)).unwrap_err();
        assert!(format!("{err:?}").contains("NotValidYet"), "{err:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(v.remembered(), 0, "an entry outside its window is forgotten");
        // The last second of validity still counts (as in webpki).
        v.verify_client_cert(&alice, &[], at(NOW + DAY)).unwrap();
        v.verify_client_cert(&alice, &[], at(NOW + DAY)).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_leaf_check_refuses_and_is_remembered_only_when_it_accepts() {
        let pki = pki();
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca_der.clone()).unwrap();
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
        let checks = Arc::new(AtomicUsize::new(0));
        let counted = checks.clone();
        let v = CachingClientVerifier::with_leaf_check(
            inner,
            Arc::new(move |leaf| {
                counted.fetch_add(1, Ordering::SeqCst);
                let (_, x) = X509Certificate::from_der(leaf).map_err(|_| rustls::Error::General("parse".into()))?;
                let cn = x.subject().iter_common_name().next().and_then(|c| c.as_str().ok()) == Some("node");
                if cn {
                    Ok(())
                } else {
                    Err(rustls::Error::General("not node".into()))
                }
            }),
        );
        let node = client(&pki, "node", NOW - DAY, NOW + DAY);
        let alice = client(&pki, "alice", NOW - DAY, NOW + DAY);
        for _ in 0..2 {
            v.verify_client_cert(&node, &[], at(NOW)).unwrap();
            let err = v.verify_client_cert(&alice, &[], at(NOW)).unwrap_err();
            assert!(format!("{err:?}").contains("not node"), "{err:?}");
        }
        // node: checked once, then remembered; alice: checked (and refused) each time.
        assert_eq!(checks.load(Ordering::SeqCst), 3);
        assert_eq!(v.remembered(), 1);
    }

    #[test]
    fn failures_are_not_remembered() {
        let pki = pki();
        let other = self::pki();
        let (v, calls) = verifier(&pki);
        let stranger = client(&other, "mallory", NOW - DAY, NOW + DAY);
        for _ in 0..2 {
            let err = v.verify_client_cert(&stranger, &[], at(NOW)).unwrap_err();
            // A foreign CA with the same name: found by name, refused by signature.
            assert!(format!("{err:?}").contains("BadSignature"), "{err:?}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(v.remembered(), 0);
    }
}
