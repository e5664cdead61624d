//! Transaction blocks: `BEGIN` … `COMMIT` / `ROLLBACK`, savepoints, `SET TRANSACTION`, and
//! the rules for statements inside a block.
//!
//! What a block gives (README "Transactions"): its writes — INSERT and COPY FROM into any
//! streams and tables — wait in the session ([`crate::ingest::txn`]) and reach the log at
//! COMMIT in one atomic append: all of them become durable and visible together, or none
//! (ROLLBACK, a failed COMMIT, a disconnect, a crash). Reads are READ COMMITTED: each
//! statement sees what was committed when it started, and **not** the block's own
//! uncommitted writes (as a Kafka `read_committed` consumer beside a transactional producer).
//! REPEATABLE READ and SERIALIZABLE are refused rather than silently weakened. DDL does not
//! roll back, so it is refused inside a block (25001), as PostgreSQL refuses
//! `CREATE DATABASE` there. `SET` inside a block is undone by ROLLBACK (and by ROLLBACK TO
//! a savepoint set before it), as in PostgreSQL.

use crate::ingest::txn::Pending;
use crate::parser::{EddyStatement, TransactionModes};
use crate::session::TransactionStatus;
use crate::session::{Block, Savepoint};
use crate::{Error, Output, Result, Session};

/// Refuses a statement the session's state does not allow: anything but ROLLBACK in a failed
/// block (25P02), and in any block the statements a ROLLBACK could not undo (25001).
pub(crate) fn check_allowed(session: &Session, stmt: &EddyStatement) -> Result<()> {
    let status = session.transaction_status();
    if status == TransactionStatus::Idle {
        return Ok(());
    }
    if status == TransactionStatus::Failed
        && !matches!(
            stmt,
            EddyStatement::EndTransaction { .. } | EddyStatement::RollbackTo(_)
        )
    {
        return Err(Error::TransactionAborted);
    }
    let what = match stmt {
        EddyStatement::CreateStream(_) => Some("CREATE STREAM"),
        EddyStatement::DropStream { table: true, .. } => Some("DROP TABLE"),
        EddyStatement::DropStream { .. } => Some("DROP STREAM"),
        EddyStatement::CreateTable(_) => Some("CREATE TABLE"),
        EddyStatement::Persistent(_) => Some("a persistent query"),
        EddyStatement::Terminate(_) => Some("TERMINATE"),
        EddyStatement::NoOp { tag } if tag == "DISCARD ALL" => Some("DISCARD ALL"),
        _ => None,
    };
    match what {
        Some(what) => Err(Error::TransactionState {
            message: format!(
                "{what} cannot run inside a transaction block (it could not be rolled back); \
                 COMMIT or ROLLBACK first, or run it in autocommit mode"
            ),
            in_block: true,
        }),
        None => Ok(()),
    }
}

/// Checks the modes a block may have: Eddy's isolation is READ COMMITTED.
fn check_modes(modes: &TransactionModes) -> Result<()> {
    match modes.isolation.as_deref() {
        None | Some("read committed") | Some("read uncommitted") => Ok(()),
        Some(level) => Err(Error::Unsupported(format!(
            "isolation level {} is not supported: Eddy's transactions are READ COMMITTED (each \
             statement reads what was committed when it started; the block's writes become \
             visible together at COMMIT)",
            level.to_uppercase()
        ))),
    }
}

/// The modes of a new block: the statement's, else the session's defaults.
fn block_modes(session: &Session, modes: &TransactionModes) -> Result<TransactionModes> {
    let isolation = modes
        .isolation
        .clone()
        .or_else(|| session.variable("default_transaction_isolation"))
        .map(|v| v.to_lowercase());
    let read_only = modes.read_only.unwrap_or_else(|| {
        session
            .variable("default_transaction_read_only")
            .is_some_and(|v| matches!(v.to_lowercase().as_str(), "on" | "true" | "1"))
    });
    let modes = TransactionModes {
        isolation,
        read_only: Some(read_only),
    };
    check_modes(&modes)?;
    Ok(modes)
}

