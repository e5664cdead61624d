//! [`Aggregator`]: the keyed, windowed aggregation operator of `CREATE TABLE ... AS SELECT`.
//!
//! Lifecycle, as Arroyo's operators: [`Aggregator::process_batch`] folds rows into groups,
//! [`Aggregator::flush`] emits the changed (or, for `EMIT FINAL`, the closed) groups after a
//! chunk of input and returns the state delta that the runner checkpoints with them;
//! [`Aggregator::restore`] replays checkpointed deltas.
//!
//! State lives in memory: a hash map from the group key's Arrow row-format bytes to the key's
//! open windows, each a *slot* whose values sit in the accumulators' typed vectors. Windows
//! free their slot when they close, so memory is bounded by the open windows, not by history.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array, RecordBatch,
    RecordBatchOptions, TimestampMillisecondArray, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimestampMillisecondType, UInt32Type,
};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::error::{DataFusionError, Result};
use foldhash::fast::RandomState;

use super::aggregate::{Accumulator, create};
use super::plan::{AggregatePlan, GroupCol};
use super::window::{Bounds, Windowing};
use crate::exec::run_steps;
use crate::parser::Emit;

/// `Slot::part` of a group fed by several partitions.
const MANY: u32 = u32::MAX;

struct Slot {
    key: Box<[u8]>,
    bounds: Bounds,
    /// Source partition of its rows (`MANY` when several), whose stream time closes it.
    part: u32,
    max_time: i64,
    live: bool,
    /// Changed since the last flush.
    dirty: bool,
    /// Its row was emitted to the sink (a session merge must then delete it).
    emitted: bool,
}

/// Rows of a flush: output rows (the query's output schema) and their row times.
pub(crate) struct Flushed {
    pub output: Option<(RecordBatch, ArrayRef)>,
    /// State of the slots changed since the last flush.
    pub state: Option<RecordBatch>,
    /// Keys and window starts of slots freed since the last flush.
    pub deleted: Option<RecordBatch>,
}

/// The aggregation operator.
pub(crate) struct Aggregator {
    plan: Arc<AggregatePlan>,
    windowing: Option<Windowing>,
    converter: RowConverter,
    /// Group key (row format) → its open windows' slots. foldhash: the std SipHash costs
    /// more than the rest of a row's work.
    keys: HashMap<Box<[u8]>, Vec<u32>, RandomState>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    accs: Vec<Box<dyn Accumulator>>,
    /// Close time → slots, for windowed queries.
    closing: BTreeMap<i64, Vec<u32>>,
    /// Largest event time seen per source partition.
    stream_time: Vec<Option<i64>>,
    /// Slots changed since the last flush, in first-change order.
    dirty: Vec<u32>,
    /// (key, bounds, needs a tombstone) of slots freed since the last flush.
    freed: Vec<(Box<[u8]>, Bounds, bool)>,
    /// Rows dropped because their window had closed.
    pub late: u64,
    // Scratch buffers reused across batches.
    rows: Vec<u32>,
    hits: Vec<u32>,
    windows: Vec<Bounds>,
}

impl Aggregator {
    pub(crate) fn new(plan: Arc<AggregatePlan>, partitions: usize) -> Result<Aggregator> {
        let converter = RowConverter::new(
            plan.key_types
                .iter()
                .map(|t| SortField::new(t.clone()))
                .collect(),
        )?;
        let accs = plan
            .aggs
            .iter()
            .map(|(f, _, t)| create(*f, t))
            .collect::<Result<Vec<_>>>()?;
        Ok(Aggregator {
            windowing: plan.windowing,
            plan,
            converter,
            keys: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            accs,
            closing: BTreeMap::new(),
            stream_time: vec![None; partitions],
            dirty: Vec::new(),
            freed: Vec::new(),
            late: 0,
            rows: Vec::new(),
            hits: Vec::new(),
            windows: Vec::new(),
        })
    }

