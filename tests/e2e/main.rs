//! End-to-end tests: the real server, in process on a random port, over a fresh store per test
//! (a PostgreSQL database, or with `E2E_STORE=sqlite` an embedded SQLite file), driven over HTTP
//! exactly as docs/API.md describes.

mod embedded;
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
mod redis_line;
mod rooms;
mod rooms_of_their_own;
