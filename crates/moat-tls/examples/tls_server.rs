//! A minimal TLS server on moat's configs, for measuring moat over TCP with
//! `openssl s_time` (see bench/tls.sh):
//!
//! ```sh
//! cargo run --release -p moat-tls --example tls_server -- \
//!     --certs-dir DIR --listen 127.0.0.1:PORT --role rpc|sql [--threads N] [--max-seconds S]
//! ```
//!
//! Opens a `CertStore` on DIR as a node and, per connection, runs
//! `moat_tls::accept::handshake` with the current snapshot's RPC server
//! config (TLS 1.3, client certificate required, principal `node`/`root`) or
//! SQL server config (TLS 1.2/1.3, client certificate optional but verified),
//! reads one request (what `s_time -www` sends), answers with a short
//! HTTP/1.0 response, sends close_notify and closes. Listens on loopback
//! only; runs on `--threads` tokio worker threads (default 1: a single
//! thread, like `openssl s_server`) and stops by itself after `--max-seconds`
//! (default 600).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moat_tls::principal::IdentityPolicy;
use moat_tls::store::{CertStore, StoreRole};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const RESPONSE: &[u8] = b"HTTP/1.0 200 ok\r\nContent-type: text/plain\r\n\r\nhello from moat\n";

struct Args {
    certs_dir: PathBuf,
    listen: SocketAddr,
    rpc: bool,
    threads: usize,
    max_seconds: u64,
}

fn usage(problem: &str) -> ! {
    eprintln!("tls_server: {problem}");
    eprintln!(
        "usage: tls_server --certs-dir DIR --listen 127.0.0.1:PORT --role rpc|sql [--threads N] [--max-seconds S]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut certs_dir = None;
    let mut listen = None;
    let mut role = None;
    let mut threads = 1usize;
    let mut max_seconds = 600u64;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            usage(&format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--certs-dir" => certs_dir = Some(PathBuf::from(value)),
            "--listen" => {
                listen = Some(
                    value
                        .parse::<SocketAddr>()
                        .unwrap_or_else(|e| usage(&format!("--listen {value:?}: {e}"))),
                )
            }
            "--role" => role = Some(value),
            "--threads" => {
                threads = value
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .unwrap_or_else(|| usage("--threads takes a number >= 1"))
            }
            "--max-seconds" => max_seconds = value.parse().unwrap_or_else(|_| usage("--max-seconds takes a number")),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    let listen = listen.unwrap_or_else(|| usage("--listen is required"));
    if !listen.ip().is_loopback() {
        usage(&format!(
            "--listen {listen}: this example listens on loopback addresses only"
        ));
    }
    let rpc = match role.as_deref() {
        Some("rpc") => true,
        Some("sql") => false,
        _ => usage("--role must be rpc or sql"),
    };
    Args {
        certs_dir: certs_dir.unwrap_or_else(|| usage("--certs-dir is required")),
        listen,
        rpc,
        threads,
        max_seconds,
    }
}

fn main() {
    let args = parse_args();
    moat_tls::provider::install_default();
    let store = CertStore::open(&args.certs_dir, StoreRole::Node, IdentityPolicy::default()).unwrap_or_else(|e| {
        eprintln!("tls_server: {e}");
        std::process::exit(1)
    });
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    let served = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    runtime.block_on(async {
        let listener = TcpListener::bind(args.listen).await.unwrap_or_else(|e| {
            eprintln!("tls_server: cannot listen on {}: {e}", args.listen);
            std::process::exit(1)
        });
        let (label, role) = if args.rpc { ("rpc", "RPC") } else { ("sql", "SQL") };
        eprintln!(
            "tls_server: {role} config, listening on {}, {} thread(s), stopping after {}s",
            listener.local_addr().expect("local address"),
            args.threads,
            args.max_seconds
        );
        let accept_loop = async {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(_) => {
                        // E.g. out of file descriptors: back off a little.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let snap = store.snapshot();
                let config = if args.rpc { snap.rpc_server() } else { snap.sql_server() };
                let (served, failed) = (served.clone(), failed.clone());
                tokio::spawn(async move {
                    match moat_tls::accept::handshake(config, tcp, peer, label, Duration::from_secs(10)).await {
                        Ok(mut tls) => {
                            let mut buf = [0u8; 1024];
                            let _ = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await;
                            let _ = tls.write_all(RESPONSE).await;
                            let _ = tls.shutdown().await;
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        };
        let stop = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(args.max_seconds)) => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        tokio::select! {
            _ = accept_loop => {}
            _ = stop => {}
        }
    });
    eprintln!(
        "tls_server: stopping; {} connections served, {} handshakes failed",
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
}
