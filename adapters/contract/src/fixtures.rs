//! What the contract functions share: a fixed instant, builders of valid domain values, and
//! port-level steps that load, let the domain decide and write, as the use cases do. Public so
//! that a store's own tests (what only that store does) build their fixtures the same way.

use std::future::Future;
use std::sync::Arc;

use concert_application::admin_access::AdminKey;
use concert_application::admit_next_in_line::AdmitNextInLine;
use concert_application::hold_seat::HoldSettings;
use concert_application::identify_caller::IdentityMode;
use concert_application::ports::{
    AdmissionReport, AdmissionTrigger, ChargeWrite, Clock, HoldState, HoldWrite, IdempotencyRecord,
    InvalidToken, JoinWrite, PaymentReceipt, PaymentWrite, ReleaseWrite, SecureRandom, TicketEnd,
    TokenClaims, TokenSigner, Versioned, Written,
};
use concert_application::room_lines::RoomLines;
use concert_application::services::{Ports, Services, Settings};
use concert_domain::booking::{self, HoldTerms, PaymentDenied};
use concert_domain::queue::{Join, join};
use concert_domain::{
    Amount, Balance, ConcertId, ConcertTitle, EndReason, HoldDenied, HoldLimit, IdempotencyKey,
    LineNo, NewConcert, NewConcertDate, Price, QueuePolicy, QueueTicket, Reservation,
    ReservationId, RetentionPolicy, SeatCount, SeatNo, SeatRef, TicketNo, TicketStatus, UserId,
    WalletLimits,
};
use time::macros::{date, datetime};
use time::{Date, Duration, OffsetDateTime};
use tokio::sync::Barrier;

use crate::Store;

/// The instant the contract pretends it is.
pub const NOW: OffsetDateTime = datetime!(2030-06-01 12:00 UTC);
pub const TODAY: Date = date!(2030 - 06 - 01);
pub const DATE: Date = date!(2030 - 06 - 10);
pub const LATER_DATE: Date = date!(2030 - 06 - 20);
pub const HOLD_TTL: Duration = Duration::minutes(5);
pub const PRICE: i64 = 120_000;
/// How many times a step loads and decides again after stale writes (as `until_written`).
const ATTEMPTS: usize = 64;

pub fn user() -> UserId {
    UserId::from_uuid(uuid::Uuid::new_v4())
}

pub fn seat_no(no: i64) -> SeatNo {
    SeatNo::parse(no, SeatCount::parse(1000).expect("a seat count")).expect("a seat")
}

pub fn seat_ref(concert: ConcertId, no: i64) -> SeatRef {
    seat_on(concert, DATE, no)
}

pub fn seat_on(concert: ConcertId, date: Date, no: i64) -> SeatRef {
    SeatRef {
        concert_id: concert,
        date,
        seat_no: seat_no(no),
    }
}

pub fn price(value: i64) -> Price {
    Price::parse(value, 10_000_000).expect("a price")
}

pub fn key(raw: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        key: IdempotencyKey::parse(raw).expect("a key"),
        request_hash: format!("hash-of-{raw}"),
    }
}

pub fn new_concert(dates: &[Date], seats: i64, price_each: i64) -> NewConcert {
    NewConcert::new(
        ConcertTitle::parse("Winter Gala").expect("a title"),
        dates
            .iter()
            .map(|date| NewConcertDate {
                date: *date,
                price: price(price_each),
                seats: SeatCount::parse(seats).expect("a seat count"),
            })
            .collect(),
        TODAY,
    )
    .expect("a valid concert")
}

/// A concert playing on [`DATE`] with `seats` seats at [`PRICE`].
pub async fn concert<S: Store>(store: &S, seats: i64) -> ConcertId {
    store
        .catalog()
        .create_concert(&new_concert(&[DATE], seats, PRICE))
        .await
        .expect("create_concert")
}

// ---- Holds. ----

/// The domain's decision on a loaded hold state (as `HoldSeat` makes it).
pub fn decide_hold(
    state: &HoldState,
    who: UserId,
    seat: SeatRef,
    limit: HoldLimit,
    now: OffsetDateTime,
) -> Result<HoldWrite, HoldDenied> {
    let mut decided = state.seat.value.clone();
    let terms = HoldTerms {
        reservation: state.next_reservation,
        holder: who,
        concert_id: seat.concert_id,
        date: seat.date,
        limit,
        ttl: HOLD_TTL,
    };
    let granted = booking::hold(&mut decided, &state.holds.value, terms, now)?;
    Ok(HoldWrite {
        seat: Versioned::new(decided, state.seat.version),
        holds_version: state.holds.version,
        granted,
        now,
    })
}

