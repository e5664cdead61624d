//! Behaviour of `PartitionLog` through its public API: a model-checked property test, crash
//! and corruption simulation, retention, concurrency.

mod api;
mod common;
mod concurrency;
mod crash;
mod entries;
mod model;
mod read;
mod retention;
mod transactions;
