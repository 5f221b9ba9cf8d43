//! The ports' contract (`concert-contract`), the suite every store passes, run on PostgreSQL.

use std::sync::Arc;

use concert_application::ports::{
    CatalogRepository, IdempotencyStore, PaymentRepository, QueueRepository, ReadinessProbe,
    ReservationRepository, RetentionRepository, RoomRepository, WalletRepository,
};
use concert_contract::{LineFigures, RACERS, Store};
use concert_domain::TicketNo;
use concert_postgres::{PgRetentionRepository, PgRoomRepository};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;

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

    // ---- Waiting line. ----

    async fn line_rows(&self) -> String {
        #[derive(QueryableByName)]
        struct Dump {
            #[diesel(sql_type = Text)]
            dump: String,
        }
        // The lines' sequences by their last value: a number drawn and rolled back moves it.
        let mut conn = self.ctx.pool.get().await.expect("a pooled connection");
        diesel::sql_query(
            "SELECT (SELECT coalesce(string_agg(t::text, ';' ORDER BY t.ticket), '') \
                     FROM queue_tickets t) \
                 || '|' || (SELECT coalesce(string_agg(m::text, ';' ORDER BY m::text), '') \
                     FROM queue_members m) \
                 || '|' || (SELECT coalesce(string_agg(s::text, ';' ORDER BY s.line), '') \
                     FROM queue_state s) \
                 || '|' || (SELECT coalesce(string_agg(p::text, ';' ORDER BY p.entry), '') \
                     FROM pre_queue p) \
                 || '|' || (SELECT coalesce(string_agg(r::text, ';' ORDER BY r.room_id), '') \
                     FROM rooms r) \
                 || '|' || (SELECT coalesce(string_agg(sequencename || '=' \
                                || coalesce(last_value::text, '-'), ';' ORDER BY sequencename), '') \
                     FROM pg_sequences WHERE sequencename LIKE 'queue_line_%') AS dump",
        )
        .get_result::<Dump>(&mut conn)
        .await
        .expect("dump")
        .dump
    }

    async fn ticket_numbers(&self) -> Vec<TicketNo> {
        #[derive(QueryableByName)]
        struct Number {
            #[diesel(sql_type = BigInt)]
            ticket: i64,
        }
        let mut conn = self.ctx.pool.get().await.expect("a pooled connection");
        diesel::sql_query("SELECT ticket FROM queue_tickets ORDER BY ticket")
            .load::<Number>(&mut conn)
            .await
            .expect("tickets")
            .into_iter()
            .map(|row| TicketNo::new(row.ticket).expect("a ticket number"))
            .collect()
    }

    async fn admitted_at(&self, ticket: TicketNo) -> Option<OffsetDateTime> {
        #[derive(QueryableByName)]
        struct Admitted {
            #[diesel(sql_type = Nullable<Timestamptz>)]
            admitted_at: Option<OffsetDateTime>,
        }
        let mut conn = self.ctx.pool.get().await.expect("a pooled connection");
        diesel::sql_query("SELECT admitted_at FROM queue_tickets WHERE ticket = $1")
            .bind::<BigInt, _>(ticket.get())
            .load::<Admitted>(&mut conn)
            .await
            .expect("admitted_at")
            .into_iter()
            .next()
            .and_then(|row| row.admitted_at)
    }

    async fn line_figures(&self) -> LineFigures {
        #[derive(QueryableByName)]
        struct Figures {
            #[diesel(sql_type = BigInt)]
            active: i64,
            #[diesel(sql_type = BigInt)]
            passed: i64,
            #[diesel(sql_type = BigInt)]
            admitted: i64,
            #[diesel(sql_type = BigInt)]
            highest_admitted: i64,
            #[diesel(sql_type = BigInt)]
            waiting: i64,
            #[diesel(sql_type = BigInt)]
            serving: i64,
            #[diesel(sql_type = BigInt)]
            admitted_total: i64,
            #[diesel(sql_type = BigInt)]
            counted_waiting: i64,
        }
        // One statement: one snapshot of committed state.
        let mut conn = self.ctx.pool.get().await.expect("a pooled connection");
        let row: Figures = diesel::sql_query(
            "SELECT (SELECT count(*) FROM queue_tickets WHERE status = 'ACTIVE') AS active, \
                    (SELECT count(*) FROM queue_tickets w JOIN queue_tickets a \
                       ON w.status = 'WAITING' AND a.admitted_at IS NOT NULL \
                      AND w.ticket < a.ticket) AS passed, \
                    (SELECT count(*) FROM queue_tickets WHERE admitted_at IS NOT NULL) \
                      AS admitted, \
                    (SELECT coalesce(max(ticket), 0) FROM queue_tickets \
                      WHERE admitted_at IS NOT NULL) AS highest_admitted, \
                    (SELECT count(*) FROM queue_tickets WHERE status = 'WAITING') AS waiting, \
                    s.serving, s.admitted_total, \
                    s.issued_total - s.admitted_total \
                      + (SELECT count(*) FROM queue_tickets t WHERE t.ticket > s.issued_hwm) \
                      AS counted_waiting \
             FROM queue_state s WHERE s.line = 0",
        )
        .get_result(&mut conn)
        .await
        .expect("the line's figures");
        LineFigures {
            active: row.active,
            passed: row.passed,
            admitted: row.admitted,
            highest_admitted: row.highest_admitted,
            waiting: row.waiting,
            serving: row.serving,
            admitted_total: row.admitted_total,
            counted_waiting: row.counted_waiting,
        }
    }
}

concert_contract::contract_tests!(PgStore);
