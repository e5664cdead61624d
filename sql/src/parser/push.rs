//! `EMIT CHANGES` (push queries) and SQL cursors (`DECLARE`, `FETCH`, `CLOSE`).
//!
//! sqlparser knows neither `EMIT CHANGES` nor Postgres's cursor statements in the forms psql
//! and psycopg send, so they are handled at the token level: `EMIT CHANGES` is cut out of the
//! statement's tokens (its `LIMIT` stays an ordinary `LIMIT`, which the push handler reads as
//! "stop after n rows"), and the rest is parsed by sqlparser as usual.

use datafusion::sql::sqlparser::ast::{CopySource, SetExpr, Statement};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use super::{EddyStatement, object_name, word_is};
use crate::{Error, Result};

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn is_blank(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_))
}

/// Whether the tokens need the statement-by-statement pass: they mention `EMIT`, `WINDOW`,
/// `AS` after `CREATE`, `TERMINATE` or `EXPLAIN` (the cheap check before the slow path).
pub(super) fn needs_token_pass(tokens: &[TokenWithSpan]) -> bool {
    let words: Vec<&Token> = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !is_blank(t))
        .collect();
    let create = words.iter().any(|t| is_word(t, "CREATE"));
    words.iter().any(|t| {
        is_word(t, "EMIT")
            || is_word(t, "WINDOW")
            || is_word(t, "TERMINATE")
            || is_word(t, "EXPLAIN")
            || (create && is_word(t, "AS"))
    })
}

/// Splits tokens into statements at top-level semicolons.
pub(super) fn split_statements(tokens: Vec<TokenWithSpan>) -> Vec<Vec<TokenWithSpan>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut depth = 0i32;
    for t in tokens {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth <= 0 => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            Token::EOF => continue,
            _ => {}
        }
        current.push(t);
    }
    out.push(current);
    out.retain(|s| s.iter().any(|t| !is_blank(&t.token)));
    out
}

/// Removes the first `EMIT CHANGES` from one statement's tokens; `true` if there was one.
pub(super) fn strip_emit_changes(tokens: &mut Vec<TokenWithSpan>) -> bool {
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !is_blank(&tokens[i].token))
        .collect();
    for pair in significant.windows(2) {
        if is_word(&tokens[pair[0]].token, "EMIT") && is_word(&tokens[pair[1]].token, "CHANGES") {
            tokens.drain(pair[0]..=pair[1]);
            return true;
        }
    }
    false
}

/// Parses a statement whose `EMIT CHANGES` was cut out: a query, `COPY (query) TO STDOUT`, or
/// `DECLARE c CURSOR FOR query`.
pub(super) fn parse_push(p: &mut Parser) -> Result<EddyStatement> {
    if word_is(p, 0, "DECLARE") {
        return parse_declare(p, true);
    }
    let statement = p.parse_statement()?;
    let ok = match &statement {
        Statement::Query(q) => matches!(*q.body, SetExpr::Select(_)),
        Statement::Copy {
            source: CopySource::Query(q),
            to: true,
            ..
        } => matches!(*q.body, SetExpr::Select(_)),
        _ => false,
    };
    if !ok {
        return Err(Error::Syntax(
            "EMIT CHANGES ends a SELECT (also inside COPY (...) TO STDOUT or DECLARE ... CURSOR FOR)"
                .into(),
        ));
    }
    Ok(EddyStatement::Push(Box::new(statement)))
}

