//! Integration tests of the embedded store: a fresh in-memory database (or a file in a
//! directory of its own) per test.

mod store;
mod booking_support;
mod reservations;
mod idempotency;
mod payments;
mod races;
mod wallet;
