//! `moat sql` against a real `moat start-single-node` process on loopback,
//! with certificates made by `moat cert`: certificate and password logins,
//! several statements per input, stdin, URLs, one-line TLS failure
//! messages, and the interactive shell in a pseudo-terminal.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ok, Scratch};

const MOAT: &str = env!("CARGO_BIN_EXE_moat");
const WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A CA, a node certificate for `localhost` only (so that 127.0.0.1 is a
/// name mismatch), and client certificates for root and alice.
fn certs(s: &Scratch) {
    ok(&s.cert_ca(&["create-ca"]));
    ok(&s.cert_ca(&["create-node", "localhost"]));
    ok(&s.cert_ca(&["create-client", "root"]));
    ok(&s.cert_ca(&["create-client", "alice"]));
}

/// A running node, killed when dropped.
struct Node {
    child: Child,
    port: u16,
}

impl Node {
    fn start(s: &Scratch) -> Node {
        let log_path = s.path().join("node.log");
        for _ in 0..3 {
            let port = free_port();
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new(MOAT)
                .args([
                    "start-single-node",
                    "--http-addr",
                    "127.0.0.1:0",
                    "--certs-dir",
                    s.certs().to_str().unwrap(),
                ])
                .args(["--store", s.path().join("store").to_str().unwrap()])
                .args(["--listen-addr", &format!("127.0.0.1:{port}")])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .expect("start the node");
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.contains("moat node serving SQL") {
                        let _ = tx.send(());
                    }
                }
            });
            let node = Node { child, port };
            if rx.recv_timeout(WAIT).is_ok() {
                return node;
            }
            drop(node); // the port was taken meanwhile, or the node failed: retry, then report
        }
        panic!(
            "the node did not start: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    fn host(&self) -> String {
        format!("localhost:{}", self.port)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a process on drop unless it was waited for.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn home(s: &Scratch) -> PathBuf {
    let h = s.path().join("home");
    std::fs::create_dir_all(&h).unwrap();
    h
}

/// A `moat sql` command with a clean environment: no MOAT_* or PGPASSWORD,
/// HOME in the scratch area, and no controlling terminal (so it can never
/// wait at a password prompt).
fn sql_cmd(s: &Scratch, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(MOAT);
    c.arg("sql").args(args);
    for v in [
        "MOAT_CERTS_DIR",
        "MOAT_HOST",
        "MOAT_PORT",
        "MOAT_USER",
        "MOAT_DATABASE",
        "MOAT_URL",
        "PGPASSWORD",
    ] {
        c.env_remove(v);
    }
    c.env("HOME", home(s));
    c.envs(env.iter().copied());
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    c
}

/// Runs `moat sql`, feeding `stdin`, within [`WAIT`].
fn sql_in(s: &Scratch, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut c = sql_cmd(s, args, env);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run moat sql");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_string();
    std::thread::spawn(move || {
        let _ = input.write_all(data.as_bytes());
    });
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = read(child.stdout.take().map(|x| Box::new(x) as Box<dyn Read + Send>));
    let err = read(child.stderr.take().map(|x| Box::new(x) as Box<dyn Read + Send>));
    let mut reaper = Reaper(Some(child));
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(st) = reaper.0.as_mut().unwrap().try_wait().unwrap() {
            reaper.0 = None;
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "moat sql {args:?} did not finish within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn sql(s: &Scratch, args: &[&str], env: &[(&str, &str)]) -> Output {
    sql_in(s, args, env, "")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn succeeds(o: &Output) -> String {
    assert!(o.status.success(), "moat sql failed: {}\n{}", err(o), out(o));
    out(o)
}

/// Exit code 1 and exactly one line on stderr containing every needle.
#[track_caller]
fn fails_with(o: &Output, needles: &[&str]) -> String {
    let e = err(o);
    assert_eq!(o.status.code(), Some(1), "exit code: stdout {} stderr {e}", out(o));
    assert_eq!(e.trim_end().lines().count(), 1, "one line expected: {e}");
    for n in needles {
        assert!(e.contains(n), "stderr {e:?} lacks {n:?}");
    }
    assert!(!e.contains("panicked"), "{e}");
    e
}

#[test]
fn certificate_logins_statements_stdin_and_urls() {
    let s = Scratch::new();
    certs(&s);
    let node = Node::start(&s);
    let certs = s.certs();
    let base = ["--certs-dir", certs.to_str().unwrap(), "--host", &node.host()];
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|x| x.to_string()).collect() };
    let run = |extra: &[&str]| {
        let a = with(extra);
        sql(&s, &a.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    };

    // root by certificate; output to a pipe is TSV.
    let o = succeeds(&run(&["-e", "SELECT 1 AS one"]));
    assert_eq!(o, "one\n1\n");

    // Several statements in one -e, and several -e: every result set and command tag.
    let o = succeeds(&run(&[
        "--format",
        "table",
        "-e",
        "CREATE USER alice",
        "-e",
        "CREATE TABLE t (id INT PRIMARY KEY, name TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b'); \
         SELECT id, name FROM t ORDER BY id; UPDATE t SET name = 'c' WHERE id = 2; SELECT count(*) AS n FROM t",
    ]));
    assert!(o.contains("CREATE TABLE\n"), "{o}");
    assert!(o.contains("INSERT 0 2\n"), "{o}");
    assert!(
        o.contains("  id | name\n  ---+-----\n  1  | a\n  2  | b\n(2 rows)\n"),
        "{o}"
    );
    assert!(o.contains("UPDATE 1\n"), "{o}");
    assert!(o.contains("  n\n  -\n  2\n(1 row)\n"), "{o}");

    // alice by her certificate.
    let o = succeeds(&run(&["--user", "alice", "-e", "SELECT current_user AS u"]));
    assert_eq!(o, "u\nalice\n");

    // A server error: exit 1, the message and SQLSTATE on one line.
    let o = run(&["-e", "SELECT * FROM no_such_table"]);
    fails_with(&o, &["ERROR: ", "no_such_table", "SQLSTATE: "]);

    // Statements from stdin (not a terminal), stopping at the first error.
    let o = sql_in(
        &s,
        &with(&["--format", "csv"]).iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
        "SELECT name FROM t\n WHERE id = 1;\n-- a comment\nSELECT 'x,y' AS v; SELECT * FROM nope;\nSELECT 3 AS never;\n",
    );
    fails_with(&o, &["nope", "SQLSTATE: "]);
    assert_eq!(out(&o), "name\na\nv\n\"x,y\"\n");

    // The environment variables, as COCKROACH_* for cockroach sql.
    let o = sql(
        &s,
        &["-e", "SELECT current_user AS u"],
        &[
            ("MOAT_CERTS_DIR", certs.to_str().unwrap()),
            ("MOAT_HOST", &node.host()),
            ("MOAT_USER", "alice"),
        ],
    );
    assert_eq!(succeeds(&o), "u\nalice\n");

    // A postgresql:// URL with explicit files (here outside any certs-dir layout).
    let files = s.path().join("files");
    std::fs::create_dir(&files).unwrap();
    for (from, to) in [
        ("ca.crt", "root.pem"),
        ("client.root.crt", "me.pem"),
        ("client.root.key", "me.key"),
    ] {
        std::fs::copy(certs.join(from), files.join(to)).unwrap();
    }
    let url = format!(
        "postgresql://root@localhost:{}/defaultdb?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        node.port,
        files.join("root.pem").display(),
        files.join("me.pem").display(),
        files.join("me.key").display()
    );
    let empty = s.path().join("empty");
    let o = sql(
        &s,
        &[
            "--certs-dir",
            empty.to_str().unwrap(),
            "--url",
            &url,
            "-e",
            "SELECT current_user AS u",
        ],
        &[],
    );
    assert_eq!(succeeds(&o), "u\nroot\n");
    // And one taking the certs directory for the files.
    let url = format!("postgresql://alice@localhost:{}/defaultdb?sslmode=require", node.port);
    let o = sql(
        &s,
        &[
            "--certs-dir",
            certs.to_str().unwrap(),
            "--url",
            &url,
            "-e",
            "SELECT current_user AS u",
        ],
        &[],
    );
    assert_eq!(succeeds(&o), "u\nalice\n");
    // sslmode=disable is refused before anything is sent.
    let url = format!("postgresql://root@localhost:{}/defaultdb?sslmode=disable", node.port);
    let o = sql(
        &s,
        &["--certs-dir", certs.to_str().unwrap(), "--url", &url, "-e", "SELECT 1"],
        &[],
    );
    fails_with(&o, &["error: ", "sslmode=disable", "always uses TLS"]);
}

#[test]
fn password_login_over_one_sided_tls() {
    let s = Scratch::new();
    certs(&s);
    let node = Node::start(&s);
    let certs = s.certs();
    let c = certs.to_str().unwrap();
    let host = node.host();
    succeeds(&sql(
        &s,
        &[
            "--certs-dir",
            c,
            "--host",
            &host,
            "-e",
            "CREATE USER bob WITH PASSWORD 'pw'",
        ],
        &[],
    ));
    assert!(!certs.join("client.bob.crt").exists());

    let bob = [
        "--certs-dir",
        c,
        "--host",
        &host,
        "--user",
        "bob",
        "-e",
        "SELECT current_user AS u",
    ];
    let o = sql(&s, &bob, &[("PGPASSWORD", "pw")]);
    assert_eq!(succeeds(&o), "u\nbob\n");

    let o = sql(&s, &bob, &[("PGPASSWORD", "not-pw")]);
    let e = fails_with(
        &o,
        &[
            "ERROR: password authentication failed for user",
            "bob",
            "SQLSTATE: 28P01",
        ],
    );
    assert!(!e.contains("not-pw"), "the password must never be shown: {e}");
    assert!(out(&o).is_empty());

    // No password and no terminal to ask on.
    let o = sql(&s, &bob, &[]);
    fails_with(&o, &["error: ", "asks user bob for a password", "PGPASSWORD"]);
}

#[test]
fn tls_failures_are_one_line_naming_the_fix() {
    let s = Scratch::new();
    certs(&s);
    let node = Node::start(&s);
    let certs = s.certs();
    let host = node.host();

    // Another cluster's CA.
    let other = Scratch::new();
    ok(&other.cert_ca(&["create-ca"]));
    ok(&other.cert_ca(&["create-client", "root"]));
    let o = sql(
        &s,
        &[
            "--certs-dir",
            other.certs().to_str().unwrap(),
            "--host",
            &host,
            "-e",
            "SELECT 1",
        ],
        &[],
    );
    let ca = other.certs().join("ca.crt");
    fails_with(
        &o,
        &[
            &format!("error: the server's certificate is not signed by {}: ", ca.display()),
            "CN=node",
        ],
    );

    // The node's certificate names localhost, not 127.0.0.1.
    let o = sql(
        &s,
        &[
            "--certs-dir",
            certs.to_str().unwrap(),
            "--host",
            &format!("127.0.0.1:{}", node.port),
            "-e",
            "SELECT 1",
        ],
        &[],
    );
    fails_with(
        &o,
        &["the server's certificate is not valid for 127.0.0.1; it names localhost"],
    );

    // Our client certificate comes from another CA: the node refuses it
    // (with TLS 1.3 the alert arrives on the first read).
    let mixed = s.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    std::fs::copy(certs.join("ca.crt"), mixed.join("ca.crt")).unwrap();
    for f in ["client.root.crt", "client.root.key"] {
        std::fs::copy(other.certs().join(f), mixed.join(f)).unwrap();
    }
    let o = sql(
        &s,
        &[
            "--certs-dir",
            mixed.to_str().unwrap(),
            "--host",
            &host,
            "-e",
            "SELECT 1",
        ],
        &[],
    );
    fails_with(
        &o,
        &[
            "the server refused our client certificate",
            "client.root.crt",
            "moat cert create-client root",
        ],
    );

    // No ca.crt.
    let empty = s.path().join("nothing-here");
    std::fs::create_dir(&empty).unwrap();
    let o = sql(
        &s,
        &[
            "--certs-dir",
            empty.to_str().unwrap(),
            "--host",
            &host,
            "-e",
            "SELECT 1",
        ],
        &[],
    );
    fails_with(&o, &[&format!("no CA certificate found in {}", empty.display())]);

    // Nothing listening.
    let closed = format!("localhost:{}", free_port());
    let o = sql(
        &s,
        &[
            "--certs-dir",
            certs.to_str().unwrap(),
            "--host",
            &closed,
            "-e",
            "SELECT 1",
        ],
        &[],
    );
    fails_with(&o, &["cannot connect to", "connection refused"]);
}

fn open_pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: 50,
        ws_col: 160,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors we then own.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: fresh descriptors from openpty.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// What the terminal has shown so far, without carriage returns.
fn screen(buf: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).replace('\r', "")
}

#[track_caller]
fn wait_for(buf: &Mutex<Vec<u8>>, needle: &str, count: usize) {
    let deadline = Instant::now() + WAIT;
    while screen(buf).matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "{needle:?} not shown; screen:\n{}",
            screen(buf)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn interactive_shell_in_a_terminal() {
    let s = Scratch::new();
    certs(&s);
    let node = Node::start(&s);
    let (master, slave) = open_pty();
    let mut cmd = sql_cmd(
        &s,
        &["--certs-dir", s.certs().to_str().unwrap(), "--host", &node.host()],
        &[],
    );
    cmd.env("TERM", "xterm")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: ioctl on the inherited descriptor 0 (the terminal) after setsid.
    unsafe {
        cmd.pre_exec(|| {
            libc::ioctl(0, libc::TIOCSCTTY as _, 0);
            Ok(())
        });
    }
    let child = cmd.spawn().expect("start moat sql in a terminal");
    drop(cmd); // closes our copies of the terminal's slave side
    let mut shell = Reaper(Some(child));
    let shown = Arc::new(Mutex::new(Vec::new()));
    let mut reader = std::fs::File::from(master.try_clone().unwrap());
    let sink = shown.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = reader.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    let mut keys = std::fs::File::from(master);
    let prompt = "root@localhost/defaultdb> ";
    let mut type_line = |line: &str| {
        keys.write_all(line.as_bytes()).unwrap();
        keys.write_all(b"\r").unwrap();
    };

    wait_for(&shown, prompt, 1);
    assert!(screen(&shown).contains("client certificate"), "{}", screen(&shown));
    type_line("SELECT 1 AS one, 'x' AS two;");
    wait_for(&shown, "(1 row)", 1);
    let text = screen(&shown);
    assert!(
        text.contains("  one | two\n  ----+----\n  1   | x\n(1 row)\n"),
        "{text}"
    );
    assert!(text.contains("Time: "), "{text}");

    // A statement over two lines, with the continuation prompt.
    wait_for(&shown, prompt, 2);
    type_line("SELECT");
    wait_for(&shown, "  -> ", 1);
    type_line("  2 AS n;");
    wait_for(&shown, "(1 row)", 2);
    assert!(
        screen(&shown).contains("  n\n  -\n  2\n(1 row)\n"),
        "{}",
        screen(&shown)
    );

    // Commands show their tag; \timing turns the time off.
    wait_for(&shown, prompt, 3);
    type_line("\\timing");
    wait_for(&shown, "Timing is off.", 1);
    type_line("CREATE TABLE k (a INT);");
    wait_for(&shown, "CREATE TABLE\n", 1);
    wait_for(&shown, prompt, 5);
    type_line("SELECT * FROM nope;");
    wait_for(&shown, "SQLSTATE: ", 1);

    type_line("\\q");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(st) = shell.0.as_mut().unwrap().try_wait().unwrap() {
            shell.0 = None;
            break st;
        }
        assert!(Instant::now() < deadline, "the shell did not quit: {}", screen(&shown));
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{}", screen(&shown));
    let history = std::fs::read_to_string(home(&s).join(".moat_sql_history")).unwrap();
    assert!(history.contains("SELECT 1 AS one, 'x' AS two;"), "{history}");
    assert!(history.contains("SELECT 2 AS n;"), "{history}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(home(&s).join(".moat_sql_history"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
