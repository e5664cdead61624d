//! A real `eddy server` process for a test: started on a temp data dir, spoken to over pgwire.
//!
//! Every test owns its [`TestServer`] (and so its data dir and port); dropping it SIGKILLs the
//! process. `restart` starts a new process on the same data dir, which is how the recovery
//! tests observe what survived.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio_postgres::{Client, NoTls};

/// How long a server may take to print its listening line (debug builds on 2 cores are slow).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERM'd server may take to exit.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `eddy server` child process.
pub struct TestServer {
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// Start counter, so each run's stderr goes to its own file.
    generation: u32,
    /// Extra `eddy server` flags and environment, kept across restarts.
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Keeps the temp dir alive when the server created it.
    _temp: Option<TempDir>,
}

impl TestServer {
    /// Starts a server on a fresh temp dir that lives as long as the server.
    pub fn start_fresh() -> anyhow::Result<Self> {
        Self::start_fresh_with(&[], &[])
    }

    /// Like [`TestServer::start_fresh`], with extra flags and environment variables.
    pub fn start_fresh_with(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let temp = tempfile::Builder::new().prefix("eddy-it-").tempdir()?;
        let mut server = Self::start_with(temp.path(), args, env)?;
        server._temp = Some(temp);
        Ok(server)
    }

    /// Starts a server on `dir` (data in `dir/data`, stderr in `dir/server-N.log`) with extra
    /// flags and environment variables.
    pub fn start_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut server = TestServer {
            child: None,
            port: 0,
            data_dir: dir.join("data"),
            log_path: PathBuf::new(),
            generation: 0,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            _temp: None,
        };
        server.spawn(dir)?;
        Ok(server)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Sets (or with `None` removes) an environment variable for the next (re)start.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.to_string(), v.to_string()));
        }
    }

    /// Waits up to `timeout` for the server to exit by itself (a crash point); true if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let deadline = std::time::Instant::now() + timeout;
        let Some(child) = self.child.as_mut() else {
            return Ok(true);
        };
        while std::time::Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                self.child = None;
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(false)
    }

    fn spawn(&mut self, dir: &Path) -> anyhow::Result<()> {
        self.generation += 1;
        self.log_path = dir.join(format!("server-{}.log", self.generation));
        let log = File::create(&self.log_path)?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .arg("server")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--pg-addr")
            .arg("127.0.0.1:0")
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("spawning the eddy binary")?;

        // Read the listening line on a thread, so a silent server cannot hang the test.
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            match lines.next() {
                Some(Ok(line)) => {
                    let _ = tx.send(Ok(line));
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(e.to_string()));
                }
                None => {
                    let _ = tx.send(Err("stdout closed before the listening line".into()));
                }
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });

        let line = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "eddy did not start: {e}\n--- server stderr ---\n{}",
                    self.log()
                );
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "eddy printed no listening line within {STARTUP_TIMEOUT:?}\n--- server stderr ---\n{}",
                    self.log()
                );
            }
        };
        let port = line
            .strip_prefix("eddy: listening on ")
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|p| p.trim().parse::<u16>().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "unexpected first stdout line {line:?}\n--- server stderr ---\n{}",
                self.log()
            );
        };
        self.port = port;
        self.child = Some(child);
        Ok(())
    }

    /// Stops the server (SIGKILL if still running) and starts a new one on the same data dir.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.kill9();
        }
        let dir = self
            .data_dir
            .parent()
            .context("data dir has a parent")?
            .to_path_buf();
        self.spawn(&dir)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's stderr so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_else(|e| format!("<no log: {e}>"))
    }

    /// A tokio-postgres config for this server.
    pub fn config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("eddy")
            .dbname("eddy")
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// A connected client; its connection task runs in the background.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let (client, connection) = self
            .config()
            .connect(NoTls)
            .await
            .with_context(|| format!("connecting to eddy on port {}", self.port))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// SIGKILLs the server and waits for it to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub fn terminate(&mut self) -> anyhow::Result<Option<i32>> {
        self.sigterm()?;
        self.wait_stopped()
    }

    /// Sends SIGTERM, without waiting (see [`TestServer::wait_stopped`]).
    pub fn sigterm(&self) -> anyhow::Result<()> {
        self.signal("TERM")
    }

    /// Sends the signal named `name` (`TERM`, `STOP`, `CONT`) to the server process.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("server is not running")?;
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{name} {} failed: {status}", child.id());
        }
        Ok(())
    }

    /// Waits for a SIGTERM'd process to exit; returns its exit code.
    pub fn wait_stopped(&mut self) -> anyhow::Result<Option<i32>> {
        let mut child = self.child.take().context("server is not running")?;
        let deadline = std::time::Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.code());
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "eddy did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs one simple-protocol query and returns its rows as text (NULL as `None`).
pub async fn rows(client: &Client, sql: &str) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    let messages = client
        .simple_query(sql)
        .await
        .with_context(|| format!("running {sql}"))?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// Runs a query (e.g. `EXPLAIN ...`) and returns all its cells joined by newlines.
pub async fn text(client: &Client, sql: &str) -> anyhow::Result<String> {
    Ok(rows(client, sql)
        .await?
        .into_iter()
        .flatten()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Runs a query that returns one integer cell.
pub async fn scalar_i64(client: &Client, sql: &str) -> anyhow::Result<i64> {
    let rows = rows(client, sql).await?;
    let cell = rows
        .first()
        .and_then(|r| r.first())
        .cloned()
        .flatten()
        .with_context(|| format!("{sql} returned no value"))?;
    cell.parse()
        .with_context(|| format!("{sql} returned {cell:?}, not an integer"))
}

/// The SQLSTATE of a failed statement, or a description of what happened instead.
pub fn sqlstate<T>(result: Result<T, tokio_postgres::Error>) -> String {
    match result {
        Ok(_) => "<no error>".to_string(),
        Err(e) => match e.as_db_error() {
            Some(db) => db.code().code().to_string(),
            None => format!("<not a server error: {e}>"),
        },
    }
}