/// `DECLARE name [BINARY] [ASENSITIVE | INSENSITIVE] [[NO] SCROLL] CURSOR [{WITH | WITHOUT} HOLD]
/// FOR query`; the parser stands on `DECLARE`.
pub(super) fn parse_declare(p: &mut Parser, push: bool) -> Result<EddyStatement> {
    p.next_token();
    let name = object_name(p)?;
    loop {
        if word_is(p, 0, "CURSOR") {
            p.next_token();
            break;
        }
        if word_is(p, 0, "BINARY") {
            return Err(Error::Unsupported(
                "BINARY cursors are not supported".into(),
            ));
        }
        if ["ASENSITIVE", "INSENSITIVE", "SCROLL", "NO"]
            .iter()
            .any(|w| word_is(p, 0, w))
        {
            p.next_token();
            continue;
        }
        return Err(Error::Syntax(format!(
            "expected CURSOR in DECLARE, found: {}",
            p.peek_token()
        )));
    }
    let hold = if (word_is(p, 0, "WITH") || word_is(p, 0, "WITHOUT")) && word_is(p, 1, "HOLD") {
        let with = word_is(p, 0, "WITH");
        p.next_token();
        p.next_token();
        with
    } else {
        false
    };
    if !p.parse_keyword(Keyword::FOR) {
        return Err(Error::Syntax(format!(
            "expected FOR in DECLARE, found: {}",
            p.peek_token()
        )));
    }
    let query = p.parse_query()?;
    Ok(EddyStatement::DeclareCursor {
        name,
        query: Box::new(Statement::Query(query)),
        push,
        hold,
    })
}

/// How many rows a FETCH asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchCount {
    /// `FETCH [FORWARD] n`, `FETCH NEXT` (1).
    Rows(u64),
    /// `FETCH [FORWARD] ALL`: every remaining row (for a push cursor: until its LIMIT).
    All,
}

/// `FETCH [NEXT | FORWARD [n | ALL] | n | ALL] [FROM | IN] name` (also `MOVE` is not supported);
/// the parser stands on `FETCH`.
pub(super) fn parse_fetch(p: &mut Parser) -> Result<EddyStatement> {
    p.next_token();
    let count_after = |p: &mut Parser| -> Result<Option<FetchCount>> {
        if word_is(p, 0, "ALL") {
            p.next_token();
            return Ok(Some(FetchCount::All));
        }
        if let Token::Number(n, _) = &p.peek_token().token {
            let n = n
                .parse::<u64>()
                .map_err(|_| Error::Syntax(format!("invalid FETCH count {n}")))?;
            p.next_token();
            return Ok(Some(FetchCount::Rows(n)));
        }
        Ok(None)
    };
    let count = if word_is(p, 0, "NEXT") {
        p.next_token();
        FetchCount::Rows(1)
    } else if word_is(p, 0, "FORWARD") {
        p.next_token();
        count_after(p)?.unwrap_or(FetchCount::Rows(1))
    } else if ["PRIOR", "FIRST", "LAST", "ABSOLUTE", "RELATIVE", "BACKWARD"]
        .iter()
        .any(|w| word_is(p, 0, w))
    {
        return Err(Error::Unsupported(
            "cursors only move forward: use FETCH [FORWARD] n | ALL | NEXT".into(),
        ));
    } else {
        count_after(p)?.unwrap_or(FetchCount::Rows(1))
    };
    if word_is(p, 0, "FROM") || word_is(p, 0, "IN") {
        p.next_token();
    }
    let name = object_name(p)?;
    Ok(EddyStatement::FetchCursor { name, count })
}

/// `CLOSE name | ALL`; the parser stands on `CLOSE`.
pub(super) fn parse_close(p: &mut Parser) -> Result<EddyStatement> {
    p.next_token();
    if word_is(p, 0, "ALL") {
        p.next_token();
        return Ok(EddyStatement::CloseCursor { name: None });
    }
    Ok(EddyStatement::CloseCursor {
        name: Some(object_name(p)?),
    })
}

/// Parses a string statement by statement, so that each one knows whether it was a persistent
/// or push query.
pub(super) fn parse_with_emit(tokens: Vec<TokenWithSpan>) -> Result<Vec<EddyStatement>> {
    let mut out = Vec::new();
    for mut tokens in split_statements(tokens) {
        let sql = super::persistent::render(&tokens);
        if let Some(statement) = super::persistent::try_parse(&tokens, &sql)? {
            out.push(super::limits::check(statement)?);
            continue;
        }
        let push = strip_emit_changes(&mut tokens);
        let mut p = super::parser(tokens);
        let statement = if push {
            parse_push(&mut p)?
        } else {
            super::parse_one(&mut p)?
        };
        if p.peek_token().token != Token::EOF {
            return Err(Error::Syntax(format!(
                "expected end of statement, found: {}",
                p.peek_token()
            )));
        }
        out.push(super::limits::check(statement)?);
    }
    Ok(out)
}
