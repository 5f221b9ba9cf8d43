//! Integration tests of the embedded store: a fresh in-memory database (or a file in a
//! directory of its own) per test.

mod contract;
mod keys;
mod reservations;
mod retention;
mod store;
mod wallet;
