//! `moat demo`: a secure cluster on loopback in one command (CockroachDB's
//! `cockroach demo`).
//!
//! It makes a fresh CA, node and client certificates in a private temporary
//! directory (the CA key outside the certs directory), starts N nodes in
//! this process on 127.0.0.1 (SQL and node-to-node RPC over TLS on one port
//! each, an HTTPS console each), initialises the cluster, creates user
//! `demo` with a generated password, prints how to connect, and opens the
//! SQL shell as root by certificate (`moat sql`, run as a child process).
//! `-e` runs statements instead and exits; `--no-shell` waits for Ctrl-C.
//! When the demo stops (shell quit, Ctrl-C, SIGTERM, an error), the nodes
//! stop and the temporary directory is removed.

use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use moat_pki::ops::{self, CreateOptions};
use moat_pki::profile::Profile;
use moat_server::cluster::InitReply;
use moat_server::node::{self, NodeConfig, RunningNode};
use tokio::signal::unix::{signal, SignalKind};

use crate::sql::connect::{Connector, Failure};
use crate::sql::target;

/// How long the cluster has to come up (all nodes joined, voters and live).
const READY_TIMEOUT: Duration = Duration::from_secs(45);
/// CockroachDB's first SQL port, and its console's.
const PREFERRED_SQL_PORT: u16 = 26257;
const PREFERRED_HTTP_PORT: u16 = 8080;
/// The demo user's name.
const DEMO_USER: &str = "demo";

/// Flags of `moat demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    nodes: u16,
    /// Do not open the SQL shell: print how to connect and wait for Ctrl-C (or SIGTERM).
    #[arg(long, conflicts_with = "execute")]
    no_shell: bool,
    /// Run these statements as root, then stop the cluster and exit (repeatable;
    /// each may hold several statements). Exit code 1 when one fails.
    #[arg(long, short = 'e', value_name = "SQL")]
    execute: Vec<String>,
    /// SQL port of node 1; node i gets PORT+i-1 (default: 26257 and up when
    /// all are free, else free ports).
    #[arg(long, value_name = "PORT")]
    sql_port: Option<u16>,
    /// Console port of node 1; node i gets PORT+i-1 (default: 8080 and up
    /// when all are free, else free ports).
    #[arg(long, value_name = "PORT")]
    http_port: Option<u16>,
}

/// Where the demo keeps its files, all under one temporary directory.
struct Layout {
    root: PathBuf,
    certs: PathBuf,
    ca_key: PathBuf,
    log: PathBuf,
}

impl Layout {
    fn new(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
            certs: root.join("certs"),
            ca_key: root.join("ca.key"),
            log: root.join("logs").join("moat.log"),
        }
    }

    fn store(&self, i: usize) -> PathBuf {
        self.root.join(format!("node{i}"))
    }
}

/// What runs after the cluster is up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The interactive shell (stdin is a terminal).
    Shell,
    /// `-e`, or statements read from stdin.
    Statements,
    /// `--no-shell`: wait for a signal.
    Wait,
}

/// Runs `moat demo`.
pub fn run(args: DemoArgs) -> Result<()> {
    let n = usize::from(args.nodes);
    let mode = if args.no_shell {
        Mode::Wait
    } else if args.execute.is_empty() && std::io::stdin().is_terminal() {
        Mode::Shell
    } else {
        Mode::Statements
    };
    let (sql_ports, http_ports) = pick_ports(n, args.sql_port, args.http_port)?;
    let tmp = tempfile::Builder::new()
        .prefix("moat-demo-")
        .tempdir()
        .context("cannot create the demo's temporary directory (set TMPDIR to a writable directory)")?;
    let layout = Layout::new(tmp.path());
    let outcome = (|| {
        init_logging(&layout.log)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the I/O runtime")?;
        let outcome = rt.block_on(drive(&args, mode, &layout, &sql_ports, &http_ports));
        // Stops every node task (Raft, RPC, SQL sessions) before the files go.
        rt.shutdown_timeout(Duration::from_secs(2));
        outcome
    })();
    let dir = tmp.path().to_path_buf();
    match tmp.close() {
        Ok(()) => eprintln!("# demo stopped; removed {}", dir.display()),
        Err(e) => eprintln!("warning: cannot remove {}: {e}; remove it by hand", dir.display()),
    }
    match outcome? {
        0 => Ok(()),
        // The statement's error is already on stderr (as `moat sql` prints it).
        code => std::process::exit(code),
    }
}

