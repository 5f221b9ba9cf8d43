//! Use case: the concerts that still play, from today (UTC) on.

use std::sync::Arc;

use concert_domain::Concert;

use crate::ports::{CatalogRepository, Clock, RepositoryError};

pub struct ListConcerts {
    catalog: Arc<dyn CatalogRepository>,
    clock: Arc<dyn Clock>,
}

impl ListConcerts {
    pub fn new(catalog: Arc<dyn CatalogRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { catalog, clock }
    }

    #[tracing::instrument(name = "list_concerts", skip_all)]
    pub async fn execute(&self) -> Result<Vec<Concert>, RepositoryError> {
        let today = self.clock.now().date();
        self.catalog.list_concerts(today).await
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::ConcertTitle;
    use mockall::predicate::eq;
    use time::macros::datetime;

    use super::*;
    use crate::ports::MockCatalogRepository;
    use crate::test_support::{clock_at, concert_id};

    #[tokio::test]
    async fn concerts_are_listed_from_todays_date_in_utc() {
        let late_evening = datetime!(2026-12-01 23:59:59 UTC);
        let gala = Concert {
            id: concert_id(),
            title: ConcertTitle::parse("Winter Gala").expect("title"),
        };
        let mut catalog = MockCatalogRepository::new();
        let listed = gala.clone();
        catalog
            .expect_list_concerts()
            .with(eq(late_evening.date()))
            .times(1)
            .returning(move |_| Ok(vec![listed.clone()]));

        let concerts = ListConcerts::new(Arc::new(catalog), clock_at(late_evening))
            .execute()
            .await
            .expect("listed");

        assert_eq!(concerts, vec![gala]);
    }
}
