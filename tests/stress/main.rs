//! Stress, crash and database-fault tests against real `concert-server` processes.
//!
//! Each test starts three `concert-server` processes (the binary built by `cargo build`, or the
//! one named by `CONCERT_SERVER_BIN`) on free loopback ports over one fresh database, drives them
//! with concurrent clients spread round-robin over the instances, injects its fault, and then
//! checks the database directly: no seat sold twice, one payment per sold seat, no negative
//! balance, `charged = balance + paid` for every user, ledgers that chain, and the clients' own
//! books equal to the database's (nothing a client was told is lost, nothing is counted twice).
//!
//! The tests run one at a time (they share the machine's cores and the PostgreSQL cluster).
//!
//! - `STRESS_SEED`: the seed of the random workload (default: a fixed one; printed by every test).
//! - `STRESS_SOAK_SECONDS`: run each load phase for this many seconds instead of the short default
//!   (a soak: `STRESS_SOAK_SECONDS=600 cargo test -p concert-e2e --test stress -- --nocapture`).
//!
//! docs/RELIABILITY.md lists every guarantee with the test that proves it.

mod harness;

mod bookkeeping;
mod crash;
mod faults;
mod queue;
mod races;
mod redis_line;
mod secrets;
