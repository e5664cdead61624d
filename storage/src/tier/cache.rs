//! A small in-memory cache of recently read cold data: Parquet footers (decoded metadata) of
//! every store, and byte ranges of objects in remote stores.
//!
//! Footers are read on every query of an object, so caching them saves a round trip and a
//! decode per object per query. Byte ranges are cached only for remote stores (for a local
//! directory the OS page cache already does this, and a second copy would only cost memory).
//! Objects are immutable (a key always holds the same segment's rows), so entries never go
//! stale; they are dropped by size (least recently used first, as `quick_cache` decides).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

/// Bytes of object ranges kept for remote stores.
pub const RANGE_CACHE_BYTES: u64 = 128 << 20;
/// Footers kept (one per object).
pub const METADATA_ENTRIES: usize = 4096;

/// An object's key and a byte range of it.
type RangeKey = (Arc<str>, u64, u64);

#[derive(Clone)]
struct ByteWeight;

impl Weighter<RangeKey, Bytes> for ByteWeight {
    fn weight(&self, _key: &RangeKey, value: &Bytes) -> u64 {
        value.len() as u64 + 64
    }
}

/// The cache of one cold store.
pub(crate) struct ColdCache {
    metadata: Cache<Arc<str>, Arc<ParquetMetaData>>,
    ranges: Option<Cache<RangeKey, Bytes, ByteWeight>>,
}

impl std::fmt::Debug for ColdCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdCache")
            .field("footers", &self.metadata.len())
            .field("ranges", &self.ranges.as_ref().map(|r| r.weight()))
            .finish()
    }
}

impl ColdCache {
    /// A cache; `remote` adds the byte-range cache.
    pub(crate) fn new(remote: bool) -> ColdCache {
        ColdCache {
            metadata: Cache::new(METADATA_ENTRIES),
            ranges: remote.then(|| {
                // Estimated items: ranges are column chunks, typically around 1 MiB.
                Cache::with_weighter(
                    (RANGE_CACHE_BYTES >> 20) as usize * 4,
                    RANGE_CACHE_BYTES,
                    ByteWeight,
                )
            }),
        }
    }
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

/// Parquet's view of one cold object, reading through the cache.
pub(crate) struct CachedObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    key: Arc<str>,
    size: u64,
    cache: Arc<ColdCache>,
}

impl CachedObjectReader {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        size: u64,
        cache: Arc<ColdCache>,
    ) -> Self {
        let key: Arc<str> = Arc::from(path.as_ref());
        Self {
            store,
            path,
            key,
            size,
            cache,
        }
    }

    async fn fetch(&self, range: Range<u64>) -> parquet::errors::Result<Bytes> {
        let Some(ranges) = &self.cache.ranges else {
            return self
                .store
                .get_range(&self.path, range)
                .await
                .map_err(external);
        };
        let k = (self.key.clone(), range.start, range.end);
        if let Some(hit) = ranges.get(&k) {
            return Ok(hit);
        }
        let bytes = self
            .store
            .get_range(&self.path, range)
            .await
            .map_err(external)?;
        ranges.insert(k, bytes.clone());
        Ok(bytes)
    }
}

impl AsyncFileReader for CachedObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move { self.fetch(range).await }.boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            if self.cache.ranges.is_none() {
                return self
                    .store
                    .get_ranges(&self.path, &ranges)
                    .await
                    .map_err(external);
            }
            let mut out = Vec::with_capacity(ranges.len());
            for range in ranges {
                out.push(self.fetch(range).await?);
            }
            Ok(out)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            if let Some(hit) = self.cache.metadata.get(&self.key) {
                return Ok(hit);
            }
            let size = self.size;
            let metadata = Arc::new(
                ParquetMetaDataReader::new()
                    .with_arrow_reader_options(options)
                    .load_and_finish(&mut *self, size)
                    .await?,
            );
            self.cache
                .metadata
                .insert(self.key.clone(), metadata.clone());
            Ok(metadata)
        }
        .boxed()
    }
}
