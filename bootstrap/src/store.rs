//! The store `DATABASE_URL` names, opened and turned into the application's ports:
//! PostgreSQL (`postgres://…`), shared by any number of instances, or the embedded SQLite file
//! (`sqlite://PATH`), for one instance with no database server. Without `DATABASE_URL` the server
//! uses [`DEFAULT_STORE_URL`].
//!
//! With `QUEUE_URL` the waiting line moves to Redis ([`Store::redis_line`]): the queue port, the
//! rooms as their lines see them and the line's retention, beside the PostgreSQL store.

use std::sync::Arc;

use anyhow::Context;
use concert_application::ports::{
    CatalogRepository, Clock, IdempotencyStore, PaymentRepository, QueueRepository, ReadinessProbe,
    ReservationRepository, RetentionRepository, RoomRepository, TicketEndOutbox, WalletRepository,
};
use concert_clock::SystemClock;
use concert_postgres::{
    PgCatalogRepository, PgClock, PgConfig, PgIdempotencyStore, PgPaymentRepository, PgPool,
    PgQueueRepository, PgReadinessProbe, PgReservationRepository, PgRetentionRepository,
    PgRoomRepository, PgTicketBlockLeases, PgTicketEndOutbox, PgWalletRepository, TicketEnds,
};
use concert_redis::{RedisLine, RedisLineConfig};
use concert_sqlite::{
    SqliteCatalogRepository, SqliteIdempotencyStore, SqlitePaymentRepository,
    SqliteQueueRepository, SqliteReadinessProbe, SqliteReservationRepository,
    SqliteRetentionRepository, SqliteRoomRepository, SqliteStore, SqliteWalletRepository,
};

/// The store of a server started without `DATABASE_URL`: a file in its working directory.
pub const DEFAULT_STORE_URL: &str = "sqlite://concert.db";

/// Every storage port over one store.
pub(crate) struct StorePorts {
    pub catalog: Arc<dyn CatalogRepository>,
    pub reservations: Arc<dyn ReservationRepository>,
    pub wallets: Arc<dyn WalletRepository>,
    pub payments: Arc<dyn PaymentRepository>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub queue: Arc<dyn QueueRepository>,
    pub retention: Arc<dyn RetentionRepository>,
    pub rooms: Arc<dyn RoomRepository>,
    pub readiness: Arc<dyn ReadinessProbe>,
    /// The outbox payments write their ticket ends to when the line lives elsewhere.
    pub ticket_ends: Option<Arc<dyn TicketEndOutbox>>,
}

impl StorePorts {
    /// The same ports with the waiting line on `line`: its queue, the rooms as its lines see
    /// them (opened when a line opened), and the line's retention beside the main store's.
    ///
    /// A payment then ends its ticket on the line after its commit, through the outbox `pool`
    /// holds (written in the payment's transaction, so that no end is lost to a crash between
    /// the two stores).
    pub(crate) fn with_line_on(self, line: &RedisLine, pool: &PgPool) -> Self {
        Self {
            payments: Arc::new(PgPaymentRepository::with_ticket_ends(
                pool.clone(),
                TicketEnds::Outbox,
            )),
            ticket_ends: Some(Arc::new(PgTicketEndOutbox::new(pool.clone()))),
            queue: Arc::new(line.queue()),
            rooms: Arc::new(line.rooms_over(self.rooms)),
            retention: Arc::new(line.retention_over(self.retention)),
            ..self
        }
    }
}

/// An open store.
pub(crate) enum Store {
    Postgres { url: String, pool: PgPool },
    Sqlite(SqliteStore),
}

impl Store {
    /// Opens the store `url` names: a PostgreSQL database is created when missing and migrated
    /// (with a pool of `pool_size` connections); a SQLite file likewise, and locked for this
    /// process.
    pub(crate) async fn open(url: &str, pool_size: u32) -> anyhow::Result<Self> {
        if concert_sqlite::Location::is_sqlite_url(url) {
            let store = SqliteStore::open(url)
                .await
                .context("opening the embedded store")?;
            tracing::info!(
                file = %store.location(),
                "embedded SQLite store: one instance; set DATABASE_URL=postgres://… to run several"
            );
            return Ok(Self::Sqlite(store));
        }
        concert_postgres::prepare_database(url)
            .await
            .context("preparing the database (create if missing, run migrations)")?;
        let pool = concert_postgres::build_pool(&PgConfig {
            max_connections: pool_size as usize,
            ..PgConfig::new(url)
        })
        .context("building the database pool")?;
        Ok(Self::Postgres {
            url: url.to_owned(),
            pool,
        })
    }

