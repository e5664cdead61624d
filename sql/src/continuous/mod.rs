//! Persistent queries and tables: `CREATE STREAM|TABLE ... AS SELECT`, `INSERT INTO ...
//! SELECT ... EMIT CHANGES`, source tables (`CREATE TABLE ... PRIMARY KEY`), and the stores
//! that pull queries read.
//!
//! ```text
//!  source partitions ─ PartitionTail ─▶ Runner ─ steps (filters, projections) ─┬─▶ sink rows
//!     (watch HW)                          │        Aggregator (keys × windows) ─┘      │
//!                                         └─ commit: Wal (offsets + state delta + output)
//!                                              then sink append (tagged), then TableStore
//!  table topic ─ PartitionTail ─▶ materialize ─▶ TableStore (source tables)
//! ```
//!
//! - [`plan`] plans the `SELECT` once with DataFusion and compiles it;
//! - [`aggregator`] is the keyed, windowed aggregation ([`aggregate`] its accumulators,
//!   [`window`] its windows);
//! - [`wal`] is the checkpoint log that makes a query exactly-once across crashes;
//! - [`runner`] is the task per query; it fills the table stores pull queries read
//!   ([`crate::engine::TableStore`]) and reports to the registry ([`crate::engine::Queries`]).
//!
//! A query runs as one tokio task per source partition when the rows it combines share a
//! partition (row-by-row queries, GROUP BY the source's KEY column), else as one task for all
//! partitions; each task has its own checkpoint log and its own shard of the table's store.
//! State is in memory, checkpointed incrementally (see [`wal`]). This module never speaks a
//! wire protocol and reaches files only through `eddy-storage` (its logs, and
//! `CheckpointDirs` for the per-query directories).

pub(crate) mod aggregate;
pub(crate) mod aggregator;
pub(crate) mod plan;
pub(crate) mod runner;
pub(crate) mod wal;
pub(crate) mod window;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use eddy_catalog::{ColumnDef, QueryDef, RelationKind, SqlType, StreamDef, StreamOptions};
use eddy_storage::CheckpointDirs;
use tokio::sync::watch;

use self::plan::{ContinuousPlan, Shape};
use self::runner::{Runner, RunnerParts};
use crate::engine::{QueryInfo, QueryState, Running, Status, TableStore, WindowColumns};
use crate::parser::{EddyStatement, PersistentQuery, SinkKind, parse_statements};
use crate::{Engine, Error, Result};

/// A query's checkpoint directory (see [`CheckpointDirs`]).
fn query_dir(engine: &Engine, id: &str) -> PathBuf {
    CheckpointDirs::new(engine.data_dir()).dir(id)
}

/// The columns of `def` without `rowtime`, as a table's store holds them (each with its
/// declared SQL type, which pull queries' results carry).
fn user_schema(def: &StreamDef) -> SchemaRef {
    let schema = def.table_schema();
    let n = def.columns.len();
    Arc::new(Schema::new(schema.fields()[..n].to_vec()))
}

/// Starts a source table's store and the task that fills it from the table's topic.
pub(crate) fn start_table(engine: &Arc<Engine>, def: &StreamDef) -> Result<()> {
    let (_, topic) = engine.stream(&def.name)?;
    let key = def
        .primary_key
        .iter()
        .map(|k| {
            def.column_index(k)
                .ok_or_else(|| Error::Internal(format!("primary key {k} is not a column")))
        })
        .collect::<Result<Vec<_>>>()?;
    let store = Arc::new(TableStore::new(user_schema(def), key, None, 1)?.following(topic.clone()));
    engine.tables().insert(&def.name, store.clone());
    let (name, def) = (def.name.clone(), def.clone());
    let table = name.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = runner::materialize(topic, def, store).await {
            tracing::error!(table = %name, error = %e, "table materialization stopped");
        }
    });
    engine.queries().materializers.lock().insert(table, task);
    Ok(())
}

/// Moves checkpoint directories of queries the catalog does not have (a `TERMINATE` that
/// crashed after the catalog change, or a damaged catalog) to `lost+found/`: never deleted.
fn remove_orphan_dirs(engine: &Engine) {
    let live: Vec<String> = engine
        .catalog()
        .queries()
        .into_iter()
        .map(|q| q.id)
        .collect();
    CheckpointDirs::new(engine.data_dir()).move_aside_unknown(&live, engine.topics());
}

