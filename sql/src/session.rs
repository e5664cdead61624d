//! [`Session`]: one client's SQL session — its DataFusion context, session variables, cursors
//! and transaction block — and the dispatch of each statement to its handler in
//! [`crate::handlers`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::task::{Poll, ready};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{FieldRef, SchemaRef};
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;
use futures::StreamExt;
use parking_lot::Mutex;

use crate::functions::SERVER_VERSION;
use crate::ingest::copy::{CopyFormat, CopyIn};
use crate::ingest::txn::{Mark, Writes};
use crate::ingest::values::ValuesInsert;
use crate::parser::{EddyStatement, parse_statements};
use crate::provider::{EddySchemaProvider, InformationSchema, PgCatalogSchema, SystemSchema};
use crate::{Engine, Error, Result, functions};

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
    /// `BEGIN`: a transaction block is open (or already was).
    Begin,
    /// `COMMIT` / `ROLLBACK`, with its tag: no block is open any more.
    EndTransaction(&'static str),
}

impl Output {
    /// The same output, its rows ending with [`Error::StatementTimeout`] at `deadline`.
    pub(crate) fn until(self, deadline: tokio::time::Instant) -> Output {
        self.map_stream(|stream| until_deadline(stream, deadline))
    }

    /// The same output; an error while its rows stream fails the transaction `block`.
    pub(crate) fn failing_block(self, block: Arc<Mutex<Option<Block>>>) -> Output {
        self.map_stream(|stream| {
            use futures::StreamExt;
            let schema = stream.schema();
            let rows = stream.inspect(move |batch| {
                if batch.is_err()
                    && let Some(block) = block.lock().as_mut()
                {
                    block.failed = true;
                }
            });
            Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, rows))
        })
    }

    /// The same output with `f` applied to its row stream, if it has one.
    fn map_stream(
        self,
        f: impl FnOnce(SendableRecordBatchStream) -> SendableRecordBatchStream,
    ) -> Output {
        match self {
            Output::Rows { schema, stream } => Output::Rows {
                schema,
                stream: f(stream),
            },
            Output::Push {
                schema,
                stream,
                copy,
            } => Output::Push {
                schema,
                stream: f(stream),
                copy,
            },
            Output::CopyOut {
                schema,
                stream,
                format,
            } => Output::CopyOut {
                schema,
                stream: f(stream),
                format,
            },
            other => other,
        }
    }
}

/// `stream`, ending with [`Error::StatementTimeout`] if it is still going at `deadline`.
fn until_deadline(
    stream: SendableRecordBatchStream,
    deadline: tokio::time::Instant,
) -> SendableRecordBatchStream {
    end_stream_when(
        stream,
        tokio::time::sleep_until(deadline),
        Error::StatementTimeout,
    )
}

/// `stream` until `signal` completes; then it ends with `error` (a statement timeout, a
/// cancel, a server stop) instead of its remaining rows. The one way a statement's rows are
/// cut off.
pub fn end_stream_when(
    stream: SendableRecordBatchStream,
    signal: impl Future<Output = ()> + Send + 'static,
    error: Error,
) -> SendableRecordBatchStream {
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures::StreamExt;
    let schema = stream.schema();
    let fired = Arc::new(AtomicBool::new(false));
    let flag = fired.clone();
    let signal = async move {
        signal.await;
        flag.store(true, Ordering::SeqCst);
    };
    let tail = futures::stream::once(async move {
        fired.load(Ordering::SeqCst).then(|| {
            Err(datafusion::error::DataFusionError::External(Box::new(
                error,
            )))
        })
    })
    .filter_map(futures::future::ready);
    let rows = stream.take_until(signal).chain(tail);
    Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, rows))
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

/// A statement as planned: its logical plan (parameters unbound), its description, and — for
/// a pull query by key — the lookup that answers it without the plan, or — for a query of
/// constants — its physical plan and, once one execution has read them whole, its rows.
/// `exec::cache` makes them and decides which are kept.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub plan: datafusion::logical_expr::LogicalPlan,
    pub description: Description,
    pub lookup: Option<Arc<crate::provider::KeyLookup>>,
    pub constant: Option<Arc<Constant>>,
}

