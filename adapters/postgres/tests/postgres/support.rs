//! Fixtures shared by the tests.

use std::future::Future;
use std::sync::Arc;

use concert_application::ports::{
    CatalogRepository, ChargeOutcome, ChargeRequest, HoldOutcome, HoldRequest, IdempotencyRecord,
    ReservationRepository, WalletRepository,
};
use concert_domain::{
    Amount, ConcertId, ConcertTitle, HoldLimit, IdempotencyKey, NewConcert, NewConcertDate, Price,
    Reservation, SeatCount, SeatNo, UserId,
};
use concert_postgres::testing::TestDatabase;
use concert_postgres::{
    PgCatalogRepository, PgIdempotencyStore, PgPaymentRepository, PgPool, PgQueueRepository,
    PgReadinessProbe, PgReservationRepository, PgWalletRepository,
};
use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use time::macros::{date, datetime};
use time::{Date, Duration, OffsetDateTime};
use tokio::sync::{Barrier, Semaphore, SemaphorePermit};

/// The instant every test pretends it is.
pub const NOW: OffsetDateTime = datetime!(2030-06-01 12:00 UTC);
pub const TODAY: Date = date!(2030 - 06 - 01);
pub const DATE: Date = date!(2030 - 06 - 10);
pub const HOLD_TTL: Duration = Duration::minutes(5);
pub const MAX_BALANCE: i64 = 1_000_000_000;

/// PostgreSQL allows 100 connections; tests of this binary run two at a time and a race takes
/// 50, so each test reserves its pool size from this budget first.
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

    /// Opens `n` connections at once so that a race starts with every task's connection ready.
    pub async fn warm_up(&self, n: usize) {
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            held.push(self.pool.get().await.expect("a pooled connection"));
        }
    }

    /// One number from a SQL query returning a `count` column (for assertions on raw rows).
    pub async fn count(&self, sql: &str) -> i64 {
        count_on(&self.pool, sql).await
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

pub fn user() -> UserId {
    UserId::from_uuid(uuid::Uuid::new_v4())
}

pub fn seat(no: i64) -> SeatNo {
    SeatNo::parse(no, SeatCount::parse(1000).expect("count")).expect("seat")
}

pub fn amount(value: i64) -> Amount {
    Amount::parse(value, 10_000_000).expect("amount")
}

pub fn key(raw: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        key: IdempotencyKey::parse(raw).expect("key"),
        request_hash: format!("hash-of-{raw}"),
    }
}

/// A concert with the given dates, each with `seats` seats at `price`.
pub async fn concert_with(ctx: &Ctx, dates: &[Date], seats: i64, price: i64) -> ConcertId {
    let new = NewConcert::new(
        ConcertTitle::parse("Winter Gala").expect("title"),
        dates
            .iter()
            .map(|date| NewConcertDate {
                date: *date,
                price: Price::parse(price, 10_000_000).expect("price"),
                seats: SeatCount::parse(seats).expect("seat count"),
            })
            .collect(),
        TODAY,
    )
    .expect("a valid concert");
    ctx.catalog()
        .create_concert(&new)
        .await
        .expect("concert created")
}

/// One date (`DATE`) with `seats` seats at 120,000.
pub async fn concert(ctx: &Ctx, seats: i64) -> ConcertId {
    concert_with(ctx, &[DATE], seats, 120_000).await
}

pub fn hold_request(
    user: UserId,
    concert: ConcertId,
    seat_no: i64,
    now: OffsetDateTime,
) -> HoldRequest {
    HoldRequest {
        user,
        concert,
        date: DATE,
        seat_no: seat(seat_no),
        price: Price::from_stored(120_000),
        now,
        until: now + HOLD_TTL,
        limit: HoldLimit::DEFAULT,
    }
}

pub async fn hold(
    ctx: &Ctx,
    user: UserId,
    concert: ConcertId,
    seat_no: i64,
    now: OffsetDateTime,
) -> Reservation {
    match ctx
        .reservations()
        .hold(&hold_request(user, concert, seat_no, now))
        .await
        .expect("hold")
    {
        HoldOutcome::Held(reservation) => reservation,
        other => panic!("expected a hold, got {other:?}"),
    }
}

pub async fn charge(ctx: &Ctx, user: UserId, value: i64) {
    let outcome = ctx
        .wallets()
        .charge(&ChargeRequest {
            user,
            amount: amount(value),
            max_balance: MAX_BALANCE,
            now: NOW,
            idempotency: None,
        })
        .await
        .expect("charge");
    assert!(matches!(outcome, ChargeOutcome::Charged(_)), "{outcome:?}");
}

/// Runs `n` tasks that all start at once (a barrier releases them together) and returns their
/// results in task order.
pub async fn race<T, F, Fut>(n: usize, task: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let work = task(i);
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for handle in handles {
        results.push(handle.await.expect("a race task panicked"));
    }
    results
}

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
