//! The bad-input catalogue (issue 7): one table of malformed and hostile
//! inputs across the CLI (`moat cert`, `moat sql`, `moat start-single-node`)
//! and the SQL port of a real node. Each row says how the input is made, what
//! must happen (exit code / SQLSTATE / refusal / a log line naming the peer)
//! and the clear one-line error it must show. After every server row the node
//! must still serve everyone else: a real psql `SELECT 1` with a client
//! certificate runs after each of them.
//!
//! Every row runs even when an earlier one fails; the failures are collected
//! and reported together, each under its row's name.
//!
//! Rows marked `Fixed:` once failed and name the bug they caught.

mod common;
mod node_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use node_support::{free_port, NodeProc};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const MOAT: &str = env!("CARGO_BIN_EXE_moat");
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
const PROTOCOL_3_0: u32 = 196_608;
/// The serving node's startup/handshake deadline (seconds), short so that the
/// stalled-client rows stay quick.
const NODE_DEADLINE_SECS: u64 = 2;
/// How long a hostile connection may stay open before we call it a hang.
const WIRE_LIMIT: Duration = Duration::from_secs(6);
/// Bound on every CLI command.
const CLI_LIMIT: Duration = Duration::from_secs(60);

const CLIENT_EXT: &str =
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth";
const SERVER_ONLY_EXT: &str =
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth";
const NODE_CLIENT_ONLY_EXT: &str = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1";
const NODE_EXT: &str = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1";

// ---------------------------------------------------------------------------
// Running things, bounded in time.

/// A finished (or killed) process.
struct Ran {
    code: Option<i32>,
    timed_out: bool,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn text(&self) -> String {
        format!("exit={:?} stdout={:?} stderr={:?}", self.code, self.stdout, self.stderr)
    }
}

fn run(mut cmd: Command, limit: Duration) -> Ran {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            timed_out = true;
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ran {
        code: status.and_then(|s| s.code()),
        timed_out,
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    }
}

fn moat_cmd<S: AsRef<std::ffi::OsStr>>(args: &[S], home: &Path) -> Command {
    let mut c = Command::new(MOAT);
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home);
    c
}

fn moat<S: AsRef<std::ffi::OsStr>>(args: &[S], home: &Path) -> Ran {
    run(moat_cmd(args, home), CLI_LIMIT)
}

fn openssl(args: &[&str]) -> Result<(), String> {
    let r = run(
        {
            let mut c = Command::new("openssl");
            c.args(args);
            c
        },
        CLI_LIMIT,
    );
    if r.code == Some(0) {
        Ok(())
    } else {
        Err(format!("openssl {args:?} failed: {}", r.text()))
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn psql_at(port: u16, ca: &Path, crt: &Path, key: &Path, user: &str, home: &Path, sql: &str) -> Ran {
    let conn = format!(
        "host=localhost port={port} user={user} dbname=defaultdb sslmode=verify-full connect_timeout=10 sslrootcert={} sslcert={} sslkey={}",
        p(ca),
        p(crt),
        p(key)
    );
    let mut c = Command::new("psql");
    c.arg(conn)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home);
    run(c, Duration::from_secs(30))
}

/// `moat start-single-node` on its own: either it refuses (exits) or it serves,
/// in which case `probe(port)` runs and the node is killed.
struct NodeRun {
    code: Option<i32>,
    served: bool,
    stderr: String,
    probe: String,
}

fn start_node(certs: &Path, area: &Path, extra: &[&str], probe: Option<&dyn Fn(u16) -> String>) -> NodeRun {
    use std::io::BufRead;
    let port = free_port();
    let log = area.join("start.log");
    let store = area.join("store");
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = moat_cmd(
        &[
            "start-single-node",
            "--http-addr",
            "127.0.0.1:0",
            "--certs-dir",
            p(certs),
            "--store",
            p(&store),
        ],
        area,
    );
    if !extra.contains(&"--listen-addr") {
        cmd.args(["--listen-addr", &listen]);
    }
    cmd.args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("moat node serving SQL") {
                let _ = tx.send(());
            }
        }
    });
    let start = Instant::now();
    let mut served = false;
    let mut code = None;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            code = s.code();
            break;
        }
        if rx.try_recv().is_ok() {
            served = true;
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut probed = String::new();
    if served {
        if let Some(f) = probe {
            probed = f(port);
        }
    }
    if code.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    NodeRun {
        code,
        served,
        stderr: std::fs::read_to_string(&log).unwrap_or_default(),
        probe: probed,
    }
}

// ---------------------------------------------------------------------------
// The PostgreSQL wire, raw and over TLS.

/// What one hostile connection got back.
struct Wire {
    /// Our local port: the node logs it as `peer=127.0.0.1:<port>`.
    port: u16,
    /// Bytes received (decrypted, for TLS), after any SSLRequest/GSSENCRequest answer.
    reply: Vec<u8>,
    /// The node closed the connection within [`WIRE_LIMIT`].
    closed: bool,
    elapsed: Duration,
    note: String,
}

fn startup(params: &[(&[u8], &[u8])], version: u32) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k);
        body.push(0);
        body.extend_from_slice(v);
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn root_startup() -> Vec<u8> {
    startup(&[(b"user", b"root"), (b"database", b"defaultdb")], PROTOCOL_3_0)
}

fn query(sql: &[u8]) -> Vec<u8> {
    let mut out = vec![b'Q'];
    out.extend(((sql.len() + 5) as u32).to_be_bytes());
    out.extend_from_slice(sql);
    out.push(0);
    out
}

const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];

fn read_until_close<R: Read>(r: &mut R, start: Instant, reply: &mut Vec<u8>) -> (bool, String) {
    let mut buf = [0u8; 65536];
    loop {
        if start.elapsed() > WIRE_LIMIT {
            return (false, "still open".into());
        }
        match r.read(&mut buf) {
            Ok(0) => return (true, String::new()),
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return (false, format!("still open after {WIRE_LIMIT:?}"))
            }
            Err(e) => return (true, format!("closed: {e}")),
        }
    }
}

fn connect(port: u16) -> TcpStream {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(WIRE_LIMIT)).unwrap();
    tcp.set_write_timeout(Some(WIRE_LIMIT)).unwrap();
    tcp
}

/// Sends bytes on a plain TCP connection; `answer` bytes of the reply are
/// expected first (the `S`/`N` of an SSLRequest/GSSENCRequest) and dropped.
fn raw(node: u16, first: &[u8], answer: usize, then: &[u8]) -> Wire {
    let mut tcp = connect(node);
    let port = tcp.local_addr().unwrap().port();
    let start = Instant::now();
    let mut note = String::new();
    let _ = tcp.write_all(first);
    let mut ans = vec![0u8; answer];
    if answer > 0 {
        if let Err(e) = tcp.read_exact(&mut ans) {
            note = format!("no answer to the request: {e}");
        }
    }
    if !then.is_empty() {
        let _ = tcp.write_all(then);
    }
    let mut reply = Vec::new();
    let (closed, n2) = read_until_close(&mut tcp, start, &mut reply);
    Wire {
        port,
        reply,
        closed,
        elapsed: start.elapsed(),
        note: format!("{note}{n2}"),
    }
}