pub async fn load_hold<S: Store>(store: &S, who: UserId, seat: SeatRef) -> HoldState {
    store
        .reservations()
        .load_hold(who, seat)
        .await
        .expect("load_hold")
        .expect("the seat exists")
}

/// Load, decide, write, again while stale: the reservation, or the domain's refusal.
pub async fn try_hold<S: Store>(
    store: &S,
    who: UserId,
    seat: SeatRef,
    limit: HoldLimit,
    now: OffsetDateTime,
) -> Result<Reservation, HoldDenied> {
    for _ in 0..ATTEMPTS {
        let state = load_hold(store, who, seat).await;
        let write = decide_hold(&state, who, seat, limit, now)?;
        match store
            .reservations()
            .save_hold(&write)
            .await
            .expect("save_hold")
        {
            Written::Done(()) => return Ok(write.granted.reservation),
            Written::Stale => {}
        }
    }
    panic!("a hold stayed stale for {ATTEMPTS} attempts")
}

/// A hold the domain grants; panics otherwise.
pub async fn hold<S: Store>(
    store: &S,
    who: UserId,
    seat: SeatRef,
    now: OffsetDateTime,
) -> Reservation {
    try_hold(store, who, seat, HoldLimit::DEFAULT, now)
        .await
        .expect("the hold is granted")
}

/// The cancellation of `reservation` by its holder at `now`, as the domain decides it over a
/// fresh load (`seat` only when the seat still carries the hold's claim).
pub async fn decide_cancel<S: Store>(
    store: &S,
    reservation: ReservationId,
    now: OffsetDateTime,
) -> ReleaseWrite {
    let booking = store
        .reservations()
        .load_booking(reservation)
        .await
        .expect("load_booking")
        .expect("the reservation exists");
    let (mut booked, mut seat) = (booking.reservation.value, booking.seat.value);
    let holder = booked.user();
    let freed = booking::cancel(&mut booked, &mut seat, holder, now).expect("cancellable");
    ReleaseWrite {
        reservation: Versioned::new(booked, booking.reservation.version),
        seat: freed.then(|| Versioned::new(seat, booking.seat.version)),
        now,
    }
}

/// The sweeper's expiry of every hold lapsed at `now`, as the domain decides them.
pub async fn decide_expiries<S: Store>(store: &S, now: OffsetDateTime) -> Vec<ReleaseWrite> {
    store
        .reservations()
        .lapsed(now, 100)
        .await
        .expect("lapsed")
        .into_iter()
        .map(|found| {
            let (mut reservation, mut seat) = (found.reservation.value, found.seat.value);
            let freed = booking::expire(&mut reservation, &mut seat, now).expect("lapsed");
            ReleaseWrite {
                reservation: Versioned::new(reservation, found.reservation.version),
                seat: freed.then(|| Versioned::new(seat, found.seat.version)),
                now,
            }
        })
        .collect()
}

// ---- Money. ----

/// Loads the wallet and lets the domain charge `value` at `now`.
pub async fn decide_charge<S: Store>(
    store: &S,
    who: UserId,
    value: i64,
    now: OffsetDateTime,
    idempotency: Option<IdempotencyRecord>,
) -> ChargeWrite {
    let loaded = store.wallets().load(who).await.expect("load");
    let mut wallet = loaded.value;
    let limits = WalletLimits::default();
    let amount = Amount::parse(value, limits.max_charge).expect("an amount");
    let change = wallet.charge(amount, limits, now).expect("the charge fits");
    ChargeWrite {
        wallet: Versioned::new(wallet, loaded.version),
        change,
        idempotency,
    }
}

/// A charge written (loaded and decided again while stale); the balance after it.
pub async fn charge<S: Store>(
    store: &S,
    who: UserId,
    value: i64,
    now: OffsetDateTime,
    idempotency: Option<IdempotencyRecord>,
) -> Balance {
    for _ in 0..ATTEMPTS {
        let write = decide_charge(store, who, value, now, idempotency.clone()).await;
        match store
            .wallets()
            .save_charge(&write)
            .await
            .expect("save_charge")
        {
            Written::Done(()) => return write.change.balance_after,
            Written::Stale => {}
        }
    }
    panic!("a charge stayed stale for {ATTEMPTS} attempts")
}

