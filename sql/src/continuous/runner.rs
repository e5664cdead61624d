//! [`Runner`]: the task that runs one persistent query, and [`materialize`], the task that
//! keeps a source table's store up to date.
//!
//! A runner loops: read what its source partitions have committed (up to a budget per
//! partition), run the stateless steps and the aggregation on each batch, then commit the
//! chunk — checkpoint first ([`super::wal`]), then append the output to the sink, then update
//! the table's store. It sleeps on the partitions' high-watermark watches when caught up.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use eddy_catalog::StreamDef;
use eddy_storage::{EncodedFrame, Topic};
use tokio::sync::watch;

use super::aggregator::Aggregator;
use super::plan::{ContinuousPlan, Shape, source_schema, with_window_columns};
use super::wal::{Commit, CommitLayout, Marks, Wal, is_tagged, tag};
use crate::engine::{QueryState, Replicas, Status, TableStore};
use crate::exec::{PartitionTail, run_steps};
use crate::ingest::{partitioner, time_range, with_rowtime};
use crate::{Error, Result};

/// Stored batches (up to 32k rows each) read per source partition per chunk. A chunk ends in
/// one commit, and an aggregation emits each changed group once per commit: through a
/// backlog, big chunks emit (and checkpoint) far fewer rows than they read. Caught up, a
/// chunk is whatever arrived since the last one, so latency does not depend on this.
const BATCHES_PER_CHUNK: usize = 16;

/// Everything a runner needs, resolved by the query manager.
pub(crate) struct RunnerParts {
    /// The query id and this runner's part of it (`p<N>` for one source partition, `all`).
    pub id: String,
    /// The source partitions this runner reads.
    pub partitions: Vec<usize>,
    /// Its shard of the table's store.
    pub shard: usize,
    pub plan: Arc<ContinuousPlan>,
    pub source: Arc<Topic>,
    pub sink_def: StreamDef,
    pub sink: Arc<Topic>,
    /// Where the sink's rows are written.
    pub replicas: Arc<Replicas>,
    pub store: Option<Arc<TableStore>>,
    pub status: Arc<Status>,
    /// Snapshot once the checkpoint log grew this much past twice the last snapshot.
    pub snapshot_slack: u64,
}

/// One running persistent query.
pub(crate) struct Runner {
    parts: RunnerParts,
    agg: Option<Aggregator>,
    wal: Arc<Wal>,
    tails: Vec<PartitionTail>,
    marks: Marks,
    window_schema: Option<SchemaRef>,
    round_robin: AtomicU64,
    /// Checkpoint log size right after the last snapshot.
    snapshot_bytes: u64,
}

/// The offsets a new query starts from: each partition's high watermark (`latest`) or its
/// first retained offset, cold tier included (`earliest`).
pub(crate) fn start_offsets(source: &Topic, earliest: bool) -> Vec<u64> {
    source
        .partitions()
        .iter()
        .enumerate()
        .map(|(p, log)| {
            if earliest {
                source.first_offset(p as u32).unwrap_or(0)
            } else {
                log.high_watermark()
            }
        })
        .collect()
}

/// Writes a new query's first checkpoint: where it starts reading.
pub(crate) fn initialize(dir: &Path, offsets: Vec<u64>) -> Result<()> {
    let wal = Wal::open(dir)?;
    let n = offsets.len();
    wal.append(&Commit {
        marks: Marks {
            epoch: 0,
            offsets,
            stream_times: vec![None; n],
            ..Marks::default()
        },
        ..Commit::default()
    })?;
    wal.close()
}

