//! Full mutual-TLS handshakes per second per core, in memory: moat's configs
//! (from a `CertStore` opened as a node) against bare rustls configs built on
//! the same certificates.
//!
//! Every iteration makes a new `ClientConnection` and `ServerConnection` and
//! pumps bytes between them (`write_tls` / `read_tls` / `process_new_packets`)
//! until both are done and nothing is left to send (the server's TLS 1.3
//! session tickets included). Client resumption is disabled, so every
//! handshake is full: TLS 1.3, the client presents `node.crt`, the server
//! verifies it (and, on the RPC config, checks its principal). One thread,
//! and every figure is that thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`, a
//! custom criterion measurement), so other load on the machine does not count:
//! a "pair" figure is the CPU of both ends on one core; a "server" figure
//! counts only the server's calls (`ServerConnection::new`, its `read_tls`,
//! `process_new_packets` and `write_tls`).
//!
//! Groups: `handshake-pair/<key>` and `handshake-server/<key>`, for ECDSA
//! P-256 and RSA-2048 certificates made with `moat_pki::ops`; functions:
//!
//! * `moat-rpc`: server `snapshot().rpc_server()` (TLS 1.3, client cert
//!   required, principal `node`/`root` checked), client `snapshot().rpc_client()`;
//! * `moat-sql`: server `snapshot().sql_server()` (client cert optional but
//!   verified), same client;
//! * `bare-rustls`: `ServerConfig`/`ClientConfig` built directly with
//!   aws-lc-rs' default provider, `WebPkiClientVerifier` (client cert
//!   required) and `with_single_cert`, TLS 1.3;
//! * `bare-rustls-aes128`: the same, with TLS13_AES_128_GCM_SHA256 first, the
//!   suite moat negotiates (bare rustls negotiates TLS13_AES_256_GCM_SHA384).
//!
//! Each setup does one handshake first and prints what it negotiated
//! (version, suite, key exchange group); all four negotiate X25519MLKEM768.
//!
//! Also: `principal/<key>` times the check moat-rpc's verifier adds after
//! webpki's (`IdentityPolicy::authorize_rpc`) and the x509-parser parse
//! inside it; and after criterion, an interleaved A/B comparison (every
//! round times a batch of each contestant back to back; overheads are medians
//! of per-round ratios, so a change in the machine's load between two
//! criterion functions does not show up as overhead) prints a markdown table.
//! `MOAT_HANDSHAKE_AB_ROUNDS` sets its rounds (default 100; 0 skips it).
//!
//! Run with `cargo bench -p moat-tls --bench handshake`; `bash bench/tls.sh`
//! runs it after the openssl s_time comparison over TCP, and
//! docs/benchmarks.md records the figures.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput};
use moat_pki::keys::KeyType;
use moat_pki::ops::{self, CreateOptions};
use moat_pki::profile::Profile;
use moat_tls::principal::IdentityPolicy;
use moat_tls::store::{CertStore, StoreRole};
use rustls::client::Resumption;
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tempfile::TempDir;

