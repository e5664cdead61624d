//! Output names as PostgreSQL gives them (its `FigureColname`): a column keeps its name, a
//! function call is labelled by the function (`count`, `current_user`), `CASE` by `case`, an
//! array constructor by `array`, a cast of something nameless by its type (`int4`, `text`),
//! and any other expression `?column?` — where DataFusion would say `Int64(1)` or
//! `CASE WHEN ...`.
//!
//! PostgreSQL repeats labels (`SELECT 1, 2` is `?column?` twice; `SELECT a, a` has two `a`);
//! DataFusion needs unique output names. A label that repeats one before it is planned as
//! `label` + [`REPEAT_MARK`] + a number, and [`output_name`] cuts the mark off where a name
//! leaves for the client.

use std::collections::HashSet;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, DataType, Expr, Ident, SelectItem, SetExpr, Statement, TimezoneInfo, Value,
};

use super::call;
use crate::parser::{normalize_ident, normalize_object_name};

/// Separates a repeated label from the number that makes it unique inside a plan: a control
/// character no client types into a column name.
pub const REPEAT_MARK: char = '\u{1f}';

/// The name a client sees for a planned output column: `name` without its [`REPEAT_MARK`]
/// suffix.
pub fn output_name(name: &str) -> &str {
    match name.find(REPEAT_MARK) {
        Some(i) => &name[..i],
        None => name,
    }
}

/// Catalog columns of PostgreSQL's vector types (`int2vector`, `oidvector`).
const VECTOR_COLUMNS: [&str; 4] = ["indkey", "indclass", "indcollation", "indoption"];

/// Labels the output columns of a query's select list as PostgreSQL does (see the module
/// doc); `pg_index`'s vector columns are sent as PostgreSQL's text for them.
pub fn label_columns(stmt: &mut Statement) {
    let Statement::Query(query) = stmt else {
        return;
    };
    let mut body = query.body.as_mut();
    loop {
        match body {
            SetExpr::SetOperation { left, .. } => body = left.as_mut(),
            SetExpr::Query(q) => body = q.body.as_mut(),
            _ => break,
        }
    }
    let SetExpr::Select(select) = body else {
        return;
    };
    let reads_index = select
        .from
        .iter()
        .any(|t| t.to_string().contains("pg_index"));
    // Names already made unique (by an earlier pass) stay as they are.
    let mut taken: HashSet<String> = select
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } if alias.value.contains(REPEAT_MARK) => {
                Some(alias.value.clone())
            }
            _ => None,
        })
        .collect();
    for item in select.projection.iter_mut() {
        let (e, alias) = match &*item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { alias, .. } if alias.value.contains(REPEAT_MARK) => {
                continue;
            }
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias)),
            _ => continue,
        };
        // `int2vector`/`oidvector` columns (`pg_index.indkey`, ...) are lists inside a query
        // and leave it as PostgreSQL's text for them, `1 2`, which clients parse.
        let name = match e {
            Expr::Identifier(i) => Some(i),
            Expr::CompoundIdentifier(parts) => parts.last(),
            _ => None,
        };
        if let Some(name) = name
            && reads_index
            && VECTOR_COLUMNS.contains(&normalize_ident(name).as_str())
        {
            let alias = alias.unwrap_or(name).clone();
            let text = call(
                "array_to_string",
                vec![
                    e.clone(),
                    Expr::value(Value::SingleQuotedString(" ".into())),
                ],
            );
            taken.insert(normalize_ident(&alias));
            *item = SelectItem::ExprWithAlias { expr: text, alias };
            continue;
        }
        let (expr, label, keep) = match item {
            SelectItem::ExprWithAlias { expr, alias } => (expr, normalize_ident(alias), true),
            SelectItem::UnnamedExpr(expr) => {
                let label = figure(expr).0.unwrap_or_else(|| "?column?".to_string());
                // A column keeps the name DataFusion gives it, which is its own (a cast of one
                // DataFusion names by the qualified column, `s.v`).
                let keep = matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
                (expr, label, keep)
            }
            _ => continue,
        };
        let unique = if taken.contains(&label) {
            (1..)
                .map(|n| format!("{label}{REPEAT_MARK}{n}"))
                .find(|candidate| !taken.contains(candidate))
                .unwrap_or_default()
        } else {
            label
        };
        if keep && !unique.contains(REPEAT_MARK) {
            taken.insert(unique);
            continue;
        }
        *item = SelectItem::ExprWithAlias {
            expr: expr.clone(),
            alias: Ident::with_quote('"', &unique),
        };
        taken.insert(unique);
    }
}

