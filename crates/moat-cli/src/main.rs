//! `moat`: the command-line tool. A thin layer over the moat libraries; every
//! error is printed as one line on stderr with a non-zero exit.

mod auth_session;
mod cert;
mod demo;
mod init;
mod logging;
mod node_cmd;
mod sql;
mod start;
mod table;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// moat: CockroachDB's transport-security model, as a toolkit and a server.
#[derive(Parser)]
#[command(name = "moat", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, sign and inspect certificates and the certs directory.
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Start a node of a cluster: SQL and node-to-node RPC over TLS on one port.
    Start(start::ClusterStartArgs),
    /// Start a single secure node (a cluster of one that no node can join).
    StartSingleNode(start::StartArgs),
    /// Initialise a new cluster on one of its started nodes (once).
    Init(init::InitArgs),
    /// List the nodes of a cluster (root, over SQL).
    #[command(subcommand)]
    Node(node_cmd::NodeCommand),
    /// Open a SQL shell on a node, or run statements (-e, or from stdin), over TLS.
    Sql(sql::SqlArgs),
    /// Console sessions made over SQL by root (`login USER` prints a session cookie).
    #[command(subcommand)]
    AuthSession(auth_session::AuthSessionCommand),
    /// A secure N-node cluster on loopback with fresh certificates, and a SQL shell (all removed at exit).
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    moat_tls::provider::install_default();
    let result = match cli.command {
        Command::Cert(cmd) => cert::run(cmd),
        Command::Start(args) => start::run_cluster(args),
        Command::StartSingleNode(args) => start::run(args),
        Command::Init(args) => init::run(args),
        Command::Node(cmd) => node_cmd::run(cmd),
        Command::Sql(args) => sql::run(args),
        Command::AuthSession(cmd) => auth_session::run(cmd),
        Command::Demo(args) => demo::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
