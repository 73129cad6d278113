//! Hostile PostgreSQL frames against a live node: the committed fuzzing
//! reproducers of `pg_startup` (a password message whose length field is
//! below 4, SASLInitialResponse data lengths that overflow the message) and
//! message headers announcing more than the node's per-message bound. Each
//! gets FATAL 08P01 or a closed connection, no node task panics, and the node
//! keeps serving a legitimate client.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use moat_server::node::{self, RunningNode};
use moat_tls::material::TlsMaterial;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use support::{NodeDir, SSL_REQUEST};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// `AuthenticationOk`: 'R', length 8, code 0.
const AUTH_OK: [u8; 9] = [b'R', 0, 0, 0, 8, 0, 0, 0, 0];

/// Panics of the node's worker threads (tokio would catch them and drop
/// only that connection; each one is a bug).
static NODE_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_node_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            // tokio's workers ("tokio-rt-worker", "tokio-runtime-worker")
            // run the node's tasks; test threads are named after the test.
            if thread.name().is_some_and(|n| n.starts_with("tokio-")) {
                NODE_PANICS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("{info}"));
            }
            default(info);
        }));
    });
}

/// The tests run one at a time: one measures the process's CPU time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn node_panics() -> Vec<String> {
    NODE_PANICS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

struct Node {
    _dir: NodeDir,
    node: RunningNode,
    anon: Arc<ClientConfig>,
    root: Arc<ClientConfig>,
}

async fn start(max_message_bytes: Option<usize>) -> Node {
    record_node_panics();
    let dir = NodeDir::new(&["root"]);
    let mut cfg = dir.node_config();
    cfg.handshake_timeout = Duration::from_secs(2);
    cfg.startup_timeout = Duration::from_secs(2);
    if let Some(m) = max_message_bytes {
        cfg.max_message_bytes = m;
    }
    let node = node::start(cfg).await.unwrap();
    let material = TlsMaterial::load(&dir.certs()).unwrap();
    let anon = Arc::new(moat_tls::roles::sql_client(&material, None).unwrap());
    let root = Arc::new(moat_tls::roles::sql_client(&material, Some("root")).unwrap());
    Node {
        _dir: dir,
        node,
        anon,
        root,
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// SSLRequest, `S`, then a TLS handshake with `cfg`.
async fn connect_tls(n: &Node, cfg: &Arc<ClientConfig>) -> Tls {
    let mut tcp = TcpStream::connect(n.node.sql_addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.write_all(&SSL_REQUEST).await.unwrap();
    let mut s = [0u8; 1];
    tcp.read_exact(&mut s).await.unwrap();
    assert_eq!(s[0], b'S', "SSLRequest not answered with S");
    tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

fn startup(user: &str) -> Vec<u8> {
    let mut body = vec![0, 3, 0, 0];
    for (k, v) in [("user", user), ("database", "defaultdb")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// One backend message, or `None` when the node closed the connection.
async fn read_message<S: AsyncRead + Unpin>(s: &mut S) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    assert!((4..1 << 20).contains(&len), "backend message length {len}");
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).await.ok()?;
    Some((head[0], body))
}

/// The SQLSTATE and message of an ErrorResponse body.
fn error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut msg) = (String::new(), String::new());
    for field in body.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let text = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'C' => code = text,
            b'M' => msg = text,
            _ => {}
        }
    }
    (code, msg)
}

/// Reads until ReadyForQuery; panics on an error.
async fn until_ready<S: AsyncRead + Unpin>(s: &mut S) -> Vec<(u8, Vec<u8>)> {
    let mut seen = Vec::new();
    loop {
        let (kind, body) = tokio::time::timeout(Duration::from_secs(10), read_message(s))
            .await
            .expect("the node answers")
            .expect("the node keeps the connection open");
        if kind == b'E' {
            panic!("unexpected error: {:?}", error_fields(&body));
        }
        if kind == b'Z' {
            return seen;
        }
        seen.push((kind, body));
    }
}

/// Logs in as root with its certificate and waits for ReadyForQuery.
async fn login_root(n: &Node) -> Tls {
    let mut tls = connect_tls(n, &n.root).await;
    tls.write_all(&startup("root")).await.unwrap();
    until_ready(&mut tls).await;
    tls
}

/// A legitimate client logs in and gets a query answered.
async fn still_serving(n: &Node) {
    let started = Instant::now();
    let mut tls = login_root(n).await;
    tls.write_all(&message(b'Q', b"SELECT 41 + 1\0")).await.unwrap();
    let rows = until_ready(&mut tls).await;
    let data_row = rows.iter().find(|(k, _)| *k == b'D').expect("a DataRow");
    // DataRow: int16 columns, int32 length, text.
    assert!(data_row.1.ends_with(b"42"), "answer {:?}", data_row.1);
    tls.write_all(&message(b'X', b"")).await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "a legitimate client took {took:?}");
}

/// What the node answered before closing: the ErrorResponses' SQLSTATEs and
/// messages, whether a login succeeded, and whether it closed.
#[derive(Debug, Default)]
struct Answer {
    errors: Vec<(String, String)>,
    auth_ok: bool,
    closed: bool,
}

