//! [`EddyHandler`]: pgwire's callbacks for start-up, simple query, extended query and COPY.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::execution::SendableRecordBatchStream;
use eddy_sql::ingest::copy::{CopyFormat, CopyReceiver};
use eddy_sql::parser::EddyStatement;
use eddy_sql::{Engine, Error, Output, Session};
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::auth::{
    ServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, ConnectionManager, DEFAULT_NAME,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::{NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::Sync as PgSync;
use pgwire::messages::extendedquery::{Describe, TARGET_TYPE_BYTE_STATEMENT};
use pgwire::messages::simplequery::Query;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::errors::{self, error_info, to_pgwire};
use super::params::params;
use super::types::{field_infos, param_pg_type, sql_type};
use super::{Stopping, encode, push, transaction};

/// A prepared statement: its text and its parse.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The statement text.
    pub sql: String,
    /// The parsed statement.
    pub statement: EddyStatement,
}

/// Parses statements for the extended protocol (one statement per Parse message).
#[derive(Debug, Default)]
pub struct EddyQueryParser;

#[async_trait]
impl QueryParser for EddyQueryParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = eddy_sql::parser::parse_statements(sql).map_err(to_pgwire)?;
        match statements.len() {
            0 => Ok(None),
            1 => {
                let mut statement = statements.remove(0);
                let declared: Vec<_> = types
                    .iter()
                    .map(|t| t.as_ref().and_then(sql_type))
                    .collect();
                eddy_sql::parser::declare_parameter_types(&mut statement, &declared);
                Ok(Some(Prepared {
                    sql: sql.to_string(),
                    statement,
                }))
            }
            _ => Err(to_pgwire(Error::Syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            ))),
        }
    }

    // Types come from `do_describe_*`, which can plan asynchronously with the session.
    fn get_parameter_types(&self, _stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(vec![])
    }

    fn get_result_schema(
        &self,
        _stmt: &Prepared,
        _format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(vec![])
    }
}

/// Parameters announced at start-up: PostgreSQL 15, so clients pick their 15 code paths.
struct ServerParameters;

impl ServerParameterProvider for ServerParameters {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<HashMap<String, String>> {
        let mut p = HashMap::new();
        for (k, v) in [
            ("server_version", eddy_sql::SERVER_VERSION),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("IntervalStyle", "postgres"),
            ("TimeZone", "UTC"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("is_superuser", "on"),
            ("default_transaction_read_only", "off"),
            ("in_hot_standby", "off"),
        ] {
            p.insert(k.to_string(), v.to_string());
        }
        let app = client
            .metadata()
            .get("application_name")
            .cloned()
            .unwrap_or_default();
        p.insert("application_name".into(), app);
        p.insert(
            "session_authorization".into(),
            client.metadata().get("user").cloned().unwrap_or_default(),
        );
        Some(p)
    }
}

/// The COPY FROM STDIN in progress on a connection, if any. It is taken out while a piece of
/// data is handed to it (the lock is never held across an await).
#[derive(Default)]
struct CopySlot(Mutex<Option<CopyReceiver>>);

/// Serves every protocol callback of every connection.
pub struct EddyHandler {
    engine: Arc<Engine>,
    manager: Arc<ConnectionManager>,
    pids: RandomPidSecretKeyGenerator,
    parser: Arc<EddyQueryParser>,
    /// Cancelled when the server stops: push queries end then (they would never finish).
    stopping: Stopping,
}

impl EddyHandler {
    /// A handler over `engine`; `manager` tracks connections for CancelRequest.
    pub fn new(engine: Arc<Engine>, manager: Arc<ConnectionManager>, stopping: Stopping) -> Self {
        Self {
            engine,
            manager,
            pids: RandomPidSecretKeyGenerator::default(),
            parser: Arc::new(EddyQueryParser),
            stopping,
        }
    }

    fn session<C: ClientInfo + ?Sized>(&self, client: &C) -> Arc<Session> {
        client
            .session_extensions()
            .get_or_insert_with(|| self.engine.session())
    }

