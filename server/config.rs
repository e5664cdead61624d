//! Server configuration: typed, with documented defaults, from flags or `EDDY_*` variables.
//!
//! Each default is written once: the engine's in [`EngineConfig`]'s `DEFAULT_*` constants, the
//! server's in this module's constants. The flags' defaults, [`ServerConfig::for_dir`] and
//! [`ServerConfig::engine_config`] all read them; a test checks that the flags and `for_dir`
//! agree.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use eddy_sql::EngineConfig;
use eddy_sql::engine::Cluster;

use crate::pg::framing::LARGE_MESSAGE_LIMIT;

/// The smallest `--max-message-bytes`: every message without user data must still fit.
const MIN_MESSAGE_BYTES: usize = 1024;

/// `--data-dir` unless set.
pub const DEFAULT_DATA_DIR: &str = "./eddy-data";
/// `--pg-addr` unless set: loopback, one above PostgreSQL's port.
pub const DEFAULT_PG_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5433));
/// `--retention-check-ms` unless set: every 30 seconds.
pub const DEFAULT_RETENTION_CHECK_MS: u64 = 30_000;
/// `--shutdown-grace-ms` unless set: 10 seconds, well inside the 30 s that Kubernetes and
/// the 90 s that systemd wait before they kill.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;
/// `--max-message-bytes` unless set: PostgreSQL's limit, 1 GB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = LARGE_MESSAGE_LIMIT;

/// `--node-id` unless set.
pub const DEFAULT_NODE_ID: u64 = eddy_sql::engine::Cluster::ALONE_ID;

/// Settings of `eddy server`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ServerConfig {
    /// Directory for all data (catalog and partition logs).
    #[arg(long, env = "EDDY_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Address of the PostgreSQL protocol listener (port 0 picks a free port).
    #[arg(long, env = "EDDY_PG_ADDR", default_value_t = DEFAULT_PG_ADDR)]
    pub pg_addr: SocketAddr,
    /// Partitions of a stream created without `partitions=`.
    #[arg(long, env = "EDDY_DEFAULT_PARTITIONS", default_value_t = EngineConfig::DEFAULT_PARTITIONS)]
    pub default_partitions: u32,
    /// How often retention and tiering run, in milliseconds.
    #[arg(long, env = "EDDY_RETENTION_CHECK_MS", default_value_t = DEFAULT_RETENTION_CHECK_MS)]
    pub retention_check_ms: u64,
    /// Where the cold tier lives: `file:///dir` or `s3://bucket/prefix` (credentials and
    /// endpoint from the standard `AWS_*` variables). Default: `<data-dir>/cold`.
    #[arg(long, env = "EDDY_COLD_STORE")]
    pub cold_store: Option<String>,
    /// A persistent query writes a full snapshot of its state once its checkpoint log has
    /// grown this many bytes past twice the last snapshot (then drops the older checkpoints).
    #[arg(
        long,
        env = "EDDY_QUERY_SNAPSHOT_BYTES",
        default_value_t = EngineConfig::DEFAULT_QUERY_SNAPSHOT_BYTES
    )]
    pub query_snapshot_bytes: u64,
    /// The largest protocol message a client may send, in bytes (PostgreSQL's limit, 1 GB,
    /// by default). A larger one is refused with SQLSTATE 54000 and ends the connection.
    #[arg(long, env = "EDDY_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// On SIGTERM, how long statements in progress may take to finish, in milliseconds.
    /// Idle connections close at once (SQLSTATE 57P01), and so do push queries; a statement
    /// still running after this is abandoned (not acknowledged) before the logs close.
    #[arg(long, env = "EDDY_SHUTDOWN_GRACE_MS", default_value_t = DEFAULT_SHUTDOWN_GRACE_MS)]
    pub shutdown_grace_ms: u64,
    /// This node's id among `--peers` (a positive integer). Ignored without `--peers`: a
    /// cluster of one is node 1.
    #[arg(long, env = "EDDY_NODE_ID", default_value_t = DEFAULT_NODE_ID)]
    pub node_id: u64,
    /// The cluster's voters, this node included, as `id@host:port,...` (the address each
    /// listens on for its peers), the same list on every node, like Kafka's
    /// `controller.quorum.voters`. Unset: a cluster of one.
    #[arg(long, env = "EDDY_PEERS")]
    pub peers: Option<String>,
    /// Where this node listens for its peers, when they reach it at another address than
    /// its `--peers` entry (through a proxy or a NAT; Kafka's `listeners` beside
    /// `advertised.listeners`). Unset: its `--peers` entry.
    #[arg(long, env = "EDDY_PEER_LISTEN_ADDR")]
    pub peer_listen_addr: Option<String>,
}

