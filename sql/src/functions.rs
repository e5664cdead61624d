//! PostgreSQL compatibility functions that client libraries call while connecting:
//! `version()`, `current_schema()`, `current_database()`, `pg_backend_pid()`.

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;

use crate::handlers::vars::SERVER_VERSION;

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
}
