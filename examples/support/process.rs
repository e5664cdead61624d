//! What the examples that run the real `eddy` binary as separate processes share (`soak`,
//! `failover_bench`): finding the binary built beside them, and connecting to a server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_postgres::{Client, NoTls};

/// The `eddy` binary of the build this example belongs to.
pub fn eddy_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("examples directory")?;
    let eddy = dir.join("eddy");
    if !eddy.exists() {
        bail!(
            "{} not found: build it first (cargo build --release --bin eddy)",
            eddy.display()
        );
    }
    Ok(eddy)
}

/// A client of the server listening on `port` (its connection task spawned).
pub async fn connect(port: u16) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("eddy")
        .dbname("eddy")
        .connect_timeout(Duration::from_secs(10))
        .connect(NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}
