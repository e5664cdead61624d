//! Routing rows to partitions, as Kafka's default partitioner does.
//!
//! A keyed row goes to `(murmur2(key bytes) & 0x7fffffff) % partitions` with Kafka's seed, where
//! the key bytes are what Kafka's serializers (and ksqlDB's `KAFKA` key format) produce: UTF-8 for
//! strings, big-endian two's complement for INT and BIGINT, big-endian IEEE 754 for DOUBLE, raw
//! bytes for BYTES. So a Kafka client producing the same key lands on the same partition.
//! Rows without a key (keyless streams, NULL keys) are spread round-robin, one partition per
//! batch (Kafka's "sticky" behaviour), which keeps batches whole.

use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use eddy_catalog::StreamDef;

use crate::{Error, Result};

/// Kafka's partition for the serialized key `bytes`.
pub fn kafka_partition(bytes: &[u8], partitions: u32) -> u32 {
    (murmur2::murmur2(bytes, murmur2::KAFKA_SEED) & 0x7fff_ffff) % partitions
}

/// Splits a stored batch into `(partition, rows)` pieces.
pub fn split(
    def: &StreamDef,
    batch: &RecordBatch,
    partitions: u32,
    rr: &AtomicU64,
) -> Result<Vec<(u32, RecordBatch)>> {
    let sticky = (rr.fetch_add(1, Ordering::Relaxed) % partitions as u64) as u32;
    let Some((key_idx, _)) = def.key_column() else {
        return Ok(vec![(sticky, batch.clone())]);
    };
    if partitions == 1 {
        return Ok(vec![(0, batch.clone())]);
    }
    let keys = batch.column(key_idx);
    let mut assignment = Vec::with_capacity(batch.num_rows());
    let mut buf = Vec::new();
    for row in 0..batch.num_rows() {
        assignment.push(if keys.is_null(row) {
            sticky
        } else {
            buf.clear();
            key_bytes(keys.as_ref(), row, &mut buf)?;
            kafka_partition(&buf, partitions)
        });
    }
    let mut indices: Vec<Vec<u32>> = vec![Vec::new(); partitions as usize];
    for (row, p) in assignment.iter().enumerate() {
        indices[*p as usize].push(row as u32);
    }
    let mut out = Vec::new();
    for (p, rows) in indices.into_iter().enumerate() {
        if rows.len() == batch.num_rows() {
            return Ok(vec![(p as u32, batch.clone())]);
        }
        if !rows.is_empty() {
            out.push((
                p as u32,
                take_record_batch(batch, &UInt32Array::from(rows))?,
            ));
        }
    }
    Ok(out)
}

fn key_bytes(keys: &dyn Array, row: usize, out: &mut Vec<u8>) -> Result<()> {
    match keys.data_type() {
        DataType::Utf8 => out.extend_from_slice(keys.as_string::<i32>().value(row).as_bytes()),
        DataType::Binary => out.extend_from_slice(keys.as_binary::<i32>().value(row)),
        DataType::Int32 => {
            out.extend_from_slice(&keys.as_primitive::<Int32Type>().value(row).to_be_bytes())
        }
        DataType::Int64 => {
            out.extend_from_slice(&keys.as_primitive::<Int64Type>().value(row).to_be_bytes())
        }
        DataType::Float64 => {
            out.extend_from_slice(&keys.as_primitive::<Float64Type>().value(row).to_be_bytes())
        }
        _ => {
            // Other key types hash their canonical text form.
            let formatter = datafusion::arrow::util::display::ArrayFormatter::try_new(
                keys,
                &Default::default(),
            )
            .map_err(|e| Error::Internal(e.to_string()))?;
            out.extend_from_slice(formatter.value(row).to_string().as_bytes());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `Utils.murmur2` test vectors (`UtilsTest.testMurmur2`).
    #[test]
    fn murmur2_matches_kafka() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                murmur2::murmur2(bytes, murmur2::KAFKA_SEED) as i32,
                expected,
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn partition_is_positive_modulo() {
        for p in [1u32, 3, 7, 12] {
            assert!(kafka_partition(b"user-42", p) < p);
        }
    }
}
