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

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, DataType, Expr, Ident, ObjectName, ObjectNamePart, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Statement, TableFactor, TableObject, Value, VisitMut,
    VisitorMut, WildcardAdditionalOptions,
};

use crate::Engine;
use crate::parser::{normalize_ident, normalize_object_name};

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
    let mut ctes = CteNames(HashSet::new());
    let _ = stmt.visit(&mut ctes);
    let _ = stmt.visit(&mut Rewriter {
        engine,
        ctes: ctes.0,
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
            && let SetExpr::Select(select) = query.body.as_ref()
            && select.from.iter().any(|twj| match &twj.relation {
                TableFactor::Table { name, .. } => {
                    crate::provider::pg_catalog::ALWAYS_EMPTY
                        .contains(&normalize_object_name(name).as_str())
                        && name.0.len() == 2
                }
                _ => false,
            })
        {
            *expr = Expr::value(Value::Null);
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
            *data_type = DataType::Text;
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
