//! The `eddy` system schema: the storage of every stream as SQL rows, snapshotted when a query
//! is planned.
//!
//! - `eddy.streams`: one row per stream and table: its kind, topic, storage name (its
//!   directory under `topics/` and its cold-tier prefix), partitions, and `status` (`online`,
//!   or `offline` with the `reason`: a stream that could not be opened at start);
//! - `eddy.segments`: one row per local segment and per cold object, with its tier, offset
//!   range, rows, bytes and time range;
//! - `eddy.tiering`: one row per partition with its cold-tier status (uploads, failures in a
//!   row, the last error, when the next attempt is due);
//! - `eddy.partitions`: one row per partition with its Raft group as this node sees it:
//!   leader, term, replicas, the replicas in sync and the furthest follower's lag (known on
//!   the leader only, NULL elsewhere), the high watermark and the log's start;
//! - `eddy.nodes`: one row per voter: its id, peer address, whether this node's connection
//!   to it is up, and how many milliseconds ago it last sent this node a message.
//!
//! They are read-only: an `INSERT` is refused (`0A000`) rather than written into the snapshot.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use crate::Engine;

/// The `eddy` schema.
#[derive(Debug)]
pub struct SystemSchema {
    engine: Arc<Engine>,
}

impl SystemSchema {
    /// The system schema over `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

const TABLES: [&str; 5] = ["streams", "segments", "tiering", "partitions", "nodes"];

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let table = match name {
            "streams" => self.streams()?,
            "segments" => self.segments()?,
            "tiering" => self.tiering()?,
            "partitions" => self.partitions()?,
            "nodes" => self.nodes()?,
            _ => return Ok(None),
        };
        Ok(Some(Arc::new(ReadOnly(table))))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}

/// A snapshot that can be scanned but not written: `MemTable` alone would accept an `INSERT`
/// into the throw-away snapshot and report it done. Writes get `TableProvider`'s defaults
/// (not implemented).
#[derive(Debug)]
struct ReadOnly(Arc<dyn TableProvider>);

#[async_trait]
impl TableProvider for ReadOnly {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        self.0.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.0.supports_filters_pushdown(filters)
    }
}

/// Voter ids as text: `1,2,3`.
fn id_list(ids: &[u64]) -> String {
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    ids.join(",")
}

