//! Logins read users from memory, refreshed whenever the store changed:
//! a new, changed or dropped user takes effect at the next login, whether
//! the change came through SQL (the Raft state machine) or straight into
//! the store. Real node, psql with a fresh HOME and an explicit sslrootcert.

use std::path::PathBuf;
use std::process::Output;

use moat_pki::ops::{self, CreateOptions};
use moat_pki::profile::Profile;
use moat_server::db::Database;
use moat_server::node::{self, NodeConfig, RunningNode};
use moat_server::users;

struct Node {
    tmp: tempfile::TempDir,
    node: RunningNode,
}

impl Node {
    async fn start() -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let certs = tmp.path().join("certs");
        let o = CreateOptions::new(&certs, tmp.path().join("ca.key"));
        ops::create_ca(&o, Profile::Ca, false).unwrap();
        ops::create_node(&o, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        ops::create_client(&o, "root", false).unwrap();
        let cfg = NodeConfig::new(&certs, tmp.path().join("store"), "127.0.0.1:0".parse().unwrap());
        let node = node::start(cfg).await.unwrap();
        Node { tmp, node }
    }

    fn certs(&self) -> PathBuf {
        self.tmp.path().join("certs")
    }

    /// psql as `user`, by root's certificate or by password.
    async fn psql(&self, user: &str, password: Option<&str>, sql: &str) -> Output {
        let home = self.tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut conn = format!(
            "host=localhost port={} user={user} dbname=defaultdb connect_timeout=10 sslmode=verify-full sslrootcert={}",
            self.node.sql_addr.port(),
            self.certs().join("ca.crt").display()
        );
        if password.is_none() {
            conn.push_str(&format!(
                " sslcert={} sslkey={}",
                self.certs().join(format!("client.{user}.crt")).display(),
                self.certs().join(format!("client.{user}.key")).display()
            ));
        }
        let mut cmd = tokio::process::Command::new("psql");
        cmd.arg(conn)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home);
        if let Some(p) = password {
            cmd.env("PGPASSWORD", p);
        }
        tokio::time::timeout(std::time::Duration::from_secs(30), cmd.output())
            .await
            .expect("psql hung")
            .unwrap()
    }

    async fn root(&self, sql: &str) {
        let out = self.psql("root", None, sql).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Whether `user` logs in with `password`; the error text when not.
    async fn login(&self, user: &str, password: &str) -> Result<(), String> {
        let out = self.psql(user, Some(password), "SELECT current_user").await;
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), user);
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_changes_take_effect_at_the_next_login() {
    let n = Node::start().await;
    n.root("CREATE USER eve WITH PASSWORD 'pw-1'").await;
    n.login("eve", "pw-1").await.unwrap();
    n.root("ALTER USER eve WITH PASSWORD 'pw-2'").await;
    let e = n.login("eve", "pw-1").await.unwrap_err();
    assert!(e.contains("password authentication failed"), "{e}");
    n.login("eve", "pw-2").await.unwrap();
    n.root("DROP USER eve").await;
    let e = n.login("eve", "pw-2").await.unwrap_err();
    assert!(e.contains("password authentication failed"), "{e}");

    // A change written straight into the store (not through this node's
    // SQL) is seen too.
    n.root("CREATE USER frank WITH PASSWORD 'pw-3'").await;
    n.login("frank", "pw-3").await.unwrap();
    let db = Database::open(&n.tmp.path().join("store")).unwrap();
    let conn = db.connect().unwrap();
    users::execute(&conn, &users::parse("DROP USER frank").unwrap().unwrap(), users::ROOT).unwrap();
    let e = n.login("frank", "pw-3").await.unwrap_err();
    assert!(e.contains("password authentication failed"), "{e}");
}
