//! [`Session`]: one client's SQL session — its DataFusion context and session variables — and
//! the dispatch of each statement to its handler in [`crate::handlers`].

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use eddy_catalog::StreamDef;
use eddy_storage::Topic;
use parking_lot::Mutex;

use crate::handlers::{copy, cursor, ddl, persistent, query, show, vars};
use crate::ingest::copy::CopyFormat;
use crate::parser::{EddyStatement, parse_statements};
use crate::provider::{EddySchemaProvider, PgCatalogSchema, SystemSchema};
use crate::{Engine, Result, functions};

/// What a statement produced.
pub enum Output {
    /// Rows (SELECT, EXPLAIN, SHOW, DESCRIBE), streamed.
    Rows {
        /// Result columns.
        schema: SchemaRef,
        /// The rows.
        stream: SendableRecordBatchStream,
    },
    /// A command's completion tag, e.g. `CREATE STREAM`, or `INSERT` with `rows`.
    Command {
        /// Tag word(s).
        tag: String,
        /// Row count, for tags that carry one.
        rows: Option<usize>,
    },
    /// `COPY ... FROM STDIN`: the server collects the data, then calls [`Session::copy_in`].
    CopyIn(Box<CopyIn>),
    /// `COPY (...) TO STDOUT`: rows to send in COPY format.
    CopyOut {
        /// Result columns.
        schema: SchemaRef,
        /// The rows.
        stream: SendableRecordBatchStream,
        /// Text or CSV.
        format: CopyFormat,
    },
    /// A push query's rows (`EMIT CHANGES`): a stream that ends only at its `LIMIT`, so the
    /// server sends each batch as it arrives (flushing) rather than buffering, and stops when
    /// the client cancels or disconnects.
    Push {
        /// Result columns.
        schema: SchemaRef,
        /// The rows, as they are committed.
        stream: SendableRecordBatchStream,
        /// `Some` for `COPY (... EMIT CHANGES) TO STDOUT`: send as COPY data in this format.
        copy: Option<CopyFormat>,
    },
    /// `BEGIN`: accepted (statements are atomic one by one; there are no multi-statement transactions).
    Begin,
    /// `COMMIT` / `ROLLBACK`, with its tag.
    EndTransaction(&'static str),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Rows { schema, .. } => write!(f, "Rows({schema:?})"),
            Output::Command { tag, rows } => write!(f, "Command({tag}, {rows:?})"),
            Output::CopyIn(c) => write!(f, "CopyIn({})", c.def.name),
            Output::CopyOut { .. } => write!(f, "CopyOut"),
            Output::Push { schema, copy, .. } => write!(f, "Push({schema:?}, {copy:?})"),
            Output::Begin => write!(f, "Begin"),
            Output::EndTransaction(t) => write!(f, "EndTransaction({t})"),
        }
    }
}

/// A COPY FROM STDIN waiting for its data.
#[derive(Debug, Clone)]
pub struct CopyIn {
    /// Target stream.
    pub def: StreamDef,
    /// Its topic.
    pub topic: Arc<Topic>,
    /// Indices of the stream's columns the data gives, in order.
    pub columns: Vec<usize>,
    /// Data format.
    pub format: CopyFormat,
}

/// Types of a statement's parameters and result, for the extended protocol's Describe.
#[derive(Debug, Clone)]
pub struct Description {
    /// Parameter types (`$1`, `$2`, ...), `None` where they cannot be inferred.
    pub params: Vec<Option<DataType>>,
    /// Result columns; `None` for statements that return no rows.
    pub columns: Option<SchemaRef>,
}

/// A DataFusion context over the engine's catalog; `changelog`: tables read as their topics.
fn context_over(engine: &Arc<Engine>, changelog: bool) -> SessionContext {
    let config = SessionConfig::new()
        .with_create_default_catalog_and_schema(false)
        .with_default_catalog_and_schema("eddy", "public")
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    let catalog = MemoryCatalogProvider::new();
    let public = if changelog {
        EddySchemaProvider::changelog(engine.clone())
    } else {
        EddySchemaProvider::new(engine.clone())
    };
    // Registering into a fresh in-memory catalog cannot fail.
    let _ = catalog.register_schema("public", Arc::new(public));
    let _ = catalog.register_schema("pg_catalog", Arc::new(PgCatalogSchema::new(engine.clone())));
    let _ = catalog.register_schema("eddy", Arc::new(SystemSchema::new(engine.clone())));
    ctx.register_catalog("eddy", Arc::new(catalog));
    functions::register(&ctx);
    ctx
}

