//! [`ColdPartition`]: one partition's cold tier — its manifest, tiering of closed segments,
//! retention of objects, the sweep of orphans, and the tiering status with its backoff.
//!
//! Tiering one segment, each step safe to crash after:
//! 1. upload the segment as `<root>/<topic>/<p>/<base>-<next>.parquet` — a crash leaves no
//!    object or one the manifest does not name, removed by the sweep before the next upload;
//! 2. commit the manifest with the new object (fsync) — a crash leaves the segment both
//!    local and cold; readers read it once (cold ends where the hot range starts) and the
//!    next pass deletes the local copy;
//! 3. delete the local segment.
//!
//! Retention of one object: commit the manifest without it, then delete the object — a crash
//! in between leaves an orphan for the sweep.

use std::path::{Path, PathBuf};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use parking_lot::{Mutex, RwLock};

use super::ColdStore;
use super::manifest::{ColdObject, Manifest};
use super::upload::upload_segment;
use crate::failpoint::crash_point;
use crate::{Error, PartitionLog, Result};

/// The tiering state of a partition, for `SHOW`/system tables.
#[derive(Debug, Clone, Default)]
pub struct TierStatus {
    /// Objects uploaded since the server started.
    pub uploads: u64,
    /// Failed passes in a row (0 when the last pass succeeded).
    pub consecutive_failures: u32,
    /// The last failure's message, until a pass succeeds.
    pub last_error: Option<String>,
    /// No pass is attempted before this time (ms since the epoch): the backoff after failures.
    pub retry_at_ms: i64,
}

/// What one tiering pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierReport {
    /// Segments uploaded and removed from local disk.
    pub tiered: usize,
    /// Local segments removed because the manifest already covered them (a crash between
    /// manifest commit and local delete).
    pub finished: usize,
    /// Objects no manifest names, deleted.
    pub orphans_deleted: usize,
    /// Cold objects deleted by retention.
    pub expired: usize,
}

/// The cold tier of one partition.
#[derive(Debug)]
pub struct ColdPartition {
    dir: PathBuf,
    topic: String,
    partition: u32,
    store: Option<ColdStore>,
    manifest: RwLock<Manifest>,
    /// Serialises passes (tiering, retention, sweep) over this partition.
    pass: tokio::sync::Mutex<bool>,
    status: Mutex<TierStatus>,
}

impl ColdPartition {
    /// Opens the cold tier of the partition whose directory is `dir`, loading its manifest.
    pub fn open(
        dir: &Path,
        topic: &str,
        partition: u32,
        store: Option<ColdStore>,
    ) -> Result<ColdPartition> {
        Ok(ColdPartition {
            dir: dir.to_path_buf(),
            topic: topic.to_string(),
            partition,
            store,
            manifest: RwLock::new(Manifest::load(dir)?),
            pass: tokio::sync::Mutex::new(false),
            status: Mutex::new(TierStatus::default()),
        })
    }

    /// The store, if the node has one.
    pub fn store(&self) -> Option<&ColdStore> {
        self.store.as_ref()
    }

    /// The cold objects, in offset order.
    pub fn objects(&self) -> Vec<ColdObject> {
        self.manifest.read().objects.clone()
    }

    /// The cold objects and where they end, from one state of the manifest: a read takes
    /// both here so that an object committed in between cannot be read twice.
    pub fn snapshot(&self) -> (Vec<ColdObject>, u64) {
        let manifest = self.manifest.read();
        (manifest.objects.clone(), manifest.end_offset().unwrap_or(0))
    }

    /// One past the last cold offset (0 when nothing is cold): hot reads start here.
    pub fn end_offset(&self) -> u64 {
        self.manifest.read().end_offset().unwrap_or(0)
    }

    /// Whether `error`, from reading one of this partition's objects, only says that retention
    /// deleted the object after the reader took it from the manifest: readers then skip it, as
    /// they skip any row past retention.
    pub fn expired_while_reading(&self, error: &Error) -> bool {
        match error {
            Error::ColdObjectGone { key } => {
                !self.manifest.read().objects.iter().any(|o| &o.key == key)
            }
            _ => false,
        }
    }

    /// Total bytes of the cold objects.
    pub fn bytes(&self) -> u64 {
        self.manifest.read().bytes()
    }

    /// The tiering status.
    pub fn status(&self) -> TierStatus {
        self.status.lock().clone()
    }

    fn object_key(&self, store: &ColdStore, base: u64, next: u64) -> ObjectPath {
        store
            .partition_prefix(&self.topic, self.partition)
            .join(format!("{base:020}-{next:020}.parquet"))
    }

    fn commit(&self, manifest: Manifest) -> Result<()> {
        manifest.store(&self.dir)?;
        *self.manifest.write() = manifest;
        Ok(())
    }

    /// One tiering pass over `log`: finish interrupted work, sweep orphans once, then move
    /// closed segments past the local retention (`local_retention_ms`/`_bytes` of the log's
    /// config) to the store, oldest first, and apply retention to cold objects. Skipped (an
    /// empty report) while backing off after a failure. Failures are recorded in the status
    /// and returned; local data is never deleted before its object is in the manifest.
    pub async fn run_pass(&self, log: &PartitionLog, now_ms: i64) -> Result<TierReport> {
        let Some(store) = self.store.clone() else {
            return Ok(TierReport::default());
        };
        if self.status.lock().retry_at_ms > now_ms {
            return Ok(TierReport::default());
        }
        let mut swept = self.pass.lock().await;
        let result = self.pass_inner(&store, log, now_ms, &mut swept).await;
        let mut status = self.status.lock();
        match &result {
            Ok(report) => {
                status.uploads += report.tiered as u64;
                status.consecutive_failures = 0;
                status.last_error = None;
                status.retry_at_ms = 0;
            }
            Err(e) => {
                status.consecutive_failures += 1;
                status.last_error = Some(e.to_string());
                let delay = backoff_delay(status.consecutive_failures);
                status.retry_at_ms = now_ms + delay.as_millis() as i64;
                tracing::warn!(topic = %self.topic, partition = self.partition,
                    failures = status.consecutive_failures, retry_in_ms = delay.as_millis() as u64,
                    error = %e, "cold tiering failed; local data kept");
            }
        }
        result
    }

