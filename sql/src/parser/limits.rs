//! How deep a statement may nest, checked right after parsing, before anything recurses over
//! its syntax tree (see docs/design/2026-12-01-input-limits.md).
//!
//! sqlparser builds operator chains (`1+1+...`, `a AND b AND ...`, `x || y || ...`) and set
//! operations (`... UNION ALL ...`) in loops, so a 4 KB statement can be a tree thousands of
//! levels deep; everything after the parser walks it recursively (the derived `Clone`, `Drop`
//! and `Visit` of the AST, DataFusion's planner, physical expressions evaluating row batches).
//! [`check`] measures the depth with a visitor that stops descending past the limit, so the
//! check itself is bounded. A statement over a limit is refused with
//! [`crate::Error::TooDeep`] (SQLSTATE 54001, as PostgreSQL's "stack depth
//! limit exceeded") and taken apart without recursion by [`dismantle`], so that dropping it
//! cannot overflow the stack either.
//!
//! The limits hold with the server's 64 MiB worker stacks (`WORKER_STACK_BYTES` in the
//! binary) in debug builds, where frames are largest.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Query, SetExpr, Statement, Value, Values, Visit, VisitMut, Visitor, VisitorMut,
};

use super::EddyStatement;
use crate::{Error, Result};

/// The deepest expression nesting accepted: operator chains, parentheses, function calls,
/// CASE, each level of each counts one.
pub const MAX_EXPR_DEPTH: usize = 3_000;

/// The deepest nesting of queries accepted: subqueries, and each set operation
/// (`UNION`, `INTERSECT`, `EXCEPT`) of a chain counts one.
pub const MAX_QUERY_DEPTH: usize = 1_000;

/// The deepest nesting of function calls accepted (`abs(abs(...))`), within
/// [`MAX_EXPR_DEPTH`]. DataFusion's planning time grows with the cube of this depth (measured
/// in debug builds: 200 levels 0.8 s, 400 levels 7.7 s, 800 levels 66 s), so a deep nest of
/// calls would hold a core for hours; PostgreSQL has no such limit.
pub const MAX_CALL_DEPTH: usize = 256;

/// The deepest nesting of subqueries inside expressions accepted (`(SELECT (SELECT ...))`,
/// `EXISTS`, `IN (SELECT ...)`), within [`MAX_QUERY_DEPTH`]. DataFusion's planning time
/// doubles or more with each level (measured in debug builds: 12 levels 0.14 s, 16 levels
/// 1.05 s, 20 levels 17 s); derived tables (`FROM (SELECT ...)`) are not counted here (400
/// levels plan in 0.15 s). PostgreSQL has no such limit.
pub const MAX_SUBQUERY_DEPTH: usize = 16;

/// sqlparser's own recursion limit (its default is 50). Its parser grows its stack on the
/// heap where it recurses, so this only needs to be above what the tree limits let through;
/// nesting deeper than both is reported by the parser.
pub const MAX_PARSER_DEPTH: usize = 2 * MAX_EXPR_DEPTH;

/// Refuses (and takes apart) a statement that nests deeper than the limits.
pub fn check(statement: EddyStatement) -> Result<EddyStatement> {
    let mut depth = Depth::default();
    let over = match &statement {
        EddyStatement::Sql(s) | EddyStatement::Push(s) => s.visit(&mut depth),
        EddyStatement::DeclareCursor { query, .. } => query.visit(&mut depth),
        EddyStatement::Persistent(q) => q.query.visit(&mut depth),
        _ => ControlFlow::Continue(()),
    };
    match over {
        ControlFlow::Continue(()) => Ok(statement),
        ControlFlow::Break(e) => {
            match statement {
                EddyStatement::Sql(s) | EddyStatement::Push(s) => dismantle(*s),
                EddyStatement::DeclareCursor { query, .. } => dismantle(*query),
                EddyStatement::Persistent(q) => dismantle(*q.query),
                _ => {}
            }
            Err(e)
        }
    }
}

/// Depths along the current path of the visit.
#[derive(Default)]
struct Depth {
    expr: usize,
    call: usize,
    subquery: usize,
    query: usize,
}

fn is_subquery(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
    )
}

fn too_deep_expr() -> Error {
    Error::TooDeep(format!(
        "the statement's expressions nest more than {MAX_EXPR_DEPTH} levels deep \
         (max_expr_depth: each operator of a chain such as 1+1+..., each parenthesis, \
         function call or CASE counts one)"
    ))
}

fn too_deep_call() -> Error {
    Error::TooDeep(format!(
        "the statement nests function calls more than {MAX_CALL_DEPTH} levels deep \
         (max_call_depth)"
    ))
}

fn too_deep_subquery() -> Error {
    Error::TooDeep(format!(
        "the statement nests subqueries in expressions more than {MAX_SUBQUERY_DEPTH} levels \
         deep (max_subquery_depth)"
    ))
}

fn too_deep_query() -> Error {
    Error::TooDeep(format!(
        "the statement's queries nest more than {MAX_QUERY_DEPTH} levels deep \
         (max_query_depth: each subquery and each UNION / INTERSECT / EXCEPT counts one)"
    ))
}

