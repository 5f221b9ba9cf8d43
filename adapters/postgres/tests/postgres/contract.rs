//! The ports' contract (`concert-contract`), the suite every store passes, run on PostgreSQL.

use std::sync::Arc;

use concert_application::ports::{
    CatalogRepository, IdempotencyStore, PaymentRepository, QueueRepository, ReadinessProbe,
    ReservationRepository, RetentionRepository, RoomRepository, WalletRepository,
};
use concert_contract::{
    BookingCounts, LineFigures, RACERS, RoomCounts, RowTimes, Store, StoredKey, StoredPayment, raw,
};
use concert_domain::{
    IdempotencyKey, IdempotencyScope, LedgerEntryId, LineNo, PaymentId, Reservation, ReservationId,
    SeatClaim, SeatRef, TicketNo, UserId,
};
use concert_postgres::{PgRetentionRepository, PgRoomRepository};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use time::OffsetDateTime;

use crate::support::Ctx;

/// A fresh database with a pool wide enough for every racer of a contract at once (two spare
/// for the fixtures' reads), reserved from the binary's connection budget.
pub struct PgStore {
    pub(crate) ctx: Ctx,
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

    // ---- Bookings and money. ----

    async fn booking_rows(&self) -> String {
        self.ctx.rows().await
    }

    async fn booking_counts(&self) -> BookingCounts {
        let mut counts = [0; raw::BOOKING_COUNTS.len()];
        for (count, sql) in counts.iter_mut().zip(raw::BOOKING_COUNTS) {
            *count = self.ctx.count(sql).await;
        }
        BookingCounts::from_counts(counts)
    }

    async fn bump_seat(&self, seat: SeatRef) {
        self.ctx.execute(&raw::bump_seat(seat)).await;
    }

    async fn bump_reservation(&self, reservation: ReservationId) {
        self.ctx.execute(&raw::bump_reservation(reservation)).await;
    }

    async fn bump_wallet(&self, user: UserId) {
        self.ctx.execute(&raw::bump_wallet(user)).await;
    }

    async fn reservation_times(&self, reservation: ReservationId) -> Option<RowTimes> {
        let column = |name: &str| {
            format!(
                "SELECT {} AS value FROM reservations WHERE id = {}",
                micros(name),
                reservation.get()
            )
        };
        Some(RowTimes {
            created_at: instant(self.number(&column("created_at")).await?),
            updated_at: instant(self.number(&column("updated_at")).await?),
        })
    }

    async fn stored_payment(&self, payment: PaymentId) -> Option<StoredPayment> {
        let column = |expression: &str| {
            format!(
                "SELECT {expression} AS value FROM payments WHERE id = {}",
                payment.get()
            )
        };
        Some(StoredPayment {
            reservation: ReservationId::new(self.number(&column("reservation_id")).await?)
                .expect("an id"),
            user: UserId::parse(&self.text(&column("user_id::text")).await?).expect("a user"),
            amount: self.number(&column("amount")).await?,
            ledger_entry: LedgerEntryId::new(self.number(&column("ledger_entry_id")).await?)
                .expect("an id"),
            paid_at: instant(self.number(&column(&micros("paid_at"))).await?),
        })
    }

    async fn stored_key(
        &self,
        user: UserId,
        scope: IdempotencyScope,
        key: &IdempotencyKey,
    ) -> Option<StoredKey> {
        let column = |expression: &str| {
            format!(
                "SELECT {expression} AS value FROM idempotency_keys WHERE user_id = '{user}' \
                 AND scope = '{}' AND key = '{}'",
                scope.as_str(),
                key.as_str()
            )
        };
        Some(StoredKey {
            request_hash: self.text(&column("request_hash")).await?,
            ledger_entry: LedgerEntryId::new(self.number(&column("ledger_entry_id")).await?)
                .expect("an id"),
            payment: self
                .number(&column("payment_id"))
                .await
                .map(|id| PaymentId::new(id).expect("an id")),
            created_at: instant(self.number(&column(&micros("created_at"))).await?),
        })
    }

    async fn ticket_ended_at(&self, ticket: TicketNo) -> Option<OffsetDateTime> {
        self.number(&format!(
            "SELECT {} AS value FROM queue_tickets WHERE ticket = {}",
            micros("ended_at"),
            ticket.get()
        ))
        .await
        .map(instant)
    }

    // ---- Catalog, rooms and retention. ----

    async fn catalog_counts(&self) -> (u64, u64) {
        let dates = self
            .ctx
            .count("SELECT count(*) AS count FROM concert_dates")
            .await;
        let seats = self.ctx.count("SELECT count(*) AS count FROM seats").await;
        (unsigned(dates), unsigned(seats))
    }

    async fn clear_bookings(&self) {
        for sql in raw::CLEAR_BOOKINGS {
            self.ctx.execute(sql).await;
        }
    }