/// A query of constants: its physical plan, and its rows once an execution has read them all.
#[derive(Debug)]
pub(crate) struct Constant {
    plan: Arc<dyn ExecutionPlan>,
    rows: OnceLock<Vec<RecordBatch>>,
}

impl Constant {
    pub(crate) fn new(plan: Arc<dyn ExecutionPlan>) -> Self {
        Constant {
            plan,
            rows: OnceLock::new(),
        }
    }

    /// The most bytes of rows kept; a larger result is computed at every execution.
    pub(crate) const KEEP_BYTES: usize = 64 * 1024;

    /// The query's rows: the kept ones, else the plan's — kept if this execution reads them
    /// to their end without an error and they fit in [`Self::KEEP_BYTES`].
    pub(crate) fn execute(
        self: &Arc<Self>,
        task: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = self.plan.schema();
        if let Some(rows) = self.rows.get() {
            let rows = futures::stream::iter(rows.clone().into_iter().map(Ok));
            return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rows)));
        }
        let mut inner = execute_stream(self.plan.clone(), task).map_err(Error::from_datafusion)?;
        let constant = self.clone();
        let mut kept = Some(Vec::new());
        let mut bytes = 0;
        let stream = futures::stream::poll_fn(move |cx| {
            let next = ready!(inner.poll_next_unpin(cx));
            match &next {
                Some(Ok(batch)) => {
                    bytes += batch.get_array_memory_size();
                    match kept.as_mut() {
                        Some(rows) if bytes <= Self::KEEP_BYTES => rows.push(batch.clone()),
                        _ => kept = None,
                    }
                }
                Some(Err(_)) => kept = None,
                None => {
                    if let Some(rows) = kept.take() {
                        let _ = constant.rows.set(rows);
                    }
                }
            }
            Poll::Ready(next)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// A session's planned statements (see `exec::cache`), each with the catalog version it was
/// planned at; bounded, least recently used first out. `T`: what is kept of a statement —
/// its [`Planned`] query, or the fast path's form of an INSERT (`None`: it has none).
pub(crate) struct PlanCache<T = Arc<Planned>> {
    entries: quick_cache::sync::Cache<Statement, Arc<(u64, T)>>,
}

impl<T: Clone> PlanCache<T> {
    /// Statements one session keeps planned.
    const CAPACITY: usize = 256;

    /// The plan of `statement` if it was made at catalog version `version`.
    pub(crate) fn get(&self, statement: &Statement, version: u64) -> Option<T> {
        self.entries
            .get(statement)
            .filter(|entry| entry.0 == version)
            .map(|entry| entry.1.clone())
    }

    pub(crate) fn insert(&self, statement: Statement, version: u64, planned: T) {
        self.entries.insert(statement, Arc::new((version, planned)));
    }
}

impl<T: Clone> Default for PlanCache<T> {
    fn default() -> Self {
        PlanCache {
            entries: quick_cache::sync::Cache::new(Self::CAPACITY),
        }
    }
}

impl<T> std::fmt::Debug for PlanCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanCache")
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// Types of a statement's parameters and result, for the extended protocol's Describe.
#[derive(Debug, Clone)]
pub struct Description {
    /// Parameter types (`$1`, `$2`, ...) as fields (with the declared SQL type of the column
    /// a parameter goes into), `None` where they cannot be inferred.
    pub params: Vec<Option<FieldRef>>,
    /// Result columns; `None` for statements that return no rows.
    pub columns: Option<SchemaRef>,
}

/// A DataFusion context over the engine's catalog; `changelog`: tables read as their topics.
/// Its plans write through `writes` (the session's transaction block).
fn context_over(
    engine: &Arc<Engine>,
    changelog: bool,
    vars: &Vars,
    writes: &Arc<Writes>,
) -> SessionContext {
    let config = SessionConfig::new()
        .with_extension(writes.clone())
        .with_create_default_catalog_and_schema(false)
        .with_default_catalog_and_schema("eddy", "public")
        // Eddy's own `information_schema` (PostgreSQL's type names), not DataFusion's.
        .with_information_schema(false)
        // The session's TimeZone (UTC, as the server announces it): `::timestamptz` is an
        // instant in it, as PostgreSQL's is, not a timestamp without a zone.
        .set_str("datafusion.execution.time_zone", crate::parser::types::UTC);
    let ctx = SessionContext::new_with_config(config);
    let catalog = MemoryCatalogProvider::new();
    let public = if changelog {
        EddySchemaProvider::changelog(engine.clone())
    } else {
        EddySchemaProvider::new(engine.clone())
    };
    // Registering into a fresh in-memory catalog cannot fail.
    let _ = catalog.register_schema("public", Arc::new(public));
    let settings = crate::provider::pg_catalog::Settings::new({
        let vars = vars.clone();
        move || settings_of(&vars)
    });
    let pg_catalog = PgCatalogSchema::new(engine.clone()).with_settings(settings);
    let _ = catalog.register_schema("pg_catalog", Arc::new(pg_catalog));
    let _ = catalog.register_schema("eddy", Arc::new(SystemSchema::new(engine.clone())));
    let _ = catalog.register_schema(
        "information_schema",
        Arc::new(InformationSchema::new(engine.clone())),
    );
    ctx.register_catalog("eddy", Arc::new(catalog));
    functions::register(&ctx);
    functions::register_catalog(&ctx, engine);
    let vars = vars.clone();
    functions::register_settings(&ctx, move |name| {
        vars.lock()
            .get(name)
            .cloned()
            .or_else(|| default_value(name).map(str::to_string))
    });
    ctx
}

/// The session's variables, shared with its `current_setting()`.
type Vars = Arc<Mutex<BTreeMap<String, String>>>;

/// Where the session is with respect to transaction blocks, as ReadyForQuery reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    /// No block is open: each statement commits on its own.
    Idle,
    /// A block is open (`BEGIN`); its writes wait for COMMIT.
    InBlock,
    /// A statement of the open block failed: everything but ROLLBACK (or ROLLBACK TO a
    /// savepoint) is refused with 25P02.
    Failed,
}

/// An open transaction block, besides its writes (those wait in the session's [`Writes`]).
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) failed: bool,
    /// Savepoints, oldest first (a name may repeat: the latest wins, as in PostgreSQL).
    pub(crate) savepoints: Vec<Savepoint>,
    /// The session variables at BEGIN: ROLLBACK restores them, as PostgreSQL undoes `SET`.
    pub(crate) vars_at_begin: BTreeMap<String, String>,
    /// A ROLLBACK TO left the failed state since the last ReadyForQuery.
    pub(crate) recovered: bool,
}

