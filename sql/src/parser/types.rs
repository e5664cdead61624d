//! Column types as users type them (ksqlDB's and PostgreSQL's spellings), and their Arrow
//! representation plus the [`SqlType`] a column records where Arrow alone does not say it.
//!
//! | SQL | Arrow | SQL type recorded |
//! |---|---|---|
//! | `BOOLEAN`, `BOOL` | `Boolean` | |
//! | `TINYINT` | `Int8` (sent as PostgreSQL's `smallint`) | |
//! | `SMALLINT`, `INT2` | `Int16` | |
//! | `INT`, `INTEGER`, `INT4` | `Int32` | |
//! | `BIGINT`, `INT8` | `Int64` | |
//! | `REAL`, `FLOAT4`, `FLOAT(1..24)` | `Float32` | |
//! | `DOUBLE [PRECISION]`, `FLOAT8`, `FLOAT`, `FLOAT(25..53)` | `Float64` | |
//! | `DECIMAL(p, s)`, `NUMERIC(p, s)`, `DEC` (`(p)` is `(p, 0)`; none is `(38, 10)`) | `Decimal128(p, s)` | |
//! | `VARCHAR`, `STRING`, `CHARACTER VARYING` | `Utf8` | `Varchar(None)` |
//! | `VARCHAR(n)` | `Utf8` | `Varchar(n)`: longer values are refused (22001) |
//! | `CHAR(n)`, `CHARACTER(n)` (`CHAR` is `CHAR(1)`) | `Utf8` | `Char(n)`: blank-padded |
//! | `TEXT` | `Utf8` | `Text` |
//! | `JSON`, `JSONB` | `Utf8` (the JSON text, checked on write) | `Json`, `Jsonb` |
//! | `UUID` | `Utf8` (canonical lower-case text) | `Uuid` |
//! | `BYTES`, `BYTEA` | `Binary` | |
//! | `TIMESTAMP [(p)] [WITHOUT TIME ZONE]` | `Timestamp(µs)`, as PostgreSQL | `Precision(p)` if given |
//! | `TIMESTAMPTZ [(p)]`, `TIMESTAMP [(p)] WITH TIME ZONE` | `Timestamp(µs, "+00:00")` | `Precision(p)` if given |
//! | `DATE` | `Date32` | |
//! | `TIME [(p)] [WITHOUT TIME ZONE]` | `Time64(µs)` | `Precision(p)` if given |
//! | `ARRAY<T>`, `T[]` | `List<T>` | |
//! | `MAP<K, V>` | `Map<K, V>` | |
//! | `STRUCT<name T, ...>` | `Struct` | |
//!
//! Columns defined before 2026-12-01 keep the types they were stored with: `TIMESTAMP`
//! and `TIME` in milliseconds (ksqlDB's precision; shown as `TIMESTAMP(3)`, `TIME(3)`).
//! Inside `ARRAY`, `MAP` and `STRUCT` only types without a recorded SQL type (and plain
//! `VARCHAR`/`TEXT`) are accepted: a `VARCHAR(3)` element would not be checked.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use eddy_catalog::SqlType;

use crate::{Error, Result};

/// The time zone of `TIMESTAMPTZ` values: they are instants, kept and compared in UTC (the
/// session's `TimeZone`), as DataFusion's `now()` gives them.
pub const UTC: &str = "+00:00";

/// PostgreSQL's largest `VARCHAR(n)` / `CHAR(n)`.
const MAX_LENGTH: u64 = 10_485_760;

/// A column type as declared: its Arrow type and what its SQL type adds.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnType {
    /// How values are stored.
    pub data_type: DataType,
    /// The declared SQL type, where the Arrow type does not say it all.
    pub sql_type: Option<SqlType>,
}

impl ColumnType {
    fn plain(data_type: DataType) -> Self {
        ColumnType {
            data_type,
            sql_type: None,
        }
    }
}

/// Parses a type name at the parser's position.
pub fn parse_type_name(p: &mut Parser) -> Result<ColumnType> {
    let mut pending_gt = 0;
    let t = parse_type(p, &mut pending_gt, false)?;
    if pending_gt != 0 {
        return Err(Error::Syntax("unbalanced '>' in type".into()));
    }
    Ok(t)
}

