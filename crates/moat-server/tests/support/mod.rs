//! Test setup shared by moat-server's integration tests: a temporary node
//! directory with its certificates, psql (libpq) aimed at a node in it, a
//! bounded child-process runner, and a plaintext pgwire server with trust
//! authentication for tests of the SQL engine alone.

// Each test binary compiles this module and uses only a subset of it.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use moat_pki::ops::{self, CreateOptions};
use moat_pki::profile::Profile;
use moat_server::db::Database;
use moat_server::node::NodeConfig;
use moat_server::sql::QueryHandlers;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::StartupHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::PgWireServerHandlers;
use tokio::net::TcpListener;
use tokio_postgres::{Client, NoTls};

/// A PostgreSQL SSLRequest: length 8, code 80877103.
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];

// ------------------------------------------------------ a node's directory

/// A temporary directory laid out like a node's: `certs/` (a CA, a node
/// certificate for `localhost` and `127.0.0.1`, client certificates),
/// `ca.key` beside it, `store` and a `home` for client programs. Removed
/// when dropped.
pub struct NodeDir {
    tmp: tempfile::TempDir,
}

impl NodeDir {
    /// A fresh directory with a CA, a node certificate and a client
    /// certificate for each of `clients`.
    pub fn new(clients: &[&str]) -> NodeDir {
        let tmp = tempfile::tempdir().unwrap();
        let dir = NodeDir { tmp };
        let o = CreateOptions::new(dir.certs(), dir.ca_key());
        ops::create_ca(&o, Profile::Ca, false).unwrap();
        ops::create_node(&o, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        for u in clients {
            ops::create_client(&o, u, false).unwrap();
        }
        dir
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The certificates directory, `certs/`.
    pub fn certs(&self) -> PathBuf {
        self.path().join("certs")
    }

    /// The CA's private key (outside the certificates directory).
    pub fn ca_key(&self) -> PathBuf {
        self.path().join("ca.key")
    }

    /// The CA certificate, `certs/ca.crt`.
    pub fn ca_crt(&self) -> PathBuf {
        self.certs().join("ca.crt")
    }

    /// The node's store directory.
    pub fn store(&self) -> PathBuf {
        self.path().join("store")
    }

    /// A HOME for client programs (so that no `~/.postgresql` or `~/.psqlrc`
    /// of the machine is read), created on first use.
    pub fn home(&self) -> PathBuf {
        let home = self.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        home
    }

    /// A single-node configuration on these certificates and store,
    /// listening on a free loopback port.
    pub fn node_config(&self) -> NodeConfig {
        NodeConfig::new(self.certs(), self.store(), "127.0.0.1:0".parse().unwrap())
    }

    /// `psql CONNINFO -X -A -t` as `user` against the node whose SQL port is
    /// `port`: TLS verified against `certs/ca.crt` (`sslmode=verify-full`
    /// unless `extra` names an sslmode), the client certificate
    /// `client.<cert>.crt` when `cert` is given, then the `extra` conninfo
    /// (later keywords win). The environment holds only PATH and HOME
    /// ([`NodeDir::home`]); callers add PGPASSWORD and the command. The
    /// child is killed if the command is dropped.
    pub fn psql(&self, port: u16, user: &str, cert: Option<&str>, extra: &str) -> tokio::process::Command {
        let certs = self.certs();
        let mut conn = format!(
            "host=localhost port={port} user={user} dbname=defaultdb connect_timeout=10 sslrootcert={}",
            self.ca_crt().display()
        );
        if let Some(c) = cert {
            conn.push_str(&format!(
                " sslcert={} sslkey={}",
                certs.join(format!("client.{c}.crt")).display(),
                certs.join(format!("client.{c}.key")).display()
            ));
        }
        if !extra.contains("sslmode") {
            conn.push_str(" sslmode=verify-full");
        }
        if !extra.is_empty() {
            conn.push(' ');
            conn.push_str(extra);
        }
        let mut cmd = tokio::process::Command::new("psql");
        cmd.arg(conn).args(["-X", "-A", "-t"]);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home());
        cmd.kill_on_drop(true);
        cmd
    }

    /// Runs `sql` with [`NodeDir::psql`] and `-v ON_ERROR_STOP=1`, with
    /// PGPASSWORD set to `password` when given; panics if psql does not
    /// start or is not done within 30 s.
    pub async fn psql_output(
        &self,
        port: u16,
        user: &str,
        cert: Option<&str>,
        password: Option<&str>,
        extra: &str,
        sql: &str,
    ) -> Output {
        let mut cmd = self.psql(port, user, cert, extra);
        cmd.args(["-v", "ON_ERROR_STOP=1", "-c", sql]);
        if let Some(p) = password {
            cmd.env("PGPASSWORD", p);
        }
        run(&mut cmd, Duration::from_secs(30)).await
    }
}

/// Creates another cluster's CA (same subject, another key) in `dir`
/// (`dir/certs/ca.crt`, key `dir/ca.key`) and returns its certificate's path.
pub fn other_ca(dir: &Path) -> PathBuf {
    let certs = dir.join("certs");
    ops::create_ca(&CreateOptions::new(&certs, dir.join("ca.key")), Profile::Ca, false).unwrap();
    certs.join("ca.crt")
}

/// Runs `cmd` with stdin closed and its output captured; panics if it does
/// not start or is not done within `limit` (and then kills it).
pub async fn run(cmd: &mut tokio::process::Command, limit: Duration) -> Output {
    cmd.kill_on_drop(true).stdin(Stdio::null());
    tokio::time::timeout(limit, cmd.output())
        .await
        .expect("child process hung")
        .expect("child process failed to start")
}

// ------------------------------------- the SQL engine alone, over plaintext

struct Trust;
impl NoopStartupHandler for Trust {}

struct Conn {
    q: Arc<QueryHandlers>,
}

impl PgWireServerHandlers for Conn {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.q.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.q.clone()
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(Trust)
    }
}

/// A plaintext pgwire server with trust authentication over a fresh store
/// (no cluster, no TLS: the SQL engine alone). The store lives as long as
/// this value.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Starts a [`Server`] on a free loopback port; each connection gets its own
/// query handlers on the shared database.
pub async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(&dir.path().join("store")).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { break };
            let h = Conn {
                q: Arc::new(QueryHandlers::new(db.clone(), None)),
            };
            tokio::spawn(async move {
                let _ = pgwire::tokio::process_socket(tcp, None, h).await;
            });
        }
    });
    Server { addr, _dir: dir }
}

/// A tokio-postgres client of `s` as `user` on database `defaultdb`.
pub async fn connect(s: &Server, user: &str) -> Client {
    let cfg = format!("host=127.0.0.1 port={} user={user} dbname=defaultdb", s.addr.port());
    let (client, conn) = tokio_postgres::connect(&cfg, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Runs a test body, failing it if it takes more than 60 s.
pub async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test took too long");
}

/// The SQLSTATE of an error, or a text saying there is none.
pub fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}
