//! The HTTPS console with real peers: curl (by DNS name and by IP, a foreign
//! CA, plain HTTP redirects, login, cookie flags, logout, refusals,
//! brute-force slowing), psql (a console session made over SQL),
//! `promtool check metrics`, and headless Chromium driven over the DevTools
//! protocol (login form, certificates page, screenshots kept under
//! `target/test-artifacts/`). Every wait is bounded; every child process is
//! killed when its test ends.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use moat_pki::ops::{self, CreateOptions};
use moat_pki::profile::Profile;
use moat_server::db::Database;
use moat_server::http::throttle::ThrottleConfig;
use moat_server::http::{self, ConsoleOptions, HttpContext, HttpServer};
use moat_server::users;
use moat_tls::principal::IdentityPolicy;
use moat_tls::store::{CertStore, StoreRole};
use support::{run, NodeDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "correct horse battery";

struct Console {
    dir: NodeDir,
    store: Arc<CertStore>,
    db: Arc<Database>,
    server: HttpServer,
}

impl Console {
    async fn start() -> Console {
        Self::start_with(ConsoleOptions::default()).await
    }

    async fn start_with(opts: ConsoleOptions) -> Console {
        let dir = NodeDir::new(&["root"]);
        let store = CertStore::open(&dir.certs(), StoreRole::Node, IdentityPolicy::default()).unwrap();
        let db = Arc::new(Database::open(&dir.store()).unwrap());
        {
            let conn = db.connect().unwrap();
            for sql in [
                format!("CREATE USER alice WITH PASSWORD '{PASSWORD}'"),
                format!("CREATE USER bob WITH PASSWORD '{PASSWORD}'"),
                "CREATE USER carol".to_string(),
            ] {
                users::execute(&conn, &users::parse(&sql).unwrap().unwrap(), users::ROOT).unwrap();
            }
        }
        let ctx = HttpContext {
            store: store.clone(),
            db: db.clone(),
            node_id: 1,
            started_at: time::OffsetDateTime::now_utc(),
            sql_addr: "127.0.0.1:26257".parse().unwrap(),
            cluster: None,
        };
        let server = http::serve_with(ctx, "127.0.0.1:0".parse().unwrap(), opts)
            .await
            .unwrap();
        Console { dir, store, db, server }
    }

    fn port(&self) -> u16 {
        self.server.addr.port()
    }

    fn ca(&self) -> String {
        self.dir.ca_crt().display().to_string()
    }

    /// `https://localhost:PORT` (with `--resolve` added by [`Console::curl`]).
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port())
    }

    async fn curl(&self, args: &[&str]) -> Curl {
        let resolve = format!("localhost:{}:127.0.0.1", self.port());
        let mut all = vec!["--resolve", &resolve];
        all.extend_from_slice(args);
        curl(&all).await
    }

    /// A request with the CA and optionally a session cookie.
    async fn get(&self, path: &str, cookie: Option<&str>) -> Curl {
        let url = self.url(path);
        let ca = self.ca();
        let mut args = vec!["--cacert", &ca];
        let c;
        if let Some(v) = cookie {
            c = format!("moat_session={v}");
            args.extend(["--cookie", &c]);
        }
        args.push(&url);
        self.curl(&args).await
    }

    async fn login(&self, user: &str, password: &str, next: &str) -> Curl {
        let url = self.url("/login");
        let ca = self.ca();
        let (u, p, n) = (
            format!("username={user}"),
            format!("password={password}"),
            format!("next={next}"),
        );
        self.curl(&[
            "--cacert",
            &ca,
            "--data-urlencode",
            &u,
            "--data-urlencode",
            &p,
            "--data-urlencode",
            &n,
            &url,
        ])
        .await
    }
}

/// What curl returned.
#[derive(Debug)]
struct Curl {
    code: Option<i32>,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    stderr: String,
}