/// Everything between the temporary directory and its removal; returns the
/// exit code.
async fn drive(args: &DemoArgs, mode: Mode, layout: &Layout, sql_ports: &[u16], http_ports: &[u16]) -> Result<i32> {
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let stop = async move {
        tokio::select! {
            _ = int.recv() => "interrupted",
            _ = term.recv() => "terminated",
        }
    };
    tokio::pin!(stop);

    let started = tokio::select! {
        r = start_cluster(layout, sql_ports, http_ports) => r,
        why = &mut stop => {
            eprintln!("# {why} while starting; stopping the demo cluster");
            return Ok(0);
        }
    };
    let (nodes, password) = match started {
        Ok(x) => x,
        Err(e) => {
            print_log_tail(&layout.log);
            return Err(e);
        }
    };
    let banner = banner(layout, &nodes, &password);
    if mode == Mode::Statements {
        // stdout carries only the statements' results, as with `moat sql -e`.
        eprint!("{banner}");
    } else {
        print!("{banner}");
    }
    let _ = std::io::stdout().flush();

    let code = match mode {
        Mode::Wait => {
            println!(
                "# The cluster is running. Press Ctrl-C to stop it and remove {}.",
                layout.root.display()
            );
            let _ = std::io::stdout().flush();
            let why = (&mut stop).await;
            eprintln!("# {why}; stopping the demo cluster");
            0
        }
        Mode::Shell | Mode::Statements => {
            if mode == Mode::Shell {
                println!(
                    "# Quit the shell (\\q or Ctrl-D) to stop the cluster and remove {}.",
                    layout.root.display()
                );
            }
            let terminal = Terminal::save();
            let mut child = shell_command(layout, nodes[0].sql_addr, &args.execute)
                .spawn()
                .context("cannot start the SQL shell (moat sql)")?;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {
                        if let Some(status) = child.try_wait().context("waiting for the SQL shell")? {
                            break status.code().unwrap_or(0);
                        }
                    }
                    why = &mut stop => {
                        let _ = child.kill();
                        let _ = child.wait();
                        terminal.restore();
                        eprintln!("\n# {why}; stopping the demo cluster");
                        break 0;
                    }
                }
            }
        }
    };
    for node in &nodes {
        node.stop();
    }
    Ok(code)
}

/// Certificates, nodes, init, readiness, the demo user. Returns the nodes
/// and the demo user's password.
async fn start_cluster(layout: &Layout, sql_ports: &[u16], http_ports: &[u16]) -> Result<(Vec<RunningNode>, String)> {
    let (certs, ca_key) = (layout.certs.clone(), layout.ca_key.clone());
    tokio::task::spawn_blocking(move || make_certs(&certs, &ca_key))
        .await
        .map_err(|e| anyhow!("certificate creation stopped: {e}"))??;

    let loopback = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let join: Vec<String> = sql_ports.iter().map(|&p| loopback(p).to_string()).collect();
    let mut nodes = Vec::with_capacity(sql_ports.len());
    for (i, (&sql, &http)) in sql_ports.iter().zip(http_ports).enumerate() {
        let mut cfg = NodeConfig::new(&layout.certs, layout.store(i + 1), loopback(sql));
        cfg.http_addr = Some(loopback(http));
        cfg.single_node = false;
        cfg.join = join.clone();
        let running = node::start(cfg).await.map_err(|e| {
            anyhow!(
                "cannot start node {} (SQL 127.0.0.1:{sql}, console 127.0.0.1:{http}): {e}; \
                 choose other ports with --sql-port/--http-port",
                i + 1
            )
        })?;
        nodes.push(running);
    }

    match nodes[0].cluster.core().handle_init().await {
        InitReply::Initialized { cluster_id } => tracing::info!(%cluster_id, "demo cluster initialised"),
        InitReply::AlreadyInitialized => {}
        InitReply::Failed(e) => bail!("cannot initialise the demo cluster on node 1: {e}"),
    }
    wait_ready(&nodes).await?;

    let password = random_password()?;
    create_demo_user(layout, nodes[0].sql_addr, &password).await?;
    Ok((nodes, password))
}

