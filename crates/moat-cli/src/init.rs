//! `moat init`: initialise a new cluster on one of its started nodes
//! (CockroachDB's `cockroach init`). It dials the node's RPC port over
//! mutual TLS with `client.root.crt` (else the node certificate) from the
//! certs directory.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use moat_server::cluster::rpc::request_init;
use moat_server::cluster::InitReply;
use moat_tls::principal::IdentityPolicy;
use moat_tls::store::{CertStore, StoreRole};

/// Flags of `moat init`.
#[derive(Args)]
pub struct InitArgs {
    /// The certs directory: ca.crt and client.root.crt/.key (or node.crt/.key).
    #[arg(long, env = "MOAT_CERTS_DIR", hide_env_values = true)]
    certs_dir: std::path::PathBuf,
    /// The node to initialise: HOST:PORT (its --listen-addr, where it
    /// serves node-to-node RPC; not a --sql-addr).
    #[arg(long, env = "MOAT_HOST", default_value = "localhost:26257")]
    host: String,
    /// How long to keep trying while the node is not reachable yet.
    #[arg(long, default_value_t = 30)]
    wait_secs: u64,
}

/// Runs `moat init`.
pub fn run(args: InitArgs) -> Result<()> {
    let host = if args.host.contains(':') {
        args.host.clone()
    } else {
        format!("{}:26257", args.host)
    };
    let dir = &args.certs_dir;
    let (config, who) = if dir.join("client.root.crt").exists() {
        let store = CertStore::open(
            dir,
            StoreRole::SqlClient(Some("root".into())),
            IdentityPolicy::default(),
        )
        .with_context(|| format!("{}: cannot load the root client certificate", dir.display()))?;
        (store.snapshot().sql_client(), "root")
    } else {
        let store = CertStore::open(dir, StoreRole::Node, IdentityPolicy::default()).with_context(|| {
            format!(
                "{}: needs client.root.crt/.key or node.crt/.key to call the node (create one with `moat cert create-client root`)",
                dir.display()
            )
        })?;
        (store.snapshot().rpc_client(), "node")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the I/O runtime: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    let reply = rt.block_on(async {
        loop {
            match request_init(config.clone(), &host).await {
                Ok(r) => return Ok(r),
                Err(e) if Instant::now() < deadline && is_unreachable(&e) => {
                    eprintln!("waiting for {host}: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    });
    match reply {
        Ok(InitReply::Initialized { cluster_id }) => {
            println!("Cluster successfully initialized (cluster id {cluster_id}, as {who})");
            Ok(())
        }
        Ok(InitReply::AlreadyInitialized) => bail!("cluster has already been initialized ({host})"),
        Ok(InitReply::Failed(e)) => bail!("{host}: initialisation failed: {e}"),
        Err(e) if closed_by_peer(&e) => bail!(
            "cannot initialise the cluster: {host} closed the connection ({e}); if {host} is the node's --sql-addr, \
             give --host its --listen-addr (the RPC port) instead"
        ),
        Err(e) => bail!("cannot initialise the cluster: {e}"),
    }
}

fn is_unreachable(e: &str) -> bool {
    // Not there yet (refused, no route, name not resolving, timed out):
    // wait. A node that answers and then hangs up is there: no point waiting.
    (e.contains("onnection refused")
        || e.contains("tcp connect")
        || e.contains("transport error")
        || e.contains("lookup")
        || e.contains("timed out")
        || e.contains("nreachable"))
        && !closed_by_peer(&e)
}

/// Whether the node accepted the connection and then hung up (what a port
/// that serves SQL only does to an RPC client).
fn closed_by_peer(e: &impl std::fmt::Display) -> bool {
    let text = e.to_string();
    [
        "close_notify",
        "connection closed",
        "onnection reset",
        "roken pipe",
        "unexpected EOF",
        "UnexpectedEof",
        "NoApplicationProtocol",
    ]
    .iter()
    .any(|s| text.contains(s))
}
