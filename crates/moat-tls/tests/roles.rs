//! Every role against real peers: openssl s_client, curl and rustls clients.
//! Right certificate accepted; no certificate, foreign CA, expired,
//! not-yet-valid, wrong usage, wrong principal and revoked refused, each with
//! the reason in the server log.

mod support;
use support::*;

use std::sync::Arc;

use moat_pki::profile::Profile;
use moat_tls::principal::{Dn, IdentityPolicy, PrincipalMap};
use moat_tls::store::{CertStore, StoreRole};
use rustls_pki_types::ServerName;
use tokio::io::AsyncReadExt;

fn node_store(d: &Dir) -> Arc<CertStore> {
    CertStore::open(&d.certs(), StoreRole::Node, IdentityPolicy::default()).unwrap()
}

/// Client material kept outside the server's certs directory.
fn extra(d: &Dir) -> std::path::PathBuf {
    let p = d.tmp.path().join("extra");
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn cert_args(dir: &std::path::Path, base: &str) -> Vec<String> {
    vec![
        "-cert".into(),
        dir.join(format!("{base}.crt")).display().to_string(),
        "-key".into(),
        dir.join(format!("{base}.key")).display().to_string(),
    ]
}

async fn s_client_as(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    cert: Option<(&std::path::Path, &str)>,
    more: &[&str],
) -> (bool, String) {
    let mut args: Vec<String> = vec!["-CAfile".into(), ca.display().to_string()];
    if let Some((dir, base)) = cert {
        args.extend(cert_args(dir, base));
    }
    args.extend(more.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    s_client(addr, &refs).await
}

#[tokio::test]
async fn sql_listener_accepts_password_and_certificate_clients_and_refuses_bad_certificates() {
    let (logs, _g) = Logs::install();
    let d = Dir::new();
    let x = extra(&d);
    d.special_leaf(&x, "expired", Profile::Client, "root", -400, 10);
    d.special_leaf(&x, "future", Profile::Client, "root", 10, 100);
    d.special_leaf(&x, "serveronly", Profile::Ui, "root", 0, 100);
    let foreign = Dir::new();
    let srv = serve(node_store(&d), Listener::Sql).await;
    let ca = d.file("ca.crt");

    // No client certificate: one-sided TLS (a password login's transport).
    let (ok, out) = s_client_as(srv.addr, &ca, None, &[]).await;
    assert!(ok && out.contains("hello principal=none"), "{out}");
    // root's certificate: mutual TLS.
    let (ok, out) = s_client_as(srv.addr, &ca, Some((&d.certs(), "client.root")), &[]).await;
    assert!(ok && out.contains("hello principal=root"), "{out}");
    // TLS 1.2 works on the SQL port, with an AEAD suite.
    let (ok, out) = s_client_as(srv.addr, &ca, Some((&d.certs(), "client.root")), &["-tls1_2"]).await;
    assert!(ok && out.contains("hello principal=root"), "{out}");
    // TLS 1.1 and a CBC suite are refused.
    let (ok, _) = s_client_as(srv.addr, &ca, None, &["-tls1_1"]).await;
    assert!(!ok);
    let (ok, _) = s_client_as(srv.addr, &ca, None, &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"]).await;
    assert!(!ok);

    for (dir, base, reason) in [
        (foreign.certs(), "client.root", "reason=\"unknown_ca\""),
        (x.clone(), "expired", "reason=\"expired\""),
        (x.clone(), "future", "reason=\"not_yet_valid\""),
        (x.clone(), "serveronly", "reason=\"bad_usage\""),
    ] {
        let before = logs.text().matches("TLS handshake failed").count();
        let (ok, out) = s_client_as(srv.addr, &ca, Some((&dir, base)), &[]).await;
        assert!(!ok, "{base} must be refused: {out}");
        let text = wait_log(&logs, reason).await;
        assert!(text.matches("TLS handshake failed").count() > before, "{text}");
    }
    assert!(
        logs.text().contains("peer=127.0.0.1:"),
        "the log names the peer: {}",
        logs.text()
    );
}

#[tokio::test]
async fn rpc_listener_requires_a_node_or_root_certificate() {
    let (logs, _g) = Logs::install();
    let d = Dir::new();
    let srv = serve(node_store(&d), Listener::Rpc).await;
    let ca = d.file("ca.crt");
    let (ok, out) = s_client_as(srv.addr, &ca, Some((&d.certs(), "node")), &[]).await;
    assert!(ok && out.contains("hello principal=node"), "{out}");
    assert!(out.contains("TLSv1.3"), "{out}");
    let (ok, out) = s_client_as(srv.addr, &ca, Some((&d.certs(), "client.root")), &[]).await;
    assert!(ok && out.contains("hello principal=root"), "{out}");
    // No certificate.
    let (ok, _) = s_client_as(srv.addr, &ca, None, &[]).await;
    assert!(!ok);
    wait_log(&logs, "reason=\"no_certificate\"").await;
    // A user's certificate from the same CA gets nothing.
    let (ok, out) = s_client_as(srv.addr, &ca, Some((&d.certs(), "client.alice")), &[]).await;
    assert!(!ok, "{out}");
    let text = wait_log(&logs, "reason=\"principal\"").await;
    assert!(
        text.contains("need root or node client cert to perform RPCs") && text.contains("valid for \\\"alice\\\"")
            || text.contains("valid for \"alice\""),
        "{text}"
    );
    // TLS 1.2 between nodes is refused.
    let (ok, _) = s_client_as(srv.addr, &ca, Some((&d.certs(), "node")), &["-tls1_2"]).await;
    assert!(!ok);
}

#[tokio::test]
async fn rpc_principal_map_and_pinned_dn() {
    let d = Dir::new();
    let x = extra(&d);
    // An organisation's node certificate whose CN is not "node".
    d.special_leaf(&x, "orgnode", Profile::Node, "db-node.acme.internal", 0, 100);
    let policy = IdentityPolicy {
        map: PrincipalMap::parse("db-node.acme.internal:node").unwrap(),
        ..Default::default()
    };
    let store = CertStore::open(&d.certs(), StoreRole::Node, policy).unwrap();
    let srv = serve(store, Listener::Rpc).await;
    let (ok, out) = s_client_as(srv.addr, &d.file("ca.crt"), Some((&x, "orgnode")), &[]).await;
    assert!(ok, "{out}");
    // Pinning the node DN: then only that subject passes, not CN=node.
    let policy = IdentityPolicy {
        node_dn: Some(Dn::parse("CN=db-node.acme.internal,O=moat").unwrap()),
        ..Default::default()
    };
    let store = CertStore::open(&d.certs(), StoreRole::Node, policy).unwrap();
    let srv = serve(store, Listener::Rpc).await;
    let (ok, _) = s_client_as(srv.addr, &d.file("ca.crt"), Some((&x, "orgnode")), &[]).await;
    assert!(ok);
    let (ok, _) = s_client_as(srv.addr, &d.file("ca.crt"), Some((&d.certs(), "node")), &[]).await;
    assert!(!ok, "CN=node no longer matches a pinned DN");
}

#[tokio::test]
async fn http_listener_serves_ui_cert_to_curl() {
    let d = Dir::new();
    let srv = serve(node_store(&d), Listener::Http).await;
    let url = format!("https://localhost:{}/", srv.addr.port());
    let curl = |ca: std::path::PathBuf| {
        let url = url.clone();
        let port = srv.addr.port();
        async move {
            tokio::process::Command::new("curl")
                .args([
                    "-sS",
                    "--http1.1",
                    "--max-time",
                    "10",
                    "--cacert",
                    ca.to_str().unwrap(),
                    "--resolve",
                    &format!("localhost:{port}:127.0.0.1"),
                    &url,
                ])
                .output()
                .await
                .unwrap()
        }
    };
    let out = curl(d.file("ca.crt")).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello principal=none"));
    // By IP too (the node cert has 127.0.0.1).
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--http1.1",
            "--max-time",
            "10",
            "--cacert",
            d.file("ca.crt").to_str().unwrap(),
            &format!("https://127.0.0.1:{}/", srv.addr.port()),
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A foreign CA does not trust it.
    let foreign = Dir::new();
    let out = curl(foreign.file("ca.crt")).await;
    assert!(!out.status.success());
    // With ui.crt present, the console presents it instead of node.crt.
    moat_pki::ops::create_ui(&d.opts(), &["localhost".into()]).unwrap();
    let srv2 = serve(node_store(&d), Listener::Http).await;
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--http1.1",
            "-v",
            "--max-time",
            "10",
            "--cacert",
            d.file("ca.crt").to_str().unwrap(),
            "--resolve",
            &format!("localhost:{}:127.0.0.1", srv2.addr.port()),
            &format!("https://localhost:{}/", srv2.addr.port()),
        ])
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("subject: O=moat; CN=localhost"),
        "{err}"
    );
}

