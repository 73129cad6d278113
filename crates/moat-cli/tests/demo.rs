//! `moat demo`: one command brings up a secure 3-node cluster on loopback
//! with fresh certificates, runs statements or waits, and removes every file
//! it made when it stops (after `-e`, and on SIGTERM).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Each demo run must finish well within this.
const DEADLINE: Duration = Duration::from_secs(50);

/// A private HOME (empty) and TMPDIR (where the demo makes its directory).
struct Sandbox {
    tmp: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tmp.path().join("home")).unwrap();
        std::fs::create_dir(tmp.path().join("tmp")).unwrap();
        Sandbox { tmp }
    }
    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }
    fn tmpdir(&self) -> PathBuf {
        self.tmp.path().join("tmp")
    }
    fn demo(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
        cmd.arg("demo")
            .args(args)
            .env("HOME", self.home())
            .env("TMPDIR", self.tmpdir())
            .env("MOAT_HOST", "203.0.113.1:1")
            .env("MOAT_CERTS_DIR", self.tmp.path().join("not-these-certs"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }
    /// Nothing is left behind: TMPDIR and HOME are empty again.
    #[track_caller]
    fn assert_clean(&self) {
        for dir in [self.tmpdir(), self.home()] {
            let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
            assert!(left.is_empty(), "{} still holds {left:?}", dir.display());
        }
    }
}

/// The demos of this file run one at a time: each prefers the same ports.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running `moat demo`: stopped (SIGTERM, then SIGKILL) if a test fails
/// before it ends, so no cluster outlives its test.
struct Running(Option<Child>);

impl Running {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }
    fn take(mut self) -> Child {
        self.0.take().expect("running")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else { return };
        // SAFETY: sends a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Waits for a child with a deadline (killing it when the deadline passes).
fn wait_output(running: Running, deadline: Duration) -> Output {
    let mut child = running.take();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "moat demo did not finish within {deadline:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The path after `Temporary directory (removed when the demo stops): `.
fn temp_dir_of(text: &str) -> PathBuf {
    let line = text
        .lines()
        .find_map(|l| l.split_once("Temporary directory (removed when the demo stops): "))
        .unwrap_or_else(|| panic!("no temporary directory printed:\n{text}"));
    PathBuf::from(line.1.trim())
}

/// The connection string inside `psql "..."` that starts with `prefix`.
fn psql_url(text: &str, prefix: &str) -> String {
    text.lines()
        .filter_map(|l| l.split_once("psql \""))
        .map(|(_, rest)| rest.trim_end().trim_end_matches('"').to_string())
        .find(|u| u.starts_with(prefix))
        .unwrap_or_else(|| panic!("no psql string starting with {prefix}:\n{text}"))
}

/// The `is_live` column of the first result set (fields separated by
/// `sep`) whose header has it, one value per row.
fn liveness(stdout: &str, sep: char) -> Vec<String> {
    let mut lines = stdout.lines().skip_while(|l| !l.split(sep).any(|c| c == "is_live"));
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_else(|| panic!("no SHOW NODES header in:\n{stdout}"))
        .split(sep)
        .collect();
    let col = header.iter().position(|c| *c == "is_live").unwrap();
    lines
        .take_while(|l| l.split(sep).count() == header.len())
        .map(|l| l.split(sep).nth(col).unwrap().to_string())
        .collect()
}

/// psql (unaligned, with a header) with an empty HOME, no PG* settings,
/// never prompting.
fn psql(url: &str, home: &Path, sql: &str) -> Output {
    let mut cmd = Command::new("psql");
    cmd.arg(url).args(["-X", "-w", "-A", "-c", sql]).env("HOME", home);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null())
        .output()
        .expect("psql must be installed (scripts/test.sh installs it)")
}

#[test]
fn demo_runs_statements_on_three_live_nodes_and_cleans_up() {
    let _serial = serial();
    let sb = Sandbox::new();
    let child = sb
        .demo(&[
            "--nodes",
            "3",
            "-e",
            "SHOW NODES",
            "-e",
            "CREATE TABLE t (x INT)",
            "-e",
            "INSERT INTO t VALUES (1)",
            "-e",
            "SELECT * FROM t",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run moat demo");
    let out = wait_output(Running(Some(child)), DEADLINE);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "moat demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // Three nodes, all live; the statements' results, in order.
    assert_eq!(liveness(&stdout, '\t'), ["t", "t", "t"], "{stdout}");
    let after_nodes = &stdout[stdout.find("CREATE TABLE").expect("CREATE TABLE tag")..];
    assert!(after_nodes.starts_with("CREATE TABLE\nINSERT 0 1\nx\n1\n"), "{stdout}");

    // With -e, stdout holds only results; how to connect goes to stderr.
    assert!(!stdout.contains("psql"), "{stdout}");
    let dir = temp_dir_of(&stderr);
    assert!(dir.starts_with(sb.tmpdir()), "{} is not under TMPDIR", dir.display());
    let certs = dir.join("certs");
    let root = psql_url(&stderr, "postgresql://root@127.0.0.1:");
    for part in [
        "/defaultdb?sslmode=verify-full",
        &format!("sslrootcert={}", certs.join("ca.crt").display()),
        &format!("sslcert={}", certs.join("client.root.crt").display()),
        &format!("sslkey={}", certs.join("client.root.key").display()),
    ] {
        assert!(root.contains(part), "{root} lacks {part}");
    }
    let demo = psql_url(&stderr, "postgresql://demo:");
    assert!(
        demo.ends_with(&format!(
            "/defaultdb?sslmode=verify-full&sslrootcert={}",
            certs.join("ca.crt").display()
        )),
        "{demo}"
    );
    for n in 1..=3 {
        assert!(stderr.contains(&format!("# node {n}: SQL 127.0.0.1:")), "{stderr}");
    }
    assert!(stderr.contains("console https://127.0.0.1:"), "{stderr}");
    assert!(stderr.contains("log in as demo / "), "{stderr}");

    // The CA key was kept outside the certs directory, and everything is gone.
    assert!(
        stderr.contains(&format!("(CA key {}, outside it)", dir.join("ca.key").display())),
        "{stderr}"
    );
    assert!(!dir.exists(), "{} still exists", dir.display());
    sb.assert_clean();
}

#[test]
fn demo_password_login_with_psql_then_sigterm_cleans_up() {
    let _serial = serial();
    let sb = Sandbox::new();
    let mut running = Running(Some(
        sb.demo(&["--no-shell"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run moat demo"),
    ));
    let start = Instant::now();
    // Read stdout on a thread until the demo says it is running.
    let (tx, rx) = mpsc::channel();
    let stdout = running.child().stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            text.push_str(&line);
            text.push('\n');
            if line.contains("Press Ctrl-C") {
                let _ = tx.send(text.clone());
            }
        }
        text
    });
    let banner = match rx.recv_timeout(DEADLINE) {
        Ok(b) => b,
        Err(_) => {
            let mut child = running.take();
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            let _ = child.wait();
            panic!(
                "moat demo --no-shell did not come up:\n{}\n{err}",
                reader.join().unwrap()
            );
        }
    };
    let dir = temp_dir_of(&banner);
    assert!(dir.join("certs").join("ca.crt").is_file());

    // psql, with an empty HOME (no ~/.postgresql), logs in as demo with the
    // printed password string (one-sided TLS, SCRAM with channel binding).
    let demo = psql_url(&banner, "postgresql://demo:");
    let out = psql(
        &format!("{demo}&channel_binding=require"),
        &sb.home(),
        "SELECT current_user",
    );
    assert!(
        out.status.success(),
        "psql as demo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().nth(1), Some("demo"));
    // A wrong password is refused.
    let wrong = demo.replacen("postgresql://demo:", "postgresql://demo:x", 1);
    let out = psql(&wrong, &sb.home(), "SELECT 1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Root by certificate, on the printed string, sees three live nodes.
    let root = psql_url(&banner, "postgresql://root@");
    let out = psql(&root, &sb.home(), "SHOW NODES");
    assert!(
        out.status.success(),
        "psql as root: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(liveness(&String::from_utf8_lossy(&out.stdout), '|'), ["t", "t", "t"]);

    // SIGTERM stops the nodes and removes the temporary directory.
    // SAFETY: sends a signal to our own child process.
    assert_eq!(unsafe { libc::kill(running.child().id() as i32, libc::SIGTERM) }, 0);
    let out = wait_output(running, Duration::from_secs(15));
    assert!(out.status.success(), "exit after SIGTERM: {:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("terminated; stopping the demo cluster"), "{err}");
    assert!(err.contains(&format!("removed {}", dir.display())), "{err}");
    reader.join().unwrap();
    assert!(!dir.exists(), "{} still exists", dir.display());
    sb.assert_clean();
    assert!(start.elapsed() < Duration::from_secs(60));
}

#[test]
fn demo_refuses_a_busy_port_base_in_one_line() {
    let sb = Sandbox::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let child = sb
        .demo(&["--sql-port", &port, "-e", "SELECT 1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(Running(Some(child)), DEADLINE);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: --sql-port"), "{err}");
    assert!(err.contains("is not free"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    sb.assert_clean();
}
