//! Node-to-node RPC round trips over mutual TLS against the same RPC in
//! plaintext (issue 5: TLS should cost under 10 % on established
//! connections).
//!
//! One process: a real node (`node::start`, a one-node cluster) serves the
//! `Ping` RPC on its shared port over mutual TLS (ALPN `h2`, client
//! certificate `node.crt` checked for the `node` principal), and the same
//! tonic service is also served on a plaintext loopback listener. Clients:
//! one HTTP/2 channel each, established before timing (TLS handshake done).
//! Every round times a batch of sequential round trips on each transport,
//! back to back, in alternating order; the overhead reported is the median
//! of per-round ratios, so load changes on the machine between rounds cancel
//! out. CPU is the whole process's (both ends of every call), from
//! `CLOCK_PROCESS_CPUTIME_ID`, so other load on the machine does not count.
//! Also: concurrent throughput (16 callers on one channel).
//!
//! Run: `cargo bench -p moat-server --bench rpc` (or `bash bench/rpc.sh`).
//! Environment: `MOAT_RPC_ROUNDS` (default 30), `MOAT_RPC_BATCH` (default 300).

use std::time::{Duration, Instant};

use moat_pki::ops::{self, CreateOptions};
use moat_pki::profile::Profile;
use moat_server::cluster::rpc::proto::node_client::NodeClient;
use moat_server::cluster::rpc::proto::Json;
use moat_server::cluster::rpc::{self, PeerInfo, RpcStream};
use moat_server::node::{self, NodeConfig};
use tonic::transport::Channel;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU time of the whole process (client and server ends), in seconds.
fn process_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Times `n` sequential pings: (wall, process CPU).
async fn batch(client: &mut NodeClient<Channel>, payload: &[u8], n: usize) -> (Duration, f64) {
    let cpu = process_cpu();
    let started = Instant::now();
    for _ in 0..n {
        let r = client.ping(Json { data: payload.to_vec() }).await.expect("ping");
        assert_eq!(r.get_ref().data.len(), payload.len());
    }
    (started.elapsed(), process_cpu() - cpu)
}

async fn throughput(client: &NodeClient<Channel>, payload: &[u8], callers: usize, per_caller: usize) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let mut c = client.clone();
        let p = payload.to_vec();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_caller {
                c.ping(Json { data: p.clone() }).await.expect("ping");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    (callers * per_caller) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    moat_tls::provider::install_default();
    let rounds = env_num("MOAT_RPC_ROUNDS", 30).max(3);
    let per_batch = env_num("MOAT_RPC_BATCH", 300).max(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let tmp = tempfile::tempdir().expect("tempdir");
        let opts = CreateOptions::new(tmp.path().join("certs"), tmp.path().join("ca.key"));
        ops::create_ca(&opts, Profile::Ca, false).expect("create_ca");
        ops::create_node(&opts, &["localhost".to_string(), "127.0.0.1".to_string()]).expect("create_node");
        let cfg = NodeConfig::new(
            tmp.path().join("certs"),
            tmp.path().join("store"),
            "127.0.0.1:0".parse().expect("addr"),
        );
        let running = node::start(cfg).await.expect("node");

        // The same service on a plaintext listener.
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let plain_addr = plain.local_addr().expect("addr");
        let tx = rpc::serve::<tokio::net::TcpStream>(running.cluster.core().clone());
        tokio::spawn(async move {
            while let Ok((tcp, peer)) = plain.accept().await {
                let _ = tcp.set_nodelay(true);
                let info = PeerInfo {
                    addr: peer,
                    principal: None,
                };
                if tx.send(RpcStream::new(tcp, info)).await.is_err() {
                    break;
                }
            }
        });

        let tls_channel = rpc::tls_channel(running.store.clone(), &running.sql_addr.to_string()).expect("channel");
        let plain_channel = rpc::plain_channel(&plain_addr.to_string()).expect("channel");
        let mut tls = NodeClient::new(tls_channel);
        let mut clear = NodeClient::new(plain_channel);

        println!("RPC round trips, {rounds} rounds x {per_batch} sequential pings per transport per round");
        println!();
        println!("| payload | mTLS µs/RPC | plaintext µs/RPC | TLS wall overhead | mTLS CPU µs/RPC | plaintext CPU µs/RPC | TLS CPU overhead |");
        println!("|---|---|---|---|---|---|---|");
        for size in [64usize, 4096, 65536] {
            let payload = vec![0x5au8; size];
            // Warm-up: connections, HTTP/2 windows, allocator.
            batch(&mut tls, &payload, 200).await;
            batch(&mut clear, &payload, 200).await;
            let (mut t, mut p, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
            let (mut tc, mut pc, mut cratio) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..rounds {
                let (dt, dp) = if round % 2 == 0 {
                    let a = batch(&mut tls, &payload, per_batch).await;
                    (a, batch(&mut clear, &payload, per_batch).await)
                } else {
                    let b = batch(&mut clear, &payload, per_batch).await;
                    (batch(&mut tls, &payload, per_batch).await, b)
                };
                let us = |d: f64| d * 1e6 / per_batch as f64;
                t.push(us(dt.0.as_secs_f64()));
                p.push(us(dp.0.as_secs_f64()));
                ratio.push(dt.0.as_secs_f64() / dp.0.as_secs_f64());
                tc.push(us(dt.1));
                pc.push(us(dp.1));
                cratio.push(dt.1 / dp.1);
            }
            println!(
                "| {size} B | {:.1} | {:.1} | {:+.1} % | {:.1} | {:.1} | {:+.1} % |",
                median(t),
                median(p),
                (median(ratio) - 1.0) * 100.0,
                median(tc),
                median(pc),
                (median(cratio) - 1.0) * 100.0
            );
        }
        println!();
        println!("| payload | mTLS RPC/s (16 callers) | plaintext RPC/s (16 callers) | ratio |");
        println!("|---|---|---|---|");
        for size in [64usize, 4096] {
            let payload = vec![0x5au8; size];
            let mut t = Vec::new();
            let mut p = Vec::new();
            for round in 0..5 {
                if round % 2 == 0 {
                    t.push(throughput(&tls, &payload, 16, 500).await);
                    p.push(throughput(&clear, &payload, 16, 500).await);
                } else {
                    p.push(throughput(&clear, &payload, 16, 500).await);
                    t.push(throughput(&tls, &payload, 16, 500).await);
                }
            }
            let (t, p) = (median(t), median(p));
            println!("| {size} B | {t:.0} | {p:.0} | {:.2} |", t / p);
        }
        running.stop();
    });
}
