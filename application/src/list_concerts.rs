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
