//! What a column's declared SQL type ([`SqlType`]) requires of every value written to it, as
//! PostgreSQL requires it: `VARCHAR(n)` and `CHAR(n)` at most n characters (`22001`
//! otherwise; spaces past n are cut), `JSON`/`JSONB` valid JSON and `UUID` a UUID (`22P02`
//! otherwise, UUIDs kept in canonical lower-case form), `TIMESTAMP(p)`/`TIME(p)` rounded to p
//! fractional digits. A `CHAR(n)` value is kept without its trailing spaces, which
//! PostgreSQL ignores in comparisons, `length` and concatenation; the server pads it to n
//! when it sends it.
//!
//! [`enforce`] runs on every stored batch before it is appended (INSERT, COPY, a persistent
//! query's output: all of them build it with [`super::with_rowtime`]), so no write path can
//! skip it. The single-value functions are also what explicit casts (`'x'::uuid`) and bound
//! parameters use.

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, PrimitiveArray, StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
};
use eddy_catalog::{SqlType, StreamDef};

use crate::{Error, Result};

/// Checks (and where the type says so, rewrites) the user columns of a batch about to be
/// stored, in declaration order. A bad value fails the whole batch with [`Error::InRow`].
pub fn enforce(def: &StreamDef, user: &mut [ArrayRef]) -> Result<()> {
    for (c, column) in def.columns.iter().zip(user.iter_mut()) {
        let sql_type = match c.sql_type {
            // Nothing to check: not a pass over the column's values.
            None | Some(SqlType::Varchar(None) | SqlType::Text | SqlType::Precision(6)) => continue,
            Some(t) => t,
        };
        let in_row = |row: usize, source: Error| Error::InRow {
            row,
            column: c.name.clone(),
            source: Box::new(source),
        };
        let checked = match (sql_type, column.data_type()) {
            (SqlType::Precision(p), _) => round_times(column, p),
            (_, DataType::Utf8) => {
                map_strings(column.as_string::<i32>(), |v| store_value(sql_type, v))
                    .map_err(|(row, e)| in_row(row, e))?
            }
            _ => None,
        };
        if let Some(checked) = checked {
            *column = checked;
        }
    }
    Ok(())
}

/// A value as a column of `sql_type` stores it (what an INSERT or COPY of it keeps), or why
/// it cannot be stored.
pub fn store_value(sql_type: SqlType, v: &str) -> Result<Cow<'_, str>> {
    match sql_type {
        SqlType::Varchar(Some(n)) => fit(v, n as usize, "character varying").map(Cow::Borrowed),
        SqlType::Char(n) => fit(v, n as usize, "character").map(|v| v.trim_end_matches(' ').into()),
        SqlType::Json | SqlType::Jsonb => json(v).map(Cow::Borrowed),
        SqlType::Uuid => uuid(v),
        SqlType::Varchar(None) | SqlType::Text | SqlType::Precision(_) => Ok(Cow::Borrowed(v)),
    }
}

/// A value cast explicitly to `sql_type` (`x::varchar(3)`): as [`store_value`], except that
/// a string too long is cut to the length, as PostgreSQL's explicit casts do.
pub fn cast_value(sql_type: SqlType, v: &str) -> Result<Cow<'_, str>> {
    match sql_type {
        SqlType::Varchar(Some(n)) => Ok(Cow::Borrowed(prefix(v, n as usize))),
        SqlType::Char(n) => Ok(prefix(v, n as usize).trim_end_matches(' ').into()),
        other => store_value(other, v),
    }
}

/// The first `n` characters of `v`.
fn prefix(v: &str, n: usize) -> &str {
    match v.char_indices().nth(n) {
        Some((end, _)) => &v[..end],
        None => v,
    }
}

/// `v` if it has at most `n` characters; else, as PostgreSQL does, `v` cut to `n` when what
/// is cut is only spaces, and `22001` otherwise.
fn fit<'a>(v: &'a str, n: usize, type_name: &str) -> Result<&'a str> {
    if v.len() <= n {
        return Ok(v); // at most n bytes: at most n characters
    }
    let head = prefix(v, n);
    if head.len() == v.len() || v[head.len()..].bytes().all(|b| b == b' ') {
        return Ok(head);
    }
    Err(Error::ValueTooLong(format!(
        "value too long for type {type_name}({n})"
    )))
}

/// `v` if it is one JSON value.
pub fn json(v: &str) -> Result<&str> {
    match serde_json::from_str::<serde::de::IgnoredAny>(v) {
        Ok(_) => Ok(v),
        Err(e) => Err(Error::InvalidValue(format!(
            "invalid input syntax for type json: \"{}\" ({e})",
            abbreviate(v)
        ))),
    }
}

