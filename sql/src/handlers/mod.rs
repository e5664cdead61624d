//! One handler per statement kind. Each turns a parsed statement into an [`crate::Output`].

pub mod copy;
pub mod cursor;
pub mod ddl;
pub mod persistent;
pub mod query;
pub mod show;
pub mod vars;