/// Starts the persistent queries and table stores the catalog records (server start).
pub async fn start_all(engine: &Arc<Engine>) {
    remove_orphan_dirs(engine);
    for def in engine.catalog().streams() {
        let fed_by_query = engine
            .catalog()
            .queries()
            .iter()
            .any(|q| q.sink == def.name);
        if def.kind == RelationKind::Table
            && !fed_by_query
            && let Err(e) = start_table(engine, &def)
        {
            tracing::error!(table = %def.name, error = %e, "cannot start table");
        }
    }
    for q in engine.catalog().queries() {
        if let Err(e) = resume(engine, &q).await {
            tracing::error!(query = %q.id, error = %e, "cannot start persistent query");
            let status = Arc::new(Status::default());
            status.set(QueryState::Failed(e.to_string()));
            let (stop, _) = watch::channel(false);
            engine.queries().running.lock().insert(
                q.id.clone(),
                Running {
                    info: QueryInfo {
                        def: q.clone(),
                        runners: vec![status],
                        explain: String::new(),
                    },
                    stop,
                    tasks: vec![],
                },
            );
        }
    }
}

fn parse_persistent(sql: &str) -> Result<PersistentQuery> {
    match parse_statements(sql)?.into_iter().next() {
        Some(EddyStatement::Persistent(q)) => Ok(*q),
        _ => Err(Error::Internal(format!("not a persistent query: {sql}"))),
    }
}

async fn resume(engine: &Arc<Engine>, def: &QueryDef) -> Result<()> {
    let pq = parse_persistent(&def.sql)?;
    let plan = plan::plan(engine, &pq).await?;
    spawn(engine, def.clone(), plan)
}

/// The sink a `CREATE STREAM|TABLE ... AS SELECT` creates.
fn sink_def(pq: &PersistentQuery, plan: &ContinuousPlan) -> Result<StreamDef> {
    let source_key = plan.source.key_column().map(|(_, c)| c.name.clone());
    let (kind, primary_key, key): (RelationKind, Vec<String>, Option<String>) = match &plan.shape {
        Shape::Stateless => (RelationKind::Stream, vec![], source_key),
        Shape::Aggregate(a) => {
            let keys: Vec<String> = a
                .key_outputs
                .iter()
                .map(|&c| plan.output.field(c).name().clone())
                .collect();
            let mut pk = keys.clone();
            if let Some((ws, _)) = a.window_outputs {
                pk.push(plan.output.field(ws).name().clone());
            }
            let key = (keys.len() == 1).then(|| keys[0].clone());
            (RelationKind::Table, pk, key)
        }
    };
    let mut def = StreamDef {
        name: pq.sink.clone(),
        columns: plan
            .output
            .fields()
            .iter()
            .map(|f| ColumnDef {
                name: f.name().clone(),
                data_type: f.data_type().clone(),
                key: key.as_deref() == Some(f.name().as_str()),
                // A column selected as it is keeps its declared type (`VARCHAR(10)`, `JSON`).
                sql_type: SqlType::of_field(f),
            })
            .collect(),
        timestamp_column: None,
        partitions: plan.source.partitions,
        options: StreamOptions::default(),
        topic: pq.sink.clone(),
        storage: String::new(),
        kind,
        primary_key,
    };
    if pq.options.iter().any(|(k, _)| k == "timestamp") {
        return Err(Error::Invalid(
            "a persistent query's output keeps its input's row time; the timestamp option \
             does not apply"
                .into(),
        ));
    }
    crate::parser::apply_options(&mut def, &pq.options)?;
    Ok(def)
}

/// Checks that an `INSERT INTO target SELECT ... EMIT CHANGES` produces the target's columns.
fn check_target(target: &StreamDef, plan: &ContinuousPlan) -> Result<()> {
    if target.kind == RelationKind::Table {
        return Err(Error::Invalid(format!(
            "INSERT INTO ... EMIT CHANGES writes streams; \"{}\" is a table",
            target.name
        )));
    }
    if !matches!(plan.shape, Shape::Stateless) {
        return Err(Error::Invalid(
            "INSERT INTO ... EMIT CHANGES cannot aggregate".into(),
        ));
    }
    let out = &plan.output;
    if out.fields().len() != target.columns.len() {
        return Err(Error::Invalid(format!(
            "INSERT INTO {} needs {} columns in its order ({}), the query gives {}",
            target.name,
            target.columns.len(),
            target
                .columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            out.fields().len()
        )));
    }
    for (f, c) in out.fields().iter().zip(&target.columns) {
        if f.data_type() != &c.data_type
            && !datafusion::arrow::compute::can_cast_types(f.data_type(), &c.data_type)
        {
            return Err(Error::Invalid(format!(
                "column {} of {} is {}, the query gives {}",
                c.name,
                target.name,
                c.data_type,
                f.data_type()
            )));
        }
    }
    Ok(())
}

