//! Push queries: `SELECT ... FROM stream [WHERE ...] EMIT CHANGES [LIMIT n]`.
//!
//! ```text
//!  PartitionLog ─ watch(high watermark) ─▶ tail::PartitionTail (one per partition) ─┐
//!                                                                                  ├─ select_all ─▶ PushPlan::apply (filter, project) ─▶ LIMIT ─▶ client
//!  PartitionLog ─ watch(high watermark) ─▶ tail::PartitionTail ───────────────────┘
//! ```
//!
//! The query is planned once by DataFusion (logical plan + analyzer), then compiled into
//! physical expressions ([`plan::PushPlan`]) that run on each new batch with Arrow kernels.
//! Each partition is tailed from its high watermark at query start (`auto.offset.reset =
//! latest`, the default) or its log start (`earliest`); a tail sleeps on the partition's
//! high-watermark watch between batches — no polling, no lock on the write path.
//!
//! The stream ends after `LIMIT n` rows, or with an error when its stream is dropped
//! (`DROP STREAM|TABLE` in another session: each tail also waits on the engine's drop
//! notification); otherwise it never ends, and the server drops it when the client cancels
//! or goes away.

mod plan;

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::Statement;
use futures::StreamExt;

use self::plan::PushPlan;
pub use crate::exec::StartAt;
use crate::exec::{DropWatch, PartitionTail, describe_plan};
use crate::{Description, Result, Session};

/// Plans a push query (a `Statement::Query` without its `EMIT CHANGES`) and starts tailing.
/// Returns its result schema and the never-ending (or `LIMIT`-ed) stream of result batches.
pub async fn execute(
    session: &Session,
    query: &Statement,
    params: Option<Vec<ScalarValue>>,
) -> Result<(SchemaRef, SendableRecordBatchStream)> {
    let plan = PushPlan::new(session, query, params).await?;
    let start = StartAt::of(session);
    let dropped = DropWatch::new(
        session.engine().clone(),
        plan.stream().to_string(),
        plan.topic().clone(),
    );
    let tails = (0..plan.topic().partitions().len() as u32)
        .map(|p| {
            let tail = PartitionTail::new(plan.topic().clone(), p, start, plan.source_schema())?;
            Ok(tail.until_dropped(dropped.clone()).into_stream())
        })
        .collect::<Result<Vec<_>>>()?;
    let merged = futures::stream::select_all(tails);
    let schema = plan.schema();
    let plan = Arc::new(plan);
    let limit = plan.limit();
    let applied = merged.filter_map(move |batch| {
        let plan = plan.clone();
        async move {
            match batch.and_then(|b| plan.apply(&b)) {
                Ok(b) if b.num_rows() == 0 => None,
                other => Some(other),
            }
        }
    });
    let stream: SendableRecordBatchStream = match limit {
        None => Box::pin(RecordBatchStreamAdapter::new(
            schema.clone(),
            until_error(applied),
        )),
        Some(limit) => Box::pin(RecordBatchStreamAdapter::new(
            schema.clone(),
            until_error(limited(applied, limit)),
        )),
    };
    Ok((schema, stream))
}

/// Ends `stream` after its first error, dropping it at once: its tails (and the plan's topic)
/// let go of the partition logs even while the client keeps the result open (a cursor), so
/// the files of a dropped stream are freed.
fn until_error(
    stream: impl futures::Stream<Item = datafusion::error::Result<RecordBatch>> + Send + 'static,
) -> impl futures::Stream<Item = datafusion::error::Result<RecordBatch>> + Send + 'static {
    futures::stream::unfold(Some(Box::pin(stream)), |stream| async move {
        let mut stream = stream?;
        match stream.next().await? {
            Ok(batch) => Some((Ok(batch), Some(stream))),
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// Parameter and result types of a push query, without starting it (extended protocol's
/// Describe).
pub async fn describe(session: &Session, query: &Statement) -> Result<Description> {
    let (plan, _) = plan::logical(session, query).await?;
    describe_plan(&plan)
}

/// Ends `stream` after `limit` rows, slicing the batch that crosses it.
fn limited(
    stream: impl futures::Stream<Item = datafusion::error::Result<RecordBatch>> + Send + 'static,
    limit: usize,
) -> impl futures::Stream<Item = datafusion::error::Result<RecordBatch>> + Send + 'static {
    let stream = Box::pin(stream);
    futures::stream::unfold((stream, limit), |(mut stream, remaining)| async move {
        if remaining == 0 {
            return None;
        }
        match stream.next().await? {
            Ok(batch) => {
                let batch = if batch.num_rows() > remaining {
                    batch.slice(0, remaining)
                } else {
                    batch
                };
                let left = remaining - batch.num_rows();
                Some((Ok(batch), (stream, left)))
            }
            Err(e) => Some((Err(e), (stream, 0))),
        }
    })
}
