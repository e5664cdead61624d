//! Routing rows to partitions, as Kafka's default partitioner does.
//!
//! A keyed row goes to `(murmur2(key bytes) & 0x7fffffff) % partitions` with Kafka's seed, where
//! the key bytes are what Kafka's serializers (and ksqlDB's `KAFKA` key format) produce: UTF-8 for
//! strings, big-endian two's complement for INT and BIGINT, big-endian IEEE 754 for DOUBLE, raw
//! bytes for BYTES. So a Kafka client producing the same key lands on the same partition.
//! Rows without a key (keyless streams, NULL keys) are spread round-robin, one partition per
//! batch (Kafka's "sticky" behaviour), which keeps batches whole.
//!
//! Every other key type hashes the UTF-8 of its value's canonical text, Arrow's display form
//! (`true`, `12.50`, `2026-11-23T10:00:00.123456`, `2026-11-23T10:00:00+00:00`,
//! `10:00:00.5`, `[1, 2]`): `SMALLINT`, `TINYINT`, `REAL`, `BOOLEAN`, `DECIMAL`, `DATE`,
//! `TIME`, `TIMESTAMP`, `TIMESTAMPTZ`, `ARRAY`, `STRUCT`. The text types (`VARCHAR(n)`,
//! `CHAR(n)` without its padding, `TEXT`, `UUID` in canonical lower-case form, which is what
//! Kafka's `UUIDSerializer` writes) are strings. `partition_of_each_key_type_is_pinned` pins each,
//! since a change would move stored keys to other partitions. A key whose equal values can
//! have different bytes cannot be placed by a hash and is refused when the stream is created
//! ([`check_key_type`]): `JSON`/`JSONB` (kept as written: `{"a":1}` and `{ "a": 1 }`) and
//! `MAP` (kept in the order written).

use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use eddy_catalog::{ColumnDef, SqlType, StreamDef};

use crate::parser::types::type_display;
use crate::{Error, Result};

/// Refuses a KEY or PRIMARY KEY column whose equal values could hash differently (see the
/// module doc), so that rows with one key always share a partition.
pub fn check_key_type(column: &ColumnDef) -> Result<()> {
    fn has_map(t: &DataType) -> bool {
        match t {
            DataType::Map(..) => true,
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                has_map(f.data_type())
            }
            DataType::Struct(fields) => fields.iter().any(|f| has_map(f.data_type())),
            _ => false,
        }
    }
    let why = match column.sql_type {
        Some(SqlType::Json | SqlType::Jsonb) => {
            "JSON is kept as written, so equal values can differ in their bytes"
        }
        _ if has_map(&column.data_type) => {
            "a MAP is kept in the order written, so equal maps can differ in their bytes"
        }
        _ => return Ok(()),
    };
    Err(Error::Unsupported(format!(
        "column \"{}\" of type {} cannot be a key: {why}, and rows are placed in partitions \
         by a hash of the key's bytes",
        column.name,
        type_display(&column.data_type, column.declared())
    )))
}

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
    let assignment = assign(batch.column(key_idx).as_ref(), partitions, sticky)?;
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

