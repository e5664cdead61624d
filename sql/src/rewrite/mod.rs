//! Rewrites of the SQL syntax tree before DataFusion plans it.
//!
//! - `SELECT *` (and `s.*`) over a stream lists the stream's own columns only: the pseudo-columns
//!   `rowtime`, `rowpartition`, `rowoffset` are selected by name, as in ksqlDB (and like
//!   PostgreSQL's system columns).
//! - `INSERT INTO s VALUES (...)` without a column list means the stream's own columns.
//! - `pg_catalog.f(...)` calls `f`, so that client start-up queries such as
//!   `select pg_catalog.version()` resolve to Eddy's compatibility functions.
//! - psql's catalog spellings: `x OPERATOR(pg_catalog.~) 'p'` is `x ~ 'p'`, `COLLATE
//!   pg_catalog.default` is dropped, and casts to `pg_catalog.*` types (regtype, text) read as text.
//! - Casts DataFusion lacks or means otherwise (`x::json`, `::uuid`, `::varchar(n)`,
//!   `'{1,2}'::int[]`), text inserted into array and bytea columns, and decimal literals
//!   inserted into DECIMAL columns: see [`types`].

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, ArrayElemTypeDef, BinaryOperator, CastKind, DataType, Expr, Function, FunctionArg,
    FunctionArgExpr, FunctionArgumentClause, FunctionArgumentList, FunctionArguments, GroupByExpr,
    Ident, JoinOperator, ObjectName, ObjectNamePart, OrderByKind, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Statement, TableFactor, TableObject, Value, VisitMut,
    VisitorMut, WildcardAdditionalOptions,
};

use crate::Engine;

mod types;
use crate::parser::{
    backslash_escaped, normalize_ident, normalize_object_name, parse_array_literal,
};

mod labels;

pub use labels::{label_columns, output_name};

/// Applies every rewrite to `stmt`.
pub fn rewrite(stmt: &mut Statement, engine: &Engine) {
    if let Statement::Insert(insert) = stmt
        && insert.columns.is_empty()
        && let TableObject::TableName(name) = &insert.table
        && let Some(def) = engine.catalog().stream(&normalize_object_name(name))
    {
        insert.columns = def
            .columns
            .iter()
            .map(|c| {
                ObjectName(vec![ObjectNamePart::Identifier(Ident::with_quote(
                    '"', &c.name,
                ))])
            })
            .collect();
    }
    if let Statement::Insert(insert) = stmt {
        types::insert_values(insert, engine);
    }
    let mut ctes = CteNames(HashSet::new());
    let _ = stmt.visit(&mut ctes);
    let expands_arrays = stmt.to_string().contains("_pg_expandarray");
    let _ = stmt.visit(&mut Rewriter {
        engine,
        ctes: ctes.0,
        expands_arrays,
    });
}

struct CteNames(HashSet<String>);

impl VisitorMut for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.0.insert(normalize_ident(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }
}

struct Rewriter<'a> {
    engine: &'a Engine,
    ctes: HashSet<String>,
    /// The statement expands arrays with `_pg_expandarray` (pgjdbc's key queries).
    expands_arrays: bool,
}

fn plain(opts: &WildcardAdditionalOptions) -> bool {
    opts.opt_ilike.is_none()
        && opts.opt_exclude.is_none()
        && opts.opt_except.is_none()
        && opts.opt_replace.is_none()
        && opts.opt_rename.is_none()
        && opts.opt_alias.is_none()
}

impl Rewriter<'_> {
    /// For each relation of the FROM clause: its qualifier and, for a stream, its columns.
    fn relations(&self, select: &Select) -> Option<Vec<(Ident, Option<Vec<String>>)>> {
        let mut out = Vec::new();
        for twj in &select.from {
            for factor in
                std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation))
            {
                match factor {
                    TableFactor::Table {
                        name,
                        alias,
                        args: None,
                        ..
                    } => {
                        let table = normalize_object_name(name);
                        let stream = (!self.ctes.contains(&table))
                            .then(|| self.engine.catalog().stream(&table))
                            .flatten()
                            .map(|d| d.columns.iter().map(|c| c.name.clone()).collect());
                        let qualifier = match alias {
                            Some(a) => a.name.clone(),
                            None => name.0.last()?.as_ident()?.clone(),
                        };
                        out.push((qualifier, stream));
                    }
                    TableFactor::Derived { alias: Some(a), .. } => out.push((a.name.clone(), None)),
                    _ => return None,
                }
            }
        }
        Some(out)
    }
}

