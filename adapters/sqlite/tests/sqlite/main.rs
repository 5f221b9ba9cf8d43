//! Integration tests of the embedded store: a fresh in-memory database (or a file in a
//! directory of its own) per test.

mod booking_support;
mod catalog;
mod contract;
mod idempotency;
mod keys;
mod payments;
mod races;
mod reservations;
mod retention;
mod rooms;
mod store;
mod wallet;
