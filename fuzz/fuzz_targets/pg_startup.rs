//! The SQL port from the first byte. One real node runs in-process (started
//! once per fuzz process on 127.0.0.1:0 with certificates made by
//! `moat_pki::ops`); each input is sent to it over a fresh TCP connection.
//!
//! The first input byte picks how (`% 3`), the rest is the payload:
//! * 0: the payload as the very first bytes on the port (SSLRequest,
//!   GSSENCRequest, a direct TLS ClientHello, a plaintext startup message or
//!   garbage);
//! * 1: SSLRequest, a real TLS handshake without a client certificate, then
//!   the payload inside TLS (startup, password and SCRAM messages);
//! * 2: the same with the client certificate of `alice`.
//!
//! The node accepts plaintext (so plaintext startup messages reach the
//! authentication handler) and has one HBA rule per method. No user can log
//! in: `alice` has a certificate but no account, nobody has a password. So
//! an `AuthenticationOk` in any answer is a finding, like a panic. After
//! every input the node must still answer a legitimate SSLRequest with `S`.
//! A panic in any node task (which tokio would catch, dropping only that
//! connection) is a finding too, reported against the input that caused it.
#![no_main]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use moat_server::hba::HbaConfig;
use moat_server::node::{self, NodeConfig, RunningNode};
use moat_tls::material::TlsMaterial;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];
/// `AuthenticationOk`: 'R', length 8, code 0.
const AUTH_OK: [u8; 9] = [b'R', 0, 0, 0, 8, 0, 0, 0, 0];
/// How long one read may wait for the node (answers come in microseconds).
const READ_FOR: Duration = Duration::from_millis(200);
/// How long to wait for the node to close the connection once everything is
/// sent (it sees end of stream, so it closes as soon as it has processed
/// what it got; waiting for that ties a late panic to its input).
const CLOSE_WITHIN: Duration = Duration::from_secs(1);
const HBA: &str = "\
hostssl   all alice all cert
host      all bob   all password
host      all carol all scram-sha-256 clientcert=verify-full
hostnossl all dave  all trust
host      all erin  10.0.0.0/8 reject
host      all all   all cert-password
";

/// A panic in one of the node's threads, with its backtrace: reported by the
/// fuzzing thread once the input that caused it is done, so that libFuzzer
/// saves that input (a panic in a tokio task would otherwise abort the
/// process at some later point, while another input runs).
static SERVER_PANIC: Mutex<Option<String>> = Mutex::new(None);
/// The input before the current one, printed when a panic shows up late.
static PREVIOUS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// `MOAT_FUZZ_KNOWN_PANICS`: `|`-separated substrings of node panics (message
/// or backtrace, e.g. a function name) already recorded under
/// fuzz/regressions/pg_startup, to fuzz on past them. Unset: every panic counts.
fn known_panic(report: &str) -> bool {
    static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            std::env::var("MOAT_FUZZ_KNOWN_PANICS")
                .unwrap_or_default()
                .split('|')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .iter()
        .any(|k| report.contains(k.as_str()))
}

/// Panics in the fuzzing thread keep libFuzzer's hook (abort: a crash);
/// panics elsewhere (the node's tasks, which tokio would catch) are recorded.
fn install_panic_hook(fuzz_thread: ThreadId) {
    let libfuzzer_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == fuzz_thread {
            libfuzzer_hook(info);
            return;
        }
        let report = format!("{info}\n{}", std::backtrace::Backtrace::force_capture());
        if known_panic(&report) {
            return;
        }
        let mut slot = SERVER_PANIC.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(report);
        }
    }));
}