/// The column type spelled `spelling` alone (`VARCHAR(3)`, `INT[]`, `JSONB`).
pub fn parse_column_type(spelling: &str) -> Result<ColumnType> {
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(spelling)?;
    let t = parse_type_name(&mut p)?;
    if p.peek_token().token != Token::EOF {
        return Err(Error::Syntax(format!("\"{spelling}\" is not a type")));
    }
    Ok(t)
}

fn expect_gt(p: &mut Parser, pending_gt: &mut usize) -> Result<()> {
    if *pending_gt > 0 {
        *pending_gt -= 1;
        return Ok(());
    }
    match p.next_token().token {
        Token::Gt => Ok(()),
        Token::ShiftRight => {
            *pending_gt += 1;
            Ok(())
        }
        other => Err(Error::Syntax(format!(
            "expected '>' in type, found: {other}"
        ))),
    }
}

fn expect_lt(p: &mut Parser) -> Result<()> {
    match p.next_token().token {
        Token::Lt => Ok(()),
        other => Err(Error::Syntax(format!(
            "expected '<' in type, found: {other}"
        ))),
    }
}

fn number(p: &mut Parser) -> Result<u64> {
    Ok(p.parse_literal_uint()?)
}

/// An optional `(n)`.
fn modifier(p: &mut Parser) -> Result<Option<u64>> {
    if !p.consume_token(&Token::LParen) {
        return Ok(None);
    }
    let n = number(p)?;
    p.expect_token(&Token::RParen)?;
    Ok(Some(n))
}

/// Consumes the words `words` if they come next (all of them), and says whether they did.
fn words(p: &mut Parser, words: &[&str]) -> bool {
    if words
        .iter()
        .enumerate()
        .all(|(i, w)| super::word_is(p, i, w))
    {
        for _ in words {
            p.next_token();
        }
        return true;
    }
    false
}

/// A string length modifier, 1 to PostgreSQL's maximum.
fn length(name: &str, n: Option<u64>) -> Result<Option<u32>> {
    match n {
        None => Ok(None),
        Some(n) if (1..=MAX_LENGTH).contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(Error::Invalid(format!(
            "length for type {name} must be between 1 and {MAX_LENGTH}, got {n}"
        ))),
    }
}

/// A fractional-seconds precision, 0 to 6 (microseconds, PostgreSQL's finest).
fn precision(name: &str, p: Option<u64>) -> Result<Option<SqlType>> {
    match p {
        None => Ok(None),
        Some(p) if p <= 6 => Ok(Some(SqlType::Precision(p as u8))),
        Some(p) => Err(Error::Invalid(format!(
            "{name}({p}) precision must be between 0 and 6"
        ))),
    }
}

fn text(sql_type: SqlType) -> ColumnType {
    ColumnType {
        data_type: DataType::Utf8,
        sql_type: Some(sql_type),
    }
}

