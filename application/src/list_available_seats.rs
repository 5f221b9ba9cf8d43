//! Use case: the seats of one concert date that can be reserved now.

use std::sync::Arc;

use concert_domain::{ConcertDate, ConcertId};
use time::{Date, OffsetDateTime};

use crate::ports::{AvailableSeat, CatalogRepository, Clock, DateLookup, RepositoryError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatList {
    pub date: ConcertDate,
    pub seats: Vec<AvailableSeat>,
}

#[derive(Debug, thiserror::Error)]
pub enum FindDateError {
    #[error("concert {0} not found")]
    ConcertNotFound(ConcertId),
    #[error("concert {0} does not play on {1}")]
    DateNotFound(ConcertId, Date),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Looks up a date that can still be booked at `now`: a past date is as missing as one the
/// concert never played.
pub(crate) async fn find_bookable_date(
    catalog: &dyn CatalogRepository,
    concert: ConcertId,
    date: Date,
    now: OffsetDateTime,
) -> Result<ConcertDate, FindDateError> {
    match catalog.find_date(concert, date).await? {
        DateLookup::ConcertNotFound => Err(FindDateError::ConcertNotFound(concert)),
        DateLookup::Found(found) if found.is_bookable_on(now.date()) => Ok(found),
        DateLookup::Found(_) | DateLookup::DateNotFound => {
            Err(FindDateError::DateNotFound(concert, date))
        }
    }
}

pub struct ListAvailableSeats {
    catalog: Arc<dyn CatalogRepository>,
    clock: Arc<dyn Clock>,
}

impl ListAvailableSeats {
    pub fn new(catalog: Arc<dyn CatalogRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { catalog, clock }
    }

    #[tracing::instrument(name = "list_available_seats", skip_all, fields(concert = concert.get(), %date))]
    pub async fn execute(&self, concert: ConcertId, date: Date) -> Result<SeatList, FindDateError> {
        let now = self.clock.now();
        let found = find_bookable_date(self.catalog.as_ref(), concert, date, now).await?;
        let seats = self.catalog.available_seats(concert, date, now).await?;
        Ok(SeatList { date: found, seats })
    }
}
