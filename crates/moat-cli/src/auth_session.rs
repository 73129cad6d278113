//! `moat auth-session login USER`: a console session for a SQL user, made
//! over SQL by root (CockroachDB's `cockroach auth-session login`), so a
//! certificate-authenticated root can open the console without a password.
//! It connects like `moat sql` (as root, with `client.root.crt` when the
//! certs directory has it) and runs
//! `SELECT moat_create_console_session('USER', 'LIFETIME')`.

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use futures::StreamExt;
use tokio_postgres::SimpleQueryMessage;

use crate::sql::connect::{Connector, Failure};
use crate::sql::target;

/// `moat auth-session ...`.
#[derive(Subcommand)]
pub enum AuthSessionCommand {
    /// Create a console session for USER and print its cookie (root only).
    Login(LoginArgs),
}

/// Flags of `moat auth-session login`.
#[derive(Args)]
pub struct LoginArgs {
    /// The SQL user the session is for.
    user: String,
    /// How long the session lasts (`1h`, `90m`, `1d`; at most `30d`).
    #[arg(long, default_value = "1h")]
    expire_after: String,
    /// Print only the cookie (`moat_session=...`), for scripts.
    #[arg(long)]
    only_cookie: bool,
    /// The certs directory: ca.crt, and client.root.crt/.key.
    #[arg(long, env = "MOAT_CERTS_DIR", default_value_t = default_certs_dir(), hide_env_values = true)]
    certs_dir: String,
    /// The node's SQL address: HOST or HOST:PORT.
    #[arg(long, env = "MOAT_HOST", default_value = "localhost:26257")]
    host: String,
    /// The SQL port (overrides one given in --host).
    #[arg(long, short = 'p', env = "MOAT_PORT")]
    port: Option<u16>,
    /// A postgresql:// URL to connect with instead (as root).
    #[arg(long, env = "MOAT_URL", hide_env_values = true)]
    url: Option<String>,
    /// The console's port on that host, for the example printed.
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
}

fn default_certs_dir() -> String {
    match std::env::var("HOME") {
        Ok(h) if !h.is_empty() => format!("{h}/.moat-certs"),
        _ => ".moat-certs".into(),
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Runs `moat auth-session`.
pub fn run(cmd: AuthSessionCommand) -> Result<()> {
    let AuthSessionCommand::Login(args) = cmd;
    let ttl = moat_pki::lifetime::parse_lifetime(&args.expire_after).map_err(|e| anyhow!("--expire-after: {e}"))?;
    if ttl > time::Duration::days(30) {
        bail!("--expire-after: a console session lasts at most 30d");
    }
    let user = moat_pki::username::normalize_and_validate(&args.user)?;
    let target = target::resolve(&target::Flags {
        certs_dir: &args.certs_dir,
        host: &args.host,
        port: args.port,
        user: "root",
        database: "defaultdb",
        url: args.url.as_deref(),
    })?;
    if target.user != "root" {
        bail!(
            "only root may create console sessions; connect as root (the URL names {:?})",
            target.user
        );
    }
    let host = target.host.clone();
    let ca_file = target.ca_file.clone();
    let sql = format!(
        "SELECT moat_create_console_session({}, {})",
        quote(&user),
        quote(&args.expire_after)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the I/O runtime: {e}"))?;
    let started = time::OffsetDateTime::now_utc();
    let result = rt.block_on(async {
        let connector = Connector::new(target)?;
        let session = connector.connect().await?;
        let stream = session
            .client
            .simple_query_raw(&sql)
            .await
            .map_err(|e| connector.explain(&e))?;
        futures::pin_mut!(stream);
        let mut cookie = None;
        while let Some(msg) = stream.next().await {
            if let SimpleQueryMessage::Row(row) = msg.map_err(|e| connector.explain(&e))? {
                cookie = row.get(0).map(str::to_string);
            }
        }
        cookie.ok_or_else(|| Failure::Other("the node returned no session".into()))
    });
    let cookie = match result {
        Ok(c) => c,
        Err(Failure::Other(m)) => bail!(m),
        Err(f @ Failure::Sql(_)) => {
            f.print();
            std::process::exit(1);
        }
    };
    if args.only_cookie {
        println!("{cookie}");
        return Ok(());
    }
    let expires = started + ttl;
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    println!("username  {user}");
    println!("expires   {}", expires.format(&fmt).unwrap_or_default());
    println!("cookie    {cookie}");
    println!();
    println!("Use it as a cookie, e.g. with curl:");
    println!(
        "  curl --cacert {} --cookie '{cookie}' https://{host}:{}/_status/certificates",
        ca_file.display(),
        args.http_port
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes() {
        assert_eq!(super::quote("o'hara"), "'o''hara'");
    }
}
