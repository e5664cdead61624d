//! The PostgreSQL reference of the benchmarks: a throwaway cluster (`initdb` into a temp dir,
//! `fsync=on`, `synchronous_commit=on`) on a free loopback port, stopped and deleted when
//! dropped; and [`connect`], the client connection every benchmark opens (to Eddy and to it).

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_postgres::{Client, NoTls};

/// Connects with tokio-postgres; the connection task runs in the background.
pub async fn connect(port: u16, user: &str, dbname: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .dbname(dbname)
        .connect_timeout(Duration::from_secs(10))
        .connect(NoTls)
        .await
        .with_context(|| format!("connecting to 127.0.0.1:{port} as {user}"))?;
    tokio::spawn(async move {
        // A server that shuts down with this client connected ends it with 57P01.
        if let Err(e) = connection.await
            && e.code() != Some(&tokio_postgres::error::SqlState::ADMIN_SHUTDOWN)
        {
            eprintln!("connection to port {port} ended: {e}");
        }
    });
    Ok(client)
}

/// The `bin` directory of the newest PostgreSQL under `/usr/lib/postgresql` that has `initdb`.
pub fn find_postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().unwrap_or(0);
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// Runs commands as the `postgres` user when this process is root (PostgreSQL refuses root).
struct PgUser {
    as_root: bool,
}

impl PgUser {
    fn detect() -> anyhow::Result<Self> {
        let out = Command::new("id")
            .arg("-u")
            .output()
            .context("running `id -u`")?;
        Ok(Self {
            as_root: String::from_utf8_lossy(&out.stdout).trim() == "0",
        })
    }

    fn name(&self) -> String {
        if self.as_root {
            "postgres".into()
        } else {
            std::env::var("USER").unwrap_or_else(|_| "postgres".into())
        }
    }

    fn command(&self, program: &Path) -> Command {
        if self.as_root {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }
}

/// A running throwaway cluster; stopped (fast shutdown) and deleted when dropped.
pub struct PgCluster {
    bin: PathBuf,
    user: PgUser,
    data: PathBuf,
    child: Option<Child>,
    pub port: u16,
    // Declared last so the directory is removed after the server stopped.
    dir: tempfile::TempDir,
}

impl PgCluster {
    pub fn start(bin: PathBuf) -> anyhow::Result<Self> {
        let user = PgUser::detect()?;
        let dir = tempfile::Builder::new().prefix("eddy-bench-pg").tempdir()?;
        if user.as_root {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()?;
            if !status.success() {
                bail!(
                    "chown postgres {} failed (is there a postgres user?)",
                    dir.path().display()
                );
            }
        }
        let data = dir.path().join("data");
        let out = user
            .command(&bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                &user.name(),
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log_path = dir.path().join("postgres.log");
        let log = File::create(&log_path)?;
        let child = user
            .command(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-p", &port.to_string()])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=on",
                "-c",
                "synchronous_commit=on",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting postgres")?;
        Ok(Self {
            bin,
            user,
            data,
            child: Some(child),
            port,
            dir,
        })
    }

    /// Waits (bounded) until the server accepts connections.
    /// The role clients connect as.
    #[allow(dead_code)] // examples/txn_bench.rs opens its own connections; bench does not
    pub fn user_name(&self) -> String {
        self.user.name()
    }

    pub async fn connect(&mut self) -> anyhow::Result<Client> {
        let mut last_error = None;
        for _ in 0..300 {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("postgres exited with {status}: {}", self.log_tail());
            }
            match connect(self.port, &self.user.name(), "postgres").await {
                Ok(client) => return Ok(client),
                Err(e) => last_error = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "postgres did not accept connections within 30 s: {last_error:?}; log: {}",
            self.log_tail()
        )
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let stopped = self
            .user
            .command(&self.bin.join("pg_ctl"))
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(&self.data)
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !stopped {
            eprintln!("pg_ctl stop failed; killing the postgres process");
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}