impl Curl {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `curl -sS -i ARGS`, with every header and the body parsed.
async fn curl(args: &[&str]) -> Curl {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "20"]).args(args);
    let out = run(&mut cmd, Duration::from_secs(30)).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Curl {
        code: out.status.code(),
        status,
        headers,
        body: body.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|p| p.trim().strip_prefix("moat_session="))
        .expect("a moat_session cookie")
        .to_string()
}

fn have(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_by_name_and_ip_and_a_foreign_ca_is_refused() {
    let c = Console::start().await;
    let r = c.get("/health", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"), "{r:?}");
    for h in ["x-content-type-options", "x-frame-options", "content-security-policy"] {
        assert!(r.header(h).is_some(), "missing {h}: {r:?}");
    }

    let by_ip = format!("https://127.0.0.1:{}/health", c.port());
    let r = curl(&["--cacert", &c.ca(), &by_ip]).await;
    assert_eq!(r.status, 200, "by IP: {r:?}");

    // Another cluster's CA (same subject, another key) must not verify us.
    let foreign = support::other_ca(&c.dir.path().join("other")).display().to_string();
    let r = curl(&["--cacert", &foreign, &by_ip]).await;
    assert_eq!(r.code, Some(60), "a foreign CA must fail verification: {r:?}");
    assert!(r.stderr.contains("certificate"), "{}", r.stderr);
    // And a name the certificate does not carry.
    let wrong_name = format!("https://console.example:{}/health", c.port());
    let resolve = format!("console.example:{}:127.0.0.1", c.port());
    let r = curl(&["--cacert", &c.ca(), "--resolve", &resolve, &wrong_name]).await;
    assert_eq!(r.code, Some(60), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_redirected_except_health() {
    let c = Console::start().await;
    let port = c.port();
    let r = curl(&[&format!("http://127.0.0.1:{port}/certificates/local?x=1")]).await;
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some(format!("https://127.0.0.1:{port}/certificates/local?x=1").as_str())
    );
    let r = c.curl(&[&format!("http://localhost:{port}/")]).await;
    assert_eq!(
        r.header("location"),
        Some(format!("https://localhost:{port}/").as_str()),
        "{r:?}"
    );
    // A POST stays a POST (308), and nothing is served in clear.
    let r = curl(&["-d", "username=alice", &format!("http://127.0.0.1:{port}/login")]).await;
    assert_eq!(r.status, 308, "{r:?}");
    assert!(!r.body.contains("Sign in"));
    let r = curl(&[&format!("http://127.0.0.1:{port}/health")]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"), "{r:?}");
    // curl follows the redirect to HTTPS and verifies the node.
    let r = c
        .curl(&["-L", "--cacert", &c.ca(), &format!("http://localhost:{port}/login")])
        .await;
    assert!(r.body.contains("Sign in"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_cookie_flags_pages_and_logout() {
    let c = Console::start().await;
    // Without a session: the JSON API answers 401, pages go to the login form.
    for path in ["/_status/certificates", "/_status/nodes", "/_status/certificates/local"] {
        let r = c.get(path, None).await;
        assert_eq!(r.status, 401, "{path}: {r:?}");
        assert!(r.json()["error"].as_str().unwrap().contains("session"));
    }
    let r = c.get("/certificates/local", None).await;
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/login?next=/certificates/local"));
    let r = c.get("/", Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")).await;
    assert_eq!(r.status, 303, "a made-up session id is refused: {r:?}");
    let r = c.get("/login?next=/certificates/local", None).await;
    assert!(
        r.body.contains("name=\"next\" value=\"/certificates/local\""),
        "{}",
        r.body
    );

    // Wrong password, unknown user, user without a password: same answer.
    for (u, p) in [("alice", "nope"), ("nobody", PASSWORD), ("carol", PASSWORD)] {
        let r = c.login(u, p, "/").await;
        assert_eq!(r.status, 401, "{u}: {r:?}");
        assert!(r.body.contains("wrong user name or password"));
        assert!(r.header("set-cookie").is_none());
    }

    let r = c.login("Alice", PASSWORD, "/certificates/local").await;
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/certificates/local"));
    let set = r.header("set-cookie").expect("a session cookie").to_string();
    for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/", "Expires="] {
        assert!(
            set.split(';').any(|p| p.trim().starts_with(flag)),
            "{flag} missing: {set}"
        );
    }
    let max_age: i64 = set
        .split(';')
        .find_map(|p| p.trim().strip_prefix("Max-Age="))
        .and_then(|v| v.parse().ok())
        .expect("Max-Age");
    assert!((3590..=3600).contains(&max_age), "1 h session: {set}");
    let token = cookie_value(&set);
    assert_eq!(token.len(), 43, "256 random bits, base64url");

    let r = c.get("/_status/certificates", Some(&token)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    assert_eq!(j["node_id"], 1);
    assert_eq!(j["reload"]["outcome"], "ok");
    let certs = j["certificates"].as_array().unwrap();
    let node = certs.iter().find(|c| c["file"] == "node.crt").expect("node.crt listed");
    assert_eq!(node["status"], "ok");
    assert_eq!(node["usage"], "Node");
    assert_eq!(node["sans"], serde_json::json!(["localhost", "127.0.0.1"]));
    assert_eq!(node["key_file"], "node.key");
    assert!(node["days_left"].as_i64().unwrap() > 1000);
    assert!(certs.iter().any(|c| c["file"] == "ca.crt" && c["usage"] == "CA"));
    assert!(certs
        .iter()
        .any(|c| c["file"] == "client.root.crt" && c["user"] == "root"));

    let r = c.get("/_status/nodes", Some(&token)).await;
    let j = r.json();
    assert_eq!(j["nodes"][0]["id"], 1);
    assert_eq!(j["nodes"][0]["live"], true);
    assert!(j["nodes"][0]["version"].as_str().unwrap().starts_with("moat "));

    let r = c.get("/certificates/local", Some(&token)).await;
    assert_eq!(r.status, 200);
    for text in [
        "node.crt",
        "ca.crt",
        "client.root.crt",
        "ECDSA P-256",
        "Loaded at start",
        "signed in as <b>alice</b>",
    ] {
        assert!(r.body.contains(text), "{text} missing from the certificates page");
    }
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = c.get("/", Some(&token)).await;
    assert!(r.body.contains("Node overview") && r.body.contains("n1"), "{}", r.body);

    // A cross-site login post is refused.
    let url = c.url("/login");
    let body = format!("username=alice&password={PASSWORD}");
    let r = c
        .curl(&[
            "--cacert",
            &c.ca(),
            "-H",
            "Origin: https://evil.example",
            "-d",
            &body,
            &url,
        ])
        .await;
    assert_eq!(r.status, 403, "{r:?}");

    // Logout ends the session and removes the cookie.
    let url = c.url("/logout");
    let cookie = format!("moat_session={token}");
    let r = c
        .curl(&["--cacert", &c.ca(), "-X", "POST", "--cookie", &cookie, &url])
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/login"));
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    let r = c.get("/_status/certificates", Some(&token)).await;
    assert_eq!(r.status, 401, "the session is over: {r:?}");

    // Dropping the user ends their sessions too.
    let r = c.login("bob", PASSWORD, "/").await;
    let bob = cookie_value(r.header("set-cookie").unwrap());
    assert_eq!(c.get("/_status/nodes", Some(&bob)).await.status, 200);
    let conn = c.db.connect().unwrap();
    users::execute(&conn, &users::parse("DROP USER bob").unwrap().unwrap(), users::ROOT).unwrap();
    assert_eq!(c.get("/_status/nodes", Some(&bob)).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_is_slowed_per_user_and_per_address() {
    let c = Console::start_with(ConsoleOptions {
        throttle: ThrottleConfig {
            free_per_user: 3,
            free_per_address: 100,
            base: Duration::from_secs(2),
            ..ThrottleConfig::default()
        },
        ..ConsoleOptions::default()
    })
    .await;
    for _ in 0..2 {
        assert_eq!(c.login("alice", "guess", "/").await.status, 401);
    }
    // The third wrong password blocks the user for 2 s ...
    let r = c.login("alice", "guess", "/").await;
    assert_eq!(r.status, 429, "{r:?}");
    assert!(
        r.body
            .contains("too many failed login attempts for this user; retry in 2 s"),
        "{}",
        r.body
    );
    assert_eq!(r.header("retry-after"), Some("2"));
    // ... during which even the right password is refused unchecked.
    let r = c.login("alice", PASSWORD, "/").await;
    assert_eq!(r.status, 429, "{r:?}");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let r = c.login("alice", PASSWORD, "/").await;
    assert_eq!(r.status, 303, "after the delay the right password works: {r:?}");

    // Per address: a client trying several users.
    let c = Console::start_with(ConsoleOptions {
        throttle: ThrottleConfig {
            free_per_user: 100,
            free_per_address: 2,
            base: Duration::from_secs(2),
            ..ThrottleConfig::default()
        },
        ..ConsoleOptions::default()
    })
    .await;
    assert_eq!(c.login("alice", "guess", "/").await.status, 401);
    let r = c.login("bob", "guess", "/").await;
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.body.contains("from your address"), "{}", r.body);
    assert_eq!(c.login("carol", "guess", "/").await.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_certificate_is_served_after_a_reload() {
    let c = Console::start().await;
    let resolve = format!("console.example:{}:127.0.0.1", c.port());
    let url = format!("https://console.example:{}/health", c.port());
    let ui_ca = c.dir.certs().join("ca-ui.crt").display().to_string();
    // node.crt does not name console.example.
    let r = curl(&["--cacert", &c.ca(), "--resolve", &resolve, &url]).await;
    assert_eq!(r.code, Some(60), "{r:?}");

    let o = CreateOptions::new(c.dir.certs(), c.dir.path().join("ca-ui.key"));
    ops::create_ca(&o, Profile::UiCa, false).unwrap();
    ops::create_ui(&o, &["console.example".into()]).unwrap();
    c.store.reload("test").unwrap();
    let r = curl(&["--cacert", &ui_ca, "--resolve", &resolve, &url]).await;
    assert_eq!(r.status, 200, "ui.crt from ca-ui.crt is served after the reload: {r:?}");
    // The old name now fails: the console presents ui.crt only.
    let r = c.get("/health", None).await;
    assert_eq!(r.code, Some(60), "{r:?}");

    let login = format!("https://console.example:{}/login", c.port());
    let up = format!("username=alice&password={PASSWORD}");
    let r = curl(&["--cacert", &ui_ca, "--resolve", &resolve, "-d", &up, &login]).await;
    let token = cookie_value(r.header("set-cookie").expect("logged in"));
    let cookie = format!("moat_session={token}");
    let api = format!("https://console.example:{}/_status/certificates", c.port());
    let r = curl(&["--cacert", &ui_ca, "--resolve", &resolve, "--cookie", &cookie, &api]).await;
    let j = r.json();
    let ui = j["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["file"] == "ui.crt")
        .expect("ui.crt listed");
    assert_eq!(ui["usage"], "UI");
    assert_eq!(j["reload"]["generation"], 2);
    assert_eq!(j["reload"]["successes"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_session_over_sql_for_root_only() {
    if !have("psql") {
        eprintln!("SKIPPED: psql is not installed (scripts/test.sh installs postgresql-client)");
        return;
    }
    let c = Console::start().await;
    // A SQL node on the same certs directory and store.
    let node = moat_server::node::start(c.dir.node_config()).await.unwrap();
    let psql = |user: &str, sql: &str| {
        let cert = if user == "root" { Some("root") } else { None };
        let mut cmd = c.dir.psql(node.sql_addr.port(), user, cert, "");
        cmd.args(["-c", sql]).env("PGPASSWORD", PASSWORD);
        async move { run(&mut cmd, Duration::from_secs(30)).await }
    };
    let out = psql("root", "SELECT moat_create_console_session('alice', '10m')").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cookie = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let token = cookie.strip_prefix("moat_session=").expect("a cookie").to_string();
    let r = c.get("/", Some(&token)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("signed in as <b>alice</b>"));

    let out = psql("alice", "SELECT moat_create_console_session('alice')").await;
    assert!(!out.status.success(), "only root may create console sessions");
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_in_prometheus_text_format() {
    let c = Console::start().await;
    // Things to count: a refused handshake (foreign CA) and a login.
    let foreign = support::other_ca(&c.dir.path().join("other")).display().to_string();
    let _ = curl(&["--cacert", &foreign, &format!("https://127.0.0.1:{}/health", c.port())]).await;
    assert_eq!(c.login("alice", PASSWORD, "/").await.status, 303);
    c.store.reload("test").unwrap();

    // Unauthenticated, as in CockroachDB. The failure is counted just after
    // the client hangs up: wait for it.
    let mut text = String::new();
    for _ in 0..50 {
        let r = c.get("/_status/vars", None).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        text = r.body;
        if text.contains("security_tls_handshake_failures_total{listener=\"http\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for name in [
        "security_certificate_expiration_ca ",
        "security_certificate_expiration_node ",
        "security_certificate_expiration_client_ca ",
        "security_certificate_ttl_node ",
        "security_certificate_ttl_ui ",
        "security_certificate_reloads_total{result=\"success\"}",
        "security_tls_handshake_failures_total{listener=\"http\",reason=",
        "http_connections_open{kind=\"https\"}",
        "http_auth_successes_total{method=\"password\"}",
        "# HELP security_certificate_expiration_node ",
        "# TYPE security_certificate_reloads_total counter",
    ] {
        assert!(text.contains(name), "{name} missing from /_status/vars:\n{text}");
    }
    let node_expiry: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("security_certificate_expiration_node "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(node_expiry > time::OffsetDateTime::now_utc().unix_timestamp() as f64);

    if !have("promtool") {
        eprintln!("SKIPPED promtool check: promtool is not installed (Debian package prometheus; scripts/test.sh installs it)");
        return;
    }
    let file = c.dir.path().join("vars.txt");
    std::fs::write(&file, &text).unwrap();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.args(["-c", &format!("promtool check metrics < {}", file.display())]);
    let out = run(&mut cmd, Duration::from_secs(30)).await;
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------ the browser

/// Headless Chromium, killed on drop.
struct Browser {
    child: std::process::Child,
    _profile: tempfile::TempDir,
    devtools_port: u16,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts Chromium trusting only the certificate whose SPKI hash is given.
    async fn start(spki_sha256_b64: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1360,900",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--ignore-certificate-errors-spki-list={spki_sha256_b64}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        let port_file = profile.path().join("DevToolsActivePort");
        let mut browser = Browser {
            child,
            _profile: profile,
            devtools_port: 0,
        };
        for _ in 0..300 {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
            {
                browser.devtools_port = port;
                return browser;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromium did not open its DevTools port within 30 s");
    }

    /// The WebSocket URL of the first page.
    async fn page_ws(&self) -> String {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.devtools_port))
            .await
            .unwrap();
        let req = format!(
            "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.devtools_port
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        // Chromium keeps the connection open: read the head, then
        // Content-Length bytes.
        let body = tokio::time::timeout(Duration::from_secs(10), async {
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = tcp.read(&mut buf).await.unwrap();
                assert!(n > 0, "DevTools closed the connection");
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse().ok())
                        .expect("Content-Length");
                    if body.len() >= len {
                        return body[..len].to_string();
                    }
                }
            }
        })
        .await
        .expect("DevTools /json/list hung");
        let list: serde_json::Value = serde_json::from_str(&body).expect("DevTools target list");
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string()
    }
}

/// A minimal DevTools-protocol client over a WebSocket (RFC 6455: masked
/// text frames out, unmasked frames in).
struct Cdp {
    tcp: tokio::net::TcpStream,
    next_id: u64,
}

impl Cdp {
    async fn connect(ws_url: &str) -> Cdp {
        let rest = ws_url.strip_prefix("ws://").expect("ws:// URL");
        let (hostport, path) = rest.split_once('/').unwrap();
        let mut tcp = tokio::net::TcpStream::connect(hostport).await.unwrap();
        let req = format!(
            "GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut b))
                .await
                .expect("WebSocket upgrade hung")
                .unwrap();
            head.push(b[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
        Cdp { tcp, next_id: 1 }
    }

    async fn send_text(&mut self, text: &str) {
        let data = text.as_bytes();
        let mut frame = vec![0x81u8];
        match data.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x5au8, 0x17, 0xc3, 0x88];
        frame.extend_from_slice(&mask);
        frame.extend(data.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&frame).await.unwrap();
    }

    async fn recv_text(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.tcp.read_exact(&mut h).await.unwrap();
            let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                let mut l = [0u8; 2];
                self.tcp.read_exact(&mut l).await.unwrap();
                len = u64::from(u16::from_be_bytes(l));
            } else if len == 127 {
                let mut l = [0u8; 8];
                self.tcp.read_exact(&mut l).await.unwrap();
                len = u64::from_be_bytes(l);
            }
            let mut payload = vec![0u8; len as usize];
            self.tcp.read_exact(&mut payload).await.unwrap();
            match opcode {
                0x8 => panic!("DevTools closed the WebSocket"),
                0x9 | 0xa => continue,
                _ => message.extend_from_slice(&payload),
            }
            if fin {
                return String::from_utf8(message).unwrap();
            }
        }
    }

    /// Calls a method and returns its `result` (events are skipped).
    async fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = serde_json::json!({ "id": id, "method": method, "params": params });
        self.send_text(&msg.to_string()).await;
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let v: serde_json::Value = serde_json::from_str(&self.recv_text().await).unwrap();
                if v["id"] == id {
                    if let Some(e) = v.get("error") {
                        panic!("{method} failed: {e}");
                    }
                    return v["result"].clone();
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{method}: no answer within 30 s"))
    }

    async fn eval(&mut self, js: &str) -> serde_json::Value {
        let r = self
            .call(
                "Runtime.evaluate",
                serde_json::json!({ "expression": js, "returnByValue": true }),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Waits until `js` is true (bounded).
    async fn wait_for(&mut self, js: &str, what: &str) {
        for _ in 0..150 {
            if self.eval(js).await == serde_json::Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let at = self
            .eval("location.href + ' ' + document.title + ': ' + (document.body ? document.body.innerText : '')")
            .await;
        panic!("timed out waiting for {what}; the page is {at}");
    }

    /// A full-page PNG.
    async fn screenshot(&mut self) -> Vec<u8> {
        let height = self
            .eval("Math.ceil(document.documentElement.scrollHeight)")
            .await
            .as_u64()
            .unwrap_or(900)
            .clamp(600, 6000);
        self.call(
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({ "width": 1360, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await;
        let r = self
            .call("Page.captureScreenshot", serde_json::json!({ "format": "png" }))
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .unwrap()
    }
}

fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// base64(SHA-256(SubjectPublicKeyInfo)) of the first certificate of a PEM file.
fn spki_hash(pem_file: &Path) -> String {
    let pem = std::fs::read(pem_file).unwrap();
    let der = moat_pki::inspect::parse_cert_pem(pem_file, &pem).unwrap().remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.tbs_certificate.subject_pki.raw);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_logs_in_and_shows_the_certificates() {
    if !have("chromium") {
        eprintln!("SKIPPED: chromium is not installed (Debian package chromium; scripts/test.sh installs it)");
        return;
    }
    let c = Console::start().await;
    // Something for every colour: a client certificate expiring in 12 days,
    // a broken one (client certificates may be broken without stopping a
    // load), a CRL revoking a third; then a refused reload (a broken ui.crt).
    let mut o = CreateOptions::new(c.dir.certs(), c.dir.ca_key());
    o.lifetime = Some(time::Duration::days(12));
    ops::create_client(&o, "alice", false).unwrap();
    ops::create_client(&CreateOptions::new(c.dir.certs(), c.dir.ca_key()), "dave", false).unwrap();
    ops::revoke(&ops::RevokeOptions::new(
        c.dir.certs(),
        c.dir.ca_key(),
        ops::RevokeTarget::Cert(c.dir.certs().join("client.dave.crt")),
    ))
    .unwrap();
    std::fs::write(
        c.dir.certs().join("client.mallory.crt"),
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    c.store.reload("test").unwrap();
    std::fs::write(c.dir.certs().join("ui.crt"), "-----BEGIN CERTIFICATE-----\n").unwrap();
    assert!(c.store.reload("test").is_err());

    let browser = Browser::start(&spki_hash(&c.dir.certs().join("node.crt"))).await;
    let mut cdp = Cdp::connect(&browser.page_ws().await).await;
    cdp.call("Page.enable", serde_json::json!({})).await;
    let login = c.url("/login?next=/certificates/local");
    cdp.call("Page.navigate", serde_json::json!({ "url": login })).await;
    cdp.wait_for(
        "document.readyState === 'complete' && !!document.getElementById('password')",
        "the login form",
    )
    .await;
    let fill = format!(
        "document.getElementById('username').value = 'alice';\
         document.getElementById('password').value = {};\
         document.querySelector('form[action=\"/login\"]').submit(); true",
        serde_json::Value::String(PASSWORD.into())
    );
    cdp.eval(&fill).await;
    cdp.wait_for(
        "location.pathname === '/certificates/local' && document.readyState === 'complete'",
        "the certificates page after login",
    )
    .await;
    let dom = cdp.eval("document.documentElement.outerHTML").await;
    let dom = dom.as_str().unwrap();
    for text in [
        "node.crt",
        "ca.crt",
        "client.alice.crt",
        "expires soon",
        "client.mallory.crt",
        "broken",
        "revoked by ca.crl",
        "ca.crl",
        "The last reload was refused",
        "ui.crt",
        "signed in as <b>alice</b>",
    ] {
        assert!(dom.contains(text), "{text} missing from the page Chromium shows");
    }
    // The cookie is HttpOnly: scripts cannot read it.
    assert_eq!(cdp.eval("document.cookie").await, serde_json::json!(""));

    let dir = artifacts_dir();
    let png = cdp.screenshot().await;
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    std::fs::write(dir.join("console-certificates.png"), &png).unwrap();
    std::fs::write(dir.join("console-certificates.html"), dom).unwrap();

    cdp.call("Page.navigate", serde_json::json!({ "url": c.url("/") }))
        .await;
    cdp.wait_for(
        "location.pathname === '/' && document.readyState === 'complete' && document.title.startsWith('Node overview')",
        "the overview",
    )
    .await;
    let png = cdp.screenshot().await;
    assert!(png.len() > 10_000);
    std::fs::write(dir.join("console-overview.png"), &png).unwrap();

    // Logging out from the page's button lands on the login form.
    cdp.eval("document.querySelector('form[action=\"/logout\"]').submit(); true")
        .await;
    cdp.wait_for(
        "location.pathname === '/login' && document.readyState === 'complete'",
        "the login page after logout",
    )
    .await;
    let png = cdp.screenshot().await;
    std::fs::write(dir.join("console-login.png"), &png).unwrap();
    drop(browser);
}
