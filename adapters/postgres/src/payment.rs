//! `PaymentRepository`: the one atomic step that turns a hold into a sale, with the end of the
//! payer's queue ticket: on the ticket itself when the line is in this database, or as a row of
//! `ticket_end_outbox` when it is kept in another store ([`TicketEnds`]).

use std::sync::LazyLock;

use async_trait::async_trait;
use concert_application::ports::{
    PaymentReceipt, PaymentRepository, PaymentState, PaymentWrite, RepositoryError, Written,
};
use concert_domain::{IdempotencyScope, PaymentId, ReservationId, TicketStatus, UserId};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;

use crate::cached::CachedExt;
use crate::columns::{
    BOOKING_FROM, BookingRow, RESERVATION_COLUMNS, SEAT_COLUMNS, WALLET_COLUMNS, WalletRow,
    claim_columns, ledger_kind, reservation_status, ticket_status,
};
use crate::committed::committed_row;
use crate::error::{compare_and_set, corrupt, from_diesel};
use crate::pool::PgPool;
use crate::wallet::{LEDGER_ENTRY, WALLET_CAS, key_binds};

/// Where a payment writes the end of the payer's queue ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TicketEnds {
    /// The line is in this database: the payment's statement ends the ticket.
    #[default]
    InTransaction,
    /// The line is kept in another store: the payment's statement writes the end to
    /// `ticket_end_outbox` instead, and `queue_tickets` is not touched
    /// (`concert_application::relay_ticket_ends` applies it to the line).
    Outbox,
}

#[derive(Debug, Clone)]
pub struct PgPaymentRepository {
    pool: PgPool,
    ticket_ends: TicketEnds,
}

impl PgPaymentRepository {
    /// Payments that end the ticket in their own statement (the line in this database).
    pub fn new(pool: PgPool) -> Self {
        Self::with_ticket_ends(pool, TicketEnds::InTransaction)
    }

    pub fn with_ticket_ends(pool: PgPool, ticket_ends: TicketEnds) -> Self {
        Self { pool, ticket_ends }
    }

    pub fn ticket_ends(&self) -> TicketEnds {
        self.ticket_ends
    }
}

static LOAD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {RESERVATION_COLUMNS}, {SEAT_COLUMNS}, {WALLET_COLUMNS} FROM {BOOKING_FROM} \
         LEFT JOIN wallets w ON w.user_id = $2 \
         WHERE r.id = $1"
    )
});

/// The payment statement, with `ended` the step that writes the ticket's end. `locked` locks the
/// reservation and its seat, both at the versions read; the wallet's compare-and-set goes ahead
/// only if they were; every other write follows the wallet's. So either all of it is written or
/// none.
///
/// Binds: `$1` payer, `$2` wallet version, `$3` balance after, `$4` time of the change, `$5`
/// (set by `locked`), `$6` ledger kind, `$7` signed amount, `$8` reservation, `$9` its version,
/// `$10` its new status, `$11` seat version, `$12..$16` the seat's new claim, `$17` price, `$18`
/// now, `$19` ticket, `$20` ticket status read, `$21` ticket's end status, `$22` key scope,
/// `$23` key, `$24` request hash, `$25` end reason.
fn save_statement(ended: &str) -> String {
    let wallet = WALLET_CAS.replace("WHERE $5", "WHERE EXISTS (SELECT 1 FROM locked)");
    format!(
        "WITH locked AS ( \
             SELECT r.concert_id, r.date, r.seat_no FROM reservations r \
             JOIN seats s ON s.concert_id = r.concert_id AND s.date = r.date \
                         AND s.seat_no = r.seat_no \
             WHERE r.id = $8 AND r.version = $9 AND s.version = $11 \
             FOR UPDATE OF r, s \
         ), {wallet}, {LEDGER_ENTRY}, confirmed AS ( \
             UPDATE reservations SET status = $10, updated_at = $18, version = version + 1 \
             WHERE id = $8 AND EXISTS (SELECT 1 FROM wallet) \
         ), sold AS ( \
             UPDATE seats s SET held_by_reservation = $12, held_by_user = $13, held_until = $14, \
                                sold_to_user = $15, sold_reservation = $16, \
                                version = s.version + 1 \
             FROM locked l \
             WHERE s.concert_id = l.concert_id AND s.date = l.date AND s.seat_no = l.seat_no \
               AND EXISTS (SELECT 1 FROM wallet) \
         ), payment AS ( \
             INSERT INTO payments (reservation_id, user_id, amount, ledger_entry_id, paid_at) \
             SELECT $8, $1, $17, entry.id, $18 FROM entry \
             RETURNING id, paid_at \
         ), ended AS ({ended}), key AS ( \
             INSERT INTO idempotency_keys (user_id, scope, key, request_hash, ledger_entry_id, \
                                           payment_id, created_at) \
             SELECT $1, $22, $23, $24, entry.id, payment.id, $18 FROM entry, payment \
             WHERE $23 IS NOT NULL \
         ) \
         SELECT payment.id, payment.paid_at FROM payment"
    )
}

