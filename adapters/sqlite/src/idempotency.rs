//! `IdempotencyStore`: the first answer of an idempotent request, rebuilt from the rows its key
//! points at. The key row is written by the charge's or the payment's own transaction, with the
//! effect, so it exists if and only if the effect does (see `wallet.rs` and `payment.rs`).

use async_trait::async_trait;
use concert_application::ports::{
    IdempotencyStore, IdempotentAnswer, PaymentReceipt, RepositoryError, StoredAnswer,
};
use concert_domain::{
    Balance, IdempotencyKey, IdempotencyScope, PaymentId, Price, ReservationId, UserId,
};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::columns::{instant, user_text};
use crate::error::{corrupt, from_diesel};
use crate::store::SqliteStore;

#[derive(Debug, Clone)]
pub struct SqliteIdempotencyStore {
    store: SqliteStore,
}

impl SqliteIdempotencyStore {
    pub fn new(store: SqliteStore) -> Self {
        Self { store }
    }
}

#[derive(QueryableByName)]
struct StoredRow {
    #[diesel(sql_type = Text)]
    request_hash: String,
    #[diesel(sql_type = BigInt)]
    balance_after: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    payment_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    reservation_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    amount: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    paid_at: Option<i64>,
}

#[async_trait]
impl IdempotencyStore for SqliteIdempotencyStore {
    async fn find(
        &self,
        user: UserId,
        scope: IdempotencyScope,
        key: &IdempotencyKey,
    ) -> Result<Option<StoredAnswer>, RepositoryError> {
        let key = key.as_str().to_owned();
        self.store
            .read(move |conn| {
                let row: Option<StoredRow> = diesel::sql_query(
                    "SELECT k.request_hash, e.balance_after, p.id AS payment_id, \
                            p.reservation_id, p.amount, p.paid_at \
                     FROM idempotency_keys k \
                     JOIN ledger_entries e ON e.id = k.ledger_entry_id \
                     LEFT JOIN payments p ON p.id = k.payment_id \
                     WHERE k.user_id = ?1 AND k.scope = ?2 AND k.key = ?3",
                )
                .bind::<Text, _>(user_text(user))
                .bind::<Text, _>(scope.as_str())
                .bind::<Text, _>(&key)
                .get_result(conn)
                .optional()
                .map_err(from_diesel)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let balance = Balance::new(row.balance_after).map_err(corrupt)?;
                let answer = match scope {
                    IdempotencyScope::Charge => IdempotentAnswer::Charge { balance },
                    IdempotencyScope::Payment => {
                        let (Some(payment), Some(reservation), Some(amount), Some(paid_at)) =
                            (row.payment_id, row.reservation_id, row.amount, row.paid_at)
                        else {
                            return Err(corrupt("payment idempotency key without its payment"));
                        };
                        IdempotentAnswer::Payment(PaymentReceipt {
                            payment_id: PaymentId::new(payment).map_err(corrupt)?,
                            reservation_id: ReservationId::new(reservation).map_err(corrupt)?,
                            amount: Price::from_stored(amount),
                            balance,
                            paid_at: instant(paid_at)?,
                        })
                    }
                };
                Ok(Some(StoredAnswer {
                    request_hash: row.request_hash,
                    answer,
                }))
            })
            .await
    }
}
