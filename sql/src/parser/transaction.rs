//! Transaction statements: `BEGIN` / `START TRANSACTION` [modes], `COMMIT` / `END`,
//! `ROLLBACK` / `ABORT`, `SET TRANSACTION` modes, `SAVEPOINT`, `RELEASE [SAVEPOINT]`,
//! `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT]`, as PostgreSQL spells them.

use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::{EddyStatement, normalize_ident, word_is};
use crate::{Error, Result};

/// The modes of a transaction block (`ISOLATION LEVEL ...`, `READ ONLY | READ WRITE`,
/// `[NOT] DEFERRABLE`), where given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionModes {
    /// `ISOLATION LEVEL`, lower case (`read committed`, `serializable`, ...).
    pub isolation: Option<String>,
    /// `READ ONLY` (`true`) or `READ WRITE` (`false`).
    pub read_only: Option<bool>,
}

/// A transaction statement, or `None` if the tokens are not one (nothing consumed then).
pub(super) fn parse(p: &mut Parser) -> Result<Option<EddyStatement>> {
    if word_is(p, 0, "BEGIN") || (word_is(p, 0, "START") && word_is(p, 1, "TRANSACTION")) {
        let start = word_is(p, 0, "START");
        p.next_token();
        if start || word_is(p, 0, "WORK") || word_is(p, 0, "TRANSACTION") {
            p.next_token();
        }
        return Ok(Some(EddyStatement::Begin(modes(p)?)));
    }
    if word_is(p, 0, "SET") && word_is(p, 1, "TRANSACTION") && !word_is(p, 2, "SNAPSHOT") {
        p.next_token();
        p.next_token();
        return Ok(Some(EddyStatement::SetTransaction(modes(p)?)));
    }
    if word_is(p, 0, "SAVEPOINT") {
        p.next_token();
        return Ok(Some(EddyStatement::Savepoint(name(p)?)));
    }
    if word_is(p, 0, "RELEASE") {
        p.next_token();
        if word_is(p, 0, "SAVEPOINT") {
            p.next_token();
        }
        return Ok(Some(EddyStatement::ReleaseSavepoint(name(p)?)));
    }
    for (word, tag) in [
        ("COMMIT", "COMMIT"),
        ("END", "COMMIT"),
        ("ROLLBACK", "ROLLBACK"),
        ("ABORT", "ROLLBACK"),
    ] {
        if !word_is(p, 0, word) {
            continue;
        }
        p.next_token();
        if word_is(p, 0, "WORK") || word_is(p, 0, "TRANSACTION") {
            p.next_token();
        }
        if tag == "ROLLBACK" && word_is(p, 0, "TO") {
            p.next_token();
            if word_is(p, 0, "SAVEPOINT") {
                p.next_token();
            }
            return Ok(Some(EddyStatement::RollbackTo(name(p)?)));
        }
        if word_is(p, 0, "AND") {
            return Err(Error::Unsupported(format!(
                "{tag} AND CHAIN is not supported; end the transaction, then BEGIN again"
            )));
        }
        if word_is(p, 0, "PREPARED") {
            return Err(Error::Unsupported(
                "two-phase commit (PREPARE TRANSACTION) is not supported".into(),
            ));
        }
        end(p)?;
        return Ok(Some(EddyStatement::EndTransaction { tag }));
    }
    if word_is(p, 0, "PREPARE") && word_is(p, 1, "TRANSACTION") {
        return Err(Error::Unsupported(
            "two-phase commit (PREPARE TRANSACTION) is not supported".into(),
        ));
    }
    Ok(None)
}

fn end(p: &mut Parser) -> Result<()> {
    match p.peek_token().token {
        Token::SemiColon | Token::EOF => Ok(()),
        other => Err(Error::Syntax(format!(
            "unexpected {other} in a transaction statement"
        ))),
    }
}

fn name(p: &mut Parser) -> Result<String> {
    let ident = p
        .parse_identifier()
        .map_err(|e| Error::Syntax(format!("expected a savepoint name: {e}")))?;
    end(p)?;
    Ok(normalize_ident(&ident))
}