    async fn insert_reservation(&self, r: &Reservation, at: OffsetDateTime) {
        self.ctx
            .execute(&raw::insert_reservation(r, at, sql_time))
            .await;
    }

    async fn set_claim(&self, seat: SeatRef, claim: SeatClaim) {
        self.ctx
            .execute(&raw::set_claim(seat, claim, sql_time))
            .await;
    }

    /// Rooms, their concerts and the lines' states, with the names of the lines' sequences.
    async fn room_rows(&self) -> String {
        use diesel_async::RunQueryDsl;

        #[derive(QueryableByName)]
        struct Dump {
            #[diesel(sql_type = Text)]
            dump: String,
        }
        let mut conn = self.ctx.pool.get().await.expect("a pooled connection");
        diesel::sql_query(
            "SELECT (SELECT coalesce(string_agg(r::text, ';' ORDER BY r.room_id), '') \
                     FROM rooms r) \
                 || '|' || (SELECT coalesce(string_agg(c::text, ';' ORDER BY c.concert_id), '') \
                            FROM room_concerts c) \
                 || '|' || (SELECT coalesce(string_agg(s::text, ';' ORDER BY s.line), '') \
                            FROM queue_state s) \
                 || '|' || (SELECT coalesce(string_agg(sequencename, ';' \
                                                       ORDER BY sequencename), '') \
                            FROM pg_sequences WHERE sequencename LIKE 'queue_line_%') AS dump",
        )
        .get_result::<Dump>(&mut conn)
        .await
        .expect("dump")
        .dump
    }

    /// A line is its `queue_state` row and its sequence `queue_line_<line>_seq`: every line has
    /// both, and no sequence is left without its line.
    async fn room_counts(&self) -> RoomCounts {
        let unmatched = self
            .ctx
            .count(
                "SELECT count(*) AS count FROM queue_state s \
                 FULL JOIN (SELECT sequencename FROM pg_sequences \
                            WHERE sequencename LIKE 'queue\\_line\\_%') q \
                   ON q.sequencename = 'queue_line_' || s.line || '_seq' \
                 WHERE s.line IS NULL OR q.sequencename IS NULL",
            )
            .await;
        assert_eq!(unmatched, 0, "every line has its state and its sequence");
        RoomCounts {
            rooms: unsigned(self.ctx.count("SELECT count(*) AS count FROM rooms").await),
            room_concerts: unsigned(
                self.ctx
                    .count("SELECT count(*) AS count FROM room_concerts")
                    .await,
            ),
            lines: unsigned(
                self.ctx
                    .count("SELECT count(*) AS count FROM queue_state")
                    .await,
            ),
        }
    }

    async fn set_serving(&self, line: LineNo, serving: TicketNo) {
        self.ctx
            .execute(&format!(
                "UPDATE queue_state SET serving = {} WHERE line = {}",
                serving.get(),
                line.get()
            ))
            .await;
    }

    // ---- Waiting line. ----

    async fn line_rows(&self) -> String {
        use diesel_async::RunQueryDsl;

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
        use diesel_async::RunQueryDsl;

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
        use diesel_async::RunQueryDsl;

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
        use diesel_async::RunQueryDsl;

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

fn unsigned(count: i64) -> u64 {
    u64::try_from(count).expect("a count")
}

fn sql_time(at: OffsetDateTime) -> String {
    let text = at
        .format(&time::format_description::well_known::Rfc3339)
        .expect("an RFC 3339 time");
    format!("'{text}'")
}

impl PgStore {
    /// The `value` column of the first row of `sql` (`None` without a row, or for `NULL`).
    async fn number(&self, sql: &str) -> Option<i64> {
        use diesel_async::RunQueryDsl;
        #[derive(QueryableByName)]
        struct Value {
            #[diesel(sql_type = Nullable<BigInt>)]
            value: Option<i64>,
        }
        let mut conn = self.ctx.pool.get().await.expect("a pooled connection");
        let rows: Vec<Value> = diesel::sql_query(sql)
            .load(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter().next().and_then(|row| row.value)
    }

    /// The `value` text column of the first row of `sql` (`None` without a row, or for `NULL`).
    async fn text(&self, sql: &str) -> Option<String> {
        use diesel_async::RunQueryDsl;
        #[derive(QueryableByName)]
        struct Value {
            #[diesel(sql_type = Nullable<Text>)]
            value: Option<String>,
        }
        let mut conn = self.ctx.pool.get().await.expect("a pooled connection");
        let rows: Vec<Value> = diesel::sql_query(sql)
            .load(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter().next().and_then(|row| row.value)
    }
}

/// A `timestamptz` column as microseconds since the epoch.
fn micros(column: &str) -> String {
    format!("(extract(epoch FROM {column}) * 1000000)::bigint")
}

fn instant(micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).expect("an instant")
}

concert_contract::contract_tests!(PgStore);
