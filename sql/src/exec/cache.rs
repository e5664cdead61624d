//! A session's queries planned once, into its `PlanCache` (`session.rs`). A prepared statement
//! executed again, and the same simple-protocol query text sent again, reuse the logical plan
//! DataFusion made of it — with its placeholders, before optimisation — and its description,
//! instead of rewriting and planning the SQL at every Describe and Execute.
//!
//! What is kept, and why that is safe:
//!
//! - **The unoptimised logical plan.** Parameters are bound into a copy of it and the copy is
//!   optimised and physically planned per execution, so `now()` is the execution's time and a
//!   scan reads the high watermarks of the moment it runs (both are fixed only then).
//! - **Only plans over user streams and tables**, or over no relation at all (`SELECT 1`): a
//!   `pg_catalog`, `information_schema` or `eddy.` relation may hold rows computed when it was
//!   resolved, so a plan that reads one is made afresh each time.
//! - **A pull query by key** also keeps its [`KeyLookup`] (`provider/lookup.rs`), which answers
//!   it from the table's store without the plan.
//! - **A query of constants** (`SELECT 1`, a pool's validation query: no relation, no
//!   parameter, only immutable functions — nothing `now()` or `current_setting()` would
//!   fix at optimisation) also keeps its physical plan, which is executed again as it is:
//!   optimising and physically planning it gave the same plan every time. It gives the same
//!   rows every time too, so the first execution read to its end without an error keeps them
//!   (up to `Constant::KEEP_BYTES`) and later ones send them without running the plan
//!   (DataFusion's stream and metrics were a tenth of a prepared `SELECT 1`'s CPU). Rows are
//!   kept at execution, not planning: a Describe never runs a query, and an execution that
//!   is cancelled or stopped early keeps nothing.
//! - **Valid for one catalog version** (the number of catalog commands applied): any DDL —
//!   a stream created, dropped or re-created, a persistent query started or stopped — makes
//!   every plan older than it stale, and the next use plans again.
//!
//! Keys are the parsed statements themselves (sqlparser's syntax trees compare and hash
//! without their source positions), so two texts that differ only in spacing share an entry.
//! The cache is bounded (256 statements, least recently used first out) and lives as long as
//! its session.

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::sql::sqlparser::ast::Statement;
use eddy_catalog::RelationKind;

use crate::exec::{describe_plan, plan_in};
use crate::provider::{KeyLookup, PullTable, StreamTable};
use crate::session::{Constant, Planned};
use crate::{Result, Session};

/// A query's plan (parameters still unbound), description and lookup: the session's cached
/// ones when still valid, else planned now (and kept, if the plan may be).
pub(crate) async fn planned(session: &Session, statement: &Statement) -> Result<Arc<Planned>> {
    let cacheable_statement = matches!(statement, Statement::Query(_));
    let version = session.engine().catalog().applied();
    if cacheable_statement && let Some(planned) = session.plans().get(statement, version) {
        return Ok(planned);
    }
    let plan = plan_in(session, statement, false).await?;
    let description = describe_plan(&plan)?;
    if !(cacheable_statement && reads_only_user_relations(&plan)) {
        return Ok(Arc::new(Planned {
            plan,
            description,
            lookup: None,
            constant: None,
        }));
    }
    let constant = if is_constant(&plan) {
        Some(Arc::new(Constant::new(session.physical_plan(&plan).await?)))
    } else {
        None
    };
    let lookup = description
        .columns
        .as_ref()
        .and_then(|schema| KeyLookup::of(session.engine(), statement, schema))
        .map(Arc::new);
    let planned = Arc::new(Planned {
        plan,
        description,
        lookup,
        constant,
    });
    session
        .plans()
        .insert(statement.clone(), version, planned.clone());
    Ok(planned)
}

/// Whether every relation `plan` scans (subqueries included) is a user stream read from its
/// log, or a table read from its store.
fn reads_only_user_relations(plan: &LogicalPlan) -> bool {
    let mut only_user = true;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let user = source_as_provider(&scan.source).is_ok_and(|provider| {
                let any: &dyn std::any::Any = provider.as_ref();
                any.is::<PullTable>()
                    || any
                        .downcast_ref::<StreamTable>()
                        .is_some_and(|t| t.kind() == RelationKind::Stream)
            });
            if !user {
                only_user = false;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    only_user
}

/// Whether `plan` computes constants only: a query (not a write) over no relation, without
/// parameters, calling immutable functions only (subqueries included). Its physical plan
/// gives the same rows every time it is executed.
fn is_constant(plan: &LogicalPlan) -> bool {
    let mut constant = true;
    let _ = plan.apply_with_subqueries(|node| {
        let reads_or_writes = matches!(
            node,
            LogicalPlan::TableScan(_)
                | LogicalPlan::Dml(_)
                | LogicalPlan::Ddl(_)
                | LogicalPlan::Copy(_)
                | LogicalPlan::Statement(_)
                | LogicalPlan::Extension(_)
                | LogicalPlan::RecursiveQuery(_)
                | LogicalPlan::DescribeTable(_)
        );
        if reads_or_writes || node_varies(node) {
            constant = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    constant
}

/// Whether an expression of `node` may give another value at another execution: a
/// parameter, a window, a function that is not immutable.
fn node_varies(node: &LogicalPlan) -> bool {
    let mut varies = false;
    let _ = node.apply_expressions(|e| {
        varies = e
            .exists(|e| {
                Ok(match e {
                    Expr::Placeholder(_) | Expr::WindowFunction(_) => true,
                    Expr::ScalarFunction(f) => {
                        f.func.signature().volatility != Volatility::Immutable
                    }
                    Expr::AggregateFunction(f) => {
                        f.func.signature().volatility != Volatility::Immutable
                    }
                    _ => false,
                })
            })
            .unwrap_or(true);
        Ok(if varies {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    varies
}
