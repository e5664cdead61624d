//! Per-partition log configuration.

/// How a partition log rolls, indexes and expires its segments.
///
/// Defaults follow Kafka's where Kafka has one: 128 MiB segments (Kafka: 1 GiB; smaller
/// segments make retention finer and recovery shorter), no time-based roll, no retention, one
/// index entry per 4 KiB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll the active segment, before an append, once it holds at least this many bytes.
    /// Default 128 MiB.
    pub segment_bytes: u64,
    /// Roll the active segment, before an append, once its first append is older than this
    /// many milliseconds (wall clock of this process; a recovered segment's age starts at
    /// open). Default `None`: never by age.
    pub segment_ms: Option<u64>,
    /// Delete closed segments whose largest timestamp is older than `now - retention_ms`.
    /// Default `None`: keep forever.
    pub retention_ms: Option<u64>,
    /// Delete the oldest closed segments while the log holds more than this many bytes.
    /// Default `None`: no size limit.
    pub retention_bytes: Option<u64>,
    /// With a cold tier: move closed segments whose largest timestamp is older than
    /// `now - local_retention_ms` to the cold tier (Kafka's `local.retention.ms`, KIP-405).
    /// Default `None`: no tiering by age.
    pub local_retention_ms: Option<u64>,
    /// With a cold tier: move the oldest closed segments to the cold tier while the local log
    /// holds more than this many bytes (Kafka's `local.retention.bytes`). Default `None`.
    pub local_retention_bytes: Option<u64>,
    /// Sparse index density: an entry for a batch that starts at least this many bytes after
    /// the previous entry's batch. A segment's first batch always has an entry. Default 4096.
    pub index_interval_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 128 * 1024 * 1024,
            segment_ms: None,
            retention_ms: None,
            retention_bytes: None,
            local_retention_ms: None,
            local_retention_bytes: None,
            index_interval_bytes: 4096,
        }
    }
}
