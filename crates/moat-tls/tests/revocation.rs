//! Revocation with CRLs: a certificate revoked with `moat cert revoke` is
//! refused on every role after the reload (reason `revoked` in the log), and
//! a TLS session resumed from before the revocation does not let it back in.

mod support;
use support::*;

use std::sync::Arc;

use moat_pki::ops::{self, RevokeOptions, RevokeTarget};
use moat_tls::principal::IdentityPolicy;
use moat_tls::store::{CertStore, StoreRole};
use rustls_pki_types::ServerName;
use tokio::io::AsyncReadExt;

fn revoke(d: &Dir, file: &str) {
    ops::revoke(&RevokeOptions::new(
        d.certs(),
        d.ca_key(),
        RevokeTarget::Cert(d.file(file)),
    ))
    .unwrap();
}

/// Connects, reads the greeting; returns it with whether the session was resumed.
async fn connect(config: Arc<rustls::ClientConfig>, addr: std::net::SocketAddr) -> Result<(String, bool), String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let mut s = String::new();
    tls.read_to_string(&mut s).await.map_err(|e| e.to_string())?;
    Ok((s, resumed))
}

#[tokio::test]
async fn revoked_client_certificates_are_refused_on_sql_and_rpc() {
    let (logs, _g) = Logs::install();
    let d = Dir::new();
    let store = CertStore::open(&d.certs(), StoreRole::Node, IdentityPolicy::default()).unwrap();
    let sql = serve(store.clone(), Listener::Sql).await;
    let rpc = serve(store.clone(), Listener::Rpc).await;
    let ca = d.file("ca.crt");
    let args = |base: &str| {
        vec![
            "-CAfile".to_string(),
            ca.display().to_string(),
            "-cert".into(),
            d.file(&format!("{base}.crt")).display().to_string(),
            "-key".into(),
            d.file(&format!("{base}.key")).display().to_string(),
        ]
    };
    let run = |base: &'static str, addr| {
        let a = args(base);
        async move {
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            s_client(addr, &refs).await
        }
    };
    assert!(run("client.alice", sql.addr).await.0);
    revoke(&d, "client.alice.crt");
    // Not yet reloaded: still accepted (reload is what applies revocation data).
    assert!(run("client.alice", sql.addr).await.0);
    store.reload("test").unwrap();
    let (ok, out) = run("client.alice", sql.addr).await;
    assert!(!ok, "{out}");
    wait_log(&logs, "reason=\"revoked\"").await;
    // root is untouched.
    assert!(run("client.root", sql.addr).await.0);
    // A revoked node certificate is refused by the RPC listener.
    let mut o = d.opts();
    o.certs_dir = d.tmp.path().join("other-node");
    o.ca_cert = Some(ca.clone());
    ops::create_node(&o, &["localhost".into()]).unwrap();
    let other = o.certs_dir.clone();
    let node_args = |dir: &std::path::Path| {
        vec![
            "-CAfile".to_string(),
            ca.display().to_string(),
            "-cert".into(),
            dir.join("node.crt").display().to_string(),
            "-key".into(),
            dir.join("node.key").display().to_string(),
        ]
    };
    let a = node_args(&other);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    assert!(s_client(rpc.addr, &refs).await.0);
    ops::revoke(&RevokeOptions::new(
        d.certs(),
        d.ca_key(),
        RevokeTarget::Cert(other.join("node.crt")),
    ))
    .unwrap();
    store.reload("test").unwrap();
    let before = logs.text().matches("reason=\"revoked\"").count();
    assert!(!s_client(rpc.addr, &refs).await.0);
    for _ in 0..100 {
        if logs.text().matches("reason=\"revoked\"").count() > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        logs.text().matches("reason=\"revoked\"").count() > before,
        "{}",
        logs.text()
    );
}

#[tokio::test]
async fn a_resumed_session_does_not_bring_back_a_revoked_certificate() {
    // Every test of this binary installs its log capture: tracing caches
    // callsite interest across threads.
    let (_logs, _g) = Logs::install();
    let d = Dir::new();
    // The node's client certificate (principal `node`), which RPC clients present.
    ops::create_client(&d.opts(), "node", false).unwrap();
    let store = CertStore::open(&d.certs(), StoreRole::Node, IdentityPolicy::default()).unwrap();
    // Resumption is tested on the RPC listener: the SQL listener resumes
    // nothing (its clients never try; see the next test).
    let rpc = serve(store.clone(), Listener::Rpc).await;
    let dialer = CertStore::open(&d.certs(), StoreRole::Node, IdentityPolicy::default()).unwrap();
    // One client config, so its session cache carries over between connections.
    let config = dialer.snapshot().rpc_client();
    let (line, resumed) = connect(config.clone(), rpc.addr).await.unwrap();
    assert!(line.contains("principal=node") && !resumed, "{line}");
    let (line, resumed) = connect(config.clone(), rpc.addr).await.unwrap();
    assert!(line.contains("principal=node"));
    assert!(
        resumed,
        "the second connection must resume, or this test proves nothing"
    );

    revoke(&d, "client.node.crt");
    store.reload("test").unwrap();
    let err = connect(config.clone(), rpc.addr).await.unwrap_err();
    assert!(
        err.contains("revoked") || err.contains("Revoked") || err.contains("alert"),
        "{err}"
    );
}

#[tokio::test]
async fn the_sql_listener_resumes_no_sessions() {
    let (_logs, _g) = Logs::install();
    let d = Dir::new();
    let store = CertStore::open(&d.certs(), StoreRole::Node, IdentityPolicy::default()).unwrap();
    let sql = serve(store.clone(), Listener::Sql).await;
    let alice = CertStore::open(
        &d.certs(),
        StoreRole::SqlClient(Some("alice".into())),
        IdentityPolicy::default(),
    )
    .unwrap();
    let config = alice.snapshot().sql_client();
    for _ in 0..2 {
        let (line, resumed) = connect(config.clone(), sql.addr).await.unwrap();
        assert!(line.contains("principal=alice") && !resumed, "{line}");
    }
}
