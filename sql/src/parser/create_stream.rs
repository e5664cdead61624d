//! `CREATE STREAM [IF NOT EXISTS] name (col TYPE [KEY], ...) [WITH (option = value, ...)]` and
//! `CREATE TABLE [IF NOT EXISTS] name (col TYPE PRIMARY KEY, ...) [WITH (...)]`

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::{normalize_ident, object_name, types::parse_type_name, word_is};
use eddy_catalog::{ColumnDef, StreamDef};

use crate::{Error, Result};

/// A parsed `CREATE STREAM`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateStream {
    /// Stream name.
    pub name: String,
    /// `IF NOT EXISTS` given.
    pub if_not_exists: bool,
    /// Columns, in order (`key` set on the KEY or PRIMARY KEY column).
    pub columns: Vec<ColumnDef>,
    /// `WITH (...)` options, names lower-cased, values as text.
    pub options: Vec<(String, String)>,
    /// `CREATE TABLE`: the PRIMARY KEY columns (the KEY flag is set on them too).
    pub primary_key: Option<Vec<String>>,
}

pub(super) fn parse(p: &mut Parser) -> Result<CreateStream> {
    parse_relation(p, false)
}

/// `CREATE TABLE`'s body.
pub(super) fn parse_table(p: &mut Parser) -> Result<CreateStream> {
    parse_relation(p, true)
}

fn parse_relation(p: &mut Parser, table: bool) -> Result<CreateStream> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = object_name(p)?;
    p.expect_token(&Token::LParen)?;
    let mut columns = Vec::new();
    let mut primary_key = Vec::new();
    loop {
        let col = p.parse_identifier()?;
        let column_type = parse_type_name(p)?;
        let mut key = false;
        if word_is(p, 0, "KEY") {
            p.next_token();
            if table {
                return Err(Error::Syntax(
                    "a table's key is declared `col TYPE PRIMARY KEY`".into(),
                ));
            }
            key = true;
        } else if p.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
            if !table {
                return Err(Error::Unsupported(
                    "PRIMARY KEY declares a table; streams take `col TYPE KEY`".into(),
                ));
            }
            if !primary_key.is_empty() {
                return Err(Error::Invalid("a table has one PRIMARY KEY column".into()));
            }
            primary_key.push(normalize_ident(&col));
            key = true;
        }
        columns.push(ColumnDef {
            name: normalize_ident(&col),
            data_type: column_type.data_type,
            key,
            sql_type: column_type.sql_type,
        });
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    p.expect_token(&Token::RParen)?;
    if table && primary_key.is_empty() {
        return Err(Error::Invalid(format!(
            "table \"{name}\" needs a PRIMARY KEY column: `col TYPE PRIMARY KEY`"
        )));
    }
    let options = parse_options(p)?;
    Ok(CreateStream {
        name,
        if_not_exists,
        columns,
        options,
        primary_key: table.then_some(primary_key),
    })
}

/// An optional `WITH (name = value, ...)`; names lower-cased, values as text.
pub(super) fn parse_options(p: &mut Parser) -> Result<Vec<(String, String)>> {
    let mut options = Vec::new();
    if p.parse_keyword(Keyword::WITH) {
        p.expect_token(&Token::LParen)?;
        loop {
            let key = match p.next_token().token {
                Token::Word(w) => w.value.to_lowercase(),
                Token::SingleQuotedString(s) => s.to_lowercase(),
                other => {
                    return Err(Error::Syntax(format!(
                        "expected an option name, found: {other}"
                    )));
                }
            };
            p.expect_token(&Token::Eq)?;
            let value = match p.next_token().token {
                Token::Word(w) => w.value,
                Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
                Token::Number(n, _) => n,
                other => {
                    return Err(Error::Syntax(format!(
                        "expected a value for {key}, found: {other}"
                    )));
                }
            };
            options.push((key, value));
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
        p.expect_token(&Token::RParen)?;
    }
    Ok(options)
}

/// Applies `WITH (...)` options to a stream or table definition.
pub fn apply_options(def: &mut StreamDef, options: &[(String, String)]) -> Result<()> {
    for (key, value) in options {
        let number = || -> Result<u64> {
            value.parse::<u64>().map_err(|_| {
                Error::Invalid(format!(
                    "option {key} takes a non-negative integer, got '{value}'"
                ))
            })
        };
        match key.as_str() {
            "partitions" => {
                def.partitions = u32::try_from(number()?)
                    .map_err(|_| Error::Invalid(format!("partitions out of range: {value}")))?
            }
            "timestamp" => def.timestamp_column = Some(value.to_lowercase()),
            "retention_ms" => def.options.retention_ms = Some(number()?),
            "retention_bytes" => def.options.retention_bytes = Some(number()?),
            "segment_bytes" => {
                let n = number()?;
                if n < 1024 {
                    return Err(Error::Invalid(format!(
                        "segment_bytes must be at least 1024, got {n}"
                    )));
                }
                def.options.segment_bytes = Some(n)
            }
            "segment_ms" => def.options.segment_ms = Some(number()?),
            "local_retention_ms" => def.options.local_retention_ms = Some(number()?),
            "local_retention_bytes" => def.options.local_retention_bytes = Some(number()?),
            // Accepted for ksqlDB compatibility: the topic is always the stream's own.
            "kafka_topic" | "value_format" | "key_format" | "format" => {}
            other => return Err(Error::Invalid(format!("unknown stream option \"{other}\""))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::parser::{EddyStatement, parse_statements};

    #[test]
    fn full_create_stream() {
        let s = parse_statements(
            "CREATE STREAM IF NOT EXISTS Clicks (user_id VARCHAR KEY, \"Url\" STRING, ts TIMESTAMP) \
             WITH (partitions=3, timestamp='ts', retention_ms=86400000)",
        )
        .unwrap();
        let EddyStatement::CreateStream(c) = &s[0] else {
            panic!("{s:?}")
        };
        assert_eq!(c.name, "clicks");
        assert!(c.if_not_exists);
        assert_eq!(c.columns.len(), 3);
        assert!(c.columns[0].key);
        assert_eq!(c.columns[1].name, "Url");
        assert_eq!(c.options[1], ("timestamp".to_string(), "ts".to_string()));
    }
}
