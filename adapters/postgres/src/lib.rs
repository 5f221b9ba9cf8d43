//! The PostgreSQL adapter: a diesel-async connection pool, the embedded schema and the
//! implementation of every repository port of `concert-application`.
//!
//! Start-up, as `bootstrap` does it:
//!
//! ```no_run
//! # async fn start() -> Result<(), Box<dyn std::error::Error>> {
//! use concert_postgres::{PgCatalogRepository, PgConfig, build_pool, prepare_database};
//!
//! let config = PgConfig::new("postgres://postgres@127.0.0.1:5432/concert");
//! prepare_database(&config.url).await?; // create if missing, migrate under an advisory lock
//! let pool = build_pool(&config)?;
//! let catalog = PgCatalogRepository::new(pool.clone());
//! # let _ = catalog; Ok(()) }
//! ```
//!
//! Every repository method is one statement or one transaction; a race it guards against comes
//! back as the port's outcome variant, and infrastructure failures as `RepositoryError`
//! (`Unavailable` for the transient ones). docs/DATABASE.md describes the schema and the locking.

mod cached;
mod catalog;
mod clock;
mod columns;
mod committed;
mod config;
mod error;
mod idempotency;
mod keys;
mod locks;
mod payment;
mod pool;
mod queue;
mod readiness;
mod reservation;
mod retention;
mod rooms;
pub mod schema;
mod startup;
#[cfg(feature = "test-support")]
pub mod testing;
mod ticket_blocks;
mod ticket_end_outbox;
mod wallet;

pub use catalog::PgCatalogRepository;
pub use clock::PgClock;
pub use config::PgConfig;
pub use error::StartupError;
pub use idempotency::PgIdempotencyStore;
pub use keys::{QUEUE_TOKEN_KEY, deployment_key};
pub use payment::{PgPaymentRepository, TicketEnds};
pub use pool::{PgPool, PooledConnection, build_pool};
pub use queue::PgQueueRepository;
pub use readiness::PgReadinessProbe;
pub use reservation::PgReservationRepository;
pub use retention::PgRetentionRepository;
pub use rooms::PgRoomRepository;
pub use startup::{MIGRATIONS, migrate, prepare_database};
pub use ticket_blocks::PgTicketBlockLeases;
pub use ticket_end_outbox::PgTicketEndOutbox;
pub use wallet::PgWalletRepository;
