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