/// The CA (key outside the certs directory), the node certificate for
/// `localhost` and `127.0.0.1`, and client certificates for root and demo.
fn make_certs(certs: &Path, ca_key: &Path) -> Result<()> {
    let opts = CreateOptions::new(certs, ca_key);
    let what = |step: &str| format!("cannot create the demo's {step} in {}", certs.display());
    ops::create_ca(&opts, Profile::Ca, false).with_context(|| what("CA"))?;
    ops::create_node(&opts, &["localhost".into(), "127.0.0.1".into()]).with_context(|| what("node certificate"))?;
    for user in ["root", DEMO_USER] {
        ops::create_client(&opts, user, false).with_context(|| what(&format!("client certificate for {user}")))?;
    }
    Ok(())
}

/// Waits until every node has joined, is a voter and is live, and knows the
/// leader.
async fn wait_ready(nodes: &[RunningNode]) -> Result<()> {
    let start = Instant::now();
    loop {
        let missing = not_ready(nodes);
        if missing.is_empty() {
            return Ok(());
        }
        if start.elapsed() > READY_TIMEOUT {
            bail!(
                "the demo cluster did not come up within {}s: {}; the node log is printed above",
                READY_TIMEOUT.as_secs(),
                missing.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What is still missing, per node (empty: ready).
fn not_ready(nodes: &[RunningNode]) -> Vec<String> {
    let core = nodes[0].cluster.core();
    let members = core.nodes();
    let mut missing = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let c = node.cluster.core();
        let id = c.node_id();
        let leader = c.raft().and_then(|r| r.metrics().borrow().current_leader);
        let what = if id == 0 {
            "has not joined"
        } else if !core.is_voter(id) {
            "is not a voter yet"
        } else if !members.iter().any(|m| m.id == id && m.live) {
            "is not live yet"
        } else if leader.is_none() {
            "does not know the leader yet"
        } else {
            continue;
        };
        missing.push(format!("node {} ({}) {what}", i + 1, node.sql_addr));
    }
    missing
}

/// 16 random bytes, in hex (safe in URLs and shells).
fn random_password() -> Result<String> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| anyhow!("cannot generate the demo user's password: no randomness"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// `CREATE USER demo WITH PASSWORD ...`, as root by certificate.
async fn create_demo_user(layout: &Layout, addr: SocketAddr, password: &str) -> Result<()> {
    let failed = |f: Failure| {
        let m = match f {
            Failure::Sql(m) | Failure::Other(m) => m,
        };
        anyhow!("cannot create user {DEMO_USER} on {addr}: {m}")
    };
    let target = target::resolve(&target::Flags {
        certs_dir: &layout.certs.to_string_lossy(),
        host: &addr.to_string(),
        port: None,
        user: "root",
        database: "defaultdb",
        url: None,
    })?;
    let connector = Connector::new(target).map_err(failed)?;
    let session = connector.connect().await.map_err(failed)?;
    session
        .client
        .simple_query(&format!("CREATE USER {DEMO_USER} WITH PASSWORD '{password}'"))
        .await
        .map_err(|e| failed(connector.explain(&e)))?;
    Ok(())
}

/// `moat sql` as root by certificate on node 1, with the environment's
/// MOAT_* settings removed (they would point it elsewhere).
fn shell_command(layout: &Layout, addr: SocketAddr, execute: &[String]) -> std::process::Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("moat"));
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("sql")
        .arg("--certs-dir")
        .arg(&layout.certs)
        .arg("--host")
        .arg(addr.to_string())
        .args(["--user", "root", "--database", "defaultdb"]);
    for sql in execute {
        cmd.arg("-e").arg(sql);
    }
    for var in [
        "MOAT_URL",
        "MOAT_HOST",
        "MOAT_PORT",
        "MOAT_USER",
        "MOAT_DATABASE",
        "MOAT_CERTS_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    cmd
}

/// How to connect, printed once the cluster is up.
fn banner(layout: &Layout, nodes: &[RunningNode], password: &str) -> String {
    let certs = &layout.certs;
    let file = |name: &str| url_path(&certs.join(name));
    let first = nodes[0].sql_addr;
    let console = nodes[0].http_addr.map(|a| format!("https://{a}/")).unwrap_or_default();
    let mut s = String::new();
    let mut line = |t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    line("#".into());
    line(format!(
        "# Welcome to the moat demo: a secure {}-node cluster on 127.0.0.1.",
        nodes.len()
    ));
    line("# Every connection is TLS; nodes talk to each other over mutual TLS.".into());
    line("#".into());
    line(format!(
        "# Temporary directory (removed when the demo stops): {}",
        layout.root.display()
    ));
    line(format!(
        "#   certificates: {} (CA key {}, outside it)",
        certs.display(),
        layout.ca_key.display()
    ));
    line(format!("#   node logs:    {}", layout.log.display()));
    line("#".into());
    for (i, n) in nodes.iter().enumerate() {
        let http = n
            .http_addr
            .map(|a| format!("https://{a}/"))
            .unwrap_or_else(|| "off".into());
        line(format!("# node {}: SQL {}  console {http}", i + 1, n.sql_addr));
    }
    line("#".into());
    line("# Connect as root with its client certificate:".into());
    line(format!(
        "#   psql \"postgresql://root@{first}/defaultdb?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}\"",
        file("ca.crt"),
        file("client.root.crt"),
        file("client.root.key")
    ));
    line(format!(
        "# Connect as {DEMO_USER} with its password (one-sided TLS, SCRAM-SHA-256):"
    ));
    line(format!(
        "#   psql \"postgresql://{DEMO_USER}:{password}@{first}/defaultdb?sslmode=verify-full&sslrootcert={}\"",
        file("ca.crt")
    ));
    line(format!(
        "#   moat sql --certs-dir {} --host {first}   (root, by certificate)",
        certs.display()
    ));
    line("#".into());
    line(format!(
        "# Console: {console}  log in as {DEMO_USER} / {password} (trust {})",
        certs.join("ca.crt").display()
    ));
    line("#".into());
    s
}

/// A path for a URL's query string: percent-encodes all but unreserved
/// characters and `/`.
fn url_path(p: &Path) -> String {
    let mut out = String::new();
    for b in p.as_os_str().as_encoded_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(*b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Ports for the nodes: the given bases, else CockroachDB's (26257..,
/// 8080..) when all are free, else free ports the system picks.
fn pick_ports(n: usize, sql_base: Option<u16>, http_base: Option<u16>) -> Result<(Vec<u16>, Vec<u16>)> {
    if let (Some(s), Some(h)) = (sql_base, http_base) {
        let (s, h) = (usize::from(s), usize::from(h));
        if s.max(h) - s.min(h) < n {
            bail!("--sql-port {s} and --http-port {h} overlap for {n} nodes; choose bases at least {n} apart");
        }
    }
    // Held until both lists are chosen, so no port is picked twice.
    let mut held = Vec::new();
    let mut choose = |base: Option<u16>, preferred: u16, flag: &str| -> Result<Vec<u16>> {
        let range = |b: u16| -> Option<Vec<u16>> {
            let ports: Vec<u16> = (0..n).map_while(|i| b.checked_add(i as u16)).collect();
            (ports.len() == n).then_some(ports)
        };
        if let Some(b) = base {
            let ports = range(b).ok_or_else(|| anyhow!("{flag} {b}: {n} ports from there go past 65535"))?;
            for &p in &ports {
                let l = bind(p).map_err(|e| {
                    anyhow!("{flag} {b}: port {p} on 127.0.0.1 is not free ({e}); choose another {flag}")
                })?;
                held.push(l);
            }
            return Ok(ports);
        }
        if let Some(ports) = range(preferred) {
            let ls: Vec<TcpListener> = ports.iter().map_while(|&p| bind(p).ok()).collect();
            if ls.len() == n {
                held.extend(ls);
                return Ok(ports);
            }
        }
        let mut ports = Vec::with_capacity(n);
        for _ in 0..n {
            let l = bind(0).context("cannot find a free port on 127.0.0.1")?;
            ports.push(l.local_addr().context("cannot find a free port on 127.0.0.1")?.port());
            held.push(l);
        }
        Ok(ports)
    };
    let sql = choose(sql_base, PREFERRED_SQL_PORT, "--sql-port")?;
    let http = choose(http_base, PREFERRED_HTTP_PORT, "--http-port")?;
    Ok((sql, http))
}

fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
}

/// Node logs go to a file in the temporary directory (`RUST_LOG` filters,
/// default `info`), not to the terminal the shell uses.
fn init_logging(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = std::fs::File::create(path).with_context(|| format!("cannot create the log file {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(())
}

/// After a failed start, the end of the node log (it is removed with the
/// temporary directory).
fn print_log_tail(path: &Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(20)..];
    if !tail.is_empty() {
        eprintln!("# last lines of the node log ({}):", path.display());
        for l in tail {
            eprintln!("#   {l}");
        }
    }
}

/// The terminal's settings before the shell ran, restored when the shell is
/// killed (it may leave the terminal in raw mode).
struct Terminal(Option<libc::termios>);

impl Terminal {
    fn save() -> Self {
        if !std::io::stdin().is_terminal() {
            return Terminal(None);
        }
        // SAFETY: tcgetattr writes a termios struct for fd 0; zeroed is a
        // valid initial value for this plain C struct.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            (libc::tcgetattr(0, &mut t) == 0)
                .then_some(t)
                .map_or(Terminal(None), |t| Terminal(Some(t)))
        }
    }

    fn restore(&self) {
        if let Some(t) = &self.0 {
            // SAFETY: restores settings read from the same fd by tcgetattr.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths_are_encoded() {
        assert_eq!(
            url_path(Path::new("/tmp/moat-demo-x1/ca.crt")),
            "/tmp/moat-demo-x1/ca.crt"
        );
        assert_eq!(url_path(Path::new("/tmp/a b&c/ca.crt")), "/tmp/a%20b%26c/ca.crt");
    }

    #[test]
    fn passwords_are_random_hex() {
        let a = random_password().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_password().unwrap());
    }

    #[test]
    fn explicit_ports_are_checked() {
        let busy = bind(0).unwrap();
        let port = busy.local_addr().unwrap().port();
        let e = pick_ports(1, Some(port), None).unwrap_err().to_string();
        assert!(e.contains("is not free"), "{e}");
        assert!(pick_ports(3, Some(65534), None)
            .unwrap_err()
            .to_string()
            .contains("65535"));
        let e = pick_ports(3, Some(30000), Some(30002)).unwrap_err().to_string();
        assert!(e.contains("overlap"), "{e}");
    }
}
