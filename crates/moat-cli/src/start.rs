//! `moat start` and `moat start-single-node`: a secure node serving SQL and
//! node-to-node RPC over TLS on one port (or SQL on its own `--sql-addr`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use moat_server::hba::HbaConfig;
use moat_server::node::{self, NodeConfig};
use moat_tls::ocsp::{OcspConfig, OcspMode};
use moat_tls::principal::{Dn, IdentityPolicy, PrincipalMap};

/// Flags of `moat start`: those of `start-single-node`, plus the cluster's.
#[derive(Args)]
pub struct ClusterStartArgs {
    #[command(flatten)]
    base: StartArgs,
    /// Nodes to join through: HOST:PORT,... (list the same nodes on every
    /// node; a new cluster then waits for `moat init`).
    #[arg(long, value_delimiter = ',', required = true)]
    join: Vec<String>,
    /// The address other nodes dial to reach this one (default: the
    /// --listen-addr, with localhost for an unspecified host). It must be
    /// a name or address in node.crt.
    #[arg(long)]
    advertise_addr: Option<String>,
}

/// Flags of `start-single-node`.
#[derive(Args)]
pub struct StartArgs {
    /// The certs directory (ca.crt, node.crt, node.key ...). Unlike the cert
    /// commands, the server ignores MOAT_CERTS_DIR (as CockroachDB does).
    #[arg(long)]
    certs_dir: PathBuf,
    /// Directory of the node's data (created 0700 if missing).
    #[arg(long)]
    store: PathBuf,
    /// Address for node-to-node RPC and, unless --sql-addr is given, SQL
    /// connections: HOST:PORT, HOST or :PORT.
    #[arg(long, default_value = ":26257")]
    listen_addr: String,
    /// A separate address for SQL clients: HOST:PORT, HOST or :PORT (then
    /// --listen-addr serves node-to-node RPC only).
    #[arg(long)]
    sql_addr: Option<String>,
    /// Address of the HTTPS console: HOST:PORT, HOST or :PORT (host defaults
    /// to the --listen-addr host); "off" for no console.
    #[arg(long, default_value = ":8080")]
    http_addr: String,
    /// Map certificate names to SQL principals: cert-name:db-name,...
    #[arg(long, default_value = "")]
    cert_principal_map: String,
    /// Subject DN that root's certificate must have (replaces CN matching for root).
    #[arg(long)]
    root_cert_distinguished_name: Option<String>,
    /// Subject DN that node certificates must have (replaces CN matching for node).
    #[arg(long)]
    node_cert_distinguished_name: Option<String>,
    /// HBA configuration file (pg_hba syntax); default: host all all all cert-password.
    #[arg(long)]
    hba_conf: Option<PathBuf>,
    /// Let SQL clients connect without TLS (HBA still decides; cert never matches plaintext).
    #[arg(long)]
    accept_sql_without_tls: bool,
    /// OCSP checking of client certificates: off, lax or strict.
    #[arg(long, default_value = "off")]
    ocsp_mode: String,
    /// OCSP timeout in seconds.
    #[arg(long, default_value_t = 3)]
    ocsp_timeout_secs: u64,
    /// Deadline for a client's TLS negotiation and for its PostgreSQL startup, in seconds.
    #[arg(long, default_value_t = 10)]
    startup_timeout_secs: u64,
    /// Most SQL connections open at once; more are refused with SQLSTATE 53300.
    #[arg(long, default_value_t = 5000)]
    max_connections: usize,
    /// Raft log entries between two snapshots of the store.
    #[arg(long, default_value_t = 5000, hide = true)]
    snapshot_logs: u64,
    /// Largest PostgreSQL message a logged-in client may send, in bytes
    /// (default 16 MiB, as CockroachDB's sql.conn.max_read_buffer_message_size;
    /// PostgreSQL allows 1 GiB); a bigger one is refused with SQLSTATE 08P01.
    #[arg(long, default_value_t = 16 << 20, value_parser = clap::value_parser!(u32).range(4096..=0x3fff_fffe))]
    max_message_bytes: u32,
}

