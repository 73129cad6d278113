//! `--sql-addr`: a node that serves SQL on one port and node-to-node RPC on
//! another. With `--sql-addr A --listen-addr B`, A serves SQL clients only
//! and B serves RPC (mutual TLS, ALPN `h2`) only; each port closes the other
//! protocol's clients and says so in the node's log. Real `moat
//! start-single-node` / `moat start` processes on loopback, real clients
//! (psql, `moat node ls`, `moat init`, `openssl s_client`) and a rustls
//! client that shows what each port sends back after the TLS handshake.

mod cluster_support;
use cluster_support::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// What the RPC-only port logs when a PostgreSQL client (SSLRequest or
/// plaintext startup) connects to it.
const RPC_ONLY: &str = "SQL connection closed: this port serves node-to-node RPC only (SQL is on --sql-addr)";
/// What a port logs when a direct-TLS client asked (by ALPN) for the
/// protocol the port does not serve.
const WRONG_PROTOCOL: &str = "connection closed: this port does not serve that protocol";

/// A process killed (SIGKILL) and reaped on drop, also when a test panics.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One node started with `--listen-addr 127.0.0.1:<rpc> --sql-addr
/// 127.0.0.1:<sql>`, with its certificates (CA, node, root and alice).
struct Split {
    // First, so the process dies before its directories go.
    _proc: Killed,
    /// What the node printed on stdout up to its `console:` line.
    banner: Vec<String>,
    /// Its command line and log file (the process is `_proc`).
    node: Node,
    rpc: u16,
    sql: u16,
    pki: Pki,
    home: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Split {
    /// Starts `moat start-single-node` (`alone`) or a one-node `moat start
    /// --join <itself>` (which then waits for `moat init`), and waits until
    /// it has printed its console address (the last line of its banner).
    fn start(alone: bool) -> Split {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::create(tmp.path(), "split");
        let rpc = free_port();
        let sql = std::iter::repeat_with(free_port).find(|&p| p != rpc).unwrap();
        let sql_flag = format!("127.0.0.1:{sql}");
        let node = if alone {
            let mut n = Node::single(tmp.path(), "n1", rpc, &pki.certs);
            n.extra = vec!["--sql-addr".into(), sql_flag];
            n
        } else {
            let join = format!("127.0.0.1:{rpc}");
            Node::new(tmp.path(), "n1", rpc, &pki.certs, &join, &["--sql-addr", &sql_flag])
        };
        let log = std::fs::File::create(&node.log).unwrap();
        let mut child = node
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let proc = Killed(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut banner: Vec<String> = Vec::new();
        while !banner.last().is_some_and(|l| l.starts_with("console:")) {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => banner.push(line),
                Err(_) => panic!(
                    "the node did not start; stdout {banner:?}\n{}",
                    tail(&node.log_text(), 40)
                ),
            }
        }
        Split {
            _proc: proc,
            banner,
            node,
            rpc,
            sql,
            home: tmp.path().join("home"),
            pki,
            _tmp: tmp,
        }
    }

    fn certs(&self) -> &Path {
        &self.pki.certs
    }

    fn log(&self) -> String {
        self.node.log_text()
    }

    /// The number of log lines that contain every one of `needles`.
    fn log_count(&self, needles: &[&str]) -> usize {
        self.log()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    /// Waits (5 s at most) until the log has more than `before` lines with
    /// every one of `needles`; panics with the log's tail otherwise.
    fn expect_logged(&self, before: usize, needles: &[&str], what: &str) {
        let ok = wait_until(Duration::from_secs(5), || self.log_count(needles) > before);
        assert!(
            ok,
            "{what}: no new log line with {needles:?}\n{}",
            tail(&self.log(), 30)
        );
    }

    /// `moat <args> --certs-dir <certs>`.
    fn moat(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--certs-dir", self.certs().to_str().unwrap()]);
        moat(&all)
    }

    /// psql as root (verify-full, root's client certificate); stdout trimmed
    /// when it succeeds.
    fn psql(&self, port: u16, sql: &str) -> Result<String, String> {
        let out = psql_at(port, self.certs(), &self.home, sql);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(text(&out))
        }
    }
}

/// psql as root without TLS (`sslmode=disable`, never prompting for a
/// password): a plaintext PostgreSQL startup message.
fn psql_plaintext(port: u16, home: &Path) -> Output {
    std::fs::create_dir_all(home).unwrap();
    Command::new("psql")
        .arg(format!(
            "postgresql://root@127.0.0.1:{port}/defaultdb?sslmode=disable&connect_timeout=10"
        ))
        .args(["-X", "-A", "-t", "-q", "-w", "-c", "SELECT 1"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .output()
        .unwrap()
}

/// A rustls client configuration: trusts `ca.crt`, presents `<name>.crt`
/// (e.g. `node`, `client.root`), offers the one ALPN protocol `alpn`.
fn tls_client(certs: &Path, name: &str, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(certs.join("ca.crt")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certs.join(format!("{name}.crt")))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(certs.join(format!("{name}.key"))).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(cfg)
}

/// What a direct-TLS client saw on a port.
#[derive(Debug)]
struct Probe {
    /// The ALPN protocol the server chose (the handshake completed).
    alpn: Option<String>,
    /// The application bytes the server sent after the handshake.
    reply: Vec<u8>,
    /// How the connection ended: `None` while it was still open after
    /// `want` bytes or a 3-second wait, else why it ended.
    closed: Option<String>,
}

/// Direct TLS (no SSLRequest) to `127.0.0.1:port` with `cfg`; after the
/// handshake sends `send`, then reads until `want` bytes came, the server
/// closed, or 3 seconds passed. Panics when the handshake itself fails.
fn probe(port: u16, cfg: Arc<rustls::ClientConfig>, send: &[u8], want: usize) -> Probe {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut conn = rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            panic!("TLS handshake with 127.0.0.1:{port} failed: {e}");
        }
    }
    let alpn = conn.alpn_protocol().map(|a| String::from_utf8_lossy(a).into_owned());
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut reply = Vec::new();
    if let Err(e) = s.write_all(send).and_then(|_| s.flush()) {
        return Probe {
            alpn,
            reply,
            closed: Some(format!("write: {e}")),
        };
    }
    let mut buf = [0u8; 4096];
    let closed = loop {
        if reply.len() >= want {
            break None;
        }
        match s.read(&mut buf) {
            Ok(0) => break Some("EOF".to_string()),
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break None,
            Err(e) => break Some(format!("read: {e}")),
        }
    };
    Probe { alpn, reply, closed }
}

/// The HTTP/2 client connection preface followed by an empty SETTINGS frame.
fn h2_preface() -> Vec<u8> {
    let mut b = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    b.extend_from_slice(&[0, 0, 0, 0x04, 0, 0, 0, 0, 0]);
    b
}

/// A PostgreSQL (3.0) startup message for root on defaultdb.
fn pg_startup() -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0root\0database\0defaultdb\0\0");
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    msg
}