struct Harness {
    addr: SocketAddr,
    anon: Arc<ClientConfig>,
    alice: Arc<ClientConfig>,
    _node: RunningNode,
    _rt: tokio::runtime::Runtime,
    _tmp: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        moat_fuzz::ignore_sigpipe();
        install_panic_hook(std::thread::current().id());
        let tmp = tempfile::Builder::new()
            .prefix("moat-fuzz-node")
            .tempdir()
            .expect("temp dir");
        let certs = moat_fuzz::make_certs(tmp.path());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut cfg = NodeConfig::new(&certs, tmp.path().join("store"), "127.0.0.1:0".parse().unwrap());
        cfg.accept_sql_without_tls = true;
        cfg.hba = HbaConfig::parse(HBA).expect("the harness HBA parses");
        // Short deadlines: any connection the node keeps open past the
        // input (a partial startup packet, a stalled message) ends within 1 s.
        cfg.handshake_timeout = Duration::from_secs(1);
        cfg.startup_timeout = Duration::from_secs(1);
        let node = rt.block_on(node::start(cfg)).expect("the node starts");
        let material = TlsMaterial::load(&certs).expect("the harness certs load");
        let anon = Arc::new(moat_tls::roles::sql_client(&material, None).expect("SQL client config"));
        let alice = Arc::new(moat_tls::roles::sql_client(&material, Some("alice")).expect("SQL client config"));
        Harness {
            addr: node.sql_addr,
            anon,
            alice,
            _node: node,
            _rt: rt,
            _tmp: tmp,
        }
    })
}

/// Reads the answer (at most 1 MiB) until the node closes the connection,
/// a read error, or `CLOSE_WITHIN`.
fn drain(r: &mut impl Read) -> Vec<u8> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    while start.elapsed() < CLOSE_WITHIN && out.len() < 1 << 20 {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        }
    }
    out
}

fn connect(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the node");
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(READ_FOR)).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    tcp
}

fn ssl_request(tcp: &mut TcpStream) -> Option<u8> {
    tcp.write_all(&SSL_REQUEST).ok()?;
    let mut b = [0u8; 1];
    tcp.read_exact(&mut b).ok()?;
    Some(b[0])
}

/// Sends the payload as the first bytes on the port.
fn raw(h: &Harness, payload: &[u8]) -> Vec<u8> {
    let mut tcp = connect(h.addr);
    let _ = tcp.write_all(payload);
    let _ = tcp.shutdown(Shutdown::Write);
    drain(&mut tcp)
}

/// Sends the payload inside TLS, after SSLRequest and a full handshake.
fn over_tls(h: &Harness, cfg: &Arc<ClientConfig>, payload: &[u8]) -> Vec<u8> {
    let mut tcp = connect(h.addr);
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(ssl_request(&mut tcp), Some(b'S'), "SSLRequest not answered with S");
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(cfg.clone(), name).expect("client connection");
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("the TLS handshake with the node completes");
    }
    tls.sock.set_read_timeout(Some(READ_FOR)).unwrap();
    let _ = tls.write_all(payload);
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.conn.complete_io(&mut tls.sock);
    drain(&mut tls)
}

/// The node must still answer a legitimate SSLRequest.
fn still_serving(h: &Harness) {
    let mut tcp = connect(h.addr);
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        ssl_request(&mut tcp),
        Some(b'S'),
        "the node no longer answers SSLRequest with S after this input"
    );
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    let t0 = Instant::now();
    if let Some(p) = SERVER_PANIC.lock().unwrap().take() {
        let prev = PREVIOUS.lock().unwrap().clone();
        panic!(
            "a node task panicked after the previous input, probably because of it: {:?}\n{p}",
            prev.escape_ascii().to_string()
        );
    }
    data.clone_into(&mut PREVIOUS.lock().unwrap());
    let answer = match mode % 3 {
        0 => raw(h, payload),
        1 => over_tls(h, &h.anon, payload),
        _ => over_tls(h, &h.alice, payload),
    };
    assert!(
        !answer.windows(AUTH_OK.len()).any(|w| w == AUTH_OK),
        "a login succeeded without credentials; answer: {answer:?}"
    );
    let t1 = Instant::now();
    still_serving(h);
    if std::env::var_os("MOAT_FUZZ_TIMING").is_some() {
        eprintln!("mode {} input {:?} health {:?}", mode % 3, t1 - t0, t1.elapsed());
    }
    if let Some(p) = SERVER_PANIC.lock().unwrap().take() {
        panic!("a node task panicked while serving this input:\n{p}");
    }
});
