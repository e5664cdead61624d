//! [`TableStore`]: a table's current rows by primary key — what pull queries read.
//!
//! Rows are kept in Arrow's row format (compact, comparable bytes) in an ordered map keyed by
//! the primary key's row-format bytes. The key of a windowed table is its key columns then
//! `windowstart`; because the row format encodes columns one after another, the bytes of the
//! key columns alone are a prefix of every window's key, so "all windows of key k" is a range
//! scan. A row whose non-key columns are all NULL is a tombstone: it deletes its key.
//!
//! The store is updated only with committed rows (after the query's checkpoint and the sink
//! append), so a pull query never sees a row that a crash could take back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int64Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use eddy_storage::Topic;
use parking_lot::RwLock;
use tokio::sync::watch;

struct Entry {
    row: Box<[u8]>,
    /// Stream time from which the row is gone (windowed tables), else `i64::MAX`.
    expire: i64,
}

/// The window columns of a windowed table, and how long its rows stay for pull queries.
#[derive(Debug, Clone, Copy)]
pub struct WindowColumns {
    /// `windowstart`, the last column of the primary key.
    pub start: usize,
    /// `windowend`.
    pub end: usize,
    /// The column a row's retention counts from: `windowstart` for time windows, `windowend`
    /// (the session's last event) for sessions, as in Kafka Streams' window and session
    /// stores (and so ksqlDB's pull queries).
    pub retained_from: usize,
    /// A row is dropped once stream time reaches `retained_from + retention`.
    pub retention: i64,
}

/// The rows of one table.
pub struct TableStore {
    schema: SchemaRef,
    key_cols: Vec<usize>,
    /// Key columns that are not `windowstart` (what a lookup by key gives).
    lookup_cols: Vec<usize>,
    /// Window columns and retention, for windowed tables.
    window: Option<WindowColumns>,
    key_converter: RowConverter,
    lookup_converter: RowConverter,
    row_converter: RowConverter,
    /// One map per shard: each task of a query writes (and snapshots, and restores) its own
    /// shard, so tasks never clear each other's rows. A key lives in one shard.
    shards: Vec<RwLock<BTreeMap<Box<[u8]>, Entry>>>,
    /// The topic whose rows feed the table (a source table's own, a query's source).
    source: Option<Arc<Topic>>,
    /// Cleared when nothing feeds the table any more (its query was terminated).
    following: std::sync::atomic::AtomicBool,
    /// Per source partition, the next offset already reflected in the rows (runners of
    /// different partitions report their own).
    positions: parking_lot::Mutex<Vec<u64>>,
    /// The sum of `positions`, published for readers that wait.
    position: watch::Sender<u64>,
}

impl std::fmt::Debug for TableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableStore")
            .field("rows", &self.len())
            .finish_non_exhaustive()
    }
}

fn converter(schema: &SchemaRef, cols: &[usize]) -> Result<RowConverter> {
    Ok(RowConverter::new(
        cols.iter()
            .map(|&c| SortField::new(schema.field(c).data_type().clone()))
            .collect(),
    )?)
}

impl TableStore {
    /// A store for rows of `schema` keyed by the columns `key_cols`; `window` for a windowed
    /// table.
    pub fn new(
        schema: SchemaRef,
        key_cols: Vec<usize>,
        window: Option<WindowColumns>,
        shards: usize,
    ) -> Result<TableStore> {
        if let Some(&c) = key_cols.iter().find(|&&c| c >= schema.fields().len()) {
            return Err(DataFusionError::Plan(format!(
                "key column {c} out of range"
            )));
        }
        let lookup_cols: Vec<usize> = key_cols
            .iter()
            .copied()
            .filter(|&c| window.is_none_or(|w| c != w.start))
            .collect();
        let all: Vec<usize> = (0..schema.fields().len()).collect();
        let row_converter = converter(&schema, &all).map_err(|e| {
            DataFusionError::Plan(format!("a table cannot hold these column types: {e}"))
        })?;
        Ok(TableStore {
            key_converter: converter(&schema, &key_cols)?,
            lookup_converter: converter(&schema, &lookup_cols)?,
            row_converter,
            schema,
            key_cols,
            lookup_cols,
            window,
            shards: (0..shards.max(1))
                .map(|_| RwLock::new(BTreeMap::new()))
                .collect(),
            source: None,
            following: std::sync::atomic::AtomicBool::new(false),
            positions: parking_lot::Mutex::new(Vec::new()),
            position: watch::Sender::new(0),
        })
    }