async fn collect<S: AsyncRead + Unpin>(s: &mut S) -> Answer {
    let mut answer = Answer::default();
    let mut raw = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                answer.closed = true;
                break;
            }
            Ok(Ok(k)) => raw.extend_from_slice(&buf[..k]),
            Err(_) => break,
        }
    }
    answer.auth_ok = raw.windows(AUTH_OK.len()).any(|w| w == AUTH_OK);
    let mut rest = &raw[..];
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if len < 4 || rest.len() < 1 + len {
            break;
        }
        if rest[0] == b'E' {
            answer.errors.push(error_fields(&rest[5..1 + len]));
        }
        rest = &rest[1 + len..];
    }
    answer
}

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/pg_startup")
}

/// Sends a `pg_startup` fuzz input the way the fuzz target does: the first
/// byte picks the transport (`% 3`: 0 raw, 1 TLS without, 2 TLS with a
/// client certificate), the rest is sent, then the write side is closed.
async fn replay(n: &Node, input: &[u8]) -> Answer {
    let (&mode, payload) = input.split_first().expect("a non-empty input");
    if mode % 3 == 0 {
        let mut tcp = TcpStream::connect(n.node.sql_addr).await.unwrap();
        let _ = tcp.write_all(payload).await;
        let _ = tcp.shutdown().await;
        return collect(&mut tcp).await;
    }
    let cfg = if mode % 3 == 1 { &n.anon } else { &n.root };
    let mut tls = connect_tls(n, cfg).await;
    let _ = tls.write_all(payload).await;
    let _ = tls.flush().await;
    let _ = tls.shutdown().await;
    collect(&mut tls).await
}

