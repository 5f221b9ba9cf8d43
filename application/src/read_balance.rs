//! Use case: a user's balance (zero for a user never seen).

use std::sync::Arc;

use concert_domain::{Balance, UserId};

use crate::ports::{RepositoryError, WalletRepository};

pub struct ReadBalance {
    wallets: Arc<dyn WalletRepository>,
}

impl ReadBalance {
    pub fn new(wallets: Arc<dyn WalletRepository>) -> Self {
        Self { wallets }
    }

    #[tracing::instrument(name = "read_balance", skip_all, fields(user = %user))]
    pub async fn execute(&self, user: UserId) -> Result<Balance, RepositoryError> {
        self.wallets.balance(user).await
    }
}