/// Client and server configs of one contestant.
struct Pair {
    name: &'static str,
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

/// A certs directory (CA, node for localhost/127.0.0.1, client root) of one
/// key type, and the contestants built from it.
struct Setup {
    label: &'static str,
    _dir: TempDir,
    pairs: Vec<Pair>,
}

fn make_certs(root: &Path, key_type: KeyType) {
    let mut opts = CreateOptions::new(root.join("certs"), root.join("ca.key"));
    opts.key_type = key_type;
    ops::create_ca(&opts, Profile::Ca, false).expect("create_ca");
    ops::create_node(&opts, &["localhost".to_string(), "127.0.0.1".to_string()]).expect("create_node");
    ops::create_client(&opts, "root", false).expect("create_client");
}

fn no_resumption(cfg: &ClientConfig) -> Arc<ClientConfig> {
    let mut cfg = cfg.clone();
    cfg.resumption = Resumption::disabled();
    Arc::new(cfg)
}

/// Bare rustls: aws-lc-rs' default provider (optionally with the AES-128
/// suite moved first), TLS 1.3, mandatory client certificates.
fn bare(certs: &Path, aes128_first: bool) -> (Arc<ClientConfig>, Arc<ServerConfig>) {
    let mut p = aws_lc_rs::default_provider();
    if aes128_first {
        p.cipher_suites
            .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    }
    let provider: Arc<CryptoProvider> = Arc::new(p);
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(certs.join("ca.crt")).expect("ca.crt") {
        roots.add(c.expect("ca.crt")).expect("CA cert");
    }
    let roots = Arc::new(roots);
    let chain = || -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(certs.join("node.crt"))
            .expect("node.crt")
            .map(|c| c.expect("node.crt"))
            .collect()
    };
    let key = || PrivateKeyDer::from_pem_file(certs.join("node.key")).expect("node.key");
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .expect("client verifier");
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("server versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain(), key())
        .expect("server cert");
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("client versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain(), key())
        .expect("client cert");
    client.resumption = Resumption::disabled();
    (Arc::new(client), Arc::new(server))
}

fn setup(label: &'static str, key_type: KeyType) -> Setup {
    let dir = tempfile::Builder::new()
        .prefix("moat-bench-tls-")
        .tempdir()
        .expect("temp dir");
    make_certs(dir.path(), key_type);
    let certs = dir.path().join("certs");
    let store = CertStore::open(&certs, StoreRole::Node, IdentityPolicy::default()).expect("CertStore::open");
    let snap = store.snapshot();
    let moat_client = no_resumption(&snap.rpc_client());
    let (bare_client, bare_server) = bare(&certs, false);
    let (bare128_client, bare128_server) = bare(&certs, true);
    let pairs = vec![
        Pair {
            name: "moat-rpc",
            client: moat_client.clone(),
            server: snap.rpc_server(),
        },
        Pair {
            name: "moat-sql",
            client: moat_client,
            server: snap.sql_server(),
        },
        Pair {
            name: "bare-rustls",
            client: bare_client,
            server: bare_server,
        },
        Pair {
            name: "bare-rustls-aes128",
            client: bare128_client,
            server: bare128_server,
        },
    ];
    for p in &pairs {
        let (c, s) = handshake(&p.client, &p.server, &mut ServerClock(None));
        let (Connection::Client(c), Connection::Server(s)) = (c, s) else {
            unreachable!()
        };
        assert!(
            s.peer_certificates().is_some_and(|v| !v.is_empty()),
            "{}: no client certificate",
            p.name
        );
        eprintln!(
            "{label}/{}: {:?}, {:?}, {:?} (client sees {:?})",
            p.name,
            s.protocol_version().expect("version"),
            s.negotiated_cipher_suite().expect("suite").suite(),
            s.negotiated_key_exchange_group().expect("group").name(),
            c.negotiated_key_exchange_group().expect("group").name(),
        );
    }
    Setup {
        label,
        _dir: dir,
        pairs,
    }
}

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): every figure of this
/// bench is CPU time of the benchmarking thread, so time the machine's other
/// load takes from it (2 cores, shared) is not counted as handshake time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Accumulates the CPU time of the server's calls, when asked to (the
/// clock reads cost ~10 × 2 system calls per handshake, so the "pair"
/// figures are taken without them).
struct ServerClock(Option<Duration>);

impl ServerClock {
    fn time<T>(&mut self, is_server: bool, f: impl FnOnce() -> T) -> T {
        match &mut self.0 {
            Some(total) if is_server => {
                let t = thread_cpu();
                let r = f();
                *total += thread_cpu().saturating_sub(t);
                r
            }
            _ => f(),
        }
    }
}

/// Moves everything `from` has to send into `to`; returns whether anything
/// moved.
fn transfer(from: &mut Connection, to: &mut Connection, buf: &mut Vec<u8>, clock: &mut ServerClock) -> bool {
    let mut moved = false;
    while from.wants_write() {
        buf.clear();
        let from_server = matches!(from, Connection::Server(_));
        clock.time(from_server, || from.write_tls(buf).expect("write_tls"));
        let to_server = matches!(to, Connection::Server(_));
        clock.time(to_server, || {
            let mut rd = &buf[..];
            while !rd.is_empty() {
                to.read_tls(&mut rd).expect("read_tls");
                to.process_new_packets().expect("handshake failed");
            }
        });
        moved = true;
    }
    moved
}

/// One full handshake; returns both ends, done and with nothing left to send.
fn handshake(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    clock: &mut ServerClock,
) -> (Connection, Connection) {
    let name = ServerName::try_from("localhost").expect("server name");
    let mut c = Connection::Client(ClientConnection::new(client.clone(), name).expect("client connection"));
    let mut s = clock.time(true, || {
        Connection::Server(ServerConnection::new(server.clone()).expect("server connection"))
    });
    let mut buf = Vec::with_capacity(16 * 1024);
    // A TLS 1.3 handshake with client auth takes three flights, then the
    // tickets; 16 rounds is plenty.
    for _ in 0..16 {
        let a = transfer(&mut c, &mut s, &mut buf, clock);
        let b = transfer(&mut s, &mut c, &mut buf, clock);
        if !a && !b {
            break;
        }
    }
    assert!(!c.is_handshaking() && !s.is_handshaking(), "handshake did not finish");
    (c, s)
}

/// Criterion measurement: [`thread_cpu`] time.
struct ThreadCpu;

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if ns < 1e3 {
            (1.0, "ns")
        } else if ns < 1e6 {
            (1e-3, "µs")
        } else if ns < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        };
        for v in values {
            *v *= factor;
        }
        unit
    }
    fn scale_throughputs(&self, _typical: f64, throughput: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match *throughput {
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => n,
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => n,
            Throughput::Bits(n) => n,
        } as f64;
        for v in values {
            *v = n * 1e9 / *v;
        }
        "elem/s (CPU)"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

fn bench_handshakes(c: &mut Criterion<ThreadCpu>, setups: &[Setup]) {
    for s in setups {
        let mut group = c.benchmark_group(format!("handshake-pair/{}", s.label));
        group.throughput(Throughput::Elements(1));
        group.sample_size(50);
        group.warm_up_time(Duration::from_secs(2));
        group.measurement_time(Duration::from_secs(6));
        for p in &s.pairs {
            group.bench_function(p.name, |b| {
                b.iter(|| black_box(handshake(&p.client, &p.server, &mut ServerClock(None))))
            });
        }
        group.finish();

        let mut group = c.benchmark_group(format!("handshake-server/{}", s.label));
        group.throughput(Throughput::Elements(1));
        group.sample_size(50);
        group.warm_up_time(Duration::from_secs(2));
        group.measurement_time(Duration::from_secs(6));
        for p in &s.pairs {
            group.bench_function(p.name, |b| {
                b.iter_custom(|iters| {
                    let mut clock = ServerClock(Some(Duration::ZERO));
                    for _ in 0..iters {
                        black_box(handshake(&p.client, &p.server, &mut clock));
                    }
                    clock.0.unwrap_or_default()
                })
            });
        }
        group.finish();

        // Where moat-rpc's extra server time goes: the principal check its
        // verifier runs after webpki's (x509-parser parse + principals).
        let leaf = CertificateDer::pem_file_iter(s._dir.path().join("certs/node.crt"))
            .expect("node.crt")
            .next()
            .expect("a certificate")
            .expect("node.crt");
        let policy = IdentityPolicy::default();
        let mut group = c.benchmark_group(format!("principal/{}", s.label));
        group.sample_size(50);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        group.bench_function("authorize_rpc", |b| {
            b.iter(|| black_box(policy.authorize_rpc(black_box(&leaf))))
        });
        group.bench_function("x509_parser_parse", |b| {
            b.iter(|| {
                black_box(x509_parser::parse_x509_certificate(black_box(&leaf)).is_ok());
            })
        });
        group.finish();
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Interleaved A/B: criterion measures one function after another, so on a
/// shared 2-core machine a change in background load between two functions
/// shows up as a difference between them. Here every round times a batch of
/// handshakes of each contestant back to back (rotating which goes first);
/// the overhead is the median over rounds of the per-round ratio, so load
/// that changes slower than a round cancels out. Prints a markdown table.
fn interleaved(setups: &[Setup], rounds: usize) {
    println!();
    println!("Interleaved A/B, thread CPU time ({rounds} rounds; per round, a batch of each contestant back to back; medians):");
    println!();
    println!("| certs | config | pair µs/handshake | pair handshakes/s | server µs/handshake | server handshakes/s | pair vs bare-rustls | server vs bare-rustls | pair vs bare-rustls-aes128 | server vs bare-rustls-aes128 |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for s in setups {
        let n = s.pairs.len();
        // About 30 ms of CPU per batch: ~40 ECDSA or ~15 RSA handshakes (twice:
        // once for the pair figure, once with the server's calls timed).
        let t = thread_cpu();
        for _ in 0..5 {
            black_box(handshake(
                &s.pairs[0].client,
                &s.pairs[0].server,
                &mut ServerClock(None),
            ));
        }
        let batch = ((0.030 / ((thread_cpu() - t).as_secs_f64() / 5.0)) as usize).clamp(5, 200);
        let mut pair = vec![Vec::with_capacity(rounds); n];
        let mut server = vec![Vec::with_capacity(rounds); n];
        for round in 0..rounds {
            for k in 0..n {
                let i = (round + k) % n;
                let p = &s.pairs[i];
                let t = thread_cpu();
                for _ in 0..batch {
                    black_box(handshake(&p.client, &p.server, &mut ServerClock(None)));
                }
                pair[i].push((thread_cpu() - t).as_secs_f64() * 1e6 / batch as f64);
                let mut clock = ServerClock(Some(Duration::ZERO));
                for _ in 0..batch {
                    black_box(handshake(&p.client, &p.server, &mut clock));
                }
                server[i].push(clock.0.unwrap_or_default().as_secs_f64() * 1e6 / batch as f64);
            }
        }
        let idx = |name: &str| s.pairs.iter().position(|p| p.name == name).expect("contestant");
        let (bare, bare128) = (idx("bare-rustls"), idx("bare-rustls-aes128"));
        let ratio = |a: &[f64], b: &[f64]| {
            let mut r: Vec<f64> = a.iter().zip(b).map(|(x, y)| (x / y - 1.0) * 100.0).collect();
            median(&mut r)
        };
        for (i, p) in s.pairs.iter().enumerate() {
            let pm = median(&mut pair[i].clone());
            let sm = median(&mut server[i].clone());
            println!(
                "| {} | {} | {:.1} | {:.0} | {:.1} | {:.0} | {:+.1} % | {:+.1} % | {:+.1} % | {:+.1} % |",
                s.label,
                p.name,
                pm,
                1e6 / pm,
                sm,
                1e6 / sm,
                ratio(&pair[i], &pair[bare]),
                ratio(&server[i], &server[bare]),
                ratio(&pair[i], &pair[bare128]),
                ratio(&server[i], &server[bare128]),
            );
        }
        eprintln!("{}: {rounds} rounds of {batch} handshakes per contestant", s.label);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--test" || a == "--list");
    let setups = [
        setup("ecdsa-p256", KeyType::EcdsaP256),
        setup("rsa-2048", KeyType::Rsa(2048)),
    ];
    let mut c = Criterion::default().with_measurement(ThreadCpu).configure_from_args();
    bench_handshakes(&mut c, &setups);
    c.final_summary();
    // MOAT_HANDSHAKE_AB_ROUNDS=0 skips the interleaved comparison.
    let rounds = std::env::var("MOAT_HANDSHAKE_AB_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 2 } else { 100 });
    if rounds > 0 {
        interleaved(&setups, rounds);
    }
}