async fn write_ignoring_reset<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) {
    let _ = s.write_all(bytes).await;
    let _ = s.flush().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_message_length_below_4_is_refused_without_a_panic() {
    let _serial = SERIAL.lock().await;
    let n = start(None).await;
    let input = std::fs::read(regressions().join("password-message-length-below-4")).unwrap();
    let answer = replay(&n, &input).await;
    eprintln!("regression answer: {answer:?}");
    assert!(!answer.auth_ok, "a login succeeded: {answer:?}");
    assert!(answer.closed, "the node kept the connection open: {answer:?}");
    let (code, msg) = answer.errors.last().expect("an ErrorResponse").clone();
    assert_eq!(code, "08P01", "{msg}");
    assert!(msg.contains("invalid message") && msg.contains("length 0"), "{msg}");
    // Every length field from 0 to 3, also from a certificate user.
    for len in 0u8..4 {
        for cfg in [&n.anon, &n.root] {
            let mut tls = connect_tls(&n, cfg).await;
            let mut bytes = startup("root");
            if Arc::ptr_eq(cfg, &n.root) {
                // Logged in: the bad frame arrives in the session.
                write_ignoring_reset(&mut tls, &bytes).await;
                until_ready(&mut tls).await;
                bytes.clear();
            }
            bytes.extend_from_slice(&[b'p', 0, 0, 0, len]);
            write_ignoring_reset(&mut tls, &bytes).await;
            let answer = collect(&mut tls).await;
            assert!(answer.closed, "length {len}: {answer:?}");
            assert!(
                answer.errors.iter().any(|(c, _)| c == "08P01"),
                "length {len}: {answer:?}"
            );
        }
    }
    // The same for a Query header in the session ('Q' with length 2).
    let mut tls = login_root(&n).await;
    write_ignoring_reset(&mut tls, &[b'Q', 0, 0, 0, 2]).await;
    let answer = collect(&mut tls).await;
    assert!(
        answer.closed && answer.errors.iter().any(|(c, _)| c == "08P01"),
        "{answer:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(node_panics().is_empty(), "node tasks panicked: {:?}", node_panics());
    still_serving(&n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pg_startup_regression_leaves_the_node_serving() {
    let _serial = SERIAL.lock().await;
    let n = start(None).await;
    let mut inputs: Vec<_> = std::fs::read_dir(regressions())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 3, "{inputs:?}");
    for path in inputs {
        let input = std::fs::read(&path).unwrap();
        let answer = replay(&n, &input).await;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        eprintln!("{name}: {answer:?}");
        assert!(!answer.auth_ok, "{name}: a login succeeded: {answer:?}");
        assert!(
            answer.closed || answer.errors.iter().any(|(c, _)| c == "08P01"),
            "{name}: neither 08P01 nor closed: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            node_panics().is_empty(),
            "{name}: node tasks panicked: {:?}",
            node_panics()
        );
        still_serving(&n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_refused_from_its_header() {
    let _serial = SERIAL.lock().await;
    let n = start(None).await;
    // A logged-in client announces a 100 MB query and sends only the header
    // and 1 KiB of it: the node refuses at once, without waiting for (or
    // allocating) the rest.
    let mut tls = login_root(&n).await;
    let mut bytes = vec![b'Q'];
    bytes.extend_from_slice(&100_000_004u32.to_be_bytes());
    bytes.extend_from_slice(&[b'x'; 1024]);
    let started = Instant::now();
    write_ignoring_reset(&mut tls, &bytes).await;
    let answer = collect(&mut tls).await;
    let took = started.elapsed();
    eprintln!("100 MB Query header: {answer:?} after {took:?}");
    assert!(answer.closed, "{answer:?}");
    let (code, msg) = answer.errors.last().expect("an ErrorResponse").clone();
    assert_eq!(code, "08P01", "{msg}");
    assert!(msg.contains("100000004") && msg.contains("16777216"), "{msg}");
    assert!(took < Duration::from_secs(2), "refusal took {took:?}");

    // A negative length field (above the bound when read unsigned).
    let mut tls = login_root(&n).await;
    write_ignoring_reset(&mut tls, &[b'Q', 0xff, 0xff, 0xff, 0xf0]).await;
    let answer = collect(&mut tls).await;
    assert!(
        answer.closed && answer.errors.iter().any(|(c, _)| c == "08P01"),
        "{answer:?}"
    );

    // Before authentication the bound is 64 KiB: a 1 MiB password message
    // is refused from its header.
    let mut tls = connect_tls(&n, &n.anon).await;
    write_ignoring_reset(&mut tls, &startup("root")).await;
    let (kind, _) = read_message(&mut tls).await.expect("an authentication request");
    assert_eq!(kind, b'R');
    let mut bytes = vec![b'p'];
    bytes.extend_from_slice(&(1u32 << 20).to_be_bytes());
    write_ignoring_reset(&mut tls, &bytes).await;
    let answer = collect(&mut tls).await;
    assert!(answer.closed, "{answer:?}");
    let (code, msg) = answer.errors.last().expect("an ErrorResponse").clone();
    assert_eq!(code, "08P01", "{msg}");
    assert!(msg.contains("before authentication"), "{msg}");
    assert!(node_panics().is_empty(), "node tasks panicked: {:?}", node_panics());
    still_serving(&n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_is_configurable_and_large_statements_pass_below_it() {
    let _serial = SERIAL.lock().await;
    let n = start(Some(64 * 1024)).await;
    // 48 KiB of statement: under the bound, served.
    let mut tls = login_root(&n).await;
    let mut sql = b"SELECT 42 /* ".to_vec();
    sql.extend(std::iter::repeat_n(b'x', 48 * 1024));
    sql.extend_from_slice(b" */\0");
    tls.write_all(&message(b'Q', &sql)).await.unwrap();
    let rows = until_ready(&mut tls).await;
    assert!(rows.iter().any(|(k, b)| *k == b'D' && b.ends_with(b"42")), "{rows:?}");
    // 80 KiB: over this node's bound.
    let mut sql = b"SELECT 42 /* ".to_vec();
    sql.extend(std::iter::repeat_n(b'x', 80 * 1024));
    sql.extend_from_slice(b" */\0");
    write_ignoring_reset(&mut tls, &message(b'Q', &sql)).await;
    let answer = collect(&mut tls).await;
    assert!(answer.closed, "{answer:?}");
    let (code, msg) = answer.errors.last().expect("an ErrorResponse").clone();
    assert_eq!(code, "08P01", "{msg}");
    assert!(msg.contains("65536"), "{msg}");
    still_serving(&n).await;
}

/// CPU time (user + system) of this process, node included, from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces): utime is the
    // 14th field, stime the 15th, in clock ticks (100 per second on Linux).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest.split(' ').skip(11).take(2).map(|v| v.parse().unwrap()).collect();
    Duration::from_millis((f[0] + f[1]) * 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_first_bytes_wait_without_polling() {
    let _serial = SERIAL.lock().await;
    let n = start(None).await;
    still_serving(&n).await;
    // 500 clients send 3 bytes of an SSLRequest and stop.
    let mut stalled = Vec::new();
    for _ in 0..500 {
        let mut s = TcpStream::connect(n.node.sql_addr).await.unwrap();
        s.write_all(&SSL_REQUEST[..3]).await.unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu0 = cpu_time();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let spent = cpu_time() - cpu0;
    eprintln!("CPU time while 500 connections wait with 3 of 8 bytes: {spent:?} in 1 s");
    assert!(spent < Duration::from_millis(150), "{spent:?} of CPU in 1 s");

    // The rest of the SSLRequest, sent later, is noticed at once.
    let mut s = TcpStream::connect(n.node.sql_addr).await.unwrap();
    s.write_all(&SSL_REQUEST[..3]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(&SSL_REQUEST[3..]).await.unwrap();
    let started = Instant::now();
    let mut b = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut b))
        .await
        .expect("answered within 1 s")
        .unwrap();
    assert_eq!(b[0], b'S');
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );

    // A client that half-closes after 3 bytes can never complete: closed at once.
    let mut s = TcpStream::connect(n.node.sql_addr).await.unwrap();
    s.write_all(&SSL_REQUEST[..3]).await.unwrap();
    s.shutdown().await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "half-closed after 3 bytes: closed after {took:?}"
    );

    // The stalled ones are closed at the handshake deadline (2 s here).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut s = stalled.pop().unwrap();
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "a stalled connection outlived the handshake deadline");
    drop(stalled);
    still_serving(&n).await;
}
