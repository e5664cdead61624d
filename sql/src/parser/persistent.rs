//! Persistent queries and the statements around them:
//!
//! ```text
//! CREATE STREAM name [WITH (...)] AS SELECT ... FROM stream [WHERE ...] [EMIT CHANGES]
//! CREATE TABLE  name [WITH (...)] AS SELECT k, agg(...) FROM stream
//!     [WINDOW TUMBLING (SIZE d [, RETENTION d] [, GRACE PERIOD d])
//!            | HOPPING (SIZE d, ADVANCE BY d [, RETENTION d] [, GRACE PERIOD d])
//!            | SESSION (d [, RETENTION d] [, GRACE PERIOD d])]
//!     [WHERE ...] GROUP BY k [EMIT CHANGES | EMIT FINAL]
//! INSERT INTO stream SELECT ... FROM stream [WHERE ...] EMIT CHANGES
//! SHOW QUERIES · EXPLAIN <query id> · TERMINATE <query id> | ALL
//! ```
//!
//! sqlparser knows neither ksqlDB's `WINDOW` clause nor `EMIT`, so both are cut out of the
//! statement's tokens here (as `EMIT CHANGES` is for push queries) and the remaining
//! `SELECT` is parsed by sqlparser.

use datafusion::sql::sqlparser::ast::{SetExpr, Statement};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use super::create_stream::parse_options;
use super::{EddyStatement, object_name, word_is};
use crate::{Error, Result};

/// What a persistent query writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// `CREATE STREAM ... AS SELECT`: a new stream.
    CreateStream,
    /// `CREATE TABLE ... AS SELECT`: a new materialized table.
    CreateTable,
    /// `INSERT INTO ... SELECT ... EMIT CHANGES`: an existing stream.
    InsertInto,
}

/// When an aggregation emits its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Every change of a row (ksqlDB's `EMIT CHANGES`).
    Changes,
    /// A window's row once, when the window closes (`EMIT FINAL`).
    Final,
}

/// The shape of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed-size, non-overlapping windows aligned to the epoch.
    Tumbling {
        /// Window size in ms.
        size: i64,
    },
    /// Fixed-size windows starting every `advance` ms.
    Hopping {
        /// Window size in ms.
        size: i64,
        /// Distance between window starts in ms.
        advance: i64,
    },
    /// Per-key windows of activity separated by `gap` ms of inactivity.
    Session {
        /// Inactivity gap in ms.
        gap: i64,
    },
}

/// A parsed `WINDOW` clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// Tumbling, hopping or session.
    pub kind: WindowKind,
    /// How long after a window's end rows for it are still accepted (ms).
    pub grace_ms: Option<i64>,
    /// How long a window's row is kept in the table's state after its end (ms).
    pub retention_ms: Option<i64>,
}

