//! The ports' contract (`concert-contract`), the suite every store passes, run on PostgreSQL.

use std::sync::Arc;

use concert_application::ports::{
    CatalogRepository, IdempotencyStore, PaymentRepository, QueueRepository, ReadinessProbe,
    ReservationRepository, RetentionRepository, RoomRepository, WalletRepository,
};
use concert_contract::{RACERS, Store};
use concert_postgres::{PgRetentionRepository, PgRoomRepository};

use crate::support::Ctx;

/// A fresh database with a pool wide enough for every racer of a contract at once (two spare
/// for the fixtures' reads), reserved from the binary's connection budget.
pub struct PgStore {
    ctx: Ctx,
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn fresh() -> Self {
        let connections = u32::try_from(RACERS).expect("a few racers") + 2;
        Self {
            ctx: Ctx::with_connections(connections).await,
        }
    }

    fn catalog(&self) -> Arc<dyn CatalogRepository> {
        Arc::new(self.ctx.catalog())
    }
    fn reservations(&self) -> Arc<dyn ReservationRepository> {
        Arc::new(self.ctx.reservations())
    }
    fn wallets(&self) -> Arc<dyn WalletRepository> {
        Arc::new(self.ctx.wallets())
    }
    fn payments(&self) -> Arc<dyn PaymentRepository> {
        Arc::new(self.ctx.payments())
    }
    fn idempotency(&self) -> Arc<dyn IdempotencyStore> {
        Arc::new(self.ctx.idempotency())
    }
    fn queue(&self) -> Arc<dyn QueueRepository> {
        Arc::new(self.ctx.queue())
    }
    fn rooms(&self) -> Arc<dyn RoomRepository> {
        Arc::new(PgRoomRepository::new(self.ctx.pool.clone()))
    }
    fn retention(&self) -> Arc<dyn RetentionRepository> {
        Arc::new(PgRetentionRepository::new(self.ctx.pool.clone()))
    }
    fn readiness(&self) -> Arc<dyn ReadinessProbe> {
        Arc::new(self.ctx.readiness())
    }

    async fn finish(self) {
        self.ctx.finish().await;
    }
}

concert_contract::contract_tests!(PgStore);
