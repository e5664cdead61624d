//! DataFusion's view of Eddy: a schema provider over the catalog, a [`StreamTable`] per stream,
//! the scan that reads partitions ([`scan::StreamScanExec`]) with pseudo-column pruning
//! ([`pushdown`]), and the sink behind `INSERT` ([`sink::StreamSink`]).
//!
//! This module never writes files: appends go through [`crate::ingest`] to the partition logs.

pub mod information_schema;
pub mod lookup;
pub mod pg_catalog;
pub mod pull;
pub mod pushdown;
pub mod scan;
pub mod schema;
pub mod sink;
pub mod system;
pub mod table;

pub use information_schema::InformationSchema;
pub use lookup::KeyLookup;
pub use pg_catalog::PgCatalogSchema;
pub use pull::PullTable;
pub use schema::EddySchemaProvider;
pub use system::SystemSchema;
pub use table::StreamTable;
