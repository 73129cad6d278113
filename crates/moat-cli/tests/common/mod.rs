//! Helpers for driving the real `moat` binary and the real `openssl` CLI.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch area with a certs directory and a separate place for CA keys.
pub struct Scratch {
    pub tmp: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }
    pub fn certs(&self) -> PathBuf {
        self.tmp.path().join("certs")
    }
    pub fn ca_key(&self) -> PathBuf {
        let safe = self.tmp.path().join("safe");
        std::fs::create_dir_all(&safe).unwrap();
        safe.join("ca.key")
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.certs().join(name)
    }
    /// Runs `moat cert <args> --certs-dir <certs>` and returns the output.
    pub fn cert(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.insert(0, "cert".into());
        all.push("--certs-dir".into());
        all.push(self.certs().display().to_string());
        moat(&all)
    }
    /// Like [`cert`] with `--ca-key` set to the scratch CA key.
    pub fn cert_ca(&self, args: &[&str]) -> Output {
        let key = self.ca_key().display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.push("--ca-key");
        all.push(&key);
        self.cert(&all)
    }
    /// Makes a CA, node and root client with the given key type.
    pub fn standard_dir(&self, key_type: &str) {
        ok(&self.cert_ca(&["create-ca", "--key-type", key_type]));
        ok(&self.cert_ca(&["create-node", "--key-type", key_type, "localhost", "127.0.0.1", "::1"]));
        ok(&self.cert_ca(&["create-client", "--key-type", key_type, "root"]));
    }
}

/// Runs the moat binary with an empty environment apart from PATH/HOME.
pub fn moat<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(args)
        .env_remove("MOAT_CERTS_DIR")
        .env_remove("MOAT_CA_KEY")
        .env_remove("MOAT_SKIP_KEY_PERMISSION_CHECK")
        .env_remove("COCKROACH_SKIP_KEY_PERMISSION_CHECK")
        .output()
        .expect("run moat")
}

/// Runs openssl with the given arguments.
pub fn openssl<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new("openssl").args(args).output().expect("run openssl")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "command failed: {}\n{}", stderr(o), stdout(o));
    stdout(o)
}

/// Asserts failure with one `error:` line containing every needle; returns stderr.
#[track_caller]
pub fn fails(o: &Output, needles: &[&str]) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "command unexpectedly succeeded: {}", stdout(o));
    assert!(err.starts_with("error: "), "stderr must start with 'error: ': {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "error must be one line: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr {err:?} lacks {n:?}");
    }
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// `openssl x509 -text` of a file.
pub fn x509_text(path: &Path) -> String {
    ok(&openssl(&["x509", "-noout", "-text", "-in", path.to_str().unwrap()]))
}

/// File mode bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().mode() & 0o777
}

/// Names of every file in a directory, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Snapshot of every file's bytes in a directory.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    listing(dir)
        .into_iter()
        .map(|n| {
            let b = std::fs::read(dir.join(&n)).unwrap_or_default();
            (n, b)
        })
        .collect()
}

pub const KEY_TYPES: [&str; 4] = ["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa"];
