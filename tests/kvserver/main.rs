//! The reference server (examples/kvserver) against real clients and real servers: its
//! replies against Redis 7.0's, its snapshots against Redis's and Valkey's loaders, its
//! start-up load of their files, a kill during BGSAVE, hostile clients.

#[path = "../common/mod.rs"]
mod common;

mod aof;
mod clients;
mod persistence;
mod replication;
mod replies;