/// `BEGIN [modes]`. Inside a block it changes nothing (PostgreSQL warns and goes on).
pub(crate) fn begin(session: &Session, modes: &TransactionModes) -> Result<Output> {
    let modes = block_modes(session, modes)?;
    let mut block = session.block().lock();
    if block.is_none() {
        session
            .writes()
            .open(Pending::new(modes.read_only == Some(true)));
        *block = Some(Block {
            failed: false,
            savepoints: vec![],
            vars_at_begin: session.vars().lock().clone(),
            recovered: false,
        });
    }
    Ok(Output::Begin)
}

/// `COMMIT`: appends the block's writes, all or nothing. A failed block rolls back instead
/// (tag `ROLLBACK`, as PostgreSQL answers). Outside a block it does nothing.
pub(crate) async fn commit(session: &Session) -> Result<Output> {
    let block = session.block().lock().take();
    let pending = session.writes().take();
    session.cursors().lock().await.end_transaction();
    let Some(block) = block else {
        return Ok(Output::EndTransaction("COMMIT"));
    };
    if block.failed {
        *session.vars().lock() = block.vars_at_begin;
        return Ok(Output::EndTransaction("ROLLBACK"));
    }
    if let Some(pending) = pending {
        pending.commit(session.engine()).await?;
    }
    Ok(Output::EndTransaction("COMMIT"))
}

/// `ROLLBACK`: drops the block's writes and undoes its `SET`s.
pub(crate) async fn rollback(session: &Session) -> Result<Output> {
    let block = session.block().lock().take();
    drop(session.writes().take());
    session.cursors().lock().await.end_transaction();
    if let Some(block) = block {
        *session.vars().lock() = block.vars_at_begin;
    }
    Ok(Output::EndTransaction("ROLLBACK"))
}

/// The error for a block statement outside a block (25P01).
fn outside(what: &str) -> Error {
    Error::TransactionState {
        message: format!("{what} can only be used in transaction blocks"),
        in_block: false,
    }
}

/// `SAVEPOINT name`
pub(crate) fn savepoint(session: &Session, name: &str) -> Result<Output> {
    let mark = session.writes().with_block(|p| p.mark());
    let mut block = session.block().lock();
    let (Some(block), Some(mark)) = (block.as_mut(), mark) else {
        return Err(outside("SAVEPOINT"));
    };
    block.savepoints.push(Savepoint {
        name: name.to_string(),
        mark,
        vars: session.vars().lock().clone(),
    });
    Ok(command("SAVEPOINT"))
}

/// `RELEASE [SAVEPOINT] name`: forgets the savepoint and every later one; the writes stay.
pub(crate) fn release(session: &Session, name: &str) -> Result<Output> {
    let mut block = session.block().lock();
    let Some(block) = block.as_mut() else {
        return Err(outside("RELEASE SAVEPOINT"));
    };
    let at = latest(block, name)?;
    block.savepoints.truncate(at);
    Ok(command("RELEASE"))
}

/// `ROLLBACK TO [SAVEPOINT] name`: drops the writes made since the savepoint, undoes the
/// `SET`s made since, and ends a failed state; the savepoint stays.
pub(crate) fn rollback_to(session: &Session, name: &str) -> Result<Output> {
    let mut block = session.block().lock();
    let Some(block) = block.as_mut() else {
        return Err(outside("ROLLBACK TO SAVEPOINT"));
    };
    let at = latest(block, name)?;
    block.savepoints.truncate(at + 1);
    let savepoint = &block.savepoints[at];
    session
        .writes()
        .with_block(|p| p.rollback_to(savepoint.mark));
    *session.vars().lock() = savepoint.vars.clone();
    if block.failed {
        block.failed = false;
        block.recovered = true;
    }
    Ok(command("ROLLBACK"))
}

/// `SET TRANSACTION modes`: for the open block (outside one PostgreSQL warns and ignores it).
pub(crate) fn set_transaction(session: &Session, modes: &TransactionModes) -> Result<Output> {
    check_modes(modes)?;
    if let Some(read_only) = modes.read_only {
        session
            .writes()
            .with_block(|p| p.set_read_only(read_only))
            .transpose()?;
    }
    Ok(command("SET"))
}

/// The index of the latest savepoint called `name`.
fn latest(block: &Block, name: &str) -> Result<usize> {
    block
        .savepoints
        .iter()
        .rposition(|s| s.name == name)
        .ok_or_else(|| Error::UnknownSavepoint(name.to_string()))
}

fn command(tag: &str) -> Output {
    Output::Command {
        tag: tag.into(),
        rows: None,
    }
}
