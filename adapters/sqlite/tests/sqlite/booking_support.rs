//! Fixtures of the booking and money tests (a port of the PostgreSQL tests' `support.rs`): a
//! fresh in-memory store per test, port-level helpers that load, let the domain decide and write
//! (as the use cases do), raw-row assertions through `concert_sqlite::testing`, the use cases
//! that need only these ports, and the race harness.

use std::future::Future;
use std::sync::Arc;

use concert_application::authorize_request::ActiveUser;
use concert_application::cancel_reservation::CancelReservation;
use concert_application::charge_points::ChargePoints;
use concert_application::ports::{
    ChargeWrite, Clock, HoldState, HoldWrite, IdempotencyRecord, IdempotencyStore,
    IdempotentAnswer, PaymentReceipt, PaymentRepository, PaymentWrite, ReservationRepository,
    TicketEnd, Versioned, WalletRepository, Written,
};
use concert_application::sweep_lapsed_holds::SweepLapsedHolds;
use concert_domain::booking::{self, HoldTerms, PaymentDenied};
use concert_domain::{
    Amount, ConcertId, EndReason, HoldDenied, HoldLimit, IdempotencyKey, IdempotencyScope,
    Reservation, ReservationId, SeatCount, SeatNo, SeatRef, TicketNo, TicketStatus, UserId,
    WalletLimits,
};
use concert_sqlite::{
    SqliteIdempotencyStore, SqlitePaymentRepository, SqliteReservationRepository, SqliteStore,
    SqliteWalletRepository, testing,
};
use time::macros::{date, datetime};
use time::{Date, Duration, OffsetDateTime};
use tokio::sync::Barrier;

/// The instant every test pretends it is (unless it runs on a real clock).
pub const NOW: OffsetDateTime = datetime!(2030-06-01 12:00 UTC);
pub const DATE: Date = date!(2030 - 06 - 10);
pub const HOLD_TTL: Duration = Duration::minutes(5);
pub const PRICE: i64 = 120_000;
/// How many times a use case loads and decides again after a stale write (the application's).
const MAX_ATTEMPTS: u32 = 64;

/// A fresh in-memory store (cheap to clone: a race's tasks each take one).
#[derive(Clone)]
pub struct Ctx {
    pub store: SqliteStore,
}

impl Ctx {
    pub fn new() -> Self {
        Self {
            store: SqliteStore::in_memory().expect("an in-memory store"),
        }
    }

    pub fn reservations(&self) -> SqliteReservationRepository {
        SqliteReservationRepository::new(self.store.clone())
    }
    pub fn wallets(&self) -> SqliteWalletRepository {
        SqliteWalletRepository::new(self.store.clone())
    }
    pub fn payments(&self) -> SqlitePaymentRepository {
        SqlitePaymentRepository::new(self.store.clone())
    }
    pub fn idempotency(&self) -> SqliteIdempotencyStore {
        SqliteIdempotencyStore::new(self.store.clone())
    }

    /// One number from a SQL query returning a `count` column (for assertions on raw rows).
    pub async fn count(&self, sql: &str) -> i64 {
        testing::count(&self.store, sql).await
    }