/// How firmly an expression names its output column, as in PostgreSQL's `FigureColname`: a
/// kind (`case`, a cast's type) gives way to a name underneath it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    None,
    Kind,
    Name,
}

/// The label PostgreSQL gives an unnamed select-list expression, if it gives one.
fn figure(e: &Expr) -> (Option<String>, Strength) {
    let name = |s: &str| (Some(s.to_string()), Strength::Name);
    let kind = |s: &str| (Some(s.to_string()), Strength::Kind);
    match e {
        Expr::Identifier(i) => (Some(normalize_ident(i)), Strength::Name),
        Expr::CompoundIdentifier(parts) => (parts.last().map(normalize_ident), Strength::Name),
        // A cast Eddy performs itself (`'{}'::jsonb`, `v::varchar(3)`) is labelled as
        // PostgreSQL labels casts: a column keeps its name, anything else is named by the type.
        Expr::Function(f) if normalize_object_name(&f.name) == super::types::EDDY_CAST => {
            match super::types::cast_label(f) {
                Some(label) => (Some(label), Strength::Kind),
                None => (None, Strength::None),
            }
        }
        Expr::Function(f) => match f.name.0.last().and_then(|p| p.as_ident()) {
            Some(i) => name(&i.value.to_ascii_lowercase()),
            None => (None, Strength::None),
        },
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => figure(inner),
        Expr::Cast {
            expr, data_type, ..
        } => match figure(expr) {
            named @ (_, Strength::Name) => named,
            _ => (Some(type_label(data_type)), Strength::Kind),
        },
        Expr::TypedString(t) => (Some(type_label(&t.data_type)), Strength::Kind),
        Expr::Interval(_) => kind("interval"),
        Expr::Case { .. } => kind("case"),
        Expr::Array(_) => kind("array"),
        Expr::Tuple(_) => kind("row"),
        Expr::Exists { .. } => name("exists"),
        Expr::Subquery(q) => match q.body.as_ref() {
            // The subquery's own column name, when it has one.
            SetExpr::Select(s) => match s.projection.first() {
                Some(SelectItem::ExprWithAlias { alias, .. }) => {
                    (Some(normalize_ident(alias)), Strength::Name)
                }
                Some(SelectItem::UnnamedExpr(inner)) => match figure(inner) {
                    named @ (_, Strength::Name) => named,
                    _ => (None, Strength::None),
                },
                _ => (None, Strength::None),
            },
            _ => (None, Strength::None),
        },
        Expr::CompoundFieldAccess { root, access_chain } => match access_chain.last() {
            Some(AccessExpr::Dot(Expr::Identifier(field))) => {
                (Some(normalize_ident(field)), Strength::Name)
            }
            _ => figure(root),
        },
        Expr::Substring { .. } => name("substring"),
        Expr::Trim { .. } => name("btrim"),
        Expr::Position { .. } => name("position"),
        Expr::Overlay { .. } => name("overlay"),
        Expr::Extract { .. } => name("extract"),
        Expr::Ceil { .. } => name("ceil"),
        Expr::Floor { .. } => name("floor"),
        Expr::AtTimeZone { .. } => name("timezone"),
        _ => (None, Strength::None),
    }
}

