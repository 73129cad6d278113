//! Where to connect and with what: `--host`, `--user`, `--database`,
//! `--certs-dir` and their environment variables, or a `postgresql://` URL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// The default SQL port.
pub const DEFAULT_PORT: u16 = 26257;

/// A resolved connection target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host name or IP address (no brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// SQL user (normalised).
    pub user: String,
    /// Database.
    pub database: String,
    /// A password given in the URL.
    pub password: Option<String>,
    /// The certs directory.
    pub certs_dir: PathBuf,
    /// The CA file the server is verified against (sslrootcert, else `<certs-dir>/ca.crt`).
    pub ca_file: PathBuf,
    /// The client certificate and key (sslcert/sslkey, else `<certs-dir>/client.<user>.crt` and `.key`).
    pub client_cert: PathBuf,
    /// The key of `client_cert`.
    pub client_key: PathBuf,
    /// An extra CRL file (sslcrl).
    pub crl: Option<PathBuf>,
    /// True when the URL named files outside the certs directory layout.
    pub explicit_files: bool,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

impl Target {
    /// `host:port` as shown in messages (`[v6]:port` for IPv6 literals).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What the flags say, before the URL (if any) overrides it.
pub struct Flags<'a> {
    pub certs_dir: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    pub user: &'a str,
    pub database: &'a str,
    pub url: Option<&'a str>,
}

/// Splits `HOST`, `HOST:PORT`, `[V6]:PORT`, `V6` or `:PORT`.
pub fn split_host_port(text: &str, default_port: u16) -> Result<(String, u16)> {
    let t = text.trim();
    let bad = || anyhow!("--host {text:?}: use HOST or HOST:PORT (IPv6 as [ADDR]:PORT)");
    let port_of = |p: &str| p.parse::<u16>().map_err(|_| bad());
    if let Some(rest) = t.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => port_of(p)?,
            None if after.is_empty() => default_port,
            None => return Err(bad()),
        };
        return Ok((h.to_string(), port));
    }
    if t.matches(':').count() > 1 {
        return Ok((t.to_string(), default_port)); // a bare IPv6 address
    }
    let (h, port) = match t.split_once(':') {
        Some((h, p)) => (h, port_of(p)?),
        None => (t, default_port),
    };
    let h = if h.is_empty() { "localhost" } else { h };
    Ok((h.to_string(), port))
}

fn percent_decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or_else(|| anyhow!("bad percent-encoding in {s:?}"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| anyhow!("bad percent-encoding in {s:?}"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow!("the URL is not valid UTF-8 once decoded"))
}

/// The parts of a `postgresql://` URL.
#[derive(Debug, Default, PartialEq)]
pub struct PgUrl {
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub sslmode: Option<String>,
    pub sslrootcert: Option<PathBuf>,
    pub sslcert: Option<PathBuf>,
    pub sslkey: Option<PathBuf>,
    pub sslcrl: Option<PathBuf>,
    pub connect_timeout: Option<u64>,
}

/// Parses `postgresql://[user[:password]@][host][:port][/dbname][?param=value&...]`.
pub fn parse_url(url: &str) -> Result<PgUrl> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
        .ok_or_else(|| anyhow!("--url must start with postgresql:// (or postgres://)"))?;
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = main.split_once('/').unwrap_or((main, ""));
    let mut u = PgUrl::default();
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hp)) => {
            let (user, pass) = match userinfo.split_once(':') {
                Some((a, b)) => (a, Some(b)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                u.user = Some(percent_decode(user)?);
            }
            u.password = pass.map(percent_decode).transpose()?;
            hp
        }
        None => authority,
    };
    if !hostport.is_empty() {
        if hostport.contains(',') {
            bail!("--url: several hosts are not supported; give one host");
        }
        let (h, p) =
            split_host_port(&percent_decode(hostport)?, 0).map_err(|_| anyhow!("--url: bad host:port {hostport:?}"))?;
        u.host = Some(h);
        u.port = (p != 0).then_some(p);
    }
    if !path.is_empty() {
        u.database = Some(percent_decode(path)?);
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v)?;
        match k {
            "sslmode" => u.sslmode = Some(v),
            "sslrootcert" => u.sslrootcert = Some(v.into()),
            "sslcert" => u.sslcert = Some(v.into()),
            "sslkey" => u.sslkey = Some(v.into()),
            "sslcrl" => u.sslcrl = Some(v.into()),
            "user" => u.user = Some(v),
            "password" => u.password = Some(v),
            "dbname" => u.database = Some(v),
            "host" => u.host = Some(v),
            "port" => u.port = Some(v.parse().map_err(|_| anyhow!("--url: port={v:?} is not a port number"))?),
            "connect_timeout" => {
                u.connect_timeout = Some(v.parse().map_err(|_| anyhow!("--url: connect_timeout={v:?} is not a number of seconds"))?)
            }
            "application_name" | "options" => {}
            other => bail!("--url: unsupported parameter {other:?} (supported: sslmode, sslrootcert, sslcert, sslkey, sslcrl, user, password, dbname, host, port, connect_timeout, application_name)"),
        }
    }
    match u.sslmode.as_deref() {
        None | Some("allow" | "prefer" | "require" | "verify-ca" | "verify-full") => {}
        Some("disable") => bail!(
            "--url: sslmode=disable is not supported: moat sql always uses TLS and verifies the server (use sslmode=verify-full)"
        ),
        Some(other) => bail!("--url: unknown sslmode {other:?} (use verify-full)"),
    }
    Ok(u)
}

