//! Server configuration: typed, with documented defaults, from flags or `EDDY_*` variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use crate::pg::framing::LARGE_MESSAGE_LIMIT;

/// The smallest `--max-message-bytes`: every message without user data must still fit.
const MIN_MESSAGE_BYTES: usize = 1024;

/// Settings of `eddy server`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerConfig {
    /// Directory for all data (catalog and partition logs).
    #[arg(long, env = "EDDY_DATA_DIR", default_value = "./eddy-data")]
    pub data_dir: PathBuf,
    /// Address of the PostgreSQL protocol listener (port 0 picks a free port).
    #[arg(long, env = "EDDY_PG_ADDR", default_value = "127.0.0.1:5433")]
    pub pg_addr: SocketAddr,
    /// Partitions of a stream created without `partitions=`.
    #[arg(long, env = "EDDY_DEFAULT_PARTITIONS", default_value_t = 1)]
    pub default_partitions: u32,
    /// How often retention and tiering run, in milliseconds.
    #[arg(long, env = "EDDY_RETENTION_CHECK_MS", default_value_t = 30_000)]
    pub retention_check_ms: u64,
    /// Where the cold tier lives: `file:///dir` or `s3://bucket/prefix` (credentials and
    /// endpoint from the standard `AWS_*` variables). Default: `<data-dir>/cold`.
    #[arg(long, env = "EDDY_COLD_STORE")]
    pub cold_store: Option<String>,
    /// A persistent query writes a full snapshot of its state once its checkpoint log has
    /// grown this many bytes past twice the last snapshot (then drops the older checkpoints).
    #[arg(long, env = "EDDY_QUERY_SNAPSHOT_BYTES", default_value_t = 64 << 20)]
    pub query_snapshot_bytes: u64,
    /// The largest protocol message a client may send, in bytes (PostgreSQL's limit, 1 GB,
    /// by default). A larger one is refused with SQLSTATE 54000 and ends the connection.
    #[arg(long, env = "EDDY_MAX_MESSAGE_BYTES", default_value_t = LARGE_MESSAGE_LIMIT)]
    pub max_message_bytes: usize,
}

impl ServerConfig {
    /// Defaults for `data_dir`, listening on a free loopback port.
    pub fn for_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            pg_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            default_partitions: 1,
            retention_check_ms: 30_000,
            cold_store: None,
            query_snapshot_bytes: 64 << 20,
            max_message_bytes: LARGE_MESSAGE_LIMIT,
        }
    }

    /// The cold store's URL: `--cold-store`, or the `cold` directory in the data directory.
    pub fn cold_store_url(&self) -> anyhow::Result<String> {
        match &self.cold_store {
            Some(url) => Ok(url.clone()),
            None => {
                let dir = std::path::absolute(self.data_dir.join("cold"))?;
                Ok(format!("file://{}", dir.display()))
            }
        }
    }

    /// Checks the settings before anything starts.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.default_partitions == 0 || self.default_partitions > 10_000 {
            bail!("--default-partitions must be between 1 and 10000");
        }
        if self.retention_check_ms == 0 {
            bail!("--retention-check-ms must be positive");
        }
        if !(MIN_MESSAGE_BYTES..=LARGE_MESSAGE_LIMIT).contains(&self.max_message_bytes) {
            bail!(
                "--max-message-bytes must be between {MIN_MESSAGE_BYTES} and {LARGE_MESSAGE_LIMIT} \
                 (pgwire's and PostgreSQL's limit)"
            );
        }
        Ok(())
    }

    /// [`ServerConfig::retention_check_ms`] as a duration.
    pub fn retention_check_interval(&self) -> Duration {
        Duration::from_millis(self.retention_check_ms)
    }
}
