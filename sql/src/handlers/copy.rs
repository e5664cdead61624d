//! `COPY name [(cols)] FROM STDIN [WITH (FORMAT text|csv|json|binary, ...)]` and
//! `COPY (query) | name TO STDOUT [WITH (FORMAT text|csv|binary)]`.

use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};

use crate::handlers::query;
use crate::ingest::copy::CopyFormat;
use crate::parser::{normalize_ident, normalize_object_name};
use crate::{CopyIn, Error, Output, Result, Session};

/// Whether the statement is a COPY.
pub fn is_copy(statement: &Statement) -> bool {
    matches!(statement, Statement::Copy { .. })
}

/// Checks a COPY without running it: the stream and columns of COPY FROM exist, and the
/// source of COPY TO plans. Used when a COPY is prepared (extended protocol).
pub async fn check(session: &Session, statement: &Statement) -> Result<()> {
    let Statement::Copy { source, to, .. } = statement else {
        return Ok(());
    };
    if !to {
        // Planning COPY FROM only resolves names; it has no side effect.
        return plan(session, statement).await.map(|_| ());
    }
    match source {
        CopySource::Query(q) => {
            let statements = crate::parser::parse_statements(&q.to_string())?;
            if let [crate::parser::EddyStatement::Sql(stmt)] = statements.as_slice() {
                query::describe(session, stmt).await?;
            }
            Ok(())
        }
        CopySource::Table { table_name, .. } => {
            let name = normalize_object_name(table_name);
            session.engine().stream(&name).map(|_| ())
        }
    }
}

