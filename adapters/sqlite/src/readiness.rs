//! `ReadinessProbe`: whether the database file answers.

use async_trait::async_trait;
use concert_application::ports::{ReadinessProbe, RepositoryError};
use diesel::connection::SimpleConnection;

use crate::error::from_diesel;
use crate::store::SqliteStore;

#[derive(Debug, Clone)]
pub struct SqliteReadinessProbe {
    store: SqliteStore,
}

impl SqliteReadinessProbe {
    pub fn new(store: SqliteStore) -> Self {
        Self { store }
    }
}

#[async_trait]
impl ReadinessProbe for SqliteReadinessProbe {
    async fn check(&self) -> Result<(), RepositoryError> {
        self.store
            .read(|conn| conn.batch_execute("SELECT 1").map_err(from_diesel))
            .await
    }
}