    /// The secret stored under `name`, or `candidate` stored now if there is none.
    pub(crate) async fn deployment_key(
        &self,
        name: &str,
        candidate: &[u8],
    ) -> anyhow::Result<Vec<u8>> {
        match self {
            Self::Postgres { url, .. } => {
                Ok(concert_postgres::deployment_key(url, name, candidate).await?)
            }
            Self::Sqlite(store) => {
                Ok(concert_sqlite::deployment_key(store, name, candidate).await?)
            }
        }
    }

    /// The service's clock. On PostgreSQL every instance tells time by the database's clock (see
    /// `PgClock`, which the returned calibration job keeps aligned), so deadlines agree across
    /// instances whatever their machines' clocks say; the embedded store has one instance, which
    /// uses its own clock.
    pub(crate) async fn clock(&self) -> anyhow::Result<(Arc<dyn Clock>, Option<PgClock>)> {
        match self {
            Self::Postgres { pool, .. } => {
                let database_clock = PgClock::new(pool.clone(), Arc::new(SystemClock));
                let offset = database_clock
                    .calibrate()
                    .await
                    .context("reading the database clock")?;
                tracing::info!(
                    offset_ms = offset.whole_milliseconds(),
                    "clock aligned on the database"
                );
                Ok((Arc::new(database_clock.clone()), Some(database_clock)))
            }
            Self::Sqlite(_) => Ok((Arc::new(SystemClock), None)),
        }
    }

    /// The waiting line on Redis (`QUEUE_URL`), its numbers leased in this store; connected and
    /// pinged. Only beside PostgreSQL (the configuration refuses it beside the embedded store).
    /// Returns the line and the ports with the line on it ([`StorePorts::with_line_on`]).
    pub(crate) async fn with_redis_line(
        &self,
        ports: StorePorts,
        config: RedisLineConfig,
    ) -> anyhow::Result<(RedisLine, StorePorts)> {
        let Self::Postgres { pool, .. } = self else {
            anyhow::bail!("the line on Redis needs DATABASE_URL=postgres://…");
        };
        let blocks = Arc::new(PgTicketBlockLeases::new(pool.clone()));
        let line = RedisLine::connect(config, blocks)
            .await
            .context("connecting to the line's Redis (QUEUE_URL)")?;
        let ports = ports.with_line_on(&line, pool);
        Ok((line, ports))
    }

    /// The repositories over this store.
    pub(crate) fn ports(&self) -> StorePorts {
        match self {
            Self::Postgres { pool, .. } => StorePorts {
                catalog: Arc::new(PgCatalogRepository::new(pool.clone())),
                reservations: Arc::new(PgReservationRepository::new(pool.clone())),
                wallets: Arc::new(PgWalletRepository::new(pool.clone())),
                payments: Arc::new(PgPaymentRepository::new(pool.clone())),
                idempotency: Arc::new(PgIdempotencyStore::new(pool.clone())),
                queue: Arc::new(PgQueueRepository::new(pool.clone())),
                retention: Arc::new(PgRetentionRepository::new(pool.clone())),
                rooms: Arc::new(PgRoomRepository::new(pool.clone())),
                readiness: Arc::new(PgReadinessProbe::new(pool.clone())),
                ticket_ends: None,
            },
            Self::Sqlite(store) => StorePorts {
                catalog: Arc::new(SqliteCatalogRepository::new(store.clone())),
                reservations: Arc::new(SqliteReservationRepository::new(store.clone())),
                wallets: Arc::new(SqliteWalletRepository::new(store.clone())),
                payments: Arc::new(SqlitePaymentRepository::new(store.clone())),
                idempotency: Arc::new(SqliteIdempotencyStore::new(store.clone())),
                queue: Arc::new(SqliteQueueRepository::new(store.clone())),
                retention: Arc::new(SqliteRetentionRepository::new(store.clone())),
                rooms: Arc::new(SqliteRoomRepository::new(store.clone())),
                readiness: Arc::new(SqliteReadinessProbe::new(store.clone())),
                ticket_ends: None,
            },
        }
    }
}
