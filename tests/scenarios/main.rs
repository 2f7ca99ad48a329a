//! The library's scenarios, one per file, linked into one test binary (one link instead
//! of one per file: most of the test command's build time was linking). Tests that need
//! a real server find it through `common` and fail when it is missing.

#[path = "../common/mod.rs"]
mod common;

mod aof_directory;
mod child_killed_midway;
mod child_memory_probe;
mod child_priority;
mod cow_budget_aborts;
mod digest_matches_servers;
mod direct_io_default;
mod encode_decode_roundtrip;
mod field_ttls_round_trip;
mod fork_contract;
mod fork_snapshot_matches_debug_populate;
mod full_sync_fanout;
mod functions_round_trip;
mod io_step_failures;
mod lzf_reference;
mod modules_round_trip;
mod oversized_buffers_are_refused;
mod parallel_child;
mod parent_exits_child_follows;
mod point_in_time_consistency;
mod reader_edge_entries;
mod reader_loads_server_files;
mod reader_rejects_damage;
mod redis_loads_snapshot;
mod registered_buffers;
mod replica_link;
mod second_start_is_already_running;
mod skipped_values_are_counted;
mod streaming_load;
mod streams_round_trip;
mod write_rate_cap;
