//! The SQL text of the [`Store`](crate::Store) hooks both stores answer alike. Their tables have
//! the same names and columns and differ only in how an instant is written (a `timestamptz`
//! literal, or integer microseconds), which the caller passes as `instant`. Only the stores'
//! hooks use this: the contract functions themselves never see SQL.

use concert_domain::{Reservation, ReservationId, SeatClaim, SeatRef, UserId};
use time::OffsetDateTime;

/// How a store writes an instant in SQL.
pub type InstantSql = fn(OffsetDateTime) -> String;

/// One count each of what [`crate::BookingCounts`] holds, in its field order: reservations,
/// held seats, sold seats, payments, payment ledger entries, idempotency keys.
pub const BOOKING_COUNTS: [&str; 6] = [
    "SELECT count(*) AS count FROM reservations",
    "SELECT count(*) AS count FROM seats WHERE held_by_reservation IS NOT NULL",
    "SELECT count(*) AS count FROM seats WHERE sold_to_user IS NOT NULL",
    "SELECT count(*) AS count FROM payments",
    "SELECT count(*) AS count FROM ledger_entries WHERE kind = 'PAYMENT'",
    "SELECT count(*) AS count FROM idempotency_keys",
];

/// Frees every seat (the first statement) and forgets every reservation (the second).
pub const CLEAR_BOOKINGS: [&str; 2] = [
    "UPDATE seats SET held_by_reservation = NULL, held_by_user = NULL, held_until = NULL, \
     sold_to_user = NULL, sold_reservation = NULL",
    "DELETE FROM reservations",
];

/// Moves the seat's version alone, as another write of its row would.
pub fn bump_seat(seat: SeatRef) -> String {
    format!(
        "UPDATE seats SET version = version + 1 WHERE {}",
        seat_key(seat)
    )
}

/// Moves the reservation's version alone.
pub fn bump_reservation(reservation: ReservationId) -> String {
    format!(
        "UPDATE reservations SET version = version + 1 WHERE id = {}",
        reservation.get()
    )
}

/// Moves the wallet's version alone.
pub fn bump_wallet(user: UserId) -> String {
    format!("UPDATE wallets SET version = version + 1 WHERE user_id = '{user}'")
}

/// Stores `r` as it is (its status and deadline as given), created and written at `at`.
pub fn insert_reservation(r: &Reservation, at: OffsetDateTime, instant: InstantSql) -> String {
    format!(
        "INSERT INTO reservations (id, user_id, concert_id, date, seat_no, price, status, \
         expires_at, created_at, updated_at) \
         VALUES ({}, '{}', {}, '{}', {}, {}, '{}', {}, {}, {})",
        r.id().get(),
        r.user(),
        r.concert_id().get(),
        r.date(),
        r.seat_no().get(),
        r.price().get(),
        r.stored_status().as_str(),
        instant(r.expires_at()),
        instant(at),
        instant(at),
    )
}

/// Stores `claim` on `seat` as it is, whatever claimed the seat before, and moves its version.
pub fn set_claim(seat: SeatRef, claim: SeatClaim, instant: InstantSql) -> String {
    let set = match claim {
        SeatClaim::Available => "held_by_reservation = NULL, held_by_user = NULL, \
                                 held_until = NULL, sold_to_user = NULL, sold_reservation = NULL"
            .to_owned(),
        SeatClaim::Held {
            reservation,
            holder,
            until,
        } => format!(
            "held_by_reservation = {}, held_by_user = '{holder}', held_until = {}, \
             sold_to_user = NULL, sold_reservation = NULL",
            reservation.get(),
            instant(until)
        ),
        SeatClaim::Sold { reservation, owner } => format!(
            "held_by_reservation = NULL, held_by_user = NULL, held_until = NULL, \
             sold_to_user = '{owner}', sold_reservation = {}",
            reservation.get()
        ),
    };
    format!(
        "UPDATE seats SET {set}, version = version + 1 WHERE {}",
        seat_key(seat)
    )
}

fn seat_key(seat: SeatRef) -> String {
    format!(
        "concert_id = {} AND date = '{}' AND seat_no = {}",
        seat.concert_id.get(),
        seat.date,
        seat.seat_no.get()
    )
}
