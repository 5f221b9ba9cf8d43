//! Load generator and raw baselines for `docs/PERFORMANCE.md`. `bench/run.sh` builds everything in
//! release, starts the servers and runs the `concert-load` binary, which sets up the data, runs
//! every scenario and its baseline, and prints the table.

pub mod client;
pub mod cpu;
pub mod fixtures;
pub mod measure;
pub mod pgbench;
pub mod redis_bench;
pub mod report;
pub mod sale_open;
pub mod sale_open_report;
pub mod scenarios;
pub mod sqlite_raw;
