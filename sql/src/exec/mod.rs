//! Execution pieces that push queries, persistent queries and cursors share — none of them
//! is one kind of query's own:
//!
//! - [`cache`]: a session's queries planned once (`planned`, into the session's `PlanCache`);
//! - [`plan`]: planning a statement under a session (`plan_in`), a plan's parameter and result
//!   types (`describe_plan`);
//! - [`steps`]: filters and projections compiled once to physical expressions and run per
//!   batch (`Step`, `compile`, `run_steps`);
//! - [`tail`]: following one partition as it grows, through storage's read across both tiers
//!   (`PartitionTail`), and learning that its stream was dropped (`DropWatch`).
//!
//! It sits below `push` and `continuous` and above `session`: it may use the session, the
//! providers, ingest and the engine, never a handler or a kind of query.

pub(crate) mod cache;
pub(crate) mod plan;
pub(crate) mod steps;
pub(crate) mod tail;

pub(crate) use self::plan::{describe_plan, plan_in};
pub(crate) use self::steps::{SHAPE, Step, compile, physical, run_steps};
pub use self::tail::StartAt;
pub(crate) use self::tail::{DropWatch, PartitionTail};
