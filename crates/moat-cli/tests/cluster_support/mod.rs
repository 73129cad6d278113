//! Real `moat start --join` processes on loopback: a test CA and its
//! certificates (made by `moat cert` and, for bad certificates, `openssl`),
//! nodes whose logs go to files, `moat init`, `moat node ls/status`, and
//! psql as root. Every process is killed (SIGKILL) on drop, also when a test
//! panics.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The log filter of every node (the `info` lines name joins, voters and
/// handshake failures; openraft's own chatter stays out).
const RUST_LOG: &str = "info,openraft=warn";

/// Runs `moat` with `args`.
pub fn moat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat")).args(args).output().unwrap()
}

/// Runs `moat` with `args` and returns its stdout; panics with its output
/// when it fails.
pub fn moat_ok(args: &[&str]) -> String {
    let out = moat(args);
    assert!(out.status.success(), "moat {args:?} failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 100 ms until it holds, at most `limit`.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// stdout and stderr of a process.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A CA and the certs directory `moat cert` made with it: `ca.crt`,
/// `node.crt` (localhost, 127.0.0.1), `client.root.crt`, `client.alice.crt`.
/// The CA key lives next to the certs directory, not in it.
pub struct Pki {
    pub certs: PathBuf,
    pub ca_key: PathBuf,
}

impl Pki {
    /// Makes `<root>/<name>-certs` and `<root>/<name>-ca.key`.
    pub fn create(root: &Path, name: &str) -> Pki {
        let pki = Pki {
            certs: root.join(format!("{name}-certs")),
            ca_key: root.join(format!("{name}-ca.key")),
        };
        let (c, k) = (p(&pki.certs), p(&pki.ca_key));
        moat_ok(&["cert", "create-ca", "--certs-dir", c, "--ca-key", k]);
        moat_ok(&[
            "cert",
            "create-node",
            "--certs-dir",
            c,
            "--ca-key",
            k,
            "localhost",
            "127.0.0.1",
        ]);
        for user in ["root", "alice"] {
            moat_ok(&["cert", "create-client", "--certs-dir", c, "--ca-key", k, user]);
        }
        pki
    }

    /// A certs directory `dir` for a node with this CA's `ca.crt` and a
    /// `node.crt`/`node.key` made by openssl and signed by this CA: subject
    /// `O=moat, CN=<cn>`, SANs IP:127.0.0.1 and DNS:localhost, the extended
    /// key usages `eku` (openssl syntax, e.g. `serverAuth,clientAuth`).
    pub fn openssl_node_certs(&self, dir: &Path, cn: &str, eku: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::copy(self.certs.join("ca.crt"), dir.join("ca.crt")).unwrap();
        let work = dir.parent().unwrap().join(format!("{cn}-openssl"));
        std::fs::create_dir_all(&work).unwrap();
        let key = dir.join("node.key");
        let csr = work.join("node.csr");
        let ext = work.join("ext.cnf");
        std::fs::write(
            &ext,
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage={eku}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
            ),
        )
        .unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
        };
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            p(&key),
        ]);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        openssl(&[
            "req",
            "-new",
            "-key",
            p(&key),
            "-subj",
            &format!("/O=moat/CN={cn}"),
            "-out",
            p(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            p(&csr),
            "-CA",
            p(&self.certs.join("ca.crt")),
            "-CAkey",
            p(&self.ca_key),
            "-CAcreateserial",
            "-CAserial",
            p(&work.join("ca.srl")),
            "-days",
            "365",
            "-extfile",
            p(&ext),
            "-out",
            p(&dir.join("node.crt")),
        ]);
    }
}

/// psql as root (by certificate) on `127.0.0.1:port`, one command, with an
/// empty `HOME` so no user configuration applies. `sql` is passed with `-c`
/// (one simple query), or `-f` when `file` is set.
pub fn psql_at(port: u16, certs: &Path, home: &Path, sql: &str) -> Output {
    psql_cmd(port, certs, home).args(["-c", sql]).output().unwrap()
}

/// psql as root running the statements of `file` one by one (autocommit).
pub fn psql_file(port: u16, certs: &Path, home: &Path, file: &Path) -> Output {
    psql_cmd(port, certs, home).args(["-f", p(file)]).output().unwrap()
}

fn psql_cmd(port: u16, certs: &Path, home: &Path) -> Command {
    std::fs::create_dir_all(home).unwrap();
    let url = format!(
        "postgresql://root@127.0.0.1:{port}/defaultdb?sslmode=verify-full&connect_timeout=10\
         &sslrootcert={}&sslcert={}&sslkey={}",
        p(&certs.join("ca.crt")),
        p(&certs.join("client.root.crt")),
        p(&certs.join("client.root.key")),
    );
    let mut cmd = Command::new("psql");
    cmd.arg(url)
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home);
    cmd
}

