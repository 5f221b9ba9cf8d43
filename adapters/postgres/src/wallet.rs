//! `WalletRepository`: balances, charges and the ledger.

use std::sync::LazyLock;

use async_trait::async_trait;
use concert_application::ports::{
    ChargeWrite, IdempotencyRecord, RepositoryError, Versioned, WalletRepository, Written,
};
use concert_domain::wallet::LedgerEntry;
use concert_domain::{Balance, IdempotencyScope, LedgerEntryId, UserId, Wallet};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;

use crate::cached::CachedExt;
use crate::columns::{WALLET_COLUMNS, WalletRow, WrittenRow, ledger_kind, parse_ledger_kind};
use crate::committed::committed_row;
use crate::error::{compare_and_set, corrupt, from_diesel};
use crate::pool::PgPool;
use crate::schema::ledger_entries;

#[derive(Debug, Clone)]
pub struct PgWalletRepository {
    pool: PgPool,
}

impl PgWalletRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// The statement that reads one wallet (`$1`), absent or not.
pub(crate) static LOAD_WALLET: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {WALLET_COLUMNS} FROM (SELECT 1) AS one \
         LEFT JOIN wallets w ON w.user_id = $1"
    )
});

/// The compare-and-set of a wallet's new state, as a CTE named `wallet` for a statement whose
/// binds are `$1` user, `$2` version read (0: absent), `$3` new balance, `$4` time of the change,
/// and `$5` whether the write may go ahead (another guard of the same statement). A wallet never
/// seen is inserted; a wallet written meanwhile (even a new one) makes it write nothing.
pub(crate) const WALLET_CAS: &str = "wallet AS ( \
         INSERT INTO wallets AS w (user_id, balance, updated_at) \
         SELECT $1, $3, $4 WHERE $5 \
         ON CONFLICT (user_id) DO UPDATE \
             SET balance = EXCLUDED.balance, updated_at = EXCLUDED.updated_at, \
                 version = w.version + 1 \
             WHERE w.version = $2 \
         RETURNING 1 \
     )";

/// The ledger entry of a change written by [`WALLET_CAS`] (`$6` kind, `$7` signed amount), as a
/// CTE named `entry`.
pub(crate) const LEDGER_ENTRY: &str = "entry AS ( \
         INSERT INTO ledger_entries (user_id, kind, amount, balance_after, at) \
         SELECT $1, $6, $7, $3, $4 FROM wallet \
         RETURNING id \
     )";

static CHARGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {WALLET_CAS}, {LEDGER_ENTRY}, key AS ( \
             INSERT INTO idempotency_keys (user_id, scope, key, request_hash, ledger_entry_id, \
                                           created_at) \
             SELECT $1, $8, $9, $10, entry.id, $4 FROM entry WHERE $9 IS NOT NULL \
         ) \
         SELECT EXISTS (SELECT 1 FROM entry) AS written"
    )
});

#[async_trait]
impl WalletRepository for PgWalletRepository {
    async fn balance(&self, user: UserId) -> Result<Balance, RepositoryError> {
        Ok(WalletRepository::load(self, user).await?.value.balance())
    }

    async fn load(&self, user: UserId) -> Result<Versioned<Wallet>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let row: WalletRow = diesel::sql_query(LOAD_WALLET.as_str())
                    .bind::<SqlUuid, _>(user.get())
                    .cached()
                    .get_result(&mut conn)
                    .await
                    .map_err(from_diesel)?;
                row.into_domain(user)
            })
            .await
    }

    async fn save_charge(&self, write: &ChargeWrite) -> Result<Written<()>, RepositoryError> {
        let wallet = &write.wallet;
        let (key, hash) = key_binds(write.idempotency.as_ref());
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let row = diesel::sql_query(CHARGE.as_str())
                    .bind::<SqlUuid, _>(wallet.value.user().get())
                    .bind::<BigInt, _>(wallet.version.get())
                    .bind::<BigInt, _>(write.change.balance_after.get())
                    .bind::<Timestamptz, _>(write.change.at)
                    .bind::<Bool, _>(true)
                    .bind::<Text, _>(ledger_kind(write.change.kind))
                    .bind::<BigInt, _>(write.change.amount)
                    .bind::<Text, _>(IdempotencyScope::Charge.as_str())
                    .bind::<Nullable<Text>, _>(key)
                    .bind::<Nullable<Text>, _>(hash)
                    .cached()
                    .load::<WrittenRow>(&mut conn)
                    .await
                    .map(committed_row);
                compare_and_set(row.map(|row| row.and_then(WrittenRow::wrote)))
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
                            kind: parse_ledger_kind(&kind)?,
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

/// The key and request fingerprint binds of an optional idempotency record.
pub(crate) fn key_binds(record: Option<&IdempotencyRecord>) -> (Option<&str>, Option<&str>) {
    match record {
        Some(record) => (
            Some(record.key.as_str()),
            Some(record.request_hash.as_str()),
        ),
        None => (None, None),
    }
}
