//! `WalletRepository`: balances, charges and the ledger. The wallet's compare-and-set, its
//! ledger entry and the idempotency key row are shared with the payment's write (`payment.rs`).

use async_trait::async_trait;
use concert_application::ports::{
    ChargeWrite, IdempotencyRecord, RepositoryError, Version, Versioned, WalletRepository, Written,
};
use concert_domain::wallet::LedgerEntry;
use concert_domain::{
    Balance, BalanceChange, IdempotencyScope, LedgerEntryId, LedgerKind, UserId, Wallet,
};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl, SqliteConnection};

use crate::columns::version;
use crate::columns::{instant, instant_opt, micros, user_text};
use crate::counters::{IdTable, next_id};
use crate::error::{corrupt, from_diesel, stale_on_unique_violation};
use crate::store::SqliteStore;

#[derive(Debug, Clone)]
pub struct SqliteWalletRepository {
    store: SqliteStore,
}

impl SqliteWalletRepository {
    pub fn new(store: SqliteStore) -> Self {
        Self { store }
    }
}

/// A wallet row (absent: `None` columns), as selected by [`WALLET_COLUMNS`].
#[derive(Debug, QueryableByName)]
pub(crate) struct WalletRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    balance: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_change_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    wallet_version: Option<i64>,
}

/// The select list of a [`WalletRow`], for a query that names the wallet `w`.
pub(crate) const WALLET_COLUMNS: &str =
    "w.balance, w.updated_at AS last_change_at, w.version AS wallet_version";

impl WalletRow {
    pub(crate) fn into_domain(self, user: UserId) -> Result<Versioned<Wallet>, RepositoryError> {
        match (self.balance, self.wallet_version) {
            (Some(balance), Some(raw_version)) => Ok(Versioned::new(
                Wallet::new(
                    user,
                    Balance::new(balance).map_err(corrupt)?,
                    instant_opt(self.last_change_at)?,
                ),
                version(raw_version)?,
            )),
            (None, None) => Ok(Versioned::new(Wallet::empty(user), Version::ABSENT)),
            other => Err(corrupt(format!("wallet {other:?}"))),
        }
    }
}