/// A `moat start --join ...` process, killed on drop.
pub struct Node {
    /// Its SQL/RPC port on 127.0.0.1.
    pub port: u16,
    pub certs: PathBuf,
    pub store: PathBuf,
    /// stderr (the log) of every run, appended.
    pub log: PathBuf,
    /// The --join list.
    pub join: String,
    /// More flags (e.g. --snapshot-logs 20).
    pub extra: Vec<String>,
    /// `moat start-single-node` instead of `moat start --join`.
    pub alone: bool,
    child: Option<Child>,
}

impl Node {
    /// A node (not started) on `port` with its store and log under `dir`.
    pub fn new(dir: &Path, name: &str, port: u16, certs: &Path, join: &str, extra: &[&str]) -> Node {
        Node {
            port,
            certs: certs.to_path_buf(),
            store: dir.join(format!("{name}-store")),
            log: dir.join(format!("{name}.log")),
            join: join.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            alone: false,
            child: None,
        }
    }

    /// A `moat start-single-node` node (not started).
    pub fn single(dir: &Path, name: &str, port: u16, certs: &Path) -> Node {
        let mut n = Node::new(dir, name, port, certs, "", &[]);
        n.alone = true;
        n
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The `moat start` command line of this node.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
        cmd.arg(if self.alone { "start-single-node" } else { "start" })
            .args(["--certs-dir", p(&self.certs), "--store", p(&self.store)])
            .args(["--listen-addr", &self.addr(), "--http-addr", "127.0.0.1:0"]);
        if !self.alone {
            cmd.args(["--join", &self.join]);
        }
        cmd.args(&self.extra).env("RUST_LOG", RUST_LOG);
        cmd
    }