/// Parses CockroachDB-style listen addresses (`:26257`, `localhost`, `host:port`).
pub fn parse_addr(text: &str, default_port: u16) -> Result<SocketAddr> {
    let t = text.trim();
    let with_port = if let Some(port) = t.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if t.parse::<std::net::IpAddr>().is_ok() && t.contains(':') {
        format!("[{t}]:{default_port}")
    } else if !t.contains(':') {
        format!("{t}:{default_port}")
    } else {
        t.to_string()
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("invalid address {text:?}: use HOST:PORT, HOST or :PORT"))?
        .next()
        .ok_or_else(|| anyhow!("invalid address {text:?}: it resolves to nothing"))
}

fn policy(args: &StartArgs) -> Result<IdentityPolicy> {
    Ok(IdentityPolicy {
        map: PrincipalMap::parse(&args.cert_principal_map)?,
        root_dn: args
            .root_cert_distinguished_name
            .as_deref()
            .map(Dn::parse)
            .transpose()?,
        node_dn: args
            .node_cert_distinguished_name
            .as_deref()
            .map(Dn::parse)
            .transpose()?,
    })
}

/// Builds the node configuration from the flags.
pub fn config(args: &StartArgs) -> Result<NodeConfig> {
    let listen = parse_addr(&args.listen_addr, 26257)?;
    let mut cfg = NodeConfig::new(&args.certs_dir, &args.store, listen);
    cfg.http_addr = match args.http_addr.trim() {
        "off" | "" => None,
        a if a.starts_with(':') => Some(SocketAddr::new(listen.ip(), parse_addr(a, 8080)?.port())),
        a => Some(parse_addr(a, 8080)?),
    };
    cfg.sql_addr = args
        .sql_addr
        .as_deref()
        .map(|a| parse_addr(a, 26257))
        .transpose()
        .context("--sql-addr")?;
    cfg.policy = policy(args)?;
    if let Some(path) = &args.hba_conf {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the HBA configuration", path.display()))?;
        cfg.hba = HbaConfig::parse(&text).with_context(|| format!("{}: invalid HBA configuration", path.display()))?;
    }
    cfg.accept_sql_without_tls = args.accept_sql_without_tls;
    cfg.ocsp = OcspConfig {
        mode: args
            .ocsp_mode
            .parse::<OcspMode>()
            .map_err(|e| anyhow!("--ocsp-mode: {e}"))?,
        timeout: Duration::from_secs(args.ocsp_timeout_secs.max(1)),
    };
    cfg.handshake_timeout = Duration::from_secs(args.startup_timeout_secs.max(1));
    cfg.startup_timeout = cfg.handshake_timeout;
    cfg.max_connections = args.max_connections.max(1);
    cfg.snapshot_logs = args.snapshot_logs.max(10);
    cfg.max_message_bytes = args.max_message_bytes as usize;
    Ok(cfg)
}

/// Runs a cluster node (`moat start`) until SIGINT or SIGTERM.
pub fn run_cluster(args: ClusterStartArgs) -> Result<()> {
    let mut cfg = config(&args.base)?;
    cfg.single_node = false;
    cfg.join = args
        .join
        .iter()
        .map(|j| j.trim().to_string())
        .filter(|j| !j.is_empty())
        .map(|j| if j.contains(':') { j } else { format!("{j}:26257") })
        .collect();
    if cfg.join.is_empty() {
        return Err(anyhow!("--join: name at least one node (HOST:PORT)"));
    }
    cfg.advertise_addr = args.advertise_addr.clone();
    serve(cfg)
}

/// Runs a single node (`moat start-single-node`) until SIGINT or SIGTERM.
pub fn run(args: StartArgs) -> Result<()> {
    serve(config(&args)?)
}

fn serve(cfg: NodeConfig) -> Result<()> {
    crate::logging::init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let running = node::start(cfg).await?;
        println!("moat node serving SQL on {} (TLS only)", running.sql_addr);
        if running.rpc_addr != running.sql_addr {
            println!("node-to-node RPC on {} (mutual TLS only)", running.rpc_addr);
        }
        if let Some(h) = running.http_addr {
            println!("console: https://{h}/");
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        running.stop();
        Ok(())
    })
}
