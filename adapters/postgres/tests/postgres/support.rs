//! What the PostgreSQL tests share: a fresh database per test (`Ctx`) and raw-row reads for
//! assertions. The port-level fixtures (concerts, holds, charges, tickets) are the contract's
//! (`concert_contract::fixtures`), run over `PgStore`.

use concert_domain::TicketNo;
use concert_postgres::testing::TestDatabase;
use concert_postgres::{
    PgCatalogRepository, PgIdempotencyStore, PgPaymentRepository, PgPool, PgQueueRepository,
    PgReadinessProbe, PgReservationRepository, PgWalletRepository,
};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use tokio::sync::{Semaphore, SemaphorePermit};

pub use concert_contract::fixtures::{NOW, user};

/// [`NOW`] as a SQL literal.
pub const NOW_SQL: &str = "'2030-06-01T12:00:00Z'";

/// PostgreSQL allows 100 connections; tests of this binary run two at a time and a contract's
/// race takes `RACERS` of them at once, so each test reserves its pool size from this budget first.
static CONNECTIONS: Semaphore = Semaphore::const_new(64);

/// A fresh database and a pool on it.
pub struct Ctx {
    pub db: TestDatabase,
    pub pool: PgPool,
    _budget: SemaphorePermit<'static>,
}

impl Ctx {
    pub async fn new() -> Self {
        Self::with_connections(4).await
    }

    pub async fn with_connections(connections: u32) -> Self {
        let budget = CONNECTIONS
            .acquire_many(connections)
            .await
            .expect("the budget semaphore is never closed");
        let db = TestDatabase::create().await.expect("a fresh test database");
        let pool = db.pool(connections as usize);
        Self {
            db,
            pool,
            _budget: budget,
        }
    }

    pub fn catalog(&self) -> PgCatalogRepository {
        PgCatalogRepository::new(self.pool.clone())
    }
    pub fn reservations(&self) -> PgReservationRepository {
        PgReservationRepository::new(self.pool.clone())
    }
    pub fn wallets(&self) -> PgWalletRepository {
        PgWalletRepository::new(self.pool.clone())
    }
    pub fn payments(&self) -> PgPaymentRepository {
        PgPaymentRepository::new(self.pool.clone())
    }
    pub fn idempotency(&self) -> PgIdempotencyStore {
        PgIdempotencyStore::new(self.pool.clone())
    }
    pub fn queue(&self) -> PgQueueRepository {
        PgQueueRepository::new(self.pool.clone())
    }
    pub fn readiness(&self) -> PgReadinessProbe {
        PgReadinessProbe::new(self.pool.clone())
    }

    /// One number from a SQL query returning a `count` column (for assertions on raw rows).
    pub async fn count(&self, sql: &str) -> i64 {
        count_on(&self.pool, sql).await
    }

    /// Every row of every table a booking or money write touches, as text: two equal dumps mean
    /// that nothing was written in between.
    pub async fn rows(&self) -> String {
        #[derive(QueryableByName)]
        struct Dump {
            #[diesel(sql_type = Text)]
            dump: String,
        }
        let tables = [
            "seats",
            "reservations",
            "user_holds",
            "wallets",
            "ledger_entries",
            "payments",
            "idempotency_keys",
            "queue_tickets",
        ];
        let sql = tables
            .iter()
            .map(|t| {
                format!(
                    "'{t}:' || (SELECT coalesce(string_agg(x::text, ';' ORDER BY x::text), '') \
                     FROM {t} x)"
                )
            })
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let mut conn = self.pool.get().await.expect("a pooled connection");
        diesel::sql_query(format!("SELECT {sql} AS dump"))
            .get_result::<Dump>(&mut conn)
            .await
            .expect("dump")
            .dump
    }

    /// Runs a SQL statement (fixture set-up).
    pub async fn execute(&self, sql: &str) {
        let mut conn = self.pool.get().await.expect("a pooled connection");
        diesel::sql_query(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn finish(self) {
        let Self { db, pool, _budget } = self;
        pool.close();
        drop(pool);
        db.drop_database().await.expect("test database dropped");
    }
}

/// The stored status of a ticket, by name.
pub async fn ticket_status(ctx: &Ctx, ticket: TicketNo) -> String {
    #[derive(QueryableByName)]
    struct Status {
        #[diesel(sql_type = Text)]
        status: String,
    }
    let mut conn = ctx.pool.get().await.expect("a pooled connection");
    diesel::sql_query(format!(
        "SELECT status FROM queue_tickets WHERE ticket = {}",
        ticket.get()
    ))
    .get_result::<Status>(&mut conn)
    .await
    .expect("ticket")
    .status
}

// ---- Races. ----

/// One number from a SQL query returning a `count` column, on any pool.
pub async fn count_on(pool: &PgPool, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }
    let mut conn = pool.get().await.expect("a pooled connection");
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .count
}
