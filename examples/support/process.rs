//! What the examples that run the real `eddy` binary as separate processes share (`soak`,
//! `failover_bench`, `cluster_bench`): finding the binary built beside them, starting nodes
//! alone or as a cluster, connecting to a server.

// Each example that includes this module uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// One server: its process while it runs, its port, and how to start it again.
pub struct Node {
    /// Its node id (1 when alone).
    pub id: usize,
    /// Its directory: the data directory `data` and each start's log.
    pub dir: PathBuf,
    /// `--peers`, or `None` for a node alone.
    pub peers: Option<String>,
    pub child: Option<Child>,
    /// Its PostgreSQL port while it runs.
    pub port: u16,
    starts: usize,
}

impl Node {
    /// A node that is not started yet, in `dir`.
    pub fn new(id: usize, dir: PathBuf, peers: Option<String>) -> anyhow::Result<Node> {
        std::fs::create_dir_all(&dir)?;
        Ok(Node {
            id,
            dir,
            peers,
            child: None,
            port: 0,
            starts: 0,
        })
    }

    /// Spawns the server; returns once it printed its port (it prints it once it serves).
    pub fn spawn(&mut self, eddy: &Path) -> anyhow::Result<()> {
        self.starts += 1;
        let log = self.dir.join(format!("server-{}.log", self.starts));
        let mut command = Command::new(eddy);
        command
            .args(["server", "--pg-addr", "127.0.0.1:0", "--data-dir"])
            .arg(self.dir.join("data"));
        if let Some(peers) = &self.peers {
            command.args(["--node-id", &self.id.to_string(), "--peers", peers]);
        }
        let mut child = command
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting eddy")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        self.port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("no port in {line:?}; see {}", log.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A client of the server.
    pub async fn client(&self) -> anyhow::Result<Client> {
        connect(self.port).await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `n` ports on loopback that nobody listens on now.
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Starts nodes `1..=n` as one cluster on loopback, each in `root/node<id>`, side by side
/// (none serves before a majority is up).
pub fn start_cluster(eddy: &Path, root: &Path, n: usize) -> anyhow::Result<Vec<Node>> {
    let peers: Vec<String> = free_ports(n)?
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
        .collect();
    let peers = peers.join(",");
    let mut nodes = (1..=n)
        .map(|id| Node::new(id, root.join(format!("node{id}")), Some(peers.clone())))
        .collect::<anyhow::Result<Vec<Node>>>()?;
    std::thread::scope(|s| {
        let started: Vec<_> = nodes
            .iter_mut()
            .map(|n| s.spawn(|| n.spawn(eddy)))
            .collect();
        started
            .into_iter()
            .try_for_each(|t| t.join().map_err(|_| anyhow::anyhow!("start thread"))?)
    })?;
    Ok(nodes)
}

/// The `p` quantile (0..=1) of `sorted`, which is not empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}
