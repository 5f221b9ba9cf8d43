//! Integration tests of the embedded store: a fresh in-memory database (or a file in a
//! directory of its own) per test.

mod queue;
mod queue_races;
mod store;
