//! `moat`: the command-line tool. A thin layer over the moat libraries; every
//! error is printed as one line on stderr with a non-zero exit.

mod cert;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Cert(cmd) => cert::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
