//! The node as a process: durability across kill -9, startup refusals,
//! SIGHUP reload, and psycopg 3 (extended protocol, parameters, binary results).

mod node_support;
use node_support::*;

use std::process::Command;
use std::time::Duration;

#[test]
fn committed_rows_survive_kill_9() {
    let mut n = NodeProc::start(&[]);
    let out = n.psql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    assert!(out.status.success(), "{}", text(&out));
    for i in 0..50 {
        let out = n.psql(&format!("INSERT INTO t VALUES ({i}, 'row {i}')"));
        assert!(out.status.success(), "{}", text(&out));
    }
    // A transaction left open at the kill is not applied.
    n.kill9();
    n.spawn(&[]);
    let out = n.psql("SELECT count(*), max(id) FROM t");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "50|49");
}

#[test]
fn refuses_to_start_without_what_a_secure_node_needs() {
    let n = NodeProc::start(&[]);
    let run = |certs: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_moat"))
            .args([
                "start-single-node",
                "--http-addr",
                "127.0.0.1:0",
                "--certs-dir",
                certs.to_str().unwrap(),
            ])
            .args([
                "--store",
                n.tmp.path().join("s2").to_str().unwrap(),
                "--listen-addr",
                "127.0.0.1:0",
            ])
            .output()
            .unwrap()
    };
    // No node certificate.
    let d = n.tmp.path().join("nonode");
    std::fs::create_dir(&d).unwrap();
    std::fs::copy(n.certs().join("ca.crt"), d.join("ca.crt")).unwrap();
    let out = run(&d);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node.crt") && err.contains("missing"), "{err}");
    // A world-readable node key.
    let d = n.tmp.path().join("badperm");
    std::fs::create_dir(&d).unwrap();
    for f in ["ca.crt", "node.crt", "node.key"] {
        std::fs::copy(n.certs().join(f), d.join(f)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.join("node.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&d);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node.key") && err.contains("exceeds"), "{err}");
    // A node certificate without clientAuth (a UI certificate copied as node.crt).
    let d = n.tmp.path().join("noclient");
    std::fs::create_dir(&d).unwrap();
    let key = n.tmp.path().join("ca.key");
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args([
            "cert",
            "create-ui",
            "--certs-dir",
            d.to_str().unwrap(),
            "--ca-key",
            key.to_str().unwrap(),
        ])
        .args(["--ca-cert", n.certs().join("ca.crt").to_str().unwrap(), "localhost"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::fs::copy(n.certs().join("ca.crt"), d.join("ca.crt")).unwrap();
    std::fs::rename(d.join("ui.crt"), d.join("node.crt")).unwrap();
    std::fs::rename(d.join("ui.key"), d.join("node.key")).unwrap();
    let out = run(&d);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("clientAuth"), "{err}");
}

#[test]
fn sighup_reloads_a_rotated_node_certificate() {
    let n = NodeProc::start(&[]);
    let serial = |n: &NodeProc| {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{}", n.port),
                "-starttls",
                "postgres",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let pem = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut child = Command::new("openssl")
            .args(["x509", "-noout", "-serial"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(pem.as_bytes()).unwrap();
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout)
            .trim()
            .to_string()
    };
    let before = serial(&n);
    assert!(before.starts_with("serial="), "{before}");
    // Rotate the node certificate elsewhere and move it in (atomic renames), then SIGHUP.
    let key = n.tmp.path().join("ca.key");
    let staging = n.tmp.path().join("staging");
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args([
            "cert",
            "create-node",
            "--certs-dir",
            staging.to_str().unwrap(),
            "--ca-key",
            key.to_str().unwrap(),
        ])
        .args([
            "--ca-cert",
            n.certs().join("ca.crt").to_str().unwrap(),
            "localhost",
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::fs::rename(staging.join("node.key"), n.certs().join("node.key")).unwrap();
    std::fs::rename(staging.join("node.crt"), n.certs().join("node.crt")).unwrap();
    let pid = n.child.as_ref().unwrap().id();
    Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || serial(&n) != before),
        "the new certificate must be served"
    );
    assert!(n.log_text().contains("certificates reloaded"), "{}", n.log_text());
    // Still serving SQL.
    assert!(n.psql("SELECT 1").status.success());
}

#[test]
fn psycopg3_extended_protocol_parameters_and_binary_results() {
    let check = Command::new("python3").args(["-c", "import psycopg"]).output().unwrap();
    assert!(
        check.status.success(),
        "psycopg 3 is required (pip install 'psycopg[binary]'); scripts/test.sh installs it"
    );
    let n = NodeProc::start(&[]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/psycopg_check.py");
    let certs = n.certs();
    let out = Command::new("python3")
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", n.tmp.path())
        .env(
            "MOAT_DSN",
            format!(
                "host=localhost port={} user=root dbname=defaultdb sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
                n.port,
                certs.join("ca.crt").display(),
                certs.join("client.root.crt").display(),
                certs.join("client.root.key").display()
            ),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out), n.log_text());
    assert!(String::from_utf8_lossy(&out.stdout).contains("psycopg checks passed"));
}
