//! Helpers shared by the log tests: batches whose ids are their offsets, and readers of them.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use eddy_storage::{LogConfig, PartitionLog, StoredBatch};

/// A batch of `rows` rows whose `id` column holds `first..first + rows`, so a row's id is the
/// offset the test expects it to get.
pub fn batch(first: u64, rows: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("label", DataType::Utf8, true),
    ]));
    let ids = Int64Array::from_iter_values((first..first + rows as u64).map(|i| i as i64));
    let labels = StringArray::from_iter(
        (first..first + rows as u64).map(|i| (i % 5 != 0).then(|| format!("row-{i}"))),
    );
    RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(labels)]).unwrap()
}

/// The ids of a stored batch, checked against its offsets: row `i` must have id `base + i`.
pub fn ids(stored: &StoredBatch) -> Vec<u64> {
    let ids = stored.batch.column(0).as_primitive::<Int64Type>();
    assert_eq!(ids.null_count(), 0);
    let ids: Vec<u64> = ids.values().iter().map(|&v| v as u64).collect();
    let expected: Vec<u64> = (stored.base_offset..stored.base_offset + ids.len() as u64).collect();
    assert_eq!(ids, expected, "rows do not match their offsets");
    ids
}

/// Every offset at or after `start` read by a fresh reader, in order.
pub fn read_offsets(log: &PartitionLog, start: u64) -> Vec<u64> {
    log.reader(start)
        .unwrap()
        .flat_map(|b| ids(&b.unwrap()))
        .filter(|&o| o >= start)
        .collect()
}

pub fn small_segments(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

/// Appends `rows.len()` batches with the given sizes and timestamp `i` for batch `i`.
pub fn fill(log: &PartitionLog, rows: &[usize]) {
    for (i, &n) in rows.iter().enumerate() {
        let next = log.high_watermark();
        let info = log.append(&batch(next, n), i as i64, i as i64).unwrap();
        assert_eq!(info.base_offset, next);
    }
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}