fn parse_type(p: &mut Parser, pending_gt: &mut usize, nested: bool) -> Result<ColumnType> {
    let tok = p.next_token();
    let Token::Word(word) = tok.token else {
        return Err(Error::Syntax(format!(
            "expected a type name, found: {}",
            tok.token
        )));
    };
    let name = word.value.to_uppercase();
    let mut t = match name.as_str() {
        "BOOLEAN" | "BOOL" => ColumnType::plain(DataType::Boolean),
        "TINYINT" => ColumnType::plain(DataType::Int8),
        "SMALLINT" | "INT2" => ColumnType::plain(DataType::Int16),
        "INT" | "INTEGER" | "INT4" => ColumnType::plain(DataType::Int32),
        "BIGINT" | "INT8" => ColumnType::plain(DataType::Int64),
        "REAL" | "FLOAT4" => ColumnType::plain(DataType::Float32),
        "FLOAT" => ColumnType::plain(match modifier(p)? {
            None => DataType::Float64,
            Some(1..=24) => DataType::Float32,
            Some(25..=53) => DataType::Float64,
            Some(bits) => {
                return Err(Error::Invalid(format!(
                    "precision for type float must be between 1 and 53 bits, got {bits}"
                )));
            }
        }),
        "DOUBLE" | "FLOAT8" => {
            words(p, &["PRECISION"]);
            ColumnType::plain(DataType::Float64)
        }
        "DECIMAL" | "NUMERIC" | "DEC" => {
            let t = if p.consume_token(&Token::LParen) {
                let precision = number(p)?;
                let scale = if p.consume_token(&Token::Comma) {
                    number(p)?
                } else {
                    0
                };
                p.expect_token(&Token::RParen)?;
                if precision == 0 || precision > 38 || scale > precision {
                    return Err(Error::Invalid(format!(
                        "DECIMAL precision must be 1..=38 and scale 0..=precision, got ({precision}, {scale})"
                    )));
                }
                DataType::Decimal128(precision as u8, scale as i8)
            } else {
                DataType::Decimal128(38, 10)
            };
            ColumnType::plain(t)
        }
        "VARCHAR" => text(SqlType::Varchar(length("character varying", modifier(p)?)?)),
        "STRING" => text(SqlType::Varchar(None)),
        "CHARACTER" | "CHAR" if words(p, &["VARYING"]) => {
            text(SqlType::Varchar(length("character varying", modifier(p)?)?))
        }
        "CHARACTER" | "CHAR" | "BPCHAR" => {
            let n = length("character", modifier(p)?)?.unwrap_or(1);
            text(SqlType::Char(n))
        }
        "TEXT" => text(SqlType::Text),
        "JSON" => text(SqlType::Json),
        "JSONB" => text(SqlType::Jsonb),
        "UUID" => text(SqlType::Uuid),
        "BYTES" | "BYTEA" => ColumnType::plain(DataType::Binary),
        "TIMESTAMP" | "TIMESTAMPTZ" => {
            let sql_type = precision(&name, modifier(p)?)?;
            let zoned = if words(p, &["WITH", "TIME", "ZONE"]) {
                true
            } else {
                words(p, &["WITHOUT", "TIME", "ZONE"]);
                name == "TIMESTAMPTZ"
            };
            ColumnType {
                data_type: DataType::Timestamp(TimeUnit::Microsecond, zoned.then(|| UTC.into())),
                sql_type,
            }
        }
        "DATE" => ColumnType::plain(DataType::Date32),
        "TIME" | "TIMETZ" => {
            let sql_type = precision(&name, modifier(p)?)?;
            if name == "TIMETZ" || words(p, &["WITH", "TIME", "ZONE"]) {
                return Err(Error::Unsupported(
                    "TIME WITH TIME ZONE is not supported (PostgreSQL advises against it): \
                     use TIMESTAMPTZ"
                        .into(),
                ));
            }
            words(p, &["WITHOUT", "TIME", "ZONE"]);
            ColumnType {
                data_type: DataType::Time64(TimeUnit::Microsecond),
                sql_type,
            }
        }
        "ARRAY" => {
            expect_lt(p)?;
            let item = parse_type(p, pending_gt, true)?;
            expect_gt(p, pending_gt)?;
            ColumnType::plain(list_of(item.data_type))
        }
        "MAP" => {
            expect_lt(p)?;
            let key = parse_type(p, pending_gt, true)?;
            p.expect_token(&Token::Comma)?;
            let value = parse_type(p, pending_gt, true)?;
            expect_gt(p, pending_gt)?;
            let entries = Fields::from(vec![
                Field::new("key", key.data_type, false),
                Field::new("value", value.data_type, true),
            ]);
            ColumnType::plain(DataType::Map(
                Arc::new(Field::new("entries", DataType::Struct(entries), false)),
                false,
            ))
        }
        "STRUCT" => {
            expect_lt(p)?;
            let mut fields = Vec::new();
            loop {
                let field_name = p.parse_identifier()?;
                let t = parse_type(p, pending_gt, true)?;
                fields.push(Field::new(
                    super::normalize_ident(&field_name),
                    t.data_type,
                    true,
                ));
                if *pending_gt > 0 || !p.consume_token(&Token::Comma) {
                    break;
                }
            }
            expect_gt(p, pending_gt)?;
            ColumnType::plain(DataType::Struct(Fields::from(fields)))
        }
        _ => {
            return Err(Error::UndefinedObject(format!(
                "type \"{}\" does not exist",
                word.value
            )));
        }
    };
    // PostgreSQL's array spelling, `INT[]`, `TEXT[][]` (a size, `INT[3]`, is ignored, as
    // PostgreSQL ignores it).
    while *pending_gt == 0 && p.consume_token(&Token::LBracket) {
        if !p.consume_token(&Token::RBracket) {
            number(p)?;
            p.expect_token(&Token::RBracket)?;
        }
        check_element(&t)?;
        t = ColumnType::plain(list_of(t.data_type));
    }
    if nested {
        check_element(&t)?;
    }
    Ok(t)
}