    /// The store follows `topic`: a read waits until the rows reflect what it had committed.
    pub(crate) fn following(mut self, topic: Arc<Topic>) -> Self {
        self.source = Some(topic);
        self.following = std::sync::atomic::AtomicBool::new(true);
        self
    }

    /// Nothing feeds the table any more: reads stop waiting for the source.
    pub(crate) fn stop_following(&self) {
        self.following
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Records how far into source partition `partition` the rows reflect.
    pub(crate) fn set_position(&self, partition: usize, next_offset: u64) {
        let mut positions = self.positions.lock();
        if positions.len() <= partition {
            positions.resize(partition + 1, 0);
        }
        positions[partition] = next_offset;
        self.position.send_replace(positions.iter().sum());
    }

    /// Waits (up to `timeout`) until the rows reflect every source row committed now, so that
    /// a pull query sees the writes acknowledged before it. Returns whether it caught up.
    pub async fn catch_up(&self, timeout: Duration) -> bool {
        let Some(topic) = &self.source else {
            return true;
        };
        if !self.following.load(std::sync::atomic::Ordering::Acquire) {
            return true;
        }
        let target: u64 = topic.partitions().iter().map(|l| l.high_watermark()).sum();
        let mut rx = self.position.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|p| *p >= target))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The table's columns.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    fn shard(&self, shard: usize) -> &RwLock<BTreeMap<Box<[u8]>, Entry>> {
        &self.shards[shard % self.shards.len()]
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether rows are per window.
    pub fn windowed(&self) -> bool {
        self.window.is_some()
    }

    /// The key columns that a lookup by key names (the primary key without `windowstart`).
    pub fn lookup_columns(&self) -> Vec<String> {
        self.lookup_cols
            .iter()
            .map(|&c| self.schema.field(c).name().clone())
            .collect()
    }

    /// Upserts the rows of `batch` (in the table's column order; extra trailing columns such as
    /// `rowtime` are ignored), deleting keys whose other columns are all NULL.
    pub fn apply(&self, shard: usize, batch: &RecordBatch) -> Result<()> {
        let n = self.schema.fields().len();
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = batch.columns()[..n].to_vec();
        let key_arrays: Vec<ArrayRef> = self.key_cols.iter().map(|&c| columns[c].clone()).collect();
        let keys = self.key_converter.convert_columns(&key_arrays)?;
        let rows = self.row_converter.convert_columns(&columns)?;
        let window_end = self.window.map(|w| w.end);
        let value_cols: Vec<&ArrayRef> = (0..n)
            .filter(|c| !self.key_cols.contains(c) && Some(*c) != window_end)
            .map(|c| &columns[c])
            .collect();
        let retained_from = self.window.map(|w| {
            (
                columns[w.retained_from]
                    .as_primitive_opt::<Int64Type>()
                    .cloned(),
                w.retention,
            )
        });
        let mut map = self.shard(shard).write();
        for i in 0..batch.num_rows() {
            let key: Box<[u8]> = keys.row(i).as_ref().into();
            let tombstone = !value_cols.is_empty() && value_cols.iter().all(|c| c.is_null(i));
            if tombstone {
                map.remove(&key);
                continue;
            }
            let expire = match &retained_from {
                Some((Some(from), r)) if from.is_valid(i) => from.value(i).saturating_add(*r),
                _ => i64::MAX,
            };
            map.insert(
                key,
                Entry {
                    row: rows.row(i).as_ref().into(),
                    expire,
                },
            );
        }
        Ok(())
    }

    /// Drops rows whose retention ended by `stream_time`. The same stream times, applied after
    /// the same rows, leave the same rows: a restart replays both.
    pub fn expire(&self, shard: usize, stream_time: i64) -> usize {
        if self.window.is_none() {
            return 0;
        }
        let mut map = self.shard(shard).write();
        let before = map.len();
        map.retain(|_, e| e.expire > stream_time);
        before - map.len()
    }

    /// Removes every row of a shard.
    pub fn clear(&self, shard: usize) {
        self.shard(shard).write().clear();
    }

    /// The rows whose lookup key equals `key` (one value per lookup column), or every row.
    pub fn scan(&self, key: Option<&[ScalarValue]>) -> Result<RecordBatch> {
        let shards: Vec<_> = self.shards.iter().map(|s| s.read()).collect();
        self.scan_maps(&shards, key)
    }

