//! Parsing Eddy's SQL: ksqlDB statements on top of sqlparser.
//!
//! Like DataFusion's `DFParser`, a thin wrapper drives sqlparser's [`Parser`] over one token
//! stream: statements Eddy owns (`CREATE STREAM`, `DROP STREAM`, `SHOW STREAMS`, `DESCRIBE`,
//! `SET`/`SHOW`/`RESET` of session variables, transaction control) are parsed here; everything
//! else is handed to sqlparser's PostgreSQL dialect and later planned by DataFusion.

mod array_literal;
mod create_stream;
mod dialect;
mod like;
pub mod limits;
mod persistent;
#[cfg(test)]
mod proptests;
mod push;
mod transaction;
pub mod types;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Ident, ObjectName, Query, SetExpr, Statement,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

pub use self::array_literal::{parse_array_elements, parse_array_literal};
pub use self::create_stream::{CreateStream, apply_options};
pub use self::dialect::EddyDialect;
pub use self::like::backslash_escaped;
pub use self::persistent::{Emit, PersistentQuery, SinkKind, WindowKind, WindowSpec};
pub use self::push::FetchCount;
pub use self::transaction::TransactionModes;
pub use self::types::parse_type_name;
use crate::{Error, Result};

/// One parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub enum EddyStatement {
    /// `CREATE STREAM [IF NOT EXISTS] name (...) WITH (...)`
    CreateStream(CreateStream),
    /// `CREATE TABLE [IF NOT EXISTS] name (k TYPE PRIMARY KEY, ...) WITH (...)`: a source table.
    CreateTable(CreateStream),
    /// `DROP STREAM|TABLE [IF EXISTS] name`
    DropStream {
        /// Stream name.
        name: String,
        /// `IF EXISTS` given.
        if_exists: bool,
        /// `DROP TABLE` (else `DROP STREAM`).
        table: bool,
    },
    /// `SHOW STREAMS` / `LIST STREAMS`
    ShowStreams,
    /// `SHOW TABLES` / `LIST TABLES`
    ShowTables,
    /// `SHOW QUERIES` / `LIST QUERIES`
    ShowQueries,
    /// `CREATE STREAM|TABLE ... AS SELECT`, `INSERT INTO ... SELECT ... EMIT CHANGES`.
    Persistent(Box<PersistentQuery>),
    /// `TERMINATE id` (`None`: `TERMINATE ALL`).
    Terminate(Option<String>),
    /// `EXPLAIN <query id>`
    ExplainQuery(String),
    /// `SHOW TOPICS` / `LIST TOPICS`
    ShowTopics,
    /// `DESCRIBE name`
    Describe(String),
    /// `SET [SESSION|LOCAL] name { = | TO } value`
    SetVariable {
        /// Variable name, lower-cased.
        name: String,
        /// Value as text.
        value: String,
    },
    /// `SHOW name` (a session variable) or `SHOW ALL`
    ShowVariable(String),
    /// `RESET name` / `RESET ALL`
    ResetVariable(String),
    /// `BEGIN`, `START TRANSACTION`, with their modes
    Begin(TransactionModes),
    /// `COMMIT`, `END`, `ROLLBACK`, `ABORT`
    EndTransaction {
        /// Command tag to answer with (`COMMIT` or `ROLLBACK`).
        tag: &'static str,
    },
    /// `SET TRANSACTION` modes
    SetTransaction(TransactionModes),
    /// `SAVEPOINT name`
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`
    ReleaseSavepoint(String),
    /// `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name`
    RollbackTo(String),
    /// Statements accepted and ignored for client compatibility (`DISCARD ALL`, `DEALLOCATE`, ...).
    NoOp {
        /// Command tag to answer with.
        tag: String,
    },
    /// Any other statement, planned by DataFusion (or COPY, handled by the COPY handler).
    Sql(Box<Statement>),
    /// A push query: `SELECT ... EMIT CHANGES [LIMIT n]` (a `Statement::Query`) or
    /// `COPY (SELECT ... EMIT CHANGES [LIMIT n]) TO STDOUT` (a `Statement::Copy`), with the
    /// `EMIT CHANGES` words removed.
    Push(Box<Statement>),
    /// `DECLARE name [NO SCROLL] CURSOR [WITH | WITHOUT HOLD] FOR query [EMIT CHANGES]`
    DeclareCursor {
        /// Cursor name, normalised.
        name: String,
        /// The query (a `Statement::Query`).
        query: Box<Statement>,
        /// The query ends in `EMIT CHANGES`.
        push: bool,
        /// `WITH HOLD`: the cursor outlives `COMMIT`.
        hold: bool,
    },
    /// `FETCH [FORWARD] [n | ALL] [FROM] name`
    FetchCursor {
        /// Cursor name, normalised.
        name: String,
        /// How many rows.
        count: FetchCount,
    },
    /// `CLOSE name` / `CLOSE ALL` (`name` is `None`).
    CloseCursor {
        /// Cursor name, normalised; `None` for ALL.
        name: Option<String>,
    },
}

static DIALECT: EddyDialect = EddyDialect::new();

/// A parser over `tokens` with Eddy's dialect and nesting limit ([`limits::MAX_PARSER_DEPTH`]).
pub(crate) fn parser(tokens: Vec<TokenWithSpan>) -> Parser<'static> {
    Parser::new(&DIALECT)
        .with_recursion_limit(limits::MAX_PARSER_DEPTH)
        .with_tokens_with_locations(tokens)
}

/// Parses a string that may hold several `;`-separated statements. Each statement is checked
/// against the nesting limits ([`limits::check`]) before anything else walks it.
pub fn parse_statements(sql: &str) -> Result<Vec<EddyStatement>> {
    let tokens = Tokenizer::new(&DIALECT, sql)
        .tokenize_with_location()
        .map_err(|e| Error::Syntax(e.to_string()))?;
    if push::needs_token_pass(&tokens) {
        return push::parse_with_emit(tokens);
    }
    let mut parser = parser(tokens);
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            break;
        }
        out.push(limits::check(parse_one(&mut parser)?)?);
        if parser.peek_token().token != Token::EOF && !parser.consume_token(&Token::SemiColon) {
            let found = parser.peek_token();
            return Err(Error::Syntax(format!(
                "expected end of statement, found: {found}"
            )));
        }
    }
    Ok(out)
}

/// The body of `query` when it has nothing around it (no `WITH`, `ORDER BY`, `LIMIT`,
/// `FETCH`, locking, `FOR`, settings, `FORMAT` or pipe operators): the statements a fast path
/// may answer without a plan, which reads the body alone.
pub fn bare_body(query: &Query) -> Option<&SetExpr> {
    let bare = query.with.is_none()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
        && query.fetch.is_none()
        && query.locks.is_empty()
        && query.for_clause.is_none()
        && query.settings.is_none()
        && query.format_clause.is_none()
        && query.pipe_operators.is_empty();
    bare.then_some(query.body.as_ref())
}

/// The terms of an AND chain (parentheses looked through), in order; one term for an
/// expression that is not an AND.
pub fn conjuncts(e: &Expr) -> Vec<&Expr> {
    fn walk<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
        match e {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                walk(left, out);
                walk(right, out);
            }
            Expr::Nested(e) => walk(e, out),
            e => out.push(e),
        }
    }
    let mut out = Vec::new();
    walk(e, &mut out);
    out
}

/// The 0-based index of a placeholder `$n` (`$1` is 0), or `None` for another spelling.
pub fn placeholder_index(placeholder: &str) -> Option<usize> {
    placeholder
        .strip_prefix('$')?
        .parse::<usize>()
        .ok()?
        .checked_sub(1)
}

/// Casts each parameter `$n` whose type the client declared (a Parse message's type OIDs) to
/// that type, as PostgreSQL resolves a statement with its declared parameter types: without
/// it `$1 + $2` has no type to plan with.
pub fn declare_parameter_types(statement: &mut EddyStatement, types: &[Option<SqlType>]) {
    use std::ops::ControlFlow;

    use datafusion::sql::sqlparser::ast::{Expr, Value, VisitMut, VisitorMut};

    struct Declare<'a>(&'a [Option<SqlType>]);
    impl VisitorMut for Declare<'_> {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::Value(v) = expr
                && let Value::Placeholder(p) = &v.value
                && let Some(Some(ty)) = placeholder_index(p).and_then(|i| self.0.get(i))
            {
                let data_type = ty.clone();
                let inner = std::mem::replace(expr, Expr::value(Value::Null));
                *expr = Expr::Cast {
                    kind: datafusion::sql::sqlparser::ast::CastKind::Cast,
                    expr: Box::new(inner),
                    data_type,
                    array: false,
                    format: None,
                };
            }
            ControlFlow::Continue(())
        }
    }
    if types.iter().all(Option::is_none) {
        return;
    }
    let mut declare = Declare(types);
    let _ = match statement {
        EddyStatement::Sql(s) | EddyStatement::Push(s) => s.visit(&mut declare),
        EddyStatement::DeclareCursor { query, .. } => query.visit(&mut declare),
        _ => ControlFlow::Continue(()),
    };
}

/// A SQL type name, as in a cast.
pub type SqlType = datafusion::sql::sqlparser::ast::DataType;

fn word_is(parser: &Parser, n: usize, word: &str) -> bool {
    matches!(&parser.peek_nth_token(n).token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn parse_one(p: &mut Parser) -> Result<EddyStatement> {
    if word_is(p, 0, "CREATE") && word_is(p, 1, "STREAM") {
        p.next_token();
        p.next_token();
        return Ok(EddyStatement::CreateStream(create_stream::parse(p)?));
    }
    if word_is(p, 0, "CREATE") && word_is(p, 1, "TABLE") {
        p.next_token();
        p.next_token();
        return Ok(EddyStatement::CreateTable(create_stream::parse_table(p)?));
    }
    if word_is(p, 0, "DROP") && (word_is(p, 1, "STREAM") || word_is(p, 1, "TABLE")) {
        p.next_token();
        let table = word_is(p, 0, "TABLE");
        p.next_token();
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = object_name(p)?;
        return Ok(EddyStatement::DropStream {
            name,
            if_exists,
            table,
        });
    }
    if word_is(p, 0, "SHOW") || word_is(p, 0, "LIST") {
        for (word, statement) in [
            ("STREAMS", EddyStatement::ShowStreams),
            ("TOPICS", EddyStatement::ShowTopics),
            ("TABLES", EddyStatement::ShowTables),
            ("QUERIES", EddyStatement::ShowQueries),
        ] {
            if word_is(p, 1, word) {
                p.next_token();
                p.next_token();
                return Ok(statement);
            }
        }
    }
    if (word_is(p, 0, "DESCRIBE") || word_is(p, 0, "DESC")) && !word_is(p, 1, "SELECT") {
        p.next_token();
        return Ok(EddyStatement::Describe(object_name(p)?));
    }
    if word_is(p, 0, "SET") && !word_is(p, 1, "TRANSACTION") {
        p.next_token();
        let _ = p.parse_one_of_keywords(&[Keyword::SESSION, Keyword::LOCAL]);
        if word_is(p, 0, "TIME") && word_is(p, 1, "ZONE") {
            p.next_token();
            p.next_token();
            let value = variable_value(p)?;
            return Ok(EddyStatement::SetVariable {
                name: "timezone".into(),
                value,
            });
        }
        let name = variable_name(p)?;
        if !p.consume_token(&Token::Eq) && !p.parse_keyword(Keyword::TO) {
            return Err(Error::Syntax(format!("expected = or TO after SET {name}")));
        }
        let value = variable_value(p)?;
        return Ok(EddyStatement::SetVariable { name, value });
    }
    if word_is(p, 0, "SHOW") {
        p.next_token();
        if word_is(p, 0, "TRANSACTION") && word_is(p, 1, "ISOLATION") && word_is(p, 2, "LEVEL") {
            for _ in 0..3 {
                p.next_token();
            }
            return Ok(EddyStatement::ShowVariable("transaction_isolation".into()));
        }
        if word_is(p, 0, "TIME") && word_is(p, 1, "ZONE") {
            p.next_token();
            p.next_token();
            return Ok(EddyStatement::ShowVariable("timezone".into()));
        }
        return Ok(EddyStatement::ShowVariable(variable_name(p)?));
    }
    if word_is(p, 0, "RESET") {
        p.next_token();
        return Ok(EddyStatement::ResetVariable(variable_name(p)?));
    }
    if word_is(p, 0, "DECLARE") {
        return push::parse_declare(p, false);
    }
    if word_is(p, 0, "FETCH") {
        return push::parse_fetch(p);
    }
    if word_is(p, 0, "CLOSE") {
        return push::parse_close(p);
    }
    if let Some(statement) = transaction::parse(p)? {
        return Ok(statement);
    }
    for (words, tag) in [
        (&["DISCARD"][..], "DISCARD ALL"),
        (&["DEALLOCATE"][..], "DEALLOCATE"),
        (&["UNLISTEN"][..], "UNLISTEN"),
    ] {
        if words.iter().enumerate().all(|(i, w)| word_is(p, i, w)) {
            skip_to_end(p);
            return Ok(EddyStatement::NoOp {
                tag: tag.to_string(),
            });
        }
    }
    Ok(EddyStatement::Sql(Box::new(p.parse_statement()?)))
}

fn skip_to_end(p: &mut Parser) {
    while !matches!(p.peek_token().token, Token::SemiColon | Token::EOF) {
        p.next_token();
    }
}

/// Normalises an identifier as Postgres does: unquoted names fold to lower case.
pub fn normalize_ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// A (possibly schema-qualified) object name, normalised; only the last part is kept.
pub fn normalize_object_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(normalize_ident)
        .unwrap_or_default()
}

fn object_name(p: &mut Parser) -> Result<String> {
    let name = p.parse_object_name(false)?;
    Ok(normalize_object_name(&name))
}

fn variable_name(p: &mut Parser) -> Result<String> {
    let tok = p.next_token();
    let mut name = match tok.token {
        Token::Word(w) => w.value,
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
        other => {
            return Err(Error::Syntax(format!(
                "expected a variable name, found: {other}"
            )));
        }
    };
    while p.consume_token(&Token::Period) {
        match p.next_token().token {
            Token::Word(w) => {
                name.push('.');
                name.push_str(&w.value);
            }
            other => {
                return Err(Error::Syntax(format!(
                    "expected a variable name, found: {other}"
                )));
            }
        }
    }
    Ok(name.to_lowercase())
}

fn variable_value(p: &mut Parser) -> Result<String> {
    let mut parts = Vec::new();
    loop {
        let tok = p.next_token();
        let text = match tok.token {
            Token::Word(w) => w.value,
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
            Token::Number(n, _) => n,
            Token::Minus => {
                let next = p.next_token();
                format!("-{next}")
            }
            other => return Err(Error::Syntax(format!("expected a value, found: {other}"))),
        };
        parts.push(text);
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    Ok(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_classifies_statements() {
        let stmts = parse_statements(
            "create stream s (a int key, b varchar) with (partitions=2); select * from s; \
             SET 'auto.offset.reset' = 'earliest'; show streams; begin; commit;;",
        )
        .unwrap();
        assert_eq!(stmts.len(), 6);
        assert!(matches!(stmts[0], EddyStatement::CreateStream(_)));
        assert!(matches!(stmts[1], EddyStatement::Sql(_)));
        assert_eq!(
            stmts[2],
            EddyStatement::SetVariable {
                name: "auto.offset.reset".into(),
                value: "earliest".into()
            }
        );
        assert_eq!(stmts[3], EddyStatement::ShowStreams);
        assert_eq!(stmts[4], EddyStatement::Begin(TransactionModes::default()));
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(matches!(parse_statements("selec 1"), Err(Error::Syntax(_))));
        assert!(matches!(
            parse_statements("create stream s (a int"),
            Err(Error::Syntax(_))
        ));
    }

    #[test]
    fn emit_changes_marks_push_queries_and_keeps_their_limit() {
        let stmts = parse_statements(
            "select a from s where a > 1 emit changes limit 3; select 1; \
             copy (select * from s emit changes) to stdout; \
             declare c no scroll cursor for select a from s emit changes",
        )
        .unwrap();
        assert_eq!(stmts.len(), 4);
        let EddyStatement::Push(q) = &stmts[0] else {
            panic!("{:?}", stmts[0])
        };
        assert_eq!(q.to_string(), "SELECT a FROM s WHERE a > 1 LIMIT 3");
        assert!(matches!(stmts[1], EddyStatement::Sql(_)));
        assert!(
            matches!(&stmts[2], EddyStatement::Push(c) if matches!(**c, Statement::Copy { .. }))
        );
        assert!(matches!(
            &stmts[3],
            EddyStatement::DeclareCursor { name, push: true, hold: false, .. } if name == "c"
        ));
        assert!(matches!(
            parse_statements("insert into s values (1) emit changes"),
            Err(Error::Syntax(_))
        ));
    }

    #[test]
    fn cursor_statements_as_psql_and_psycopg_send_them() {
        let stmts = parse_statements(
            "DECLARE _psql_cursor NO SCROLL CURSOR FOR\nselect * from s; \
             FETCH FORWARD 1 FROM _psql_cursor; fetch 10 \"Cur\"; FETCH ALL IN c; FETCH NEXT c; \
             CLOSE _psql_cursor; close all",
        )
        .unwrap();
        assert!(matches!(
            &stmts[0],
            EddyStatement::DeclareCursor { name, push: false, .. } if name == "_psql_cursor"
        ));
        assert_eq!(
            stmts[1..5],
            [
                EddyStatement::FetchCursor {
                    name: "_psql_cursor".into(),
                    count: FetchCount::Rows(1)
                },
                EddyStatement::FetchCursor {
                    name: "Cur".into(),
                    count: FetchCount::Rows(10)
                },
                EddyStatement::FetchCursor {
                    name: "c".into(),
                    count: FetchCount::All
                },
                EddyStatement::FetchCursor {
                    name: "c".into(),
                    count: FetchCount::Rows(1)
                },
            ]
        );
        assert_eq!(
            stmts[5..],
            [
                EddyStatement::CloseCursor {
                    name: Some("_psql_cursor".into())
                },
                EddyStatement::CloseCursor { name: None },
            ]
        );
    }

    #[test]
    fn show_forms() {
        assert_eq!(
            parse_statements("show transaction isolation level").unwrap(),
            vec![EddyStatement::ShowVariable("transaction_isolation".into())]
        );
        assert_eq!(
            parse_statements("SHOW standard_conforming_strings").unwrap(),
            vec![EddyStatement::ShowVariable(
                "standard_conforming_strings".into()
            )]
        );
    }
}