fn home_relative(p: PathBuf) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => Path::new(&home).join(rest),
        _ => p,
    }
}

/// Resolves the flags (and URL) into a target.
pub fn resolve(f: &Flags<'_>) -> Result<Target> {
    let (mut host, mut port) = split_host_port(f.host, DEFAULT_PORT)?;
    if let Some(p) = f.port {
        port = p;
    }
    let mut user = f.user.to_string();
    let mut database = f.database.to_string();
    let mut password = None;
    let certs_dir = home_relative(PathBuf::from(f.certs_dir));
    let mut ca_file = None;
    let mut cert = None;
    let mut key = None;
    let mut crl = None;
    let mut timeout = Duration::from_secs(10);
    if let Some(url) = f.url {
        let u = parse_url(url)?;
        if let Some(h) = u.host {
            host = h;
        }
        if let Some(p) = u.port {
            port = p;
        }
        if let Some(x) = u.user {
            user = x;
        }
        if let Some(x) = u.database {
            database = x;
        }
        password = u.password;
        ca_file = u.sslrootcert.map(home_relative);
        cert = u.sslcert.map(home_relative);
        key = u.sslkey.map(home_relative);
        crl = u.sslcrl.map(home_relative);
        if let Some(t) = u.connect_timeout {
            timeout = Duration::from_secs(t.max(1));
        }
    }
    if key.is_some() && cert.is_none() {
        bail!("--url: sslkey is given without sslcert");
    }
    if user.is_empty() {
        bail!("no user name given: use --user (or MOAT_USER)");
    }
    // Refuse what can never be a SQL user before connecting (the message
    // escapes control characters).
    let user = moat_pki::username::normalize_and_validate(&user).map_err(|e| anyhow::anyhow!("invalid user: {e}"))?;
    let explicit_files = ca_file.is_some() || cert.is_some() || crl.is_some();
    let client_cert = cert.unwrap_or_else(|| certs_dir.join(moat_pki::layout::client_cert(&user)));
    let client_key = key.unwrap_or_else(|| moat_pki::layout::key_for(&client_cert));
    Ok(Target {
        host,
        port,
        user,
        database,
        password,
        ca_file: ca_file.unwrap_or_else(|| certs_dir.join(moat_pki::layout::CA_CERT)),
        certs_dir,
        client_cert,
        client_key,
        crl,
        explicit_files,
        connect_timeout: timeout,
    })
}