    /// Number of groups (open windows) held.
    pub(crate) fn groups(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Stream time per partition.
    pub(crate) fn stream_times(&self) -> &[Option<i64>] {
        &self.stream_time
    }

    pub(crate) fn set_stream_times(&mut self, times: Vec<Option<i64>>) {
        if times.len() == self.stream_time.len() {
            self.stream_time = times;
        }
    }

    fn slot_for(&mut self, key: &[u8], bounds: Bounds, part: u32) -> u32 {
        if let Some(list) = self.keys.get(key) {
            for &s in list {
                if self.slots[s as usize].bounds.start == bounds.start {
                    return s;
                }
            }
        }
        let slot = Slot {
            key: key.into(),
            bounds,
            part,
            max_time: i64::MIN,
            live: true,
            dirty: false,
            emitted: false,
        };
        let s = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = slot;
                s
            }
            None => {
                self.slots.push(slot);
                let n = self.slots.len();
                for acc in &mut self.accs {
                    acc.resize(n);
                }
                (n - 1) as u32
            }
        };
        self.keys.entry(key.into()).or_default().push(s);
        if let Some(w) = &self.windowing {
            self.closing
                .entry(w.close_time(bounds))
                .or_default()
                .push(s);
        }
        s
    }

    fn touch(&mut self, s: u32, part: u32, t: i64) {
        let slot = &mut self.slots[s as usize];
        if slot.part != part {
            slot.part = MANY;
        }
        slot.max_time = slot.max_time.max(t);
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(s);
        }
    }

    /// Frees slot `s`; `tombstone`: its emitted row must be deleted from the table (a session
    /// merged away), not kept (a window that closed).
    fn release(&mut self, s: u32, tombstone: bool) {
        let slot = &mut self.slots[s as usize];
        if !slot.live {
            return;
        }
        slot.live = false;
        let key = std::mem::take(&mut slot.key);
        let (bounds, emitted) = (slot.bounds, slot.emitted);
        if let Some(list) = self.keys.get_mut(&key) {
            list.retain(|&x| x != s);
            if list.is_empty() {
                self.keys.remove(&key);
            }
        }
        for acc in &mut self.accs {
            acc.reset(s);
        }
        self.freed.push((key, bounds, tombstone && emitted));
        self.free.push(s);
    }

    /// Applies the accumulated (row, slot) pairs to the accumulators.
    fn apply(&mut self, args: &[Option<ArrayRef>]) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        for (acc, arg) in self.accs.iter_mut().zip(args) {
            acc.update(arg.as_ref(), &self.rows, &self.hits)?;
        }
        self.rows.clear();
        self.hits.clear();
        Ok(())
    }

    /// Folds one batch (the stateless steps' output) from source partition `part`.
    pub(crate) fn process_batch(&mut self, batch: &RecordBatch, part: usize) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let key_arrays = self
            .plan
            .keys
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(n))
            .collect::<Result<Vec<_>>>()?;
        let args = self
            .plan
            .aggs
            .iter()
            .map(|(_, a, _)| {
                a.as_ref()
                    .map(|a| a.evaluate(batch)?.into_array(n))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        let encoded = self.converter.convert_columns(&key_arrays)?;
        let times = batch.column(self.plan.rowtime_col);
        let times = times
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| DataFusionError::Internal("rowtime is not a timestamp".into()))?;
        let p32 = part as u32;
        let windowing = self.windowing;
        for i in 0..n {
            let t = times.value(i);
            let stream_time = {
                let st = &mut self.stream_time[part];
                let v = st.map_or(t, |s| s.max(t));
                *st = Some(v);
                v
            };
            let key = encoded.row(i);
            let key = key.as_ref();
            match windowing {
                None => {
                    let s = self.slot_for(key, Bounds { start: 0, end: 0 }, p32);
                    self.touch(s, p32, t);
                    self.rows.push(i as u32);
                    self.hits.push(s);
                }
                Some(w) if w.gap().is_some() => {
                    if let Some(s) = self.session_for(key, t, p32, stream_time, &w, &args)? {
                        self.touch(s, p32, t);
                        self.rows.push(i as u32);
                        self.hits.push(s);
                    }
                }
                Some(w) => {
                    let mut windows = std::mem::take(&mut self.windows);
                    w.assign(t, &mut windows);
                    for &b in &windows {
                        if w.is_closed(b, stream_time) {
                            self.late += 1;
                            continue;
                        }
                        let s = self.slot_for(key, b, p32);
                        self.touch(s, p32, t);
                        self.rows.push(i as u32);
                        self.hits.push(s);
                    }
                    self.windows = windows;
                }
            }
        }
        self.apply(&args)
    }

    /// The session of `key` that a row at `t` joins, merging sessions it bridges; `None` when
    /// the row is late.
    fn session_for(
        &mut self,
        key: &[u8],
        t: i64,
        part: u32,
        stream_time: i64,
        w: &Windowing,
        args: &[Option<ArrayRef>],
    ) -> Result<Option<u32>> {
        let gap = w.gap().unwrap_or(0);
        let mut hits: Vec<u32> = self
            .keys
            .get(key)
            .map(|list| {
                list.iter()
                    .copied()
                    .filter(|&s| {
                        let b = self.slots[s as usize].bounds;
                        t >= b.start.saturating_sub(gap) && t <= b.end.saturating_add(gap)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut merged = Bounds { start: t, end: t };
        for &s in &hits {
            let b = self.slots[s as usize].bounds;
            merged.start = merged.start.min(b.start);
            merged.end = merged.end.max(b.end);
        }
        if w.is_closed(merged, stream_time) {
            self.late += 1;
            return Ok(None);
        }
        if hits.is_empty() {
            return Ok(Some(self.slot_for(key, merged, part)));
        }
        hits.sort_by_key(|&s| self.slots[s as usize].bounds.start);
        let into = hits[0];
        if hits.len() > 1 {
            // Pending rows may target the sessions about to merge: fold them first.
            self.apply(args)?;
            for &from in &hits[1..] {
                for acc in &mut self.accs {
                    acc.merge(into, from);
                }
                let (max_time, fpart) = {
                    let f = &self.slots[from as usize];
                    (f.max_time, f.part)
                };
                let slot = &mut self.slots[into as usize];
                slot.max_time = slot.max_time.max(max_time);
                if slot.part != fpart {
                    slot.part = MANY;
                }
                self.release(from, true);
            }
        }
        let old = self.slots[into as usize].bounds;
        if old != merged {
            if old.start != merged.start && self.slots[into as usize].emitted {
                // The row keyed by the old start goes: a tombstone at the next flush.
                let key = self.slots[into as usize].key.clone();
                self.freed.push((key, old, true));
                self.slots[into as usize].emitted = false;
            }
            self.slots[into as usize].bounds = merged;
            self.closing
                .entry(w.close_time(merged))
                .or_default()
                .push(into);
        }
        Ok(Some(into))
    }

    /// The aggregate-output rows of `slots` run through the query's SELECT list.
    fn rows_of(&self, slots: &[u32]) -> Result<(RecordBatch, ArrayRef)> {
        let plan = &self.plan;
        let parser = self.converter.parser();
        let rows: Vec<_> = slots
            .iter()
            .map(|&s| parser.parse(&self.slots[s as usize].key))
            .collect();
        let keys = self.converter.convert_rows(rows)?;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(plan.agg_schema.fields().len());
        for g in &plan.group {
            columns.push(match g {
                GroupCol::Key(k) => keys[*k].clone(),
                GroupCol::WindowStart => Arc::new(Int64Array::from_iter_values(
                    slots.iter().map(|&s| self.slots[s as usize].bounds.start),
                )),
                GroupCol::WindowEnd => Arc::new(Int64Array::from_iter_values(
                    // ksqlDB's WINDOWEND: the end of a time window, the last event of a session.
                    slots.iter().map(|&s| self.slots[s as usize].bounds.end),
                )),
            });
        }
        for acc in &self.accs {
            columns.push(acc.evaluate(slots)?);
        }
        let columns = columns
            .into_iter()
            .zip(plan.agg_schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    Ok(cast(&c, f.data_type())?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(slots.len()));
        let batch = RecordBatch::try_new_with_options(plan.agg_schema.clone(), columns, &options)?;
        let out = run_steps(&plan.post, &batch)?;
        let times: ArrayRef = Arc::new(TimestampMillisecondArray::from_iter_values(
            slots.iter().map(|&s| self.slots[s as usize].max_time),
        ));
        Ok((out, times))
    }

    /// Tombstones (key and window columns set, the rest NULL) for freed emitted session rows.
    fn tombstones(
        &self,
        freed: &[(Box<[u8]>, Bounds, bool)],
    ) -> Result<Option<(RecordBatch, ArrayRef)>> {
        let gone: Vec<&(Box<[u8]>, Bounds, bool)> = freed.iter().filter(|f| f.2).collect();
        if gone.is_empty() || self.plan.emit == Emit::Final {
            return Ok(None);
        }
        let parser = self.converter.parser();
        let keys = self
            .converter
            .convert_rows(gone.iter().map(|f| parser.parse(&f.0)))?;
        let output = match self.plan.post.last() {
            Some(crate::exec::Step::Project { schema, .. }) => schema.clone(),
            _ => {
                return Err(DataFusionError::Internal(
                    "aggregation without projection".into(),
                ));
            }
        };
        let mut columns: Vec<ArrayRef> = output
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), gone.len()))
            .collect();
        for (k, &col) in self.plan.key_outputs.iter().enumerate() {
            columns[col] = cast(&keys[k], output.field(col).data_type())?;
        }
        if let Some((ws, we)) = self.plan.window_outputs {
            columns[ws] = Arc::new(Int64Array::from_iter_values(gone.iter().map(|f| f.1.start)));
            columns[we] = Arc::new(Int64Array::from_iter_values(gone.iter().map(|f| f.1.end)));
        }
        let batch = RecordBatch::try_new(output, columns)?;
        let times: ArrayRef = Arc::new(TimestampMillisecondArray::from_iter_values(
            gone.iter().map(|f| f.1.end),
        ));
        Ok(Some((batch, times)))
    }

    /// Stream time that closes slot `s`'s window: its partition's, or the least of all
    /// partitions that have data when several fed it.
    fn stream_time_of(&self, s: u32) -> Option<i64> {
        match self.slots[s as usize].part {
            MANY => self.stream_time.iter().flatten().min().copied(),
            p => self.stream_time.get(p as usize).copied().flatten(),
        }
    }

    /// Ends a chunk of input: emits changed rows (`EMIT CHANGES`) or closed windows (`EMIT
    /// FINAL`), frees closed windows, and returns the state delta since the last flush.
    pub(crate) fn flush(&mut self) -> Result<Flushed> {
        let mut emit: Vec<u32> = Vec::new();
        let changes = self.plan.emit == Emit::Changes;
        let dirty = std::mem::take(&mut self.dirty);
        if changes {
            emit.extend(
                dirty
                    .iter()
                    .copied()
                    .filter(|&s| self.slots[s as usize].live),
            );
        }
        // Close windows whose partition's stream time passed their close time.
        let mut closed = Vec::new();
        if let Some(w) = self.windowing {
            let newest = self.stream_time.iter().flatten().max().copied();
            if let Some(newest) = newest {
                let due: Vec<i64> = self.closing.range(..=newest).map(|(t, _)| *t).collect();
                for t in due {
                    let Some(list) = self.closing.remove(&t) else {
                        continue;
                    };
                    let mut keep = Vec::new();
                    for s in list {
                        let slot = &self.slots[s as usize];
                        if !slot.live || w.close_time(slot.bounds) != t {
                            continue; // stale: freed, or its session grew
                        }
                        match self.stream_time_of(s) {
                            Some(st) if w.is_closed(slot.bounds, st) => closed.push(s),
                            _ => keep.push(s),
                        }
                    }
                    if !keep.is_empty() {
                        self.closing.insert(t, keep);
                    }
                }
            }
        }
        if !changes {
            emit.extend(closed.iter().copied());
        }
        for &s in &emit {
            self.slots[s as usize].emitted = true;
        }
        // State of changed slots that stay open.
        let closed_set: std::collections::HashSet<u32> = closed.iter().copied().collect();
        let kept: Vec<u32> = dirty
            .iter()
            .copied()
            .filter(|&s| self.slots[s as usize].live && !closed_set.contains(&s))
            .collect();
        let rows = if emit.is_empty() {
            None
        } else {
            Some(self.rows_of(&emit)?)
        };
        for &s in &dirty {
            self.slots[s as usize].dirty = false;
        }
        let state = if kept.is_empty() {
            None
        } else {
            Some(self.state_of(&kept)?)
        };
        for s in closed {
            self.release(s, false);
        }
        let freed = std::mem::take(&mut self.freed);
        let tombstones = self.tombstones(&freed)?;
        let deleted = if freed.is_empty() {
            None
        } else {
            Some(RecordBatch::try_new(
                deleted_schema(),
                vec![
                    Arc::new(BinaryArray::from_iter_values(
                        freed.iter().map(|f| &f.0[..]),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        freed.iter().map(|f| f.1.start),
                    )),
                ],
            )?)
        };
        // Tombstones first, so a store applying the rows in order ends right.
        let output = match (tombstones, rows) {
            (None, r) => r,
            (t, None) => t,
            (Some(t), Some(r)) => {
                let batch =
                    datafusion::arrow::compute::concat_batches(&r.0.schema(), [&t.0, &r.0])?;
                let times = datafusion::arrow::compute::concat(&[t.1.as_ref(), r.1.as_ref()])?;
                Some((batch, times))
            }
        };
        Ok(Flushed {
            output,
            state,
            deleted,
        })
    }

    fn state_schema(&self, accs: &[Vec<ArrayRef>]) -> SchemaRef {
        let mut fields = vec![
            Field::new("key", DataType::Binary, false),
            Field::new("start", DataType::Int64, false),
            Field::new("end", DataType::Int64, false),
            Field::new("part", DataType::UInt32, false),
            Field::new("max_time", DataType::Int64, false),
            Field::new("emitted", DataType::Boolean, false),
        ];
        for (i, arrays) in accs.iter().enumerate() {
            for (j, a) in arrays.iter().enumerate() {
                fields.push(Field::new(
                    format!("acc{i}_{j}"),
                    a.data_type().clone(),
                    true,
                ));
            }
        }
        Arc::new(Schema::new(fields))
    }

    /// The column types of the state batches [`Aggregator::flush`] and
    /// [`Aggregator::snapshot`] write, and of the deleted-groups batches: what a checkpoint
    /// must hold for [`Aggregator::restore`] (checked as it is decoded, `wal::CommitLayout`).
    pub(crate) fn checkpoint_types(&self) -> Result<(Vec<DataType>, Vec<DataType>)> {
        let accs = self
            .accs
            .iter()
            .map(|a| a.state(&[]))
            .collect::<Result<Vec<_>>>()?;
        let types = |s: SchemaRef| -> Vec<DataType> {
            s.fields().iter().map(|f| f.data_type().clone()).collect()
        };
        Ok((types(self.state_schema(&accs)), types(deleted_schema())))
    }

    /// The state of `slots` as a batch: slot metadata then each accumulator's state arrays.
    fn state_of(&self, slots: &[u32]) -> Result<RecordBatch> {
        let get = |s: &u32| &self.slots[*s as usize];
        let accs = self
            .accs
            .iter()
            .map(|a| a.state(slots))
            .collect::<Result<Vec<_>>>()?;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(BinaryArray::from_iter_values(
                slots.iter().map(|s| &get(s).key[..]),
            )),
            Arc::new(Int64Array::from_iter_values(
                slots.iter().map(|s| get(s).bounds.start),
            )),
            Arc::new(Int64Array::from_iter_values(
                slots.iter().map(|s| get(s).bounds.end),
            )),
            Arc::new(UInt32Array::from_iter_values(
                slots.iter().map(|s| get(s).part),
            )),
            Arc::new(Int64Array::from_iter_values(
                slots.iter().map(|s| get(s).max_time),
            )),
            Arc::new(BooleanArray::from_iter(
                slots.iter().map(|s| Some(get(s).emitted)),
            )),
        ];
        let schema = self.state_schema(&accs);
        columns.extend(accs.into_iter().flatten());
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// The whole state, for a snapshot.
    pub(crate) fn snapshot(&self) -> Result<Option<RecordBatch>> {
        let live: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&s| self.slots[s as usize].live)
            .collect();
        if live.is_empty() {
            return Ok(None);
        }
        self.state_of(&live).map(Some)
    }

    /// Drops every group (before loading a snapshot).
    pub(crate) fn clear(&mut self) {
        let live: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&s| self.slots[s as usize].live)
            .collect();
        for s in live {
            self.release(s, false);
        }
        self.freed.clear();
        self.dirty.clear();
    }

    /// Replays a checkpointed state delta: upserts then deletions. The batches' column types
    /// are [`Aggregator::checkpoint_types`] (the checkpoint's decoder checked them), so the
    /// downcasts below hold.
    pub(crate) fn restore(
        &mut self,
        state: Option<&RecordBatch>,
        deleted: Option<&RecordBatch>,
    ) -> Result<()> {
        if let Some(d) = deleted {
            let keys = d.column(0).as_binary::<i32>();
            let starts = d.column(1).as_primitive::<Int64Type>();
            for i in 0..d.num_rows() {
                let found = self.keys.get(keys.value(i)).and_then(|list| {
                    list.iter()
                        .copied()
                        .find(|&s| self.slots[s as usize].bounds.start == starts.value(i))
                });
                if let Some(s) = found {
                    self.release(s, false);
                }
            }
            self.freed.clear();
        }
        if let Some(b) = state {
            let keys = b.column(0).as_binary::<i32>();
            let starts = b.column(1).as_primitive::<Int64Type>();
            let ends = b.column(2).as_primitive::<Int64Type>();
            let parts = b.column(3).as_primitive::<UInt32Type>();
            let max_times = b.column(4).as_primitive::<Int64Type>();
            let emitted = b.column(5).as_boolean();
            let mut slots = Vec::with_capacity(b.num_rows());
            for i in 0..b.num_rows() {
                let key = keys.value(i);
                let bounds = Bounds {
                    start: starts.value(i),
                    end: ends.value(i),
                };
                let s = self.slot_for(key, bounds, parts.value(i));
                if self.slots[s as usize].bounds != bounds {
                    self.slots[s as usize].bounds = bounds;
                    if let Some(w) = &self.windowing {
                        self.closing
                            .entry(w.close_time(bounds))
                            .or_default()
                            .push(s);
                    }
                }
                let slot = &mut self.slots[s as usize];
                slot.part = parts.value(i);
                slot.max_time = max_times.value(i);
                slot.emitted = emitted.value(i);
                slots.push(s);
            }
            let mut col = 6;
            for acc in &mut self.accs {
                let width = acc.state_width();
                acc.restore(&slots, &b.columns()[col..col + width])?;
                col += width;
            }
        }
        Ok(())
    }
}

fn deleted_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Binary, false),
        Field::new("start", DataType::Int64, false),
    ]))
}
