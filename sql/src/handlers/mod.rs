//! One handler per statement kind. Each turns a parsed statement into an [`crate::Output`].

pub mod copy;
pub mod cursor;
pub mod ddl;
pub mod persistent;
pub mod query;
pub mod show;
pub mod transaction;
pub mod vars;

use datafusion::common::ScalarValue;

use crate::ingest::copy::CopyFormat;
use crate::parser::EddyStatement;
use crate::{Description, Error, Output, Result, Session};

/// Statements `statement_timeout` applies to: those that only read. Not `FETCH`: a FETCH cut
/// off while it gathers rows would lose the rows it had taken from its cursor.
fn is_read(stmt: &EddyStatement) -> bool {
    use datafusion::sql::sqlparser::ast::Statement;
    match stmt {
        EddyStatement::Push(_) => true,
        EddyStatement::Sql(s) => matches!(
            **s,
            Statement::Query(_)
                | Statement::Explain { analyze: false, .. }
                | Statement::Copy { to: true, .. }
        ),
        _ => false,
    }
}

/// The statement dispatch: the session's state lives in `session.rs`, what each statement
/// does lives here, so that every layer below may take a `&Session` without reaching up.
impl Session {
    /// Runs one statement; `params` binds `$1, $2, ...`. A read (a query, a push query, COPY
    /// TO, EXPLAIN) running longer than `statement_timeout` ends with 57014, while it plans and
    /// while its rows stream; a write is never cut off by it (its append may already be
    /// durable, and an error would then say the opposite).
    ///
    /// Inside a transaction block, a statement that fails (here or later, while its rows
    /// stream) fails the block; see [`transaction`] for what a block allows.
    pub async fn execute(
        &self,
        stmt: &EddyStatement,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<Output> {
        let ends_block = matches!(stmt, EddyStatement::EndTransaction { .. });
        let result = match transaction::check_allowed(self, stmt) {
            Ok(()) => self.execute_timed(stmt, params).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(output) if self.transaction_status() != crate::session::TransactionStatus::Idle => {
                Ok(output.failing_block(self.block().clone()))
            }
            Ok(output) => Ok(output),
            Err(e) => {
                if !ends_block {
                    self.fail_transaction();
                }
                Err(e)
            }
        }
    }

    async fn execute_timed(
        &self,
        stmt: &EddyStatement,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<Output> {
        let limit = self
            .variable("statement_timeout")
            .and_then(|v| vars::parse_timeout(&v).ok().flatten());
        let Some(limit) = limit.filter(|_| is_read(stmt)) else {
            return self.dispatch(stmt, params).await;
        };
        let deadline = tokio::time::Instant::now() + limit;
        let output = tokio::time::timeout_at(deadline, self.dispatch(stmt, params))
            .await
            .map_err(|_| Error::StatementTimeout)??;
        Ok(output.until(deadline))
    }

    async fn dispatch(
        &self,
        stmt: &EddyStatement,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<Output> {
        match stmt {
            EddyStatement::CreateStream(c) | EddyStatement::CreateTable(c) => {
                ddl::create_stream(self.engine(), c).await
            }
            EddyStatement::DropStream {
                name,
                if_exists,
                table,
            } => ddl::drop_stream(self.engine(), name, *if_exists, *table).await,
            EddyStatement::ShowStreams => show::streams(self.engine()),
            EddyStatement::ShowTables => persistent::show_tables(self),
            EddyStatement::ShowQueries => persistent::show_queries(self),
            EddyStatement::Persistent(q) => persistent::create(self, q).await,
            EddyStatement::Terminate(id) => persistent::terminate(self, id.as_deref()).await,
            EddyStatement::ExplainQuery(id) => persistent::explain(self, id),
            EddyStatement::ShowTopics => show::topics(self.engine()),
            EddyStatement::Describe(name) => show::describe(self.engine(), name),
            EddyStatement::SetVariable { name, value } => vars::set(self, name, value),
            EddyStatement::ShowVariable(name) => vars::show(self, name),
            EddyStatement::ResetVariable(name) => vars::reset(self, name),
            EddyStatement::Begin(modes) => transaction::begin(self, modes),
            EddyStatement::EndTransaction { tag: "COMMIT" } => transaction::commit(self).await,
            EddyStatement::EndTransaction { .. } => transaction::rollback(self).await,
            EddyStatement::SetTransaction(modes) => transaction::set_transaction(self, modes),
            EddyStatement::Savepoint(name) => transaction::savepoint(self, name),
            EddyStatement::ReleaseSavepoint(name) => transaction::release(self, name),
            EddyStatement::RollbackTo(name) => transaction::rollback_to(self, name),
            EddyStatement::Push(statement) => self.push(statement, params).await,
            EddyStatement::DeclareCursor {
                name,
                query,
                push,
                hold,
            } => cursor::declare(self, name, query, *push, *hold).await,
            EddyStatement::FetchCursor { name, count } => cursor::fetch(self, name, *count).await,
            EddyStatement::CloseCursor { name } => cursor::close(self, name.as_deref()).await,
            EddyStatement::NoOp { tag } => Ok(Output::Command {
                tag: tag.clone(),
                rows: None,
            }),
            EddyStatement::Sql(statement) => {
                if let Some(insert) = self.values_insert(statement)
                    && let Some(rows) = insert
                        .execute(
                            self.engine(),
                            self.writes(),
                            params.as_deref().unwrap_or(&[]),
                        )
                        .await
                {
                    return Ok(Output::Command {
                        tag: "INSERT 0".into(),
                        rows: Some(rows? as usize),
                    });
                }
                if let Some(copy) = copy::plan(self, statement).await? {
                    return Ok(copy);
                }
                query::execute(self, statement, params).await
            }
        }
    }

    /// Parameter and result types of a statement, without running it.
    pub async fn describe(&self, stmt: &EddyStatement) -> Result<Description> {
        match stmt {
            EddyStatement::Sql(statement) if copy::is_copy(statement) => {
                // As PostgreSQL does at Parse: an unknown stream or column fails the
                // prepare, so a client never enters COPY mode for a statement that cannot run.
                copy::check(self, statement).await?;
                Ok(Description {
                    params: vec![],
                    columns: None,
                })
            }
            EddyStatement::Sql(statement) => match self.values_insert(statement) {
                Some(insert) => Ok(Description {
                    params: insert.param_fields().to_vec(),
                    columns: None,
                }),
                None => query::describe(self, statement).await,
            },
            EddyStatement::Push(statement) if !copy::is_copy(statement) => {
                crate::push::describe(self, statement).await
            }
            EddyStatement::FetchCursor { name, .. } => Ok(Description {
                params: vec![],
                columns: Some(self.cursors().lock().await.schema(name)?),
            }),
            EddyStatement::ShowStreams => Ok(Description {
                params: vec![],
                columns: Some(show::streams_schema()),
            }),
            EddyStatement::ShowTopics => Ok(Description {
                params: vec![],
                columns: Some(show::topics_schema()),
            }),
            EddyStatement::ShowTables => Ok(Description {
                params: vec![],
                columns: Some(persistent::tables_schema()),
            }),
            EddyStatement::ShowQueries => Ok(Description {
                params: vec![],
                columns: Some(persistent::queries_schema()),
            }),
            EddyStatement::ExplainQuery(_) => Ok(Description {
                params: vec![],
                columns: Some(persistent::explain_schema()),
            }),
            EddyStatement::Describe(_) => Ok(Description {
                params: vec![],
                columns: Some(show::describe_schema()),
            }),
            EddyStatement::ShowVariable(name) => Ok(Description {
                params: vec![],
                columns: Some(vars::show_schema(name)),
            }),
            _ => Ok(Description {
                params: vec![],
                columns: None,
            }),
        }
    }

    /// Starts a push query, or a `COPY` of one.
    async fn push(
        &self,
        statement: &datafusion::sql::sqlparser::ast::Statement,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<Output> {
        use datafusion::sql::sqlparser::ast::{CopySource, Statement};
        let (query, copy) = match statement {
            Statement::Copy {
                source: CopySource::Query(q),
                options,
                legacy_options,
                ..
            } => {
                let format = copy::format_of(options, legacy_options)?;
                if format == CopyFormat::Json {
                    return Err(crate::Error::Unsupported(
                        "COPY TO supports FORMAT text, csv and binary".into(),
                    ));
                }
                (Statement::Query(q.clone()), Some(format))
            }
            other => (other.clone(), None),
        };
        let (schema, stream) = crate::push::execute(self, &query, params).await?;
        Ok(Output::Push {
            schema,
            stream,
            copy,
        })
    }
}
