//! Use case: the dates of a concert, from today on, that still have a seat to reserve.

use std::sync::Arc;

use concert_domain::ConcertId;

use crate::authorize_request::ActiveUser;
use crate::ports::{CatalogRepository, Clock, DateAvailability, RepositoryError};
use crate::room_lines::RoomLines;

#[derive(Debug, thiserror::Error)]
pub enum ListAvailableDatesError {
    #[error("concert {0} not found")]
    ConcertNotFound(ConcertId),
    /// The caller's token is another room's (`403 TOKEN_WRONG_ROOM`).
    #[error("concert {0} is another room's")]
    WrongRoom(ConcertId),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

pub struct ListAvailableDates {
    catalog: Arc<dyn CatalogRepository>,
    clock: Arc<dyn Clock>,
    rooms: RoomLines,
}

impl ListAvailableDates {
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

    #[tracing::instrument(name = "list_available_dates", skip_all, fields(concert = concert.get()))]
    pub async fn execute(
        &self,
        caller: &ActiveUser,
        concert: ConcertId,
    ) -> Result<Vec<DateAvailability>, ListAvailableDatesError> {
        self.rooms
            .admit(caller.ticket, concert)
            .map_err(|_| ListAvailableDatesError::WrongRoom(concert))?;
        let now = self.clock.now();
        self.catalog
            .available_dates(concert, now.date(), now)
            .await?
            .ok_or(ListAvailableDatesError::ConcertNotFound(concert))
    }
}

#[cfg(test)]
mod tests {
    use mockall::predicate::eq;

    use super::*;
    use crate::ports::MockCatalogRepository;
    use crate::test_support::{CONCERT_DAY, NOW, active_user, clock, concert_id, default_rooms};

    #[tokio::test]
    async fn dates_are_read_from_today_with_availability_at_now() {
        let dates = vec![DateAvailability {
            date: CONCERT_DAY,
            available_seats: 37,
        }];
        let mut catalog = MockCatalogRepository::new();
        let stored = dates.clone();
        catalog
            .expect_available_dates()
            .with(eq(concert_id()), eq(NOW.date()), eq(NOW))
            .times(1)
            .returning(move |_, _, _| Ok(Some(stored.clone())));

        let listed = ListAvailableDates::new(Arc::new(catalog), clock(), default_rooms())
            .execute(&active_user(14), concert_id())
            .await
            .expect("listed");

        assert_eq!(listed, dates);
    }

    #[tokio::test]
    async fn unknown_concert_has_no_dates() {
        let mut catalog = MockCatalogRepository::new();
        catalog
            .expect_available_dates()
            .times(1)
            .returning(|_, _, _| Ok(None));

        let refused = ListAvailableDates::new(Arc::new(catalog), clock(), default_rooms())
            .execute(&active_user(14), concert_id())
            .await;

        assert!(matches!(
            refused,
            Err(ListAvailableDatesError::ConcertNotFound(id)) if id == concert_id()
        ));
    }

    #[tokio::test]
    async fn concert_without_a_bookable_date_lists_none_rather_than_not_found() {
        let mut catalog = MockCatalogRepository::new();
        catalog
            .expect_available_dates()
            .returning(|_, _, _| Ok(Some(Vec::new())));

        let listed = ListAvailableDates::new(Arc::new(catalog), clock(), default_rooms())
            .execute(&active_user(14), concert_id())
            .await
            .expect("listed");

        assert!(listed.is_empty());
    }
}