    async fn pass_inner(
        &self,
        store: &ColdStore,
        log: &PartitionLog,
        now_ms: i64,
        swept: &mut bool,
    ) -> Result<TierReport> {
        let mut report = TierReport {
            finished: self.finish_local_deletes(log)?,
            ..TierReport::default()
        };
        if !*swept {
            report.orphans_deleted = self.sweep(store).await?;
            *swept = true;
        }
        report.expired = self.expire(store, log, now_ms).await?;
        let config = log.config();
        if config.local_retention_ms.is_none() && config.local_retention_bytes.is_none() {
            return Ok(report);
        }
        loop {
            let segments = log.segments();
            let local_bytes: u64 = segments.iter().map(|s| s.bytes).sum();
            let Some(oldest) = segments.first().filter(|s| !s.active).cloned() else {
                break;
            };
            let max_ts = oldest.max_timestamp.unwrap_or(i64::MIN);
            let expired_locally = config
                .local_retention_ms
                .is_some_and(|ms| max_ts < now_ms.saturating_sub(ms as i64));
            let over = config
                .local_retention_bytes
                .is_some_and(|limit| local_bytes > limit);
            if !(expired_locally || over) {
                break;
            }
            if config
                .retention_ms
                .is_some_and(|ms| max_ts < now_ms.saturating_sub(ms as i64))
            {
                break; // past the total retention: local retention deletes it, no upload
            }
            if oldest.next_offset <= self.end_offset() {
                // Already cold (an interrupted pass); only the local delete is missing.
                log.remove_oldest_segment(oldest.base_offset)?;
                report.finished += 1;
                continue;
            }
            let key = self.object_key(store, oldest.base_offset, oldest.next_offset);
            let object =
                upload_segment(store, &key, log, &self.topic, self.partition, &oldest).await?;
            crash_point("tier-after-upload");
            let mut manifest = self.manifest.read().clone();
            manifest.objects.push(object);
            self.commit(manifest)?;
            crash_point("tier-after-manifest");
            log.remove_oldest_segment(oldest.base_offset)?;
            report.tiered += 1;
            tracing::info!(topic = %self.topic, partition = self.partition,
                base = oldest.base_offset, next = oldest.next_offset, "segment tiered");
        }
        Ok(report)
    }

    /// Deletes local segments the manifest already covers (left by a crash after commit).
    fn finish_local_deletes(&self, log: &PartitionLog) -> Result<usize> {
        let end = self.end_offset();
        let mut n = 0;
        while let Some(oldest) = log.segments().first().filter(|s| !s.active).cloned() {
            if oldest.next_offset > end {
                break;
            }
            log.remove_oldest_segment(oldest.base_offset)?;
            n += 1;
        }
        Ok(n)
    }

    /// Deletes cold objects under the partition's prefix that the manifest does not name
    /// (files not named as Eddy names objects are not Eddy's and are left alone).
    async fn sweep(&self, store: &ColdStore) -> Result<usize> {
        let prefix = store.partition_prefix(&self.topic, self.partition);
        let listed: Vec<ObjectPath> = store
            .object_store()
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| Error::cold(format!("listing {prefix}"), e))?;
        let known: Vec<String> = self.objects().into_iter().map(|o| o.key).collect();
        let mut deleted = 0;
        for object in listed {
            if super::store::is_cold_object(&object) && !known.iter().any(|k| k == object.as_ref())
            {
                tracing::info!(object = %object, "deleting orphan cold object");
                store.delete(&object).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Retention over both tiers: drops the oldest objects while they are past `retention_ms`
    /// or the partition (cold + local) is over `retention_bytes`.
    async fn expire(&self, store: &ColdStore, log: &PartitionLog, now_ms: i64) -> Result<usize> {
        let config = log.config();
        let local_bytes: u64 = log.segments().iter().map(|s| s.bytes).sum();
        let mut expired = 0;
        loop {
            let manifest = self.manifest.read().clone();
            let Some(oldest) = manifest.objects.first() else {
                break;
            };
            let total = manifest.bytes() + local_bytes;
            let by_time = config.retention_ms.is_some_and(|ms| {
                oldest.max_timestamp.unwrap_or(i64::MIN) < now_ms.saturating_sub(ms as i64)
            });
            let by_size = config.retention_bytes.is_some_and(|limit| total > limit);
            if !(by_time || by_size) {
                break;
            }
            let key = ObjectPath::from(oldest.key.as_str());
            let mut next = manifest.clone();
            next.objects.remove(0);
            self.commit(next)?;
            crash_point("retention-after-manifest");
            store.delete(&key).await?;
            expired += 1;
        }
        Ok(expired)
    }

    /// Deletes every object of this partition (the stream is being dropped).
    pub async fn delete_all(&self) -> Result<()> {
        if let Some(store) = &self.store {
            for object in self.objects() {
                store.delete(&ObjectPath::from(object.key.as_str())).await?;
            }
        }
        Ok(())
    }
}

/// Exponential backoff with jitter for failed passes: 1 s, 2 s, 4 s, ... up to 60 s.
fn backoff_delay(failures: u32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(60))
        .with_jitter()
        .without_max_times()
        .build()
        .nth(failures.saturating_sub(1) as usize)
        .unwrap_or(Duration::from_secs(60))
}
