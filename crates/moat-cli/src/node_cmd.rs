//! `moat node ls` and `moat node status`: the nodes of a cluster, asked over
//! SQL as root (`SHOW NODES`).

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use futures::StreamExt;
use tokio_postgres::SimpleQueryMessage;

use crate::sql::connect::{Connector, Failure};
use crate::sql::format::{render, Format, ResultSet};
use crate::sql::target;

/// `moat node ...`.
#[derive(Subcommand)]
pub enum NodeCommand {
    /// Node ids, addresses and liveness.
    Ls(NodeArgs),
    /// Everything known about each node: liveness, leadership, start time,
    /// node certificate expiry, build.
    Status(NodeArgs),
}

/// Connection flags (as `moat sql`, always as root).
#[derive(Args)]
pub struct NodeArgs {
    /// The certs directory: ca.crt, and client.root.crt/.key.
    #[arg(long, env = "MOAT_CERTS_DIR", hide_env_values = true)]
    certs_dir: String,
    /// Any node's SQL address: HOST or HOST:PORT.
    #[arg(long, env = "MOAT_HOST", default_value = "localhost:26257")]
    host: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs `moat node`.
pub fn run(cmd: NodeCommand) -> Result<()> {
    let (args, columns): (NodeArgs, &[&str]) = match cmd {
        NodeCommand::Ls(a) => (a, &["id", "address", "is_live"]),
        NodeCommand::Status(a) => (a, &[]),
    };
    let format = args.format;
    let target = target::resolve(&target::Flags {
        certs_dir: &args.certs_dir,
        host: &args.host,
        port: None,
        user: "root",
        database: "defaultdb",
        url: None,
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the I/O runtime: {e}"))?;
    let result = rt.block_on(async {
        let connector = Connector::new(target)?;
        let session = connector.connect().await?;
        let stream = session
            .client
            .simple_query_raw("SHOW NODES")
            .await
            .map_err(|e| connector.explain(&e))?;
        futures::pin_mut!(stream);
        let mut rs = ResultSet::default();
        while let Some(msg) = stream.next().await {
            match msg.map_err(|e| connector.explain(&e))? {
                SimpleQueryMessage::RowDescription(cols) => {
                    rs.columns = cols.iter().map(|c| c.name().to_string()).collect();
                }
                SimpleQueryMessage::Row(row) => {
                    rs.rows
                        .push((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect());
                }
                _ => {}
            }
        }
        Ok::<_, Failure>(rs)
    });
    let rs = match result {
        Ok(rs) => rs,
        Err(Failure::Other(m)) => bail!(m),
        Err(f @ Failure::Sql(_)) => {
            f.print();
            std::process::exit(1);
        }
    };
    let rs = if columns.is_empty() {
        rs
    } else {
        let idx: Vec<usize> = columns
            .iter()
            .filter_map(|c| rs.columns.iter().position(|n| n == c))
            .collect();
        ResultSet {
            columns: idx.iter().map(|&i| rs.columns[i].clone()).collect(),
            rows: rs
                .rows
                .iter()
                .map(|r| idx.iter().map(|&i| r.get(i).cloned().flatten()).collect())
                .collect(),
        }
    };
    print!("{}", render(&rs, format));
    Ok(())
}
