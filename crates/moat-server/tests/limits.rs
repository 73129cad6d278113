//! Connection limits: 1,000 stalled half-open handshakes (slowloris) do not
//! stop a legitimate client from connecting and querying within a second,
//! memory stays bounded while they are open, and sessions over the limit are
//! refused with SQLSTATE 53300.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use moat_server::node;
use support::{NodeDir, SSL_REQUEST};
use tokio::io::AsyncWriteExt;

/// psql as root by certificate, running `sql` or (None) reading commands
/// from stdin.
fn psql_cmd(dir: &NodeDir, port: u16, sql: Option<&str>) -> tokio::process::Command {
    let mut cmd = dir.psql(port, "root", Some("root"), "");
    if let Some(s) = sql {
        cmd.args(["-c", s]);
    }
    cmd
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_does_not_stop_a_legitimate_client() {
    let dir = NodeDir::new(&["root"]);
    let mut cfg = dir.node_config();
    cfg.handshake_timeout = Duration::from_secs(10);
    let n = node::start(cfg).await.unwrap();
    let port = n.sql_addr.port();
    // Warm up (first connection opens the database).
    let out = psql_cmd(&dir, port, Some("SELECT 1")).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let before = rss_kib();
    let mut stalled = Vec::new();
    for i in 0..1000 {
        let mut s = tokio::net::TcpStream::connect(n.sql_addr).await.unwrap();
        // Half of them send an SSLRequest and then nothing; half send 3 bytes of it.
        if i % 2 == 0 {
            s.write_all(&SSL_REQUEST).await.unwrap();
        } else {
            s.write_all(&SSL_REQUEST[..3]).await.unwrap();
        }
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let out = psql_cmd(&dir, port, Some("SELECT 41 + 1")).output().await.unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    assert!(
        took < Duration::from_secs(1),
        "a legitimate client took {took:?} behind 1000 stalled handshakes"
    );
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "1000 stalled connections grew memory by {grown} KiB");
    eprintln!("legitimate query behind 1000 stalled handshakes: {took:?}; memory growth {grown} KiB (client and server sockets)");
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_over_the_limit_get_53300() {
    let dir = NodeDir::new(&["root"]);
    let mut cfg = dir.node_config();
    cfg.max_connections = 2;
    let n = node::start(cfg).await.unwrap();
    let port = n.sql_addr.port();
    // Two interactive sessions that stay open (stdin kept open).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = psql_cmd(&dir, port, None)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = c.stdin.take().unwrap();
        stdin.write_all(b"SELECT 1;\n").await.unwrap();
        held.push((c, stdin));
    }
    // Wait until both are in.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let out = psql_cmd(&dir, port, Some("SELECT 1")).output().await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("too many clients already"), "{err}");
    // After one leaves, a new client gets in.
    let (mut c, stdin) = held.pop().unwrap();
    drop(stdin);
    let _ = c.wait().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = psql_cmd(&dir, port, Some("SELECT 1")).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
