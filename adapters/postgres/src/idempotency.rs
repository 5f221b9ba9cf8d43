//! `IdempotencyStore`: the first answer of an idempotent request, rebuilt from the rows its key
//! points at. The key row is written by the charge's or the payment's own statement, with the
//! effect, so it exists if and only if the effect does (see `wallet.rs` and `payment.rs`).

use async_trait::async_trait;
use concert_application::ports::{
    IdempotencyStore, IdempotentAnswer, PaymentReceipt, RepositoryError, StoredAnswer,
};
use concert_domain::{
    Balance, IdempotencyKey, IdempotencyScope, PaymentId, Price, ReservationId, UserId,
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;

use crate::error::{corrupt, from_diesel};
use crate::pool::PgPool;
use crate::schema::{idempotency_keys, ledger_entries, payments};

#[derive(Debug, Clone)]
pub struct PgIdempotencyStore {
    pool: PgPool,
}

impl PgIdempotencyStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

type StoredRow = (
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<OffsetDateTime>,
);

#[async_trait]
impl IdempotencyStore for PgIdempotencyStore {
    async fn find(
        &self,
        user: UserId,
        scope: IdempotencyScope,
        key: &IdempotencyKey,
    ) -> Result<Option<StoredAnswer>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let row: Option<StoredRow> = idempotency_keys::table
                    .inner_join(ledger_entries::table)
                    .left_join(
                        payments::table
                            .on(payments::id.nullable().eq(idempotency_keys::payment_id)),
                    )
                    .filter(idempotency_keys::user_id.eq(user.get()))
                    .filter(idempotency_keys::scope.eq(scope.as_str()))
                    .filter(idempotency_keys::key.eq(key.as_str()))
                    .select((
                        idempotency_keys::request_hash,
                        ledger_entries::balance_after,
                        payments::id.nullable(),
                        payments::reservation_id.nullable(),
                        payments::amount.nullable(),
                        payments::paid_at.nullable(),
                    ))
                    .first(&mut conn)
                    .await
                    .optional()
                    .map_err(from_diesel)?;
                let Some((request_hash, balance_after, payment, reservation, amount, paid_at)) =
                    row
                else {
                    return Ok(None);
                };
                let balance = Balance::new(balance_after).map_err(corrupt)?;
                let answer = match scope {
                    IdempotencyScope::Charge => IdempotentAnswer::Charge { balance },
                    IdempotencyScope::Payment => {
                        let (Some(payment), Some(reservation), Some(amount), Some(paid_at)) =
                            (payment, reservation, amount, paid_at)
                        else {
                            return Err(corrupt("payment idempotency key without its payment"));
                        };
                        IdempotentAnswer::Payment(PaymentReceipt {
                            payment_id: PaymentId::new(payment).map_err(corrupt)?,
                            reservation_id: ReservationId::new(reservation).map_err(corrupt)?,
                            amount: Price::from_stored(amount),
                            balance,
                            paid_at,
                        })
                    }
                };
                Ok(Some(StoredAnswer {
                    request_hash,
                    answer,
                }))
            })
            .await
    }
}
