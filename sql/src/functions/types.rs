//! `eddy_cast(x, 'type')`: casts DataFusion does not plan as PostgreSQL means them, written
//! by the rewrite of `x::json`, `x::jsonb`, `x::uuid`, `x::varchar(n)`, `x::char(n)` and
//! `x::T[]` (and of text inserted into an array column). The type is an Eddy column type
//! ([`crate::parser::types`]); the result carries its declared SQL type, so a client is sent
//! `json`, `uuid`, `character varying(n)`.
//!
//! - to a text type with a declared SQL type: JSON is checked, a UUID read in any of its
//!   forms and kept canonical (`22P02` otherwise), a string cut to `VARCHAR(n)` or `CHAR(n)`
//!   ([`checks::cast_value`], PostgreSQL's explicit casts);
//! - text to an array (or map, struct, bytea): read as PostgreSQL's array literal (`{1,2}`),
//!   JSON, or `\x` hex ([`crate::ingest::copy::parse_text`]), where DataFusion would make a
//!   one-element list of the whole string (or keep the text's bytes);
//! - anything else: Arrow's cast.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use eddy_catalog::SqlType;

use crate::Error;
use crate::ingest::checks;
use crate::parser::types::{ColumnType, parse_column_type};

/// The name the rewrite (`rewrite.rs`) calls.
const CAST: &str = "eddy_cast";

/// Registers `eddy_cast`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(Cast {
        signature: Signature::any(2, Volatility::Immutable),
    }));
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Cast {
    signature: Signature,
}

fn target(args: &[Option<&ScalarValue>]) -> datafusion::error::Result<ColumnType> {
    match args.get(1) {
        Some(Some(ScalarValue::Utf8(Some(t)))) => {
            parse_column_type(t).map_err(|e| DataFusionError::External(Box::new(e)))
        }
        _ => plan_err!("{CAST} takes a type name as its second argument"),
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

impl ScalarUDFImpl for Cast {
    fn name(&self) -> &str {
        CAST
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        // Only `return_field_from_args` is called: the type is the second argument's value.
        plan_err!("{CAST} needs its arguments to know its type")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> datafusion::error::Result<FieldRef> {
        let t = target(args.scalar_arguments)?;
        let field = Field::new(CAST, t.data_type.clone(), true);
        Ok(Arc::new(match t.sql_type {
            Some(s) if s.applies_to(&t.data_type) => field.with_metadata(s.metadata()),
            _ => field,
        }))
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let to = args.return_field.data_type().clone();
        let sql_type = SqlType::of_field(&args.return_field);
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let input = args.args[0].to_array(args.number_rows)?;
        let out = convert(&input, &to, sql_type).map_err(|e| match e {
            Error::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        })?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

fn convert(input: &ArrayRef, to: &DataType, sql_type: Option<SqlType>) -> crate::Result<ArrayRef> {
    // Types whose text form is not what Arrow's cast reads: arrays (`{1,2}`), maps and
    // structs (JSON), bytea (`\x` hex).
    let own_text_form = matches!(
        to,
        DataType::List(_) | DataType::Map(..) | DataType::Struct(_) | DataType::Binary
    );
    if own_text_form && (is_text(input.data_type()) || input.data_type() == &DataType::Null) {
        let text = cast(input, &DataType::Utf8)?;
        return crate::ingest::copy::parse_text(to, text.as_string::<i32>());
    }
    let Some(sql_type) = sql_type.filter(|_| to == &DataType::Utf8) else {
        return Ok(cast(input, to)?);
    };
    let text = cast(input, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    let mut out = StringBuilder::with_capacity(text.len(), text.value_data().len());
    for v in text.iter() {
        match v {
            None => out.append_null(),
            Some(v) => out.append_value(checks::cast_value(sql_type, v)?),
        }
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;

    use super::*;

    fn cast_to(values: &[Option<&str>], spelling: &str) -> crate::Result<ArrayRef> {
        let t = parse_column_type(spelling)?;
        let input: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
        convert(&input, &t.data_type, t.sql_type)
    }

    #[test]
    fn text_casts_as_postgresql_casts() {
        let out = cast_to(&[Some("abcdef"), None], "VARCHAR(3)").unwrap();
        assert_eq!(out.as_string::<i32>().value(0), "abc");
        assert!(out.is_null(1));
        // CHAR(n) is kept unpadded (the server pads it when it sends it).
        let out = cast_to(&[Some("abcd ")], "CHAR(3)").unwrap();
        assert_eq!(out.as_string::<i32>().value(0), "abc");
        let out = cast_to(&[Some("A0EEBC999C0B4EF8BB6D6BB9BD380A11")], "UUID").unwrap();
        assert_eq!(
            out.as_string::<i32>().value(0),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert!(matches!(
            cast_to(&[Some("nope")], "UUID"),
            Err(Error::InvalidValue(_))
        ));
        assert!(matches!(
            cast_to(&[Some("{")], "JSONB"),
            Err(Error::InvalidValue(_))
        ));
    }

    #[test]
    fn text_casts_to_arrays_read_array_literals() {
        let out = cast_to(&[Some("{1,2,NULL}"), Some("[3]"), None], "INT[]").unwrap();
        let lists = out.as_list::<i32>();
        assert_eq!(lists.value(0).len(), 3);
        assert_eq!(lists.value(1).len(), 1);
        assert!(lists.is_null(2));
        let out = cast_to(&[Some(r#"{a,"b c"}"#)], "ARRAY<VARCHAR>").unwrap();
        assert_eq!(
            out.as_list::<i32>().value(0).as_string::<i32>().value(1),
            "b c"
        );
        let out = cast_to(&[Some("{2024-01-01 10:00:00.5}")], "TIMESTAMP[]").unwrap();
        assert_eq!(out.as_list::<i32>().value(0).len(), 1);
        assert!(matches!(
            cast_to(&[Some("{1,x}")], "INT[]"),
            Err(Error::InvalidValue(m)) if m.starts_with("malformed array literal")
        ));
    }
}