/// Creates and starts a persistent query; returns its id. `earliest`: read the source from
/// its first retained offset, else from now on (`auto.offset.reset`, as in ksqlDB).
pub async fn create(engine: &Arc<Engine>, pq: &PersistentQuery, earliest: bool) -> Result<String> {
    if !engine.config().cluster.is_alone() {
        // Every node would run it and write its output once each; running it on one node
        // and moving it on failure needs its checkpoints replicated (issue 14, milestone 4).
        return Err(Error::Unsupported(
            "persistent queries do not run on a cluster of more than one node yet".into(),
        ));
    }
    let plan = plan::plan(engine, pq).await?;
    let (sink, new_sink) = match pq.kind {
        SinkKind::CreateStream | SinkKind::CreateTable => {
            if engine.catalog().stream(&pq.sink).is_some() {
                return Err(Error::AlreadyExists(pq.sink.clone()));
            }
            (sink_def(pq, &plan)?, true)
        }
        SinkKind::InsertInto => {
            let target = engine
                .catalog()
                .stream(&pq.sink)
                .ok_or_else(|| Error::UnknownStream(pq.sink.clone()))?;
            check_target(&target, &plan)?;
            (target, false)
        }
    };
    if plan.source.name == sink.name {
        return Err(Error::Invalid(format!(
            "a persistent query cannot write the stream it reads (\"{}\")",
            sink.name
        )));
    }
    let n = engine.catalog().applied();
    let id = match pq.kind {
        SinkKind::CreateStream => format!("CSAS_{}_{n}", pq.sink.to_uppercase()),
        SinkKind::CreateTable => format!("CTAS_{}_{n}", pq.sink.to_uppercase()),
        SinkKind::InsertInto => format!("INSERTQUERY_{n}"),
    };
    let def = QueryDef {
        id: id.clone(),
        sql: pq.sql.clone(),
        sources: vec![plan.source.name.clone()],
        sink: sink.name.clone(),
    };
    // The first checkpoint (where reading starts) is durable before the query exists.
    let (_, source) = engine.stream(&plan.source.name)?;
    let dirs = CheckpointDirs::new(engine.data_dir());
    let dir = dirs.dir(&id);
    dirs.remove(&id);
    let offsets = runner::start_offsets(&source, earliest);
    for (name, partitions) in runner_split(&plan, source.partitions().len()) {
        let subset = partitions.iter().map(|&p| offsets[p]).collect();
        if let Err(e) = runner::initialize(&dir.join(name), subset) {
            dirs.remove(&id);
            return Err(e);
        }
    }
    if let Err(e) = engine
        .create_query(def.clone(), new_sink.then(|| sink.clone()))
        .await
    {
        dirs.remove(&id);
        return Err(e);
    }
    spawn(engine, def, plan)?;
    Ok(id)
}

/// How a query's work is split into tasks: one per source partition (`p<N>`) when
/// [`ContinuousPlan::per_partition`], else one for all (`all`). Each task has its own
/// checkpoint log in `queries/<id>/<name>`.
fn runner_split(plan: &ContinuousPlan, partitions: usize) -> Vec<(String, Vec<usize>)> {
    if plan.per_partition() {
        (0..partitions)
            .map(|p| (format!("p{p}"), vec![p]))
            .collect()
    } else {
        vec![("all".to_string(), (0..partitions).collect())]
    }
}

