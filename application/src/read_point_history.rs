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
