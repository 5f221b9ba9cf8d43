//! `PaymentRepository`: the one transaction that turns a hold into a sale.

use async_trait::async_trait;
use concert_application::ports::{
    PaymentOutcome, PaymentReceipt, PaymentRepository, PaymentRequest, RepositoryError,
};
use concert_domain::{Balance, IdempotencyScope, LedgerKind, PaymentId, Price, ReservationStatus};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cached::CachedExt;
use crate::error::{Abort, settle};
use crate::idempotency::{claim_key, store_key};
use crate::pool::PgPool;
use crate::schema::{payments, queue_tickets, reservations, seats, wallets};
use crate::wallet::{append_entry, ensure_wallet};

#[derive(Debug, Clone)]
pub struct PgPaymentRepository {
    pool: PgPool,
}

impl PgPaymentRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl PaymentRepository for PgPaymentRepository {
    async fn pay(&self, request: &PaymentRequest) -> Result<PaymentOutcome, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let result = conn
                    .transaction::<_, Abort<PaymentOutcome>, _>(async |conn| {
                        pay_in_transaction(conn, request).await
                    })
                    .await;
                settle(result)
            })
            .await
    }
}

fn invariant(what: &'static str) -> impl Fn(concert_domain::ParseError) -> Abort<PaymentOutcome> {
    move |e| {
        Abort::Db(DieselError::DeserializationError(
            format!("{what}: {e}").into(),
        ))
    }
}

/// The payment transaction. Locks are taken in the order reservation → wallet → seat → ticket,
/// the same order as every other transaction that touches two of them, so none can deadlock.
async fn pay_in_transaction(
    conn: &mut AsyncPgConnection,
    request: &PaymentRequest,
) -> Result<PaymentOutcome, Abort<PaymentOutcome>> {
    let user = request.user;
    let now = request.now;
    // 1. The key first: a retry waits for its first attempt and then finds the stored answer.
    if let Some(record) = &request.idempotency
        && !claim_key(conn, user, IdempotencyScope::Payment, &record.key).await?
    {
        return Err(Abort::Outcome(PaymentOutcome::KeyAlreadyUsed));
    }
    // 2. Lock the reservation: a second payment of it waits here, then sees CONFIRMED.
    let reservation: Option<(Uuid, String, OffsetDateTime, i64, i64, time::Date, i32)> =
        reservations::table
            .find(request.reservation.get())
            .select((
                reservations::user_id,
                reservations::status,
                reservations::expires_at,
                reservations::price,
                reservations::concert_id,
                reservations::date,
                reservations::seat_no,
            ))
            .for_no_key_update()
            .first(conn)
            .await
            .optional()?;
    let Some((owner, status, expires_at, price, concert_id, date, seat_no)) = reservation else {
        return Err(Abort::Outcome(PaymentOutcome::ReservationNotHeld));
    };
    if owner != user.get() || status != ReservationStatus::Held.as_str() {
        return Err(Abort::Outcome(PaymentOutcome::ReservationNotHeld));
    }
    if expires_at <= now {
        return Err(Abort::Outcome(PaymentOutcome::HoldLapsed));
    }
    // 3. The debit, conditional: a balance can never go negative, whatever runs at once.
    ensure_wallet(conn, user, now).await?;
    let balance: Option<i64> = diesel::update(wallets::table.find(user.get()))
        .filter(wallets::balance.ge(price))
        .set((
            wallets::balance.eq(wallets::balance - price),
            wallets::updated_at.eq(now),
        ))
        .returning(wallets::balance)
        .cached()
        .get_result(conn)
        .await
        .optional()?;
    let Some(balance) = balance else {
        return Err(Abort::Outcome(PaymentOutcome::InsufficientBalance));
    };
    // 4. Sell the seat, only while this reservation's hold on it is live at `now`.
    let sold = diesel::update(seats::table)
        .filter(seats::concert_id.eq(concert_id))
        .filter(seats::date.eq(date))
        .filter(seats::seat_no.eq(seat_no))
        .filter(seats::held_by_reservation.eq(request.reservation.get()))
        .filter(seats::held_until.gt(now))
        .set((
            seats::sold_to_user.eq(Some(user.get())),
            seats::sold_reservation.eq(Some(request.reservation.get())),
            seats::held_by_reservation.eq(None::<i64>),
            seats::held_by_user.eq(None::<Uuid>),
            seats::held_until.eq(None::<OffsetDateTime>),
        ))
        .cached()
        .execute(conn)
        .await?;
    if sold == 0 {
        return Err(Abort::Outcome(PaymentOutcome::HoldLapsed));
    }
    // 5. The reservation is confirmed (a partial unique index keeps one CONFIRMED per seat).
    diesel::update(reservations::table.find(request.reservation.get()))
        .set((
            reservations::status.eq(ReservationStatus::Confirmed.as_str()),
            reservations::updated_at.eq(now),
        ))
        .cached()
        .execute(conn)
        .await?;
    // 6. The ledger entry and the payment.
    let entry = append_entry(conn, user, LedgerKind::Payment, -price, balance, now).await?;
    let (payment_id, paid_at): (i64, OffsetDateTime) = diesel::insert_into(payments::table)
        .values((
            payments::reservation_id.eq(request.reservation.get()),
            payments::user_id.eq(user.get()),
            payments::amount.eq(price),
            payments::ledger_entry_id.eq(entry),
            payments::paid_at.eq(now),
        ))
        .returning((payments::id, payments::paid_at))
        .cached()
        .get_result(conn)
        .await?;
    // 7. The caller's queue ticket ends; its place goes to the next in line. Only an ACTIVE
    //    ticket: a waiting one was never allowed to pay, and waiting tickets leave the line only
    //    through admission (which keeps the waiting count exact).
    diesel::update(queue_tickets::table.find(request.ticket.get()))
        .filter(queue_tickets::user_id.eq(user.get()))
        .filter(queue_tickets::status.eq("ACTIVE"))
        .set((
            queue_tickets::status.eq("EXPIRED"),
            queue_tickets::ended_at.eq(Some(now)),
        ))
        .cached()
        .execute(conn)
        .await?;
    // 8. The key, pointing at what was written: the stored answer is rebuilt from these rows.
    if let Some(record) = &request.idempotency
        && !store_key(
            conn,
            user,
            IdempotencyScope::Payment,
            record,
            entry,
            Some(payment_id),
            now,
        )
        .await?
    {
        return Err(Abort::Outcome(PaymentOutcome::KeyAlreadyUsed));
    }
    Ok(PaymentOutcome::Paid(PaymentReceipt {
        payment_id: PaymentId::new(payment_id).map_err(invariant("payment id"))?,
        reservation_id: request.reservation,
        amount: Price::from_stored(price),
        balance: Balance::new(balance).map_err(invariant("balance"))?,
        paid_at,
    }))
}