/// Loads a payment's state and lets the domain decide it (as `PayReservation` does).
pub async fn decide_payment<S: Store>(
    store: &S,
    reservation: ReservationId,
    payer: UserId,
    ticket: TicketEnd,
    now: OffsetDateTime,
    idempotency: Option<IdempotencyRecord>,
) -> Result<PaymentWrite, PaymentDenied> {
    let state = store
        .payments()
        .load(reservation, payer)
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
        idempotency,
    })
}

/// Load, decide, write, again while stale: the receipt, or the domain's refusal.
pub async fn try_pay<S: Store>(
    store: &S,
    reservation: ReservationId,
    payer: UserId,
    ticket: TicketEnd,
    now: OffsetDateTime,
) -> Result<PaymentReceipt, PaymentDenied> {
    for _ in 0..ATTEMPTS {
        let write = decide_payment(store, reservation, payer, ticket, now, None).await?;
        match store.payments().save(&write).await.expect("save") {
            Written::Done(receipt) => return Ok(receipt),
            Written::Stale => {}
        }
    }
    panic!("a payment stayed stale for {ATTEMPTS} attempts")
}

/// A payment decided and written once over what is stored now; panics unless it is written.
pub async fn pay<S: Store>(
    store: &S,
    reservation: ReservationId,
    payer: UserId,
    ticket: TicketEnd,
    now: OffsetDateTime,
) -> PaymentReceipt {
    let write = decide_payment(store, reservation, payer, ticket, now, None)
        .await
        .expect("payable");
    match store.payments().save(&write).await.expect("save") {
        Written::Done(receipt) => receipt,
        Written::Stale => panic!("nothing moved since the load"),
    }
}

/// How a payment ends the payer's active ticket.
pub fn paid(ticket: TicketNo) -> TicketEnd {
    TicketEnd {
        ticket,
        read_as: TicketStatus::Active,
        reason: EndReason::Paid,
    }
}

// ---- The line. ----

/// A join as `IssueQueueToken` makes it: load the live ticket, let the domain decide (keep it or
/// draw), draw over the version read, again while stale. The ticket, and whether it is new.
pub async fn join_line<S: Store>(
    store: &S,
    who: UserId,
    line: LineNo,
    now: OffsetDateTime,
) -> (QueueTicket, bool) {
    let queue = store.queue();
    for _ in 0..ATTEMPTS {
        let live = queue.load_live(who, line).await.expect("load_live");
        match join(live.ticket.as_ref(), now, &QueuePolicy::default()) {
            Join::Keep(ticket) => return (ticket, false),
            Join::Draw { ends } => {
                assert_eq!(
                    ends, None,
                    "the contract's joins never meet an overdue ticket"
                );
                let write = JoinWrite {
                    user: who,
                    line,
                    version: live.version,
                    now,
                };
                if let Written::Done(ticket) = queue.save_join(&write).await.expect("save_join") {
                    return (ticket, true);
                }
            }
        }
    }
    panic!("a join stayed stale for {ATTEMPTS} attempts")
}

/// A new ticket in the `default` line.
pub async fn ticket<S: Store>(store: &S, who: UserId, now: OffsetDateTime) -> QueueTicket {
    let (ticket, created) = join_line(store, who, LineNo::DEFAULT, now).await;
    assert!(created, "a new ticket");
    ticket
}