/// A parsed persistent query.
#[derive(Debug, Clone, PartialEq)]
pub struct PersistentQuery {
    /// What it writes.
    pub kind: SinkKind,
    /// The sink's name.
    pub sink: String,
    /// `IF NOT EXISTS` given.
    pub if_not_exists: bool,
    /// `WITH (...)` options of the sink, names lower-cased.
    pub options: Vec<(String, String)>,
    /// The `SELECT` (a `Statement::Query`), without its `WINDOW` and `EMIT` clauses.
    pub query: Box<Statement>,
    /// The `WINDOW` clause.
    pub window: Option<WindowSpec>,
    /// `EMIT CHANGES` (the default) or `EMIT FINAL`.
    pub emit: Emit,
    /// The statement's text, as the catalog records it.
    pub sql: String,
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn significant(tokens: &[TokenWithSpan]) -> Vec<usize> {
    (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect()
}

/// The statement's text, rebuilt from its tokens.
pub(super) fn render(tokens: &[TokenWithSpan]) -> String {
    tokens
        .iter()
        .map(|t| t.token.to_string())
        .collect::<String>()
        .trim()
        .to_string()
}

/// Cuts the last top-level `EMIT CHANGES` or `EMIT FINAL` out of the tokens.
pub(super) fn strip_emit(tokens: &mut Vec<TokenWithSpan>) -> Option<Emit> {
    let sig = significant(tokens);
    let mut depth = 0i32;
    let mut found = None;
    for (n, &i) in sig.iter().enumerate() {
        match tokens[i].token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if depth == 0
            && is_word(&tokens[i].token, "EMIT")
            && let Some(&j) = sig.get(n + 1)
        {
            if is_word(&tokens[j].token, "CHANGES") {
                found = Some((i, j, Emit::Changes));
            } else if is_word(&tokens[j].token, "FINAL") {
                found = Some((i, j, Emit::Final));
            }
        }
    }
    let (i, j, emit) = found?;
    tokens.drain(i..=j);
    Some(emit)
}

/// Cuts a top-level `WINDOW TUMBLING|HOPPING|SESSION (...)` out of the tokens and parses it.
pub(super) fn strip_window(tokens: &mut Vec<TokenWithSpan>) -> Result<Option<WindowSpec>> {
    let sig = significant(tokens);
    let mut depth = 0i32;
    for (n, &i) in sig.iter().enumerate() {
        match tokens[i].token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if depth != 0 || !is_word(&tokens[i].token, "WINDOW") {
            continue;
        }
        let Some(&k) = sig.get(n + 1) else { continue };
        let kind = ["TUMBLING", "HOPPING", "SESSION"]
            .into_iter()
            .find(|w| is_word(&tokens[k].token, w));
        let Some(kind) = kind else { continue };
        // Find the closing parenthesis of the window's argument list.
        let mut d = 0i32;
        let mut end = None;
        for &m in &sig[n + 2..] {
            match tokens[m].token {
                Token::LParen => d += 1,
                Token::RParen => {
                    d -= 1;
                    if d == 0 {
                        end = Some(m);
                        break;
                    }
                }
                _ => {}
            }
            if d == 0 {
                break;
            }
        }
        let Some(end) = end else {
            return Err(Error::Syntax(format!(
                "expected ( after WINDOW {kind}, and a closing )"
            )));
        };
        let args: Vec<TokenWithSpan> = tokens[k + 1..=end].to_vec();
        tokens.drain(i..=end);
        return parse_window(kind, args).map(Some);
    }
    Ok(None)
}

fn parse_window(kind: &str, args: Vec<TokenWithSpan>) -> Result<WindowSpec> {
    let mut p = super::parser(args);
    p.expect_token(&Token::LParen)?;
    let mut size = None;
    let mut advance = None;
    let mut gap = None;
    let mut grace_ms = None;
    let mut retention_ms = None;
    let mut first = true;
    loop {
        if word_is(&p, 0, "SIZE") {
            p.next_token();
            size = Some(duration(&mut p)?);
        } else if word_is(&p, 0, "ADVANCE") && word_is(&p, 1, "BY") {
            p.next_token();
            p.next_token();
            advance = Some(duration(&mut p)?);
        } else if word_is(&p, 0, "GRACE") && word_is(&p, 1, "PERIOD") {
            p.next_token();
            p.next_token();
            grace_ms = Some(duration(&mut p)?);
        } else if word_is(&p, 0, "RETENTION") {
            p.next_token();
            retention_ms = Some(duration(&mut p)?);
        } else if first && kind == "SESSION" {
            gap = Some(duration(&mut p)?);
        } else {
            return Err(Error::Syntax(format!(
                "unexpected {} in WINDOW {kind} (...)",
                p.peek_token()
            )));
        }
        first = false;
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    p.expect_token(&Token::RParen)?;
    let positive = |what: &str, v: Option<i64>| -> Result<i64> {
        match v {
            Some(v) if v > 0 => Ok(v),
            Some(_) => Err(Error::Invalid(format!(
                "WINDOW {kind}: {what} must be positive"
            ))),
            None => Err(Error::Syntax(format!("WINDOW {kind} needs {what}"))),
        }
    };
    let kind = match kind {
        "TUMBLING" => WindowKind::Tumbling {
            size: positive("SIZE", size)?,
        },
        "HOPPING" => {
            let size = positive("SIZE", size)?;
            let advance = positive("ADVANCE BY", advance)?;
            if advance > size {
                return Err(Error::Invalid(
                    "WINDOW HOPPING: ADVANCE BY must not exceed SIZE".into(),
                ));
            }
            WindowKind::Hopping { size, advance }
        }
        _ => WindowKind::Session {
            gap: positive("an inactivity gap", gap)?,
        },
    };
    Ok(WindowSpec {
        kind,
        grace_ms,
        retention_ms,
    })
}

/// `n UNIT`, in milliseconds.
fn duration(p: &mut Parser) -> Result<i64> {
    let n = match p.next_token().token {
        Token::Number(n, _) => n
            .parse::<i64>()
            .map_err(|_| Error::Syntax(format!("expected a whole number, found {n}")))?,
        other => return Err(Error::Syntax(format!("expected a duration, found {other}"))),
    };
    let unit = match p.next_token().token {
        Token::Word(w) => w.value.to_uppercase(),
        other => {
            return Err(Error::Syntax(format!(
                "expected a time unit (MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS), found {other}"
            )));
        }
    };
    let ms = match unit.trim_end_matches('S') {
        "MILLISECOND" => 1,
        "SECOND" => 1_000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        _ => {
            return Err(Error::Syntax(format!(
                "unknown time unit {unit}: use MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS"
            )));
        }
    };
    n.checked_mul(ms)
        .ok_or_else(|| Error::Invalid(format!("duration {n} {unit} is too large")))
}

/// Parses one statement's tokens if it is a persistent query or one of the statements around
/// them; `Ok(None)` hands the tokens back for the other parsers.
pub(super) fn try_parse(tokens: &[TokenWithSpan], sql: &str) -> Result<Option<EddyStatement>> {
    let sig = significant(tokens);
    let word = |n: usize, w: &str| sig.get(n).is_some_and(|&i| is_word(&tokens[i].token, w));
    if word(0, "TERMINATE") || (word(0, "EXPLAIN") && sig.len() == 2) {
        let explain = word(0, "EXPLAIN");
        let id = match sig.get(1).map(|&i| &tokens[i].token) {
            Some(Token::Word(w)) => w.value.to_uppercase(),
            _ if explain => return Ok(None),
            other => {
                return Err(Error::Syntax(format!(
                    "expected a query id after TERMINATE, found {}",
                    other.map(|t| t.to_string()).unwrap_or_default()
                )));
            }
        };
        if explain && id == "SELECT" {
            return Ok(None);
        }
        if sig.len() != 2 {
            return Err(Error::Syntax("TERMINATE takes one query id, or ALL".into()));
        }
        return Ok(Some(if explain {
            EddyStatement::ExplainQuery(id)
        } else if id == "ALL" {
            EddyStatement::Terminate(None)
        } else {
            EddyStatement::Terminate(Some(id))
        }));
    }
    let create = word(0, "CREATE") && (word(1, "STREAM") || word(1, "TABLE"));
    let insert = word(0, "INSERT") && word(1, "INTO");
    if !create && !insert {
        return Ok(None);
    }
    let mut cut = tokens.to_vec();
    let emit = strip_emit(&mut cut);
    let window = strip_window(&mut cut)?;
    let mut p = super::parser(cut.clone());
    p.next_token();
    let table = word_is(&p, 0, "TABLE");
    p.next_token();
    let (kind, if_not_exists, sink, options) = if create {
        let if_not_exists = p.parse_keywords(&[
            datafusion::sql::sqlparser::keywords::Keyword::IF,
            datafusion::sql::sqlparser::keywords::Keyword::NOT,
            datafusion::sql::sqlparser::keywords::Keyword::EXISTS,
        ]);
        let sink = object_name(&mut p)?;
        let options = parse_options(&mut p)?;
        if !word_is(&p, 0, "AS") {
            if emit.is_some() || window.is_some() {
                return Err(Error::Syntax(
                    "EMIT and WINDOW belong to CREATE ... AS SELECT".into(),
                ));
            }
            return Ok(None); // CREATE STREAM|TABLE name (columns): a plain definition
        }
        p.next_token();
        let kind = if table {
            SinkKind::CreateTable
        } else {
            SinkKind::CreateStream
        };
        (kind, if_not_exists, sink, options)
    } else {
        if emit.is_none() {
            if window.is_some() {
                return Err(Error::Syntax(
                    "WINDOW belongs to a persistent query (... EMIT CHANGES)".into(),
                ));
            }
            return Ok(None); // a one-off INSERT
        }
        let sink = object_name(&mut p)?;
        if p.peek_token().token == Token::LParen {
            return Err(Error::Unsupported(
                "INSERT INTO name (columns) SELECT ... EMIT CHANGES: select the target's columns \
                 in order instead of naming them"
                    .into(),
            ));
        }
        (SinkKind::InsertInto, false, sink, vec![])
    };
    let query = p.parse_query()?;
    if p.peek_token().token != Token::EOF {
        return Err(Error::Syntax(format!(
            "expected end of statement, found: {}",
            p.peek_token()
        )));
    }
    if !matches!(*query.body, SetExpr::Select(_)) {
        return Err(Error::Syntax(
            "EMIT CHANGES ends a SELECT: a persistent query is one SELECT (no VALUES, UNION or \
             other set operations)"
                .into(),
        ));
    }
    let emit = emit.unwrap_or(Emit::Changes);
    if emit == Emit::Final && window.is_none() {
        return Err(Error::Invalid(
            "EMIT FINAL needs a WINDOW: only a window ever closes".into(),
        ));
    }
    Ok(Some(EddyStatement::Persistent(Box::new(PersistentQuery {
        kind,
        sink,
        if_not_exists,
        options,
        query: Box::new(Statement::Query(query)),
        window,
        emit,
        sql: sql.to_string(),
    }))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse_statements;

    fn one(sql: &str) -> PersistentQuery {
        match parse_statements(sql).unwrap().remove(0) {
            EddyStatement::Persistent(q) => *q,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_stream_as_select() {
        let q = one(
            "CREATE STREAM big WITH (partitions=2) AS SELECT a, b FROM s WHERE a > 1 EMIT CHANGES",
        );
        assert_eq!(q.kind, SinkKind::CreateStream);
        assert_eq!(q.sink, "big");
        assert_eq!(q.options, vec![("partitions".into(), "2".into())]);
        assert_eq!(q.query.to_string(), "SELECT a, b FROM s WHERE a > 1");
        assert_eq!(q.emit, Emit::Changes);
        assert!(q.window.is_none());
    }

    #[test]
    fn windows_and_emit_final() {
        let q = one("create table t as select k, count(*) from s \
             window tumbling (size 10 seconds, grace period 2 seconds) group by k emit final");
        assert_eq!(q.kind, SinkKind::CreateTable);
        assert_eq!(q.emit, Emit::Final);
        assert_eq!(
            q.window,
            Some(WindowSpec {
                kind: WindowKind::Tumbling { size: 10_000 },
                grace_ms: Some(2_000),
                retention_ms: None
            })
        );
        assert_eq!(q.query.to_string(), "SELECT k, count(*) FROM s GROUP BY k");
        let q = one(
            "CREATE TABLE h AS SELECT k, SUM(x) FROM s WINDOW HOPPING (SIZE 1 MINUTE, ADVANCE BY 30 SECONDS, RETENTION 1 DAY) GROUP BY k",
        );
        assert_eq!(
            q.window.unwrap().kind,
            WindowKind::Hopping {
                size: 60_000,
                advance: 30_000
            }
        );
        assert_eq!(q.window.unwrap().retention_ms, Some(86_400_000));
        let q = one(
            "CREATE TABLE se AS SELECT k, COUNT(*) FROM s WINDOW SESSION (5 MINUTES) GROUP BY k EMIT CHANGES",
        );
        assert_eq!(q.window.unwrap().kind, WindowKind::Session { gap: 300_000 });
    }

    #[test]
    fn insert_into_and_lifecycle() {
        let q = one("INSERT INTO out SELECT * FROM s EMIT CHANGES");
        assert_eq!(q.kind, SinkKind::InsertInto);
        assert_eq!(
            parse_statements("SHOW QUERIES; TERMINATE csas_x_1; TERMINATE ALL; EXPLAIN CSAS_X_1")
                .unwrap(),
            vec![
                EddyStatement::ShowQueries,
                EddyStatement::Terminate(Some("CSAS_X_1".into())),
                EddyStatement::Terminate(None),
                EddyStatement::ExplainQuery("CSAS_X_1".into()),
            ]
        );
        assert!(matches!(
            parse_statements("explain select 1").unwrap()[0],
            EddyStatement::Sql(_)
        ));
    }

    #[test]
    fn bad_windows_are_errors() {
        for sql in [
            "CREATE TABLE t AS SELECT k, COUNT(*) FROM s WINDOW TUMBLING (SIZE 10 PARSECS) GROUP BY k",
            "CREATE TABLE t AS SELECT k, COUNT(*) FROM s WINDOW HOPPING (SIZE 10 SECONDS) GROUP BY k",
            "CREATE TABLE t AS SELECT k, COUNT(*) FROM s GROUP BY k EMIT FINAL",
            "CREATE TABLE t AS SELECT k, COUNT(*) FROM s WINDOW TUMBLING (SIZE 0 SECONDS) GROUP BY k",
        ] {
            assert!(parse_statements(sql).is_err(), "{sql}");
        }
    }
}
