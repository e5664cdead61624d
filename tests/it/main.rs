//! End-to-end tests: each test starts a real `eddy server` process on its own temp data dir and
//! speaks to it as users do (tokio-postgres, psql, sqllogictest files through pgwire).
//!
//! One test binary for all of them, so the workspace links it once.

mod harness;
mod limits;
#[path = "../support/moto.rs"]
mod moto;
mod proxy;

mod atomicity;
mod checkpoint;
mod clients;
mod cluster;
mod connection;
mod copy;
mod copy_binary;
mod extended;
mod failover;
mod fast_paths;
mod hardening;
mod partition;
mod pause;
mod persistent;
mod plan_cache;
mod psql;
mod push;
mod recovery;
mod restart;
mod shutdown;
mod simple_client;
mod slt;
mod tidy;
mod tier;
mod transactions;
mod windowed_restart;
mod wire;