/// A clock that always reads the same instant.
pub struct FixedClock(pub OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// Openings are not under this contract: their order never matters here.
struct FirstDrawn;

impl SecureRandom for FirstDrawn {
    fn below(&self, _n: u64) -> u64 {
        0
    }
}

/// A queue policy admitting at most `max_active` at once, otherwise the deployment's default.
pub fn policy(max_active: u32) -> QueuePolicy {
    QueuePolicy {
        max_active,
        ..QueuePolicy::default()
    }
}

/// One admission step of the `default` line at `now`, run by the application's own use case
/// (`AdmitNextInLine`, with the domain's rules): its report, or `None` when it found a ticket
/// changed and wrote nothing.
pub async fn admit<S: Store>(
    store: &S,
    policy: QueuePolicy,
    now: OffsetDateTime,
) -> Option<AdmissionReport> {
    let queue = store.queue();
    let step = AdmitNextInLine::new(
        Arc::clone(&queue),
        store.rooms(),
        RoomLines::new(queue, policy),
        Arc::new(FixedClock(now)),
        policy,
        Arc::new(FirstDrawn),
    );
    step.run_once()
        .await
        .expect("admission step")
        .default_room()
}

/// An active ticket for `who`: joined and admitted at `now`.
pub async fn active_ticket<S: Store>(store: &S, who: UserId, now: OffsetDateTime) -> TicketNo {
    let drawn = ticket(store, who, now).await.ticket();
    admit(store, QueuePolicy::default(), now)
        .await
        .expect("nothing changed under the step");
    let stored = store.queue().find(drawn).await.expect("find");
    assert_eq!(
        stored.map(|t| t.stored_status()),
        Some(TicketStatus::Active)
    );
    drawn
}

// ---- The application's use cases over a store. ----

pub fn fixed(now: OffsetDateTime) -> Arc<dyn Clock> {
    Arc::new(FixedClock(now))
}

/// The machine's clock, off by a fixed amount (as another instance's clock may be).
pub struct SkewedClock(pub Duration);

impl Clock for SkewedClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.0
    }
}

/// Tokens are not under this contract: the use cases here take verified claims.
struct NoTokens;

impl TokenSigner for NoTokens {
    fn sign(&self, _claims: &TokenClaims) -> String {
        String::new()
    }
    fn verify(&self, _token: &str) -> Result<TokenClaims, InvalidToken> {
        Err(InvalidToken)
    }
}

/// The contract runs its admission steps itself.
struct NoAdmission;

#[async_trait::async_trait]
impl AdmissionTrigger for NoAdmission {
    fn request_admission(&self) {}

    async fn admit_soon(&self, _within: std::time::Duration) {}
}

/// The claims of `user`'s verified token for `ticket`.
pub fn claims(user: UserId, ticket: TicketNo) -> TokenClaims {
    TokenClaims {
        user,
        ticket,
        issued_at: NOW,
    }
}

/// One instance of every use case over `store`, as `bootstrap` wires them (holds of
/// [`HOLD_TTL`] up to `limit`); its view of the default line refreshed at [`NOW`].
pub async fn instance<S: Store>(
    store: &S,
    clock: Arc<dyn Clock>,
    limit: HoldLimit,
) -> Arc<Services> {
    let services = Services::new(
        Ports {
            clock,
            signer: Arc::new(NoTokens),
            catalog: store.catalog(),
            reservations: store.reservations(),
            wallets: store.wallets(),
            payments: store.payments(),
            idempotency: store.idempotency(),
            queue: store.queue(),
            admission: Arc::new(NoAdmission),
            retention: store.retention(),
            rooms: store.rooms(),
            random: Arc::new(FirstDrawn),
            ticket_ends: None,
        },
        Settings {
            queue: QueuePolicy::default(),
            holds: HoldSettings {
                ttl: HOLD_TTL,
                limit,
            },
            wallet: WalletLimits::default(),
            admin_key: AdminKey::default(),
            identity: IdentityMode::Trusted,
            retention: RetentionPolicy::default(),
            most_status_watches: 0,
        },
    );
    services
        .lines
        .default_line()
        .refresh(NOW)
        .await
        .expect("refresh");
    Arc::new(services)
}

/// Two instances of the use cases over the same store (each with its own view of the lines),
/// on a clock fixed at [`NOW`].
pub async fn two_instances<S: Store>(store: &S, limit: HoldLimit) -> [Arc<Services>; 2] {
    [
        instance(store, fixed(NOW), limit).await,
        instance(store, fixed(NOW), limit).await,
    ]
}

// ---- Races. ----

/// Runs `n` tasks released together by a barrier; their results in task order.
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
        results.push(handle.await.expect("a racing task panicked"));
    }
    results
}

/// A fresh store shared by racing tasks.
pub async fn shared<S: Store>() -> Arc<S> {
    Arc::new(S::fresh().await)
}

/// Ends a shared store once every task let go of it.
pub async fn finish<S: Store>(store: Arc<S>) {
    Arc::into_inner(store)
        .expect("every racing task let go of the store")
        .finish()
        .await;
}
