//! Use case: a page of a user's ledger, newest first.

use std::sync::Arc;

use concert_domain::wallet::LedgerEntry;
use concert_domain::{LedgerEntryId, ParseError, UserId};

use crate::ports::{RepositoryError, WalletRepository};

/// `?limit=`: 1..=100, 50 when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    pub const DEFAULT: Self = Self(50);
    pub const MAX: u32 = 100;

    pub fn parse(value: i64) -> Result<Self, ParseError> {
        match u32::try_from(value) {
            Ok(size) if (1..=Self::MAX).contains(&size) => Ok(Self(size)),
            _ => Err(ParseError::new(
                "limit",
                format!("must be between 1 and 100, got {value}"),
            )),
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    pub user: UserId,
    pub limit: Option<i64>,
    pub before: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadPointHistoryError {
    #[error(transparent)]
    InvalidQuery(ParseError),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

pub struct ReadPointHistory {
    wallets: Arc<dyn WalletRepository>,
}

impl ReadPointHistory {
    pub fn new(wallets: Arc<dyn WalletRepository>) -> Self {
        Self { wallets }
    }

    #[tracing::instrument(name = "read_point_history", skip_all, fields(user = %query.user))]
    pub async fn execute(
        &self,
        query: HistoryQuery,
    ) -> Result<Vec<LedgerEntry>, ReadPointHistoryError> {
        let limit = query
            .limit
            .map(PageSize::parse)
            .transpose()
            .map_err(ReadPointHistoryError::InvalidQuery)?
            .unwrap_or(PageSize::DEFAULT);
        let before = query
            .before
            .map(|raw| LedgerEntryId::new(raw).map_err(|e| ParseError::new("before", e.reason)))
            .transpose()
            .map_err(ReadPointHistoryError::InvalidQuery)?;
        Ok(self
            .wallets
            .history(query.user, limit.get(), before)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::Balance;
    use concert_domain::wallet::LedgerKind;
    use mockall::predicate::eq;

    use super::*;
    use crate::ports::MockWalletRepository;
    use crate::test_support::{NOW, user};

    fn query(limit: Option<i64>, before: Option<i64>) -> HistoryQuery {
        HistoryQuery {
            user: user(),
            limit,
            before,
        }
    }

    fn never_read() -> MockWalletRepository {
        let mut wallets = MockWalletRepository::new();
        wallets.expect_history().never();
        wallets
    }

    fn reading(limit: u32, before: Option<LedgerEntryId>) -> MockWalletRepository {
        let mut wallets = MockWalletRepository::new();
        wallets
            .expect_history()
            .with(eq(user()), eq(limit), eq(before))
            .times(1)
            .returning(|_, _, _| {
                Ok(vec![LedgerEntry {
                    id: LedgerEntryId::new(16).expect("id"),
                    kind: LedgerKind::Charge,
                    amount: 50_000,
                    balance_after: Balance::new(50_000).expect("balance"),
                    at: NOW,
                }])
            });
        wallets
    }

    async fn history(
        wallets: MockWalletRepository,
        query: HistoryQuery,
    ) -> Result<Vec<LedgerEntry>, ReadPointHistoryError> {
        ReadPointHistory::new(Arc::new(wallets))
            .execute(query)
            .await
    }

    #[tokio::test]
    async fn limit_out_of_range_is_an_invalid_query_and_nothing_is_read() {
        for limit in [0, -1, 101] {
            let refused = history(never_read(), query(Some(limit), None)).await;

            assert!(
                matches!(
                    refused,
                    Err(ReadPointHistoryError::InvalidQuery(ref error)) if error.field == "limit"
                ),
                "limit {limit}: {refused:?}"
            );
        }
    }

    #[tokio::test]
    async fn before_that_is_not_an_entry_id_is_an_invalid_query() {
        let refused = history(never_read(), query(None, Some(0))).await;

        assert!(matches!(
            refused,
            Err(ReadPointHistoryError::InvalidQuery(error)) if error.field == "before"
        ));
    }

    #[tokio::test]
    async fn history_defaults_to_fifty_entries_from_the_newest() {
        let entries = history(reading(50, None), query(None, None))
            .await
            .expect("history");

        assert_eq!(entries.len(), 1);
    }

    #[tokio::test]
    async fn limit_and_before_are_passed_through_for_the_next_page() {
        let before = LedgerEntryId::new(17).expect("id");

        history(reading(100, Some(before)), query(Some(100), Some(17)))
            .await
            .expect("history");
    }
}
