//! The ports' contract (`concert-contract`), the suite every store passes, run on the embedded
//! store: the same test code as on PostgreSQL.

use std::sync::Arc;

use concert_application::ports::{
    CatalogRepository, IdempotencyStore, PaymentRepository, QueueRepository, ReadinessProbe,
    ReservationRepository, RetentionRepository, RoomRepository, WalletRepository,
};
use concert_contract::{
    BookingCounts, LineFigures, RoomCounts, RowTimes, Store, StoredKey, StoredPayment, raw,
};
use concert_domain::{
    IdempotencyKey, IdempotencyScope, LedgerEntryId, LineNo, PaymentId, Reservation, ReservationId,
    SeatClaim, SeatRef, TicketNo, UserId,
};
use concert_sqlite::testing::{count, execute, line_figures, queue_rows, ticket_numbers};
use concert_sqlite::{
    SqliteCatalogRepository, SqliteIdempotencyStore, SqlitePaymentRepository,
    SqliteQueueRepository, SqliteReadinessProbe, SqliteReservationRepository,
    SqliteRetentionRepository, SqliteRoomRepository, SqliteStore, SqliteWalletRepository, testing,
};
use time::OffsetDateTime;

/// A fresh in-memory store.
pub struct EmbeddedStore {
    pub(crate) store: SqliteStore,
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

    // ---- Bookings and money. ----

    async fn booking_rows(&self) -> String {
        testing::rows(&self.store).await.expect("rows")
    }

    async fn booking_counts(&self) -> BookingCounts {
        let mut counts = [0; raw::BOOKING_COUNTS.len()];
        for (count, sql) in counts.iter_mut().zip(raw::BOOKING_COUNTS) {
            *count = testing::count(&self.store, sql).await;
        }
        BookingCounts::from_counts(counts)
    }

    async fn bump_seat(&self, seat: SeatRef) {
        self.execute(&raw::bump_seat(seat)).await;
    }

    async fn bump_reservation(&self, reservation: ReservationId) {
        self.execute(&raw::bump_reservation(reservation)).await;
    }

    async fn bump_wallet(&self, user: UserId) {
        self.execute(&raw::bump_wallet(user)).await;
    }

    async fn reservation_times(&self, reservation: ReservationId) -> Option<RowTimes> {
        let column = |name: &str| {
            format!(
                "SELECT {name} AS value FROM reservations WHERE id = {}",
                reservation.get()
            )
        };
        Some(RowTimes {
            created_at: instant(testing::number(&self.store, &column("created_at")).await?),
            updated_at: instant(testing::number(&self.store, &column("updated_at")).await?),
        })
    }

    async fn stored_payment(&self, payment: PaymentId) -> Option<StoredPayment> {
        let column = |name: &str| {
            format!(
                "SELECT {name} AS value FROM payments WHERE id = {}",
                payment.get()
            )
        };
        let number = |name: &str| {
            let sql = column(name);
            async move { testing::number(&self.store, &sql).await }
        };
        Some(StoredPayment {
            reservation: ReservationId::new(number("reservation_id").await?).expect("an id"),
            user: UserId::parse(&testing::text(&self.store, &column("user_id")).await?)
                .expect("a user"),
            amount: number("amount").await?,
            ledger_entry: LedgerEntryId::new(number("ledger_entry_id").await?).expect("an id"),
            paid_at: instant(number("paid_at").await?),
        })
    }

    async fn stored_key(
        &self,
        user: UserId,
        scope: IdempotencyScope,
        key: &IdempotencyKey,
    ) -> Option<StoredKey> {
        let column = |name: &str| {
            format!(
                "SELECT {name} AS value FROM idempotency_keys WHERE user_id = '{user}' \
                 AND scope = '{}' AND key = '{}'",
                scope.as_str(),
                key.as_str()
            )
        };
        let number = |name: &str| {
            let sql = column(name);
            async move { testing::number(&self.store, &sql).await }
        };
        Some(StoredKey {
            request_hash: testing::text(&self.store, &column("request_hash")).await?,
            ledger_entry: LedgerEntryId::new(number("ledger_entry_id").await?).expect("an id"),
            payment: number("payment_id")
                .await
                .map(|id| PaymentId::new(id).expect("an id")),
            created_at: instant(number("created_at").await?),
        })
    }

