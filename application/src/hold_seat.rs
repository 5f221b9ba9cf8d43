//! Use case: hold one seat for the caller for the hold time, if nobody else has it and the caller
//! is under the hold limit.

use std::sync::Arc;

use concert_domain::{ConcertId, HoldLimit, ParseError, Reservation, SeatNo};
use time::{Date, Duration};

use crate::authorize_request::ActiveUser;
use crate::list_available_seats::{FindDateError, find_bookable_date};
use crate::ports::{
    CatalogRepository, Clock, HoldOutcome, HoldRequest, RepositoryError, ReservationRepository,
};

/// `HOLD_TTL_SECONDS` and `MAX_HOLDS_PER_USER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldSettings {
    pub ttl: Duration,
    pub limit: HoldLimit,
}

impl Default for HoldSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::minutes(5),
            limit: HoldLimit::DEFAULT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldSeatCommand {
    pub concert: ConcertId,
    pub date: Date,
    /// As sent: whether it exists depends on the date's seat count.
    pub seat_no: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum HoldSeatError {
    #[error("concert {0} not found")]
    ConcertNotFound(ConcertId),
    #[error("concert {0} does not play on {1}")]
    DateNotFound(ConcertId, Date),
    #[error(transparent)]
    InvalidSeat(ParseError),
    #[error("seat {seat_no} on {date} is not available")]
    SeatUnavailable { date: Date, seat_no: u16 },
    #[error("the user already has {0} live holds")]
    HoldLimitReached(u32),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl From<FindDateError> for HoldSeatError {
    fn from(error: FindDateError) -> Self {
        match error {
            FindDateError::ConcertNotFound(concert) => Self::ConcertNotFound(concert),
            FindDateError::DateNotFound(concert, date) => Self::DateNotFound(concert, date),
            FindDateError::Repository(error) => Self::Repository(error),
        }
    }
}

pub struct HoldSeat {
    catalog: Arc<dyn CatalogRepository>,
    reservations: Arc<dyn ReservationRepository>,
    clock: Arc<dyn Clock>,
    settings: HoldSettings,
}

impl HoldSeat {
    pub fn new(
        catalog: Arc<dyn CatalogRepository>,
        reservations: Arc<dyn ReservationRepository>,
        clock: Arc<dyn Clock>,
        settings: HoldSettings,
    ) -> Self {
        Self {
            catalog,
            reservations,
            clock,
            settings,
        }
    }

    #[tracing::instrument(name = "hold_seat", skip_all, fields(user = %caller.user, concert = command.concert.get(), date = %command.date, seat = command.seat_no))]
    pub async fn execute(
        &self,
        caller: ActiveUser,
        command: HoldSeatCommand,
    ) -> Result<Reservation, HoldSeatError> {
        let now = self.clock.now();
        let date =
            find_bookable_date(self.catalog.as_ref(), command.concert, command.date, now).await?;
        let seat_no =
            SeatNo::parse(command.seat_no, date.seats).map_err(HoldSeatError::InvalidSeat)?;
        let request = HoldRequest {
            user: caller.user,
            concert: command.concert,
            date: command.date,
            seat_no,
            price: date.price,
            now,
            until: now + self.settings.ttl,
            limit: self.settings.limit,
        };
        match self.reservations.hold(&request).await? {
            HoldOutcome::Held(reservation) => Ok(reservation),
            HoldOutcome::SeatUnavailable => Err(HoldSeatError::SeatUnavailable {
                date: command.date,
                seat_no: seat_no.get(),
            }),
            HoldOutcome::HoldLimitReached => {
                Err(HoldSeatError::HoldLimitReached(self.settings.limit.get()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::{ConcertDate, Price, SeatCount};
    use mockall::predicate::eq;

    use super::*;
    use crate::ports::{DateLookup, MockCatalogRepository, MockReservationRepository};
    use crate::test_support::{
        CONCERT_DAY, NOW, PRICE, active_user, clock, concert_date, concert_id, held_reservation,
        seat_no, user,
    };

    fn settings() -> HoldSettings {
        HoldSettings {
            ttl: Duration::seconds(90),
            limit: HoldLimit::new(3).expect("limit"),
        }
    }

    fn catalog_with(date: ConcertDate) -> MockCatalogRepository {
        let mut catalog = MockCatalogRepository::new();
        catalog
            .expect_find_date()
            .with(eq(concert_id()), eq(CONCERT_DAY))
            .times(1)
            .returning(move |_, _| Ok(DateLookup::Found(date.clone())));
        catalog
    }

    fn command(seat_no: i64) -> HoldSeatCommand {
        HoldSeatCommand {
            concert: concert_id(),
            date: CONCERT_DAY,
            seat_no,
        }
    }

    async fn hold(
        catalog: MockCatalogRepository,
        reservations: MockReservationRepository,
        seat: i64,
    ) -> Result<Reservation, HoldSeatError> {
        HoldSeat::new(
            Arc::new(catalog),
            Arc::new(reservations),
            clock(),
            settings(),
        )
        .execute(active_user(14), command(seat))
        .await
    }

    fn answering(outcome: HoldOutcome) -> MockReservationRepository {
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_hold()
            .times(1)
            .returning(move |_| Ok(outcome.clone()));
        reservations
    }

    #[tokio::test]
    async fn hold_persists_the_dates_price_the_seat_the_deadline_and_the_limit() {
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_hold()
            .withf(|request| {
                *request
                    == HoldRequest {
                        user: user(),
                        concert: concert_id(),
                        date: CONCERT_DAY,
                        seat_no: seat_no(7),
                        price: Price::from_stored(PRICE),
                        now: NOW,
                        until: NOW + Duration::seconds(90),
                        limit: HoldLimit::new(3).expect("limit"),
                    }
            })
            .times(1)
            .returning(|_| Ok(HoldOutcome::Held(held_reservation())));

        let held = hold(catalog_with(concert_date()), reservations, 7)
            .await
            .expect("held");

        assert_eq!(held, held_reservation());
    }

    #[tokio::test]
    async fn seat_number_outside_the_dates_seats_is_invalid_and_nothing_is_held() {
        let small = ConcertDate {
            seats: SeatCount::parse(10).expect("count"),
            ..concert_date()
        };
        let mut reservations = MockReservationRepository::new();
        reservations.expect_hold().never();

        let refused = hold(catalog_with(small), reservations, 11).await;

        assert!(matches!(
            refused,
            Err(HoldSeatError::InvalidSeat(error)) if error.field == "seatNo"
        ));
    }

    #[tokio::test]
    async fn seat_zero_is_invalid_and_nothing_is_held() {
        let mut reservations = MockReservationRepository::new();
        reservations.expect_hold().never();

        let refused = hold(catalog_with(concert_date()), reservations, 0).await;

        assert!(matches!(refused, Err(HoldSeatError::InvalidSeat(_))));
    }

    #[tokio::test]
    async fn hold_is_refused_when_the_seat_is_taken() {
        let refused = hold(
            catalog_with(concert_date()),
            answering(HoldOutcome::SeatUnavailable),
            7,
        )
        .await;

        assert!(matches!(
            refused,
            Err(HoldSeatError::SeatUnavailable { date, seat_no: 7 }) if date == CONCERT_DAY
        ));
    }

    #[tokio::test]
    async fn hold_is_refused_at_the_users_hold_limit() {
        let refused = hold(
            catalog_with(concert_date()),
            answering(HoldOutcome::HoldLimitReached),
            7,
        )
        .await;

        assert!(matches!(refused, Err(HoldSeatError::HoldLimitReached(3))));
    }

    #[tokio::test]
    async fn hold_on_an_unknown_date_is_refused_before_any_write() {
        let mut catalog = MockCatalogRepository::new();
        catalog
            .expect_find_date()
            .returning(|_, _| Ok(DateLookup::DateNotFound));
        let mut reservations = MockReservationRepository::new();
        reservations.expect_hold().never();

        let refused = hold(catalog, reservations, 7).await;

        assert!(matches!(refused, Err(HoldSeatError::DateNotFound(_, _))));
    }
}