/// The ticket ends with the payment only if it is still in the status the decision read (a
/// ticket that ended meanwhile does not undo the sale).
static SAVE: LazyLock<String> = LazyLock::new(|| {
    save_statement(
        "UPDATE queue_tickets SET status = $21, ended_at = $18, end_reason = $25 \
         WHERE ticket = $19 AND user_id = $1 AND status = $20 \
           AND EXISTS (SELECT 1 FROM wallet)",
    )
});

/// The end goes to the outbox, written by the payment's statement; `$21` is unused. A row left
/// by an earlier payment of the same number is replaced: the newest end is the one the number
/// can still concern (after the line's store started again empty, the number may name another
/// ticket), and a relay that read the old row deletes only that one (`PgTicketEndOutbox::done`).
static SAVE_TO_OUTBOX: LazyLock<String> = LazyLock::new(|| {
    save_statement(
        "INSERT INTO ticket_end_outbox (ticket, payer, read_as, reason, written_at) \
         SELECT $19, $1, $20, $25, $18 FROM payment \
         ON CONFLICT (ticket) DO UPDATE SET payer = EXCLUDED.payer, read_as = EXCLUDED.read_as, \
             reason = EXCLUDED.reason, written_at = EXCLUDED.written_at",
    )
});

#[async_trait]
impl PaymentRepository for PgPaymentRepository {
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
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let row: Option<Row> = diesel::sql_query(LOAD.as_str())
                    .bind::<BigInt, _>(reservation.get())
                    .bind::<SqlUuid, _>(payer.get())
                    .cached()
                    .get_result(&mut conn)
                    .await
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

    async fn save(&self, write: &PaymentWrite) -> Result<Written<PaymentReceipt>, RepositoryError> {
        #[derive(QueryableByName)]
        struct Paid {
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = Timestamptz)]
            paid_at: OffsetDateTime,
        }
        let reservation = &write.reservation.value;
        let (held_by, held_user, held_until, sold_to, sold_reservation) =
            claim_columns(write.seat.value.claim());
        let (key, hash) = key_binds(write.idempotency.as_ref());
        let statement = match self.ticket_ends {
            TicketEnds::InTransaction => SAVE.as_str(),
            TicketEnds::Outbox => SAVE_TO_OUTBOX.as_str(),
        };
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let paid = diesel::sql_query(statement)
                    .bind::<SqlUuid, _>(write.wallet.value.user().get())
                    .bind::<BigInt, _>(write.wallet.version.get())
                    .bind::<BigInt, _>(write.change.balance_after.get())
                    .bind::<Timestamptz, _>(write.change.at)
                    .bind::<Bool, _>(true)
                    .bind::<Text, _>(ledger_kind(write.change.kind))
                    .bind::<BigInt, _>(write.change.amount)
                    .bind::<BigInt, _>(reservation.id().get())
                    .bind::<BigInt, _>(write.reservation.version.get())
                    .bind::<Text, _>(reservation_status(reservation.stored_status()))
                    .bind::<BigInt, _>(write.seat.version.get())
                    .bind::<Nullable<BigInt>, _>(held_by)
                    .bind::<Nullable<SqlUuid>, _>(held_user)
                    .bind::<Nullable<Timestamptz>, _>(held_until)
                    .bind::<Nullable<SqlUuid>, _>(sold_to)
                    .bind::<Nullable<BigInt>, _>(sold_reservation)
                    .bind::<BigInt, _>(reservation.price().get())
                    .bind::<Timestamptz, _>(write.change.at)
                    .bind::<BigInt, _>(write.ticket.ticket.get())
                    .bind::<Text, _>(ticket_status(write.ticket.read_as))
                    .bind::<Text, _>(ticket_status(TicketStatus::Expired))
                    .bind::<Text, _>(IdempotencyScope::Payment.as_str())
                    .bind::<Nullable<Text>, _>(key)
                    .bind::<Nullable<Text>, _>(hash)
                    .bind::<Text, _>(write.ticket.reason.as_str())
                    .cached()
                    .load::<Paid>(&mut conn)
                    .await
                    .map(committed_row);
                let Written::Done(paid) = compare_and_set(paid)? else {
                    return Ok(Written::Stale);
                };
                Ok(Written::Done(PaymentReceipt {
                    payment_id: PaymentId::new(paid.id).map_err(corrupt)?,
                    reservation_id: reservation.id(),
                    amount: reservation.price(),
                    balance: write.change.balance_after,
                    paid_at: paid.paid_at,
                }))
            })
            .await
    }
}
