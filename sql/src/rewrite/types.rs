//! Rewrites for types DataFusion does not plan as PostgreSQL means them: casts it lacks or
//! casts otherwise (`x::json`, `::jsonb`, `::uuid`, `::varchar(n)`, `::char(n)`,
//! `'{1,2}'::int[]`, `'\xdead'::bytea`) become `eddy_cast(x, 'type')` (`functions::types`),
//! and so does text inserted into an ARRAY, MAP, STRUCT or BYTEA column; a number literal
//! inserted into a DECIMAL column keeps its digits.

use datafusion::sql::sqlparser::ast::{
    DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Insert, SetExpr,
    TableObject, Value,
};

use super::call;
use crate::Engine;
use crate::parser::types::{parse_column_type, type_display};
use crate::parser::{normalize_ident, normalize_object_name};

/// The cast function `functions::types` registers under this name.
pub(super) const EDDY_CAST: &str = "eddy_cast";

/// `INSERT INTO s (cols) VALUES (...)`: each value going into a column that reads text its own
/// way (an array literal, JSON, `\x` hex) is read so; a number going into a DECIMAL column
/// is read as a decimal.
pub(super) fn insert_values(insert: &mut Insert, engine: &Engine) {
    if let TableObject::TableName(name) = &insert.table
        && let Some(def) = engine.catalog().stream(&normalize_object_name(name))
        && let Some(source) = insert.source.as_mut()
        && let SetExpr::Values(values) = source.body.as_mut()
    {
        let targets: Vec<Option<&eddy_catalog::ColumnDef>> = insert
            .columns
            .iter()
            .map(|c| {
                let name = c.0.last().and_then(|p| p.as_ident()).map(normalize_ident)?;
                def.columns.iter().find(|d| d.name == name)
            })
            .collect();
        for row in &mut values.rows {
            for (value, target) in row.iter_mut().zip(&targets) {
                let Some(target) = target else {
                    continue;
                };
                if (is_nested(&target.data_type)
                    || target.data_type == datafusion::arrow::datatypes::DataType::Binary)
                    && is_text_value(value)
                {
                    let text = std::mem::replace(value, Expr::value(Value::Null));
                    *value = eddy_cast(text, type_display(&target.data_type, None));
                } else if matches!(
                    target.data_type,
                    datafusion::arrow::datatypes::DataType::Decimal128(..)
                ) && let Some(number) = number_text(value)
                {
                    // `12345678901234567890.123` into a DECIMAL column: read as the decimal it
                    // is (PostgreSQL's numeric literal), not through a float (DataFusion's),
                    // which keeps 15 to 17 digits. psycopg2 writes Decimals this way.
                    *value = Expr::value(Value::SingleQuotedString(number));
                }
            }
        }
    }
}

/// Rewrites a cast `eddy_cast` takes over; says whether it did.
pub(super) fn cast(expr: &mut Expr) -> bool {
    if let Expr::Cast {
        expr: inner,
        data_type,
        format: None,
        ..
    } = expr
        && let Some(spelling) = eddy_cast_target(data_type)
    {
        let inner = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
        *expr = eddy_cast(inner, spelling);
        return true;
    }
    false
}

fn is_nested(t: &datafusion::arrow::datatypes::DataType) -> bool {
    use datafusion::arrow::datatypes::DataType as A;
    matches!(t, A::List(_) | A::LargeList(_) | A::Map(..) | A::Struct(_))
}

/// A string literal, or a cast to a text type (`$1::varchar`): a value PostgreSQL would read
/// as an array literal when it goes into an array column.
fn is_text_value(e: &Expr) -> bool {
    match e {
        Expr::Value(v) => matches!(v.value, Value::SingleQuotedString(_)),
        Expr::Cast { data_type, .. } => matches!(
            data_type,
            DataType::Text
                | DataType::Varchar(_)
                | DataType::CharacterVarying(_)
                | DataType::CharVarying(_)
                | DataType::String(_)
        ),
        Expr::Nested(e) => is_text_value(e),
        _ => false,
    }
}

/// The text of a number literal, negated or not (`-1.5`).
fn number_text(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(n.clone()),
            _ => None,
        },
        Expr::UnaryOp {
            op: datafusion::sql::sqlparser::ast::UnaryOperator::Minus,
            expr,
        } => number_text(expr)
            .filter(|n| !n.starts_with('-'))
            .map(|n| format!("-{n}")),
        Expr::Nested(e) => number_text(e),
        _ => None,
    }
}

/// `eddy_cast(e, 'spelling')`.
fn eddy_cast(e: Expr, spelling: String) -> Expr {
    call(
        EDDY_CAST,
        vec![e, Expr::value(Value::SingleQuotedString(spelling))],
    )
}

/// The Eddy type spelling of a cast target `eddy_cast` takes over, if it is one: the types
/// DataFusion has no cast to (JSON, JSONB, UUID), those it casts otherwise than PostgreSQL
/// (a length it ignores, arrays from text).
fn eddy_cast_target(t: &DataType) -> Option<String> {
    let ours = match t {
        DataType::JSON | DataType::JSONB | DataType::Uuid | DataType::Array(_) => true,
        // `'\xdead'::bytea` is the bytes 0xdead (DataFusion would keep the text's bytes).
        DataType::Bytea => true,
        DataType::Char(_) | DataType::Character(_) => true,
        DataType::Varchar(Some(_))
        | DataType::CharacterVarying(Some(_))
        | DataType::CharVarying(Some(_)) => true,
        DataType::Custom(name, _) => name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
            ["json", "jsonb", "uuid", "bpchar"].contains(&i.value.to_ascii_lowercase().as_str())
        }),
        _ => false,
    };
    let spelling = match t {
        DataType::Custom(name, _) => name.0.last()?.as_ident()?.value.clone(),
        other => other.to_string(),
    };
    // Only a type Eddy has: anything else stays DataFusion's (and its error).
    (ours && parse_column_type(&spelling).is_ok()).then_some(spelling)
}

/// The label of `eddy_cast(x, 'type')`: `x`'s name if it is a column, else the type's
/// PostgreSQL name (the spelling's first word, lower-case: `jsonb`, `uuid`, `varchar`).
pub(super) fn cast_label(f: &Function) -> Option<String> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let [
        FunctionArg::Unnamed(FunctionArgExpr::Expr(value)),
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(spelling))),
    ] = list.args.as_slice()
    else {
        return None;
    };
    match value {
        Expr::Identifier(i) => Some(normalize_ident(i)),
        Expr::CompoundIdentifier(parts) => parts.last().map(normalize_ident),
        _ => match &spelling.value {
            Value::SingleQuotedString(t) => {
                let word: String = t
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                Some(word.to_ascii_lowercase())
            }
            _ => None,
        },
    }
}