/// Refuses, inside an ARRAY, MAP or STRUCT, a type whose SQL type a write would have to
/// check (nothing checks elements yet).
fn check_element(t: &ColumnType) -> Result<()> {
    match t.sql_type {
        None | Some(SqlType::Varchar(None) | SqlType::Text) => Ok(()),
        Some(other) => Err(Error::Unsupported(format!(
            "{} inside ARRAY, MAP or STRUCT is not supported yet: its values would not be \
             checked (use {})",
            type_display(&t.data_type, Some(other)),
            type_display(&t.data_type, None)
        ))),
    }
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// The SQL spelling of a column type, as `DESCRIBE` shows it: `sql_type` where there is one
/// (`VARCHAR(10)`, `JSON`, `TIMESTAMP(3)`), else the Arrow type's (`TIMESTAMP(3)` for the
/// millisecond timestamps of columns defined before 2026-12-01 and for `rowtime`).
pub fn type_display(t: &DataType, sql_type: Option<SqlType>) -> String {
    let with_precision = |name: &str, unit: &TimeUnit| match (sql_type, unit) {
        (Some(SqlType::Precision(p)), _) => format!("{name}({p})"),
        (_, TimeUnit::Second) => format!("{name}(0)"),
        (_, TimeUnit::Millisecond) => format!("{name}(3)"),
        _ => name.to_string(),
    };
    match (t, sql_type.filter(|s| s.applies_to(t))) {
        (DataType::Utf8, Some(SqlType::Varchar(None))) => "VARCHAR".into(),
        (DataType::Utf8, Some(SqlType::Varchar(Some(n)))) => format!("VARCHAR({n})"),
        (DataType::Utf8, Some(SqlType::Char(n))) => format!("CHAR({n})"),
        (DataType::Utf8, Some(SqlType::Text)) => "TEXT".into(),
        (DataType::Utf8, Some(SqlType::Json)) => "JSON".into(),
        (DataType::Utf8, Some(SqlType::Jsonb)) => "JSONB".into(),
        (DataType::Utf8, Some(SqlType::Uuid)) => "UUID".into(),
        (DataType::Boolean, _) => "BOOLEAN".into(),
        (DataType::Int8, _) => "TINYINT".into(),
        (DataType::Int16, _) => "SMALLINT".into(),
        (DataType::Int32, _) => "INTEGER".into(),
        (DataType::Int64, _) => "BIGINT".into(),
        (DataType::Float32, _) => "REAL".into(),
        (DataType::Float64, _) => "DOUBLE".into(),
        (DataType::Decimal128(p, s), _) => format!("DECIMAL({p}, {s})"),
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, _) => "VARCHAR".into(),
        (DataType::Binary | DataType::LargeBinary | DataType::BinaryView, _) => "BYTES".into(),
        (DataType::Timestamp(unit, None), _) => with_precision("TIMESTAMP", unit),
        (DataType::Timestamp(unit, Some(_)), _) => with_precision("TIMESTAMPTZ", unit),
        (DataType::Date32, _) => "DATE".into(),
        (DataType::Time32(unit) | DataType::Time64(unit), _) => with_precision("TIME", unit),
        (DataType::List(f), _) => format!("ARRAY<{}>", type_display(f.data_type(), None)),
        (DataType::Map(entries, _), _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!(
                    "MAP<{}, {}>",
                    type_display(kv[0].data_type(), None),
                    type_display(kv[1].data_type(), None)
                )
            }
            other => other.to_string(),
        },
        (DataType::Struct(fields), _) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("{} {}", f.name(), type_display(f.data_type(), None)))
                .collect();
            format!("STRUCT<{}>", inner.join(", "))
        }
        (other, _) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

    use super::*;

    fn parse(s: &str) -> Result<ColumnType> {
        let d = PostgreSqlDialect {};
        let mut p = Parser::new(&d).try_with_sql(s)?;
        let t = parse_type_name(&mut p)?;
        assert_eq!(p.peek_token().token, Token::EOF, "{s}: not all read");
        Ok(t)
    }

    fn shown(s: &str) -> String {
        let t = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        type_display(&t.data_type, t.sql_type)
    }

    #[test]
    fn scalar_and_nested_types() {
        assert_eq!(parse("bigint").unwrap().data_type, DataType::Int64);
        assert_eq!(
            parse("DECIMAL(10, 2)").unwrap().data_type,
            DataType::Decimal128(10, 2)
        );
        assert_eq!(shown("ARRAY<ARRAY<INT>>"), "ARRAY<ARRAY<INTEGER>>");
        assert_eq!(
            shown("MAP<STRING, ARRAY<DOUBLE>>"),
            "MAP<VARCHAR, ARRAY<DOUBLE>>"
        );
        assert_eq!(
            shown("STRUCT<a INT, b STRUCT<c VARCHAR>>"),
            "STRUCT<a INTEGER, b STRUCT<c VARCHAR>>"
        );
    }

    /// Every spelling of the type table in the module doc, as DESCRIBE shows it back.
    #[test]
    fn postgresql_spellings_are_their_types() {
        for (sql, display) in [
            ("SMALLINT", "SMALLINT"),
            ("int2", "SMALLINT"),
            ("TINYINT", "TINYINT"),
            ("REAL", "REAL"),
            ("FLOAT4", "REAL"),
            ("FLOAT(24)", "REAL"),
            ("FLOAT", "DOUBLE"),
            ("FLOAT(53)", "DOUBLE"),
            ("DOUBLE PRECISION", "DOUBLE"),
            ("NUMERIC", "DECIMAL(38, 10)"),
            ("NUMERIC(5)", "DECIMAL(5, 0)"),
            ("DEC(5,2)", "DECIMAL(5, 2)"),
            ("VARCHAR(10)", "VARCHAR(10)"),
            ("CHARACTER VARYING(3)", "VARCHAR(3)"),
            ("character varying", "VARCHAR"),
            ("CHAR(3)", "CHAR(3)"),
            ("CHARACTER", "CHAR(1)"),
            ("TEXT", "TEXT"),
            ("STRING", "VARCHAR"),
            ("JSON", "JSON"),
            ("JSONB", "JSONB"),
            ("UUID", "UUID"),
            ("TIMESTAMP", "TIMESTAMP"),
            ("TIMESTAMP(3)", "TIMESTAMP(3)"),
            ("TIMESTAMP(0) WITHOUT TIME ZONE", "TIMESTAMP(0)"),
            ("TIMESTAMPTZ", "TIMESTAMPTZ"),
            ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"),
            ("TIMESTAMP(6) WITH TIME ZONE", "TIMESTAMPTZ(6)"),
            ("TIME", "TIME"),
            ("TIME(2) WITHOUT TIME ZONE", "TIME(2)"),
            ("INT[]", "ARRAY<INTEGER>"),
            ("TEXT[][]", "ARRAY<ARRAY<VARCHAR>>"),
            ("VARCHAR[3]", "ARRAY<VARCHAR>"),
        ] {
            assert_eq!(shown(sql), display, "{sql}");
        }
        assert_eq!(
            parse("TIMESTAMPTZ").unwrap().data_type,
            DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
        );
        assert_eq!(
            parse("TIME").unwrap().data_type,
            DataType::Time64(TimeUnit::Microsecond)
        );
    }

    #[test]
    fn bad_types_are_refused() {
        assert!(matches!(parse("blob"), Err(Error::UndefinedObject(m)) if m.contains("\"blob\"")));
        for bad in [
            "DECIMAL(50, 2)",
            "VARCHAR(0)",
            "CHAR(10485761)",
            "TIMESTAMP(7)",
            "FLOAT(54)",
        ] {
            assert!(matches!(parse(bad), Err(Error::Invalid(_))), "{bad}");
        }
        for unsupported in [
            "TIME WITH TIME ZONE",
            "TIMETZ",
            "ARRAY<VARCHAR(3)>",
            "JSON[]",
            "MAP<VARCHAR, UUID>",
            "STRUCT<a TIMESTAMP(3)>",
        ] {
            assert!(
                matches!(parse(unsupported), Err(Error::Unsupported(_))),
                "{unsupported}"
            );
        }
    }
}
