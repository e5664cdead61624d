//! Streamed reads of cold objects: only the requested columns, only the row groups whose
//! offset and time statistics can overlap the request, one batch at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, Int64Array, RecordBatch};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::statistics::Statistics;

use super::ColdStore;
use super::cache::CachedObjectReader;
use super::manifest::ColdObject;
use super::upload::OFFSET_COLUMN;
use crate::{Error, Result};

/// What to read from one cold object.
#[derive(Debug, Clone)]
pub struct ColdRequest {
    /// Columns of the object schema to return, in this order.
    pub columns: Vec<usize>,
    /// Offsets `[start, end)` to return; rows outside are cut off.
    pub offsets: (u64, u64),
    /// Skip row groups whose statistics on column `.0` (an INT64/timestamp column) cannot
    /// overlap `[.1, .2]` (inclusive). Rows are not filtered, only row groups skipped.
    pub time: Option<(usize, i64, i64)>,
    /// Rows per returned batch (at most).
    pub batch_size: usize,
}

/// Counters of cold reads, shared with whoever reports them (a query's metrics).
#[derive(Debug, Default)]
pub struct ColdReadStats {
    pub objects: AtomicU64,
    pub row_groups_read: AtomicU64,
    pub row_groups_pruned: AtomicU64,
    pub bytes_fetched: AtomicU64,
}

/// Reads `object` from `store`: a stream of batches holding `request.columns`, rows in offset
/// order within `request.offsets`.
pub async fn read_object(
    store: &ColdStore,
    object: &ColdObject,
    request: ColdRequest,
    stats: Arc<ColdReadStats>,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let path = Path::from(object.key.as_str());
    let reader = CachedObjectReader::new(
        store.object_store().clone(),
        path.clone(),
        object.bytes,
        store.cache().clone(),
    );
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| classify(&path, "opening", e))?;
    let schema = builder.schema().clone();
    let offset_index = schema.index_of(OFFSET_COLUMN).map_err(|_| {
        Error::cold(
            format!("reading {path}"),
            format!("object has no {OFFSET_COLUMN} column"),
        )
    })?;
    let metadata = builder.metadata().clone();
    let (start, end) = request.offsets;
    let time_name = request
        .time
        .and_then(|(i, _, _)| schema.fields().get(i).map(|f| f.name().clone()));
    let mut keep = Vec::new();
    for (i, rg) in metadata.row_groups().iter().enumerate() {
        let offsets_overlap = match min_max(rg, OFFSET_COLUMN) {
            Some((lo, hi)) => (hi as u64) >= start && (lo as u64) < end,
            None => true,
        };
        let time_overlaps = match (&time_name, request.time) {
            (Some(name), Some((_, t0, t1))) => {
                min_max(rg, name).is_none_or(|(lo, hi)| hi >= t0 && lo <= t1)
            }
            _ => true,
        };
        if offsets_overlap && time_overlaps {
            keep.push(i);
        }
    }
    stats.objects.fetch_add(1, Ordering::Relaxed);
    stats
        .row_groups_read
        .fetch_add(keep.len() as u64, Ordering::Relaxed);
    stats.row_groups_pruned.fetch_add(
        (metadata.num_row_groups() - keep.len()) as u64,
        Ordering::Relaxed,
    );
    stats.bytes_fetched.fetch_add(
        keep.iter()
            .map(|&i| metadata.row_group(i).compressed_size() as u64)
            .sum(),
        Ordering::Relaxed,
    );

    // Decode the requested columns, plus the offset column when the range cuts the object
    // (to cut at the range's ends); a request covering the whole object needs no cutting.
    let covers = start <= object.base_offset && end >= object.next_offset;
    let mut roots: Vec<usize> = request.columns.clone();
    if !covers {
        roots.push(offset_index);
    }
    roots.sort_unstable();
    roots.dedup();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
    let positions: Vec<usize> = request
        .columns
        .iter()
        .map(|c| roots.binary_search(c).unwrap_or_default())
        .collect();
    let offset_position = (!covers).then(|| roots.binary_search(&offset_index).unwrap_or_default());
    let stream = builder
        .with_projection(mask)
        .with_row_groups(keep)
        .with_batch_size(request.batch_size)
        .build()
        .map_err(|e| classify(&path, "reading", e))?;
    Ok(stream
        .map_err(move |e| classify(&path, "reading", e))
        .try_filter_map(move |batch| {
            let cut = match offset_position {
                Some(position) => cut(&batch, position, start, end),
                None => Ok(Some(batch)),
            };
            let out = cut.and_then(|b| {
                b.map(|b| {
                    b.project(&positions)
                        .map_err(|e| Error::Encode { source: e })
                })
                .transpose()
            });
            futures::future::ready(out)
        })
        .boxed())
}

/// The rows of `batch` with offsets in `[start, end)`; offsets are contiguous and ascending.
fn cut(
    batch: &RecordBatch,
    offset_col: usize,
    start: u64,
    end: u64,
) -> Result<Option<RecordBatch>> {
    let offsets = batch
        .column(offset_col)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| Error::InvalidArgument(format!("{OFFSET_COLUMN} is not BIGINT")))?;
    if offsets.is_empty() {
        return Ok(None);
    }
    let first = offsets.value(0) as u64;
    let rows = offsets.len() as u64;
    let lo = start.max(first);
    let hi = end.min(first + rows);
    if lo >= hi {
        return Ok(None);
    }
    Ok(Some(batch.slice((lo - first) as usize, (hi - lo) as usize)))
}

/// Min and max of a top-level INT64 column's statistics in a row group.
fn min_max(rg: &RowGroupMetaData, column: &str) -> Option<(i64, i64)> {
    let chunk = rg
        .columns()
        .iter()
        .find(|c| c.column_path().parts() == [column.to_string()])?;
    match chunk.statistics()? {
        Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        _ => None,
    }
}

/// A Parquet error as this crate's error: a missing object is [`Error::ColdObjectGone`].
fn classify(path: &Path, doing: &str, e: parquet::errors::ParquetError) -> Error {
    if let parquet::errors::ParquetError::External(inner) = &e
        && let Some(object_store::Error::NotFound { .. }) = inner.downcast_ref()
    {
        return Error::ColdObjectGone {
            key: path.to_string(),
        };
    }
    Error::cold(format!("{doing} {path}"), e)
}