/// A user who sets `--sql-addr` is told on stdout where SQL and RPC are,
/// connects psql (verify-full, root's certificate) to the SQL address and
/// runs queries, and `moat node ls` works there too; the node's address in
/// the cluster (what other nodes dial) stays the --listen-addr.
#[test]
fn sql_clients_are_served_on_the_sql_addr() {
    let n = Split::start(true);
    let (sql, rpc) = (format!("127.0.0.1:{}", n.sql), format!("127.0.0.1:{}", n.rpc));
    assert_eq!(
        n.banner[..2],
        [
            format!("moat node serving SQL on {sql} (TLS only)"),
            format!("node-to-node RPC on {rpc} (mutual TLS only)"),
        ],
        "stdout: {:?}",
        n.banner
    );
    let log = n.log();
    assert!(
        log.lines().any(|l| l.contains("node serving SQL and RPC over TLS")
            && l.contains(&format!("sql_addr={sql}"))
            && l.contains(&format!("rpc_addr={rpc}"))),
        "{}",
        tail(&log, 20)
    );

    assert_eq!(n.psql(n.sql, "SELECT 1"), Ok("1".to_string()), "{}", tail(&n.log(), 20));
    assert_eq!(
        n.psql(
            n.sql,
            "CREATE TABLE t (k INT PRIMARY KEY); INSERT INTO t VALUES (7); SELECT k FROM t"
        ),
        Ok("7".to_string()),
        "{}",
        tail(&n.log(), 20)
    );

    let out = n.moat(&["node", "ls", "--host", &sql, "--format", "tsv"]);
    assert!(out.status.success(), "moat node ls --host {sql}: {}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("id\taddress\tis_live\n1\t{rpc}\tt"),
        "{}",
        text(&out)
    );
    assert_eq!(n.log_count(&[RPC_ONLY]), 0, "{}", tail(&n.log(), 20));
    assert_eq!(n.log_count(&[WRONG_PROTOCOL]), 0, "{}", tail(&n.log(), 20));
}

