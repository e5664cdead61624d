//! SQL cursors: `DECLARE name CURSOR FOR query [EMIT CHANGES]`, `FETCH`, `CLOSE`.
//!
//! psql with `\set FETCH_COUNT n` and psycopg's named cursors read results this way. A cursor
//! holds the query's running stream; `FETCH n` pulls until it has `n` rows (for a push query
//! that means waiting for them to be committed) and keeps the rest of the last batch for the
//! next `FETCH`. Cursors live in the session; `COMMIT`/`ROLLBACK` close those declared
//! `WITHOUT HOLD` (the default), as in PostgreSQL.

use datafusion::physical_plan::memory::MemoryStream;
use datafusion::sql::sqlparser::ast::Statement;
use futures::StreamExt;

use crate::handlers::query;
use crate::parser::FetchCount;
use crate::session::{Cursor, unknown_cursor as unknown};
use crate::{Error, Output, Result, Session, push};

/// `DECLARE`
pub async fn declare(
    session: &Session,
    name: &str,
    query: &Statement,
    push: bool,
    hold: bool,
) -> Result<Output> {
    if session.cursors().lock().await.0.contains_key(name) {
        return Err(Error::Invalid(format!("cursor \"{name}\" already exists")));
    }
    let (schema, stream) = if push {
        push::execute(session, query, None).await?
    } else {
        match query::execute(session, query, None).await? {
            Output::Rows { schema, stream } => (schema, stream),
            _ => {
                return Err(Error::Syntax(
                    "DECLARE needs a query that returns rows".into(),
                ));
            }
        }
    };
    session.cursors().lock().await.0.insert(
        name.to_string(),
        Cursor {
            schema,
            stream,
            pending: None,
            hold,
            push_unfetched: push,
        },
    );
    Ok(Output::Command {
        tag: "DECLARE CURSOR".into(),
        rows: None,
    })
}

/// `FETCH`: up to `count` rows, waiting for them if the cursor's query is a push query.
pub async fn fetch(session: &Session, name: &str, count: FetchCount) -> Result<Output> {
    let mut cursors = session.cursors().lock().await;
    let cursor = cursors.0.get_mut(name).ok_or_else(|| unknown(name))?;
    if std::mem::take(&mut cursor.push_unfetched) {
        tracing::info!(cursor = name, "first FETCH from a push cursor");
    }
    let mut wanted = match count {
        FetchCount::Rows(n) => usize::try_from(n).unwrap_or(usize::MAX),
        FetchCount::All => usize::MAX,
    };
    let mut out = Vec::new();
    while wanted > 0 {
        let batch = match cursor.pending.take() {
            Some(b) => b,
            None => match cursor.stream.next().await {
                Some(b) => b.map_err(Error::from_datafusion)?,
                None => break,
            },
        };
        if batch.num_rows() > wanted {
            cursor.pending = Some(batch.slice(wanted, batch.num_rows() - wanted));
            out.push(batch.slice(0, wanted));
            wanted = 0;
        } else {
            wanted -= batch.num_rows();
            out.push(batch);
        }
    }
    let schema = cursor.schema.clone();
    let stream = MemoryStream::try_new(out, schema.clone(), None)?;
    Ok(Output::Rows {
        schema,
        stream: Box::pin(stream),
    })
}

/// `CLOSE name` / `CLOSE ALL`
pub async fn close(session: &Session, name: Option<&str>) -> Result<Output> {
    let mut cursors = session.cursors().lock().await;
    match name {
        None => cursors.0.clear(),
        Some(name) => {
            cursors.0.remove(name).ok_or_else(|| unknown(name))?;
        }
    }
    Ok(Output::Command {
        tag: "CLOSE CURSOR".into(),
        rows: None,
    })
}