/// The partition of each row of `keys`: `sticky` for a NULL key. The column is downcast once,
/// then one loop per key type hashes its values' serialized bytes.
fn assign(keys: &dyn Array, partitions: u32, sticky: u32) -> Result<Vec<u32>> {
    let hash = |bytes: &[u8]| kafka_partition(bytes, partitions);
    Ok(match keys.data_type() {
        DataType::Utf8 => keys
            .as_string::<i32>()
            .iter()
            .map(|v| v.map_or(sticky, |s| hash(s.as_bytes())))
            .collect(),
        DataType::Binary => keys
            .as_binary::<i32>()
            .iter()
            .map(|v| v.map_or(sticky, hash))
            .collect(),
        DataType::Int32 => keys
            .as_primitive::<Int32Type>()
            .iter()
            .map(|v| v.map_or(sticky, |x| hash(&x.to_be_bytes())))
            .collect(),
        DataType::Int64 => keys
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map_or(sticky, |x| hash(&x.to_be_bytes())))
            .collect(),
        DataType::Float64 => keys
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.map_or(sticky, |x| hash(&x.to_be_bytes())))
            .collect(),
        _ => {
            // Other key types hash their canonical text form (Arrow's display format).
            let formatter = ArrayFormatter::try_new(keys, &FormatOptions::default())?;
            let mut text = String::new();
            let mut out = Vec::with_capacity(keys.len());
            for row in 0..keys.len() {
                out.push(if keys.is_null(row) {
                    sticky
                } else {
                    text.clear();
                    formatter.value(row).write(&mut text)?;
                    hash(text.as_bytes())
                });
            }
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array,
        Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, ListArray, StringArray,
        Time32MillisecondArray, Time64MicrosecondArray, TimestampMicrosecondArray,
        TimestampMillisecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Schema};
    use eddy_catalog::{ColumnDef, RelationKind, StreamOptions};

    use super::*;

    /// The partition each row of `keys` goes to among `partitions`, through [`split`] (NULL
    /// keys go to the sticky partition, which is `u32::MAX` here).
    fn partitions_of(keys: ArrayRef, partitions: u32) -> Vec<u32> {
        let n = keys.len();
        let def = StreamDef {
            name: "s".into(),
            columns: vec![
                ColumnDef::new("k", keys.data_type().clone(), true),
                ColumnDef::new("row", DataType::Int64, false),
            ],
            timestamp_column: None,
            partitions,
            options: StreamOptions::default(),
            topic: "s".into(),
            storage: String::new(),
            kind: RelationKind::Stream,
            primary_key: vec![],
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", keys.data_type().clone(), true),
            Field::new("row", DataType::Int64, false),
        ]));
        let rows = Arc::new(Int64Array::from_iter_values(0..n as i64));
        let batch = RecordBatch::try_new(schema, vec![keys, rows]).unwrap();
        // The sticky partition for keyless rows is `partitions - 1`: rr starts there.
        let rr = AtomicU64::new(u64::from(partitions - 1));
        let mut out = vec![u32::MAX; n];
        for (p, piece) in split(&def, &batch, partitions, &rr).unwrap() {
            for row in piece.column(1).as_primitive::<Int64Type>().values() {
                out[*row as usize] = p;
            }
        }
        out
    }

    /// Where keys of every key type land, pinned: stored data stays where it was written, so
    /// these must never change (a change moves keys to other partitions).
    #[test]
    fn partition_of_each_key_type_is_pinned() {
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            Some(vec![]),
            None,
            Some(vec![Some(-7), None]),
        ]);
        let cases: Vec<(&str, ArrayRef)> = vec![
            (
                "utf8",
                Arc::new(StringArray::from(vec![
                    Some("user-42"),
                    Some(""),
                    None,
                    Some("é"),
                    Some("a-little-bit-long-string"),
                ])),
            ),
            (
                "binary",
                Arc::new(BinaryArray::from(vec![
                    Some(&b"\x00\xff"[..]),
                    Some(&b""[..]),
                    None,
                    Some(&b"abc"[..]),
                ])),
            ),
            (
                "int32",
                Arc::new(Int32Array::from(vec![
                    Some(0),
                    Some(1),
                    None,
                    Some(-1),
                    Some(i32::MAX),
                    Some(i32::MIN),
                    Some(42),
                ])),
            ),
            (
                "int64",
                Arc::new(Int64Array::from(vec![
                    Some(0),
                    Some(1),
                    None,
                    Some(-1),
                    Some(i64::MAX),
                    Some(i64::MIN),
                    Some(1_700_000_000_000),
                ])),
            ),
            (
                "float64",
                Arc::new(Float64Array::from(vec![
                    Some(0.0),
                    Some(-0.0),
                    None,
                    Some(1.5),
                    Some(f64::NAN),
                    Some(-1e300),
                ])),
            ),
            (
                "boolean",
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
            ),
            (
                "decimal(10,2)",
                Arc::new(
                    Decimal128Array::from(vec![Some(150), Some(-1), None, Some(0), Some(123456)])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
            ),
            (
                "timestamp(ms)",
                Arc::new(TimestampMillisecondArray::from(vec![
                    Some(0),
                    Some(1_700_000_000_123),
                    None,
                    Some(-1),
                ])),
            ),
            (
                "date32",
                Arc::new(Date32Array::from(vec![
                    Some(0),
                    Some(19_000),
                    None,
                    Some(-365),
                ])),
            ),
            (
                "time32(ms)",
                Arc::new(Time32MillisecondArray::from(vec![
                    Some(0),
                    Some(45_296_789),
                    None,
                    Some(86_399_999),
                ])),
            ),
            ("list<int32>", Arc::new(list)),
            (
                "int16",
                Arc::new(Int16Array::from(vec![
                    Some(0),
                    Some(-1),
                    None,
                    Some(i16::MAX),
                ])),
            ),
            (
                "int8",
                Arc::new(Int8Array::from(vec![
                    Some(0),
                    Some(-1),
                    None,
                    Some(i8::MIN),
                ])),
            ),
            (
                "float32",
                Arc::new(Float32Array::from(vec![
                    Some(1.5),
                    Some(-0.0),
                    None,
                    Some(1e30),
                ])),
            ),
            (
                "timestamp(us)",
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(0),
                    Some(1_700_000_000_123_000),
                    None,
                    Some(1_700_000_000_123_456),
                ])),
            ),
            (
                "timestamp(us, utc)",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(0),
                        Some(1_700_000_000_123_000),
                        None,
                        Some(1_700_000_000_123_456),
                    ])
                    .with_timezone("+00:00"),
                ),
            ),
            (
                "time64(us)",
                Arc::new(Time64MicrosecondArray::from(vec![
                    Some(0),
                    Some(45_296_789_000),
                    None,
                    Some(45_296_789_123),
                ])),
            ),
        ];
        let mut got = String::new();
        for (name, keys) in cases {
            for partitions in [7u32, 12] {
                got += &format!(
                    "{name} /{partitions}: {:?}\n",
                    partitions_of(keys.clone(), partitions)
                );
            }
        }
        // Written by the per-row partitioner this replaced (NULL keys: the sticky partition,
        // 6 and 11 here); the types from `int16` on were pinned when they became column
        // types (2026-12-01). A microsecond timestamp or time with whole milliseconds has the
        // text, so the partition, of the millisecond one.
        let pinned = "
            utf8 /7: [1, 2, 6, 4, 1]
            utf8 /12: [4, 9, 11, 3, 8]
            binary /7: [4, 2, 6, 4]
            binary /12: [1, 9, 11, 3]
            int32 /7: [6, 2, 6, 6, 5, 2, 5]
            int32 /12: [4, 0, 11, 5, 3, 6, 0]
            int64 /7: [6, 1, 6, 3, 6, 1, 2]
            int64 /12: [11, 0, 11, 5, 8, 4, 7]
            float64 /7: [6, 1, 6, 6, 2, 6]
            float64 /12: [11, 4, 11, 3, 7, 9]
            boolean /7: [6, 3, 6]
            boolean /12: [10, 11, 11]
            decimal(10,2) /7: [3, 1, 6, 5, 0]
            decimal(10,2) /12: [3, 7, 11, 9, 8]
            timestamp(ms) /7: [3, 2, 6, 4]
            timestamp(ms) /12: [4, 4, 11, 8]
            date32 /7: [5, 1, 6, 2]
            date32 /12: [1, 1, 11, 2]
            time32(ms) /7: [3, 0, 6, 1]
            time32(ms) /12: [4, 3, 11, 3]
            list<int32> /7: [5, 4, 6, 1]
            list<int32> /12: [2, 5, 11, 5]
            int16 /7: [3, 6, 6, 6]
            int16 /12: [8, 3, 11, 3]
            int8 /7: [3, 6, 6, 0]
            int8 /12: [8, 3, 11, 8]
            float32 /7: [1, 6, 6, 4]
            float32 /12: [9, 0, 11, 10]
            timestamp(us) /7: [3, 2, 6, 4]
            timestamp(us) /12: [4, 4, 11, 8]
            timestamp(us, utc) /7: [1, 4, 6, 1]
            timestamp(us, utc) /12: [5, 11, 11, 0]
            time64(us) /7: [3, 0, 6, 2]
            time64(us) /12: [4, 3, 11, 1]
        ";
        let pinned: String = pinned
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(got, pinned);
        // And one by hand: Kafka's partition of the UTF-8 key "user-42" among 7.
        assert_eq!(kafka_partition(b"user-42", 7), 1);
    }

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