/// A UUID in any of the forms PostgreSQL reads (`a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11`, upper
/// case, in braces, without hyphens, hyphens after any group of four digits) as its
/// canonical form, lower-case `8-4-4-4-12`.
pub fn uuid(v: &str) -> Result<Cow<'_, str>> {
    let bad = || {
        Error::InvalidValue(format!(
            "invalid input syntax for type uuid: \"{}\"",
            abbreviate(v)
        ))
    };
    let inner = match v.strip_prefix('{') {
        Some(rest) => rest.strip_suffix('}').ok_or_else(bad)?,
        None => v,
    };
    let mut digits = [0u8; 32];
    let mut n = 0;
    let bytes = inner.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'-' {
            // After a group of four digits, never first, last or twice in a row.
            if n == 0 || n % 4 != 0 || i + 1 == bytes.len() || bytes[i - 1] == b'-' {
                return Err(bad());
            }
            continue;
        }
        if n == 32 || !b.is_ascii_hexdigit() {
            return Err(bad());
        }
        digits[n] = b.to_ascii_lowercase();
        n += 1;
    }
    if n != 32 {
        return Err(bad());
    }
    let canonical = format_uuid(&digits);
    Ok(if canonical == v {
        Cow::Borrowed(v)
    } else {
        Cow::Owned(canonical)
    })
}

/// 32 lower-case hex digits as `8-4-4-4-12`.
fn format_uuid(digits: &[u8; 32]) -> String {
    let mut out = String::with_capacity(36);
    for (i, &d) in digits.iter().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(d as char);
    }
    out
}

/// A UUID's 16 bytes (its binary form on the wire) as its canonical text.
pub fn uuid_from_bytes(bytes: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 32];
    for (i, b) in bytes.iter().enumerate() {
        digits[2 * i] = HEX[usize::from(b >> 4)];
        digits[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    format_uuid(&digits)
}

/// A canonical UUID's 16 bytes; `None` for anything else.
pub fn uuid_to_bytes(canonical: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = canonical.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// A long value cut for an error message.
fn abbreviate(v: &str) -> Cow<'_, str> {
    if v.len() <= 64 {
        Cow::Borrowed(v)
    } else {
        Cow::Owned(format!("{}...", prefix(v, 60)))
    }
}

/// `strings` with `f` applied to every value; `None` when `f` changed nothing.
fn map_strings(
    strings: &StringArray,
    f: impl for<'a> Fn(&'a str) -> Result<Cow<'a, str>>,
) -> std::result::Result<Option<ArrayRef>, (usize, Error)> {
    let mut changed: Option<StringBuilder> = None;
    for row in 0..strings.len() {
        if strings.is_null(row) {
            if let Some(b) = changed.as_mut() {
                b.append_null();
            }
            continue;
        }
        let v = strings.value(row);
        let out = f(v).map_err(|e| (row, e))?;
        match (&out, changed.as_mut()) {
            (Cow::Borrowed(same), None) if same.len() == v.len() => {}
            (_, Some(b)) => b.append_value(out),
            (_, None) => {
                // The first change: copy the rows before it, then go on building.
                let mut b = StringBuilder::with_capacity(strings.len(), strings.value_data().len());
                for before in 0..row {
                    b.append_option(strings.is_valid(before).then(|| strings.value(before)));
                }
                b.append_value(out);
                changed = Some(b);
            }
        }
    }
    Ok(changed.map(|mut b| Arc::new(b.finish()) as ArrayRef))
}

/// Times and timestamps rounded to `p` fractional digits of a second, half away from zero
/// (PostgreSQL's rounding); `None` when the column is not finer than that.
fn round_times(column: &ArrayRef, p: u8) -> Option<ArrayRef> {
    fn round<T: ArrowPrimitiveType<Native = i64>>(
        column: &ArrayRef,
        per_second: i64,
        p: u8,
    ) -> Option<ArrayRef> {
        let step = per_second / 10i64.pow(u32::from(p));
        if step <= 1 {
            return None;
        }
        let values = column.as_primitive::<T>();
        let rounded: PrimitiveArray<T> = values.unary(|v| round_half_away(v, step));
        Some(Arc::new(rounded.with_data_type(column.data_type().clone())) as ArrayRef)
    }
    match column.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => None,
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            round::<TimestampMillisecondType>(column, 1_000, p)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            round::<TimestampMicrosecondType>(column, 1_000_000, p)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            round::<TimestampNanosecondType>(column, 1_000_000_000, p)
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            round::<Time64MicrosecondType>(column, 1_000_000, p)
        }
        DataType::Time64(TimeUnit::Nanosecond) => {
            round::<Time64NanosecondType>(column, 1_000_000_000, p)
        }
        // Time32 in milliseconds: only columns defined before precisions were recorded,
        // which have none.
        _ => None,
    }
}

