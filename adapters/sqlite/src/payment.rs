//! `PaymentRepository`: the one atomic step that turns a hold into a sale.

use async_trait::async_trait;
use concert_application::ports::{
    PaymentReceipt, PaymentRepository, PaymentState, PaymentWrite, RepositoryError, Written,
};
use concert_domain::{IdempotencyScope, PaymentId, ReservationId, TicketStatus, UserId};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::columns::SEAT_COLUMNS;
use crate::columns::{instant, micros, user_text};
use crate::counters::{IdTable, next_id};
use crate::error::{corrupt, from_diesel, stale_on_unique_violation};
use crate::reservation::{
    BOOKING_FROM, BookingRow, RESERVATION_COLUMNS, load_booking, write_claim, write_status,
};
use crate::store::SqliteStore;
use crate::wallet::{WALLET_COLUMNS, WalletRow, append_entry, store_key, wallet_cas};

#[derive(Debug, Clone)]
pub struct SqlitePaymentRepository {
    store: SqliteStore,
}

impl SqlitePaymentRepository {
    pub fn new(store: SqliteStore) -> Self {
        Self { store }
    }
}

#[async_trait]
impl PaymentRepository for SqlitePaymentRepository {
    async fn load(
        &self,
        reservation: ReservationId,
        payer: UserId,
    ) -> Result<Option<PaymentState>, RepositoryError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(embed)]
            booking: BookingRow,
            #[diesel(embed)]
            wallet: WalletRow,
        }
        self.store
            .read(move |conn| {
                let row: Option<Row> = diesel::sql_query(format!(
                    "SELECT {RESERVATION_COLUMNS}, {SEAT_COLUMNS}, {WALLET_COLUMNS} \
                     FROM {BOOKING_FROM} LEFT JOIN wallets w ON w.user_id = ?2 \
                     WHERE r.id = ?1"
                ))
                .bind::<BigInt, _>(reservation.get())
                .bind::<Text, _>(user_text(payer))
                .get_result(conn)
                .optional()
                .map_err(from_diesel)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                Ok(Some(PaymentState {
                    booking: row.booking.into_domain()?,
                    wallet: row.wallet.into_domain(payer)?,
                }))
            })
            .await
    }

    /// The reservation and its seat at the versions read, then the wallet's compare-and-set;
    /// only then the confirmed reservation, the sold seat, the ledger entry, the payment, the
    /// end of the ticket (only while it is in the status read: it never blocks the sale) and the
    /// key row, last. All or nothing, as PostgreSQL's one statement.
    async fn save(&self, write: &PaymentWrite) -> Result<Written<PaymentReceipt>, RepositoryError> {
        let write = write.clone();
        let written = self
            .store
            .write(move |conn| {
                let reservation = &write.reservation;
                let id = reservation.value.id();
                let Some(current) = load_booking(conn, id)? else {
                    return Ok(Written::Stale);
                };
                if current.reservation.version != reservation.version
                    || current.seat.version != write.seat.version
                {
                    return Ok(Written::Stale);
                }
                let payer = user_text(write.wallet.value.user());
                if !wallet_cas(conn, &payer, write.wallet.version, &write.change)? {
                    return Ok(Written::Stale);
                }
                let now = write.change.at;
                let entry = append_entry(conn, &payer, &write.change)?;
                let confirmed = write_status(
                    conn,
                    id,
                    reservation.version,
                    reservation.value.stored_status(),
                    now,
                )?;
                let sold = write_claim(
                    conn,
                    current.reservation.value.seat(),
                    write.seat.version,
                    write.seat.value.claim(),
                )?;
                if !(confirmed && sold) {
                    return Err(RepositoryError::Unexpected(
                        "the booking moved inside its own write transaction".into(),
                    ));
                }
                let payment = next_id(conn, IdTable::Payments).map_err(from_diesel)?;
                let price = reservation.value.price();
                diesel::sql_query(
                    "INSERT INTO payments (id, reservation_id, user_id, amount, ledger_entry_id, \
                                           paid_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .bind::<BigInt, _>(payment)
                .bind::<BigInt, _>(id.get())
                .bind::<Text, _>(&payer)
                .bind::<BigInt, _>(price.get())
                .bind::<BigInt, _>(entry)
                .bind::<BigInt, _>(micros(now))
                .execute(conn)
                .map_err(from_diesel)?;
                diesel::sql_query(
                    "UPDATE queue_tickets SET status = ?1, ended_at = ?2, end_reason = ?3 \
                     WHERE ticket = ?4 AND user_id = ?5 AND status = ?6",
                )
                .bind::<Text, _>(TicketStatus::Expired.as_str())
                .bind::<BigInt, _>(micros(now))
                .bind::<Text, _>(write.ticket.reason.as_str())
                .bind::<BigInt, _>(write.ticket.ticket.get())
                .bind::<Text, _>(&payer)
                .bind::<Text, _>(write.ticket.read_as.as_str())
                .execute(conn)
                .map_err(from_diesel)?;
                if let Some(record) = &write.idempotency {
                    store_key(
                        conn,
                        &payer,
                        IdempotencyScope::Payment,
                        record,
                        entry,
                        Some(payment),
                        now,
                    )?;
                }
                Ok(Written::Done(PaymentReceipt {
                    payment_id: PaymentId::new(payment).map_err(corrupt)?,
                    reservation_id: id,
                    amount: price,
                    balance: write.change.balance_after,
                    // As stored (microseconds), as PostgreSQL returns it from the row.
                    paid_at: instant(micros(now))?,
                }))
            })
            .await;
        // A key stored by a twin rolled the whole payment back: a lost race, as on PostgreSQL.
        stale_on_unique_violation(written)
    }
}
