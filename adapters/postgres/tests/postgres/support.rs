//! Fixtures shared by the tests: a fresh database per test, port-level helpers that load, let
//! the domain decide and write (as the use cases do), raw-row assertions, and the application's
//! real use cases wired over the PostgreSQL adapters (`services`).

use std::future::Future;
use std::sync::Arc;

use concert_application::ports::{
    CatalogRepository, ChargeWrite, HoldState, HoldWrite, IdempotencyRecord, PaymentRepository,
    PaymentWrite, ReservationRepository, TicketEnd, Versioned, WalletRepository, Written,
};
use concert_domain::booking::{self, HoldTerms};
use concert_domain::{
    Amount, ConcertId, ConcertTitle, EndReason, HoldLimit, NewConcert, NewConcertDate, Price,
    Reservation, ReservationId, SeatCount, SeatNo, SeatRef, TicketNo, TicketStatus, UserId,
    WalletLimits,
};
use concert_postgres::testing::TestDatabase;
use concert_postgres::{
    PgCatalogRepository, PgIdempotencyStore, PgPaymentRepository, PgPool, PgQueueRepository,
    PgReadinessProbe, PgReservationRepository, PgWalletRepository,
};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use time::macros::{date, datetime};
use time::{Date, Duration, OffsetDateTime};
use tokio::sync::{Barrier, Semaphore, SemaphorePermit};

/// The instant every test pretends it is (unless it runs on a real clock).
pub const NOW: OffsetDateTime = datetime!(2030-06-01 12:00 UTC);
/// [`NOW`] as a SQL literal.
pub const NOW_SQL: &str = "'2030-06-01T12:00:00Z'";
pub const TODAY: Date = date!(2030 - 06 - 01);
pub const DATE: Date = date!(2030 - 06 - 10);
pub const HOLD_TTL: Duration = Duration::minutes(5);
pub const PRICE: i64 = 120_000;

/// PostgreSQL allows 100 connections; tests of this binary run two at a time and a race takes
/// 50, so each test reserves its pool sizes from this budget first.
static CONNECTIONS: Semaphore = Semaphore::const_new(64);

/// A fresh database and one or two pools on it (two pools stand for two instances).
pub struct Ctx {
    pub db: TestDatabase,
    pub pool: PgPool,
    /// A second pool, as a second instance of the service would have.
    pub second: Option<PgPool>,
    _budget: SemaphorePermit<'static>,
}

impl Ctx {
    pub async fn new() -> Self {
        Self::with_connections(4).await
    }

    pub async fn with_connections(connections: u32) -> Self {
        Self::build(connections, None).await
    }

