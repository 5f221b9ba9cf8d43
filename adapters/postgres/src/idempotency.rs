//! Idempotency keys: the guard used inside a charge's or a payment's transaction, and the
//! `IdempotencyStore` that rebuilds a stored answer from the rows the key points at.
//!
//! Inside the effect's transaction, before anything else:
//! 1. take a transaction-level advisory lock on (user, scope, key), polling with
//!    `pg_try_advisory_xact_lock` for up to [`IDEMPOTENCY_WAIT`]: a second request with the key
//!    waits while the first is in flight, and gives up (`KeyAlreadyUsed`, answered
//!    `IDEMPOTENCY_KEY_IN_USE` when no answer is stored yet) rather than queue for ever;
//! 2. look the key up: present means an answer was committed → `KeyAlreadyUsed`;
//! 3. do the effect, then insert the key row last, pointing at the ledger entry (and payment) just
//!    written, with `ON CONFLICT DO NOTHING` as a second guard.
//!
//! The key row and the effect commit or roll back together, so only a successful answer is ever
//! stored, and a first request that died leaves nothing behind: the key is processed anew.

use std::time::Duration;

use async_trait::async_trait;
use concert_application::ports::{
    IdempotencyRecord, IdempotencyStore, IdempotentAnswer, PaymentReceipt, RepositoryError,
    StoredAnswer,
};
use concert_domain::{
    Balance, IdempotencyKey, IdempotencyScope, PaymentId, Price, ReservationId, UserId,
};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{Bool, Integer, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;

use crate::cached::CachedExt;
use crate::error::{corrupt, from_diesel};
use crate::locks;
use crate::pool::PgPool;
use crate::schema::{idempotency_keys, ledger_entries, payments};

/// How long a request waits for an in-flight request with the same key to finish.
pub const IDEMPOTENCY_WAIT: Duration = Duration::from_secs(3);

/// Takes the key's lock and checks that no answer is stored under it. `Ok(false)`: the key is
/// used (an answer is stored, or the request holding it did not finish within the wait).
pub(crate) async fn claim_key(
    conn: &mut AsyncPgConnection,
    user: UserId,
    scope: IdempotencyScope,
    key: &IdempotencyKey,
) -> Result<bool, DieselError> {
    #[derive(QueryableByName)]
    struct Locked {
        #[diesel(sql_type = Bool)]
        locked: bool,
    }
    // Keys are visible ASCII, so a space cannot be part of one: the subject is unambiguous.
    let subject = format!("{user} {} {}", scope.as_str(), key.as_str());
    let deadline = tokio::time::Instant::now() + IDEMPOTENCY_WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        let Locked { locked } =
            diesel::sql_query("SELECT pg_try_advisory_xact_lock($1, hashtext($2)) AS locked")
                .bind::<Integer, _>(locks::IDEMPOTENCY_KEY)
                .bind::<Text, _>(&subject)
                .cached()
                .get_result(conn)
                .await?;
        if locked {
            break;
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    let stored: i64 = idempotency_keys::table
        .filter(idempotency_keys::user_id.eq(user.get()))
        .filter(idempotency_keys::scope.eq(scope.as_str()))
        .filter(idempotency_keys::key.eq(key.as_str()))
        .count()
        .get_result(conn)
        .await?;
    Ok(stored == 0)
}

/// Stores the key with what the effect wrote. `Ok(false)` if the key was taken meanwhile (cannot
/// happen under the key's lock; the caller rolls back all the same).
pub(crate) async fn store_key(
    conn: &mut AsyncPgConnection,
    user: UserId,
    scope: IdempotencyScope,
    record: &IdempotencyRecord,
    ledger_entry_id: i64,
    payment_id: Option<i64>,
    now: OffsetDateTime,
) -> Result<bool, DieselError> {
    let inserted = diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::user_id.eq(user.get()),
            idempotency_keys::scope.eq(scope.as_str()),
            idempotency_keys::key.eq(record.key.as_str()),
            idempotency_keys::request_hash.eq(&record.request_hash),
            idempotency_keys::ledger_entry_id.eq(ledger_entry_id),
            idempotency_keys::payment_id.eq(payment_id),
            idempotency_keys::created_at.eq(now),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

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