    fn scan_maps(
        &self,
        maps: &[impl std::ops::Deref<Target = BTreeMap<Box<[u8]>, Entry>>],
        key: Option<&[ScalarValue]>,
    ) -> Result<RecordBatch> {
        let parser = self.row_converter.parser();
        let mut rows = Vec::new();
        match key {
            None => {
                for map in maps {
                    rows.extend(map.values().map(|e| parser.parse(&e.row)));
                }
            }
            Some(values) => {
                let arrays = values
                    .iter()
                    .zip(&self.lookup_cols)
                    .map(|(v, &c)| v.cast_to(self.schema.field(c).data_type())?.to_array())
                    .collect::<Result<Vec<_>>>()?;
                let prefix = self.lookup_converter.convert_columns(&arrays)?;
                let prefix = prefix.row(0);
                let prefix = prefix.as_ref();
                for map in maps {
                    if self.lookup_cols.len() == self.key_cols.len() {
                        rows.extend(map.get(prefix).map(|e| parser.parse(&e.row)));
                    } else {
                        rows.extend(
                            map.range::<[u8], _>((
                                std::ops::Bound::Included(prefix),
                                std::ops::Bound::Unbounded,
                            ))
                            .take_while(|(k, _)| k.starts_with(prefix))
                            .map(|(_, e)| parser.parse(&e.row)),
                        );
                    }
                }
            }
        }
        if rows.is_empty() {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        let columns = self.row_converter.convert_rows(rows)?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// Every row of a shard, for a snapshot.
    pub fn snapshot(&self, shard: usize) -> Result<RecordBatch> {
        let map = self.shard(shard).read();
        self.scan_maps(std::slice::from_ref(&map), None)
    }
}

/// Stores of the node's tables, by table name.
#[derive(Debug, Default)]
pub struct TableStores {
    stores: RwLock<BTreeMap<String, Arc<TableStore>>>,
}

impl TableStores {
    /// A table's store.
    pub fn get(&self, name: &str) -> Option<Arc<TableStore>> {
        self.stores.read().get(name).cloned()
    }

    pub(crate) fn insert(&self, name: &str, store: Arc<TableStore>) {
        self.stores.write().insert(name.to_string(), store);
    }

    pub(crate) fn remove(&self, name: &str) {
        self.stores.write().remove(name);
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn upsert_tombstone_lookup_and_window_prefix() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("windowstart", DataType::Int64, true),
            Field::new("windowend", DataType::Int64, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let window = WindowColumns {
            start: 1,
            end: 2,
            retained_from: 1,
            retention: 100,
        };
        let store = TableStore::new(schema.clone(), vec![0, 1], Some(window), 1).unwrap();
        let batch = |k: Vec<&str>, s: Vec<i64>, n: Vec<Option<i64>>| {
            let e: Vec<i64> = s.iter().map(|s| s + 10).collect();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(k)),
                    Arc::new(Int64Array::from(s)),
                    Arc::new(Int64Array::from(e)),
                    Arc::new(Int64Array::from(n)),
                ],
            )
            .unwrap()
        };
        store
            .apply(
                0,
                &batch(
                    vec!["a", "a", "ab", "b"],
                    vec![0, 10, 0, 0],
                    vec![Some(1), Some(2), Some(3), Some(4)],
                ),
            )
            .unwrap();
        store
            .apply(0, &batch(vec!["a"], vec![0], vec![Some(5)]))
            .unwrap();
        assert_eq!(store.len(), 4);
        let a = store.scan(Some(&[ScalarValue::from("a")])).unwrap();
        // "ab" shares the bytes of "a" only up to the row format's terminator: not a match.
        assert_eq!(a.num_rows(), 2);
        assert_eq!(a.column(3).as_primitive::<Int64Type>().values(), &[5, 2]);
        // A tombstone: the columns besides the key and window bounds are NULL.
        store
            .apply(0, &batch(vec!["b"], vec![0], vec![None]))
            .unwrap();
        assert_eq!(store.len(), 3);
        // Time windows count their retention from their start: the windows starting at 0
        // are gone at stream time 100, the one starting at 10 at 110.
        assert_eq!(store.expire(0, 99), 0);
        assert_eq!(store.expire(0, 100), 2);
        assert_eq!(store.len(), 1);
        assert_eq!(store.expire(0, 110), 1);
    }
}
