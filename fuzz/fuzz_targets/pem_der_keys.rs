//! Keys, certificates, CSRs and CRLs from arbitrary bytes: each parser gets
//! the bytes as they are and wrapped in a PEM block of its label (so the DER
//! parsers behind the PEM readers see fuzzed DER, not only base64 noise).
//! A key that parses must survive a PEM round trip.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use moat_fuzz::pem_wrap;
use moat_pki::crl::{parse_crl_file, summarize};
use moat_pki::csr::parse_csr;
use moat_pki::inspect::{parse_cert_pem, CertInfo};
use moat_pki::keys::PrivateKey;
use time::OffsetDateTime;

const KEY_LABELS: [&str; 4] = [
    "PRIVATE KEY",
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
];

fn key(path: &Path, k: &PrivateKey) {
    let _ = k.describe();
    let _ = k.public_key_raw();
    let again = PrivateKey::from_pem(path, k.to_pem().as_bytes()).expect("a parsed key re-parses from its own PEM");
    assert_eq!(again.pkcs8_der(), k.pkcs8_der(), "PEM round trip changed the key");
}

fn cert_info(der: &[u8]) {
    if let Ok(info) = CertInfo::from_der(der) {
        let _ = info.days_left(OffsetDateTime::UNIX_EPOCH);
        let _ = info.allows_eku("serverAuth");
    }
}

fn crls(bytes: &[u8]) {
    if let Ok(list) = parse_crl_file(bytes) {
        for c in &list {
            summarize(c.as_ref()).expect("a CRL accepted by parse_crl_file summarises");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.pem");

    // Keys: PEM text and raw DER (PKCS#1, PKCS#8, SEC1).
    if let Ok(k) = PrivateKey::from_pem(path, data) {
        key(path, &k);
    }
    if let Ok(k) = PrivateKey::from_der(path, data) {
        key(path, &k);
    }
    let label = KEY_LABELS[data.first().map_or(0, |b| *b as usize) % KEY_LABELS.len()];
    if let Ok(k) = PrivateKey::from_pem(path, pem_wrap(label, data).as_bytes()) {
        key(path, &k);
    }

    // Certificates.
    if let Ok(certs) = parse_cert_pem(path, data) {
        certs.iter().for_each(|c| cert_info(c));
    }
    if let Ok(certs) = parse_cert_pem(path, pem_wrap("CERTIFICATE", data).as_bytes()) {
        certs.iter().for_each(|c| cert_info(c));
    }
    cert_info(data);

    // CSRs (parse_csr also verifies the self-signature).
    let _ = parse_csr(path, data);
    let _ = parse_csr(path, pem_wrap("CERTIFICATE REQUEST", data).as_bytes());

    // CRL files: PEM or concatenated DER.
    crls(data);
    crls(pem_wrap("X509 CRL", data).as_bytes());
    let _ = summarize(data);
});
