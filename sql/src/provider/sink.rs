//! [`StreamSink`]: the end of an `INSERT` plan. It gathers the statement's rows and hands them
//! to [`crate::ingest`] in one piece, so a statement that fails appends nothing; inside a
//! transaction block the session's [`Writes`] hold them until COMMIT.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use eddy_catalog::StreamDef;
use eddy_storage::Topic;
use futures::TryStreamExt;

use crate::ingest::txn::Writes;
use crate::{Engine, ingest};

/// Appends an INSERT's rows to a stream.
#[derive(Debug)]
pub struct StreamSink {
    engine: Arc<Engine>,
    def: StreamDef,
    topic: Arc<Topic>,
    schema: SchemaRef,
}

impl StreamSink {
    /// A sink into `topic` for rows of the table schema `schema`.
    pub fn new(engine: Arc<Engine>, def: StreamDef, topic: Arc<Topic>, schema: SchemaRef) -> Self {
        Self {
            engine,
            def,
            topic,
            schema,
        }
    }
}

impl DisplayAs for StreamSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamSink: stream={}", self.def.name)
    }
}

#[async_trait]
impl DataSink for StreamSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let batches: Vec<_> = data.try_collect().await?;
        let stored = batches
            .iter()
            .map(|b| ingest::from_table_rows(&self.def, b))
            .collect::<crate::Result<Vec<_>>>()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let (engine, def, topic) = (self.engine.clone(), self.def.clone(), self.topic.clone());
        // A session's plans carry its writes (its transaction block); others append at once.
        let writes = context.session_config().get_extension::<Writes>();
        let partitions = topic.partitions().len();
        let encoded =
            tokio::task::spawn_blocking(move || ingest::encode(&engine, &def, partitions, &stored))
                .await
                .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))?;
        let written = match (encoded, writes) {
            (Ok(encoded), Some(writes)) => writes.append(&self.engine, &topic, encoded).await,
            (Ok(encoded), None) => ingest::append(&self.engine, &topic, encoded).await,
            (Err(e), _) => Err(e),
        };
        written.map_err(|e| DataFusionError::External(Box::new(e)))
    }
}
