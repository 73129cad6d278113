//! Replication on a real 3-node cluster in one process (three `node::start`
//! nodes on loopback, node-to-node RPC over mutual TLS): replicas agree on
//! non-deterministic SQL, explicit transactions are replayed at COMMIT and
//! refused with 40001 when the data changed under them, users and the HBA
//! cluster setting reach every node. psql (libpq) is the client.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use moat_pki::ops::{self, CreateOptions};
use moat_pki::profile::Profile;
use moat_server::node::{self, NodeConfig, RunningNode};

struct Cluster {
    tmp: tempfile::TempDir,
    nodes: Vec<RunningNode>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    async fn start() -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let certs = tmp.path().join("certs");
        let o = CreateOptions::new(&certs, tmp.path().join("ca.key"));
        ops::create_ca(&o, Profile::Ca, false).unwrap();
        ops::create_node(&o, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        for u in ["root", "alice"] {
            ops::create_client(&o, u, false).unwrap();
        }
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let join: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut nodes = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let mut cfg = NodeConfig::new(
                &certs,
                tmp.path().join(format!("store{i}")),
                format!("127.0.0.1:{p}").parse().unwrap(),
            );
            cfg.single_node = false;
            cfg.join = join.clone();
            nodes.push(node::start(cfg).await.unwrap());
        }
        let init = nodes[0].cluster.core().handle_init().await;
        assert!(
            matches!(init, moat_server::cluster::InitReply::Initialized { .. }),
            "{init:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ns = nodes[0].cluster.core().nodes();
            let voters = (1..=3).filter(|id| nodes[0].cluster.core().is_voter(*id)).count();
            if ns.len() == 3 && ns.iter().all(|n| n.live) && voters == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "no 3-node cluster within 30 s: {ns:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Cluster { tmp, nodes }
    }

    fn certs(&self) -> PathBuf {
        self.tmp.path().join("certs")
    }

    fn url(&self, node: usize, user: &str, cert: bool) -> String {
        let c = self.certs();
        let mut u = format!(
            "host=localhost port={} user={user} dbname=defaultdb connect_timeout=10 sslmode=verify-full sslrootcert={}",
            self.nodes[node].sql_addr.port(),
            c.join("ca.crt").display()
        );
        if cert {
            u.push_str(&format!(
                " sslcert={} sslkey={}",
                c.join(format!("client.{user}.crt")).display(),
                c.join(format!("client.{user}.key")).display()
            ));
        }
        u
    }