async fn rustls_roundtrip(
    config: Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    name: &str,
) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut tls = connector
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut s = String::new();
    // TLS 1.3 client-auth refusals arrive on the first read.
    tls.read_to_string(&mut s).await.map_err(|e| e.to_string())?;
    Ok(s)
}

#[tokio::test]
async fn rustls_clients_for_node_and_sql_roles() {
    let d = Dir::new();
    let server_store = node_store(&d);
    let rpc = serve(server_store.clone(), Listener::Rpc).await;
    let sql = serve(server_store.clone(), Listener::Sql).await;
    // A node dialling a node.
    let cfg = server_store.snapshot().rpc_client();
    let got = rustls_roundtrip(cfg.clone(), rpc.addr, "localhost").await.unwrap();
    assert!(got.contains("principal=node"), "{got}");
    let got = rustls_roundtrip(cfg.clone(), rpc.addr, "127.0.0.1").await.unwrap();
    assert!(got.contains("principal=node"), "{got}");
    // The dialled name must be in the peer's certificate.
    let err = rustls_roundtrip(cfg.clone(), rpc.addr, "db9.example.com")
        .await
        .unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
    // A SQL client as alice, and a password client with no certificate.
    let alice = CertStore::open(
        &d.certs(),
        StoreRole::SqlClient(Some("alice".into())),
        IdentityPolicy::default(),
    )
    .unwrap();
    let got = rustls_roundtrip(alice.snapshot().sql_client(), sql.addr, "localhost")
        .await
        .unwrap();
    assert!(got.contains("principal=alice"), "{got}");
    let anon = CertStore::open(&d.certs(), StoreRole::SqlClient(None), IdentityPolicy::default()).unwrap();
    let got = rustls_roundtrip(anon.snapshot().sql_client(), sql.addr, "localhost")
        .await
        .unwrap();
    assert!(got.contains("principal=none"), "{got}");
    // alice's certificate gets nothing from the RPC port (refusal on first read).
    assert!(rustls_roundtrip(alice.snapshot().sql_client(), rpc.addr, "localhost")
        .await
        .is_err());
    // A node of a foreign cluster is not trusted.
    let foreign = Dir::new();
    let other = CertStore::open(&foreign.certs(), StoreRole::Node, IdentityPolicy::default()).unwrap();
    let err = rustls_roundtrip(other.snapshot().rpc_client(), rpc.addr, "localhost")
        .await
        .unwrap_err();
    // Both clusters' CAs are named "moat CA": the chain is refused because the
    // signature does not verify under ours (UnknownIssuer with distinct names).
    assert!(err.contains("BadSignature") || err.contains("UnknownIssuer"), "{err}");
    // A missing client certificate is a clear error naming the file.
    let err = CertStore::open(
        &d.certs(),
        StoreRole::SqlClient(Some("bob".into())),
        IdentityPolicy::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("client.bob.crt") && err.to_string().contains("missing"),
        "{err}"
    );
}