/// The compare-and-set of a wallet's new state, as PostgreSQL's upsert: a wallet never seen is
/// inserted (at version 1); a stored one is updated only while at the version read, so a wallet
/// written meanwhile (even a new one, read as absent) makes it write nothing (`false`).
pub(crate) fn wallet_cas(
    conn: &mut SqliteConnection,
    user: &str,
    read: Version,
    change: &BalanceChange,
) -> Result<bool, RepositoryError> {
    let inserted = diesel::sql_query(
        "INSERT INTO wallets (user_id, balance, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind::<Text, _>(user)
    .bind::<BigInt, _>(change.balance_after.get())
    .bind::<BigInt, _>(micros(change.at))
    .execute(conn)
    .map_err(from_diesel)?;
    if inserted == 1 {
        return Ok(true);
    }
    let updated = diesel::sql_query(
        "UPDATE wallets SET balance = ?2, updated_at = ?3, version = version + 1 \
         WHERE user_id = ?1 AND version = ?4",
    )
    .bind::<Text, _>(user)
    .bind::<BigInt, _>(change.balance_after.get())
    .bind::<BigInt, _>(micros(change.at))
    .bind::<BigInt, _>(read.get())
    .execute(conn)
    .map_err(from_diesel)?;
    Ok(updated == 1)
}

/// Appends the ledger entry of a change the wallet's compare-and-set wrote; returns its id.
pub(crate) fn append_entry(
    conn: &mut SqliteConnection,
    user: &str,
    change: &BalanceChange,
) -> Result<i64, RepositoryError> {
    let id = next_id(conn, IdTable::LedgerEntries).map_err(from_diesel)?;
    diesel::sql_query(
        "INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .bind::<BigInt, _>(id)
    .bind::<Text, _>(user)
    .bind::<Text, _>(change.kind.as_str())
    .bind::<BigInt, _>(change.amount)
    .bind::<BigInt, _>(change.balance_after.get())
    .bind::<BigInt, _>(micros(change.at))
    .execute(conn)
    .map_err(from_diesel)?;
    Ok(id)
}

/// Stores the key row of an effect, last in its transaction. A key already stored fails on the
/// primary key: the caller's transaction is rolled back whole and answered `Stale`
/// ([`stale_on_unique_violation`]).
pub(crate) fn store_key(
    conn: &mut SqliteConnection,
    user: &str,
    scope: IdempotencyScope,
    record: &IdempotencyRecord,
    entry: i64,
    payment: Option<i64>,
    at: time::OffsetDateTime,
) -> Result<(), RepositoryError> {
    diesel::sql_query(
        "INSERT INTO idempotency_keys (user_id, scope, key, request_hash, ledger_entry_id, \
                                       payment_id, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind::<Text, _>(user)
    .bind::<Text, _>(scope.as_str())
    .bind::<Text, _>(record.key.as_str())
    .bind::<Text, _>(&record.request_hash)
    .bind::<BigInt, _>(entry)
    .bind::<Nullable<BigInt>, _>(payment)
    .bind::<BigInt, _>(micros(at))
    .execute(conn)
    .map_err(from_diesel)?;
    Ok(())
}

/// One wallet as stored, absent or not.
pub(crate) fn load_wallet(
    conn: &mut SqliteConnection,
    user: UserId,
) -> Result<Versioned<Wallet>, RepositoryError> {
    let row: WalletRow = diesel::sql_query(format!(
        "SELECT {WALLET_COLUMNS} FROM (SELECT 1) AS one LEFT JOIN wallets w ON w.user_id = ?1"
    ))
    .bind::<Text, _>(user_text(user))
    .get_result(conn)
    .map_err(from_diesel)?;
    row.into_domain(user)
}

#[async_trait]
impl WalletRepository for SqliteWalletRepository {
    async fn balance(&self, user: UserId) -> Result<Balance, RepositoryError> {
        Ok(WalletRepository::load(self, user).await?.value.balance())
    }

    async fn load(&self, user: UserId) -> Result<Versioned<Wallet>, RepositoryError> {
        self.store.read(move |conn| load_wallet(conn, user)).await
    }

    async fn save_charge(&self, write: &ChargeWrite) -> Result<Written<()>, RepositoryError> {
        let write = write.clone();
        let written = self
            .store
            .write(move |conn| {
                let user = user_text(write.wallet.value.user());
                if !wallet_cas(conn, &user, write.wallet.version, &write.change)? {
                    return Ok(Written::Stale);
                }
                let entry = append_entry(conn, &user, &write.change)?;
                if let Some(record) = &write.idempotency {
                    store_key(
                        conn,
                        &user,
                        IdempotencyScope::Charge,
                        record,
                        entry,
                        None,
                        write.change.at,
                    )?;
                }
                Ok(Written::Done(()))
            })
            .await;
        stale_on_unique_violation(written)
    }

    async fn history(
        &self,
        user: UserId,
        limit: u32,
        before: Option<LedgerEntryId>,
    ) -> Result<Vec<LedgerEntry>, RepositoryError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = Text)]
            kind: String,
            #[diesel(sql_type = BigInt)]
            amount: i64,
            #[diesel(sql_type = BigInt)]
            balance_after: i64,
            #[diesel(sql_type = BigInt)]
            at: i64,
        }
        self.store
            .read(move |conn| {
                let rows: Vec<Row> = diesel::sql_query(
                    "SELECT id, kind, amount, balance_after, at FROM ledger_entries \
                     WHERE user_id = ?1 AND (?2 IS NULL OR id < ?2) \
                     ORDER BY id DESC LIMIT ?3",
                )
                .bind::<Text, _>(user_text(user))
                .bind::<Nullable<BigInt>, _>(before.map(LedgerEntryId::get))
                .bind::<BigInt, _>(i64::from(limit))
                .load(conn)
                .map_err(from_diesel)?;
                rows.into_iter()
                    .map(|row| {
                        Ok(LedgerEntry {
                            id: LedgerEntryId::new(row.id).map_err(corrupt)?,
                            kind: LedgerKind::parse(&row.kind)
                                .ok_or_else(|| corrupt(format!("ledger kind {:?}", row.kind)))?,
                            amount: row.amount,
                            balance_after: Balance::new(row.balance_after).map_err(corrupt)?,
                            at: instant(row.at)?,
                        })
                    })
                    .collect()
            })
            .await
    }
}
