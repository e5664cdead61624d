//! Rewrites one closed segment as one Parquet object (zstd, statistics on every column, the
//! stored columns plus `rowpartition` and `rowoffset`), uploaded in parts.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::ColdStore;
use super::manifest::ColdObject;
use crate::{Error, PartitionLog, Result, SegmentInfo, StoredBatch};

/// Rows per Parquet row group: small enough that an offset or time seek skips most of a
/// 128 MiB segment, large enough that per-group overhead stays negligible.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Name of the partition column added to cold objects.
pub const PARTITION_COLUMN: &str = "rowpartition";
/// Name of the offset column added to cold objects.
pub const OFFSET_COLUMN: &str = "rowoffset";

/// The schema of a cold object: the stored columns, then `rowpartition` and `rowoffset`.
pub fn object_schema(stored: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = stored.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(PARTITION_COLUMN, DataType::Int32, false));
    fields.push(Field::new(OFFSET_COLUMN, DataType::Int64, false));
    Arc::new(Schema::new_with_metadata(fields, stored.metadata().clone()))
}

/// Uploads `segment` of `log` (partition `partition` of `topic`) to `key`. On failure the
/// multipart upload is aborted; a crash mid-upload leaves no visible object (a multipart
/// upload only appears when completed) or an object no manifest names, swept later.
pub(crate) async fn upload_segment(
    store: &ColdStore,
    key: &Path,
    log: &PartitionLog,
    topic: &str,
    partition: u32,
    segment: &SegmentInfo,
) -> Result<ColdObject> {
    let reader = log.reader_range(segment.base_offset, segment.next_offset, None)?;
    // Segment reads are blocking file I/O: a blocking thread feeds the async upload.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<StoredBatch>>(2);
    let feeder = tokio::task::spawn_blocking(move || {
        for batch in reader {
            if tx.blocking_send(batch).is_err() {
                break;
            }
        }
    });

    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("eddy.topic".into(), topic.to_string()),
            KeyValue::new("eddy.partition".into(), partition.to_string()),
            KeyValue::new("eddy.base_offset".into(), segment.base_offset.to_string()),
            KeyValue::new("eddy.next_offset".into(), segment.next_offset.to_string()),
        ]))
        .build();
    let mut writer: Option<AsyncArrowWriter<BufWriter>> = None;
    let mut schema: Option<SchemaRef> = None;
    let mut rows = 0u64;
    let result: Result<()> = async {
        while let Some(stored) = rx.recv().await {
            let stored = stored?;
            let batch = &stored.batch;
            let schema = schema.get_or_insert_with(|| object_schema(batch.schema_ref()));
            if writer.is_none() {
                let sink = BufWriter::new(store.object_store().clone(), key.clone());
                writer = Some(
                    AsyncArrowWriter::try_new(sink, schema.clone(), Some(props.clone()))
                        .map_err(|e| Error::cold(format!("starting {key}"), e))?,
                );
            }
            let n = batch.num_rows();
            let first = stored.base_offset as i64;
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            columns.push(Arc::new(Int32Array::from_value(partition as i32, n)));
            columns.push(Arc::new(Int64Array::from_iter_values(
                first..first + n as i64,
            )));
            let out = RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| Error::Encode { source: e })?;
            if let Some(w) = writer.as_mut() {
                w.write(&out)
                    .await
                    .map_err(|e| Error::cold(format!("writing {key}"), e))?;
            }
            rows += n as u64;
        }
        Ok(())
    }
    .await;
    feeder
        .await
        .map_err(|e| Error::InvalidArgument(format!("segment reader task failed: {e}")))?;
    let Some(mut writer) = writer else {
        result?;
        return Err(Error::InvalidArgument(format!(
            "segment {} of {topic}/{partition} holds no batch",
            segment.base_offset
        )));
    };
    if let Err(e) = result {
        abort(writer).await;
        return Err(e);
    }
    // Aborted transactions' rows keep their offsets but are never read.
    let expected = segment.next_offset
        - segment.base_offset
        - log.aborted_rows(segment.base_offset, segment.next_offset);
    if rows != expected {
        abort(writer).await;
        return Err(Error::InvalidArgument(format!(
            "segment {} of {topic}/{partition}: read {rows} rows, expected {expected}",
            segment.base_offset,
        )));
    }
    // A failed completion cannot be aborted (the writer is shut down); its parts are left
    // to the bucket's lifecycle rules, and no manifest names the key.
    let metadata = writer
        .finish()
        .await
        .map_err(|e| Error::cold(format!("completing {key}"), e))?;
    let bytes = writer.bytes_written() as u64;
    Ok(ColdObject {
        key: key.to_string(),
        base_offset: segment.base_offset,
        next_offset: segment.next_offset,
        rows,
        bytes,
        min_timestamp: segment.min_timestamp,
        max_timestamp: segment.max_timestamp,
        row_groups: metadata.num_row_groups() as u32,
    })
}

/// Aborts an unfinished upload so that no parts are left behind; best effort.
async fn abort(writer: AsyncArrowWriter<BufWriter>) {
    let mut upload = writer.into_inner();
    if let Err(e) = upload.abort().await {
        tracing::warn!(error = %e, "aborting a cold upload failed");
    }
}
