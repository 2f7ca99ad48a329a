//! The command-line tools' contracts (`forksnap`, `snapbench`), one binary; built with
//! the `cli` feature.

#[path = "../common/mod.rs"]
mod common;

mod cli_contract;
mod snapbench_contract;