/// A type's name as PostgreSQL labels a cast to it: its internal name (`int4`, `float8`,
/// `varchar`, `timestamptz`); an array type by its element's.
fn type_label(t: &DataType) -> String {
    match t {
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => "int4".into(),
        DataType::BigInt(_) | DataType::Int8(_) => "int8".into(),
        DataType::SmallInt(_) | DataType::Int2(_) => "int2".into(),
        DataType::Real | DataType::Float4 => "float4".into(),
        DataType::Double(_) | DataType::DoublePrecision | DataType::Float8 | DataType::Float(_) => {
            "float8".into()
        }
        DataType::Boolean | DataType::Bool => "bool".into(),
        DataType::Text | DataType::String(_) => "text".into(),
        DataType::Varchar(_) | DataType::CharacterVarying(_) | DataType::CharVarying(_) => {
            "varchar".into()
        }
        DataType::Char(_) | DataType::Character(_) => "bpchar".into(),
        DataType::Numeric(_) | DataType::Decimal(_) | DataType::Dec(_) => "numeric".into(),
        DataType::Date => "date".into(),
        DataType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => {
            "timestamptz".into()
        }
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::Time(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timetz".into(),
        DataType::Time(..) => "time".into(),
        DataType::Interval { .. } => "interval".into(),
        DataType::Bytea => "bytea".into(),
        DataType::JSON => "json".into(),
        DataType::JSONB => "jsonb".into(),
        DataType::Array(elem) => match elem {
            datafusion::sql::sqlparser::ast::ArrayElemTypeDef::AngleBracket(t)
            | datafusion::sql::sqlparser::ast::ArrayElemTypeDef::SquareBracket(t, _)
            | datafusion::sql::sqlparser::ast::ArrayElemTypeDef::Parenthesis(t) => type_label(t),
            datafusion::sql::sqlparser::ast::ArrayElemTypeDef::None => "anyarray".into(),
        },
        DataType::Custom(name, _) => name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map_or_else(|| t.to_string(), |i| i.value.to_ascii_lowercase()),
        other => other.to_string().to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(sql: &str) -> Vec<String> {
        let mut statements = crate::parser::parse_statements(sql).unwrap();
        let crate::parser::EddyStatement::Sql(stmt) = &mut statements[0] else {
            panic!("not SQL: {sql}");
        };
        label_columns(stmt);
        let Statement::Query(q) = stmt.as_ref() else {
            panic!("not a query");
        };
        let SetExpr::Select(s) = q.body.as_ref() else {
            panic!("not a select");
        };
        s.projection
            .iter()
            .map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
                SelectItem::UnnamedExpr(e) => format!("({e})"),
                other => other.to_string(),
            })
            .collect()
    }

    #[test]
    fn every_unnamed_expression_is_labelled_as_postgresql_labels_it() {
        let m = REPEAT_MARK;
        assert_eq!(
            labels("SELECT 1, 2, 'a', 1 + 1"),
            [
                "?column?".to_string(),
                format!("?column?{m}1"),
                format!("?column?{m}2"),
                format!("?column?{m}3")
            ]
        );
        assert_eq!(
            labels("SELECT count(*), count(x), max(x) FROM t"),
            ["count".to_string(), format!("count{m}1"), "max".to_string()]
        );
        assert_eq!(
            labels("SELECT x, x, x AS y, 1 AS y FROM t"),
            [
                "(x)".to_string(),
                format!("x{m}1"),
                "y".to_string(),
                format!("y{m}1")
            ]
        );
        assert_eq!(
            labels(
                "SELECT CASE WHEN x THEN 1 END, ARRAY[1], 1::int, x::text, '1'::numeric, \
                 (SELECT 1 AS one), (SELECT 2), DATE '2024-01-01', count(*)::int8 FROM t"
            ),
            [
                "case", "array", "int4", "x", "numeric", "one", "?column?", "date", "count"
            ]
        );
    }

    #[test]
    fn output_names_lose_their_repeat_mark() {
        assert_eq!(output_name(&format!("?column?{REPEAT_MARK}3")), "?column?");
        assert_eq!(output_name("count"), "count");
    }
}
