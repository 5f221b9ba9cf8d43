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

#[cfg(test)]
mod tests {
    use mockall::predicate::eq;

    use super::*;
    use crate::ports::MockWalletRepository;
    use crate::test_support::user;

    #[tokio::test]
    async fn balance_is_the_wallets_as_stored() {
        let mut wallets = MockWalletRepository::new();
        wallets
            .expect_balance()
            .with(eq(user()))
            .times(1)
            .returning(|_| Ok(Balance::new(95_000).expect("balance")));

        let balance = ReadBalance::new(Arc::new(wallets))
            .execute(user())
            .await
            .expect("balance");

        assert_eq!(balance.get(), 95_000);
    }
}
