//! The ports' contract (`concert-contract`), the suite every store passes, run on the embedded
//! store: the same test code as on PostgreSQL.

use std::sync::Arc;

use concert_application::ports::{
    CatalogRepository, IdempotencyStore, PaymentRepository, QueueRepository, ReadinessProbe,
    ReservationRepository, RetentionRepository, RoomRepository, WalletRepository,
};
use concert_contract::Store;
use concert_sqlite::{
    SqliteCatalogRepository, SqliteIdempotencyStore, SqlitePaymentRepository,
    SqliteQueueRepository, SqliteReadinessProbe, SqliteReservationRepository,
    SqliteRetentionRepository, SqliteRoomRepository, SqliteStore, SqliteWalletRepository,
};

/// A fresh in-memory store.
pub struct EmbeddedStore {
    store: SqliteStore,
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn fresh() -> Self {
        Self {
            store: SqliteStore::in_memory().expect("an in-memory store"),
        }
    }

    fn catalog(&self) -> Arc<dyn CatalogRepository> {
        Arc::new(SqliteCatalogRepository::new(self.store.clone()))
    }
    fn reservations(&self) -> Arc<dyn ReservationRepository> {
        Arc::new(SqliteReservationRepository::new(self.store.clone()))
    }
    fn wallets(&self) -> Arc<dyn WalletRepository> {
        Arc::new(SqliteWalletRepository::new(self.store.clone()))
    }
    fn payments(&self) -> Arc<dyn PaymentRepository> {
        Arc::new(SqlitePaymentRepository::new(self.store.clone()))
    }
    fn idempotency(&self) -> Arc<dyn IdempotencyStore> {
        Arc::new(SqliteIdempotencyStore::new(self.store.clone()))
    }
    fn queue(&self) -> Arc<dyn QueueRepository> {
        Arc::new(SqliteQueueRepository::new(self.store.clone()))
    }
    fn rooms(&self) -> Arc<dyn RoomRepository> {
        Arc::new(SqliteRoomRepository::new(self.store.clone()))
    }
    fn retention(&self) -> Arc<dyn RetentionRepository> {
        Arc::new(SqliteRetentionRepository::new(self.store.clone()))
    }
    fn readiness(&self) -> Arc<dyn ReadinessProbe> {
        Arc::new(SqliteReadinessProbe::new(self.store.clone()))
    }

    async fn finish(self) {}
}

concert_contract::contract_tests!(EmbeddedStore);
