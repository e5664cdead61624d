//! PostgreSQL compatibility functions that client libraries call while connecting:
//! `version()`, `current_schema()`, `current_database()`, `pg_backend_pid()`; the catalog
//! functions tools call on `pg_catalog` are in [`pg`]; the casts DataFusion does not plan as
//! PostgreSQL means them (`::json`, `::uuid`, `::varchar(n)`, text to arrays) in [`types`].

mod pg;
mod types;

pub use pg::{register_catalog, register_settings};

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{
    AggregateUDF, AggregateUDFImpl, ColumnarValue, Signature, Volatility, create_udf,
};
use datafusion::prelude::SessionContext;

/// The server version Eddy reports, so that clients use their PostgreSQL 15 code paths.
pub const SERVER_VERSION: &str = "15.8";

fn constant(ctx: &SessionContext, name: &str, value: ScalarValue) {
    let data_type = value.data_type();
    let udf = create_udf(
        name,
        vec![],
        data_type,
        Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(value.clone()))),
    );
    ctx.register_udf(udf);
}

/// Registers the compatibility functions in a session.
pub fn register(ctx: &SessionContext) {
    let version = format!(
        "PostgreSQL {SERVER_VERSION} (Eddy {}) on {}-linux, a streaming database",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    constant(ctx, "version", ScalarValue::Utf8(Some(version)));
    constant(
        ctx,
        "current_schema",
        ScalarValue::Utf8(Some("public".into())),
    );
    constant(
        ctx,
        "current_database",
        ScalarValue::Utf8(Some("eddy".into())),
    );
    constant(
        ctx,
        "pg_backend_pid",
        ScalarValue::Int32(Some(std::process::id() as i32)),
    );
    types::register(ctx);
    for name in ["count_distinct", "latest_by_offset", "earliest_by_offset"] {
        ctx.register_udaf(AggregateUDF::from(KsqlAggregate::new(name)));
    }
}

/// ksqlDB's aggregates that DataFusion lacks (`COUNT_DISTINCT`, `LATEST_BY_OFFSET`,
/// `EARLIEST_BY_OFFSET`): declared here so that queries plan; persistent queries compute them
/// with their own accumulators (`continuous::aggregate`). An ad hoc query that runs one is
/// told which standard function to use instead.
#[derive(Debug, PartialEq, Eq, Hash)]
struct KsqlAggregate {
    name: &'static str,
    signature: Signature,
}

impl KsqlAggregate {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for KsqlAggregate {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(match self.name {
            "count_distinct" => DataType::Int64,
            _ => args.first().cloned().unwrap_or(DataType::Null),
        })
    }

    fn accumulator(
        &self,
        _args: datafusion::logical_expr::function::AccumulatorArgs,
    ) -> datafusion::error::Result<Box<dyn datafusion::logical_expr::Accumulator>> {
        let instead = match self.name {
            "count_distinct" => "COUNT(DISTINCT x)",
            "latest_by_offset" => "last_value(x ORDER BY rowpartition, rowoffset)",
            _ => "first_value(x ORDER BY rowpartition, rowoffset)",
        };
        datafusion::common::not_impl_err!(
            "{} runs in persistent queries (CREATE TABLE ... AS SELECT); in an ad hoc query use {instead}",
            self.name.to_uppercase()
        )
    }
}