/// Whether a query reads a catalog relation Eddy keeps empty in a way that makes it empty
/// (a comma or inner join with it).
fn reads_empty_catalog(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    select.from.iter().any(|twj| match &twj.relation {
        TableFactor::Table { name, .. } => {
            let catalog = name.0.len() == 1
                || name.0[0]
                    .as_ident()
                    .is_some_and(|i| i.value == "pg_catalog");
            catalog
                && crate::provider::pg_catalog::ALWAYS_EMPTY
                    .contains(&normalize_object_name(name).as_str())
                && twj.joins.iter().all(|j| {
                    matches!(
                        j.join_operator,
                        JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_)
                    )
                })
        }
        _ => false,
    })
}

/// psql's `array(select 'toast.' || x from unnest(tc.reloptions) x)`: the options of the
/// relation's TOAST table, which Eddy never has (`reltoastrelid = 0`).
fn unnests_toast_options(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    select.from.iter().any(|twj| {
        matches!(&twj.relation, TableFactor::Function { name, args, .. }
            if normalize_object_name(name) == "unnest"
                && args.iter().any(|a| a.to_string().ends_with("reloptions")))
            || matches!(&twj.relation, TableFactor::Table { name, args: Some(args), .. }
            if normalize_object_name(name) == "unnest"
                && args.args.iter().any(|a| a.to_string().ends_with("reloptions")))
    })
}

/// `SELECT x ... ORDER BY ...` becomes `SELECT array_agg(x ORDER BY ...) ...`.
fn array_agg_of(query: &mut Query) {
    let order = query.order_by.take();
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let Some(item) = select.projection.first_mut() else {
        return;
    };
    let value = match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e.clone(),
        _ => return,
    };
    let mut by = vec![];
    if let Some(order) = order
        && let OrderByKind::Expressions(exprs) = order.kind
    {
        for mut o in exprs {
            if matches!(&o.expr, Expr::Value(v) if matches!(v.value, Value::Number(..))) {
                o.expr = value.clone();
            }
            by.push(o);
        }
    }
    let mut f = match call("array_agg", vec![value]) {
        Expr::Function(f) => f,
        _ => return,
    };
    if let FunctionArguments::List(list) = &mut f.args
        && !by.is_empty()
    {
        list.clauses.push(FunctionArgumentClause::OrderBy(by));
    }
    *item = SelectItem::UnnamedExpr(Expr::Function(f));
}

/// The array `a` of `information_schema._pg_expandarray(a)`.
fn expandarray_arg(e: &Expr) -> Option<Expr> {
    let Expr::Function(f) = e else {
        return None;
    };
    if !normalize_object_name(&f.name).ends_with("_pg_expandarray") {
        return None;
    }
    match &f.args {
        FunctionArguments::List(list) => match list.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(a))] => Some(a.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// `unnest(generate_series(1, array_length(a)))`: the subscripts of `a`, one row each.
fn subscripts(array: Expr) -> Expr {
    let len = Expr::Cast {
        kind: CastKind::DoubleColon,
        expr: Box::new(call("array_length", vec![array])),
        data_type: DataType::BigInt(None),
        array: false,
        format: None,
    };
    call(
        "unnest",
        vec![call(
            "generate_series",
            vec![Expr::value(Value::Number("1".into(), false)), len],
        )],
    )
}

/// The value of a string literal or a `||` of them.
fn constant_string(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        Expr::BinaryOp {
            left,
            op: BinaryOperator::StringConcat,
            right,
        } => Some(constant_string(left)? + &constant_string(right)?),
        Expr::Nested(e) => constant_string(e),
        _ => None,
    }
}