    async fn build(first: u32, second: Option<u32>) -> Self {
        let budget = CONNECTIONS
            .acquire_many(first + second.unwrap_or(0))
            .await
            .expect("the budget semaphore is never closed");
        let db = TestDatabase::create().await.expect("a fresh test database");
        let pool = db.pool(first as usize);
        let second = second.map(|n| db.pool(n as usize));
        Self {
            db,
            pool,
            second,
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
        self.rows_except(&[]).await
    }

    /// [`Self::rows`] without the tables named.
    pub async fn rows_except(&self, left_out: &[&str]) -> String {
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
            .filter(|t| !left_out.contains(t))
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
        let Self {
            db,
            pool,
            second,
            _budget,
        } = self;
        pool.close();
        drop(pool);
        if let Some(second) = second {
            second.close();
        }
        db.drop_database().await.expect("test database dropped");
    }
}

pub fn user() -> UserId {
    UserId::from_uuid(uuid::Uuid::new_v4())
}

pub fn seat(no: i64) -> SeatNo {
    SeatNo::parse(no, SeatCount::parse(1000).expect("count")).expect("seat")
}

pub fn seat_ref(concert: ConcertId, no: i64) -> SeatRef {
    SeatRef {
        concert_id: concert,
        date: DATE,
        seat_no: seat(no),
    }
}

pub fn amount(value: i64) -> Amount {
    Amount::parse(value, WalletLimits::default().max_charge).expect("amount")
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

/// One date (`DATE`) with `seats` seats at [`PRICE`].
pub async fn concert(ctx: &Ctx, seats: i64) -> ConcertId {
    concert_with(ctx, &[DATE], seats, PRICE).await
}

// ---- Port-level helpers: load, let the domain decide, write (what the use cases do). ----

/// Loads a hold's state and lets the domain grant it; panics if the domain refuses.
pub async fn decide_hold(
    ctx: &Ctx,
    user: UserId,
    concert: ConcertId,
    seat_no: i64,
    now: OffsetDateTime,
) -> (HoldState, HoldWrite) {
    let state = ctx
        .reservations()
        .load_hold(user, seat_ref(concert, seat_no))
        .await
        .expect("load_hold")
        .expect("the seat exists");
    let write = grant(&state, user, concert, now, HoldLimit::DEFAULT);
    (state, write)
}

/// The domain's decision on a loaded hold state; panics if it refuses.
pub fn grant(
    state: &HoldState,
    user: UserId,
    concert: ConcertId,
    now: OffsetDateTime,
    limit: HoldLimit,
) -> HoldWrite {
    let mut seat = state.seat.value.clone();
    let terms = HoldTerms {
        reservation: state.next_reservation,
        holder: user,
        concert_id: concert,
        date: DATE,
        limit,
        ttl: HOLD_TTL,
    };
    let granted = booking::hold(&mut seat, &state.holds.value, terms, now).expect("hold granted");
    HoldWrite {
        seat: Versioned::new(seat, state.seat.version),
        holds_version: state.holds.version,
        granted,
        now,
    }
}

/// A hold written through the port; panics unless it is written.
pub async fn hold(
    ctx: &Ctx,
    user: UserId,
    concert: ConcertId,
    seat_no: i64,
    now: OffsetDateTime,
) -> Reservation {
    let (_, write) = decide_hold(ctx, user, concert, seat_no, now).await;
    assert_eq!(
        ctx.reservations()
            .save_hold(&write)
            .await
            .expect("save_hold"),
        Written::Done(())
    );
    write.granted.reservation
}

/// Loads the wallet and lets the domain charge it at `now`.
pub async fn decide_charge(
    ctx: &Ctx,
    user: UserId,
    value: i64,
    now: OffsetDateTime,
    idempotency: Option<IdempotencyRecord>,
) -> ChargeWrite {
    let loaded = WalletRepository::load(&ctx.wallets(), user)
        .await
        .expect("load");
    let mut wallet = loaded.value;
    let change = wallet
        .charge(amount(value), WalletLimits::default(), now)
        .expect("charge allowed");
    ChargeWrite {
        wallet: Versioned::new(wallet, loaded.version),
        change,
        idempotency,
    }
}

/// A charge written through the port at [`NOW`]; panics unless it is written.
pub async fn charge(ctx: &Ctx, user: UserId, value: i64) {
    let write = decide_charge(ctx, user, value, NOW, None).await;
    assert_eq!(
        ctx.wallets()
            .save_charge(&write)
            .await
            .expect("save_charge"),
        Written::Done(())
    );
}

/// Loads a payment's state and lets the domain decide it; panics if the domain refuses.
pub async fn decide_payment(
    ctx: &Ctx,
    reservation: ReservationId,
    payer: UserId,
    ticket: TicketEnd,
    now: OffsetDateTime,
) -> PaymentWrite {
    let state = PaymentRepository::load(&ctx.payments(), reservation, payer)
        .await
        .expect("load")
        .expect("the reservation exists");
    let mut booked = state.booking.reservation.value.clone();
    let mut seat = state.booking.seat.value.clone();
    let mut wallet = state.wallet.value;
    let change =
        booking::pay(&mut booked, &mut seat, &mut wallet, payer, now).expect("payment allowed");
    PaymentWrite {
        reservation: Versioned::new(booked, state.booking.reservation.version),
        seat: Versioned::new(seat, state.booking.seat.version),
        wallet: Versioned::new(wallet, state.wallet.version),
        change,
        ticket,
        idempotency: None,
    }
}

/// The end of an active ticket, as a payment decided on it.
pub fn active(ticket: TicketNo) -> TicketEnd {
    TicketEnd {
        ticket,
        read_as: TicketStatus::Active,
        reason: EndReason::Paid,
    }
}

/// An admitted (ACTIVE) ticket for `user` at [`NOW`], with the serving counter moved past it.
/// Written as raw rows: the queue's own port is not under test here.
pub async fn active_ticket(ctx: &Ctx, user: UserId) -> TicketNo {
    let ticket = ctx
        .count(&format!(
            "WITH t AS ( \
                 INSERT INTO queue_tickets (user_id, status, issued_at, admitted_at, \
                                            active_until, last_seen) \
                 VALUES ('{user}', 'ACTIVE', {NOW_SQL}, {NOW_SQL}, {NOW_SQL}::timestamptz + interval '10 minutes', \
                         {NOW_SQL}) \
                 RETURNING ticket \
             ), s AS ( \
                 UPDATE queue_state SET serving = greatest(serving, t.ticket), \
                                        issued_total = issued_total + 1, \
                                        admitted_total = admitted_total + 1, \
                                        issued_hwm = greatest(issued_hwm, t.ticket) \
                 FROM t WHERE line = 0 \
             ) \
             SELECT ticket AS count FROM t"
        ))
        .await;
    TicketNo::new(ticket).expect("ticket")
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
