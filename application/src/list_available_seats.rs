//! Use case: the seats of one concert date that can be reserved now.

use std::sync::Arc;

use concert_domain::{ConcertDate, ConcertId};
use time::{Date, OffsetDateTime};

use crate::authorize_request::ActiveUser;
use crate::ports::{AvailableSeat, CatalogRepository, Clock, DateLookup, RepositoryError};
use crate::room_lines::RoomLines;

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
    /// The caller's token is another room's (`403 TOKEN_WRONG_ROOM`).
    #[error("concert {0} is another room's")]
    WrongRoom(ConcertId),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Checks that `caller`'s room guards `concert`: a token admits only to its room's concerts.
pub(crate) fn admit_to(
    rooms: &RoomLines,
    caller: &ActiveUser,
    concert: ConcertId,
) -> Result<(), FindDateError> {
    rooms
        .admit(caller.ticket, concert)
        .map_err(|_| FindDateError::WrongRoom(concert))
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
    rooms: RoomLines,
}

impl ListAvailableSeats {
    pub fn new(
        catalog: Arc<dyn CatalogRepository>,
        clock: Arc<dyn Clock>,
        rooms: impl Into<RoomLines>,
    ) -> Self {
        Self {
            catalog,
            clock,
            rooms: rooms.into(),
        }
    }

    #[tracing::instrument(name = "list_available_seats", skip_all, fields(concert = concert.get(), %date))]
    pub async fn execute(
        &self,
        caller: &ActiveUser,
        concert: ConcertId,
        date: Date,
    ) -> Result<SeatList, FindDateError> {
        admit_to(&self.rooms, caller, concert)?;
        let now = self.clock.now();
        let found = find_bookable_date(self.catalog.as_ref(), concert, date, now).await?;
        let seats = self.catalog.available_seats(concert, date, now).await?;
        Ok(SeatList { date: found, seats })
    }
}

#[cfg(test)]
mod tests {
    use mockall::predicate::eq;
    use time::Duration;

    use super::*;
    use crate::ports::MockCatalogRepository;
    use crate::test_support::{
        CONCERT_DAY, NOW, active_user, clock, concert_date, concert_id, default_rooms, seat_no,
    };

    fn catalog_answering(lookup: DateLookup) -> MockCatalogRepository {
        let mut catalog = MockCatalogRepository::new();
        catalog
            .expect_find_date()
            .with(eq(concert_id()), eq(lookup_date(&lookup)))
            .times(1)
            .returning(move |_, _| Ok(lookup.clone()));
        catalog
    }

    fn lookup_date(lookup: &DateLookup) -> Date {
        match lookup {
            DateLookup::Found(found) => found.date,
            DateLookup::ConcertNotFound | DateLookup::DateNotFound => CONCERT_DAY,
        }
    }

    async fn list(catalog: MockCatalogRepository, date: Date) -> Result<SeatList, FindDateError> {
        ListAvailableSeats::new(Arc::new(catalog), clock(), default_rooms())
            .execute(&active_user(14), concert_id(), date)
            .await
    }

    #[tokio::test]
    async fn seats_of_a_bookable_date_are_listed_at_now() {
        let seats = vec![AvailableSeat {
            seat_no: seat_no(1),
            price: concert_date().price,
        }];
        let mut catalog = catalog_answering(DateLookup::Found(concert_date()));
        let stored = seats.clone();
        catalog
            .expect_available_seats()
            .with(eq(concert_id()), eq(CONCERT_DAY), eq(NOW))
            .times(1)
            .returning(move |_, _, _| Ok(stored.clone()));

        let listed = list(catalog, CONCERT_DAY).await.expect("listed");

        assert_eq!(listed.date, concert_date());
        assert_eq!(listed.seats, seats);
    }

    #[tokio::test]
    async fn unknown_concert_is_not_found() {
        let mut catalog = catalog_answering(DateLookup::ConcertNotFound);
        catalog.expect_available_seats().never();

        let refused = list(catalog, CONCERT_DAY).await;

        assert!(matches!(refused, Err(FindDateError::ConcertNotFound(_))));
    }

    #[tokio::test]
    async fn date_the_concert_does_not_play_is_not_found() {
        let mut catalog = catalog_answering(DateLookup::DateNotFound);
        catalog.expect_available_seats().never();

        let refused = list(catalog, CONCERT_DAY).await;

        assert!(matches!(
            refused,
            Err(FindDateError::DateNotFound(_, date)) if date == CONCERT_DAY
        ));
    }

    #[tokio::test]
    async fn past_date_is_as_missing_as_one_never_played() {
        let yesterday = ConcertDate {
            date: NOW.date() - Duration::days(1),
            ..concert_date()
        };
        let mut catalog = catalog_answering(DateLookup::Found(yesterday.clone()));
        catalog.expect_available_seats().never();

        let refused = list(catalog, yesterday.date).await;

        assert!(matches!(
            refused,
            Err(FindDateError::DateNotFound(_, date)) if date == yesterday.date
        ));
    }

    #[tokio::test]
    async fn todays_date_is_still_bookable() {
        let today = ConcertDate {
            date: NOW.date(),
            ..concert_date()
        };
        let mut catalog = catalog_answering(DateLookup::Found(today.clone()));
        catalog
            .expect_available_seats()
            .times(1)
            .returning(|_, _, _| Ok(Vec::new()));

        let listed = list(catalog, today.date).await.expect("listed");

        assert_eq!(listed.date, today);
    }
}