fn spawn(engine: &Arc<Engine>, def: QueryDef, plan: ContinuousPlan) -> Result<()> {
    let (sink_def, sink) = engine.stream(&def.sink)?;
    let (_, source) = engine.stream(&plan.source.name)?;
    let split = runner_split(&plan, source.partitions().len());
    let store = match (&plan.shape, sink_def.kind) {
        (Shape::Aggregate(a), RelationKind::Table) => {
            let mut key = a.key_outputs.clone();
            let window = match (a.window_outputs, a.windowing) {
                (Some((ws, we)), Some(w)) => {
                    key.push(ws);
                    Some(WindowColumns {
                        start: ws,
                        end: we,
                        retained_from: if w.gap().is_some() { we } else { ws },
                        retention: w.retention,
                    })
                }
                _ => None,
            };
            let store = Arc::new(
                TableStore::new(user_schema(&sink_def), key, window, split.len())?
                    .following(source.clone()),
            );
            engine.tables().insert(&sink_def.name, store.clone());
            Some(store)
        }
        _ => None,
    };
    let explain = format!(
        "{}\nsource: {} ({} partitions) -> sink: {} ({} partitions)\n{}",
        def.id,
        plan.source.name,
        source.partitions().len(),
        sink_def.name,
        sink.partitions().len(),
        plan.logical
    );
    let plan = Arc::new(plan);
    let (stop, _) = watch::channel(false);
    let mut runners = Vec::new();
    let mut tasks = Vec::new();
    for (shard, (name, partitions)) in split.into_iter().enumerate() {
        let status = Arc::new(Status::default());
        status.set(QueryState::Starting);
        let parts = RunnerParts {
            id: format!("{}/{name}", def.id),
            partitions,
            shard,
            plan: plan.clone(),
            source: source.clone(),
            sink_def: sink_def.clone(),
            sink: sink.clone(),
            replicas: engine.replicas().clone(),
            store: store.clone(),
            status: status.clone(),
            snapshot_slack: engine.config().query_snapshot_bytes,
        };
        let dir = query_dir(engine, &def.id).join(&name);
        let stopped = stop.subscribe();
        let task_status = status.clone();
        let id = parts.id.clone();
        let task_store = parts.store.clone();
        tasks.push(tokio::spawn(async move {
            let result = async { Runner::open(parts, &dir).await?.run(stopped).await }.await;
            match result {
                Ok(()) => task_status.set(QueryState::Stopped),
                Err(e) => {
                    tracing::error!(query = %id, error = %e, "persistent query failed");
                    task_status.set(QueryState::Failed(e.to_string()));
                    // Its table will not catch up: pull queries serve the rows it has.
                    if let Some(store) = task_store {
                        store.stop_following();
                    }
                }
            }
        }));
        runners.push(status);
    }
    engine.queries().running.lock().insert(
        def.id.clone(),
        Running {
            info: QueryInfo {
                def,
                runners,
                explain,
            },
            stop,
            tasks,
        },
    );
    Ok(())
}

/// `TERMINATE id`: stops the query, removes it from the catalog and deletes its checkpoints.
/// Its sink stays (drop it with `DROP STREAM|TABLE`).
pub async fn terminate(engine: &Arc<Engine>, id: &str) -> Result<()> {
    if engine.catalog().query(id).is_none() {
        return Err(Error::UnknownQuery(id.to_string()));
    }
    let running = engine.queries().running.lock().remove(id);
    if let Some(r) = running {
        let _ = r.stop.send(true);
        for mut task in r.tasks {
            if tokio::time::timeout(Duration::from_secs(10), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }
    let sink = engine.catalog().query(id).map(|q| q.sink);
    engine.drop_query(id).await?;
    if let Some(store) = sink.and_then(|s| engine.tables().get(&s)) {
        // The table keeps its last rows; pull queries no longer wait for the source.
        store.stop_following();
    }
    CheckpointDirs::new(engine.data_dir()).remove(id);
    Ok(())
}

impl Engine {
    /// Starts the persistent queries and table stores the catalog records; call once after
    /// [`Engine::open`], inside the runtime.
    pub async fn start_queries(self: &Arc<Self>) {
        start_all(self).await;
    }

    /// [`Engine::follow_catalog`], then starts the stores of the source tables it opened:
    /// what a node does after it applies catalog commands (another node's DDL).
    pub async fn catch_up_with_catalog(self: &Arc<Self>) {
        for def in self.follow_catalog().await {
            let fed_by_query = self.catalog().queries().iter().any(|q| q.sink == def.name);
            if def.kind == RelationKind::Table
                && !fed_by_query
                && self.tables().get(&def.name).is_none()
                && let Err(e) = start_table(self, &def)
            {
                tracing::error!(table = %def.name, error = %e, "cannot start table");
            }
        }
    }
}