/// One client's session.
pub struct Session {
    engine: Arc<Engine>,
    ctx: SessionContext,
    /// The same, but tables read as their changelog topics (push queries).
    changelog_ctx: SessionContext,
    vars: Mutex<BTreeMap<String, String>>,
    /// Open cursors; an async lock because `FETCH` from a push cursor waits for rows.
    cursors: tokio::sync::Mutex<cursor::Cursors>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    /// A session over `engine`, with its own DataFusion context.
    pub fn new(engine: Arc<Engine>) -> Session {
        Session {
            ctx: context_over(&engine, false),
            changelog_ctx: context_over(&engine, true),
            engine,
            vars: Mutex::new(BTreeMap::new()),
            cursors: tokio::sync::Mutex::new(cursor::Cursors::default()),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The DataFusion context.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The DataFusion context in which tables are their changelog streams (push queries).
    pub fn changelog_context(&self) -> &SessionContext {
        &self.changelog_ctx
    }

    /// Parses one query string into statements.
    pub fn parse(&self, sql: &str) -> Result<Vec<EddyStatement>> {
        parse_statements(sql)
    }

    /// Runs one statement; `params` binds `$1, $2, ...`.
    pub async fn execute(
        &self,
        stmt: &EddyStatement,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<Output> {
        match stmt {
            EddyStatement::CreateStream(c) | EddyStatement::CreateTable(c) => {
                ddl::create_stream(&self.engine, c)
            }
            EddyStatement::DropStream {
                name,
                if_exists,
                table,
            } => ddl::drop_stream(&self.engine, name, *if_exists, *table).await,
            EddyStatement::ShowStreams => show::streams(&self.engine),
            EddyStatement::ShowTables => persistent::show_tables(self),
            EddyStatement::ShowQueries => persistent::show_queries(self),
            EddyStatement::Persistent(q) => persistent::create(self, q).await,
            EddyStatement::Terminate(id) => persistent::terminate(self, id.as_deref()).await,
            EddyStatement::ExplainQuery(id) => persistent::explain(self, id),
            EddyStatement::ShowTopics => show::topics(&self.engine),
            EddyStatement::Describe(name) => show::describe(&self.engine, name),
            EddyStatement::SetVariable { name, value } => vars::set(self, name, value),
            EddyStatement::ShowVariable(name) => vars::show(self, name),
            EddyStatement::ResetVariable(name) => vars::reset(self, name),
            EddyStatement::Begin => Ok(Output::Begin),
            EddyStatement::EndTransaction { tag } => {
                self.cursors.lock().await.end_transaction();
                Ok(Output::EndTransaction(tag))
            }
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
            EddyStatement::Sql(statement) => query::describe(self, statement).await,
            EddyStatement::Push(statement) if !copy::is_copy(statement) => {
                crate::push::describe(self, statement).await
            }
            EddyStatement::FetchCursor { name, .. } => Ok(Description {
                params: vec![],
                columns: Some(self.cursors.lock().await.schema(name)?),
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
                        "COPY TO supports FORMAT text and csv".into(),
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

    pub(crate) fn cursors(&self) -> &tokio::sync::Mutex<cursor::Cursors> {
        &self.cursors
    }

    /// Starts receiving the data of a COPY FROM STDIN.
    pub fn copy_receiver(&self, copy: CopyIn) -> crate::ingest::copy::CopyReceiver {
        crate::ingest::copy::CopyReceiver::new(self.engine.clone(), copy)
    }

    /// Appends the whole data of a COPY FROM STDIN; all or nothing. Returns the number of rows.
    pub async fn copy_in(&self, copy: &CopyIn, data: &[u8]) -> Result<u64> {
        let mut receiver = self.copy_receiver(copy.clone());
        receiver.push(data).await;
        receiver.finish().await
    }

    /// A session variable's current value (settings made with SET, else the default).
    pub fn variable(&self, name: &str) -> Option<String> {
        self.vars
            .lock()
            .get(name)
            .cloned()
            .or_else(|| vars::default_value(name).map(str::to_string))
    }

    pub(crate) fn vars(&self) -> &Mutex<BTreeMap<String, String>> {
        &self.vars
    }
}
