//! Use case: the dates of a concert, from today on, that still have a seat to reserve.

use std::sync::Arc;

use concert_domain::ConcertId;

use crate::ports::{CatalogRepository, Clock, DateAvailability, RepositoryError};

#[derive(Debug, thiserror::Error)]
pub enum ListAvailableDatesError {
    #[error("concert {0} not found")]
    ConcertNotFound(ConcertId),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

pub struct ListAvailableDates {
    catalog: Arc<dyn CatalogRepository>,
    clock: Arc<dyn Clock>,
}

impl ListAvailableDates {
    pub fn new(catalog: Arc<dyn CatalogRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { catalog, clock }
    }

    #[tracing::instrument(name = "list_available_dates", skip_all, fields(concert = concert.get()))]
    pub async fn execute(
        &self,
        concert: ConcertId,
    ) -> Result<Vec<DateAvailability>, ListAvailableDatesError> {
        let now = self.clock.now();
        self.catalog
            .available_dates(concert, now.date(), now)
            .await?
            .ok_or(ListAvailableDatesError::ConcertNotFound(concert))
    }
}
