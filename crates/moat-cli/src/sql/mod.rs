//! `moat sql`: the SQL client, with `cockroach sql`'s habits. Always TLS:
//! with `client.<user>.crt` in the certs directory it logs in with that
//! certificate (mutual TLS); without, it verifies the server only and sends
//! a password (PGPASSWORD or a prompt). The server is verified against
//! `ca.crt` and the host name.
//!
//! `-e` runs statements and exits (1 on error, the server's message and
//! SQLSTATE on stderr); statements are read from stdin when it is not a
//! terminal; otherwise an interactive shell starts.

pub(crate) mod connect;
pub mod format;
mod shell;
mod split;
pub(crate) mod target;

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{anyhow, Result};
use clap::Args;

use connect::{Connector, Failure};
use format::Format;
use shell::{Shell, Step};

/// Flags of `moat sql`.
#[derive(Args)]
pub struct SqlArgs {
    /// The certs directory: ca.crt, and client.<user>.crt/.key for a certificate login.
    #[arg(long, env = "MOAT_CERTS_DIR", default_value_t = default_certs_dir(), hide_env_values = true)]
    certs_dir: String,
    /// The node to connect to: HOST or HOST:PORT (IPv6 as [ADDR]:PORT).
    #[arg(long, env = "MOAT_HOST", default_value = "localhost:26257")]
    host: String,
    /// The port (overrides one given in --host).
    #[arg(long, short = 'p', env = "MOAT_PORT")]
    port: Option<u16>,
    /// The SQL user.
    #[arg(long, short = 'u', env = "MOAT_USER", default_value = "root")]
    user: String,
    /// The database.
    #[arg(long, short = 'd', env = "MOAT_DATABASE", default_value = "defaultdb")]
    database: String,
    /// Run these statements and exit (repeatable; each may hold several statements).
    #[arg(long, short = 'e', value_name = "SQL")]
    execute: Vec<String>,
    /// A postgresql:// URL (user, host, port, database, sslmode, sslrootcert, sslcert, sslkey);
    /// what it gives overrides the other flags.
    #[arg(long, env = "MOAT_URL", hide_env_values = true)]
    url: Option<String>,
    /// How result sets are printed (default: table on a terminal, tsv otherwise).
    #[arg(long, value_enum)]
    format: Option<Format>,
}

fn default_certs_dir() -> String {
    match std::env::var("HOME") {
        Ok(h) if !h.is_empty() => format!("{h}/.moat-certs"),
        _ => ".moat-certs".into(),
    }
}

/// Runs `moat sql`.
pub fn run(args: SqlArgs) -> Result<()> {
    let target = target::resolve(&target::Flags {
        certs_dir: &args.certs_dir,
        host: &args.host,
        port: args.port,
        user: &args.user,
        database: &args.database,
        url: args.url.as_deref(),
    })?;
    let interactive = args.execute.is_empty() && std::io::stdin().is_terminal();
    let format = args
        .format
        .unwrap_or(if interactive || std::io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::Tsv
        });
    let result = (|| -> Result<(), Failure> {
        let connector = Connector::new(target)?;
        let mut shell = Shell::connect(connector, format, interactive)?;
        if !args.execute.is_empty() {
            for sql in &args.execute {
                shell.execute(sql)?;
            }
            return Ok(());
        }
        if interactive {
            return shell.interactive();
        }
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(|e| Failure::Other(format!("reading statements from stdin: {e}")))?;
            if shell.feed(&line)? == Step::Quit {
                return Ok(());
            }
        }
        shell.finish()
    })();
    let _ = std::io::stdout().flush();
    match result {
        Ok(()) => Ok(()),
        Err(Failure::Other(m)) => Err(anyhow!(m)),
        Err(f @ Failure::Sql(_)) => {
            f.print();
            std::process::exit(1);
        }
    }
}