/// The directory handed to moat-tls: the certs directory itself, or, when
/// the URL names files elsewhere, a private temporary directory of symbolic
/// links laid out as a certs directory (removed when this is dropped).
pub struct CertsView {
    /// The directory to open.
    pub dir: PathBuf,
    /// Whether a client certificate is there for the user.
    pub has_client_cert: bool,
    _tmp: Option<tempfile::TempDir>,
}

/// Checks that a CA certificate is there and lays out the files.
pub fn certs_view(t: &Target) -> Result<CertsView> {
    if !t.ca_file.is_file() {
        if t.explicit_files && t.ca_file != t.certs_dir.join(moat_pki::layout::CA_CERT) {
            bail!(
                "no CA certificate at {} (sslrootcert): give the cluster's ca.crt",
                t.ca_file.display()
            );
        }
        bail!(
            "no CA certificate found in {}: copy the cluster's ca.crt there (or pass --certs-dir / MOAT_CERTS_DIR)",
            t.certs_dir.display()
        );
    }
    let has_client_cert = t.client_cert.is_file();
    if !t.explicit_files {
        return Ok(CertsView {
            dir: t.certs_dir.clone(),
            has_client_cert,
            _tmp: None,
        });
    }
    let tmp = tempfile::Builder::new()
        .prefix("moat-sql-")
        .tempdir()
        .context("cannot create a temporary directory for the URL's certificate files")?;
    let link = |src: &Path, name: &str| -> Result<()> {
        let abs = std::fs::canonicalize(src).with_context(|| format!("{}: cannot read", src.display()))?;
        std::os::unix::fs::symlink(&abs, tmp.path().join(name))
            .with_context(|| format!("cannot link {} into a temporary directory", abs.display()))
    };
    link(&t.ca_file, moat_pki::layout::CA_CERT)?;
    if has_client_cert {
        link(&t.client_cert, &moat_pki::layout::client_cert(&t.user))?;
        if t.client_key.exists() {
            link(&t.client_key, &moat_pki::layout::client_key(&t.user))?;
        }
    }
    if let Some(crl) = &t.crl {
        link(crl, "url.crl")?;
    } else if let Ok(rd) = std::fs::read_dir(&t.certs_dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".crl") && !name.starts_with('.') {
                link(&e.path(), &name)?;
            }
        }
    }
    Ok(CertsView {
        dir: tmp.path().to_path_buf(),
        has_client_cert,
        _tmp: Some(tmp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        assert_eq!(
            split_host_port("localhost", 26257).unwrap(),
            ("localhost".into(), 26257)
        );
        assert_eq!(split_host_port("db:5432", 26257).unwrap(), ("db".into(), 5432));
        assert_eq!(split_host_port("[::1]:7", 26257).unwrap(), ("::1".into(), 7));
        assert_eq!(split_host_port("::1", 26257).unwrap(), ("::1".into(), 26257));
        assert_eq!(split_host_port(":7", 26257).unwrap(), ("localhost".into(), 7));
        assert!(split_host_port("db:x", 26257).is_err());
    }

    #[test]
    fn url() {
        let u = parse_url("postgresql://bob:p%40ss@db.example.com:5433/shop?sslmode=verify-full&sslrootcert=/c/ca.crt")
            .unwrap();
        assert_eq!(u.user.as_deref(), Some("bob"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.host.as_deref(), Some("db.example.com"));
        assert_eq!(u.port, Some(5433));
        assert_eq!(u.database.as_deref(), Some("shop"));
        assert_eq!(u.sslrootcert, Some(PathBuf::from("/c/ca.crt")));
        let u = parse_url("postgres://[::1]/").unwrap();
        assert_eq!(u.host.as_deref(), Some("::1"));
        assert_eq!(u.port, None);
        assert!(parse_url("postgresql://h/?sslmode=disable")
            .unwrap_err()
            .to_string()
            .contains("always uses TLS"));
        assert!(parse_url("mysql://h").is_err());
        assert!(parse_url("postgresql://h/?foo=1").is_err());
    }
}
