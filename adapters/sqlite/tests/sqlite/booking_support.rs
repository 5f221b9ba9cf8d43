//! Fixtures of the booking and money tests that stay with the embedded store (its counters):
//! a fresh in-memory store per test and port-level helpers that load, let the domain decide and
//! write (as the use cases do). The tests every store passes are the port contract's
//! (`concert_contract`, run in `contract.rs`).

use concert_application::ports::{
    ChargeWrite, HoldState, HoldWrite, IdempotencyRecord, ReservationRepository, Versioned,
    WalletRepository, Written,
};
use concert_domain::booking::{self, HoldTerms};
use concert_domain::{
    Amount, ConcertId, HoldLimit, IdempotencyKey, Reservation, SeatCount, SeatNo, SeatRef, UserId,
    WalletLimits,
};
use concert_sqlite::{SqliteReservationRepository, SqliteStore, SqliteWalletRepository, testing};
use time::macros::{date, datetime};
use time::{Date, Duration, OffsetDateTime};

/// The instant every test pretends it is.
pub const NOW: OffsetDateTime = datetime!(2030-06-01 12:00 UTC);
pub const DATE: Date = date!(2030 - 06 - 10);
pub const HOLD_TTL: Duration = Duration::minutes(5);
pub const PRICE: i64 = 120_000;

/// A fresh in-memory store.
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

    /// Runs a SQL statement (another write of a row, behind the ports' back).
    pub async fn execute(&self, sql: &str) {
        testing::execute(&self.store, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
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

/// The domain's decision on a loaded hold state; panics if it refuses.
fn grant(state: &HoldState, user: UserId, concert: ConcertId, now: OffsetDateTime) -> HoldWrite {
    let mut seat = state.seat.value.clone();
    let terms = HoldTerms {
        reservation: state.next_reservation,
        holder: user,
        concert_id: concert,
        date: DATE,
        limit: HoldLimit::DEFAULT,
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
    let reservations = ctx.reservations();
    let state = reservations
        .load_hold(user, seat_ref(concert, seat_no))
        .await
        .expect("load_hold")
        .expect("the seat exists");
    let write = grant(&state, user, concert, now);
    assert_eq!(
        reservations.save_hold(&write).await.expect("save_hold"),
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
