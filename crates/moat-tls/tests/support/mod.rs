//! Test support: certs directories made with moat-pki (including broken and
//! special certificates), a TLS server built on the store's configs, and log
//! capture.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moat_pki::ca::SigningCa;
use moat_pki::inspect::{certs_to_pem, CertInfo};
use moat_pki::keys::{KeyType, PrivateKey};
use moat_pki::ops::{self, CreateOptions};
use moat_pki::profile::{self, Profile};
use moat_pki::writer::FileSet;
use moat_tls::store::CertStore;
use time::{Duration as TDuration, OffsetDateTime};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    /// CA + node (localhost, 127.0.0.1) + root + alice client certs.
    pub fn new() -> Self {
        let d = Dir {
            tmp: tempfile::tempdir().unwrap(),
        };
        ops::create_ca(&d.opts(), Profile::Ca, false).unwrap();
        ops::create_node(&d.opts(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
        ops::create_client(&d.opts(), "root", false).unwrap();
        ops::create_client(&d.opts(), "alice", false).unwrap();
        d
    }
    pub fn certs(&self) -> PathBuf {
        self.tmp.path().join("certs")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.tmp.path().join("ca.key")
    }
    pub fn file(&self, n: &str) -> PathBuf {
        self.certs().join(n)
    }
    pub fn opts(&self) -> CreateOptions {
        CreateOptions::new(self.certs(), self.ca_key())
    }
    pub fn ca(&self) -> SigningCa {
        SigningCa::load(&self.file("ca.crt"), &self.ca_key()).unwrap()
    }

    /// Signs a leaf with arbitrary validity and profile into `dest/<base>.crt/.key`.
    pub fn special_leaf(
        &self,
        dest: &Path,
        base: &str,
        profile: Profile,
        cn: &str,
        not_before_days: i64,
        lifetime_days: i64,
    ) {
        let ca = self.ca();
        let now = OffsetDateTime::now_utc() + TDuration::days(not_before_days) + profile::BACKDATE;
        let hosts = if matches!(profile, Profile::Node | Profile::Ui) {
            vec!["localhost".to_string()]
        } else {
            vec![]
        };
        let params = profile::params(profile, cn, &hosts, TDuration::days(lifetime_days), now, false).unwrap();
        let key = PrivateKey::generate(KeyType::EcdsaP256).unwrap();
        let chain = ca.sign(&params, key.key_pair()).unwrap();
        let mut f = FileSet::new(true);
        f.add_cert(dest.join(format!("{base}.crt")), certs_to_pem(&chain))
            .add_key(dest.join(format!("{base}.key")), key.to_pem());
        f.commit().unwrap();
    }

    pub fn serial(&self, file: &str) -> String {
        let c = moat_pki::inspect::read_cert_pem(&self.file(file)).unwrap();
        CertInfo::from_der(&c[0]).unwrap().serial
    }
}

/// Which server config of the store a test server uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Listener {
    Sql,
    Rpc,
    Http,
}

/// A TLS server on 127.0.0.1 that, after each handshake, answers one line:
/// `hello principal=<CN or none> serial=<served serial> gen=<generation>`
/// (wrapped in an HTTP response on the HTTP listener), then closes.
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(store: Arc<CertStore>, which: Listener) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                return;
            };
            let snap = store.snapshot();
            let config = match which {
                Listener::Sql => snap.sql_server(),
                Listener::Rpc => snap.rpc_server(),
                Listener::Http => snap.http_server(),
            };
            let name = match which {
                Listener::Sql => "sql",
                Listener::Rpc => "rpc",
                Listener::Http => "http",
            };
            tokio::spawn(async move {
                let Ok(mut tls) = moat_tls::accept::handshake(config, tcp, peer, name, Duration::from_secs(5)).await
                else {
                    return;
                };
                let (_, conn) = tls.get_ref();
                let principal = conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| CertInfo::from_der(c).ok())
                    .and_then(|i| i.common_name)
                    .unwrap_or_else(|| "none".into());
                let served = if which == Listener::Http {
                    snap.material.ui()
                } else {
                    snap.material.node()
                };
                let serial = served
                    .ok()
                    .and_then(|k| CertInfo::from_der(&k.cert[0]).ok())
                    .map(|i| i.serial)
                    .unwrap_or_default();
                let body = format!("hello principal={principal} serial={serial} gen={}\n", snap.generation);
                if which == Listener::Http {
                    // Read the request head before answering.
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                        match tokio::io::AsyncReadExt::read(&mut tls, &mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => break,
                        }
                    }
                }
                let out = if which == Listener::Http {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    body
                };
                let _ = tls.write_all(out.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server { addr, task }
}

/// Captured log lines of the current thread (use with a current-thread runtime).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let l2 = logs.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || l2.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (logs, tracing::subscriber::set_default(sub))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `openssl s_client` against the server and returns (success, stdout+stderr).
pub async fn s_client(addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &addr.to_string(),
        "-servername",
        "localhost",
        "-ign_eof",
        "-verify_return_error",
    ]);
    cmd.args(args);
    cmd.stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("s_client hung")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text.contains("hello principal="), text)
}

/// Waits until the logs contain `needle` (the server task logs asynchronously).
pub async fn wait_log(logs: &Logs, needle: &str) -> String {
    for _ in 0..100 {
        if logs.text().contains(needle) {
            return logs.text();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("log lacks {needle:?}:\n{}", logs.text());
}
