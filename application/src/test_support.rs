//! Fixtures shared by the use cases' unit tests: one user and another, one fixed instant, and the
//! aggregates a test starts from. Every mock clock answers [`NOW`], so tests are deterministic.

use std::sync::Arc;

use concert_domain::queue::ServingCounter;
use concert_domain::{
    ConcertDate, ConcertId, Price, QueuePolicy, QueueTicket, Reservation, ReservationId,
    ReservationStatus, Room, RoomId, RoomState, Seat, SeatClaim, SeatCount, SeatNo, SeatRef,
    TicketNo, TicketStatus, UserId,
};
use time::macros::{date, datetime};
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use crate::authorize_request::ActiveUser;
use mockall::predicate::eq;

use crate::ports::{
    ActivityWrite, Booking, MockClock, MockQueueRepository, MockRoomRepository, MockTokenSigner,
    QueueSnapshot, TokenClaims, Version, Versioned, Written,
};
use crate::queue_access::QueueAccess;
use crate::queue_view::QueueView;

/// The one instant every test runs at.
pub(crate) const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

/// The date the test concert plays, after [`NOW`].
pub(crate) const CONCERT_DAY: Date = date!(2026 - 12 - 24);

/// The price of every seat of [`CONCERT_DAY`].
pub(crate) const PRICE: i64 = 120_000;

pub(crate) fn user() -> UserId {
    UserId::from_uuid(Uuid::from_u128(0x1111))
}

pub(crate) fn other_user() -> UserId {
    UserId::from_uuid(Uuid::from_u128(0x2222))
}

pub(crate) fn concert_id() -> ConcertId {
    ConcertId::new(1).expect("concert id")
}

pub(crate) fn reservation_id() -> ReservationId {
    ReservationId::new(41).expect("reservation id")
}

pub(crate) fn ticket_no(n: i64) -> TicketNo {
    TicketNo::new(n).expect("ticket number")
}

pub(crate) fn seat_no(n: i64) -> SeatNo {
    SeatNo::parse(n, SeatCount::DEFAULT).expect("seat number")
}

/// A clock stuck at [`NOW`].
pub(crate) fn clock() -> Arc<MockClock> {
    clock_at(NOW)
}

pub(crate) fn clock_at(at: OffsetDateTime) -> Arc<MockClock> {
    let mut clock = MockClock::new();
    clock.expect_now().return_const(at);
    Arc::new(clock)
}

/// Small numbers, so deadlines are easy to reason about: active 10 minutes, idle 2 minutes
/// (activity resolution 5 seconds).
pub(crate) fn policy() -> QueuePolicy {
    QueuePolicy {
        max_active: 2,
        active_ttl: Duration::minutes(10),
        idle_timeout: Duration::minutes(2),
        waiting_idle: None,
    }
}

/// The queue's shared access over `queue`, for use cases that sign no token: a signer that must
/// not be asked, the test clock and policy, and a view serving `serving`.
pub(crate) async fn queue_access(queue: MockQueueRepository, serving: i64) -> QueueAccess {
    QueueAccess::new(
        Arc::new(MockTokenSigner::new()),
        Arc::new(queue),
        clock(),
        view_serving(serving).await,
        policy(),
    )
}

/// A view of the line whose serving counter is `serving`, read once from its own fake, so the
/// use case's repository fake sees only the calls the use case itself makes.
pub(crate) async fn view_serving(serving: i64) -> QueueView {
    let mut queue = MockQueueRepository::new();
    queue.expect_snapshot().times(1).returning(move |_| {
        Ok(QueueSnapshot {
            serving: ServingCounter::new(serving),
            admitted_total: u64::try_from(serving).unwrap_or(0),
            waiting: 3,
            active: 2,
            issued: u64::try_from(serving).unwrap_or(0) + 3,
            pre_queued: 0,
        })
    });
    queue
        .expect_ended_waiting()
        .times(1)
        .returning(|_| Ok(Vec::new()));
    let view = QueueView::new(Arc::new(queue), policy());
    view.refresh(NOW - Duration::seconds(1))
        .await
        .expect("view refreshed");
    view
}