    async fn psql(&self, conninfo: &str, password: Option<&str>, args: &[&str]) -> Output {
        let home = self.tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut cmd = tokio::process::Command::new("psql");
        cmd.arg(conninfo)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(args);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home);
        if let Some(p) = password {
            cmd.env("PGPASSWORD", p);
        }
        tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .expect("psql hung")
            .unwrap()
    }

    /// Runs SQL as root by certificate on `node`; must succeed.
    async fn sql(&self, node: usize, sql: &str) -> String {
        let out = self.psql(&self.url(node, "root", true), None, &["-c", sql]).await;
        assert!(
            out.status.success(),
            "psql on node {node} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_agree_on_nondeterministic_sql() {
    let c = Cluster::start().await;
    c.sql(
        1,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, r INTEGER, b BLOB, ts TEXT, ct TEXT DEFAULT CURRENT_TIMESTAMP, u TEXT, n TEXT, j REAL)",
    )
    .await;
    // Through a follower, then the leader, then in an explicit transaction.
    for node in [1, 0, 2] {
        c.sql(
            node,
            "INSERT INTO t (r, b, ts, u, n, j) VALUES (random(), randomblob(16), datetime('now'), gen_random_uuid(), now(), julianday('now'))",
        )
        .await;
    }
    c.sql(
        2,
        "BEGIN; INSERT INTO t (r, b, ts, u) VALUES (random(), randomblob(8), strftime('%f', 'now'), gen_random_uuid()); \
         UPDATE t SET r = r + abs(random() % 10); COMMIT",
    )
    .await;
    let q = "SELECT id, r, hex(b), ts, ct, u, n, j FROM t ORDER BY id";
    let a = c.sql(0, q).await;
    let b = c.sql(1, q).await;
    let d = c.sql(2, q).await;
    assert_eq!(a.lines().count(), 4, "{a}");
    assert_eq!(a, b, "node 1 and node 2 differ");
    assert_eq!(a, d, "node 1 and node 3 differ");
    // The values are real: random numbers differ between rows, times are now.
    let rows: Vec<Vec<&str>> = a.lines().map(|l| l.split('|').collect()).collect();
    assert_ne!(rows[0][1], rows[1][1]);
    assert!(rows[0][3].starts_with(&time::OffsetDateTime::now_utc().year().to_string()));
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_replay_at_commit_and_refuse_changed_data() {
    let c = Cluster::start().await;
    c.sql(0, "CREATE TABLE acct (id INTEGER PRIMARY KEY, bal INTEGER)")
        .await;
    c.sql(0, "INSERT INTO acct VALUES (1, 100), (2, 0)").await;
    // A transfer with a savepoint rolled back, committed through node 3.
    c.sql(
        2,
        "BEGIN; UPDATE acct SET bal = bal - 10 WHERE id = 1; SAVEPOINT s; UPDATE acct SET bal = bal + 999 WHERE id = 2; \
         ROLLBACK TO SAVEPOINT s; UPDATE acct SET bal = bal + 10 WHERE id = 2; COMMIT",
    )
    .await;
    for n in 0..3 {
        assert_eq!(
            c.sql(n, "SELECT bal FROM acct ORDER BY id").await,
            "90\n10",
            "node {}",
            n + 1
        );
    }
    // Read-your-writes inside a transaction.
    let out = c
        .sql(
            1,
            "BEGIN; INSERT INTO acct VALUES (3, 7); SELECT count(*) FROM acct; ROLLBACK",
        )
        .await;
    assert!(out.lines().any(|l| l == "3"), "{out}");
    assert_eq!(c.sql(0, "SELECT count(*) FROM acct").await, "2");

    // A concurrent write changes what the transaction saw: 40001 at COMMIT,
    // and nothing of the transaction is applied.
    let script = c.tmp.path().join("conflict.sql");
    std::fs::write(
        &script,
        format!(
            "BEGIN;\nUPDATE acct SET bal = bal - 50 WHERE id = 1 RETURNING bal;\n\\! psql -X -q '{}' -c 'UPDATE acct SET bal = 1000 WHERE id = 1'\nCOMMIT;\n",
            c.url(2, "root", true)
        ),
    )
    .unwrap();
    let out = c
        .psql(&c.url(1, "root", true), None, &["-f", script.to_str().unwrap()])
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the transaction must fail");
    assert!(err.contains("restart transaction"), "{err}");
    for n in 0..3 {
        assert_eq!(c.sql(n, "SELECT bal FROM acct WHERE id = 1").await, "1000");
    }
}

/// Runs `script` with psql as root on `node`; `between` is a statement
/// another session runs (through node 3) where the script says `{between}`.
async fn psql_script(c: &Cluster, node: usize, name: &str, script: &str, between: &str) -> std::process::Output {
    let path = c.tmp.path().join(name);
    let other = format!("\\! psql -X -q '{}' -c \"{between}\"", c.url(2, "root", true));
    std::fs::write(&path, script.replace("{between}", &other)).unwrap();
    c.psql(&c.url(node, "root", true), None, &["-f", path.to_str().unwrap()])
        .await
}

/// Serializable, as in CockroachDB: a transaction's reads are validated at
/// COMMIT too, so write skew (two transactions each reading what the other
/// writes) and read skew (a read-only transaction seeing two moments) end
/// in 40001 instead of committing what no serial order would give.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_are_validated_at_commit() {
    let c = Cluster::start().await;
    c.sql(
        0,
        "CREATE TABLE oncall (doctor TEXT PRIMARY KEY, on_call INTEGER NOT NULL)",
    )
    .await;
    c.sql(0, "INSERT INTO oncall VALUES ('alice', 1), ('bob', 1)").await;

    // Write skew: both doctors see two on call and each leaves; the first
    // commits, the second must not (it would leave nobody on call).
    let out = psql_script(
        &c,
        1,
        "skew.sql",
        "BEGIN;\nSELECT count(*) FROM oncall WHERE on_call = 1;\n{between}\n\
         UPDATE oncall SET on_call = 0 WHERE doctor = 'bob';\nCOMMIT;\n",
        "BEGIN; SELECT count(*) FROM oncall WHERE on_call = 1; UPDATE oncall SET on_call = 0 WHERE doctor = 'alice'; COMMIT",
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "write skew committed: {err}");
    assert!(err.contains("restart transaction"), "{err}");
    for n in 0..3 {
        assert_eq!(
            c.sql(n, "SELECT doctor FROM oncall WHERE on_call = 1").await,
            "bob",
            "node {}",
            n + 1
        );
    }

    c.sql(0, "CREATE TABLE acct (id INTEGER PRIMARY KEY, bal INTEGER)")
        .await;
    c.sql(0, "INSERT INTO acct VALUES (1, 50), (2, 50)").await;
    let read_both =
        "BEGIN;\nSELECT bal FROM acct WHERE id = 1;\n{between}\nSELECT bal FROM acct WHERE id = 2;\nCOMMIT;\n";
    // Read skew: a transfer commits between the two reads of a read-only
    // transaction, which saw 50 + 60 = 110 of a total of 100.
    let out = psql_script(
        &c,
        0,
        "read-skew.sql",
        read_both,
        "BEGIN; UPDATE acct SET bal = bal - 10 WHERE id = 1; UPDATE acct SET bal = bal + 10 WHERE id = 2; COMMIT",
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "read skew committed: {err}");
    assert!(err.contains("restart transaction"), "{err}");
    // Without a concurrent change both kinds commit, and a write elsewhere
    // (another table) does not disturb them.
    let out = psql_script(&c, 2, "quiet.sql", read_both, "INSERT INTO oncall VALUES ('carol', 1)").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let numbers: Vec<&str> = stdout.lines().filter(|l| l.parse::<i64>().is_ok()).collect();
    assert_eq!(numbers, ["40", "60"], "{stdout}");
    let out = psql_script(
        &c,
        1,
        "quiet-write.sql",
        "BEGIN;\nSELECT count(*) FROM oncall WHERE on_call = 1;\n{between}\n\
         UPDATE acct SET bal = bal + 1 WHERE id = 1;\nCOMMIT;\n",
        "UPDATE acct SET bal = bal WHERE id = 2",
    )
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for n in 0..3 {
        assert_eq!(
            c.sql(n, "SELECT bal FROM acct ORDER BY id").await,
            "41\n60",
            "node {}",
            n + 1
        );
    }

    // A read under a savepoint that is rolled back was still seen by the
    // client: it is validated too (bob and carol are on call; carol leaves
    // meanwhile, so bob may not).
    let out = psql_script(
        &c,
        0,
        "savepoint-read.sql",
        "BEGIN;\nSAVEPOINT s;\nSELECT count(*) FROM oncall WHERE on_call = 1;\nROLLBACK TO SAVEPOINT s;\n{between}\n\
         UPDATE oncall SET on_call = 0 WHERE doctor = 'bob';\nCOMMIT;\n",
        "UPDATE oncall SET on_call = 0 WHERE doctor = 'carol'",
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a rolled-back savepoint's read escaped validation: {err}"
    );
    assert!(err.contains("restart transaction"), "{err}");
    assert_eq!(c.sql(1, "SELECT doctor FROM oncall WHERE on_call = 1").await, "bob");

    // A read of the session's own state (a replica has other settings)
    // is not validated: the transaction commits everywhere.
    let out = c
        .sql(
            2,
            "SET application_name = 'mine'; BEGIN; INSERT INTO acct VALUES (9, 0); \
             SELECT current_setting('application_name'); COMMIT",
        )
        .await;
    assert!(out.contains("mine") && out.ends_with("COMMIT"), "{out}");
    for n in 0..3 {
        assert_eq!(
            c.sql(n, "SELECT count(*) FROM acct WHERE id = 9").await,
            "1",
            "node {}",
            n + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_and_hba_setting_reach_every_node() {
    let c = Cluster::start().await;
    c.sql(1, "CREATE USER alice WITH PASSWORD 'alice-secret'").await;
    // The verifier was made once and replicated: a password login on node 3.
    let pw = c.url(2, "alice", false);
    let out = c.psql(&pw, Some("alice-secret"), &["-c", "SELECT current_user"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "alice");
    // Not root: may not change settings.
    let out = c
        .psql(
            &c.url(0, "alice", true),
            None,
            &[
                "-c",
                "SET CLUSTER SETTING server.host_based_authentication.configuration = 'host all all all reject'",
            ],
        )
        .await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("only root"));
    // Invalid HBA text is refused before it is replicated.
    let out = c
        .psql(
            &c.url(0, "root", true),
            None,
            &[
                "-c",
                "SET CLUSTER SETTING server.host_based_authentication.configuration = 'host all all all sometimes'",
            ],
        )
        .await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("22023") || !out.status.success());
    // Set through node 1, enforced on node 3.
    c.sql(
        0,
        "SET CLUSTER SETTING server.host_based_authentication.configuration = 'host all alice all reject\nhost all all all cert-password'",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = c.psql(&pw, Some("alice-secret"), &["-c", "SELECT 1"]).await;
        if !out.status.success() {
            assert!(String::from_utf8_lossy(&out.stderr).contains("rejected by HBA rule"));
            break;
        }
        assert!(Instant::now() < deadline, "the HBA setting did not reach node 3");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Root can always log in; RESET restores the node's own rules.
    c.sql(
        2,
        "RESET CLUSTER SETTING server.host_based_authentication.configuration",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c
        .psql(&pw, Some("alice-secret"), &["-c", "SELECT 1"])
        .await
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "RESET did not reach node 3");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let show = c
        .sql(1, "SHOW CLUSTER SETTING server.host_based_authentication.configuration")
        .await;
    assert_eq!(show, "");
}

/// Three nodes, each with its own node certificate from one CA; node 3's is
/// revoked and the CRL installed on nodes 1 and 2 (hot reload, no restart):
/// node 3 loses its established connections and cannot handshake again, so
/// it drops out of the live nodes, and the other two stay writable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_node_is_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("ca.key");
    let dirs: Vec<PathBuf> = (0..3).map(|i| tmp.path().join(format!("certs{i}"))).collect();
    ops::create_ca(&CreateOptions::new(&dirs[0], &key), Profile::Ca, false).unwrap();
    for d in &dirs[1..] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::copy(dirs[0].join("ca.crt"), d.join("ca.crt")).unwrap();
    }
    for d in &dirs {
        let o = CreateOptions::new(d, &key);
        ops::create_node(&o, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        ops::create_client(&o, "root", false).unwrap();
    }
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let join: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut nodes = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let mut cfg = NodeConfig::new(
            &dirs[i],
            tmp.path().join(format!("store{i}")),
            format!("127.0.0.1:{p}").parse().unwrap(),
        );
        cfg.single_node = false;
        cfg.join = join.clone();
        nodes.push(node::start(cfg).await.unwrap());
    }
    nodes[0].cluster.core().handle_init().await;
    let live = |nodes: &Vec<RunningNode>| -> Vec<u64> {
        nodes[0]
            .cluster
            .core()
            .nodes()
            .into_iter()
            .filter(|n| n.live)
            .map(|n| n.id)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while live(&nodes).len() != 3 || !(1..=3).all(|id| nodes[0].cluster.core().is_voter(id)) {
        assert!(Instant::now() < deadline, "no 3-node cluster");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let third = nodes[2].cluster.core().node_id();

    let revoked = ops::revoke(&ops::RevokeOptions::new(
        &dirs[0],
        &key,
        ops::RevokeTarget::Cert(dirs[2].join("node.crt")),
    ));
    assert!(revoked.is_ok(), "{revoked:?}");
    std::fs::copy(dirs[0].join("ca.crl"), dirs[1].join("ca.crl")).unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = live(&nodes);
        if !l.contains(&third) && l.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {third} is still live after its revocation: {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Still writable with two nodes; the write reaches node 2, not node 3.
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let psql = |node: usize, sql: &str| {
        let conninfo = format!(
            "host=localhost port={} user=root dbname=defaultdb sslmode=verify-full sslrootcert={} sslcert={} sslkey={} connect_timeout=10",
            ports[node],
            dirs[node].join("ca.crt").display(),
            dirs[node].join("client.root.crt").display(),
            dirs[node].join("client.root.key").display()
        );
        let mut cmd = tokio::process::Command::new("psql");
        cmd.arg(conninfo)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home);
        async move {
            tokio::time::timeout(Duration::from_secs(60), cmd.output())
                .await
                .unwrap()
                .unwrap()
        }
    };
    let out = psql(0, "CREATE TABLE after_revocation (x INTEGER)").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = psql(1, "SELECT count(*) FROM after_revocation").await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    // Node 3 cannot even reach the leader for a read barrier.
    let before = nodes[2]
        .cluster
        .core()
        .state_machine()
        .applied_index()
        .borrow()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = *nodes[2].cluster.core().state_machine().applied_index().borrow();
    assert_eq!(before, after, "node 3 keeps applying entries after its revocation");
}
