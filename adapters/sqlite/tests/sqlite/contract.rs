//! The ports' contract (`concert-contract`), the suite every store passes, run on the embedded
//! store: the same test code as on PostgreSQL.

use std::sync::Arc;

use concert_application::ports::{
    CatalogRepository, IdempotencyStore, PaymentRepository, QueueRepository, ReadinessProbe,
    ReservationRepository, RetentionRepository, RoomRepository, WalletRepository,
};
use concert_contract::{LineFigures, Store};
use concert_domain::TicketNo;
use concert_sqlite::testing::{count, line_figures, queue_rows, ticket_numbers};
use concert_sqlite::{
    SqliteCatalogRepository, SqliteIdempotencyStore, SqlitePaymentRepository,
    SqliteQueueRepository, SqliteReadinessProbe, SqliteReservationRepository,
    SqliteRetentionRepository, SqliteRoomRepository, SqliteStore, SqliteWalletRepository,
};
use time::OffsetDateTime;

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

    // ---- Waiting line. ----

    /// A step and an opening run in one `BEGIN IMMEDIATE` transaction, behind the one writer.
    const ONE_WRITER: bool = true;

    async fn line_rows(&self) -> String {
        queue_rows(&self.store).await
    }

    async fn ticket_numbers(&self) -> Vec<TicketNo> {
        ticket_numbers(&self.store).await.expect("tickets")
    }

    async fn admitted_at(&self, ticket: TicketNo) -> Option<OffsetDateTime> {
        let micros = count(
            &self.store,
            &format!(
                "SELECT coalesce((SELECT admitted_at FROM queue_tickets WHERE ticket = {}), -1) \
                 AS count",
                ticket.get()
            ),
        )
        .await;
        (micros >= 0).then(|| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
                .expect("an instant")
        })
    }

    async fn line_figures(&self) -> LineFigures {
        let [
            active,
            passed,
            admitted,
            highest_admitted,
            waiting,
            serving,
            admitted_total,
            counted_waiting,
        ] = line_figures(&self.store).await.expect("the line's figures");
        LineFigures {
            active,
            passed,
            admitted,
            highest_admitted,
            waiting,
            serving,
            admitted_total,
            counted_waiting,
        }
    }
}

concert_contract::contract_tests!(EmbeddedStore);
