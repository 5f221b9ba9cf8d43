//! The one mapping between stored columns and domain values: status names, seat claims,
//! reservation and wallet rows. Queries bind these values instead of spelling status names.

use concert_application::ports::{Booking, RepositoryError, Version, Versioned};
use concert_domain::{
    Balance, EndReason, LedgerKind, Price, Reservation, ReservationId, ReservationStatus, Seat,
    SeatClaim, SeatRef, TicketStatus, UserId, Wallet,
};
use diesel::QueryableByName;
use diesel::sql_types::{
    BigInt, Bool, Date as SqlDate, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::catalog::{concert_id, stored_seat_no};
use crate::error::corrupt;

/// The stored name of a reservation status.
pub(crate) const fn reservation_status(status: ReservationStatus) -> &'static str {
    status.as_str()
}

pub(crate) fn parse_reservation_status(raw: &str) -> Result<ReservationStatus, RepositoryError> {
    ReservationStatus::parse(raw).ok_or_else(|| corrupt(format!("reservation status {raw:?}")))
}

/// The stored name of a queue ticket status.
pub(crate) const fn ticket_status(status: TicketStatus) -> &'static str {
    status.as_str()
}

pub(crate) fn parse_ticket_status(raw: &str) -> Result<TicketStatus, RepositoryError> {
    TicketStatus::parse(raw).ok_or_else(|| corrupt(format!("ticket status {raw:?}")))
}

pub(crate) fn parse_end_reason(raw: Option<&str>) -> Result<Option<EndReason>, RepositoryError> {
    raw.map(|raw| EndReason::parse(raw).ok_or_else(|| corrupt(format!("end reason {raw:?}"))))
        .transpose()
}

/// The stored name of a ledger entry's kind.
pub(crate) const fn ledger_kind(kind: LedgerKind) -> &'static str {
    kind.as_str()
}

pub(crate) fn parse_ledger_kind(raw: &str) -> Result<LedgerKind, RepositoryError> {
    LedgerKind::parse(raw).ok_or_else(|| corrupt(format!("ledger kind {raw:?}")))
}

pub(crate) fn version(raw: i64) -> Result<Version, RepositoryError> {
    if raw > 0 {
        Ok(Version::new(raw))
    } else {
        Err(corrupt(format!("row version {raw}")))
    }
}

/// The one column a compare-and-set statement answers: whether it wrote.
#[derive(Debug, QueryableByName)]
pub(crate) struct WrittenRow {
    #[diesel(sql_type = Bool)]
    written: bool,
}

impl WrittenRow {
    /// `Some(())` when the statement wrote, as [`crate::error::compare_and_set`] takes it.
    pub(crate) fn wrote(self) -> Option<()> {
        self.written.then_some(())
    }
}

/// A seat's claim columns: `(held_by_reservation, held_by_user, held_until, sold_to_user,
/// sold_reservation)`.
pub(crate) type ClaimColumns = (
    Option<i64>,
    Option<Uuid>,
    Option<OffsetDateTime>,
    Option<Uuid>,
    Option<i64>,
);

pub(crate) fn claim_columns(claim: SeatClaim) -> ClaimColumns {
    match claim {
        SeatClaim::Available => (None, None, None, None, None),
        SeatClaim::Held {
            reservation,
            holder,
            until,
        } => (
            Some(reservation.get()),
            Some(holder.get()),
            Some(until),
            None,
            None,
        ),
        SeatClaim::Sold { reservation, owner } => {
            (None, None, None, Some(owner.get()), Some(reservation.get()))
        }
    }
}

fn claim_from_columns(columns: ClaimColumns) -> Result<SeatClaim, RepositoryError> {
    match columns {
        (None, None, None, None, None) => Ok(SeatClaim::Available),
        (Some(reservation), Some(holder), Some(until), None, None) => Ok(SeatClaim::Held {
            reservation: ReservationId::new(reservation).map_err(corrupt)?,
            holder: UserId::from_uuid(holder),
            until,
        }),
        (None, None, None, Some(owner), Some(reservation)) => Ok(SeatClaim::Sold {
            reservation: ReservationId::new(reservation).map_err(corrupt)?,
            owner: UserId::from_uuid(owner),
        }),
        other => Err(corrupt(format!("seat claim {other:?}"))),
    }
}

/// A seat row with its date's price, as selected by [`SEAT_COLUMNS`].
#[derive(Debug, QueryableByName)]
pub(crate) struct SeatRow {
    #[diesel(sql_type = Integer)]
    seat_no: i32,
    #[diesel(sql_type = BigInt)]
    seat_price: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    held_by_reservation: Option<i64>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    held_by_user: Option<Uuid>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    held_until: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    sold_to_user: Option<Uuid>,
    #[diesel(sql_type = Nullable<BigInt>)]
    sold_reservation: Option<i64>,
    #[diesel(sql_type = BigInt)]
    seat_version: i64,
}

