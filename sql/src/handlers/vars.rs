//! Session variables: `SET`, `SHOW`, `RESET`.
//!
//! Known PostgreSQL settings answer with the values clients expect at start-up (psql, psycopg,
//! SQLAlchemy, JDBC ask for several), and Eddy's own settings (`auto.offset.reset`) are
//! validated. `SET` of an unknown name is accepted and remembered, as PostgreSQL does for
//! custom (dotted) settings.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::show::rows;
use crate::session::DEFAULTS;
use crate::{Error, Output, Result, Session};

/// The name a setting is stored under: `auto_offset_reset` is accepted for
/// `auto.offset.reset` (ksqlDB's spelling needs quotes in SQL).
fn canonical(name: &str) -> &str {
    match name {
        "auto_offset_reset" => "auto.offset.reset",
        other => other,
    }
}

/// `SET name = value`
pub fn set(session: &Session, name: &str, value: &str) -> Result<Output> {
    let name = canonical(name);
    let value = match name {
        "auto.offset.reset" => {
            let v = value.to_lowercase();
            if v != "earliest" && v != "latest" {
                return Err(Error::Invalid(format!(
                    "invalid value for parameter \"auto.offset.reset\": \"{value}\" (use 'earliest' or 'latest')"
                )));
            }
            v
        }
        crate::session::FAST_PATHS => match value.to_lowercase().as_str() {
            v @ ("on" | "off") => v.to_string(),
            _ => {
                return Err(Error::Invalid(format!(
                    "invalid value for parameter \"{name}\": \"{value}\" (use on or off)"
                )));
            }
        },
        "statement_timeout" => {
            let limit = parse_timeout(value)?;
            limit.map_or(0, |d| d.as_millis()).to_string()
        }
        "server_version" | "server_version_num" | "server_encoding" | "integer_datetimes"
        | "lc_collate" => {
            return Err(Error::Invalid(format!(
                "parameter \"{name}\" cannot be changed"
            )));
        }
        _ => value.to_string(),
    };
    session.vars().lock().insert(name.to_string(), value);
    Ok(Output::Command {
        tag: "SET".into(),
        rows: None,
    })
}

/// `RESET name` / `RESET ALL`
pub fn reset(session: &Session, name: &str) -> Result<Output> {
    let name = canonical(name);
    if name == "all" {
        session.vars().lock().clear();
    } else {
        session.vars().lock().remove(name);
    }
    Ok(Output::Command {
        tag: "RESET".into(),
        rows: None,
    })
}

/// Result columns of `SHOW name`.
pub fn show_schema(name: &str) -> SchemaRef {
    if name == "all" {
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("setting", DataType::Utf8, false),
        ]))
    } else {
        Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]))
    }
}

/// `SHOW name` / `SHOW ALL`
pub fn show(session: &Session, name: &str) -> Result<Output> {
    let name = canonical(name);
    if name == "all" {
        let mut all: std::collections::BTreeMap<String, String> = DEFAULTS
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        all.extend(
            session
                .vars()
                .lock()
                .iter()
                .map(|(n, v)| (n.clone(), v.clone())),
        );
        let names = StringArray::from_iter_values(all.keys());
        let values = StringArray::from_iter_values(all.values());
        return rows(RecordBatch::try_new(
            show_schema(name),
            vec![Arc::new(names), Arc::new(values)],
        )?);
    }
    let value = session.variable(name).ok_or_else(|| {
        Error::UndefinedObject(format!("unrecognized configuration parameter \"{name}\""))
    })?;
    rows(RecordBatch::try_new(
        show_schema(name),
        vec![Arc::new(StringArray::from(vec![value]))],
    )?)
}

/// A `statement_timeout` value as PostgreSQL reads it: a number of milliseconds, or a number
/// with a unit (`us`, `ms`, `s`, `min`, `h`, `d`); `0` turns the limit off.
pub(crate) fn parse_timeout(value: &str) -> Result<Option<std::time::Duration>> {
    let v = value.trim().trim_matches('\'');
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = (v[..split].trim(), v[split..].trim());
    let bad = || {
        Error::Invalid(format!(
            "invalid value for parameter \"statement_timeout\": \"{value}\" (a number of milliseconds, or with a unit: us, ms, s, min, h, d)"
        ))
    };
    let n: f64 = number.parse().map_err(|_| bad())?;
    let ms_per_unit = match unit {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(bad()),
    };
    let ms = n * ms_per_unit;
    if !ms.is_finite() || ms < 0.0 || ms > i32::MAX as f64 {
        return Err(bad());
    }
    // PostgreSQL rounds to whole milliseconds; a positive value below 1 ms is 1 ms.
    let ms = if ms > 0.0 {
        ms.round().max(1.0) as u64
    } else {
        0
    };
    Ok((ms > 0).then(|| std::time::Duration::from_millis(ms)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_timeout;

    #[test]
    fn statement_timeouts_read_as_postgresql_reads_them() {
        assert_eq!(parse_timeout("0").unwrap(), None);
        assert_eq!(
            parse_timeout("250").unwrap(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_timeout("'2s'").unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_timeout("1min").unwrap(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_timeout("500 ms").unwrap(),
            Some(Duration::from_millis(500))
        );
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("-5").is_err());
        assert!(parse_timeout("5 parsecs").is_err());
    }
}