/// The RPC-only port (--listen-addr) serves no SQL: psql with TLS
/// (SSLRequest), psql without TLS, `moat node ls` and a direct-TLS SQL
/// client (ALPN `postgresql`, root's certificate) are all closed before a
/// PostgreSQL message is answered, and the node's log says why; the SQL
/// port keeps working meanwhile.
#[test]
fn rpc_port_refuses_sql_clients() {
    let n = Split::start(true);
    let rpc = format!("127.0.0.1:{}", n.rpc);

    // psql, sslmode=verify-full: SSLRequest, closed without an answer.
    let before = n.log_count(&[RPC_ONLY]);
    let err = n
        .psql(n.rpc, "SELECT 1")
        .expect_err("psql was served SQL on the RPC-only port");
    assert!(err.contains("server closed the connection unexpectedly"), "{err}");
    n.expect_logged(before, &[RPC_ONLY], "psql (TLS) on the RPC port");

    // psql without TLS: the plaintext startup message, closed the same way.
    let before = n.log_count(&[RPC_ONLY]);
    let out = psql_plaintext(n.rpc, &n.home);
    assert!(
        !out.status.success(),
        "plaintext psql was served on the RPC port: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("server closed the connection unexpectedly"),
        "{}",
        text(&out)
    );
    n.expect_logged(before, &[RPC_ONLY], "psql (plaintext) on the RPC port");

    // moat node ls speaks SQL: refused there too.
    let before = n.log_count(&[RPC_ONLY]);
    let out = n.moat(&["node", "ls", "--host", &rpc, "--format", "tsv"]);
    assert!(
        !out.status.success(),
        "moat node ls was served on the RPC port: {}",
        text(&out)
    );
    assert!(!text(&out).contains("is_live"), "{}", text(&out));
    n.expect_logged(before, &[RPC_ONLY], "moat node ls on the RPC port");

    // Direct TLS with ALPN "postgresql": the handshake completes, then the
    // connection is closed without an answer to the startup message ...
    let cfg = tls_client(n.certs(), "client.root", b"postgresql");
    let before = n.log_count(&[WRONG_PROTOCOL, "route=Sql", "serves=RpcOnly"]);
    let p = probe(n.rpc, cfg.clone(), &pg_startup(), 1);
    assert_eq!(p.alpn.as_deref(), Some("postgresql"), "{p:?}");
    assert!(
        p.reply.is_empty() && p.closed.is_some(),
        "direct TLS SQL served on the RPC port: {p:?}"
    );
    n.expect_logged(
        before,
        &[WRONG_PROTOCOL, "route=Sql", "serves=RpcOnly"],
        "direct TLS SQL on the RPC port",
    );
    // ... whereas the SQL port answers the same client (AuthenticationOk,
    // as root's certificate logs it in).
    let p = probe(n.sql, cfg, &pg_startup(), 1);
    assert_eq!(p.reply.first(), Some(&b'R'), "direct TLS SQL on the SQL port: {p:?}");

    assert_eq!(n.psql(n.sql, "SELECT 1"), Ok("1".to_string()), "{}", tail(&n.log(), 20));
}

