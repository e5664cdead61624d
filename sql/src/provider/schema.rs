//! The `public` schema: every stream in the catalog, looked up at plan time.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::Result;

use super::StreamTable;
use crate::Engine;

/// Resolves table names to streams of the engine's catalog.
#[derive(Debug)]
pub struct EddySchemaProvider {
    engine: Arc<Engine>,
}

impl EddySchemaProvider {
    /// A schema provider over `engine`'s catalog.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
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
        Ok(self
            .engine
            .stream(name)
            .map(|(def, topic)| Arc::new(StreamTable::new(self.engine.clone(), def, topic)) as _))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.engine.catalog().stream(name).is_some()
    }
}
