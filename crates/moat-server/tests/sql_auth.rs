//! Authentication against a real node with real clients (psql/libpq), each
//! with a fresh HOME and an explicit sslrootcert: certificate and password
//! logins, channel binding, HBA methods, and every refusal with its SQLSTATE
//! and message.

mod support;

use std::process::Output;

use moat_server::hba::HbaConfig;
use moat_server::node::{self, RunningNode};
use support::NodeDir;

struct Cluster {
    dir: NodeDir,
    node: RunningNode,
}

impl Cluster {
    async fn start(hba: Option<&str>, accept_plain: bool) -> Cluster {
        let dir = NodeDir::new(&["root", "alice", "bob"]);
        let mut cfg = dir.node_config();
        if let Some(h) = hba {
            cfg.hba = HbaConfig::parse(h).unwrap();
        }
        cfg.accept_sql_without_tls = accept_plain;
        let node = node::start(cfg).await.unwrap();
        let c = Cluster { dir, node };
        c.psql_ok(
            "root",
            Some("root"),
            None,
            "CREATE USER alice WITH PASSWORD 'alice-pw'; CREATE USER bob WITH PASSWORD 'bob-pw'; CREATE USER carol",
        )
        .await;
        c
    }

    /// psql as `user`, with `cert` = Some(name of client.<name>.crt) or None,
    /// an optional password, extra conninfo, and a command.
    async fn psql_with(
        &self,
        user: &str,
        cert: Option<&str>,
        password: Option<&str>,
        extra: &str,
        sql: &str,
    ) -> Output {
        let port = self.node.sql_addr.port();
        self.dir.psql_output(port, user, cert, password, extra, sql).await
    }

    async fn psql_ok(&self, user: &str, cert: Option<&str>, password: Option<&str>, sql: &str) -> String {
        let out = self.psql_with(user, cert, password, "", sql).await;
        assert!(
            out.status.success(),
            "psql as {user} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    async fn psql_err(&self, user: &str, cert: Option<&str>, password: Option<&str>, extra: &str) -> String {
        let out = self.psql_with(user, cert, password, extra, "SELECT current_user").await;
        assert!(
            !out.status.success(),
            "psql as {user} must fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_and_password_logins() {
    let c = Cluster::start(None, false).await;
    // Root and a user by certificate, verify-full.
    assert_eq!(
        c.psql_ok("root", Some("root"), None, "SELECT current_user").await,
        "root"
    );
    assert_eq!(
        c.psql_ok("alice", Some("alice"), None, "SELECT current_user").await,
        "alice"
    );
    // A password over one-sided TLS (sslmode=require also verifies with sslrootcert).
    let out = c
        .psql_with("bob", None, Some("bob-pw"), "sslmode=require", "SELECT current_user")
        .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // SCRAM with channel binding required by the client.
    let out = c
        .psql_with(
            "bob",
            None,
            Some("bob-pw"),
            "channel_binding=require",
            "SELECT session_user",
        )
        .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Root by password too, once it has one.
    c.psql_ok("root", Some("root"), None, "ALTER USER root WITH PASSWORD 'root-pw'")
        .await;
    assert_eq!(
        c.psql_ok("root", None, Some("root-pw"), "SELECT current_user").await,
        "root"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_with_their_reasons() {
    let c = Cluster::start(None, false).await;
    // Plaintext.
    let e = c.psql_err("root", None, None, "sslmode=disable").await;
    assert!(
        e.contains("node is running secure mode, SSL connection required"),
        "{e}"
    );
    // A CA that did not sign the node.
    let other = tempfile::tempdir().unwrap();
    let other_ca = support::other_ca(other.path());
    let e = c
        .psql_err(
            "root",
            Some("root"),
            None,
            &format!("sslrootcert={}", other_ca.display()),
        )
        .await;
    assert!(e.contains("certificate verify failed"), "{e}");
    // alice's certificate used as bob: refused, naming who it is valid for.
    let e = c.psql_err("bob", Some("alice"), None, "").await;
    assert!(
        e.contains("certificate authentication failed for user \"bob\"") && e.contains("\"alice\""),
        "{e}"
    );
    // alice's certificate plus bob's right password: still refused (the certificate decides).
    let e = c.psql_err("bob", Some("alice"), Some("bob-pw"), "").await;
    assert!(e.contains("certificate authentication failed for user \"bob\""), "{e}");
    // Wrong password, unknown user, user without password: the same message.
    let wrong = c.psql_err("bob", None, Some("nope"), "").await;
    assert!(
        wrong.contains("password authentication failed for user \"bob\""),
        "{wrong}"
    );
    let unknown = c.psql_err("zed", None, Some("nope"), "").await;
    assert!(
        unknown.contains("password authentication failed for user \"zed\""),
        "{unknown}"
    );
    let nopw = c.psql_err("carol", None, Some("nope"), "").await;
    assert!(
        nopw.contains("password authentication failed for user \"carol\""),
        "{nopw}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hba_methods() {
    let c = Cluster::start(
        Some(
            "hostssl all alice all cert-and-password\n\
             hostssl all bob all cert\n\
             hostssl all carol all reject\n\
             hostnossl all all all password\n\
             host all all all scram-sha-256\n",
        ),
        true,
    )
    .await;
    // cert-and-password: the certificate alone is not enough, nor the password alone.
    let e = c.psql_err("alice", Some("alice"), None, "").await;
    assert!(e.contains("password") || e.contains("no password supplied"), "{e}");
    let e = c.psql_err("alice", None, Some("alice-pw"), "").await;
    assert!(e.contains("must present a client certificate and the password"), "{e}");
    assert_eq!(
        c.psql_ok("alice", Some("alice"), Some("alice-pw"), "SELECT current_user")
            .await,
        "alice"
    );
    // cert only: a password does not help.
    let e = c.psql_err("bob", None, Some("bob-pw"), "").await;
    assert!(e.contains("no client certificate was presented"), "{e}");
    assert_eq!(c.psql_ok("bob", Some("bob"), None, "SELECT current_user").await, "bob");
    // reject.
    let e = c.psql_err("carol", None, None, "").await;
    assert!(e.contains("rejected by HBA rule"), "{e}");
    // Plaintext is allowed by --accept-sql-without-tls, but the password method needs TLS.
    let e = c.psql_err("bob", None, Some("bob-pw"), "sslmode=disable").await;
    assert!(e.contains("password authentication requires TLS"), "{e}");
    // root keeps its mandatory rule: certificate works whatever the rules say.
    assert_eq!(
        c.psql_ok("root", Some("root"), None, "SELECT current_user").await,
        "root"
    );
}