impl ServerConfig {
    /// Defaults for `data_dir`, listening on a free loopback port (tests, examples).
    pub fn for_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            pg_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            default_partitions: EngineConfig::DEFAULT_PARTITIONS,
            retention_check_ms: DEFAULT_RETENTION_CHECK_MS,
            cold_store: None,
            query_snapshot_bytes: EngineConfig::DEFAULT_QUERY_SNAPSHOT_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            node_id: DEFAULT_NODE_ID,
            peers: None,
            peer_listen_addr: None,
        }
    }

    /// This node and its voters: `--node-id` among `--peers`, or a cluster of one.
    pub fn cluster(&self) -> anyhow::Result<Cluster> {
        let Some(list) = &self.peers else {
            return Ok(Cluster::alone());
        };
        let mut peers = BTreeMap::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((id, addr)) = entry.split_once('@') else {
                bail!("--peers entry {entry:?} is not id@host:port");
            };
            let id: u64 = id
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("--peers entry {entry:?}: {id:?} is not a node id"))?;
            let addr = addr.trim();
            match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
                _ => bail!("--peers entry {entry:?}: {addr:?} is not host:port"),
            }
            if peers.insert(id, addr.to_string()).is_some() {
                bail!("--peers names node {id} twice");
            }
        }
        if peers.is_empty() {
            bail!("--peers names no node");
        }
        let cluster = Cluster {
            node_id: self.node_id,
            peers,
            listen: self.peer_listen_addr.clone(),
        };
        cluster
            .validate()
            .map_err(|e| anyhow::anyhow!("--peers: {e}"))?;
        Ok(cluster)
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

    /// The engine's settings: these where the server has a flag, the engine's defaults
    /// elsewhere.
    pub fn engine_config(&self) -> anyhow::Result<EngineConfig> {
        Ok(EngineConfig {
            default_partitions: self.default_partitions,
            cold_store: Some(self.cold_store_url()?),
            query_snapshot_bytes: self.query_snapshot_bytes,
            cluster: self.cluster()?,
            ..EngineConfig::new(&self.data_dir)
        })
    }

    /// Checks the settings before anything starts ([`crate::start`] calls it).
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.default_partitions == 0 || self.default_partitions > 10_000 {
            bail!(
                "--default-partitions must be between 1 and 10000, not {}",
                self.default_partitions
            );
        }
        self.cluster()?;
        if self.retention_check_ms == 0 {
            bail!("--retention-check-ms must be positive");
        }
        if !(MIN_MESSAGE_BYTES..=LARGE_MESSAGE_LIMIT).contains(&self.max_message_bytes) {
            bail!(
                "--max-message-bytes must be between {MIN_MESSAGE_BYTES} and {LARGE_MESSAGE_LIMIT} \
                 (pgwire's and PostgreSQL's limit), not {}",
                self.max_message_bytes
            );
        }
        Ok(())
    }

    /// [`ServerConfig::retention_check_ms`] as a duration.
    pub fn retention_check_interval(&self) -> Duration {
        Duration::from_millis(self.retention_check_ms)
    }

    /// [`ServerConfig::shutdown_grace_ms`] as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerConfig,
    }

    /// The flags' defaults and `for_dir` are the same settings (apart from the two `for_dir`
    /// exists to change), and so are the engine's defaults.
    #[test]
    fn flag_defaults_are_for_dir_and_engine_defaults() {
        let from_flags =
            Cli::try_parse_from(["eddy", "--data-dir", "d", "--pg-addr", "127.0.0.1:0"])
                .unwrap()
                .server;
        assert_eq!(from_flags, ServerConfig::for_dir("d"));
        let engine = from_flags.engine_config().unwrap();
        let defaults = EngineConfig::new("d");
        assert_eq!(engine.default_partitions, defaults.default_partitions);
        assert_eq!(engine.query_snapshot_bytes, defaults.query_snapshot_bytes);
        assert_eq!(engine.default_segment_bytes, defaults.default_segment_bytes);
        from_flags.validate().unwrap();
    }

    #[test]
    fn peers_name_each_voter_once_with_its_address_and_this_node_among_them() {
        let with = |id: u64, peers: &str| {
            let mut c = ServerConfig::for_dir("d");
            c.node_id = id;
            c.peers = Some(peers.into());
            c.cluster().map_err(|e| e.to_string())
        };
        let three = "1@127.0.0.1:7001, 2@127.0.0.1:7002,3@localhost:7003";
        let c = with(2, three).unwrap();
        assert_eq!(c.node_id, 2);
        assert_eq!(c.peers[&3], "localhost:7003");
        assert!(
            with(4, three)
                .unwrap_err()
                .contains("node 4 is not one of the voters")
        );
        assert!(
            with(1, "1@127.0.0.1:7001,1@127.0.0.1:7002")
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            with(1, "1@127.0.0.1")
                .unwrap_err()
                .contains("not host:port")
        );
        assert!(
            with(1, "127.0.0.1:7001")
                .unwrap_err()
                .contains("not id@host:port")
        );
        assert!(
            with(1, "x@127.0.0.1:7001")
                .unwrap_err()
                .contains("not a node id")
        );
        assert!(with(1, " , ").unwrap_err().contains("names no node"));
        assert!(ServerConfig::for_dir("d").cluster().unwrap().is_alone());
    }
}