    /// Starts (or restarts, same port and store) the process and waits until
    /// it says it serves SQL.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "node {} already runs", self.addr());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("moat node serving SQL on") {
                    let _ = tx.send(());
                }
            }
        });
        let started = rx.recv_timeout(Duration::from_secs(30));
        self.child = Some(child);
        assert!(
            started.is_ok(),
            "node {} did not start:\n{}",
            self.addr(),
            tail(&self.log_text(), 40)
        );
    }

    /// kill -9, and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The voter sets of the membership this node has applied (several
    /// during a joint change), as its store records it (`moat.db`, table
    /// `moat_raft_state`); read with Python's sqlite3 while the node runs.
    pub fn applied_voter_configs(&self) -> Option<Vec<Vec<u64>>> {
        let script = "import sqlite3, sys\n\
                      c = sqlite3.connect(sys.argv[1], timeout=2)\n\
                      r = c.execute('SELECT membership FROM moat_raft_state WHERE id = 1').fetchone()\n\
                      print(r[0] if r else '')\n";
        let out = Command::new("python3")
            .args(["-c", script, p(&self.store.join("moat.db"))])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        serde_json::from_value(v["membership"]["configs"].clone()).ok()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A cluster of `moat start` nodes sharing one certs directory.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub pki: Pki,
    pub home: PathBuf,
    // Last, so the nodes are killed before their directories go.
    pub tmp: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes that all list each other in --join (plus `extra`
    /// flags), runs `moat init` on the first, and waits until `moat node ls`
    /// shows `n` live nodes and the first node has promoted the others to
    /// voters.
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::create(tmp.path(), "cluster");
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let join = ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes: Vec<Node> = ports
            .iter()
            .enumerate()
            .map(|(i, &port)| Node::new(tmp.path(), &format!("n{}", i + 1), port, &pki.certs, &join, extra))
            .collect();
        for node in &mut nodes {
            node.spawn();
        }
        let c = Cluster {
            nodes,
            home: tmp.path().join("home"),
            pki,
            tmp,
        };
        let out = c.moat(&["init", "--host", &c.nodes[0].addr()]);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Cluster successfully initialized"),
            "moat init: {}\n{}",
            text(&out),
            c.logs()
        );
        c.wait_formed(0, n);
        c
    }

    /// Waits (30 s at most) until node `via` has applied a membership in
    /// which all `n` nodes are voters (one configuration, not a joint one)
    /// and `moat node ls` via every node lists `n` live nodes.
    pub fn wait_formed(&self, via: usize, n: usize) {
        let mut configs = None;
        let mut last = Vec::new();
        let ok = wait_until(Duration::from_secs(30), || {
            configs = self.nodes[via].applied_voter_configs();
            configs.as_ref().is_some_and(|c| c.len() == 1 && c[0].len() == n)
                && (0..self.nodes.len()).all(|i| {
                    last = self.node_ls(i);
                    last.len() == n && last.iter().all(|r| r[2] == "t")
                })
        });
        assert!(
            ok,
            "the cluster did not form: voters {configs:?}, node ls {last:?}\n{}",
            self.logs()
        );
    }

    /// Runs `moat <args> --certs-dir <certs>`.
    pub fn moat(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--certs-dir", p(&self.pki.certs)]);
        moat(&all)
    }

    /// psql as root through node `i`.
    pub fn psql(&self, i: usize, sql: &str) -> Output {
        psql_at(self.nodes[i].port, &self.pki.certs, &self.home, sql)
    }

    /// psql as root through node `i`; panics (with the logs) when it fails;
    /// returns its stdout, trimmed.
    pub fn query(&self, i: usize, sql: &str) -> String {
        let out = self.psql(i, sql);
        assert!(
            out.status.success(),
            "{sql:?} on node {}: {}\n{}",
            i + 1,
            text(&out),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The rows of `moat node <cmd> --format tsv` via node `via`, with the
    /// header as first row (empty when the command fails).
    fn node_tsv(&self, cmd: &str, via: usize) -> Vec<Vec<String>> {
        let out = self.moat(&["node", cmd, "--host", &self.nodes[via].addr(), "--format", "tsv"]);
        if !out.status.success() {
            return Vec::new();
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    }

    /// `moat node ls` via node `via`: rows of (id, address, is_live).
    pub fn node_ls(&self, via: usize) -> Vec<Vec<String>> {
        let rows = self.node_tsv("ls", via);
        if rows.first().is_some_and(|h| h == &["id", "address", "is_live"]) {
            rows[1..].to_vec()
        } else {
            Vec::new()
        }
    }

    /// `moat node status` via node `via`: one map column -> value per node.
    pub fn node_status(&self, via: usize) -> Vec<std::collections::HashMap<String, String>> {
        let rows = self.node_tsv("status", via);
        let Some((head, rest)) = rows.split_first() else {
            return Vec::new();
        };
        rest.iter()
            .map(|r| head.iter().cloned().zip(r.iter().cloned()).collect())
            .collect()
    }

    /// The index of the node `moat node status` via `via` names leader.
    pub fn leader(&self, via: usize) -> Option<usize> {
        let status = self.node_status(via);
        let leaders: Vec<_> = status.iter().filter(|r| r["is_leader"] == "t").collect();
        let [l] = leaders[..] else { return None };
        self.nodes.iter().position(|n| n.addr() == l["address"])
    }

    /// The addresses `SHOW NODES` via node `via` lists.
    pub fn member_addrs(&self, via: usize) -> Vec<String> {
        self.query(via, "SHOW NODES")
            .lines()
            .filter_map(|l| l.split('|').nth(1))
            .map(str::to_string)
            .collect()
    }

    /// The last lines of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("--- node {} ({}) log:\n{}\n", i + 1, n.addr(), tail(&n.log_text(), 30)))
            .collect()
    }

    /// A node outside the cluster (not started) with its own certs
    /// directory, whose --join lists the cluster's nodes.
    pub fn outsider(&self, name: &str, certs: &Path) -> Node {
        let join = self.nodes[0].join.clone();
        Node::new(self.tmp.path(), name, free_port(), certs, &join, &[])
    }
}

/// Runs `cmd` (stdout and stderr captured) for at most `limit`; `None` when
/// it was still running then (it is killed).
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Option<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until(limit, || child.try_wait().ok().flatten().is_some());
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    Some(child.wait_with_output().unwrap())
}

/// `openssl s_client -connect 127.0.0.1:port -alpn h2` with a client
/// certificate, verifying the node against `ca`; sends the HTTP/2 client
/// preface, waits a second for an answer, then closes.
pub fn s_client_h2(port: u16, cert: &Path, key: &Path, ca: &Path) -> Output {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-alpn", "h2"])
        .args([
            "-cert",
            p(cert),
            "-key",
            p(key),
            "-CAfile",
            p(ca),
            "-verify_return_error",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let _ = stdin.flush();
    std::thread::sleep(Duration::from_secs(1));
    drop(stdin);
    let exited = wait_until(Duration::from_secs(10), || child.try_wait().ok().flatten().is_some());
    if !exited {
        let _ = child.kill();
    }
    child.wait_with_output().unwrap()
}