/// `name(args)`.
fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// `regclass`, `regtype`, ... (with or without `pg_catalog.`), the `reg*` types.
fn reg_type(t: &DataType) -> Option<&'static str> {
    match t {
        DataType::Regclass => Some("regclass"),
        DataType::Custom(name, _) => {
            match name
                .0
                .last()?
                .as_ident()?
                .value
                .to_ascii_lowercase()
                .as_str()
            {
                "regclass" => Some("regclass"),
                "regtype" => Some("regtype"),
                "regproc" | "regprocedure" | "regnamespace" | "regrole" | "regoper" => {
                    Some("regother")
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn columns_of(qualifier: &Ident, columns: &[String]) -> impl Iterator<Item = SelectItem> {
    columns.iter().map(move |c| {
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(vec![
            qualifier.clone(),
            Ident::with_quote('"', c),
        ]))
    })
}

impl VisitorMut for Rewriter<'_> {
    type Break = ();

    /// PostgreSQL searches `pg_catalog` before the search path: an unqualified `pg_type` is
    /// `pg_catalog.pg_type` (a CTE of that name still shadows it).
    fn pre_visit_relation(&mut self, name: &mut ObjectName) -> ControlFlow<()> {
        if name.0.len() == 1
            && let Some(ident) = name.0[0].as_ident()
            && let table = normalize_ident(ident)
            && !self.ctes.contains(&table)
            && crate::provider::pg_catalog::is_catalog_relation(&table)
        {
            name.0
                .insert(0, ObjectNamePart::Identifier(Ident::new("pg_catalog")));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        let needs = select.projection.iter().any(|item| match item {
            SelectItem::Wildcard(o) | SelectItem::QualifiedWildcard(_, o) => plain(o),
            _ => false,
        });
        if !needs {
            return ControlFlow::Continue(());
        }
        let Some(relations) = self.relations(select) else {
            return ControlFlow::Continue(());
        };
        if relations.iter().all(|(_, cols)| cols.is_none()) {
            return ControlFlow::Continue(());
        }
        let mut projection = Vec::with_capacity(select.projection.len());
        for item in select.projection.drain(..) {
            match item {
                SelectItem::Wildcard(o) if plain(&o) => {
                    for (q, cols) in &relations {
                        match cols {
                            Some(cols) => projection.extend(columns_of(q, cols)),
                            None => projection.push(SelectItem::QualifiedWildcard(
                                SelectItemQualifiedWildcardKind::ObjectName(ObjectName(vec![
                                    ObjectNamePart::Identifier(q.clone()),
                                ])),
                                o.clone(),
                            )),
                        }
                    }
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(name),
                    o,
                ) if plain(&o) => {
                    let wanted = name
                        .0
                        .last()
                        .and_then(|p| p.as_ident())
                        .map(normalize_ident);
                    match relations
                        .iter()
                        .find(|(q, _)| Some(normalize_ident(q)) == wanted)
                    {
                        Some((q, Some(cols))) => projection.extend(columns_of(q, cols)),
                        _ => projection.push(SelectItem::QualifiedWildcard(
                            SelectItemQualifiedWildcardKind::ObjectName(name),
                            o,
                        )),
                    }
                }
                other => projection.push(other),
            }
        }
        select.projection = projection;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // psql writes `x OPERATOR(pg_catalog.~) 'p' COLLATE pg_catalog.default`.
        if let Expr::Collate { expr: inner, .. } = expr {
            *expr = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
        }
        // A scalar subquery over a catalog relation Eddy keeps empty (column defaults,
        // collations, ...) has no row, so it is NULL — exactly, not approximately.
        if let Expr::Subquery(query) = expr
            && reads_empty_catalog(query)
        {
            *expr = Expr::value(Value::Null);
            return ControlFlow::Continue(());
        }
        // A scalar subquery over catalog relations that looks a row up by its oid, such as
        // `(SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid = t.typrelid)`: oids are unique,
        // so `max` of the one row is the row, and DataFusion plans it (it needs an aggregate).
        if let Expr::Subquery(query) = expr
            && let SetExpr::Select(select) = query.body.as_mut()
            && select.projection.len() == 1
            && matches!(select.group_by, GroupByExpr::Expressions(ref g, _) if g.is_empty())
            && !select.from.is_empty()
            && select.from.iter().all(|twj| {
                twj.joins.is_empty()
                    && matches!(&twj.relation, TableFactor::Table { name, .. }
                        if crate::provider::pg_catalog::is_catalog_relation(
                            &normalize_object_name(name)))
            })
            && let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } =
                &mut select.projection[0]
            && !matches!(e, Expr::Function(_))
        {
            *e = call("max", vec![e.clone()]);
        }
        // `ARRAY(SELECT x FROM ...)` is `(SELECT array_agg(x) FROM ...)`, or over no rows
        // (where `array_agg` is NULL) the empty array, `{}`, as in PostgreSQL.
        if let Expr::Function(f) = expr
            && f.name.0.len() == 1
            && f.name.0[0]
                .as_ident()
                .is_some_and(|i| i.value.eq_ignore_ascii_case("array"))
            && let FunctionArguments::Subquery(query) = &f.args
        {
            let mut query = query.clone();
            *expr = if reads_empty_catalog(&query) || unnests_toast_options(&query) {
                Expr::Cast {
                    kind: CastKind::DoubleColon,
                    expr: Box::new(call("make_array", vec![])),
                    data_type: DataType::Array(ArrayElemTypeDef::SquareBracket(
                        Box::new(DataType::Text),
                        None,
                    )),
                    array: false,
                    format: None,
                }
            } else {
                array_agg_of(&mut query);
                call(
                    "coalesce",
                    vec![Expr::Subquery(query), call("make_array", vec![])],
                )
            };
            return ControlFlow::Continue(());
        }
        // `'s'::regclass` is the relation's oid; `c.oid::regclass` its name; `t::regtype`
        // the type's name.
        if let Expr::Cast {
            expr: inner,
            data_type,
            ..
        } = expr
            && let Some(kind) = reg_type(data_type)
        {
            if kind == "regother" {
                *data_type = DataType::Text;
                return ControlFlow::Continue(());
            }
            let inner = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
            // A name (a literal or a parameter) is looked up; a column of oids is named.
            let literal = matches!(&inner, Expr::Value(v)
                if matches!(v.value, Value::SingleQuotedString(_) | Value::Placeholder(_)));
            *expr = match (kind, literal) {
                ("regclass", true) => call("eddy_regclass_oid", vec![inner]),
                ("regclass", false) => call("eddy_regclass_name", vec![inner]),
                _ => call("format_type", vec![inner, Expr::value(Value::Null)]),
            };
            return ControlFlow::Continue(());
        }
        // `x LIKE 'pg\_%' ESCAPE '\'`: backslash is DataFusion's escape already; another
        // escape character (SQLAlchemy's `ESCAPE '/'`) in a constant pattern is spelled with
        // backslashes instead.
        if let Expr::Like {
            escape_char,
            pattern,
            ..
        }
        | Expr::ILike {
            escape_char,
            pattern,
            ..
        } = expr
            && let Some(v) = escape_char
            && let Value::SingleQuotedString(e) = &v.value
        {
            let mut chars = e.chars();
            match (chars.next(), chars.next()) {
                (Some('\\'), None) => *escape_char = None,
                (Some(esc), None) => {
                    **pattern = match constant_string(pattern) {
                        Some(text) => {
                            Expr::value(Value::SingleQuotedString(backslash_escaped(&text, esc)))
                        }
                        // A pattern known only at run time (a parameter, `$1 || '%'`, as
                        // SQLAlchemy sends it over psycopg 3) is respelled as it is evaluated.
                        None => {
                            let inner =
                                std::mem::replace(pattern.as_mut(), Expr::value(Value::Null));
                            call(
                                "eddy_like_escape",
                                vec![
                                    inner,
                                    Expr::value(Value::SingleQuotedString(esc.to_string())),
                                ],
                            )
                        }
                    };
                    *escape_char = None;
                }
                _ => {}
            }
        }
        // `x = ANY('{r,p}')`: an array literal (what psycopg's `Literal([...])` writes) is the
        // array of its elements, as PostgreSQL infers it from the comparison.
        if let Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } = expr
            && let Some(text) = constant_string(right)
            && let Some(elems) = parse_array_literal(&text)
        {
            **right = Expr::Array(datafusion::sql::sqlparser::ast::Array {
                elem: elems
                    .into_iter()
                    .map(|e| Expr::value(Value::SingleQuotedString(e)))
                    .collect(),
                named: true,
            });
        }
        // pgjdbc's `getPrimaryKeys`: `(information_schema._pg_expandarray(a)).n` is each
        // subscript, `(...).x` each element, the bare call (aliased `keys`) the elements too,
        // and `(result.keys).x` then the element itself — unnests side by side, as PostgreSQL
        // expands them.
        if let Expr::CompoundFieldAccess { root, access_chain } = expr
            && let [AccessExpr::Dot(Expr::Identifier(field))] = access_chain.as_slice()
        {
            let mut inner = root.as_ref();
            while let Expr::Nested(e) = inner {
                inner = e;
            }
            if let Some(array) = expandarray_arg(inner) {
                *expr = if field.value.eq_ignore_ascii_case("n") {
                    subscripts(array)
                } else {
                    call("unnest", vec![array])
                };
                return ControlFlow::Continue(());
            }
            if self.expands_arrays
                && field.value.eq_ignore_ascii_case("x")
                && matches!(inner, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
            {
                *expr = inner.clone();
                return ControlFlow::Continue(());
            }
        }
        if let Some(array) = expandarray_arg(expr) {
            *expr = call("unnest", vec![array]);
            return ControlFlow::Continue(());
        }
        // `x = ANY($1)` with an array parameter the client sends as text (`{r,p}`, as
        // psycopg does for a Python list): the parameter read as an array.
        if let Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } = expr
            && matches!(right.as_ref(), Expr::Value(v) if matches!(v.value, Value::Placeholder(_)))
        {
            let param = std::mem::replace(right.as_mut(), Expr::value(Value::Null));
            **right = call("eddy_array_param", vec![param]);
        }
        // `generate_subscripts(a, 1)` beside `unnest(a)` (SQLAlchemy's key columns in order):
        // the subscripts 1..n, unnested alongside.
        if let Expr::Function(f) = expr
            && normalize_object_name(&f.name) == "generate_subscripts"
            && let FunctionArguments::List(list) = &f.args
            && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(array))) = list.args.first()
        {
            *expr = subscripts(array.clone());
            return ControlFlow::Continue(());
        }
        if types::cast(expr) {
            return ControlFlow::Continue(());
        }
        // `x::pg_catalog.regtype::pg_catalog.text`: catalog types Eddy has no OIDs for read as text.
        if let Expr::Cast { data_type, .. } = expr
            && let DataType::Custom(name, _) = data_type
            && name
                .0
                .first()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value == "pg_catalog")
        {
            *data_type = match name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.as_str())
            {
                Some("oid" | "int8") => DataType::BigInt(None),
                Some("int4") => DataType::Int(None),
                Some("int2") => DataType::SmallInt(None),
                Some("bool") => DataType::Boolean,
                _ => DataType::Text,
            };
        }
        if let Expr::BinaryOp { op, .. } = expr
            && let BinaryOperator::PGCustomBinaryOperator(parts) = op
        {
            let replacement = match parts.last().map(String::as_str) {
                Some("~") => Some(BinaryOperator::PGRegexMatch),
                Some("~*") => Some(BinaryOperator::PGRegexIMatch),
                Some("!~") => Some(BinaryOperator::PGRegexNotMatch),
                Some("!~*") => Some(BinaryOperator::PGRegexNotIMatch),
                Some("=") => Some(BinaryOperator::Eq),
                _ => None,
            };
            if let Some(r) = replacement {
                *op = r;
            }
        }
        if let Expr::Function(f) = expr
            && f.name.0.len() == 2
            && f.name.0[0]
                .as_ident()
                .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_catalog"))
        {
            f.name.0.remove(0);
        }
        ControlFlow::Continue(())
    }
}
