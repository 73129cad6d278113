//! Helpers shared by the fuzz targets (not part of moat).

use std::path::{Path, PathBuf};

use moat_pki::ops::{self, CreateOptions};
use moat_pki::profile::Profile;

/// Separates the files of a `certs_dir` input (and is in its dictionary).
pub const FILE_SEP: &[u8] = b"\x00\x00moat\x00\x00";

/// Splits `data` at every occurrence of `sep`.
pub fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(sep.len()).position(|w| w == sep) {
        out.push(&rest[..i]);
        rest = &rest[i + sep.len()..];
    }
    out.push(rest);
    out
}

/// Wraps bytes in one PEM block.
pub fn pem_wrap(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}

/// Makes a certs directory under `root` with moat's own operations: `ca.crt`
/// (key outside, in `root/ca.key`), `node.crt`/`node.key` for localhost and
/// 127.0.0.1, `client.root.crt`/`.key` and `client.alice.crt`/`.key`.
/// Returns the certs directory.
pub fn make_certs(root: &Path) -> PathBuf {
    let certs = root.join("certs");
    let opts = CreateOptions::new(&certs, root.join("ca.key"));
    ops::create_ca(&opts, Profile::Ca, false).expect("create-ca");
    ops::create_node(&opts, &["localhost".into(), "127.0.0.1".into()]).expect("create-node");
    ops::create_client(&opts, "root", false).expect("create-client root");
    ops::create_client(&opts, "alice", false).expect("create-client alice");
    certs
}

/// Makes SIGPIPE harmless: libFuzzer's `main` is not Rust's, so the signal
/// keeps its default action (killing the process) unless we ignore it.
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}
