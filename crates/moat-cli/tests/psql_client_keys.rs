//! Client keys as `moat cert` writes them work with psql/libpq unchanged (no
//! chmod, every key type), against a TLS server that speaks the PostgreSQL
//! SSLRequest preamble and requires a client certificate from `ca.crt`.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use moat_pki::inspect::{read_cert_pem, CertInfo};
use moat_pki::keys::PrivateKey;

/// Accepts one PostgreSQL connection: SSLRequest, TLS with a required client
/// certificate, startup packet; answers with a FATAL error that names the
/// certificate's CN and the requested user (so psql prints it), or reports
/// the handshake failure.
fn serve_one(listener: TcpListener, certs: &Path) -> std::thread::JoinHandle<Result<String, String>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in read_cert_pem(&certs.join("ca.crt")).unwrap() {
        roots.add(c).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let chain = read_cert_pem(&certs.join("node.crt")).unwrap();
    let key = PrivateKey::read(&certs.join("node.key")).unwrap().to_private_key_der();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let config = Arc::new(config);
    std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
        let mut pre = [0u8; 8];
        tcp.read_exact(&mut pre).map_err(|e| e.to_string())?;
        if pre != [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f] {
            return Err(format!("not an SSLRequest: {pre:?}"));
        }
        tcp.write_all(b"S").map_err(|e| e.to_string())?;
        let conn = rustls::ServerConnection::new(config).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut len = [0u8; 4];
        tls.read_exact(&mut len).map_err(|e| format!("handshake: {e}"))?;
        let len = u32::from_be_bytes(len) as usize;
        if !(8..10_000).contains(&len) {
            return Err("bad startup length".into());
        }
        let mut body = vec![0u8; len - 4];
        tls.read_exact(&mut body).map_err(|e| e.to_string())?;
        let params: Vec<&str> = body[4..]
            .split(|b| *b == 0)
            .map(|s| std::str::from_utf8(s).unwrap_or(""))
            .collect();
        let user = params
            .iter()
            .position(|p| *p == "user")
            .map(|i| params[i + 1])
            .unwrap_or("");
        let peer = tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or("no client certificate")?;
        let cn = CertInfo::from_der(peer)?.common_name.unwrap_or_default();
        let msg = format!("moat-test: certificate CN={cn} for user {user}");
        let mut fields = Vec::new();
        for (code, text) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', "28000"), (b'M', msg.as_str())] {
            fields.push(code);
            fields.extend_from_slice(text.as_bytes());
            fields.push(0);
        }
        fields.push(0);
        let mut out = vec![b'E'];
        out.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(&fields);
        tls.write_all(&out).map_err(|e| e.to_string())?;
        tls.flush().map_err(|e| e.to_string())?;
        tls.conn.send_close_notify();
        let _ = tls.flush();
        Ok(msg)
    })
}

fn psql(certs: &Path, port: u16, user: &str, home: &Path) -> std::process::Output {
    let conn = format!(
        "host=localhost port={port} user={user} dbname=defaultdb sslmode=verify-full connect_timeout=10 sslrootcert={ca} sslcert={crt} sslkey={key}",
        ca = certs.join("ca.crt").display(),
        crt = certs.join(format!("client.{user}.crt")).display(),
        key = certs.join(format!("client.{user}.key")).display(),
    );
    std::process::Command::new("psql")
        .arg(conn)
        .args(["-X", "-c", "select 1"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .output()
        .expect("psql must be installed")
}

#[test]
fn psql_uses_client_keys_of_every_type_as_written() {
    for kt in KEY_TYPES {
        let s = Scratch::new();
        s.standard_dir(kt);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = serve_one(listener, &s.certs());
        let home = s.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let out = psql(&s.certs(), port, "root", &home);
        let seen = server
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{kt}: server: {e}; psql: {}", stderr(&out)));
        assert_eq!(seen, "moat-test: certificate CN=root for user root");
        assert!(
            stderr(&out).contains("FATAL:  moat-test: certificate CN=root for user root"),
            "{kt}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_client_certificate_from_another_ca_is_refused_in_the_handshake() {
    let s = Scratch::new();
    s.standard_dir("ecdsa-p256");
    // A second, unrelated CA issues "root".
    let other = Scratch::new();
    other.standard_dir("ecdsa-p256");
    std::fs::copy(other.file("client.root.crt"), s.file("client.root.crt")).unwrap();
    std::fs::copy(other.file("client.root.key"), s.file("client.root.key")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = serve_one(listener, &s.certs());
    let home = s.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = psql(&s.certs(), port, "root", &home);
    let seen = server.join().unwrap();
    assert!(seen.as_ref().is_err_and(|e| e.contains("handshake")), "{seen:?}");
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("moat-test"), "{}", stderr(&out));
}
