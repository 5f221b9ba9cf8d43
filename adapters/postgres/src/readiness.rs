//! `ReadinessProbe`: whether the database answers through the pool.

use async_trait::async_trait;
use concert_application::ports::{ReadinessProbe, RepositoryError};
use diesel_async::SimpleAsyncConnection;

use crate::error::from_diesel;
use crate::pool::PgPool;

#[derive(Debug, Clone)]
pub struct PgReadinessProbe {
    pool: PgPool,
}

impl PgReadinessProbe {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl ReadinessProbe for PgReadinessProbe {
    async fn check(&self) -> Result<(), RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                conn.batch_execute("SELECT 1").await.map_err(from_diesel)
            })
            .await
    }
}
