//! A real `moat start-single-node` process on loopback with a certs
//! directory made by `moat cert`, killed on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct NodeProc {
    pub tmp: tempfile::TempDir,
    pub port: u16,
    pub child: Option<Child>,
    pub log: PathBuf,
}

fn moat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat")).args(args).output().unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NodeProc {
    /// Makes certs (CA, node for localhost/127.0.0.1, root) and starts a node.
    pub fn start(extra: &[&str]) -> NodeProc {
        let tmp = tempfile::tempdir().unwrap();
        let certs = tmp.path().join("certs");
        let key = tmp.path().join("ca.key");
        let c = certs.to_str().unwrap();
        let k = key.to_str().unwrap();
        for args in [
            vec!["cert", "create-ca", "--certs-dir", c, "--ca-key", k],
            vec![
                "cert",
                "create-node",
                "--certs-dir",
                c,
                "--ca-key",
                k,
                "localhost",
                "127.0.0.1",
            ],
            vec!["cert", "create-client", "--certs-dir", c, "--ca-key", k, "root"],
        ] {
            let out = moat(&args);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let mut n = NodeProc {
            port: free_port(),
            log: tmp.path().join("node.log"),
            tmp,
            child: None,
        };
        n.spawn(extra);
        n
    }

    pub fn certs(&self) -> PathBuf {
        self.tmp.path().join("certs")
    }

    pub fn store(&self) -> PathBuf {
        self.tmp.path().join("store")
    }

    /// (Re)starts the node process on the same port and store.
    pub fn spawn(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let listen = format!("127.0.0.1:{}", self.port);
        let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
            .args([
                "start-single-node",
                "--http-addr",
                "127.0.0.1:0",
                "--certs-dir",
                self.certs().to_str().unwrap(),
            ])
            .args(["--store", self.store().to_str().unwrap(), "--listen-addr", &listen])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("moat node serving SQL") {
                    let _ = tx.send(());
                }
            }
        });
        let started = rx.recv_timeout(Duration::from_secs(30));
        self.child = Some(child);
        assert!(
            started.is_ok(),
            "node did not start: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// psql as root by certificate.
    pub fn psql(&self, sql: &str) -> Output {
        self.psql_as("root", sql)
    }

    pub fn psql_as(&self, user: &str, sql: &str) -> Output {
        let home = self.tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let certs = self.certs();
        let conn = format!(
            "host=localhost port={} user={user} dbname=defaultdb sslmode=verify-full connect_timeout=10 sslrootcert={} sslcert={} sslkey={}",
            self.port,
            certs.join("ca.crt").display(),
            certs.join(format!("client.{user}.crt")).display(),
            certs.join(format!("client.{user}.key")).display()
        );
        Command::new("psql")
            .arg(conn)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .output()
            .unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits for a condition, bounded.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