/// The select list of a [`SeatRow`], for a query that names the seat `s` and its date `d`.
pub(crate) const SEAT_COLUMNS: &str = "s.seat_no, d.price AS seat_price, s.held_by_reservation, \
     s.held_by_user, s.held_until, s.sold_to_user, s.sold_reservation, s.version AS seat_version";

impl SeatRow {
    pub(crate) fn into_domain(self) -> Result<Versioned<Seat>, RepositoryError> {
        let claim = claim_from_columns((
            self.held_by_reservation,
            self.held_by_user,
            self.held_until,
            self.sold_to_user,
            self.sold_reservation,
        ))?;
        let seat = Seat::new(
            stored_seat_no(self.seat_no)?,
            Price::from_stored(self.seat_price),
            claim,
        );
        Ok(Versioned::new(seat, version(self.seat_version)?))
    }
}

/// A reservation row, as selected by [`RESERVATION_COLUMNS`].
#[derive(Debug, QueryableByName)]
pub(crate) struct ReservationRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = BigInt)]
    concert_id: i64,
    #[diesel(sql_type = SqlDate)]
    date: Date,
    #[diesel(sql_type = Integer)]
    seat_no: i32,
    #[diesel(sql_type = BigInt)]
    price: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Timestamptz)]
    expires_at: OffsetDateTime,
    #[diesel(sql_type = BigInt)]
    reservation_version: i64,
}

/// The select list of a [`ReservationRow`], for a query that names the reservation `r`.
pub(crate) const RESERVATION_COLUMNS: &str = "r.id, r.user_id, r.concert_id, r.date, r.seat_no, \
     r.price, r.status, r.expires_at, r.version AS reservation_version";

impl ReservationRow {
    pub(crate) fn into_domain(self) -> Result<Versioned<Reservation>, RepositoryError> {
        let reservation = Reservation::restore(
            ReservationId::new(self.id).map_err(corrupt)?,
            UserId::from_uuid(self.user_id),
            SeatRef {
                concert_id: concert_id(self.concert_id)?,
                date: self.date,
                seat_no: stored_seat_no(self.seat_no)?,
            },
            Price::from_stored(self.price),
            parse_reservation_status(&self.status)?,
            self.expires_at,
        );
        Ok(Versioned::new(
            reservation,
            version(self.reservation_version)?,
        ))
    }
}

/// A reservation joined with its seat and the seat's date.
#[derive(Debug, QueryableByName)]
pub(crate) struct BookingRow {
    #[diesel(embed)]
    reservation: ReservationRow,
    #[diesel(embed)]
    seat: SeatRow,
}

/// The `FROM` clause of a [`BookingRow`] query.
pub(crate) const BOOKING_FROM: &str = "reservations r \
     JOIN seats s ON s.concert_id = r.concert_id AND s.date = r.date AND s.seat_no = r.seat_no \
     JOIN concert_dates d ON d.concert_id = s.concert_id AND d.date = s.date";

impl BookingRow {
    pub(crate) fn into_domain(self) -> Result<Booking, RepositoryError> {
        Ok(Booking {
            reservation: self.reservation.into_domain()?,
            seat: self.seat.into_domain()?,
        })
    }
}

/// A wallet row (absent: `None` columns), as selected by [`WALLET_COLUMNS`].
#[derive(Debug, QueryableByName)]
pub(crate) struct WalletRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    balance: Option<i64>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_change_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<BigInt>)]
    wallet_version: Option<i64>,
}

/// The select list of a [`WalletRow`], for a query that names the wallet `w`.
pub(crate) const WALLET_COLUMNS: &str =
    "w.balance, w.updated_at AS last_change_at, w.version AS wallet_version";

impl WalletRow {
    pub(crate) fn into_domain(self, user: UserId) -> Result<Versioned<Wallet>, RepositoryError> {
        match (self.balance, self.wallet_version) {
            (Some(balance), Some(raw_version)) => Ok(Versioned::new(
                Wallet::new(
                    user,
                    Balance::new(balance).map_err(corrupt)?,
                    self.last_change_at,
                ),
                version(raw_version)?,
            )),
            (None, None) => Ok(Versioned::new(Wallet::empty(user), Version::ABSENT)),
            other => Err(corrupt(format!("wallet {other:?}"))),
        }
    }
}
