//! Logins read users from memory, refreshed whenever the store changed:
//! a new, changed or dropped user takes effect at the next login, whether
//! the change came through SQL (the Raft state machine) or straight into
//! the store. Real node, psql with a fresh HOME and an explicit sslrootcert.

mod support;

use std::process::Output;

use moat_server::db::Database;
use moat_server::node::{self, RunningNode};
use moat_server::users;
use support::NodeDir;

struct Node {
    dir: NodeDir,
    node: RunningNode,
}

impl Node {
    async fn start() -> Node {
        let dir = NodeDir::new(&["root"]);
        let node = node::start(dir.node_config()).await.unwrap();
        Node { dir, node }
    }

    /// psql as `user`, by root's certificate or by password.
    async fn psql(&self, user: &str, password: Option<&str>, sql: &str) -> Output {
        let cert = if password.is_none() { Some(user) } else { None };
        let port = self.node.sql_addr.port();
        self.dir.psql_output(port, user, cert, password, "", sql).await
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
    let db = Database::open(&n.dir.store()).unwrap();
    let conn = db.connect().unwrap();
    users::execute(&conn, &users::parse("DROP USER frank").unwrap().unwrap(), users::ROOT).unwrap();
    let e = n.login("frank", "pw-3").await.unwrap_err();
    assert!(e.contains("password authentication failed"), "{e}");
}