impl Runner {
    /// Opens the query's checkpoint log in `dir`, restores its state and table store, and
    /// finishes the last commit's sink appends if a crash cut them short.
    pub(crate) async fn open(parts: RunnerParts, dir: &Path) -> Result<Runner> {
        let partitions = parts.partitions.len();
        let mut agg = match &parts.plan.shape {
            Shape::Aggregate(plan) => Some(Aggregator::new(plan.clone(), partitions)?),
            Shape::Stateless => None,
        };
        let types = |s: SchemaRef| -> Vec<DataType> {
            s.fields().iter().map(|f| f.data_type().clone()).collect()
        };
        let layout = CommitLayout {
            partitions,
            state: agg.as_ref().map(|a| a.checkpoint_types()).transpose()?,
            store: parts.store.as_ref().map(|s| types(s.schema())),
            output: types(parts.sink_def.stored_schema()),
        };
        let mut last: Option<Commit> = None;
        let store = parts.store.clone();
        let shard = parts.shard;
        // Whatever stops the replay (a damaged log, a commit of another shape) fails this
        // query only, with a reason that names it.
        let replayed = Wal::open(dir).and_then(|mut wal| {
            wal.replay(&layout, |commit| {
                if commit.marks.snapshot {
                    if let Some(a) = agg.as_mut() {
                        a.clear();
                    }
                    if let Some(s) = &store {
                        s.clear(shard);
                    }
                }
                if let Some(a) = agg.as_mut() {
                    a.restore(commit.state.as_ref(), commit.deleted.as_ref())?;
                    a.set_stream_times(commit.marks.stream_times.clone());
                    a.late = commit.marks.late;
                }
                if let Some(s) = &store {
                    if let Some(rows) = &commit.store {
                        s.apply(shard, rows)?;
                    }
                    apply_to_store(s, shard, &commit)?;
                }
                last = Some(commit);
                Ok(())
            })?;
            Ok(wal)
        });
        let wal = replayed.map_err(|e| Error::Checkpoint {
            query: parts.id.clone(),
            source: Box::new(e),
        })?;
        let Some(last) = last else {
            return Err(Error::Internal(format!(
                "query {} has no checkpoint (its first one is written when it is created)",
                parts.id
            )));
        };
        let wal = Arc::new(wal);
        // The last commit's output rows that a crash kept from the sink.
        append_outputs(&parts, &last, true).await?;
        if last.marks.offsets.len() != partitions {
            return Err(Error::Internal(format!(
                "query {}: checkpoint has {} source partitions, the task reads {partitions}",
                parts.id,
                last.marks.offsets.len()
            )));
        }
        let window_schema = match &parts.plan.shape {
            Shape::Aggregate(a) if a.windowing.is_some() => {
                Some(source_schema(&parts.plan.source, true))
            }
            _ => None,
        };
        let sql_schema = parts.plan.source.table_schema();
        let tails = parts
            .partitions
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let tail = PartitionTail::at(
                    parts.source.clone(),
                    p as u32,
                    last.marks.offsets[i],
                    sql_schema.clone(),
                )?;
                Ok(tail.with_max_batches(BATCHES_PER_CHUNK))
            })
            .collect::<Result<Vec<_>>>()?;
        let status = parts.status.clone();
        status.rows_in.store(last.marks.rows_in, Ordering::Relaxed);
        status
            .rows_out
            .store(last.marks.rows_out, Ordering::Relaxed);
        status.late.store(last.marks.late, Ordering::Relaxed);
        if let Some(s) = &parts.store {
            for (i, &p) in parts.partitions.iter().enumerate() {
                s.set_position(p, last.marks.offsets[i]);
            }
        }
        Ok(Runner {
            snapshot_bytes: wal.bytes(),
            parts,
            agg,
            wal,
            tails,
            marks: last.marks,
            window_schema,
            round_robin: AtomicU64::new(0),
        })
    }

    /// Runs until `stop` turns true or the source is dropped (or the task is aborted).
    pub(crate) async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<()> {
        self.parts.status.set(QueryState::Running);
        loop {
            if *stop.borrow() {
                self.wal.close()?;
                return Ok(());
            }
            let mut batches = Vec::new();
            for (p, tail) in self.tails.iter_mut().enumerate() {
                for b in tail
                    .read_available()
                    .await
                    .map_err(crate::Error::from_datafusion)?
                {
                    batches.push((p, b));
                }
            }
            let lag: u64 = self.tails.iter().map(|t| t.lag()).sum();
            self.parts.status.lag.store(lag, Ordering::Relaxed);
            if batches.is_empty() {
                let waits = self.tails.iter_mut().map(|t| Box::pin(t.changed()));
                tokio::select! {
                    (alive, _, _) = futures::future::select_all(waits) => {
                        if !alive {
                            return Ok(());
                        }
                    }
                    _ = stop.changed() => {}
                }
                continue;
            }
            let outputs = self.process(batches)?;
            self.commit(outputs).await?;
        }
    }

    /// Runs the chunk through the query; returns stateless output batches (with the row time
    /// as the last column).
    fn process(&mut self, batches: Vec<(usize, RecordBatch)>) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for (p, batch) in batches {
            self.marks.rows_in += batch.num_rows() as u64;
            let batch = match &self.window_schema {
                Some(schema) => with_window_columns(&batch, schema)?,
                None => batch,
            };
            let rows = run_steps(&self.parts.plan.pre, &batch)?;
            if rows.num_rows() == 0 {
                continue;
            }
            match self.agg.as_mut() {
                Some(agg) => agg.process_batch(&rows, p)?,
                None => out.push(rows),
            }
        }
        Ok(out)
    }

    /// The sink's stored rows for output columns plus row times.
    fn stored(&self, columns: &[ArrayRef], times: ArrayRef) -> Result<RecordBatch> {
        let def = &self.parts.sink_def;
        let user = columns
            .iter()
            .zip(&def.columns)
            .map(|(c, d)| {
                if c.data_type() == &d.data_type {
                    Ok(c.clone())
                } else {
                    Ok(cast(c, &d.data_type)?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        with_rowtime(def, user, Some(times))
    }

    async fn commit(&mut self, stateless: Vec<RecordBatch>) -> Result<()> {
        let mut stored = Vec::new();
        for b in &stateless {
            let n = b.num_columns() - 1;
            stored.push(self.stored(&b.columns()[..n], b.column(n).clone())?);
        }
        let (mut state, mut deleted) = (None, None);
        if let Some(agg) = self.agg.as_mut() {
            let flushed = agg.flush()?;
            state = flushed.state;
            deleted = flushed.deleted;
            self.marks.stream_times = agg.stream_times().to_vec();
            self.marks.late = agg.late;
            self.parts
                .status
                .groups
                .store(agg.groups() as u64, Ordering::Relaxed);
            if let Some((rows, times)) = flushed.output {
                stored.push(self.stored(rows.columns(), times)?);
            }
        }
        // One frame per sink partition.
        let sink = &self.parts.sink;
        let n = sink.partitions().len();
        let mut per_partition: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
        for b in &stored {
            for (p, part) in
                partitioner::split(&self.parts.sink_def, b, n as u32, &self.round_robin)?
            {
                per_partition[p as usize].push(part);
            }
        }
        let schema = self.parts.sink_def.stored_schema();
        let mut outputs = Vec::new();
        for (p, parts) in per_partition.into_iter().enumerate() {
            if !parts.is_empty() {
                outputs.push((p as u32, concat_batches(&schema, &parts)?));
            }
        }
        self.marks.epoch += 1;
        self.marks.offsets = self.tails.iter().map(|t| t.position()).collect();
        self.marks.rows_out += outputs
            .iter()
            .map(|(_, b)| b.num_rows() as u64)
            .sum::<u64>();
        self.marks.sink_marks = sink
            .partitions()
            .iter()
            .map(|l| l.high_watermark())
            .collect();
        let snapshot = (self.agg.is_some() || self.parts.store.is_some())
            && self.wal.bytes() > 2 * self.snapshot_bytes + self.parts.snapshot_slack;
        self.marks.snapshot = snapshot;
        let mut commit = Commit {
            marks: self.marks.clone(),
            state,
            deleted,
            store: None,
            outputs,
        };
        if snapshot {
            commit.state = match &self.agg {
                Some(a) => a.snapshot()?,
                None => None,
            };
            commit.deleted = None;
            commit.store = match &self.parts.store {
                Some(s) => Some(s.snapshot(self.parts.shard)?),
                None => None,
            };
        }
        let wal = self.wal.clone();
        let commit = tokio::task::spawn_blocking(move || wal.append(&commit).map(|()| commit))
            .await
            .map_err(|e| Error::Internal(format!("checkpoint task: {e}")))??;
        if snapshot {
            self.snapshot_bytes = self.wal.bytes();
        }
        eddy_storage::failpoint::crash_point("query-after-checkpoint");
        append_outputs(&self.parts, &commit, false).await?;
        eddy_storage::failpoint::crash_point("query-after-output");
        if let Some(store) = &self.parts.store {
            apply_to_store(store, self.parts.shard, &commit)?;
            for (i, &p) in self.parts.partitions.iter().enumerate() {
                store.set_position(p, self.marks.offsets[i]);
            }
        }
        let status = &self.parts.status;
        status.rows_in.store(self.marks.rows_in, Ordering::Relaxed);
        status
            .rows_out
            .store(self.marks.rows_out, Ordering::Relaxed);
        status.late.store(self.marks.late, Ordering::Relaxed);
        Ok(())
    }
}

/// A commit's effect on the table's store, the same while running and when a restart replays
/// the checkpoints: its output rows, then the expiry of the rows whose retention its stream
/// time passed. (Replaying only the rows brought windows past their retention back.)
fn apply_to_store(store: &TableStore, shard: usize, commit: &Commit) -> Result<()> {
    for (_, out) in &commit.outputs {
        store.apply(shard, out)?;
    }
    if let Some(newest) = commit.marks.stream_times.iter().flatten().max() {
        store.expire(shard, *newest);
    }
    Ok(())
}

/// Appends a commit's output to the sink, each partition's frame on its own blocking task so
/// their fdatasyncs overlap. `skip_present` (after a restart): first look for the partition's
/// tagged frame above the recorded watermark and skip it when it is already there.
async fn append_outputs(parts: &RunnerParts, commit: &Commit, skip_present: bool) -> Result<()> {
    let mut appends = Vec::with_capacity(commit.outputs.len());
    for (p, batch) in &commit.outputs {
        let Some(log) = parts.sink.partition(*p as usize).cloned() else {
            return Err(Error::Internal(format!("sink partition {p} missing")));
        };
        let (id, epoch) = (parts.id.clone(), commit.marks.epoch);
        let mark = commit
            .marks
            .sink_marks
            .get(*p as usize)
            .copied()
            .unwrap_or(0);
        let batch = tag(batch, &id, epoch)?;
        // A replay after a restart: the output may already be there (written, checkpoint
        // not yet), found by its epoch tag.
        let frame = tokio::task::spawn_blocking(move || -> Result<Option<EncodedFrame>> {
            if skip_present {
                for frame in log.reader(mark.min(log.high_watermark()))? {
                    if is_tagged(&frame?.batch, &id, epoch) {
                        return Ok(None);
                    }
                }
            }
            let (lo, hi) = time_range(&batch);
            Ok(Some(EncodedFrame::encode(&batch, lo, hi)?))
        })
        .await
        .map_err(|e| Error::Internal(format!("sink append task: {e}")))??;
        if let Some(frame) = frame {
            appends.push(
                parts
                    .replicas
                    .append_partition(&parts.sink, *p as usize, vec![frame]),
            );
        }
    }
    futures::future::try_join_all(appends).await?;
    Ok(())
}

/// Keeps a source table's store equal to the latest row per key of its topic: replays the
/// topic from its first retained offset, then follows it.
pub(crate) async fn materialize(
    topic: Arc<Topic>,
    def: StreamDef,
    store: Arc<TableStore>,
) -> Result<()> {
    let schema = def.table_schema();
    let offsets = start_offsets(&topic, true);
    let mut tails: Vec<PartitionTail> = (0..topic.partitions().len())
        .map(|p| PartitionTail::at(topic.clone(), p as u32, offsets[p], schema.clone()))
        .collect::<std::result::Result<_, _>>()?;
    loop {
        let mut any = false;
        for tail in tails.iter_mut() {
            for b in tail
                .read_available()
                .await
                .map_err(crate::Error::from_datafusion)?
            {
                store.apply(0, &b)?;
                any = true;
            }
        }
        for (p, t) in tails.iter().enumerate() {
            store.set_position(p, t.position());
        }
        if !any {
            let waits = tails.iter_mut().map(|t| Box::pin(t.changed()));
            let (alive, _, _) = futures::future::select_all(waits).await;
            if !alive {
                return Ok(());
            }
        }
    }
}