impl Visitor for Depth {
    type Break = Error;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Error> {
        self.query += 1;
        // A chain of set operations is not visited through any hook, so its depth is
        // measured here, iteratively, before the visit descends into it.
        if self.query + set_operation_depth(&query.body) > MAX_QUERY_DEPTH {
            return ControlFlow::Break(too_deep_query());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<Error> {
        self.query -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Error> {
        self.expr += 1;
        if self.expr > MAX_EXPR_DEPTH {
            return ControlFlow::Break(too_deep_expr());
        }
        if matches!(expr, Expr::Function(_)) {
            self.call += 1;
            if self.call > MAX_CALL_DEPTH {
                return ControlFlow::Break(too_deep_call());
            }
        }
        if is_subquery(expr) {
            self.subquery += 1;
            if self.subquery > MAX_SUBQUERY_DEPTH {
                return ControlFlow::Break(too_deep_subquery());
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Error> {
        self.expr -= 1;
        if matches!(expr, Expr::Function(_)) {
            self.call -= 1;
        }
        if is_subquery(expr) {
            self.subquery -= 1;
        }
        ControlFlow::Continue(())
    }
}

/// The longest path of set operations below `body` (0 for a plain SELECT), without recursion.
fn set_operation_depth(body: &SetExpr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(body, 0usize)];
    while let Some((node, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        if let SetExpr::SetOperation { left, right, .. } = node {
            stack.push((left, depth + 1));
            stack.push((right, depth + 1));
        }
    }
    deepest
}

/// How deep a detached piece may be before its own subtrees are detached in turn.
const DETACH_DEPTH: usize = 64;

/// Drops a syntax tree of any depth without deep recursion: subtrees below
/// [`DETACH_DEPTH`] levels, and every set operation, are moved out into work lists, so each
/// piece dropped (or visited) is shallow.
pub fn dismantle(statement: Statement) {
    let mut detach = Detach::default();
    let mut statement = statement;
    let _ = VisitMut::visit(&mut statement, &mut detach);
    drop(statement);
    loop {
        detach.depth = 0;
        if let Some(mut expr) = detach.exprs.pop() {
            let _ = VisitMut::visit(&mut expr, &mut detach);
        } else if let Some(mut set) = detach.sets.pop() {
            if let SetExpr::SetOperation { left, right, .. } = &mut set {
                detach
                    .sets
                    .push(std::mem::replace(left.as_mut(), placeholder()));
                detach
                    .sets
                    .push(std::mem::replace(right.as_mut(), placeholder()));
            } else {
                let _ = VisitMut::visit(&mut set, &mut detach);
            }
        } else {
            break;
        }
    }
}

fn placeholder() -> SetExpr {
    SetExpr::Values(Values {
        explicit_row: false,
        value_keyword: false,
        rows: vec![],
    })
}

#[derive(Default)]
struct Detach {
    depth: usize,
    exprs: Vec<Expr>,
    sets: Vec<SetExpr>,
}

impl VisitorMut for Detach {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if matches!(query.body.as_ref(), SetExpr::SetOperation { .. }) {
            self.sets
                .push(std::mem::replace(query.body.as_mut(), placeholder()));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth >= DETACH_DEPTH {
            // The replacement has no children, so the visit does not descend.
            self.exprs
                .push(std::mem::replace(expr, Expr::value(Value::Null)));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &mut Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// sqlparser's errors as ours; its recursion limit is [`MAX_PARSER_DEPTH`] (54001).
impl From<datafusion::sql::sqlparser::parser::ParserError> for Error {
    fn from(e: datafusion::sql::sqlparser::parser::ParserError) -> Self {
        use datafusion::sql::sqlparser::parser::ParserError as P;
        match e {
            P::TokenizerError(m) | P::ParserError(m) => Error::Syntax(m),
            P::RecursionLimitExceeded => Error::TooDeep(format!(
                "the statement nests more than {} levels of parentheses, function calls, \
                 CASE or subqueries (max_parser_depth)",
                MAX_PARSER_DEPTH
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse_statements;

    fn chain(op: &str, n: usize) -> String {
        format!("SELECT {}", vec!["1"; n].join(op))
    }

    #[test]
    fn chains_within_the_limit_parse() {
        for op in ["+", " AND ", " || "] {
            assert!(
                parse_statements(&chain(op, MAX_EXPR_DEPTH - 10)).is_ok(),
                "{op}"
            );
        }
        let unions = vec!["SELECT 1"; MAX_QUERY_DEPTH - 10].join(" UNION ALL ");
        assert!(parse_statements(&unions).is_ok());
    }

    #[test]
    fn nested_calls_and_subqueries_are_bounded_on_their_own() {
        let calls = |n: usize| format!("SELECT {}1{}", "abs(".repeat(n), ")".repeat(n));
        assert!(parse_statements(&calls(MAX_CALL_DEPTH)).is_ok());
        match parse_statements(&calls(MAX_CALL_DEPTH + 1)) {
            Err(Error::TooDeep(m)) => assert!(m.contains("max_call_depth"), "{m}"),
            other => panic!("{:?}", other.map(|s| s.len())),
        }
        let subqueries = |n: usize| format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n));
        assert!(parse_statements(&subqueries(MAX_SUBQUERY_DEPTH)).is_ok());
        match parse_statements(&subqueries(MAX_SUBQUERY_DEPTH + 1)) {
            Err(Error::TooDeep(m)) => assert!(m.contains("max_subquery_depth"), "{m}"),
            other => panic!("{:?}", other.map(|s| s.len())),
        }
    }

    #[test]
    fn chains_past_the_limit_are_refused_and_dropped_safely() {
        // 200k levels: dropping this recursively would overflow any test thread's stack.
        for sql in [
            chain("+", 200_000),
            vec!["SELECT 1"; 200_000].join(" UNION ALL "),
            format!("SELECT {}1{}", "(".repeat(20_000), ")".repeat(20_000)),
        ] {
            match parse_statements(&sql) {
                Err(Error::TooDeep(_)) => {}
                other => panic!("{:?}", other.map(|s| s.len())),
            }
        }
    }
}
