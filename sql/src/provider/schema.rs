//! The `public` schema: every stream in the catalog, looked up at plan time.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::Result;

use eddy_catalog::RelationKind;

use super::{PullTable, StreamTable};
use crate::Engine;

/// Resolves table names to streams and tables of the engine's catalog. A table is its
/// current rows ([`PullTable`]), or, in `changelog` mode (push and persistent queries), its
/// topic of changes read as a stream.
#[derive(Debug)]
pub struct EddySchemaProvider {
    engine: Arc<Engine>,
    changelog: bool,
}

impl EddySchemaProvider {
    /// A schema provider over `engine`'s catalog.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            changelog: false,
        }
    }

    /// A provider that reads tables as their changelog topics.
    pub fn changelog(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            changelog: true,
        }
    }
}

#[async_trait]
impl SchemaProvider for EddySchemaProvider {
    fn table_names(&self) -> Vec<String> {
        self.engine
            .catalog()
            .streams()
            .into_iter()
            .map(|s| s.name)
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let (def, topic) = match self.engine.stream(name) {
            Ok(found) => found,
            Err(crate::Error::UnknownStream(_)) => return Ok(None),
            Err(e) => return Err(datafusion::error::DataFusionError::External(Box::new(e))),
        };
        if def.kind == RelationKind::Table
            && !self.changelog
            && let Some(store) = self.engine.tables().get(name)
        {
            return Ok(Some(Arc::new(PullTable::new(
                self.engine.clone(),
                def,
                topic,
                store,
            ))));
        }
        Ok(Some(Arc::new(StreamTable::new(
            self.engine.clone(),
            def,
            topic,
        ))))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.engine.catalog().stream(name).is_some()
    }
}