    async fn ticket_ended_at(&self, ticket: TicketNo) -> Option<OffsetDateTime> {
        testing::number(
            &self.store,
            &format!(
                "SELECT ended_at AS value FROM queue_tickets WHERE ticket = {}",
                ticket.get()
            ),
        )
        .await
        .map(instant)
    }

    // ---- Catalog, rooms and retention. ----

    /// Checks on the way that concert ids were drawn without gaps (the `concerts` counter).
    async fn catalog_counts(&self) -> (u64, u64) {
        let gaps = count(
            &self.store,
            "SELECT coalesce(max(id), 0) - count(*) AS count FROM concerts",
        )
        .await;
        assert_eq!(gaps, 0, "concert ids are drawn without gaps");
        let dates = count(&self.store, "SELECT count(*) AS count FROM concert_dates").await;
        let seats = count(&self.store, "SELECT count(*) AS count FROM seats").await;
        (unsigned(dates), unsigned(seats))
    }

    async fn clear_bookings(&self) {
        let [free_seats, forget_reservations] = raw::CLEAR_BOOKINGS;
        self.run(free_seats).await;
        self.execute(forget_reservations).await;
    }

    async fn insert_reservation(&self, r: &Reservation, at: OffsetDateTime) {
        self.run(&raw::insert_reservation(r, at, micros_sql)).await;
    }

    async fn set_claim(&self, seat: SeatRef, claim: SeatClaim) {
        self.run(&raw::set_claim(seat, claim, micros_sql)).await;
    }

    /// Rooms, their concerts, the lines' states and the counter new lines are drawn from.
    async fn room_rows(&self) -> String {
        let tables = [
            "SELECT json_array(room_id, line, max_active, state, version, updated_at, \
                    admit_per_minute, waiting_idle_seconds, waiting_idle_since, opens_at, \
                    shuffle_at_open, opened) AS r FROM rooms ORDER BY room_id",
            "SELECT json_array(concert_id, room_id) AS r FROM room_concerts ORDER BY concert_id",
            "SELECT json_array(line, serving, admitted_total, issued_total, issued_hwm, \
                    ended_waiting_total, pace_credit_millis, pace_at) AS r \
             FROM queue_state ORDER BY line",
            "SELECT json_array(name, value) AS r FROM counters WHERE name = 'room_lines'",
        ];
        let mut dump = Vec::new();
        for rows in tables {
            dump.push(
                concert_sqlite::testing::dump(
                    &self.store,
                    &format!("SELECT coalesce(group_concat(r, ';'), '') AS dump FROM ({rows})"),
                )
                .await,
            );
        }
        dump.join("|")
    }

    /// Checks on the way that no line number was lost: the `room_lines` counter stands at the
    /// highest line drawn.
    async fn room_counts(&self) -> RoomCounts {
        let lost = count(
            &self.store,
            "SELECT coalesce((SELECT value FROM counters WHERE name = 'room_lines'), 0) \
                    - (SELECT max(line) FROM queue_state) AS count",
        )
        .await;
        assert_eq!(lost, 0, "lines are drawn without gaps");
        RoomCounts {
            rooms: unsigned(count(&self.store, "SELECT count(*) AS count FROM rooms").await),
            room_concerts: unsigned(
                count(&self.store, "SELECT count(*) AS count FROM room_concerts").await,
            ),
            lines: unsigned(count(&self.store, "SELECT count(*) AS count FROM queue_state").await),
        }
    }

    async fn set_serving(&self, line: LineNo, serving: TicketNo) {
        self.run(&format!(
            "UPDATE queue_state SET serving = {} WHERE line = {}",
            serving.get(),
            line.get()
        ))
        .await;
    }

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

impl EmbeddedStore {
    /// Runs a fixture's statement; panics unless it wrote a row.
    async fn run(&self, sql: &str) {
        let written = execute(&self.store, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        assert!(written > 0, "{sql}: no row written");
    }

    /// Runs a SQL statement behind the ports' back.
    async fn execute(&self, sql: &str) {
        testing::execute(&self.store, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
}

fn unsigned(count: i64) -> u64 {
    u64::try_from(count).expect("a count")
}

/// An instant as the store keeps it, in SQL: microseconds since the epoch.
fn micros_sql(at: OffsetDateTime) -> String {
    (at.unix_timestamp_nanos() / 1_000).to_string()
}

/// An instant as the store keeps it (microseconds since the epoch).
fn instant(micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).expect("an instant")
}

concert_contract::contract_tests!(EmbeddedStore);
