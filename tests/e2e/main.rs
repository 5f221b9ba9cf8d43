//! End-to-end tests: the real server, in process on a random port, over a fresh PostgreSQL
//! database per test, driven over HTTP exactly as docs/API.md describes.

mod errors;
mod events;
mod expiry;
mod hostile;
mod identity;
mod instances;
mod journey;
mod leaving;
mod malformed;
mod operations;
mod passthrough;
mod rooms;
mod rooms_of_their_own;
