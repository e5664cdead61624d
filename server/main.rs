//! The `eddy` command line.

use clap::{Parser, Subcommand};
use eddy_server::config::ServerConfig;

/// Eddy: a streaming SQL database speaking the PostgreSQL protocol.
#[derive(Debug, Parser)]
#[command(name = "eddy", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (data in --data-dir, PostgreSQL protocol on --pg-addr).
    Server(ServerConfig),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // openraft tells every election and leader change of every partition group.
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        // `start` validates the settings before it touches anything.
        Command::Server(config) => eddy_server::runtime()?.block_on(eddy_server::run(config)),
    }
}