impl SystemSchema {
    fn partitions(&self) -> Result<Arc<dyn TableProvider>> {
        let (mut stream, mut partition, mut leader, mut term) = (vec![], vec![], vec![], vec![]);
        let (mut replicas, mut in_sync, mut hw, mut start, mut lag) =
            (vec![], vec![], vec![], vec![], vec![]);
        for def in self.engine.catalog().streams() {
            let Ok((_, topic)) = self.engine.stream(&def.name) else {
                continue;
            };
            let Some(groups) = self.engine.replicas().status_of(topic.storage()) else {
                continue;
            };
            for ((p, log), g) in topic.partitions().iter().enumerate().zip(groups) {
                stream.push(def.name.clone());
                partition.push(p as i32);
                leader.push(g.leader.map(|l| l as i64));
                term.push(g.term as i64);
                replicas.push(id_list(&g.voters));
                in_sync.push(g.in_sync().map(|ids| id_list(&ids)));
                hw.push(log.high_watermark() as i64);
                start.push(log.log_start_offset() as i64);
                lag.push(g.follower_lag().map(|l| l as i64));
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("stream", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, false),
            Field::new("leader", DataType::Int64, true),
            Field::new("term", DataType::Int64, false),
            Field::new("replicas", DataType::Utf8, false),
            Field::new("in_sync", DataType::Utf8, true),
            Field::new("high_watermark", DataType::Int64, false),
            Field::new("log_start", DataType::Int64, false),
            Field::new("follower_lag", DataType::Int64, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(stream)),
            Arc::new(Int32Array::from(partition)),
            Arc::new(Int64Array::from(leader)),
            Arc::new(Int64Array::from(term)),
            Arc::new(StringArray::from(replicas)),
            Arc::new(StringArray::from(in_sync)),
            Arc::new(Int64Array::from(hw)),
            Arc::new(Int64Array::from(start)),
            Arc::new(Int64Array::from(lag)),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    fn nodes(&self) -> Result<Arc<dyn TableProvider>> {
        let transport = self.engine.replicas().transport();
        let me = transport.node_id();
        let peers: Vec<(u64, String)> = self
            .engine
            .config()
            .cluster
            .peers
            .iter()
            .map(|(id, addr)| (*id, addr.clone()))
            .collect();
        let state = |id: u64| match () {
            _ if id == me => "self",
            _ if transport.connected(id) => "up",
            _ => "down",
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("peer_address", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("last_heard_ms", DataType::Int64, true),
        ]));
        let heard = |id: u64| transport.last_heard(id).map(|d| d.as_millis() as i64);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                peers.iter().map(|(id, _)| *id as i64),
            )),
            Arc::new(StringArray::from_iter_values(
                peers.iter().map(|(_, a)| a.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                peers.iter().map(|(id, _)| state(*id)),
            )),
            Arc::new(Int64Array::from_iter(
                peers.iter().map(|(id, _)| heard(*id)),
            )),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    fn streams(&self) -> Result<Arc<dyn TableProvider>> {
        let offline = self.engine.offline();
        let defs = self.engine.catalog().streams();
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("topic", DataType::Utf8, false),
            Field::new("storage", DataType::Utf8, false),
            Field::new("partitions", DataType::Int32, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, true),
        ]));
        let status = |d: &eddy_catalog::StreamDef| match offline.get(&d.name) {
            Some(_) => "offline",
            None => "online",
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                defs.iter().map(|d| d.name.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                defs.iter().map(|d| d.kind_name()),
            )),
            Arc::new(StringArray::from_iter_values(
                defs.iter().map(|d| d.topic.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                defs.iter().map(|d| d.storage_name()),
            )),
            Arc::new(Int32Array::from_iter_values(
                defs.iter().map(|d| d.partitions as i32),
            )),
            Arc::new(StringArray::from_iter_values(defs.iter().map(status))),
            Arc::new(StringArray::from_iter(
                defs.iter()
                    .map(|d| offline.get(&d.name).map(|o| o.reason.clone())),
            )),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    fn segments(&self) -> Result<Arc<dyn TableProvider>> {
        let mut rows = SegmentRows::default();
        for def in self.engine.catalog().streams() {
            let Ok((_, topic)) = self.engine.stream(&def.name) else {
                continue;
            };
            for (p, log) in topic.partitions().iter().enumerate() {
                if let Some(cold) = topic.cold(p) {
                    for o in cold.objects() {
                        rows.push(&def.name, p, "cold", o.base_offset, o.next_offset, o.bytes);
                        rows.min_ts.push(o.min_timestamp);
                        rows.max_ts.push(o.max_timestamp);
                        rows.location.push(o.key.clone());
                        rows.active.push(false);
                    }
                }
                for s in log.segments() {
                    rows.push(&def.name, p, "local", s.base_offset, s.next_offset, s.bytes);
                    rows.min_ts.push(s.min_timestamp);
                    rows.max_ts.push(s.max_timestamp);
                    rows.location.push(s.path.display().to_string());
                    rows.active.push(s.active);
                }
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("stream", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, false),
            Field::new("tier", DataType::Utf8, false),
            Field::new("base_offset", DataType::Int64, false),
            Field::new("end_offset", DataType::Int64, false),
            Field::new("rows", DataType::Int64, false),
            Field::new("bytes", DataType::Int64, false),
            Field::new("min_rowtime", ts(), true),
            Field::new("max_rowtime", ts(), true),
            Field::new("active", DataType::Boolean, false),
            Field::new("location", DataType::Utf8, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(rows.stream)),
            Arc::new(Int32Array::from(rows.partition)),
            Arc::new(StringArray::from(rows.tier)),
            Arc::new(Int64Array::from(rows.base)),
            Arc::new(Int64Array::from(rows.end)),
            Arc::new(Int64Array::from(rows.rows)),
            Arc::new(Int64Array::from(rows.bytes)),
            Arc::new(TimestampMillisecondArray::from(rows.min_ts)),
            Arc::new(TimestampMillisecondArray::from(rows.max_ts)),
            Arc::new(BooleanArray::from(rows.active)),
            Arc::new(StringArray::from(rows.location)),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    fn tiering(&self) -> Result<Arc<dyn TableProvider>> {
        let (mut stream, mut partition, mut store) = (vec![], vec![], vec![]);
        let (mut cold_objects, mut cold_bytes, mut local_segments, mut local_bytes) =
            (vec![], vec![], vec![], vec![]);
        let (mut uploads, mut failures, mut last_error, mut retry_at) =
            (vec![], vec![], vec![], vec![]);
        for def in self.engine.catalog().streams() {
            let Ok((_, topic)) = self.engine.stream(&def.name) else {
                continue;
            };
            for (p, log) in topic.partitions().iter().enumerate() {
                let Some(cold) = topic.cold(p) else { continue };
                let status = cold.status();
                let segments = log.segments();
                stream.push(def.name.clone());
                partition.push(p as i32);
                store.push(cold.store().map(|s| s.url().to_string()));
                cold_objects.push(cold.objects().len() as i64);
                cold_bytes.push(cold.bytes() as i64);
                local_segments.push(segments.len() as i64);
                local_bytes.push(segments.iter().map(|s| s.bytes as i64).sum::<i64>());
                uploads.push(status.uploads as i64);
                failures.push(i64::from(status.consecutive_failures));
                last_error.push(status.last_error);
                retry_at.push((status.retry_at_ms > 0).then_some(status.retry_at_ms));
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("stream", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, false),
            Field::new("cold_store", DataType::Utf8, true),
            Field::new("cold_objects", DataType::Int64, false),
            Field::new("cold_bytes", DataType::Int64, false),
            Field::new("local_segments", DataType::Int64, false),
            Field::new("local_bytes", DataType::Int64, false),
            Field::new("uploads", DataType::Int64, false),
            Field::new("consecutive_failures", DataType::Int64, false),
            Field::new("last_error", DataType::Utf8, true),
            Field::new("retry_at", ts(), true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(stream)),
            Arc::new(Int32Array::from(partition)),
            Arc::new(StringArray::from(store)),
            Arc::new(Int64Array::from(cold_objects)),
            Arc::new(Int64Array::from(cold_bytes)),
            Arc::new(Int64Array::from(local_segments)),
            Arc::new(Int64Array::from(local_bytes)),
            Arc::new(Int64Array::from(uploads)),
            Arc::new(Int64Array::from(failures)),
            Arc::new(StringArray::from(last_error)),
            Arc::new(TimestampMillisecondArray::from(retry_at)),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

#[derive(Default)]
struct SegmentRows {
    stream: Vec<String>,
    partition: Vec<i32>,
    tier: Vec<&'static str>,
    base: Vec<i64>,
    end: Vec<i64>,
    rows: Vec<i64>,
    bytes: Vec<i64>,
    min_ts: Vec<Option<i64>>,
    max_ts: Vec<Option<i64>>,
    active: Vec<bool>,
    location: Vec<String>,
}

impl SegmentRows {
    fn push(
        &mut self,
        stream: &str,
        p: usize,
        tier: &'static str,
        base: u64,
        end: u64,
        bytes: u64,
    ) {
        self.stream.push(stream.to_string());
        self.partition.push(p as i32);
        self.tier.push(tier);
        self.base.push(base as i64);
        self.end.push(end as i64);
        self.rows.push((end - base) as i64);
        self.bytes.push(bytes as i64);
    }
}