/// `v` rounded to a multiple of `step`, halves away from zero.
fn round_half_away(v: i64, step: i64) -> i64 {
    let half = step / 2;
    if v >= 0 {
        v.saturating_add(half) / step * step
    } else {
        -((v.saturating_neg().saturating_add(half)) / step * step)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::TimestampMicrosecondArray;
    use eddy_catalog::{ColumnDef, RelationKind, StreamOptions};

    use super::*;

    fn def(columns: Vec<ColumnDef>) -> StreamDef {
        StreamDef {
            name: "s".into(),
            columns,
            timestamp_column: None,
            partitions: 1,
            options: StreamOptions::default(),
            topic: "s".into(),
            storage: String::new(),
            kind: RelationKind::Stream,
            primary_key: vec![],
        }
    }

    fn typed(name: &str, data_type: DataType, t: SqlType) -> ColumnDef {
        let mut c = ColumnDef::new(name, data_type, false);
        c.sql_type = Some(t);
        c
    }

    fn strings(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn enforce_one(t: SqlType, values: &[Option<&str>]) -> Result<Vec<Option<String>>> {
        let d = def(vec![typed("c", DataType::Utf8, t)]);
        let mut user = vec![strings(values)];
        enforce(&d, &mut user)?;
        Ok(user[0]
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect())
    }

    #[test]
    fn varchar_length_is_enforced_as_postgresql_does() {
        let t = SqlType::Varchar(Some(3));
        assert_eq!(
            enforce_one(t, &[Some("abc"), None, Some("é€x"), Some("ab   ")]).unwrap(),
            [
                Some("abc".into()),
                None,
                Some("é€x".into()),
                Some("ab ".into())
            ]
        );
        let err = enforce_one(t, &[Some("ok"), Some("abcd")]).unwrap_err();
        assert!(
            matches!(&err, Error::InRow { row: 1, column, source }
                if column == "c" && matches!(source.as_ref(), Error::ValueTooLong(m)
                    if m == "value too long for type character varying(3)")),
            "{err:?}"
        );
        assert_eq!(cast_value(t, "abcdef").unwrap(), "abc");
    }

    #[test]
    fn char_is_kept_without_its_padding() {
        let t = SqlType::Char(3);
        assert_eq!(
            enforce_one(t, &[Some("a"), Some(""), Some("abc  "), Some("a  "), None]).unwrap(),
            [
                Some("a".into()),
                Some("".into()),
                Some("abc".into()),
                Some("a".into()),
                None
            ]
        );
        assert!(matches!(
            enforce_one(t, &[Some("abcd")]),
            Err(Error::InRow { .. })
        ));
        assert_eq!(cast_value(t, "abcdef").unwrap(), "abc");
        assert_eq!(cast_value(t, "x  ").unwrap(), "x");
    }

    #[test]
    fn json_must_be_json() {
        for t in [SqlType::Json, SqlType::Jsonb] {
            let ok = [Some(r#"{"a": [1, 2]}"#), Some("3"), Some("null"), None];
            assert_eq!(
                enforce_one(t, &ok).unwrap(),
                ok.map(|v| v.map(str::to_string))
            );
            for bad in ["{", "{'a': 1}", "", "1 2"] {
                let err = enforce_one(t, &[Some(bad)]).unwrap_err();
                assert!(
                    matches!(&err, Error::InRow { source, .. }
                        if matches!(source.as_ref(), Error::InvalidValue(m)
                            if m.starts_with("invalid input syntax for type json"))),
                    "{bad}: {err:?}"
                );
            }
        }
    }

    #[test]
    fn uuids_are_read_in_postgresql_forms_and_kept_canonical() {
        let canonical = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        for form in [
            canonical,
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
        ] {
            assert_eq!(uuid(form).unwrap(), canonical, "{form}");
        }
        for bad in [
            "",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
            "-a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc9-99c0b-4ef8-bb6d-6bb9bd380a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ] {
            assert!(uuid(bad).is_err(), "{bad}");
        }
        let bytes = uuid_to_bytes(canonical).unwrap();
        assert_eq!(uuid_from_bytes(&bytes), canonical);
        assert_eq!(
            enforce_one(
                SqlType::Uuid,
                &[Some("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11")]
            )
            .unwrap(),
            [Some(canonical.to_string())]
        );
    }

    #[test]
    fn timestamps_round_to_their_precision() {
        let t = DataType::Timestamp(TimeUnit::Microsecond, None);
        let d = def(vec![typed("ts", t, SqlType::Precision(3))]);
        let mut user: Vec<ArrayRef> = vec![Arc::new(TimestampMicrosecondArray::from(vec![
            Some(1_000_499),
            Some(1_000_500),
            Some(-1_000_500),
            Some(-1_000_499),
            None,
        ]))];
        enforce(&d, &mut user).unwrap();
        let got: Vec<Option<i64>> = user[0]
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect();
        assert_eq!(
            got,
            [
                Some(1_000_000),
                Some(1_001_000),
                Some(-1_001_000),
                Some(-1_000_000),
                None
            ]
        );
        // Six digits is what is stored: nothing to do.
        let mut six = user.clone();
        enforce(
            &def(vec![typed(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                SqlType::Precision(6),
            )]),
            &mut six,
        )
        .unwrap();
        assert!(Arc::ptr_eq(&six[0], &user[0]));
    }
}