/// The SQL-only port (--sql-addr) serves no node-to-node RPC: a client
/// with the node certificate that asks for ALPN `h2` completes the TLS
/// handshake (the refusal is by protocol, not by certificate) and is then
/// closed without an HTTP/2 byte, and the log says why; the same client on
/// the RPC port is answered with HTTP/2 (the server's SETTINGS frame).
#[test]
fn sql_port_refuses_rpc_clients() {
    let n = Split::start(true);
    let certs = n.certs();
    let needles = [WRONG_PROTOCOL, "route=Rpc", "serves=SqlOnly"];

    // openssl s_client -alpn h2 with node.crt: h2 negotiated, then closed.
    let before = n.log_count(&needles);
    let out = s_client_h2(
        n.sql,
        &certs.join("node.crt"),
        &certs.join("node.key"),
        &certs.join("ca.crt"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ALPN protocol: h2") && stdout.contains("Verify return code: 0 (ok)"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("alert"), "{}", text(&out));
    n.expect_logged(before, &needles, "openssl s_client -alpn h2 on the SQL port");

    // A rustls client shows what the server sent after the handshake.
    let cfg = tls_client(certs, "node", b"h2");
    let before = n.log_count(&needles);
    let p = probe(n.sql, cfg.clone(), &h2_preface(), 9);
    assert_eq!(p.alpn.as_deref(), Some("h2"), "{p:?}");
    assert!(
        p.reply.is_empty() && p.closed.is_some(),
        "HTTP/2 served on the SQL port: {p:?}"
    );
    n.expect_logged(before, &needles, "rustls h2 client on the SQL port");

    // The RPC port serves it: the first frame is SETTINGS (type 4), and
    // the connection stays open.
    let p = probe(n.rpc, cfg, &h2_preface(), 9);
    assert_eq!(p.alpn.as_deref(), Some("h2"), "{p:?}");
    assert!(
        p.reply.len() >= 9 && p.reply[3] == 0x04,
        "no HTTP/2 SETTINGS from the RPC port: {p:?}"
    );
    assert_eq!(p.closed, None, "{p:?}");

    assert_eq!(n.log_count(&[RPC_ONLY]), 0, "{}", tail(&n.log(), 20));
}

/// A cluster node (`moat start --join`) with --sql-addr is initialised on
/// its RPC port: `moat init` (an RPC) aimed at the SQL address fails and
/// leaves the cluster uninitialised; aimed at --listen-addr it succeeds,
/// and SQL then works on the SQL address.
#[test]
fn cluster_node_is_initialised_on_its_rpc_port() {
    let n = Split::start(false);
    let (sql, rpc) = (format!("127.0.0.1:{}", n.sql), format!("127.0.0.1:{}", n.rpc));
    assert_eq!(
        n.banner[..2],
        [
            format!("moat node serving SQL on {sql} (TLS only)"),
            format!("node-to-node RPC on {rpc} (mutual TLS only)"),
        ],
        "stdout: {:?}",
        n.banner
    );

    let before = n.log_count(&[WRONG_PROTOCOL, "route=Rpc", "serves=SqlOnly"]);
    let started = Instant::now();
    let out = n.moat(&["init", "--host", &sql, "--wait-secs", "1"]);
    assert!(
        !out.status.success(),
        "moat init was served on the SQL port: {}",
        text(&out)
    );
    assert!(!text(&out).contains("successfully initialized"), "{}", text(&out));
    // It fails at once and says which port to use.
    assert!(text(&out).contains("give --host its --listen-addr"), "{}", text(&out));
    assert!(!text(&out).contains("waiting for"), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    n.expect_logged(
        before,
        &[WRONG_PROTOCOL, "route=Rpc", "serves=SqlOnly"],
        "moat init on the SQL port",
    );
    assert!(!n.log().contains("init requested"), "{}", tail(&n.log(), 20));

    let out = n.moat(&["init", "--host", &rpc]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Cluster successfully initialized"),
        "moat init --host {rpc}: {}\n{}",
        text(&out),
        tail(&n.log(), 20)
    );
    let mut last = Err(String::new());
    let ok = wait_until(Duration::from_secs(15), || {
        last = n.psql(n.sql, "SELECT 1");
        last.as_deref() == Ok("1")
    });
    assert!(ok, "SQL on {sql} after init: {last:?}\n{}", tail(&n.log(), 20));
    assert_eq!(n.log_count(&[RPC_ONLY]), 0, "{}", tail(&n.log(), 20));
}
