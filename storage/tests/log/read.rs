//! `PartitionRead`, the one read across both tiers: every offset exactly once while segments
//! move to the cold tier underneath, ranges and projections, positions a tail resumes from,
//! and objects deleted by retention mid-read skipped without an error.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef};
use eddy_storage::tier::{ColdPartition, ColdStore};
use eddy_storage::{LogConfig, PartitionLog, PartitionRead, ReadRequest};
use tempfile::TempDir;

use crate::common::batch;

const PARTITION: u32 = 7;
const BATCHES: u64 = 40;
const ROWS: u64 = 100;

struct Fixture {
    _dirs: (TempDir, TempDir),
    log: PartitionLog,
    cold: Arc<ColdPartition>,
}

/// A partition of `BATCHES` appends of `ROWS` rows each, small segments, a local cold store,
/// and a config that tiers every closed segment.
fn fixture() -> Fixture {
    let (data, objects) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let dir = data.path().join("0");
    let config = LogConfig {
        segment_bytes: 8 * 1024,
        local_retention_bytes: Some(1),
        ..LogConfig::default()
    };
    let log = PartitionLog::open(&dir, config).unwrap();
    for i in 0..BATCHES {
        log.append(
            &batch(i * ROWS, ROWS as usize),
            1_000 + i as i64,
            1_000 + i as i64,
        )
        .unwrap();
    }
    let store = ColdStore::local(objects.path()).unwrap();
    let cold = Arc::new(ColdPartition::open(&dir, "t", PARTITION, Some(store)).unwrap());
    Fixture {
        _dirs: (data, objects),
        log,
        cold,
    }
}

/// `id`, `rowpartition`, `rowoffset` of the read schema (`id`, `label`, `rowpartition`,
/// `rowoffset`).
fn id_partition_offset(offsets: (u64, u64)) -> ReadRequest {
    ReadRequest {
        offsets,
        columns: vec![0, 2, 3],
        schema: Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("rowpartition", DataType::Int32, false),
            Field::new("rowoffset", DataType::Int64, false),
        ])),
        time: None,
    }
}

/// The offsets a read returns, checking each row's id and pseudo-columns against them.
async fn offsets_of(mut read: PartitionRead, schema: &SchemaRef) -> Vec<u64> {
    let mut out = vec![];
    while let Some(batch) = read.next_batch().await {
        let batch: RecordBatch = batch.unwrap();
        assert_eq!(batch.schema(), *schema);
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let parts = batch.column(1).as_primitive::<Int32Type>();
        let offsets = batch.column(2).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            assert_eq!(ids.value(i), offsets.value(i), "a row's id is its offset");
            assert_eq!(parts.value(i), PARTITION as i32);
            out.push(offsets.value(i) as u64);
        }
    }
    assert_eq!(
        read.position(),
        read.end(),
        "a finished read is positioned at its end"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_offset_is_read_once_while_segments_move_to_the_cold_tier() {
    let f = fixture();
    let request = id_partition_offset((0, u64::MAX));
    let schema = request.schema.clone();
    // Opened before tiering: it pinned the hot segments that tiering then deletes.
    let before = PartitionRead::open(&f.log, Some(&f.cold), PARTITION, request.clone()).unwrap();
    let report = f.cold.run_pass(&f.log, 10_000).await.unwrap();
    assert!(report.tiered >= 3, "segments tiered: {report:?}");
    let after = PartitionRead::open(&f.log, Some(&f.cold), PARTITION, request).unwrap();

    let all: Vec<u64> = (0..BATCHES * ROWS).collect();
    assert_eq!(offsets_of(before, &schema).await, all);
    let stats_after = {
        let read = PartitionRead::open(
            &f.log,
            Some(&f.cold),
            PARTITION,
            id_partition_offset((0, u64::MAX)),
        )
        .unwrap();
        let mut read = read;
        while read.next_batch().await.is_some() {}
        read.cold_stats()
            .objects
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(offsets_of(after, &schema).await, all);
    assert_eq!(stats_after, report.tiered as u64, "each object read once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_across_both_tiers_returns_exactly_its_rows_and_columns() {
    let f = fixture();
    f.cold.run_pass(&f.log, 10_000).await.unwrap();
    let cold_end = f.cold.end_offset();
    assert!(cold_end > 200 && cold_end < BATCHES * ROWS - 200);
    // Cut inside a cold object at the start, inside a hot batch at the end.
    let (start, end) = (150, cold_end + 250);
    let request = id_partition_offset((start, end));
    let schema = request.schema.clone();
    let read = PartitionRead::open(&f.log, Some(&f.cold), PARTITION, request).unwrap();
    assert_eq!(
        offsets_of(read, &schema).await,
        (start..end).collect::<Vec<_>>()
    );

    // A projection of one stored column, renamed by the caller's schema.
    let request = ReadRequest {
        offsets: (start, end),
        columns: vec![1],
        schema: Arc::new(Schema::new(vec![Field::new("name", DataType::Utf8, true)])),
        time: None,
    };
    let mut read = PartitionRead::open(&f.log, Some(&f.cold), PARTITION, request).unwrap();
    let mut labels = vec![];
    while let Some(b) = read.next_batch().await {
        let b = b.unwrap();
        let col = b.column(0).as_string::<i32>();
        labels.extend((0..b.num_rows()).map(|i| col.is_valid(i).then(|| col.value(i).to_string())));
    }
    let expected: Vec<Option<String>> = (start..end)
        .map(|i| (i % 5 != 0).then(|| format!("row-{i}")))
        .collect();
    assert_eq!(labels, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_resumes_from_the_position_without_gaps_or_repeats() {
    let f = fixture();
    f.cold.run_pass(&f.log, 10_000).await.unwrap();
    let mut seen = vec![];
    let mut next = 0;
    // Three batches per read, as a tail takes a few per wake-up; each read reopens.
    while next < BATCHES * ROWS {
        let request = id_partition_offset((next, u64::MAX));
        let schema = request.schema.clone();
        let mut read = PartitionRead::open(&f.log, Some(&f.cold), PARTITION, request).unwrap();
        for _ in 0..3 {
            let Some(b) = read.next_batch().await else {
                break;
            };
            let b = b.unwrap();
            assert_eq!(b.schema(), schema);
            let offsets = b.column(2).as_primitive::<Int64Type>();
            seen.extend(offsets.values().iter().map(|&o| o as u64));
        }
        assert!(read.position() > next, "every read makes progress");
        next = read.position();
    }
    assert_eq!(seen, (0..BATCHES * ROWS).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_deleted_by_retention_mid_read_is_skipped_not_an_error() {
    let f = fixture();
    f.cold.run_pass(&f.log, 10_000).await.unwrap();
    let objects = f.cold.objects();
    assert!(objects.len() >= 3);
    let request = id_partition_offset((0, u64::MAX));
    let schema = request.schema.clone();
    let read = PartitionRead::open(&f.log, Some(&f.cold), PARTITION, request).unwrap();
    // Retention by time now removes the objects whose rows are all older than the cutoff.
    let expired_before = objects[1].max_timestamp.unwrap() + 1;
    f.log.set_config(LogConfig {
        retention_ms: Some(1),
        ..f.log.config()
    });
    f.cold.run_pass(&f.log, expired_before + 1).await.unwrap();
    let left = f.cold.objects();
    assert!(left.len() < objects.len(), "retention deleted objects");
    let first_kept = left.first().map_or(f.cold.end_offset(), |o| o.base_offset);
    let got = offsets_of(read, &schema).await;
    assert_eq!(got, (first_kept..BATCHES * ROWS).collect::<Vec<_>>());
}