/// A view serving `serving` that then failed to read its line (the line's store went down).
pub(crate) async fn view_that_lost_its_line(serving: i64) -> QueueView {
    let mut queue = MockQueueRepository::new();
    let mut reads = vec![
        Ok(QueueSnapshot {
            serving: ServingCounter::new(serving),
            ..QueueSnapshot::default()
        }),
        Err(crate::ports::RepositoryError::Unavailable(
            "the line's store is down".into(),
        )),
    ]
    .into_iter();
    queue
        .expect_snapshot()
        .times(2)
        .returning(move |_| reads.next().expect("two reads"));
    queue.expect_ended_waiting().returning(|_| Ok(Vec::new()));
    let view = QueueView::new(Arc::new(queue), policy());
    view.refresh(NOW - Duration::seconds(2))
        .await
        .expect("view refreshed");
    assert!(view.refresh(NOW - Duration::seconds(1)).await.is_err());
    view
}

pub(crate) fn claims(ticket: i64) -> TokenClaims {
    TokenClaims {
        user: user(),
        ticket: ticket_no(ticket),
        issued_at: NOW - Duration::minutes(3),
    }
}

pub(crate) fn waiting_ticket(ticket: i64) -> QueueTicket {
    QueueTicket::waiting(ticket_no(ticket), user(), NOW - Duration::minutes(3))
}

/// Admitted a minute ago, last seen `seen_ago` ago.
pub(crate) fn active_ticket(ticket: i64, seen_ago: Duration) -> QueueTicket {
    active_ticket_until(ticket, NOW + Duration::minutes(9), seen_ago)
}

/// Active until `active_until`, last seen `seen_ago` ago.
pub(crate) fn active_ticket_until(
    ticket: i64,
    active_until: OffsetDateTime,
    seen_ago: Duration,
) -> QueueTicket {
    QueueTicket::restore(
        ticket_no(ticket),
        user(),
        TicketStatus::Active,
        NOW - Duration::minutes(3),
        Some(active_until),
        Some(NOW - seen_ago),
    )
}

/// `ticket` as stored, but held by `holder`.
pub(crate) fn held_by(ticket: &QueueTicket, holder: UserId) -> QueueTicket {
    QueueTicket::restore(
        ticket.ticket(),
        holder,
        ticket.stored_status(),
        ticket.issued_at(),
        ticket.active_until(),
        ticket.last_seen(),
    )
}

pub(crate) fn active_user(ticket: i64) -> ActiveUser {
    ActiveUser {
        user: user(),
        ticket: ticket_no(ticket),
    }
}

pub(crate) fn concert_date() -> ConcertDate {
    ConcertDate {
        concert_id: concert_id(),
        date: CONCERT_DAY,
        price: Price::from_stored(PRICE),
        seats: SeatCount::DEFAULT,
    }
}

/// Where the test reservation is: seat 7 of [`CONCERT_DAY`].
pub(crate) fn seat_ref() -> SeatRef {
    SeatRef {
        concert_id: concert_id(),
        date: CONCERT_DAY,
        seat_no: seat_no(7),
    }
}

/// The version every loaded reservation row is at, unless a test says otherwise.
pub(crate) const RESERVATION_VERSION: Version = Version::new(3);

/// The version every loaded seat row is at, unless a test says otherwise.
pub(crate) const SEAT_VERSION: Version = Version::new(5);

/// Reservation 41 of seat 7 at [`PRICE`], as stored.
pub(crate) fn reservation(
    holder: UserId,
    status: ReservationStatus,
    expires_at: OffsetDateTime,
) -> Reservation {
    Reservation::restore(
        reservation_id(),
        holder,
        seat_ref(),
        Price::from_stored(PRICE),
        status,
        expires_at,
    )
}

/// The user's reservation of seat 7, held for another four minutes.
pub(crate) fn held_reservation() -> Reservation {
    reservation(user(), ReservationStatus::Held, NOW + Duration::minutes(4))
}

