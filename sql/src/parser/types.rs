//! ksqlDB column types and their Arrow representation.
//!
//! | SQL | Arrow |
//! |---|---|
//! | `BOOLEAN` | `Boolean` |
//! | `INT`, `INTEGER` | `Int32` |
//! | `BIGINT` | `Int64` |
//! | `DOUBLE` | `Float64` |
//! | `DECIMAL(p, s)` | `Decimal128(p, s)` |
//! | `VARCHAR`, `STRING`, `TEXT` | `Utf8` |
//! | `BYTES`, `BYTEA` | `Binary` |
//! | `TIMESTAMP` | `Timestamp(ms)` (ksqlDB's millisecond precision) |
//! | `DATE` | `Date32` |
//! | `TIME` | `Time32(ms)` |
//! | `ARRAY<T>` | `List<T>` |
//! | `MAP<K, V>` | `Map<K, V>` |
//! | `STRUCT<name T, ...>` | `Struct` |
//!
//! A few PostgreSQL spellings (`INT4`, `INT8`, `FLOAT8`, `DOUBLE PRECISION`, `BOOL`, `NUMERIC`)
//! are accepted too, so that tools that generate Postgres DDL work.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::{Error, Result};

/// Parses a type name at the parser's position. `pending_gt` carries a `>` left over from a
/// `>>` token that closed two nested types at once.
pub fn parse_type_name(p: &mut Parser) -> Result<DataType> {
    let mut pending_gt = 0;
    let t = parse_type(p, &mut pending_gt)?;
    if pending_gt != 0 {
        return Err(Error::Syntax("unbalanced '>' in type".into()));
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

fn parse_type(p: &mut Parser, pending_gt: &mut usize) -> Result<DataType> {
    let tok = p.next_token();
    let Token::Word(word) = tok.token else {
        return Err(Error::Syntax(format!(
            "expected a type name, found: {}",
            tok.token
        )));
    };
    let name = word.value.to_uppercase();
    let t = match name.as_str() {
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "INT" | "INTEGER" | "INT4" => DataType::Int32,
        "BIGINT" | "INT8" => DataType::Int64,
        "DOUBLE" | "FLOAT8" => {
            let _ = word_is(p, "PRECISION") && {
                p.next_token();
                true
            };
            DataType::Float64
        }
        "DECIMAL" | "NUMERIC" => {
            if p.consume_token(&Token::LParen) {
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
            }
        }
        "VARCHAR" | "STRING" | "TEXT" => {
            // VARCHAR(n): the length is accepted and not enforced, as in ksqlDB.
            if p.consume_token(&Token::LParen) {
                number(p)?;
                p.expect_token(&Token::RParen)?;
            }
            DataType::Utf8
        }
        "BYTES" | "BYTEA" => DataType::Binary,
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Millisecond, None),
        "DATE" => DataType::Date32,
        "TIME" => DataType::Time32(TimeUnit::Millisecond),
        "ARRAY" => {
            expect_lt(p)?;
            let item = parse_type(p, pending_gt)?;
            expect_gt(p, pending_gt)?;
            DataType::List(Arc::new(Field::new("item", item, true)))
        }
        "MAP" => {
            expect_lt(p)?;
            let key = parse_type(p, pending_gt)?;
            p.expect_token(&Token::Comma)?;
            let value = parse_type(p, pending_gt)?;
            expect_gt(p, pending_gt)?;
            let entries = Fields::from(vec![
                Field::new("key", key, false),
                Field::new("value", value, true),
            ]);
            DataType::Map(
                Arc::new(Field::new("entries", DataType::Struct(entries), false)),
                false,
            )
        }
        "STRUCT" => {
            expect_lt(p)?;
            let mut fields = Vec::new();
            loop {
                let field_name = p.parse_identifier()?;
                let t = parse_type(p, pending_gt)?;
                fields.push(Field::new(super::normalize_ident(&field_name), t, true));
                if *pending_gt > 0 || !p.consume_token(&Token::Comma) {
                    break;
                }
            }
            expect_gt(p, pending_gt)?;
            DataType::Struct(Fields::from(fields))
        }
        _ => {
            return Err(Error::UndefinedObject(format!(
                "type \"{}\" does not exist",
                word.value
            )));
        }
    };
    Ok(t)
}

fn word_is(p: &Parser, word: &str) -> bool {
    matches!(&p.peek_token().token, Token::Word(w) if w.value.eq_ignore_ascii_case(word))
}

/// The SQL spelling of an Arrow type, as `DESCRIBE` shows it.
pub fn type_display(t: &DataType) -> String {
    match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTES".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::List(f) => format!("ARRAY<{}>", type_display(f.data_type())),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!(
                    "MAP<{}, {}>",
                    type_display(kv[0].data_type()),
                    type_display(kv[1].data_type())
                )
            }
            other => other.to_string(),
        },
        DataType::Struct(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("{} {}", f.name(), type_display(f.data_type())))
                .collect();
            format!("STRUCT<{}>", inner.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

    use super::*;

    fn parse(s: &str) -> Result<DataType> {
        let d = PostgreSqlDialect {};
        let mut p = Parser::new(&d).try_with_sql(s)?;
        parse_type_name(&mut p)
    }

    #[test]
    fn scalar_and_nested_types() {
        assert_eq!(parse("bigint").unwrap(), DataType::Int64);
        assert_eq!(
            parse("DECIMAL(10, 2)").unwrap(),
            DataType::Decimal128(10, 2)
        );
        let nested = parse("ARRAY<ARRAY<INT>>").unwrap();
        assert_eq!(type_display(&nested), "ARRAY<ARRAY<INTEGER>>");
        let m = parse("MAP<STRING, ARRAY<DOUBLE>>").unwrap();
        assert_eq!(type_display(&m), "MAP<VARCHAR, ARRAY<DOUBLE>>");
        let s = parse("STRUCT<a INT, b STRUCT<c VARCHAR>>").unwrap();
        assert_eq!(type_display(&s), "STRUCT<a INTEGER, b STRUCT<c VARCHAR>>");
    }

    #[test]
    fn unknown_type_is_named() {
        assert!(matches!(parse("blob"), Err(Error::UndefinedObject(m)) if m.contains("\"blob\"")));
        assert!(parse("DECIMAL(50, 2)").is_err());
    }
}
