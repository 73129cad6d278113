//! Live reload: a stream of new connections while the certs directory is
//! rotated ten times (new node certificate, a new CA prepended, a broken
//! half-written file in between): no handshake fails because of the rotation,
//! the new serial is served within a second of each swap, and a reload that
//! would break something is refused while the old certificates keep serving.

mod support;
use support::*;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moat_pki::profile::Profile;
use moat_tls::principal::IdentityPolicy;
use moat_tls::store::{CertStore, StoreRole};
use rustls_pki_types::ServerName;
use tokio::io::AsyncReadExt;

/// A client config trusting the current ca.crt of the directory.
fn client_config(d: &std::path::Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in moat_pki::inspect::read_cert_pem(&d.join("ca.crt")).unwrap() {
        roots.add(c).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(moat_tls::provider::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

async fn fetch(d: &std::path::Path, addr: std::net::SocketAddr) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(client_config(d))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut s = String::new();
    tls.read_to_string(&mut s).await.map_err(|e| e.to_string())?;
    Ok(s)
}

fn serial_of(line: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("serial="))
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_rotations_under_a_stream_of_connections() {
    let d = Dir::new();
    let store = CertStore::open(&d.certs(), StoreRole::Node, IdentityPolicy::default()).unwrap();
    let _reloader = store
        .spawn_reloader(Duration::from_millis(150), Duration::from_millis(600))
        .unwrap();
    let srv = serve(store.clone(), Listener::Sql).await;

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let streamer = {
        let (stop, failures, count) = (stop.clone(), failures.clone(), count.clone());
        let dir = d.certs();
        let addr = srv.addr;
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match fetch(&dir, addr).await {
                    Ok(_) => {}
                    Err(e) => failures.lock().unwrap().push(e),
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let mut swap_latencies = Vec::new();
    for round in 0..10 {
        match round % 3 {
            // A new node certificate.
            0 => {
                let mut o = d.opts();
                o.overwrite = true;
                moat_pki::ops::create_node(&o, &["localhost".into(), "127.0.0.1".into()]).unwrap();
            }
            // A new CA put first in ca.crt (old kept), then a node cert from it.
            1 => {
                std::fs::remove_file(d.ca_key()).unwrap();
                let mut o = d.opts();
                o.overwrite = true;
                moat_pki::ops::create_ca(&o, Profile::Ca, false).unwrap();
                moat_pki::ops::create_node(&o, &["localhost".into(), "127.0.0.1".into()]).unwrap();
            }
            // A half-written node.crt lands first (a careless copy), then the real files.
            _ => {
                let good = d.tmp.path().join("staging");
                std::fs::create_dir_all(&good).unwrap();
                let mut o = d.opts();
                o.overwrite = true;
                o.certs_dir = good.clone();
                o.ca_cert = Some(d.file("ca.crt"));
                moat_pki::ops::create_node(&o, &["localhost".into(), "127.0.0.1".into()]).unwrap();
                let pem = std::fs::read(good.join("node.crt")).unwrap();
                std::fs::write(d.file("node.crt"), &pem[..pem.len() / 2]).unwrap();
                tokio::time::sleep(Duration::from_millis(700)).await;
                // The broken file was refused; the old certificate still serves.
                assert!(fetch(&d.certs(), srv.addr).await.is_ok());
                assert!(
                    store.stats.record().last_error.is_some(),
                    "the half-written file must be refused"
                );
                std::fs::copy(good.join("node.key"), d.file("node.key")).unwrap();
                std::fs::write(d.file("node.crt"), &pem).unwrap();
            }
        }
        let want = d.serial("node.crt");
        let swapped_at = Instant::now();
        loop {
            if let Ok(line) = fetch(&d.certs(), srv.addr).await {
                if serial_of(&line) == want {
                    break;
                }
            }
            assert!(
                swapped_at.elapsed() < Duration::from_secs(3),
                "round {round}: new serial not served"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        swap_latencies.push(swapped_at.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    streamer.await.unwrap();
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} handshakes failed: {:?}",
        failures.len(),
        count.load(Ordering::Relaxed),
        &failures[..failures.len().min(5)]
    );
    assert!(count.load(Ordering::Relaxed) > 50, "the stream must have run");
    let worst = swap_latencies.iter().max().unwrap();
    assert!(
        *worst < Duration::from_secs(1),
        "new certificates must serve within a second: {swap_latencies:?}"
    );
    assert!(store.stats.successes.load(Ordering::Relaxed) >= 10);
}

#[tokio::test]
async fn refused_reloads_keep_the_old_certificates() {
    let d = Dir::new();
    ops_ui(&d);
    let store = CertStore::open(&d.certs(), StoreRole::Node, IdentityPolicy::default()).unwrap();
    let gen = store.snapshot().generation;
    type Step = Box<dyn Fn(&Dir)>;
    let cases: Vec<(&str, Step, Step)> = vec![
        (
            "reload would lose valid node cert",
            Box::new(|d| std::fs::rename(d.file("node.crt"), d.file("node.crt.bak")).unwrap()),
            Box::new(|d| std::fs::rename(d.file("node.crt.bak"), d.file("node.crt")).unwrap()),
        ),
        (
            "reload would lose valid UI certificate",
            Box::new(|d| std::fs::rename(d.file("ui.crt"), d.file("ui.crt.bak")).unwrap()),
            Box::new(|d| std::fs::rename(d.file("ui.crt.bak"), d.file("ui.crt")).unwrap()),
        ),
        (
            "does not match the certificate",
            Box::new(|d| {
                std::fs::copy(d.file("node.key"), d.file("node.key.bak")).unwrap();
                std::fs::copy(d.file("client.alice.key"), d.file("node.key")).unwrap();
            }),
            Box::new(|d| std::fs::rename(d.file("node.key.bak"), d.file("node.key")).unwrap()),
        ),
        (
            "not a valid X.509 certificate",
            Box::new(|d| {
                std::fs::copy(d.file("ca.crt"), d.tmp.path().join("ca.bak")).unwrap();
                std::fs::write(
                    d.file("ca.crt"),
                    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                )
                .unwrap();
            }),
            Box::new(|d| std::fs::rename(d.tmp.path().join("ca.bak"), d.file("ca.crt")).unwrap()),
        ),
    ];
    for (reason, breakit, fixit) in cases {
        breakit(&d);
        let err = store.reload("test").unwrap_err().to_string();
        assert!(err.contains("reload refused") && err.contains(reason), "{err}");
        assert_eq!(store.snapshot().generation, gen, "old certificates keep serving");
        fixit(&d);
    }
    assert_eq!(store.stats.failures.load(Ordering::Relaxed), 4);
    assert_eq!(store.reload("test").unwrap(), gen + 1);
    assert!(store.stats.record().last_error.is_none());
}

fn ops_ui(d: &Dir) {
    moat_pki::ops::create_ui(&d.opts(), &["localhost".into()]).unwrap();
}