/// One savepoint: where the block's writes and variables were when it was set.
#[derive(Debug)]
pub(crate) struct Savepoint {
    pub(crate) name: String,
    pub(crate) mark: Mark,
    pub(crate) vars: BTreeMap<String, String>,
}

/// One client's session.
pub struct Session {
    engine: Arc<Engine>,
    ctx: SessionContext,
    /// The state of `ctx`, taken once. Each query is planned and optimised with it (its
    /// execution start time marked first), where `SessionContext::state()` would clone the
    /// whole state — every function map — per call; the context's state never changes after
    /// the session is made. An async lock: planning resolves tables asynchronously.
    planner: tokio::sync::Mutex<SessionState>,
    /// What its plans execute with, made once from the same state for the same reason.
    task_ctx: Arc<TaskContext>,
    /// The same as `ctx`, but tables read as their changelog topics (push queries); made on
    /// first use, most sessions never push.
    changelog_ctx: OnceLock<SessionContext>,
    vars: Vars,
    /// Open cursors; an async lock because `FETCH` from a push cursor waits for rows.
    cursors: tokio::sync::Mutex<Cursors>,
    /// Where the session's rows go: the log, or its open block's pending writes.
    writes: Arc<Writes>,
    /// The open transaction block, if any (shared with its result streams, whose errors fail
    /// it).
    block: Arc<Mutex<Option<Block>>>,
    /// Queries planned once (prepared statements, repeated query texts).
    plans: PlanCache,
    /// The same for INSERTs: their fast path's form, made once (Describe and each Execute
    /// would otherwise resolve the stream and its columns again).
    inserts: PlanCache<Option<Arc<ValuesInsert>>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Engine {
    /// A new SQL session.
    pub fn session(self: &Arc<Self>) -> Session {
        Session::new(self.clone())
    }
}

impl Session {
    /// A session over `engine`, with its own DataFusion context.
    pub fn new(engine: Arc<Engine>) -> Session {
        let vars = Vars::default();
        let writes = Arc::new(Writes::default());
        let ctx = context_over(&engine, false, &vars, &writes);
        let state = ctx.state();
        Session {
            task_ctx: state.task_ctx(),
            planner: tokio::sync::Mutex::new(state),
            ctx,
            changelog_ctx: OnceLock::new(),
            engine,
            vars,
            cursors: tokio::sync::Mutex::new(Cursors::default()),
            writes,
            block: Arc::default(),
            plans: Default::default(),
            inserts: Default::default(),
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
        self.changelog_ctx
            .get_or_init(|| context_over(&self.engine, true, &self.vars, &self.writes))
    }

    /// The logical plan of `statement` in the session's ordinary context.
    pub(crate) async fn logical_plan(&self, statement: DFStatement) -> Result<LogicalPlan> {
        let state = self.planner.lock().await;
        state
            .statement_to_plan(statement)
            .await
            .map_err(Error::from_datafusion)
    }

    /// `plan` (parameters bound) optimised and physically planned, with this moment as its
    /// execution time (`now()`).
    pub(crate) async fn physical_plan(&self, plan: &LogicalPlan) -> Result<Arc<dyn ExecutionPlan>> {
        let mut state = self.planner.lock().await;
        state.mark_start_execution();
        state
            .create_physical_plan(plan)
            .await
            .map_err(Error::from_datafusion)
    }

    /// What the session's physical plans execute with.
    pub(crate) fn task_ctx(&self) -> Arc<TaskContext> {
        self.task_ctx.clone()
    }

    /// Parses one query string into statements.
    pub fn parse(&self, sql: &str) -> Result<Vec<EddyStatement>> {
        parse_statements(sql)
    }

    pub(crate) fn cursors(&self) -> &tokio::sync::Mutex<Cursors> {
        &self.cursors
    }

    /// Starts receiving the data of a COPY FROM STDIN.
    pub fn copy_receiver(&self, copy: CopyIn) -> crate::ingest::copy::CopyReceiver {
        crate::ingest::copy::CopyReceiver::new(self.engine.clone(), copy, self.writes.clone())
    }

    pub(crate) fn plans(&self) -> &PlanCache {
        &self.plans
    }

    /// The fast path's form of `statement` (an `INSERT ... VALUES` it takes), made once per
    /// catalog version; `None` when the fast paths are off or the statement is not one.
    pub(crate) fn values_insert(&self, statement: &Statement) -> Option<Arc<ValuesInsert>> {
        if !self.fast_paths() || !matches!(statement, Statement::Insert(_)) {
            return None;
        }
        let version = self.engine.catalog().applied();
        if let Some(insert) = self.inserts.get(statement, version) {
            return insert;
        }
        let insert = ValuesInsert::of(&self.engine, statement).map(Arc::new);
        self.inserts
            .insert(statement.clone(), version, insert.clone());
        insert
    }

    pub(crate) fn writes(&self) -> &Arc<Writes> {
        &self.writes
    }

    pub(crate) fn block(&self) -> &Arc<Mutex<Option<Block>>> {
        &self.block
    }

    /// The session's transaction status.
    pub fn transaction_status(&self) -> TransactionStatus {
        match &*self.block.lock() {
            None => TransactionStatus::Idle,
            Some(b) if b.failed => TransactionStatus::Failed,
            Some(_) => TransactionStatus::InBlock,
        }
    }

    /// The status to report in a ReadyForQuery. `error_sent`: the server sent an error since
    /// the last one that may not have come from a statement of this session (a Parse or Bind
    /// error, a row that failed to encode); as in PostgreSQL, it fails an open block — unless
    /// the block was just recovered by ROLLBACK TO, whose own success the protocol layer
    /// cannot tell from an earlier error.
    pub fn ready_for_query(&self, error_sent: bool) -> TransactionStatus {
        if let Some(block) = self.block.lock().as_mut() {
            if error_sent && !block.recovered {
                block.failed = true;
            }
            block.recovered = false;
        }
        self.transaction_status()
    }

    /// Marks the open block failed (a statement of it failed), if there is one.
    pub fn fail_transaction(&self) {
        if let Some(block) = self.block.lock().as_mut() {
            block.failed = true;
        }
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
            .or_else(|| default_value(name).map(str::to_string))
    }

    /// Whether `INSERT ... VALUES` and pull queries by key may skip DataFusion
    /// ([`crate::ingest::values`], [`crate::provider::lookup`]): on unless `SET eddy.fast_paths =
    /// off`, which — like PostgreSQL's `enable_*` planner settings — exists to compare the two
    /// ways on the same statements.
    pub(crate) fn fast_paths(&self) -> bool {
        self.vars.lock().get(FAST_PATHS).is_none_or(|v| v != "off")
    }

    pub(crate) fn vars(&self) -> &Mutex<BTreeMap<String, String>> {
        &self.vars
    }
}

/// One open cursor.
pub(crate) struct Cursor {
    pub(crate) schema: SchemaRef,
    pub(crate) stream: SendableRecordBatchStream,
    /// Rows of the last batch not fetched yet.
    pub(crate) pending: Option<RecordBatch>,
    pub(crate) hold: bool,
    /// A push cursor whose first FETCH has not come yet (logged once, when it does).
    pub(crate) push_unfetched: bool,
}

/// The session's open cursors, by name.
#[derive(Default)]
pub(crate) struct Cursors(pub(crate) HashMap<String, Cursor>);

impl Cursors {
    /// Closes the cursors a transaction end closes (those without `WITH HOLD`).
    pub(crate) fn end_transaction(&mut self) {
        self.0.retain(|_, c| c.hold);
    }

