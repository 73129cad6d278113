//! The cluster as processes: `moat start --join` nodes on loopback that
//! replicate every write through Raft and talk to each other over mutual
//! TLS on the shared SQL port. Who may join (only nodes with a `node`
//! certificate from the cluster's CA), how RPC treats other certificates,
//! and what survives a leader's kill -9 and a node's restart.
//!
//! Run sequentially: `cargo test -p moat-cli --test cluster -- --test-threads=1`.

mod cluster_support;
use cluster_support::*;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an outsider gets to (not) join.
const OUTSIDER_WAIT: Duration = Duration::from_secs(8);

/// The `TLS handshake failed` lines of the RPC listener in every node's log.
fn rpc_handshake_failures(c: &Cluster) -> Vec<String> {
    c.nodes
        .iter()
        .flat_map(|n| {
            n.log_text()
                .lines()
                .filter(|l| l.contains("TLS handshake failed") && l.contains("listener=\"rpc\""))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The cluster's members, as `SHOW NODES` on each node lists them, must be
/// exactly the cluster's own nodes.
fn assert_members_are_the_cluster(c: &Cluster, outsider: &Node) {
    let want: BTreeSet<String> = c.nodes.iter().map(|n| n.addr()).collect();
    for i in 0..c.nodes.len() {
        let got: BTreeSet<String> = c.member_addrs(i).into_iter().collect();
        assert_eq!(
            got,
            want,
            "SHOW NODES on node {} (the outsider is {})\n{}",
            i + 1,
            outsider.addr(),
            c.logs()
        );
    }
    for n in &c.nodes {
        let log = n.log_text();
        assert!(
            !log.contains(&format!("addr={}", outsider.addr())),
            "the outsider {} reached membership:\n{}",
            outsider.addr(),
            tail(&log, 40)
        );
    }
    assert!(
        !outsider.log_text().contains("joined the cluster"),
        "{}",
        outsider.log_text()
    );
}

/// The NotAfter of a certificate as `SHOW NODES` prints it (RFC 3339, UTC).
fn not_after(cert: &Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("notAfter=")
        .replace(' ', "T")
}

#[test]
fn three_nodes_form_a_cluster_and_every_node_sees_every_write() {
    let c = Cluster::start(3, &[]);
    let addrs: BTreeSet<String> = c.nodes.iter().map(|n| n.addr()).collect();
    for i in 0..3 {
        let ls = c.node_ls(i);
        let listed: BTreeSet<String> = ls.iter().map(|r| r[1].clone()).collect();
        assert_eq!(listed, addrs, "node ls via node {}: {ls:?}", i + 1);
        assert!(ls.iter().all(|r| r[2] == "t"), "node ls via node {}: {ls:?}", i + 1);
    }
    // Node 1 was initialised; the others joined and became voters.
    for n in &c.nodes[1..] {
        assert!(n.log_text().contains("joined the cluster"), "{}", n.log_text());
    }
    let again = c.moat(&["init", "--host", &c.nodes[1].addr()]);
    assert!(!again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("cluster has already been initialized"),
        "{}",
        text(&again)
    );

    c.query(
        0,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, via INTEGER NOT NULL, v TEXT)",
    );
    let mut want = Vec::new();
    for round in 0..3 {
        for (i, _) in c.nodes.iter().enumerate() {
            let id = round * 10 + i;
            c.query(i, &format!("INSERT INTO t VALUES ({id}, {}, 'row {id}')", i + 1));
            want.push(format!("{id}|{}|row {id}", i + 1));
            // Read right after the write, through the next node.
            let next = (i + 1) % 3;
            let seen = c.query(next, &format!("SELECT v FROM t WHERE id = {id}"));
            assert_eq!(
                seen,
                format!("row {id}"),
                "node {} must see a write made on node {}",
                next + 1,
                i + 1
            );
        }
    }
    c.query(2, "UPDATE t SET v = 'updated' WHERE id = 0");
    c.query(1, "DELETE FROM t WHERE id = 22");
    want.sort_by_key(|r| r.split('|').next().unwrap().parse::<u32>().unwrap());
    want[0] = "0|1|updated".into();
    want.retain(|r| !r.starts_with("22|"));
    let want = want.join("\n");
    for i in 0..3 {
        assert_eq!(
            c.query(i, "SELECT id, via, v FROM t ORDER BY id"),
            want,
            "rows on node {}",
            i + 1
        );
    }

    // moat node status: one leader, every node live, with its certificate's expiry.
    let expiry = not_after(&c.pki.certs.join("node.crt"));
    for via in 0..3 {
        let status = c.node_status(via);
        assert_eq!(status.len(), 3, "node status via node {}: {status:?}", via + 1);
        let leaders = status.iter().filter(|r| r["is_leader"] == "t").count();
        assert_eq!(leaders, 1, "node status via node {}: {status:?}", via + 1);
        for r in &status {
            // The console address each node bound (--http-addr 127.0.0.1:0), not the flag's port 0.
            let node = c.nodes.iter().find(|n| n.addr() == r["address"]).unwrap();
            let console = format!("console serving HTTPS http_addr={}", r["http_address"]);
            assert!(
                node.log_text().contains(&console),
                "{r:?}\n{}",
                tail(&node.log_text(), 20)
            );
            assert_eq!(r["is_live"], "t", "{r:?}");
            assert_eq!(r["cert_expires_at"], expiry, "{r:?}");
            assert!(addrs.contains(&r["address"]), "{r:?}");
            assert!(r["build"].starts_with("moat "), "{r:?}");
            assert!(!r["started_at"].is_empty(), "{r:?}");
        }
    }
    assert!(c.leader(0).is_some());
}

#[test]
fn a_node_with_certificates_from_a_foreign_ca_never_joins() {
    let c = Cluster::start(3, &[]);
    assert_eq!(rpc_handshake_failures(&c), Vec::<String>::new(), "{}", c.logs());
    let foreign = Pki::create(c.tmp.path(), "foreign");
    // A: a certs directory of another CA entirely.
    let mut a = c.outsider("foreign", &foreign.certs);
    a.spawn();
    // B: a node certificate of the other CA, but trusting both CAs, so that
    // it accepts the cluster's nodes and the cluster's refusal is what stops it.
    let both = c.tmp.path().join("foreign-trusting-certs");
    std::fs::create_dir(&both).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&both, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    for f in ["node.crt", "node.key"] {
        std::fs::copy(foreign.certs.join(f), both.join(f)).unwrap();
    }
    let cas = std::fs::read_to_string(foreign.certs.join("ca.crt")).unwrap()
        + &std::fs::read_to_string(c.pki.certs.join("ca.crt")).unwrap();
    std::fs::write(both.join("ca.crt"), cas).unwrap();
    let mut b = c.outsider("foreign-trusting", &both);
    b.spawn();

    std::thread::sleep(OUTSIDER_WAIT);
    assert!(a.running() && b.running());
    assert_members_are_the_cluster(&c, &a);
    assert_members_are_the_cluster(&c, &b);
    // A refuses the cluster's certificates itself, and says so.
    let alog = a.log_text();
    assert!(
        alog.contains("cannot join via") && alog.contains("invalid peer certificate"),
        "{alog}"
    );
    // The cluster refuses B's certificate: not from its CA.
    let blog = b.log_text();
    assert!(blog.contains("cannot join via"), "{blog}");
    let failures = rpc_handshake_failures(&c);
    assert!(
        failures.iter().any(|l| l.contains("reason=\"unknown_ca\"")),
        "{failures:#?}"
    );
    // And the cluster still works.
    c.query(0, "CREATE TABLE ok (id INTEGER PRIMARY KEY)");
    c.query(1, "INSERT INTO ok VALUES (1)");
    assert_eq!(c.query(2, "SELECT count(*) FROM ok"), "1");
}

#[test]
fn a_node_certificate_without_client_auth_cannot_start_nor_dial() {
    let c = Cluster::start(3, &[]);
    let certs = c.tmp.path().join("serveronly-certs");
    c.pki.openssl_node_certs(&certs, "node", "serverAuth");
    let node = c.outsider("serveronly", &certs);
    // moat start refuses it at once, naming the missing usage.
    let out = run_bounded(node.command(), Duration::from_secs(20))
        .expect("moat start with a node.crt without clientAuth must not run");
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node.crt") && err.contains("clientAuth"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("serving SQL"));

    // A peer presenting it anyway (openssl, ALPN h2) fails the RPC handshake.
    let out = s_client_h2(
        c.nodes[0].port,
        &certs.join("node.crt"),
        &certs.join("node.key"),
        &certs.join("ca.crt"),
    );
    let ok = wait_until(Duration::from_secs(5), || {
        rpc_handshake_failures(&c)
            .iter()
            .any(|l| l.contains("reason=\"bad_usage\""))
    });
    assert!(ok, "s_client: {}\n{}", text(&out), c.logs());
    assert!(!out.status.success(), "{}", text(&out));
    assert_members_are_the_cluster(&c, &node);
}

#[test]
fn a_node_certificate_naming_another_principal_never_joins() {
    let c = Cluster::start(3, &[]);
    let certs = c.tmp.path().join("alice-certs");
    c.pki.openssl_node_certs(&certs, "alice", "serverAuth,clientAuth");
    // moat start refuses it at once, naming the principal.
    let node = c.outsider("alice", &certs);
    let out = run_bounded(node.command(), Duration::from_secs(20))
        .expect("moat start with a node.crt naming alice must not run");
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot be used between nodes") && err.contains("alice"),
        "{err}"
    );

    // A peer presenting it anyway (openssl, ALPN h2) fails the RPC handshake
    // with the reason `principal`.
    let out = s_client_h2(
        c.nodes[0].port,
        &certs.join("node.crt"),
        &certs.join("node.key"),
        &certs.join("ca.crt"),
    );
    let ok = wait_until(Duration::from_secs(5), || {
        rpc_handshake_failures(&c)
            .iter()
            .any(|l| l.contains("reason=\"principal\"") && l.contains("CN=alice"))
    });
    assert!(ok, "s_client: {}\n{}", text(&out), c.logs());
    assert_members_are_the_cluster(&c, &node);
}

#[test]
fn rpc_answers_neither_user_certificates_nor_root_for_raft() {
    let c = Cluster::start(1, &[]);
    let certs = &c.pki.certs;
    let port = c.nodes[0].port;
    // alice: the handshake fails (TLS 1.3: the client learns it on its first read).
    let out = s_client_h2(
        port,
        &certs.join("client.alice.crt"),
        &certs.join("client.alice.key"),
        &certs.join("ca.crt"),
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("alert certificate unknown"), "{}", text(&out));
    let ok = wait_until(Duration::from_secs(5), || {
        rpc_handshake_failures(&c)
            .iter()
            .any(|l| l.contains("reason=\"principal\"") && l.contains("CN=alice"))
    });
    assert!(ok, "{}", c.logs());

    // root: the handshake completes ...
    let before = rpc_handshake_failures(&c).len();
    let out = s_client_h2(
        port,
        &certs.join("client.root.crt"),
        &certs.join("client.root.key"),
        &certs.join("ca.crt"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ALPN protocol: h2") && stdout.contains("TLSv1.3"),
        "{stdout}"
    );
    assert!(!text(&out).contains("alert"), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rpc_handshake_failures(&c).len(), before, "{}", c.logs());

    // ... but only init and the echo are answered for root, not Raft.
    let calls = grpc_calls(certs, &c.nodes[0].addr());
    assert_eq!(calls.root_ping, "ok", "{calls:?}");
    assert_eq!(calls.root_init, "AlreadyInitialized", "{calls:?}");
    assert!(calls.root_vote.starts_with("PermissionDenied"), "{calls:?}");
    assert!(calls.root_append.starts_with("PermissionDenied"), "{calls:?}");
    assert!(calls.root_join.starts_with("PermissionDenied"), "{calls:?}");
    // The node certificate gets past the principal check (to the payload's).
    assert!(calls.node_vote.starts_with("InvalidArgument"), "{calls:?}");
    let log = c.nodes[0].log_text();
    assert!(
        log.contains("RPC refused") && log.contains("principal=Some(\"root\")"),
        "{}",
        tail(&log, 30)
    );
}

/// What gRPC calls over the product's own RPC client returned.
#[derive(Debug)]
struct Calls {
    root_ping: String,
    root_init: String,
    root_vote: String,
    root_append: String,
    root_join: String,
    node_vote: String,
}

/// Calls RPCs on `addr` as root (`client.root.crt`) and as a node (`node.crt`).
fn grpc_calls(certs: &Path, addr: &str) -> Calls {
    use moat_server::cluster::rpc::proto::node_client::NodeClient;
    use moat_server::cluster::rpc::{channel_with, to_json};
    use moat_tls::principal::IdentityPolicy;
    use moat_tls::store::{CertStore, StoreRole};

    let root = CertStore::open(
        certs,
        StoreRole::SqlClient(Some("root".into())),
        IdentityPolicy::default(),
    )
    .unwrap();
    let mut root_cfg = (*root.snapshot().sql_client()).clone();
    root_cfg.alpn_protocols = vec![b"h2".to_vec()];
    let root_cfg = Arc::new(root_cfg);
    let node = CertStore::open(certs, StoreRole::Node, IdentityPolicy::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let show = |r: Result<String, (String, String)>| match r {
            Ok(s) => s,
            Err((code, msg)) => format!("{code}: {msg}"),
        };
        macro_rules! call {
            ($client:expr, $method:ident, $body:expr) => {{
                let r = tokio::time::timeout(Duration::from_secs(10), $client.$method($body)).await;
                match r {
                    Err(_) => Err(("Timeout".to_string(), String::new())),
                    Ok(Err(s)) => Err((format!("{:?}", s.code()), s.message().to_string())),
                    Ok(Ok(resp)) => Ok(String::from_utf8_lossy(&resp.get_ref().data).into_owned()),
                }
            }};
        }
        let cfg = root_cfg.clone();
        let mut rc = NodeClient::new(channel_with(addr, move || cfg.clone()).unwrap());
        let root_ping =
            show(call!(rc, ping, to_json(&"hello")).map(|b| if b == "\"hello\"" { "ok".to_string() } else { b }));
        let root_init = show(call!(rc, init, to_json(&())).map(|b| b.trim_matches('"').to_string()));
        let root_vote = show(call!(rc, vote, to_json(&())));
        let root_append = show(call!(rc, append_entries, to_json(&())));
        let root_join = show(call!(rc, join, to_json(&())));
        let ns = node.clone();
        let mut nc = NodeClient::new(channel_with(addr, move || ns.snapshot().rpc_client()).unwrap());
        let node_vote = show(call!(nc, vote, to_json(&"not a vote")));
        Calls {
            root_ping,
            root_init,
            root_vote,
            root_append,
            root_join,
            node_vote,
        }
    })
}

#[test]
fn acknowledged_writes_survive_a_kill_9_of_the_leader() {
    let mut c = Cluster::start(3, &[]);
    c.query(0, "CREATE TABLE w (id INTEGER PRIMARY KEY, via INTEGER NOT NULL)");
    let leader = c.leader(0).unwrap_or_else(|| panic!("no leader\n{}", c.logs()));
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let ports: Vec<u16> = others.iter().map(|&i| c.nodes[i].port).collect();

    // The writer: numbered rows through the non-leaders, a new number for
    // every attempt (a failed write may still have been applied).
    struct Attempt {
        id: u64,
        started: Instant,
        ok: bool,
        error: String,
    }
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(Mutex::new(Vec::<Attempt>::new()));
    let writer = {
        let (stop, attempts) = (stop.clone(), attempts.clone());
        let (certs, home) = (c.pki.certs.clone(), c.home.clone());
        std::thread::spawn(move || {
            let mut id = 0u64;
            while !stop.load(Ordering::SeqCst) {
                id += 1;
                let port = ports[id as usize % ports.len()];
                let started = Instant::now();
                let out = psql_at(port, &certs, &home, &format!("INSERT INTO w VALUES ({id}, {port})"));
                attempts.lock().unwrap().push(Attempt {
                    id,
                    started,
                    ok: out.status.success(),
                    error: if out.status.success() {
                        String::new()
                    } else {
                        text(&out)
                    },
                });
                if !out.status.success() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
    };
    let acked = |attempts: &Mutex<Vec<Attempt>>| attempts.lock().unwrap().iter().filter(|a| a.ok).count();
    assert!(
        wait_until(Duration::from_secs(20), || acked(&attempts) >= 15),
        "writes do not succeed\n{}",
        c.logs()
    );
    let killed_at = Instant::now();
    c.nodes[leader].kill9();
    // Writing goes on until the survivors have acknowledged writes begun after the kill.
    let after_kill = |attempts: &Mutex<Vec<Attempt>>| {
        attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.ok && a.started > killed_at)
            .count()
    };
    let recovered = wait_until(Duration::from_secs(30), || after_kill(&attempts) >= 10);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let attempts = std::mem::take(&mut *attempts.lock().unwrap());
    let failed: Vec<&str> = attempts.iter().filter(|a| !a.ok).map(|a| a.error.trim()).collect();
    eprintln!(
        "{} attempts, {} acknowledged ({} begun after the kill), {} failed; first failures: {:#?}",
        attempts.len(),
        attempts.iter().filter(|a| a.ok).count(),
        attempts.iter().filter(|a| a.ok && a.started > killed_at).count(),
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        recovered,
        "the two survivors did not take writes after the leader's kill\nfailures: {failed:#?}\n{}",
        c.logs()
    );

    let acknowledged: BTreeSet<u64> = attempts.iter().filter(|a| a.ok).map(|a| a.id).collect();
    let attempted: BTreeSet<u64> = attempts.iter().map(|a| a.id).collect();
    let rows = |i: usize| -> BTreeSet<u64> {
        c.query(i, "SELECT id FROM w ORDER BY id")
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    };
    let (a, b) = (rows(others[0]), rows(others[1]));
    assert_eq!(a, b, "the survivors disagree\n{}", c.logs());
    let lost: Vec<&u64> = acknowledged.difference(&a).collect();
    assert!(lost.is_empty(), "acknowledged rows lost: {lost:?}\n{}", c.logs());
    let invented: Vec<&u64> = a.difference(&attempted).collect();
    assert!(invented.is_empty(), "rows never written: {invented:?}");
    // The survivors have a leader among themselves.
    let new_leader = c.leader(others[0]);
    assert!(
        new_leader.is_some_and(|l| others.contains(&l)),
        "{new_leader:?}: {:?}",
        c.node_status(others[0])
    );
}

#[test]
fn a_restarted_node_catches_up() {
    let mut c = Cluster::start(3, &["--snapshot-logs", "20"]);
    c.query(0, "CREATE TABLE r (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
    c.query(0, "INSERT INTO r VALUES (0, 'before')");
    assert_eq!(c.query(2, "SELECT count(*) FROM r"), "1");
    c.nodes[2].kill9();

    // 200 rows through node 1, one statement (one log entry) each.
    let file = c.tmp.path().join("rows.sql");
    let sql: String = (1..=200)
        .map(|i| format!("INSERT INTO r VALUES ({i}, 'row {i}');\n"))
        .collect();
    std::fs::write(&file, sql).unwrap();
    let out = psql_file(c.nodes[0].port, &c.pki.certs, &c.home, &file);
    assert!(out.status.success(), "{}\n{}", text(&out), c.logs());
    let want = c.query(0, "SELECT id, v FROM r ORDER BY id");
    assert_eq!(want.lines().count(), 201);
    assert_eq!(c.query(1, "SELECT id, v FROM r ORDER BY id"), want);

    let restarted = Instant::now();
    c.nodes[2].spawn();
    let mut last = String::new();
    let caught_up = wait_until(Duration::from_secs(20), || {
        let out = c.psql(2, "SELECT id, v FROM r ORDER BY id");
        last = text(&out);
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == want
    });
    assert!(
        caught_up,
        "node 3 did not catch up within 20 s; last answer: {}\n{}",
        tail(&last, 5),
        c.logs()
    );
    let log = c.nodes[2].log_text();
    assert!(log.contains("node restarted with its Raft state"), "{}", tail(&log, 30));
    eprintln!(
        "node 3 caught up in {:?} ({})",
        restarted.elapsed(),
        if log.contains("installed a snapshot") {
            "by a snapshot"
        } else {
            "from the log"
        }
    );
    // It is live again, and takes writes.
    assert!(wait_until(Duration::from_secs(10), || {
        c.node_ls(0).iter().filter(|r| r[2] == "t").count() == 3
    }));
    c.query(2, "INSERT INTO r VALUES (201, 'after')");
    assert_eq!(c.query(0, "SELECT v FROM r WHERE id = 201"), "after");
}

#[test]
fn a_node_joining_late_gets_a_snapshot() {
    let mut c = Cluster::start(3, &["--snapshot-logs", "20"]);
    c.query(0, "CREATE TABLE s (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
    let file = c.tmp.path().join("rows.sql");
    let sql: String = (1..=400)
        .map(|i| format!("INSERT INTO s VALUES ({i}, 'row {i}');\n"))
        .collect();
    std::fs::write(&file, sql).unwrap();
    let out = psql_file(c.nodes[1].port, &c.pki.certs, &c.home, &file);
    assert!(out.status.success(), "{}\n{}", text(&out), c.logs());
    let want = c.query(0, "SELECT id, v FROM s ORDER BY id");
    assert_eq!(want.lines().count(), 400);
    // Every member has everything, so the leader may drop its old log entries.
    assert!(wait_until(Duration::from_secs(10), || {
        c.nodes[0].log_text().contains("built a snapshot")
    }));

    let mut n4 = c.outsider("n4", &c.pki.certs);
    n4.spawn();
    c.nodes.push(n4);
    c.wait_formed(0, 4);
    assert_eq!(c.query(3, "SELECT id, v FROM s ORDER BY id"), want);
    let log = c.nodes[3].log_text();
    assert!(
        log.contains("joined the cluster") && log.contains("installed a snapshot"),
        "{}",
        tail(&log, 30)
    );
    c.query(3, "INSERT INTO s VALUES (401, 'from node 4')");
    assert_eq!(c.query(2, "SELECT v FROM s WHERE id = 401"), "from node 4");
}

/// A transaction with DDL commits through the log (regression: the result
/// fingerprint used `sqlite3_changes()`, which after DDL still holds the
/// connection's last DML count, different on every replica: 40001 always).
#[test]
fn ddl_inside_a_transaction_commits() {
    let c = Cluster::start(3, &[]);
    c.query(
        0,
        "BEGIN; CREATE TABLE d (id INTEGER PRIMARY KEY); INSERT INTO d VALUES (1); COMMIT",
    );
    c.query(1, "CREATE TABLE e (id INTEGER PRIMARY KEY); INSERT INTO e VALUES (1)");
    assert_eq!(c.query(2, "SELECT count(*) FROM d"), "1");
    assert_eq!(c.query(2, "SELECT count(*) FROM e"), "1");
}

/// `start-single-node` is a cluster of one: a node asking to join it is
/// refused with the reason, and it keeps serving alone. (Its reads skip the
/// Raft read index, which is sound only because no other node can ever vote.)
#[test]
fn a_single_node_takes_no_other_node() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::create(tmp.path(), "alone");
    let home = tmp.path().join("home");
    let mut alone = Node::single(tmp.path(), "alone", free_port(), &pki.certs);
    alone.spawn();
    let out = psql_at(alone.port, &pki.certs, &home, "CREATE TABLE t (id INTEGER PRIMARY KEY)");
    assert!(out.status.success(), "{}", text(&out));
    let mut other = Node::new(tmp.path(), "other", free_port(), &pki.certs, &alone.addr(), &[]);
    other.spawn();
    let refused = wait_until(Duration::from_secs(20), || {
        other.log_text().contains("takes no other nodes")
    });
    assert!(refused, "{}", tail(&other.log_text(), 30));
    assert!(
        alone.log_text().contains("refused a node that asked to join"),
        "{}",
        tail(&alone.log_text(), 30)
    );
    // Reads see every acknowledged write, one connection after another.
    for i in 1..=20 {
        let out = psql_at(alone.port, &pki.certs, &home, &format!("INSERT INTO t VALUES ({i})"));
        assert!(out.status.success(), "{}", text(&out));
        let out = psql_at(alone.port, &pki.certs, &home, "SELECT count(*) FROM t");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            i.to_string(),
            "{}",
            text(&out)
        );
    }
    let out = psql_at(alone.port, &pki.certs, &home, "SHOW NODES");
    let nodes = String::from_utf8_lossy(&out.stdout);
    assert_eq!(nodes.lines().filter(|l| !l.is_empty()).count(), 1, "{nodes}");
    assert!(
        other.running(),
        "the refused node waits (it may be meant for another cluster)"
    );
}