/// `transaction_mode [[,] ...]`, up to the end of the statement.
fn modes(p: &mut Parser) -> Result<TransactionModes> {
    let mut modes = TransactionModes::default();
    loop {
        if matches!(p.peek_token().token, Token::SemiColon | Token::EOF) {
            return Ok(modes);
        }
        if word_is(p, 0, "ISOLATION") && word_is(p, 1, "LEVEL") {
            p.next_token();
            p.next_token();
            let level = [
                (&["READ", "COMMITTED"][..], "read committed"),
                (&["READ", "UNCOMMITTED"][..], "read uncommitted"),
                (&["REPEATABLE", "READ"][..], "repeatable read"),
                (&["SERIALIZABLE"][..], "serializable"),
            ]
            .into_iter()
            .find(|(words, _)| words.iter().enumerate().all(|(i, w)| word_is(p, i, w)));
            let Some((words, level)) = level else {
                return Err(Error::Syntax(format!(
                    "unknown isolation level at {}",
                    p.peek_token().token
                )));
            };
            for _ in 0..words.len() {
                p.next_token();
            }
            modes.isolation = Some(level.to_string());
        } else if word_is(p, 0, "READ") && (word_is(p, 1, "ONLY") || word_is(p, 1, "WRITE")) {
            modes.read_only = Some(word_is(p, 1, "ONLY"));
            p.next_token();
            p.next_token();
        } else if word_is(p, 0, "DEFERRABLE") {
            p.next_token();
        } else if word_is(p, 0, "NOT") && word_is(p, 1, "DEFERRABLE") {
            p.next_token();
            p.next_token();
        } else {
            return Err(Error::Syntax(format!(
                "unexpected {} in the transaction modes",
                p.peek_token().token
            )));
        }
        let _comma = p.consume_token(&Token::Comma);
    }
}

#[cfg(test)]
mod tests {
    use crate::parser::{EddyStatement, parse_statements};

    use super::TransactionModes;

    fn one(sql: &str) -> EddyStatement {
        let mut stmts = parse_statements(sql).unwrap();
        assert_eq!(stmts.len(), 1, "{sql}");
        stmts.remove(0)
    }

    #[test]
    fn every_spelling_of_the_transaction_statements() {
        let plain = EddyStatement::Begin(TransactionModes::default());
        for sql in [
            "BEGIN",
            "begin work",
            "BEGIN TRANSACTION",
            "START TRANSACTION",
        ] {
            assert_eq!(one(sql), plain, "{sql}");
        }
        assert_eq!(
            one("BEGIN ISOLATION LEVEL READ COMMITTED, READ ONLY NOT DEFERRABLE"),
            EddyStatement::Begin(TransactionModes {
                isolation: Some("read committed".into()),
                read_only: Some(true),
            })
        );
        assert_eq!(
            one("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
            EddyStatement::SetTransaction(TransactionModes {
                isolation: Some("serializable".into()),
                read_only: None,
            })
        );
        for (sql, tag) in [
            ("COMMIT", "COMMIT"),
            ("END TRANSACTION", "COMMIT"),
            ("ROLLBACK WORK", "ROLLBACK"),
            ("ABORT", "ROLLBACK"),
        ] {
            assert_eq!(one(sql), EddyStatement::EndTransaction { tag }, "{sql}");
        }
        assert_eq!(
            one("SAVEPOINT \"_pg3_1\""),
            EddyStatement::Savepoint("_pg3_1".into())
        );
        assert_eq!(one("SAVEPOINT Sp"), EddyStatement::Savepoint("sp".into()));
        for sql in ["RELEASE sp", "RELEASE SAVEPOINT sp"] {
            assert_eq!(one(sql), EddyStatement::ReleaseSavepoint("sp".into()));
        }
        for sql in [
            "ROLLBACK TO sp",
            "ROLLBACK TO SAVEPOINT sp",
            "ROLLBACK TRANSACTION TO SAVEPOINT sp",
        ] {
            assert_eq!(one(sql), EddyStatement::RollbackTo("sp".into()), "{sql}");
        }
    }

    #[test]
    fn what_is_not_a_transaction_statement_fails_clearly() {
        for sql in [
            "BEGIN ISOLATION LEVEL SOMETIMES",
            "BEGIN NOW",
            "COMMIT 1",
            "SAVEPOINT",
            "ROLLBACK TO",
        ] {
            let e = parse_statements(sql).unwrap_err();
            assert!(matches!(e, crate::Error::Syntax(_)), "{sql}: {e}");
        }
        for sql in [
            "COMMIT AND CHAIN",
            "ROLLBACK PREPARED 'x'",
            "PREPARE TRANSACTION 'x'",
        ] {
            let e = parse_statements(sql).unwrap_err();
            assert!(matches!(e, crate::Error::Unsupported(_)), "{sql}: {e}");
        }
    }
}