    /// A cursor's result columns.
    pub(crate) fn schema(&self, name: &str) -> Result<SchemaRef> {
        Ok(self.get(name)?.schema.clone())
    }

    fn get(&self, name: &str) -> Result<&Cursor> {
        self.0.get(name).ok_or_else(|| unknown_cursor(name))
    }
}

/// Session variables and their defaults (what `SHOW ALL` lists).
/// The setting [`Session::fast_paths`] reads.
pub(crate) const FAST_PATHS: &str = "eddy.fast_paths";

pub(crate) const DEFAULTS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("auto.offset.reset", "latest"),
    ("block_size", "8192"),
    ("bytea_output", "hex"),
    ("client_encoding", "UTF8"),
    ("client_min_messages", "notice"),
    ("datestyle", "ISO, MDY"),
    // Every relation's access method (`pg_am`): SQLAlchemy compares each table's to it.
    ("default_table_access_method", "log"),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("extra_float_digits", "1"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("is_superuser", "on"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
    ("lc_messages", "C"),
    ("lc_monetary", "C"),
    ("lc_numeric", "C"),
    ("lc_time", "C"),
    ("max_identifier_length", "63"),
    ("max_index_keys", "32"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", SERVER_VERSION),
    ("server_version_num", "150008"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
];

/// The session's settings for `pg_settings`: every known one, and any the session set.
fn settings_of(vars: &Vars) -> Vec<crate::provider::pg_catalog::Setting> {
    use crate::provider::pg_catalog::Setting;
    let set = vars.lock().clone();
    let mut out: Vec<Setting> = DEFAULTS
        .iter()
        .map(|(name, default)| Setting {
            name: name.to_string(),
            value: set
                .get(*name)
                .cloned()
                .unwrap_or_else(|| default.to_string()),
            default: Some(default.to_string()),
            set: set.contains_key(*name),
        })
        .collect();
    out.extend(
        set.iter()
            .filter(|(name, _)| default_value(name).is_none())
            .map(|(name, value)| Setting {
                name: name.clone(),
                value: value.clone(),
                default: None,
                set: true,
            }),
    );
    out
}

/// A setting's default, if it is known.
pub fn default_value(name: &str) -> Option<&'static str> {
    DEFAULTS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The error for a cursor name the session does not have (34000).
pub(crate) fn unknown_cursor(name: &str) -> Error {
    Error::UndefinedObject(format!("cursor \"{name}\" does not exist"))
}