    /// Runs a SQL statement (another write of a row, behind the ports' back).
    pub async fn execute(&self, sql: &str) {
        testing::execute(&self.store, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// Every row of every table a booking or money write touches, as text.
    pub async fn rows(&self) -> String {
        testing::rows(&self.store).await.expect("rows")
    }

    pub async fn rows_except(&self, left_out: &[&str]) -> String {
        testing::rows_except(&self.store, left_out)
            .await
            .expect("rows")
    }

    /// The real `ChargePoints` use case over this store.
    pub fn charge_points(&self, clock: Arc<dyn Clock>) -> ChargePoints {
        ChargePoints::new(
            Arc::new(self.wallets()),
            Arc::new(self.idempotency()),
            clock,
            WalletLimits::default(),
        )
    }

    /// The real `CancelReservation` use case over this store.
    pub fn cancel_reservation(&self, clock: Arc<dyn Clock>) -> CancelReservation {
        CancelReservation::new(Arc::new(self.reservations()), clock)
    }

    /// The real sweeper over this store.
    pub fn sweeper(&self, clock: Arc<dyn Clock>) -> SweepLapsedHolds {
        SweepLapsedHolds::new(Arc::new(self.reservations()), clock)
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

pub fn key(raw: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        key: IdempotencyKey::parse(raw).expect("key"),
        request_hash: format!("hash-of-{raw}"),
    }
}

/// One date ([`DATE`]) with `seats` seats at [`PRICE`].
pub async fn concert(ctx: &Ctx, seats: i64) -> ConcertId {
    testing::insert_concert(&ctx.store, "Winter Gala", &[(DATE, PRICE, seats)])
        .await
        .expect("concert inserted")
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
    try_grant(state, user, concert, now, limit).expect("hold granted")
}

fn try_grant(
    state: &HoldState,
    user: UserId,
    concert: ConcertId,
    now: OffsetDateTime,
    limit: HoldLimit,
) -> Result<HoldWrite, HoldDenied> {
    let mut seat = state.seat.value.clone();
    let terms = HoldTerms {
        reservation: state.next_reservation,
        holder: user,
        concert_id: concert,
        date: DATE,
        limit,
        ttl: HOLD_TTL,
    };
    let granted = booking::hold(&mut seat, &state.holds.value, terms, now)?;
    Ok(HoldWrite {
        seat: Versioned::new(seat, state.seat.version),
        holds_version: state.holds.version,
        granted,
        now,
    })
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

/// `HoldSeat`'s loop over the port: load, let the domain decide, write; again after a stale
/// write. The domain's refusal is the answer.
pub async fn hold_seat(
    reservations: &SqliteReservationRepository,
    user: UserId,
    concert: ConcertId,
    seat_no: i64,
    limit: HoldLimit,
    now: OffsetDateTime,
) -> Result<Reservation, HoldDenied> {
    for _ in 0..MAX_ATTEMPTS {
        let state = reservations
            .load_hold(user, seat_ref(concert, seat_no))
            .await
            .expect("load_hold")
            .expect("the seat exists");
        let write = try_grant(&state, user, concert, now, limit)?;
        if reservations.save_hold(&write).await.expect("save_hold") == Written::Done(()) {
            return Ok(write.granted.reservation);
        }
    }
    panic!("still stale after {MAX_ATTEMPTS} attempts");
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
    try_decide_payment(&ctx.payments(), reservation, payer, ticket, now)
        .await
        .expect("payment allowed")
}

async fn try_decide_payment(
    payments: &SqlitePaymentRepository,
    reservation: ReservationId,
    payer: UserId,
    ticket: TicketEnd,
    now: OffsetDateTime,
) -> Result<PaymentWrite, PaymentDenied> {
    let state = PaymentRepository::load(payments, reservation, payer)
        .await
        .expect("load")
        .expect("the reservation exists");
    let mut booked = state.booking.reservation.value.clone();
    let mut seat = state.booking.seat.value.clone();
    let mut wallet = state.wallet.value;
    let change = booking::pay(&mut booked, &mut seat, &mut wallet, payer, now)?;
    Ok(PaymentWrite {
        reservation: Versioned::new(booked, state.booking.reservation.version),
        seat: Versioned::new(seat, state.booking.seat.version),
        wallet: Versioned::new(wallet, state.wallet.version),
        change,
        ticket,
        idempotency: None,
    })
}

/// A payment written through the port; panics unless it is written.
pub async fn pay(
    ctx: &Ctx,
    reservation: ReservationId,
    payer: UserId,
    ticket: TicketEnd,
    now: OffsetDateTime,
) -> PaymentReceipt {
    let write = decide_payment(ctx, reservation, payer, ticket, now).await;
    match ctx.payments().save(&write).await.expect("save") {
        Written::Done(receipt) => receipt,
        Written::Stale => panic!("expected the payment to be written"),
    }
}

/// Why a payment of [`pay_reservation`] did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayRefusal {
    /// The caller's ticket is no longer active (the winner's payment ended it).
    TicketEnded,
    Denied(PaymentDenied),
    KeyReused,
}

/// `PayReservation`'s protocol over the ports, without the queue token: the stored answer of
/// the key first; then check the caller's ticket is still active (the authorisation, read from
/// the stored ticket), load, let the domain decide, write; after a stale write or a refusal,
/// the stored answer of the key again (a twin may have committed), else decide again.
pub async fn pay_reservation(
    ctx: &Ctx,
    payer: UserId,
    ticket: TicketNo,
    reservation: ReservationId,
    idempotency: Option<IdempotencyRecord>,
    now: OffsetDateTime,
) -> Result<PaymentReceipt, PayRefusal> {
    let (payments, store) = (ctx.payments(), ctx.idempotency());
    let replay = || async {
        let Some(record) = &idempotency else {
            return Ok(None);
        };
        match store
            .find(payer, IdempotencyScope::Payment, &record.key)
            .await
            .expect("find")
        {
            None => Ok(None),
            Some(stored) if stored.request_hash == record.request_hash => match stored.answer {
                IdempotentAnswer::Payment(receipt) => Ok(Some(receipt)),
                IdempotentAnswer::Charge { .. } => Err(PayRefusal::KeyReused),
            },
            Some(_) => Err(PayRefusal::KeyReused),
        }
    };
    if let Some(receipt) = replay().await? {
        return Ok(receipt);
    }
    for _ in 0..MAX_ATTEMPTS {
        let refused = if testing::ticket_status(&ctx.store, ticket)
            .await
            .expect("ticket")
            != TicketStatus::Active.as_str()
        {
            PayRefusal::TicketEnded
        } else {
            match try_decide_payment(&payments, reservation, payer, active(ticket), now).await {
                Ok(mut write) => {
                    write.idempotency = idempotency.clone();
                    match payments.save(&write).await.expect("save") {
                        Written::Done(receipt) => return Ok(receipt),
                        Written::Stale => match replay().await? {
                            Some(receipt) => return Ok(receipt),
                            None => continue,
                        },
                    }
                }
                Err(denied) => PayRefusal::Denied(denied),
            }
        };
        return match replay().await? {
            Some(receipt) => Ok(receipt),
            None => Err(refused),
        };
    }
    panic!("still stale after {MAX_ATTEMPTS} attempts");
}

/// The end of an active ticket, as a payment decided on it.
pub fn active(ticket: TicketNo) -> TicketEnd {
    TicketEnd {
        ticket,
        read_as: TicketStatus::Active,
        reason: EndReason::Paid,
    }
}

/// An admitted (ACTIVE) ticket for `user` at [`NOW`], as raw rows.
pub async fn active_ticket(ctx: &Ctx, user: UserId) -> TicketNo {
    testing::active_ticket(&ctx.store, user, NOW)
        .await
        .expect("active ticket")
}

/// A WAITING ticket for `user` (whose earlier tickets have ended), as raw rows.
pub async fn waiting_ticket(ctx: &Ctx, user: UserId) -> TicketNo {
    testing::waiting_ticket(&ctx.store, user, NOW)
        .await
        .expect("waiting ticket")
}

/// The stored status of a ticket, by name.
pub async fn ticket_status(ctx: &Ctx, ticket: TicketNo) -> String {
    testing::ticket_status(&ctx.store, ticket)
        .await
        .expect("ticket")
}

/// The caller of a use case that takes an active user.
pub fn caller(user: UserId, ticket: TicketNo) -> ActiveUser {
    ActiveUser { user, ticket }
}

// ---- Clocks. ----

/// A clock that always reads the same instant.
pub struct FixedClock(pub OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// The machine's clock, off by a fixed amount (as another instance's clock may be).
pub struct SkewedClock(pub Duration);

impl Clock for SkewedClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.0
    }
}

pub fn fixed(now: OffsetDateTime) -> Arc<dyn Clock> {
    Arc::new(FixedClock(now))
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
