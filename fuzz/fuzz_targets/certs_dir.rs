//! The certs-directory loader on fuzz-made directories: the input is split
//! at `\0\0moat\0\0`; the first segment holds options (first byte odd:
//! keys are written 0640, to reach the permission check; else 0600), the
//! others are the contents of a fixed list of files (ca.crt, node.crt,
//! node.key, client.root.crt, ...), written into one temporary directory.
//! Then `CertsDir::load` and
//! `TlsMaterial::from_certs_dir` run on it, and every role's rustls config is
//! built from material that validated.
#![no_main]

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use moat_fuzz::{split, FILE_SEP};
use moat_pki::certsdir::CertsDir;
use moat_tls::material::TlsMaterial;
use moat_tls::principal::IdentityPolicy;
use moat_tls::roles;

const FILES: [&str; 14] = [
    "ca.crt",
    "node.crt",
    "node.key",
    "client.root.crt",
    "client.root.key",
    "ca.crl",
    "ca-client.crt",
    "client.node.crt",
    "client.node.key",
    "ui.crt",
    "ui.key",
    "ca-ui.crt",
    "ca-client.crl",
    "client.alice.crt",
];

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let t = tempfile::Builder::new()
            .prefix("moat-fuzz-certs")
            .tempdir()
            .expect("temp dir");
        let p = t.path().join("certs");
        (t, p)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    let _ = fs::remove_dir_all(dir);
    fs::create_dir(dir).expect("create the certs dir");
    let parts = split(data, FILE_SEP);
    let key_mode = if parts[0].first().is_some_and(|b| b & 1 == 1) {
        0o640
    } else {
        0o600
    };
    for (name, bytes) in FILES.iter().zip(parts[1..].iter()) {
        let mode = if name.ends_with(".key") { key_mode } else { 0o644 };
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(dir.join(name))
            .expect("create a file");
        f.write_all(bytes).expect("write a file");
    }

    let Ok(certs) = CertsDir::load(dir) else { return };
    for e in &certs.entries {
        let _ = e.is_valid();
        let _ = e.expiry_note(time::OffsetDateTime::UNIX_EPOCH);
        let _ = e.key_der();
    }
    for c in &certs.crls {
        let _ = (
            c.is_valid(),
            c.issuer_common_name(),
            c.crl_number(),
            c.revoked_serials(),
        );
    }
    let _ = certs.require(certs.node(), "a node certificate", "node.crt");
    let Ok(m) = TlsMaterial::from_certs_dir(certs) else {
        return;
    };
    let _ = (m.ca_roots(), m.client_roots(), m.ui_roots());
    let _ = (m.node(), m.node_client(), m.ui(), m.client("root"));
    let _ = (m.client_anchor_certs(), m.ca_anchor_certs(), m.present_kinds());
    let _ = m.check_keeps(&m);
    let _ = roles::sql_server(&m, &[roles::ALPN_POSTGRES]);
    let _ = roles::rpc_server(&m, &IdentityPolicy::default());
    let _ = roles::http_server(&m);
    let _ = roles::rpc_client(&m);
    let _ = roles::sql_client(&m, Some("root"));
    let _ = roles::ui_client(&m);
});