/// Plans a COPY; `None` when the statement is not a COPY.
pub async fn plan(session: &Session, statement: &Statement) -> Result<Option<Output>> {
    let Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        values,
    } = statement
    else {
        return Ok(None);
    };
    if !values.is_empty() {
        return Err(Error::Unsupported(
            "inline COPY data is not supported; send it after the statement".into(),
        ));
    }
    let format = format_of(options, legacy_options)?;
    match (to, target) {
        (false, CopyTarget::Stdin) => {
            let CopySource::Table { table_name, columns } = source else {
                return Err(Error::Syntax("COPY FROM needs a stream name".into()));
            };
            let name = normalize_object_name(table_name);
            let (def, topic) = session.engine().stream(&name)?;
            let columns = if columns.is_empty() {
                (0..def.columns.len()).collect()
            } else {
                columns
                    .iter()
                    .map(|c| {
                        let n = normalize_ident(c);
                        def.column_index(&n).ok_or_else(|| {
                            Error::UnknownColumn(format!("column \"{n}\" of stream \"{name}\" does not exist"))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
            };
            Ok(Some(Output::CopyIn(Box::new(CopyIn { def, topic, columns, format }))))
        }
        (true, CopyTarget::Stdout) => {
            if format == CopyFormat::Json {
                return Err(Error::Unsupported("COPY TO supports FORMAT text, csv and binary".into()));
            }
            let sql = match source {
                CopySource::Query(q) => q.to_string(),
                CopySource::Table { table_name, columns } => {
                    let cols = if columns.is_empty() {
                        let name = normalize_object_name(table_name);
                        let (def, _) =
                            session.engine().stream(&name)?;
                        def.columns.iter().map(|c| format!("\"{}\"", c.name.replace('"', "\"\""))).collect::<Vec<_>>()
                    } else {
                        columns.iter().map(|c| c.to_string()).collect()
                    };
                    format!("SELECT {} FROM {table_name}", cols.join(", "))
                }
            };
            let statements = crate::parser::parse_statements(&sql)?;
            let [crate::parser::EddyStatement::Sql(stmt)] = statements.as_slice() else {
                return Err(Error::Syntax("COPY TO needs a single query".into()));
            };
            match query::execute(session, stmt, None).await? {
                Output::Rows { schema, stream } => Ok(Some(Output::CopyOut { schema, stream, format })),
                _ => Err(Error::Syntax("COPY TO needs a query that returns rows".into())),
            }
        }
        _ => Err(Error::Unsupported(
            "COPY supports FROM STDIN and TO STDOUT; files and programs are not reachable through the server"
                .into(),
        )),
    }
}

fn single_byte(c: char, what: &str) -> Result<u8> {
    u8::try_from(c as u32)
        .ok()
        .filter(|b| b.is_ascii())
        .ok_or_else(|| Error::Invalid(format!("COPY {what} must be a single one-byte character")))
}

pub(crate) fn format_of(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyFormat> {
    let mut kind = "text".to_string();
    for o in options {
        if let CopyOption::Format(f) = o {
            kind = f.value.to_lowercase();
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Csv(_) => kind = "csv".into(),
            CopyLegacyOption::Binary => kind = "binary".into(),
            _ => {}
        }
    }
    let mut format = match kind.as_str() {
        "text" => CopyFormat::text(),
        "csv" => CopyFormat::csv(),
        "json" => CopyFormat::Json,
        "binary" => CopyFormat::Binary,
        other => {
            return Err(Error::Invalid(format!(
                "COPY format \"{other}\" not recognized"
            )));
        }
    };
    let mut apply = |setting: Setting| -> Result<()> {
        match (&mut format, setting) {
            (
                CopyFormat::Text { delimiter, .. } | CopyFormat::Csv { delimiter, .. },
                Setting::Delimiter(c),
            ) => *delimiter = single_byte(c, "delimiter")?,
            (CopyFormat::Text { null, .. } | CopyFormat::Csv { null, .. }, Setting::Null(n)) => {
                *null = n
            }
            (CopyFormat::Csv { header, .. }, Setting::Header(h)) => *header = h,
            (CopyFormat::Csv { quote, .. }, Setting::Quote(c)) => *quote = single_byte(c, "quote")?,
            (CopyFormat::Csv { escape, .. }, Setting::Escape(c)) => {
                *escape = single_byte(c, "escape")?
            }
            (_, s) => {
                return Err(Error::Invalid(format!(
                    "COPY option {s:?} is not valid for this format"
                )));
            }
        }
        Ok(())
    };
    for o in options {
        match o {
            CopyOption::Format(_) | CopyOption::Freeze(_) | CopyOption::Encoding(_) => {}
            CopyOption::Delimiter(c) => apply(Setting::Delimiter(*c))?,
            CopyOption::Null(n) => apply(Setting::Null(n.clone()))?,
            CopyOption::Header(h) => apply(Setting::Header(*h))?,
            CopyOption::Quote(c) => apply(Setting::Quote(*c))?,
            CopyOption::Escape(c) => apply(Setting::Escape(*c))?,
            other => {
                return Err(Error::Unsupported(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Delimiter(c) => apply(Setting::Delimiter(*c))?,
            CopyLegacyOption::Null(n) => apply(Setting::Null(n.clone()))?,
            CopyLegacyOption::Header => apply(Setting::Header(true))?,
            CopyLegacyOption::Csv(csv) => {
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => apply(Setting::Header(true))?,
                        CopyLegacyCsvOption::Quote(q) => apply(Setting::Quote(*q))?,
                        CopyLegacyCsvOption::Escape(e) => apply(Setting::Escape(*e))?,
                        other => {
                            return Err(Error::Unsupported(format!(
                                "COPY option {other} is not supported"
                            )));
                        }
                    }
                }
            }
            CopyLegacyOption::Binary => {}
            other => {
                return Err(Error::Unsupported(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    // As PostgreSQL, refuse separators the decoders could not tell from line ends or escapes.
    match &format {
        CopyFormat::Text {
            delimiter: b'\n' | b'\r' | b'\\',
            ..
        } => Err(Error::Invalid(
            "COPY delimiter cannot be newline, carriage return or backslash".into(),
        )),
        CopyFormat::Csv {
            delimiter, quote, ..
        } if matches!(delimiter, b'\n' | b'\r') || delimiter == quote => Err(Error::Invalid(
            "COPY delimiter must differ from the quote, newline and carriage return".into(),
        )),
        _ => Ok(format),
    }
}

#[derive(Debug)]
enum Setting {
    Delimiter(char),
    Null(String),
    Header(bool),
    Quote(char),
    Escape(char),
}
