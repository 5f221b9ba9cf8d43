//! `WalletRepository`: balances, charges and the ledger.

use async_trait::async_trait;
use concert_application::ports::{ChargeOutcome, ChargeRequest, RepositoryError, WalletRepository};
use concert_domain::wallet::LedgerEntry;
use concert_domain::{Balance, IdempotencyScope, LedgerEntryId, LedgerKind, UserId};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;

use crate::cached::CachedExt;
use crate::error::{Abort, corrupt, from_diesel, settle};
use crate::idempotency::{claim_key, store_key};
use crate::pool::PgPool;
use crate::schema::{ledger_entries, wallets};

#[derive(Debug, Clone)]
pub struct PgWalletRepository {
    pool: PgPool,
}

impl PgWalletRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// Creates the user's wallet with balance zero unless it exists (a wallet exists from first use).
pub(crate) async fn ensure_wallet(
    conn: &mut AsyncPgConnection,
    user: UserId,
    now: OffsetDateTime,
) -> Result<(), DieselError> {
    diesel::insert_into(wallets::table)
        .values((
            wallets::user_id.eq(user.get()),
            wallets::balance.eq(0_i64),
            wallets::updated_at.eq(now),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
        .map(|_| ())
}

/// Appends one ledger entry; returns its id.
pub(crate) async fn append_entry(
    conn: &mut AsyncPgConnection,
    user: UserId,
    kind: LedgerKind,
    amount: i64,
    balance_after: i64,
    at: OffsetDateTime,
) -> Result<i64, DieselError> {
    diesel::insert_into(ledger_entries::table)
        .values((
            ledger_entries::user_id.eq(user.get()),
            ledger_entries::kind.eq(kind.as_str()),
            ledger_entries::amount.eq(amount),
            ledger_entries::balance_after.eq(balance_after),
            ledger_entries::at.eq(at),
        ))
        .returning(ledger_entries::id)
        .get_result(conn)
        .await
}

#[async_trait]
impl WalletRepository for PgWalletRepository {
    async fn balance(&self, user: UserId) -> Result<Balance, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let balance: Option<i64> = wallets::table
                    .find(user.get())
                    .select(wallets::balance)
                    .first(&mut conn)
                    .await
                    .optional()
                    .map_err(from_diesel)?;
                Balance::new(balance.unwrap_or(0)).map_err(corrupt)
            })
            .await
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let result = conn
                    .transaction::<_, Abort<ChargeOutcome>, _>(async |conn| {
                        charge_in_transaction(conn, request).await
                    })
                    .await;
                settle(result)
            })
            .await
    }

    async fn history(
        &self,
        user: UserId,
        limit: u32,
        before: Option<LedgerEntryId>,
    ) -> Result<Vec<LedgerEntry>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let mut query = ledger_entries::table
                    .filter(ledger_entries::user_id.eq(user.get()))
                    .select((
                        ledger_entries::id,
                        ledger_entries::kind,
                        ledger_entries::amount,
                        ledger_entries::balance_after,
                        ledger_entries::at,
                    ))
                    .order(ledger_entries::id.desc())
                    .limit(i64::from(limit))
                    .into_boxed();
                if let Some(before) = before {
                    query = query.filter(ledger_entries::id.lt(before.get()));
                }
                let rows: Vec<(i64, String, i64, i64, OffsetDateTime)> =
                    query.load(&mut conn).await.map_err(from_diesel)?;
                rows.into_iter()
                    .map(|(id, kind, amount, balance_after, at)| {
                        Ok(LedgerEntry {
                            id: LedgerEntryId::new(id).map_err(corrupt)?,
                            kind: LedgerKind::parse(&kind)
                                .ok_or_else(|| corrupt(format!("ledger kind {kind:?}")))?,
                            amount,
                            balance_after: Balance::new(balance_after).map_err(corrupt)?,
                            at,
                        })
                    })
                    .collect()
            })
            .await
    }
}

async fn charge_in_transaction(
    conn: &mut AsyncPgConnection,
    request: &ChargeRequest,
) -> Result<ChargeOutcome, Abort<ChargeOutcome>> {
    let user = request.user;
    let amount = request.amount.get();
    if let Some(record) = &request.idempotency
        && !claim_key(conn, user, IdempotencyScope::Charge, &record.key).await?
    {
        return Err(Abort::Outcome(ChargeOutcome::KeyAlreadyUsed));
    }
    ensure_wallet(conn, user, request.now).await?;
    // The guard: `balance + amount <= max_balance`, written so that it cannot overflow.
    let headroom = request.max_balance.saturating_sub(amount);
    let balance: Option<i64> = diesel::update(wallets::table.find(user.get()))
        .filter(wallets::balance.le(headroom))
        .set((
            wallets::balance.eq(wallets::balance + amount),
            wallets::updated_at.eq(request.now),
        ))
        .returning(wallets::balance)
        .cached()
        .get_result(conn)
        .await
        .optional()?;
    let Some(balance) = balance else {
        return Err(Abort::Outcome(ChargeOutcome::BalanceLimitExceeded));
    };
    let entry = append_entry(conn, user, LedgerKind::Charge, amount, balance, request.now).await?;
    if let Some(record) = &request.idempotency {
        let stored = store_key(
            conn,
            user,
            IdempotencyScope::Charge,
            record,
            entry,
            None,
            request.now,
        )
        .await?;
        if !stored {
            return Err(Abort::Outcome(ChargeOutcome::KeyAlreadyUsed));
        }
    }
    let balance = Balance::new(balance)
        .map_err(|e| Abort::Db(DieselError::DeserializationError(Box::new(e))))?;
    Ok(ChargeOutcome::Charged(balance))
}