    /// Turns a statement's output into a pgwire response.
    fn response<C: ClientInfo>(
        &self,
        client: &C,
        output: Output,
        format: Option<&Format>,
    ) -> PgWireResult<Response> {
        Ok(match output {
            Output::Rows { schema, stream } => {
                let fields = Arc::new(field_infos(&schema, format));
                let row_fields = fields.clone();
                let rows = cancellable(client, stream).flat_map(move |batch| {
                    let rows: Vec<PgWireResult<_>> = match batch {
                        Ok(batch) => match encode::data_rows(&batch, &row_fields) {
                            Ok(rows) => rows.into_iter().map(Ok).collect(),
                            Err(e) => vec![Err(e)],
                        },
                        Err(e) => vec![Err(to_pgwire(eddy_sql::Error::from_datafusion(e)))],
                    };
                    stream::iter(rows)
                });
                Response::Query(QueryResponse::new(fields, rows))
            }
            Output::Command { tag, rows } => {
                let tag = Tag::new(&tag);
                Response::Execution(match rows {
                    Some(n) => tag.with_rows(n),
                    None => tag,
                })
            }
            Output::CopyIn(copy) => {
                let columns = copy.columns.len();
                let format = i8::from(copy.format == CopyFormat::Binary);
                let slot = client
                    .session_extensions()
                    .get_or_insert_with(CopySlot::default);
                *slot
                    .0
                    .lock()
                    .map_err(|_| PgWireError::ApiError("copy state poisoned".into()))? =
                    Some(self.session(client).copy_receiver(*copy));
                Response::CopyIn(CopyResponse::new(format, columns, stream::empty()))
            }
            Output::CopyOut { .. } => {
                // COPY TO streams inside `do_query` (see `push::send_copy`), never through here.
                return Err(PgWireError::ApiError(
                    "a COPY TO reached the buffered response path".into(),
                ));
            }
            Output::Push { .. } => {
                // Push queries stream inside `do_query` (see `push::send`), never through here.
                return Err(PgWireError::ApiError(
                    "a push query reached the buffered response path".into(),
                ));
            }
            Output::Begin => Response::TransactionStart(Tag::new("BEGIN")),
            Output::EndTransaction(tag) => Response::TransactionEnd(Tag::new(tag)),
        })
    }
}

/// Mirrors SQL cursors as protocol portals of the same name, as PostgreSQL does: psycopg's
/// named cursors `DECLARE` through the extended protocol, then Describe the portal named after
/// the cursor to learn its columns. The portal fetches through the cursor.
fn cursor_portals<C>(client: &C, statement: &EddyStatement)
where
    C: ClientPortalStore,
    C::PortalStore: PortalStore<Statement = Prepared>,
{
    match statement {
        EddyStatement::DeclareCursor { name, .. } => {
            let fetch = Prepared {
                sql: format!("FETCH ALL FROM \"{}\"", name.replace('"', "\"\"")),
                statement: EddyStatement::FetchCursor {
                    name: name.clone(),
                    count: eddy_sql::parser::FetchCount::All,
                },
            };
            let stored = Arc::new(StoredStatement::new(name.clone(), fetch, vec![]));
            client
                .portal_store()
                .put_portal(Arc::new(Portal::new_cursor(name.clone(), stored)));
        }
        EddyStatement::CloseCursor { name: Some(name) } => client.portal_store().rm_portal(name),
        _ => {}
    }
}

/// Ends a result stream with [`Error::ServerStopping`] (57P01) when the server stops: a push
/// query suspended in a portal would otherwise wait for rows through the whole shutdown grace.
fn until_stopped(
    stream: SendableRecordBatchStream,
    stopping: Stopping,
) -> SendableRecordBatchStream {
    eddy_sql::end_stream_when(stream, stopping.cancelled_owned(), Error::ServerStopping)
}

/// Ends a result stream with SQLSTATE 57014 when the client sends a CancelRequest while rows are
/// still being produced. (pgwire itself only cancels while `do_query` runs; a query's real work
/// happens later, as its stream is consumed.)
fn cancellable<C: ClientInfo>(
    client: &C,
    stream: SendableRecordBatchStream,
) -> SendableRecordBatchStream {
    let handle = client.session_extensions().get::<Arc<ConnectionHandle>>();
    let cancel = async move {
        // Registering happens on the first poll, after pgwire's own wait for `do_query` ended.
        if let Some(handle) = handle {
            let signal = handle.start_query().await;
            if signal.await.is_ok() {
                return;
            }
        }
        std::future::pending::<()>().await
    };
    eddy_sql::end_stream_when(stream, cancel, Error::Cancelled)
}

#[async_trait]
impl StartupHandler for EddyHandler {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            let (pid, secret) = self.pids.generate(client);
            client.set_pid_and_secret_key(pid, secret.clone());
            let (handle, guard) = self.manager.register(pid, secret);
            client
                .session_extensions()
                .insert::<Arc<ConnectionHandle>>(handle);
            client.session_extensions().insert(guard);
            client.session_extensions().insert(self.engine.session());
            finish_authentication(client, &ServerParameters).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl SimpleQueryHandler for EddyHandler {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.session(client);
        transaction::simple_query(self, &session, client, &query.query).await
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.session(client);
        let statements = match session.parse(query) {
            Ok(s) => s,
            Err(e) => {
                // A statement that does not parse fails the block, as in PostgreSQL.
                session.fail_transaction();
                return Ok(vec![Response::Error(Box::new(error_info(&e)))]);
            }
        };
        if statements.len() > 1
            && statements
                .iter()
                .any(|s| matches!(s, EddyStatement::Push(_)))
        {
            let e = Error::Unsupported(
                "a push query (EMIT CHANGES) must be the only statement in its query string".into(),
            );
            return Ok(vec![Response::Error(Box::new(error_info(&e)))]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        for statement in &statements {
            let result = if matches!(statement, EddyStatement::FetchCursor { .. }) {
                push::with_keepalive(client, &self.stopping, session.execute(statement, None))
                    .await?
            } else {
                session.execute(statement, None).await
            };
            match result {
                Ok(Output::Push {
                    schema,
                    stream,
                    copy,
                }) => {
                    let tag =
                        push::send(client, &self.stopping, &schema, stream, copy, None).await?;
                    responses.push(Response::Execution(tag));
                }
                Ok(Output::CopyOut {
                    schema,
                    stream,
                    format,
                }) => {
                    let tag =
                        push::send_copy(client, &self.stopping, &schema, stream, format).await?;
                    responses.push(Response::Execution(tag));
                }
                Ok(output) => {
                    let response = self.response(client, output, None)?;
                    let is_copy_in = matches!(response, Response::CopyIn(_));
                    responses.push(response);
                    if is_copy_in {
                        break; // the rest of the string waits for the data
                    }
                }
                Err(e) => {
                    responses.push(Response::Error(Box::new(error_info(&e))));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for EddyHandler {
    type Statement = Prepared;
    type QueryParser = EddyQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.session(client);
        transaction::sync(&session, client).await
    }

    /// A Describe of a statement answers ParameterDescription, then NoData when the statement
    /// returns no rows (an INSERT), as PostgreSQL does. pgwire's default sends NoData only
    /// when the statement has no parameters either (`DescribeStatementResponse::is_no_data`),
    /// so a parameterised INSERT was described by an empty RowDescription, and pgjdbc, which
    /// describes the statement once it prepares it on the server (`executeBatch` of the same
    /// statement, or its 5th execution at the default `prepareThreshold`), then took every
    /// execution's result for a result set: `executeBatch` counted 0 rows and
    /// `executeUpdate` failed with "A result was returned when none was expected".
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT
            && let Some(Entry::Value(statement)) = client.portal_store().get_statement(name)
        {
            let described = self.do_describe_statement(client, &statement).await?;
            let types = described.parameters.iter().map(|t| t.oid()).collect();
            client
                .send(PgWireBackendMessage::ParameterDescription(
                    ParameterDescription::new(types),
                ))
                .await?;
            let rows = if described.fields.is_empty() {
                PgWireBackendMessage::NoData(NoData::new())
            } else {
                let fields = described.fields.iter().map(Into::into).collect();
                PgWireBackendMessage::RowDescription(RowDescription::new(fields))
            };
            client.send(rows).await?;
            return Ok(());
        }
        self._on_describe(client, message).await
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<Prepared>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.session(client);
        let description = session
            .describe(&target.statement.statement)
            .await
            .map_err(to_pgwire)?;
        let count = description.params.len().max(target.parameter_types.len());
        let params = (0..count)
            .map(|i| match target.parameter_types.get(i).cloned().flatten() {
                Some(t) if t != Type::UNKNOWN => t,
                _ => param_pg_type(description.params.get(i).and_then(|t| t.as_ref())),
            })
            .collect();
        let fields = description
            .columns
            .map(|s| field_infos(&s, None))
            .unwrap_or_default();
        Ok(DescribeStatementResponse::new(params, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        target: &Portal<Prepared>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.session(client);
        let description = session
            .describe(&target.statement.statement.statement)
            .await
            .map_err(to_pgwire)?;
        let fields = description
            .columns
            .map(|s| field_infos(&s, Some(&target.result_column_format)))
            .unwrap_or_default();
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.session(client);
        let statement = &portal.statement.statement.statement;
        let bound = if portal.parameter_len() > 0 {
            let description = session.describe(statement).await.map_err(to_pgwire)?;
            Some(params(
                portal,
                &portal.statement.parameter_types,
                &description.params,
            )?)
        } else {
            None
        };
        let output = if matches!(statement, EddyStatement::FetchCursor { .. }) {
            push::with_keepalive(client, &self.stopping, session.execute(statement, bound)).await?
        } else {
            session.execute(statement, bound).await
        }
        .map_err(to_pgwire)?;
        cursor_portals(client, statement);
        match output {
            // Execute with a row limit (JDBC's setFetchSize, pg-cursor, pg-query-stream): the
            // rows go through pgwire's portal, which sends `max_rows` of them, then
            // PortalSuspended, and the next Execute waits for more — a push query as a cursor.
            Output::Push {
                schema,
                stream,
                copy: None,
            } if max_rows > 0 => {
                let stream = until_stopped(stream, self.stopping.clone());
                self.response(
                    client,
                    Output::Rows { schema, stream },
                    Some(&portal.result_column_format),
                )
            }
            Output::Push {
                schema,
                stream,
                copy,
            } => {
                let format = Some(&portal.result_column_format);
                let tag = push::send(client, &self.stopping, &schema, stream, copy, format).await?;
                Ok(Response::Execution(tag))
            }
            Output::CopyOut {
                schema,
                stream,
                format,
            } => {
                let tag = push::send_copy(client, &self.stopping, &schema, stream, format).await?;
                Ok(Response::Execution(tag))
            }
            output => self.response(client, output, Some(&portal.result_column_format)),
        }
    }
}

#[async_trait]
impl CopyHandler for EddyHandler {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let slot = client
            .session_extensions()
            .get_or_insert_with(CopySlot::default);
        let lock = || {
            slot.0
                .lock()
                .map_err(|_| PgWireError::ApiError("copy state poisoned".into()))
        };
        let receiver = lock()?.take();
        if let Some(mut receiver) = receiver {
            receiver.push(&copy_data.data).await;
            *lock()? = Some(receiver);
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let slot = client
            .session_extensions()
            .get_or_insert_with(CopySlot::default);
        let receiver = slot
            .0
            .lock()
            .map_err(|_| PgWireError::ApiError("copy state poisoned".into()))?
            .take();
        let Some(receiver) = receiver else {
            return Err(errors::copy_data_without_copy());
        };
        let rows = match receiver.finish().await {
            Ok(rows) => rows,
            Err(e) => {
                transaction::fail_block(client, &self.session(client));
                return Err(to_pgwire(e));
            }
        };
        client
            .send(PgWireBackendMessage::CommandComplete(
                Tag::new("COPY").with_rows(rows as usize).into(),
            ))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(slot) = client.session_extensions().get::<CopySlot>()
            && let Ok(mut guard) = slot.0.lock()
        {
            guard.take();
        }
        transaction::fail_block(client, &self.session(client));
        errors::copy_failed(&fail.message)
    }
}