fn tls_config(ca: &Path, client: Option<(&Path, &Path)>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match client {
        Some((crt, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(crt)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            builder
                .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
                .unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(cfg)
}

/// A TLS session (after an SSLRequest, or direct when `direct`) that sends `send`.
fn tls(node: u16, cfg: Arc<rustls::ClientConfig>, direct: bool, send: &[u8]) -> Wire {
    let mut tcp = connect(node);
    let port = tcp.local_addr().unwrap().port();
    let start = Instant::now();
    if !direct {
        tcp.write_all(&SSL_REQUEST).unwrap();
        let mut s = [0u8; 1];
        if tcp.read_exact(&mut s).is_err() || s[0] != b'S' {
            return Wire {
                port,
                reply: Vec::new(),
                closed: true,
                elapsed: start.elapsed(),
                note: "SSLRequest not answered with S".into(),
            };
        }
    }
    let conn = rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut reply = Vec::new();
    if let Err(e) = s.write_all(send).and_then(|_| s.flush()) {
        let open = matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut);
        return Wire {
            port,
            reply,
            closed: !open,
            elapsed: start.elapsed(),
            note: format!("TLS: {e}"),
        };
    }
    let (closed, note) = read_until_close(&mut s, start, &mut reply);
    Wire {
        port,
        reply,
        closed,
        elapsed: start.elapsed(),
        note,
    }
}

/// Backend messages of a reply: (type, body).
fn messages(reply: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 5 <= reply.len() {
        let len = u32::from_be_bytes(reply[i + 1..i + 5].try_into().unwrap()) as usize;
        if len < 4 || i + 1 + len > reply.len() {
            break;
        }
        out.push((reply[i], &reply[i + 5..i + 1 + len]));
        i += 1 + len;
    }
    out
}

/// ErrorResponses of a reply: (SQLSTATE, message).
fn errors(reply: &[u8]) -> Vec<(String, String)> {
    messages(reply)
        .into_iter()
        .filter(|(t, _)| *t == b'E')
        .map(|(_, body)| {
            let (mut code, mut msg) = (String::new(), String::new());
            for field in body.split(|b| *b == 0).filter(|f| !f.is_empty()) {
                let v = String::from_utf8_lossy(&field[1..]).into_owned();
                match field[0] {
                    b'C' => code = v,
                    b'M' => msg = v,
                    _ => {}
                }
            }
            (code, msg)
        })
        .collect()
}

/// First column of every DataRow of a reply.
fn data_rows(reply: &[u8]) -> Vec<String> {
    messages(reply)
        .into_iter()
        .filter(|(t, b)| *t == b'D' && b.len() >= 6)
        .map(|(_, b)| {
            let n = i32::from_be_bytes(b[2..6].try_into().unwrap());
            if n < 0 {
                "NULL".into()
            } else {
                String::from_utf8_lossy(&b[6..6 + n as usize]).into_owned()
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The table.

/// What a row's input produced.
enum Got {
    Cli(Ran),
    Node(NodeRun),
    Wire(Wire),
    /// A psql login attempt against the serving node.
    Psql(Ran),
}

/// What must happen. Needles are matched case-insensitively; `a|b` accepts either.
enum Want {
    /// Non-zero exit, exactly one stderr line `error: ...` with every needle,
    /// no raw control characters, no panic.
    Error(&'static [&'static str]),
    /// Exit 0 and the output holds every needle.
    Ok(&'static [&'static str]),
    /// `cert list --format json` exits 0 and the entry of the file has an error with every needle.
    ListError(&'static str, &'static [&'static str]),
    /// `cert list --format json` exits 0 and the file is listed without error.
    ListClean(&'static str),
    /// The node exits non-zero before serving, with one `error: ...` line holding every needle.
    NodeRefuses(&'static [&'static str]),
    /// The node serves; its log and the probe's output hold every needle.
    NodeServes(&'static [&'static str]),
    /// The node answers an ErrorResponse with one of these SQLSTATEs (`a|b`), its message holding every needle.
    Sqlstate(&'static str, &'static [&'static str]),
    /// The node closes the connection within the limit and says why: an
    /// ErrorResponse 08P01 holding every needle, or a log line naming the peer
    /// and holding every needle.
    Closed(&'static [&'static str]),
    /// The node closes the connection within the limit without answering (as PostgreSQL does for CancelRequest).
    Silent,
    /// A query returns this value, or is refused with one of these SQLSTATEs (a size limit).
    ValueOrLimit(&'static str, &'static str),
    /// psql fails to log in and the node's log holds every needle.
    LoginRefused(&'static [&'static str]),
}

type Input = Box<dyn Fn(&Ctx, &Path) -> Result<Got, String>>;

struct Row {
    name: &'static str,
    /// A server row: the node must keep serving afterwards (psql SELECT 1).
    server: bool,
    want: Want,
    input: Input,
}

fn row(name: &'static str, want: Want, input: impl Fn(&Ctx, &Path) -> Result<Got, String> + 'static) -> Row {
    Row {
        name,
        server: false,
        want,
        input: Box::new(input),
    }
}

fn server_row(name: &'static str, want: Want, input: impl Fn(&Ctx, &Path) -> Result<Got, String> + 'static) -> Row {
    Row {
        name,
        server: true,
        want,
        input: Box::new(input),
    }
}

/// The serving node and a scratch area.
struct Ctx {
    node: NodeProc,
    work: tempfile::TempDir,
}

impl Ctx {
    fn ca_key(&self) -> PathBuf {
        self.node.tmp.path().join("ca.key")
    }
    fn ca_crt(&self) -> PathBuf {
        self.node.certs().join("ca.crt")
    }
    fn root_crt(&self) -> PathBuf {
        self.node.certs().join("client.root.crt")
    }
    fn root_key(&self) -> PathBuf {
        self.node.certs().join("client.root.key")
    }
    /// A copy of the node's certs directory (ca.crt, node.*, client.root.*) in `area`.
    fn copy_certs(&self, area: &Path) -> PathBuf {
        let dir = area.join("certs");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        for e in std::fs::read_dir(self.node.certs()).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
        dir
    }
    /// A certs directory with only ca.crt.
    fn ca_only(&self, area: &Path) -> PathBuf {
        let dir = area.join("ca-only");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(self.ca_crt(), dir.join("ca.crt")).unwrap();
        dir
    }
    /// A leaf signed by the node's CA with openssl: `ext` is the extension
    /// section, `dates` (YYYYMMDDHHMMSSZ) the validity (default: 30 days from now).
    fn sign(
        &self,
        area: &Path,
        name: &str,
        cn: &str,
        ext: &str,
        dates: Option<(&str, &str)>,
    ) -> Result<(PathBuf, PathBuf), String> {
        let d = area.join(format!("ossl-{name}"));
        std::fs::create_dir_all(&d).unwrap();
        let key = d.join(format!("{name}.key"));
        let crt = d.join(format!("{name}.crt"));
        let csr = d.join("req.csr");
        openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", p(&key)])?;
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
        ])?;
        std::fs::write(d.join("index.txt"), "").unwrap();
        std::fs::write(d.join("serial"), "1000\n").unwrap();
        let cnf = d.join("ca.cnf");
        std::fs::write(
            &cnf,
            format!(
                "[ca]\ndefault_ca=d\n[d]\ndatabase={db}\nnew_certs_dir={dir}\nserial={serial}\ndefault_md=sha256\npolicy=pol\nunique_subject=no\ncopy_extensions=none\n[pol]\ncommonName=supplied\norganizationName=optional\n",
                db = p(&d.join("index.txt")),
                dir = p(&d),
                serial = p(&d.join("serial")),
            ),
        )
        .unwrap();
        let extfile = d.join("ext.cnf");
        std::fs::write(&extfile, format!("[v3]\n{ext}\n")).unwrap();
        let mut args = vec![
            "ca",
            "-batch",
            "-notext",
            "-config",
            p(&cnf),
            "-cert",
            p(&self.ca_crt()),
            "-keyfile",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.push(p(&self.ca_key()).into());
        for a in [
            "-in",
            p(&csr),
            "-out",
            p(&crt),
            "-extfile",
            p(&extfile),
            "-extensions",
            "v3",
        ] {
            args.push(a.into());
        }
        match dates {
            Some((from, to)) => args.extend(["-startdate".into(), from.into(), "-enddate".into(), to.into()]),
            None => args.extend(["-days".into(), "30".into()]),
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(&args)?;
        Ok((crt, key))
    }
    /// `moat cert list --format json` of a directory.
    fn list(&self, certs: &Path, area: &Path) -> Got {
        Got::Cli(moat(
            &["cert", "list", "--format", "json", "--certs-dir", p(certs)],
            area,
        ))
    }
    /// Copies the node's certs and starts a node on them after `tweak`.
    fn start_tweaked(&self, area: &Path, extra: &[&str], tweak: impl FnOnce(&Path)) -> Got {
        let certs = self.copy_certs(area);
        tweak(&certs);
        Got::Node(start_node(&certs, area, extra, None))
    }
    fn psql_with(&self, area: &Path, crt: &Path, key: &Path) -> Got {
        Got::Psql(psql_at(
            self.node.port,
            &self.ca_crt(),
            crt,
            key,
            "root",
            area,
            "SELECT 1",
        ))
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn half(path: &Path) {
    let b = std::fs::read(path).unwrap();
    std::fs::write(path, &b[..b.len() / 2]).unwrap();
}

fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\n')
}

fn matches(hay: &str, needles: &[&str]) -> Result<(), String> {
    let low = hay.to_lowercase();
    for n in needles {
        if !n.split('|').any(|alt| low.contains(&alt.to_lowercase())) {
            return Err(format!("lacks {n:?}"));
        }
    }
    Ok(())
}

/// Log text the node wrote since `from`, waiting up to 3 s for `until`.
fn log_since(node: &NodeProc, from: usize, until: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let all = node.log_text();
        let new = all.get(from..).unwrap_or("").to_string();
        if until(&new) || start.elapsed() > Duration::from_secs(3) {
            return new;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn check(ctx: &Ctx, want: &Want, got: &Got, log_from: usize) -> Result<(), String> {
    match (want, got) {
        (Want::Error(needles), Got::Cli(r)) => {
            if r.timed_out {
                return Err(format!("did not finish within {CLI_LIMIT:?}"));
            }
            if r.code == Some(0) || r.code.is_none() {
                return Err(format!("must fail: {}", r.text()));
            }
            let err = r.stderr.trim_end();
            if !err.starts_with("error: ") || err.lines().count() != 1 {
                return Err(format!("stderr must be one `error: ` line: {err:?}"));
            }
            if has_control(err) || err.contains("panicked") {
                return Err(format!("raw control characters or a panic in {err:?}"));
            }
            matches(err, needles).map_err(|m| format!("{err:?} {m}"))
        }
        (Want::Ok(needles), Got::Cli(r)) => {
            if r.code != Some(0) {
                return Err(format!("must succeed: {}", r.text()));
            }
            matches(&format!("{}{}", r.stdout, r.stderr), needles).map_err(|m| format!("{} {m}", r.text()))
        }
        (Want::ListError(file, _) | Want::ListClean(file), Got::Cli(r)) => {
            if r.code != Some(0) {
                return Err(format!("cert list must succeed: {}", r.text()));
            }
            let doc: serde_json::Value =
                serde_json::from_str(&r.stdout).map_err(|e| format!("cert list JSON: {e}: {}", r.text()))?;
            let entry = doc["certificates"]
                .as_array()
                .and_then(|a| a.iter().find(|c| c["cert_file"] == *file))
                .ok_or_else(|| format!("{file} not listed: {}", r.stdout))?;
            let error = entry["error"].as_str().unwrap_or("");
            match want {
                Want::ListClean(_) if error.is_empty() => Ok(()),
                Want::ListClean(_) => Err(format!("{file} listed with an error: {error}")),
                _ if has_control(error) => Err(format!("raw control characters in {error:?}")),
                Want::ListError(_, needles) => {
                    matches(error, needles).map_err(|m| format!("{file} error {error:?} {m}"))
                }
                _ => unreachable!(),
            }
        }
        (Want::NodeRefuses(needles), Got::Node(n)) => {
            if n.served {
                return Err(format!("the node started serving instead of refusing: {}", n.stderr));
            }
            if n.code.is_none() || n.code == Some(0) {
                return Err(format!("the node must exit non-zero: exit={:?} {}", n.code, n.stderr));
            }
            if n.stderr.contains("panicked") {
                return Err(format!("panic: {}", n.stderr));
            }
            let errs: Vec<&str> = n.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
            if errs.len() != 1 {
                return Err(format!("want one `error: ` line: {:?}", n.stderr));
            }
            if has_control(errs[0]) {
                return Err(format!("raw control characters in {:?}", errs[0]));
            }
            matches(errs[0], needles).map_err(|m| format!("{:?} {m}", errs[0]))
        }
        (Want::NodeServes(needles), Got::Node(n)) => {
            if !n.served {
                return Err(format!("the node did not serve: exit={:?} {}", n.code, n.stderr));
            }
            matches(&format!("{}\n{}", n.stderr, n.probe), needles)
                .map_err(|m| format!("log {:?} probe {:?} {m}", n.stderr, n.probe))
        }
        (Want::Sqlstate(codes, needles), Got::Wire(w)) => {
            let errs = errors(&w.reply);
            let Some((code, msg)) = errs.first() else {
                return Err(format!(
                    "no ErrorResponse: {:?} ({})",
                    String::from_utf8_lossy(&w.reply),
                    w.note
                ));
            };
            if !codes.split('|').any(|c| c == code) {
                return Err(format!("SQLSTATE {code} ({msg:?}), want {codes}"));
            }
            if has_control(msg) {
                return Err(format!("raw control characters in {msg:?}"));
            }
            matches(msg, needles).map_err(|m| format!("{msg:?} {m}"))?;
            if !w.closed {
                return Err(format!("connection still open after the error ({:?})", w.elapsed));
            }
            Ok(())
        }
        (Want::Closed(needles), Got::Wire(w)) => {
            if !w.closed {
                return Err(format!(
                    "the node kept the connection open for {:?} ({}); got {:?}",
                    w.elapsed,
                    w.note,
                    String::from_utf8_lossy(&w.reply)
                ));
            }
            let errs = errors(&w.reply);
            if errs.iter().any(|(c, m)| c == "08P01" && matches(m, needles).is_ok()) {
                return Ok(());
            }
            let peer = format!("127.0.0.1:{}", w.port);
            let ok = |new: &str| new.lines().any(|l| l.contains(&peer) && matches(l, needles).is_ok());
            let new = log_since(&ctx.node, log_from, ok);
            if ok(&new) {
                Ok(())
            } else {
                Err(format!(
                    "closed after {:?} without saying why: no ErrorResponse 08P01 with {needles:?} (got {errs:?}) and no log line for peer {peer} with {needles:?}; new log: {new:?}",
                    w.elapsed
                ))
            }
        }
        (Want::Silent, Got::Wire(w)) => {
            if !w.closed {
                return Err(format!("still open after {:?}", w.elapsed));
            }
            if !w.reply.is_empty() {
                return Err(format!("unexpected reply {:?}", String::from_utf8_lossy(&w.reply)));
            }
            Ok(())
        }
        (Want::ValueOrLimit(value, codes), Got::Wire(w)) => {
            if data_rows(&w.reply).iter().any(|v| v == value) {
                return Ok(());
            }
            let errs = errors(&w.reply);
            if errs.iter().any(|(c, _)| codes.split('|').any(|x| x == c)) {
                return Ok(());
            }
            Err(format!(
                "neither {value} nor SQLSTATE {codes}: errors {errs:?}; {}",
                w.note
            ))
        }
        (Want::LoginRefused(needles), Got::Psql(r)) => {
            if r.code == Some(0) {
                return Err(format!("psql logged in: {}", r.text()));
            }
            let new = log_since(&ctx.node, log_from, |n| matches(n, needles).is_ok());
            matches(&new, needles).map_err(|m| format!("node log {new:?} {m}; psql {}", r.text()))
        }
        _ => Err("the row's input does not produce what its expectation checks (test bug)".into()),
    }
}

// ---------------------------------------------------------------------------

fn rows() -> Vec<Row> {
    let mut v = Vec::new();

    // --- Certificate files: what the node and `cert list` load. -----------
    v.push(row(
        "garbage PEM as node.crt",
        Want::NodeRefuses(&["node.crt", "no certificates found"]),
        |c, a| Ok(c.start_tweaked(a, &[], |d| std::fs::write(d.join("node.crt"), "garbage\n").unwrap())),
    ));
    v.push(row(
        "garbage PEM as a client certificate (cert list)",
        Want::ListError("client.root.crt", &["no certificates found"]),
        |c, a| {
            let d = c.copy_certs(a);
            std::fs::write(d.join("client.root.crt"), "-----BEGIN CERTIFICATE-----\n%%%%\n").unwrap();
            Ok(c.list(&d, a))
        },
    ));
    v.push(row(
        "private key concatenated into node.crt",
        Want::NodeRefuses(&["node.crt", "PRIVATE KEY", "move it"]),
        |c, a| {
            Ok(c.start_tweaked(a, &[], |d| {
                let mut crt = std::fs::read(d.join("node.crt")).unwrap();
                crt.extend(std::fs::read(d.join("node.key")).unwrap());
                std::fs::write(d.join("node.crt"), crt).unwrap();
            }))
        },
    ));
    v.push(row(
        "private key concatenated into a client certificate (cert list)",
        Want::ListError("client.root.crt", &["PRIVATE KEY"]),
        |c, a| {
            let d = c.copy_certs(a);
            let mut crt = std::fs::read(d.join("client.root.crt")).unwrap();
            crt.extend(std::fs::read(d.join("client.root.key")).unwrap());
            std::fs::write(d.join("client.root.crt"), crt).unwrap();
            Ok(c.list(&d, a))
        },
    ));
    v.push(row(
        "truncated node.crt",
        Want::NodeRefuses(&["node.crt", "no certificates found|truncated"]),
        |c, a| Ok(c.start_tweaked(a, &[], |d| half(&d.join("node.crt")))),
    ));
    v.push(row(
        "truncated node.key",
        Want::NodeRefuses(&["node.key", "no PEM block|truncated"]),
        |c, a| Ok(c.start_tweaked(a, &[], |d| half(&d.join("node.key")))),
    ));
    v.push(row(
        "truncated CA key (--ca-key)",
        Want::Error(&["trunc-ca.key", "PEM"]),
        |c, a| {
            let key = a.join("trunc-ca.key");
            std::fs::copy(c.ca_key(), &key).unwrap();
            half(&key);
            Ok(Got::Cli(moat(
                &[
                    "cert",
                    "create-node",
                    "--certs-dir",
                    p(&c.ca_only(a)),
                    "--ca-key",
                    p(&key),
                    "localhost",
                ],
                a,
            )))
        },
    ));
    v.push(row(
        "empty ca.crt",
        Want::NodeRefuses(&["ca.crt", "no certificates found"]),
        |c, a| Ok(c.start_tweaked(a, &[], |d| std::fs::write(d.join("ca.crt"), "").unwrap())),
    ));
    v.push(row(
        "empty node.key",
        Want::NodeRefuses(&["node.key", "no PEM block"]),
        |c, a| Ok(c.start_tweaked(a, &[], |d| std::fs::write(d.join("node.key"), "").unwrap())),
    ));
    v.push(row(
        "empty --ca-key file",
        Want::Error(&["empty.key", "no PEM block"]),
        |c, a| {
            let key = a.join("empty.key");
            std::fs::write(&key, "").unwrap();
            chmod(&key, 0o600);
            Ok(Got::Cli(moat(
                &[
                    "cert",
                    "create-node",
                    "--certs-dir",
                    p(&c.ca_only(a)),
                    "--ca-key",
                    p(&key),
                    "localhost",
                ],
                a,
            )))
        },
    ));
    v.push(row(
        "CA certificate and key used as node.crt/node.key",
        Want::NodeRefuses(&["node.crt", "CA certificate is used as a leaf"]),
        |c, a| {
            let key = c.ca_key();
            Ok(c.start_tweaked(a, &[], |d| {
                std::fs::copy(d.join("ca.crt"), d.join("node.crt")).unwrap();
                std::fs::copy(&key, d.join("node.key")).unwrap();
                chmod(&d.join("node.key"), 0o600);
            }))
        },
    ));
    v.push(row(
        "node certificate used as ca.crt",
        Want::NodeRefuses(&["ca.crt", "not a CA"]),
        |c, a| {
            Ok(c.start_tweaked(a, &[], |d| {
                std::fs::copy(d.join("node.crt"), d.join("ca.crt")).map(|_| ()).unwrap()
            }))
        },
    ));
    v.push(row(
        "node certificate used as the signing CA (--ca-cert)",
        Want::Error(&["node.crt", "is not a CA"]),
        |c, a| {
            let d = c.copy_certs(a);
            Ok(Got::Cli(moat(
                &[
                    "cert",
                    "create-client",
                    "bob",
                    "--certs-dir",
                    p(&d),
                    "--ca-cert",
                    p(&d.join("node.crt")),
                    "--ca-key",
                    p(&d.join("node.key")),
                ],
                a,
            )))
        },
    ));
    v.push(row(
        "clientAuth-only certificate as node.crt",
        Want::NodeRefuses(&["node.crt", "serverAuth"]),
        |c, a| {
            let (crt, key) = c.sign(a, "node", "node", NODE_CLIENT_ONLY_EXT, None)?;
            Ok(c.start_tweaked(a, &[], |d| {
                std::fs::copy(&crt, d.join("node.crt")).unwrap();
                std::fs::copy(&key, d.join("node.key")).unwrap();
            }))
        },
    ));
    v.push(row(
        "node.key of another key pair",
        Want::NodeRefuses(&["node.key", "does not match"]),
        |c, a| {
            let (_, key) = c.sign(a, "other", "node", NODE_EXT, None)?;
            Ok(c.start_tweaked(a, &[], |d| {
                std::fs::copy(&key, d.join("node.key")).unwrap();
            }))
        },
    ));
    v.push(row(
        "1 MB of junk inside a PEM node.crt",
        Want::NodeRefuses(&["node.crt", "not a valid X.509 certificate"]),
        |c, a| {
            Ok(c.start_tweaked(a, &[], |d| {
                let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
                for _ in 0..(1 << 20) / 64 {
                    pem.push_str(&"A".repeat(64));
                    pem.push('\n');
                }
                pem.push_str("-----END CERTIFICATE-----\n");
                std::fs::write(d.join("node.crt"), pem).unwrap();
            }))
        },
    ));
    v.push(row(
        "1 MB certificate (a 1 MB extension) in cert list",
        Want::ListClean("client.big.crt"),
        |c, a| {
            let ext = format!(
                "{CLIENT_EXT}\n1.3.6.1.4.1.99999.1=ASN1:FORMAT:HEX,OCTETSTRING:{}",
                "ab".repeat(1 << 20)
            );
            let (crt, key) = c.sign(a, "big", "big", &ext, None)?;
            if std::fs::metadata(&crt).unwrap().len() < 1 << 20 {
                return Err("the big certificate is under 1 MB (test bug)".into());
            }
            let d = c.copy_certs(a);
            std::fs::copy(&crt, d.join("client.big.crt")).unwrap();
            std::fs::copy(&key, d.join("client.big.key")).unwrap();
            Ok(c.list(&d, a))
        },
    ));
    v.push(row(
        "create-node with a 10,000-entry SAN list",
        Want::Ok(&["wrote", "node.crt", "node.key"]),
        |c, a| {
            let mut args: Vec<String> = [
                "cert",
                "create-node",
                "--certs-dir",
                p(&c.ca_only(a)),
                "--ca-key",
                p(&c.ca_key()),
            ]
            .map(String::from)
            .to_vec();
            args.extend((0..10_000).map(|i| format!("h{i}.example.com")));
            Ok(Got::Cli(moat(&args, a)))
        },
    ));
    v.push(row(
        "cert list of a node.crt with 10,000 SANs",
        Want::ListClean("node.crt"),
        |c, a| {
            let d = c.ca_only(a);
            let mut args: Vec<String> = ["cert", "create-node", "--certs-dir", p(&d), "--ca-key", p(&c.ca_key())]
                .map(String::from)
                .to_vec();
            args.extend((0..10_000).map(|i| format!("h{i}.example.com")));
            let r = moat(&args, a);
            if r.code != Some(0) {
                return Err(format!("create-node: {}", r.text()));
            }
            Ok(c.list(&d, a))
        },
    ));
    v.push(row(
        "symlinked node.key (followed, as CockroachDB does)",
        Want::NodeServes(&["psql ok: 1"]),
        |c, a| {
            let certs = c.copy_certs(a);
            let real = a.join("elsewhere.key");
            std::fs::rename(certs.join("node.key"), &real).unwrap();
            std::os::unix::fs::symlink(&real, certs.join("node.key")).unwrap();
            let probe = |port: u16| {
                let r = psql_at(
                    port,
                    &certs.join("ca.crt"),
                    &certs.join("client.root.crt"),
                    &certs.join("client.root.key"),
                    "root",
                    a,
                    "SELECT 1",
                );
                if r.code == Some(0) {
                    format!("psql ok: {}", r.stdout.trim())
                } else {
                    format!("psql failed: {}", r.text())
                }
            };
            Ok(Got::Node(start_node(&certs, a, &[], Some(&probe))))
        },
    ));
    v.push(row(
        "dangling symlink as node.key",
        Want::NodeRefuses(&["node.key", "No such file"]),
        |c, a| {
            let target = a.join("gone.key");
            Ok(c.start_tweaked(a, &[], |d| {
                std::fs::remove_file(d.join("node.key")).unwrap();
                std::os::unix::fs::symlink(&target, d.join("node.key")).unwrap();
            }))
        },
    ));
    v.push(row(
        "world-readable node.key",
        Want::NodeRefuses(&["node.key", "exceeds", "chmod 600"]),
        |c, a| Ok(c.start_tweaked(a, &[], |d| chmod(&d.join("node.key"), 0o644))),
    ));
    v.push(row(
        "world-readable client key (cert list)",
        Want::ListError("client.root.crt", &["exceeds", "chmod 600"]),
        |c, a| {
            let d = c.copy_certs(a);
            chmod(&d.join("client.root.key"), 0o604);
            Ok(c.list(&d, a))
        },
    ));
    v.push(row(
        "node.key is a directory",
        Want::NodeRefuses(&["node.key", "not a regular file"]),
        |c, a| {
            Ok(c.start_tweaked(a, &[], |d| {
                std::fs::remove_file(d.join("node.key")).unwrap();
                std::fs::create_dir(d.join("node.key")).unwrap();
            }))
        },
    ));
    v.push(row("ca.crt is a directory", Want::NodeRefuses(&["ca.crt"]), |c, a| {
        Ok(c.start_tweaked(a, &[], |d| {
            std::fs::remove_file(d.join("ca.crt")).unwrap();
            std::fs::create_dir(d.join("ca.crt")).unwrap();
        }))
    }));
    v.push(row(
        "expired node certificate: the node starts (as CockroachDB), warns, clients refuse it",
        // moat loads an expired node certificate like CockroachDB does (an
        // operator can still rotate it with SIGHUP), logs a warning naming the
        // file, and verify-full clients refuse the connection.
        Want::NodeServes(&[
            "certificate EXPIRED",
            "node.crt",
            "psql failed",
            "certificate verify failed",
        ]),
        |c, a| {
            let (crt, key) = c.sign(
                a,
                "expired",
                "node",
                NODE_EXT,
                Some(("20200101000000Z", "20210101000000Z")),
            )?;
            let certs = c.copy_certs(a);
            std::fs::copy(&crt, certs.join("node.crt")).unwrap();
            std::fs::copy(&key, certs.join("node.key")).unwrap();
            let probe = |port: u16| {
                let r = psql_at(
                    port,
                    &certs.join("ca.crt"),
                    &certs.join("client.root.crt"),
                    &certs.join("client.root.key"),
                    "root",
                    a,
                    "SELECT 1",
                );
                if r.code == Some(0) {
                    "psql logged in".to_string()
                } else {
                    format!("psql failed: {}", r.stderr)
                }
            };
            Ok(Got::Node(start_node(&certs, a, &[], Some(&probe))))
        },
    ));
    v.push(row(
        "garbage CRL in the certs directory",
        Want::NodeRefuses(&["ca.crl", "neither PEM nor a DER CRL"]),
        |c, a| Ok(c.start_tweaked(a, &[], |d| std::fs::write(d.join("ca.crl"), "garbage\n").unwrap())),
    ));

    // --- Node flags and directories. --------------------------------------
    v.push(row(
        "non-existent certs directory",
        Want::NodeRefuses(&["nowhere", "missing"]),
        |_, a| Ok(Got::Node(start_node(&a.join("nowhere"), a, &[], None))),
    ));
    v.push(row(
        "certs directory that is a file (start-single-node)",
        Want::NodeRefuses(&["afile", "not a directory"]),
        |_, a| {
            std::fs::write(a.join("afile"), "x").unwrap();
            Ok(Got::Node(start_node(&a.join("afile"), a, &[], None)))
        },
    ));
    v.push(row(
        "certs directory that is a file (create-ca)",
        Want::Error(&["afile", "exists but is not a directory"]),
        |_, a| {
            std::fs::write(a.join("afile"), "x").unwrap();
            Ok(Got::Cli(moat(
                &[
                    "cert",
                    "create-ca",
                    "--certs-dir",
                    p(&a.join("afile")),
                    "--ca-key",
                    p(&a.join("ca.key")),
                ],
                a,
            )))
        },
    ));
    v.push(row(
        "HBA file with junk",
        Want::NodeRefuses(&["hba.conf", "invalid HBA configuration", "unknown connection type"]),
        |c, a| {
            std::fs::write(a.join("hba.conf"), "junk junk \u{1}\n").unwrap();
            let hba = a.join("hba.conf");
            Ok(c.start_tweaked(a, &["--hba-conf", p(&hba)], |_| {}))
        },
    ));
    v.push(row(
        "invalid principal map",
        Want::NodeRefuses(&["mapping", "has no colon"]),
        |c, a| Ok(c.start_tweaked(a, &["--cert-principal-map", "foo"], |_| {})),
    ));
    v.push(row(
        "invalid DN flag",
        Want::NodeRefuses(&["invalid distinguished name", "TYPE=value"]),
        |c, a| Ok(c.start_tweaked(a, &["--root-cert-distinguished-name", "O=moat,CN"], |_| {})),
    ));
    v.push(row(
        "invalid --listen-addr",
        Want::NodeRefuses(&["invalid address"]),
        |c, a| Ok(c.start_tweaked(a, &["--listen-addr", "not an address:xx"], |_| {})),
    ));
    v.push(row(
        "invalid --ocsp-mode",
        Want::NodeRefuses(&["--ocsp-mode"]),
        |c, a| Ok(c.start_tweaked(a, &["--ocsp-mode", "sometimes"], |_| {})),
    ));

    // --- moat cert commands. -------------------------------------------------
    v.push(row(
        "create-client with control characters in the user name",
        Want::Error(&["user name"]),
        |c, a| {
            Ok(Got::Cli(moat(
                &[
                    "cert",
                    "create-client",
                    "ro\u{1b}[31mot\n",
                    "--certs-dir",
                    p(&c.ca_only(a)),
                    "--ca-key",
                    p(&c.ca_key()),
                ],
                a,
            )))
        },
    ));
    v.push(row(
        "create-node with a control character in a host name",
        Want::Error(&["invalid host name"]),
        |c, a| {
            Ok(Got::Cli(moat(
                &[
                    "cert",
                    "create-node",
                    "bad\u{1}host",
                    "--certs-dir",
                    p(&c.ca_only(a)),
                    "--ca-key",
                    p(&c.ca_key()),
                ],
                a,
            )))
        },
    ));
    v.push(row("garbage CSR", Want::Error(&["x.csr", "no PEM block"]), |c, a| {
        std::fs::write(a.join("x.csr"), "garbage\n").unwrap();
        Ok(Got::Cli(moat(
            &[
                "cert",
                "sign-csr",
                p(&a.join("x.csr")),
                "--profile",
                "client",
                "--user",
                "bob",
                "--certs-dir",
                p(&c.ca_only(a)),
                "--ca-key",
                p(&c.ca_key()),
            ],
            a,
        )))
    }));
    v.push(row(
        "CSR with a tampered signature",
        Want::Error(&["tampered.csr", "signature does not verify"]),
        |c, a| {
            let csrdir = a.join("csr");
            let r = moat(&["cert", "create-csr", "--certs-dir", p(&csrdir), "client", "alice"], a);
            if r.code != Some(0) {
                return Err(format!("create-csr: {}", r.text()));
            }
            let der = a.join("csr.der");
            openssl(&[
                "req",
                "-in",
                p(&csrdir.join("client.alice.csr")),
                "-outform",
                "DER",
                "-out",
                p(&der),
            ])?;
            let mut b = std::fs::read(&der).unwrap();
            let n = b.len();
            b[n - 3] ^= 0x55;
            std::fs::write(&der, b).unwrap();
            let tampered = a.join("tampered.csr");
            openssl(&["req", "-inform", "DER", "-in", p(&der), "-out", p(&tampered)])?;
            Ok(Got::Cli(moat(
                &[
                    "cert",
                    "sign-csr",
                    p(&tampered),
                    "--profile",
                    "client",
                    "--user",
                    "alice",
                    "--certs-dir",
                    p(&c.ca_only(a)),
                    "--ca-key",
                    p(&c.ca_key()),
                ],
                a,
            )))
        },
    ));
    v.push(row(
        "a certificate passed as a CSR",
        Want::Error(&["node.crt", "not CERTIFICATE REQUEST"]),
        |c, a| {
            Ok(Got::Cli(moat(
                &[
                    "cert",
                    "sign-csr",
                    p(&c.node.certs().join("node.crt")),
                    "--profile",
                    "client",
                    "--user",
                    "bob",
                    "--certs-dir",
                    p(&c.ca_only(a)),
                    "--ca-key",
                    p(&c.ca_key()),
                ],
                a,
            )))
        },
    ));
    v.push(row(
        "revoke with a garbage CRL present (nothing written)",
        Want::Error(&["ca.crl", "unreadable", "backup"]),
        |c, a| {
            let d = c.copy_certs(a);
            std::fs::write(d.join("ca.crl"), "garbage\n").unwrap();
            let before = common::snapshot(&d);
            let r = moat(
                &[
                    "cert",
                    "revoke",
                    p(&d.join("client.root.crt")),
                    "--certs-dir",
                    p(&d),
                    "--ca-key",
                    p(&c.ca_key()),
                ],
                a,
            );
            if common::snapshot(&d) != before {
                return Err(format!("the certs directory changed: {:?}", common::listing(&d)));
            }
            Ok(Got::Cli(r))
        },
    ));
    v.push(row(
        "revoke a garbage certificate file",
        Want::Error(&["junk.crt", "no certificates found"]),
        |c, a| {
            std::fs::write(a.join("junk.crt"), "junk\n").unwrap();
            let d = c.copy_certs(a);
            Ok(Got::Cli(moat(
                &[
                    "cert",
                    "revoke",
                    p(&a.join("junk.crt")),
                    "--certs-dir",
                    p(&d),
                    "--ca-key",
                    p(&c.ca_key()),
                ],
                a,
            )))
        },
    ));
    v.push(row(
        "revoke --serial that is not hex",
        Want::Error(&["invalid serial number", "hexadecimal"]),
        |c, a| {
            let d = c.copy_certs(a);
            Ok(Got::Cli(moat(
                &[
                    "cert",
                    "revoke",
                    "--serial",
                    "zz",
                    "--certs-dir",
                    p(&d),
                    "--ca-key",
                    p(&c.ca_key()),
                ],
                a,
            )))
        },
    ));

    // --- moat sql. ------------------------------------------------------------
    v.push(row(
        "moat sql to an unreachable host",
        Want::Error(&["cannot connect", "connection refused"]),
        |c, a| {
            let port = free_port().to_string();
            Ok(Got::Cli(moat(
                &[
                    "sql",
                    "--certs-dir",
                    p(&c.node.certs()),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port,
                    "-e",
                    "SELECT 1",
                ],
                a,
            )))
        },
    ));
    v.push(row("moat sql with a garbage --url", Want::Error(&["--url"]), |c, a| {
        Ok(Got::Cli(moat(
            &[
                "sql",
                "--certs-dir",
                p(&c.node.certs()),
                "--url",
                "postgresql://[garbage",
                "-e",
                "SELECT 1",
            ],
            a,
        )))
    }));
    v.push(server_row(
        // Fixed: `moat sql` now validates --user before connecting (as
        // CockroachDB does) with a one-line, escaped error; it used to print
        // the raw ESC and newline over two lines.
        "moat sql with control characters in --user",
        Want::Error(&["user"]),
        |c, a| {
            let port = c.node.port.to_string();
            Ok(Got::Cli(moat(
                &[
                    "sql",
                    "--certs-dir",
                    p(&c.node.certs()),
                    "--host",
                    "localhost",
                    "--port",
                    &port,
                    "-u",
                    "ro\u{1b}[31mot\nx",
                    "-e",
                    "SELECT 1",
                ],
                a,
            )))
        },
    ));
    v.push(server_row(
        "moat sql with a serverAuth-only client certificate",
        Want::Error(&["client.root.crt", "refused"]),
        |c, a| {
            let (crt, key) = c.sign(a, "sonly", "root", SERVER_ONLY_EXT, None)?;
            let d = a.join("sqlcerts");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::copy(c.ca_crt(), d.join("ca.crt")).unwrap();
            std::fs::copy(&crt, d.join("client.root.crt")).unwrap();
            std::fs::copy(&key, d.join("client.root.key")).unwrap();
            let port = c.node.port.to_string();
            Ok(Got::Cli(moat(
                &[
                    "sql",
                    "--certs-dir",
                    p(&d),
                    "--host",
                    "localhost",
                    "--port",
                    &port,
                    "-e",
                    "SELECT 1",
                ],
                a,
            )))
        },
    ));

    // --- The SQL port. ----------------------------------------------------------
    v.push(server_row(
        "plaintext startup packet",
        Want::Sqlstate("08P01", &["SSL connection required"]),
        |c, _| Ok(Got::Wire(raw(c.node.port, &root_startup(), 0, &[]))),
    ));
    v.push(server_row(
        // Fixed: the connection loop used to drop pgwire's decode errors and
        // close silently; it now answers FATAL 08P01 and logs the reason.
        "startup packet claiming 2 GB (8 bytes)",
        Want::Closed(&["length|too large"]),
        |c, _| {
            let mut b = 0x7fff_ffffu32.to_be_bytes().to_vec();
            b.extend(PROTOCOL_3_0.to_be_bytes());
            Ok(Got::Wire(raw(c.node.port, &b, 0, &[])))
        },
    ));
    v.push(server_row(
        // Fixed with the 2 GB startup packet row.
        "startup packet of length 4",
        Want::Closed(&["startup|length"]),
        |c, _| Ok(Got::Wire(raw(c.node.port, &[0, 0, 0, 4, 0, 3, 0, 0], 0, &[]))),
    ));
    v.push(server_row(
        // Fixed with the 2 GB startup packet row.
        "startup packet over TLS with protocol version 9.9",
        Want::Closed(&["protocol|startup"]),
        |c, _| {
            let cfg = tls_config(&c.ca_crt(), Some((&c.root_crt(), &c.root_key())), &[]);
            let s = startup(&[(b"user", b"root"), (b"database", b"defaultdb")], (9 << 16) | 9);
            Ok(Got::Wire(tls(c.node.port, cfg, false, &s)))
        },
    ));
    v.push(server_row(
        // Fixed with the 2 GB startup packet row.
        "startup packet over 10 kB (3,000 parameters) over TLS",
        Want::Closed(&["length|too large"]),
        |c, _| {
            let cfg = tls_config(&c.ca_crt(), Some((&c.root_crt(), &c.root_key())), &[]);
            let keys: Vec<(Vec<u8>, Vec<u8>)> = (0..3000)
                .map(|i| (format!("k{i}").into_bytes(), b"v".to_vec()))
                .collect();
            let params: Vec<(&[u8], &[u8])> = keys.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
            Ok(Got::Wire(tls(c.node.port, cfg, false, &startup(&params, PROTOCOL_3_0))))
        },
    ));
    v.push(server_row(
        "a TLS record of garbage",
        Want::Closed(&["TLS handshake failed"]),
        |c, _| {
            let mut b = vec![0x16, 0x03, 0x01, 0x00, 0x40];
            b.extend([0xAB; 0x40]);
            Ok(Got::Wire(raw(c.node.port, &b, 0, &[])))
        },
    ));
    v.push(server_row(
        "SSLRequest followed by garbage",
        Want::Closed(&["TLS handshake failed"]),
        |c, _| {
            Ok(Got::Wire(raw(
                c.node.port,
                &SSL_REQUEST,
                1,
                b"GARBAGE GARBAGE GARBAGE GARBAGE\r\n",
            )))
        },
    ));
    v.push(server_row(
        // The node answers N; the garbage then reads as a plaintext startup
        // packet of ~1.7 GB. Fixed with the 2 GB startup packet row.
        "GSSENCRequest followed by garbage",
        Want::Closed(&["length|too large"]),
        |c, _| Ok(Got::Wire(raw(c.node.port, &GSSENC_REQUEST, 1, b"garbagegarbage"))),
    ));
    v.push(server_row(
        "direct TLS ClientHello with an unknown ALPN",
        // rustls refuses the handshake (no_application_protocol) or, when it
        // completes without ALPN "postgresql", the node closes the session.
        Want::Closed(&["known protocol|without ALPN"]),
        |c, _| {
            let cfg = tls_config(&c.ca_crt(), Some((&c.root_crt(), &c.root_key())), &[b"moat-bogus/9"]);
            Ok(Got::Wire(tls(c.node.port, cfg, true, &root_startup())))
        },
    ));
    v.push(server_row(
        "direct TLS ClientHello without ALPN",
        Want::Closed(&["ALPN"]),
        |c, _| {
            let cfg = tls_config(&c.ca_crt(), Some((&c.root_crt(), &c.root_key())), &[]);
            Ok(Got::Wire(tls(c.node.port, cfg, true, &root_startup())))
        },
    ));
    v.push(server_row("CancelRequest with a junk key", Want::Silent, |c, _| {
        let mut b = 16u32.to_be_bytes().to_vec();
        b.extend(80_877_102u32.to_be_bytes());
        b.extend([0xde, 0xad, 0xbe, 0xef, 0x13, 0x37, 0x13, 0x37]);
        b.extend(b"trailing junk");
        Ok(Got::Wire(raw(c.node.port, &b, 0, &[])))
    }));
    v.push(server_row(
        "SSLRequest, then silence (no ClientHello)",
        Want::Closed(&["no complete handshake within|no TLS negotiation within"]),
        |c, _| Ok(Got::Wire(raw(c.node.port, &SSL_REQUEST, 1, &[]))),
    ));
    v.push(server_row(
        "half a startup packet over TLS, then silence",
        Want::Closed(&["startup not finished within"]),
        |c, _| {
            let cfg = tls_config(&c.ca_crt(), Some((&c.root_crt(), &c.root_key())), &[]);
            Ok(Got::Wire(tls(c.node.port, cfg, false, &root_startup()[..10])))
        },
    ));
    v.push(server_row(
        "startup packet with control characters in the user name",
        Want::Sqlstate("28000", &["ro\\u{1b}[31mot\\n"]),
        |c, _| {
            let cfg = tls_config(&c.ca_crt(), Some((&c.root_crt(), &c.root_key())), &[]);
            let s = startup(
                &[(b"user", b"ro\x1b[31mot\n"), (b"database", b"defaultdb")],
                PROTOCOL_3_0,
            );
            Ok(Got::Wire(tls(c.node.port, cfg, false, &s)))
        },
    ));
    v.push(server_row(
        "startup packet with an invalid UTF-8 user name",
        Want::Sqlstate("28000|22021|08P01", &["user|UTF"]),
        |c, _| {
            let cfg = tls_config(&c.ca_crt(), Some((&c.root_crt(), &c.root_key())), &[]);
            let s = startup(&[(b"user", b"ro\xff\xfeot"), (b"database", b"defaultdb")], PROTOCOL_3_0);
            Ok(Got::Wire(tls(c.node.port, cfg, false, &s)))
        },
    ));
    v.push(server_row(
        // CockroachDB accepts statements up to 16 MiB by default; a node with a
        // smaller bound must refuse with a program-limit or protocol error.
        "a 2 MB SQL statement",
        Want::ValueOrLimit("2097152", "54000|08P01"),
        |c, _| {
            let cfg = tls_config(&c.ca_crt(), Some((&c.root_crt(), &c.root_key())), &[]);
            let mut sql = b"SELECT length('".to_vec();
            sql.extend(std::iter::repeat_n(b'a', 2 << 20));
            sql.extend(b"')");
            let mut send = root_startup();
            send.extend(query(&sql));
            send.extend(TERMINATE);
            Ok(Got::Wire(tls(c.node.port, cfg, false, &send)))
        },
    ));
    v.push(server_row(
        // Fixed with the 2 GB startup packet row.
        "query message claiming 2 GB after login",
        Want::Closed(&["length|too large"]),
        |c, _| {
            let cfg = tls_config(&c.ca_crt(), Some((&c.root_crt(), &c.root_key())), &[]);
            let mut send = root_startup();
            send.push(b'Q');
            send.extend(0x7fff_fff0u32.to_be_bytes());
            send.extend(b"SELECT 1");
            Ok(Got::Wire(tls(c.node.port, cfg, false, &send)))
        },
    ));
    v.push(server_row(
        "serverAuth-only certificate as a client certificate (psql)",
        Want::LoginRefused(&["TLS handshake failed", "bad_usage"]),
        |c, a| {
            let (crt, key) = c.sign(a, "sonly", "root", SERVER_ONLY_EXT, None)?;
            Ok(c.psql_with(a, &crt, &key))
        },
    ));
    v.push(server_row(
        "1 MB client certificate (psql)",
        Want::LoginRefused(&["TLS handshake failed"]),
        |c, a| {
            let ext = format!(
                "{CLIENT_EXT}\n1.3.6.1.4.1.99999.1=ASN1:FORMAT:HEX,OCTETSTRING:{}",
                "ab".repeat(1 << 20)
            );
            let (crt, key) = c.sign(a, "big", "root", &ext, None)?;
            Ok(c.psql_with(a, &crt, &key))
        },
    ));
    v.push(server_row(
        "client certificate from another CA (psql)",
        Want::LoginRefused(&["TLS handshake failed", "unknown_ca"]),
        |c, a| {
            let o = a.join("other");
            std::fs::create_dir_all(o.join("safe")).unwrap();
            let key = p(&o.join("safe/ca.key")).to_string();
            let certs = p(&o.join("certs")).to_string();
            for args in [
                vec!["cert", "create-ca", "--certs-dir", &certs, "--ca-key", &key],
                vec!["cert", "create-client", "root", "--certs-dir", &certs, "--ca-key", &key],
            ] {
                let r = moat(&args, a);
                if r.code != Some(0) {
                    return Err(r.text());
                }
            }
            Ok(c.psql_with(a, &o.join("certs/client.root.crt"), &o.join("certs/client.root.key")))
        },
    ));
    v.push(server_row(
        "expired client certificate (psql)",
        Want::LoginRefused(&["TLS handshake failed", "expired"]),
        |c, a| {
            let (crt, key) = c.sign(
                a,
                "old",
                "root",
                CLIENT_EXT,
                Some(("20200101000000Z", "20210101000000Z")),
            )?;
            Ok(c.psql_with(a, &crt, &key))
        },
    ));
    v.push(server_row(
        "client certificate for another user (psql as root)",
        Want::LoginRefused(&["certificate authentication failed", "root"]),
        |c, a| {
            let (crt, key) = c.sign(a, "mallory", "mallory", CLIENT_EXT, None)?;
            Ok(c.psql_with(a, &crt, &key))
        },
    ));
    v
}

#[test]
fn bad_input_catalogue() {
    let node = NodeProc::start(&["--startup-timeout-secs", &NODE_DEADLINE_SECS.to_string()]);
    let ctx = Ctx {
        node,
        work: tempfile::tempdir().unwrap(),
    };
    let rows = rows();
    assert!(
        rows.len() >= 40,
        "the catalogue must have at least 40 rows, has {}",
        rows.len()
    );
    let mut failures = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let area = ctx.work.path().join(format!("row{i:02}"));
        std::fs::create_dir_all(&area).unwrap();
        let log_from = ctx.node.log_text().len();
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let got = (r.input)(&ctx, &area)?;
            check(&ctx, &r.want, &got, log_from)
        }))
        .unwrap_or_else(|e| {
            Err(format!(
                "panicked: {}",
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            ))
        });
        let mut problems: Vec<String> = outcome.err().into_iter().collect();
        if r.server {
            let new = ctx.node.log_text().get(log_from..).unwrap_or("").to_string();
            if new.contains("panicked") {
                problems.push(format!("the node panicked: {new}"));
            }
            if has_control(&new.replace('\t', " ")) {
                problems.push(format!("raw control characters in the node log: {new:?}"));
            }
            let out = ctx.node.psql("SELECT 1");
            if !out.status.success() || String::from_utf8_lossy(&out.stdout).trim() != "1" {
                problems.push(format!(
                    "the node stopped serving: psql SELECT 1 failed: {}",
                    node_support::text(&out)
                ));
            }
        }
        let status = if problems.is_empty() { "ok  " } else { "FAIL" };
        eprintln!("[{status}] {i:02} {} ({:.1?})", r.name, started.elapsed());
        for pr in problems {
            failures.push(format!("row {i:02} \"{}\": {pr}", r.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}
