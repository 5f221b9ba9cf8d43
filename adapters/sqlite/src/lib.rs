//! The embedded store: every repository port of `concert-application` on one SQLite file, with
//! no database server to run. The library is compiled in (`libsqlite3-sys`, bundled).
//!
//! ```no_run
//! # async fn start() -> Result<(), Box<dyn std::error::Error>> {
//! use concert_sqlite::SqliteStore;
//!
//! // Created and migrated when missing; locked for this process while it is open.
//! let store = SqliteStore::open("sqlite://concert.db").await?;
//! # let _ = store; Ok(()) }
//! ```
//!
//! It serves one instance (a second process on the same file is refused at open); several
//! instances share PostgreSQL. Every write is one `BEGIN IMMEDIATE` transaction that re-reads
//! the versions the domain decided on and writes only if they are unchanged (the same
//! compare-and-set as PostgreSQL's, docs/DATABASE.md §8), so no rule lives here either.

mod catalog;
mod columns;
mod counters;
mod error;
mod idempotency;
mod keys;
mod payment;
mod queue;
mod readiness;
mod reservation;
mod retention;
mod rooms;
mod store;
#[cfg(feature = "test-support")]
pub mod testing;
mod wallet;

pub use catalog::SqliteCatalogRepository;
pub use error::OpenError;
pub use idempotency::SqliteIdempotencyStore;
pub use keys::{QUEUE_TOKEN_KEY, deployment_key};
pub use payment::SqlitePaymentRepository;
pub use queue::SqliteQueueRepository;
pub use readiness::SqliteReadinessProbe;
pub use reservation::SqliteReservationRepository;
pub use retention::SqliteRetentionRepository;
pub use rooms::SqliteRoomRepository;
pub use store::{Location, MIGRATIONS, SqliteStore};
pub use wallet::SqliteWalletRepository;