/// A reservation still stored as `HELD` whose hold ran out a second ago.
pub(crate) fn lapsed_reservation() -> Reservation {
    reservation(user(), ReservationStatus::Held, NOW - Duration::seconds(1))
}

pub(crate) fn reservation_with(status: ReservationStatus) -> Reservation {
    reservation(user(), status, NOW + Duration::minutes(4))
}

pub(crate) fn others_reservation() -> Reservation {
    reservation(
        other_user(),
        ReservationStatus::Held,
        NOW + Duration::minutes(4),
    )
}

/// Seat 7 at [`PRICE`] with `claim`.
pub(crate) fn seat_with(claim: SeatClaim) -> Seat {
    Seat::new(seat_no(7), Price::from_stored(PRICE), claim)
}

/// Seat 7, free.
pub(crate) fn free_seat() -> Seat {
    seat_with(SeatClaim::Available)
}

/// The seat of `reservation` as its hold left it: held by it until its deadline.
pub(crate) fn seat_held_by(reservation: &Reservation) -> Seat {
    Seat::new(
        reservation.seat_no(),
        reservation.price(),
        SeatClaim::Held {
            reservation: reservation.id(),
            holder: reservation.user(),
            until: reservation.expires_at(),
        },
    )
}

/// The seat of `reservation`, sold to it.
pub(crate) fn seat_sold_to(reservation: &Reservation) -> Seat {
    Seat::new(
        reservation.seat_no(),
        reservation.price(),
        SeatClaim::Sold {
            reservation: reservation.id(),
            owner: reservation.user(),
        },
    )
}

/// A reservation and its seat as a store loads them, at [`RESERVATION_VERSION`] and
/// [`SEAT_VERSION`].
pub(crate) fn booking_of(reservation: Reservation, seat: Seat) -> Booking {
    Booking {
        reservation: Versioned::new(reservation, RESERVATION_VERSION),
        seat: Versioned::new(seat, SEAT_VERSION),
    }
}

/// A signer that reads the token `"token"` as `claims`.
pub(crate) fn signer_reading(claims: TokenClaims) -> MockTokenSigner {
    let mut signer = MockTokenSigner::new();
    signer
        .expect_verify()
        .with(eq("token"))
        .returning(move |_| Ok(claims));
    signer
}

/// A repository fake that holds `ticket` and expects `writes` activity writes at [`NOW`], each
/// over the `last_seen` read, answered `Done`.
pub(crate) fn queue_holding(ticket: QueueTicket, writes: usize) -> MockQueueRepository {
    queue_holding_answering(ticket, writes, Written::Done(()))
}

/// [`queue_holding`], with the activity writes answered `answer`.
pub(crate) fn queue_holding_answering(
    ticket: QueueTicket,
    writes: usize,
    answer: Written<()>,
) -> MockQueueRepository {
    let mut queue = MockQueueRepository::new();
    let number = ticket.ticket();
    let write = ActivityWrite {
        ticket: number,
        read_last_seen: ticket.last_seen(),
        last_seen: NOW,
    };
    queue
        .expect_find()
        .with(eq(number))
        .times(1)
        .returning(move |_| Ok(Some(ticket.clone())));
    queue
        .expect_record_activity()
        .with(eq(write))
        .times(writes)
        .returning(move |_| Ok(answer.clone()));
    queue
}

/// A room store holding only the `default` room, under the test policy.
pub(crate) fn storing_default_room() -> MockRoomRepository {
    let mut rooms = MockRoomRepository::new();
    rooms.expect_find().returning(|id| {
        Ok(id.is_default().then(|| {
            Versioned::new(
                Room::new(RoomId::default_room(), policy().max_active, RoomState::Open)
                    .expect("a room"),
                Version::new(1),
            )
        }))
    });
    rooms
}

/// This instance's rooms when only `default` exists: it guards every concert.
pub(crate) fn default_rooms() -> crate::room_lines::RoomLines {
    crate::room_lines::RoomLines::new(Arc::new(MockQueueRepository::new()), policy())
}
