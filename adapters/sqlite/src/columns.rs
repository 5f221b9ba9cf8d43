//! How values are stored: instants as INTEGER microseconds since the Unix epoch (UTC), user ids
//! as TEXT, a seat's claim in five columns; and the conversions back, which refuse a value out of
//! range as corrupt. A seat row ([`SeatRow`]) is read alike by the catalog and the bookings.

use concert_application::ports::{RepositoryError, Version, Versioned};
use concert_domain::{ConcertId, Price, ReservationId, Seat, SeatClaim, SeatCount, SeatNo, UserId};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use time::OffsetDateTime;

use crate::error::corrupt;

/// An instant as stored.
pub(crate) fn micros(at: OffsetDateTime) -> i64 {
    // i64 microseconds cover ±292,000 years; every instant the service handles fits.
    i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// A stored instant.
pub(crate) fn instant(micros: i64) -> Result<OffsetDateTime, RepositoryError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).map_err(corrupt)
}

/// A stored optional instant.
pub(crate) fn instant_opt(micros: Option<i64>) -> Result<Option<OffsetDateTime>, RepositoryError> {
    micros.map(instant).transpose()
}

/// A user id as stored.
pub(crate) fn user_text(user: UserId) -> String {
    user.get().to_string()
}

/// A stored user id.
pub(crate) fn user_id(text: &str) -> Result<UserId, RepositoryError> {
    UserId::parse(text).map_err(corrupt)
}

// ---- Rows shared by the catalog, the bookings and the payments. ----

pub(crate) fn version(raw: i64) -> Result<Version, RepositoryError> {
    if raw > 0 {
        Ok(Version::new(raw))
    } else {
        Err(corrupt(format!("row version {raw}")))
    }
}

pub(crate) fn concert_id(raw: i64) -> Result<ConcertId, RepositoryError> {
    ConcertId::new(raw).map_err(corrupt)
}

/// A stored seat number, valid by the schema's checks (1..=1000).
pub(crate) fn stored_seat_no(raw: i32) -> Result<SeatNo, RepositoryError> {
    SeatNo::parse(
        raw.into(),
        SeatCount::parse(SeatCount::MAX.into()).map_err(corrupt)?,
    )
    .map_err(corrupt)
}

/// A seat's claim columns: `(held_by_reservation, held_by_user, held_until, sold_to_user,
/// sold_reservation)`, as stored.
pub(crate) type ClaimColumns = (
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<String>,
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
            Some(user_text(holder)),
            Some(micros(until)),
            None,
            None,
        ),
        SeatClaim::Sold { reservation, owner } => (
            None,
            None,
            None,
            Some(user_text(owner)),
            Some(reservation.get()),
        ),
    }
}

pub(crate) fn claim_from_columns(columns: ClaimColumns) -> Result<SeatClaim, RepositoryError> {
    match columns {
        (None, None, None, None, None) => Ok(SeatClaim::Available),
        (Some(reservation), Some(holder), Some(until), None, None) => Ok(SeatClaim::Held {
            reservation: ReservationId::new(reservation).map_err(corrupt)?,
            holder: user_id(&holder)?,
            until: instant(until)?,
        }),
        (None, None, None, Some(owner), Some(reservation)) => Ok(SeatClaim::Sold {
            reservation: ReservationId::new(reservation).map_err(corrupt)?,
            owner: user_id(&owner)?,
        }),
        other => Err(corrupt(format!("seat claim {other:?}"))),
    }
}

pub(crate) fn seat_count(raw: i32) -> Result<SeatCount, RepositoryError> {
    SeatCount::parse(raw.into()).map_err(corrupt)
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
    #[diesel(sql_type = Nullable<Text>)]
    held_by_user: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    held_until: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    sold_to_user: Option<String>,
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

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn instants_keep_microseconds_both_ways() {
        let at = datetime!(2030-06-01 12:00:00.123456 UTC);
        assert_eq!(instant(micros(at)).expect("instant"), at);
        assert_eq!(micros(OffsetDateTime::UNIX_EPOCH), 0);
    }

    #[test]
    fn a_user_id_round_trips_and_garbage_is_corrupt() {
        let user = UserId::from_uuid(Uuid::new_v4());
        assert_eq!(user_id(&user_text(user)).expect("user"), user);
        assert!(user_id("not-a-uuid").is_err());
    }
}
