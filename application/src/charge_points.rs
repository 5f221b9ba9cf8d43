//! Use case: add prepaid points to a user's wallet, safe to retry with an idempotency key.

use std::sync::Arc;

use concert_domain::{
    Amount, Balance, IdempotencyKey, IdempotencyScope, ParseError, UserId, Wallet, WalletLimits,
};

use crate::idempotency::{ReplayError, record, stored_answer};
use crate::ports::{
    ChargeOutcome, ChargeRequest, Clock, IdempotencyRecord, IdempotencyStore, IdempotentAnswer,
    RepositoryError, WalletRepository,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargePointsCommand {
    pub user: UserId,
    /// As sent: checked against `MAX_CHARGE_AMOUNT` here.
    pub amount: i64,
    pub idempotency_key: Option<IdempotencyKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChargePointsError {
    #[error(transparent)]
    InvalidAmount(ParseError),
    #[error("the balance would exceed {0}")]
    BalanceLimitExceeded(i64),
    #[error("the idempotency key was used with another request")]
    IdempotencyKeyReused,
    #[error("a request with this idempotency key is still in flight")]
    IdempotencyKeyInUse,
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl From<ReplayError> for ChargePointsError {
    fn from(error: ReplayError) -> Self {
        match error {
            ReplayError::KeyReused => Self::IdempotencyKeyReused,
            ReplayError::Repository(error) => Self::Repository(error),
        }
    }
}

pub struct ChargePoints {
    wallets: Arc<dyn WalletRepository>,
    idempotency: Arc<dyn IdempotencyStore>,
    clock: Arc<dyn Clock>,
    limits: WalletLimits,
}

impl ChargePoints {
    pub fn new(
        wallets: Arc<dyn WalletRepository>,
        idempotency: Arc<dyn IdempotencyStore>,
        clock: Arc<dyn Clock>,
        limits: WalletLimits,
    ) -> Self {
        Self {
            wallets,
            idempotency,
            clock,
            limits,
        }
    }

    #[tracing::instrument(name = "charge_points", skip_all, fields(user = %command.user, amount = command.amount))]
    pub async fn execute(
        &self,
        command: ChargePointsCommand,
    ) -> Result<Balance, ChargePointsError> {
        let amount = Amount::parse(command.amount, self.limits.max_charge)
            .map_err(ChargePointsError::InvalidAmount)?;
        let user = command.user;
        let idempotency = record(command.idempotency_key, || format!("amount={amount}"));
        if let Some(record) = &idempotency
            && let Some(balance) = self.replay(user, record).await?
        {
            return Ok(balance);
        }
        let mut wallet = Wallet {
            user,
            balance: self.wallets.balance(user).await?,
        };
        wallet
            .charge(amount, self.limits)
            .map_err(|_| ChargePointsError::BalanceLimitExceeded(self.limits.max_balance))?;
        let request = ChargeRequest {
            user,
            amount,
            max_balance: self.limits.max_balance,
            now: self.clock.now(),
            idempotency: idempotency.clone(),
        };
        match self.wallets.charge(&request).await? {
            ChargeOutcome::Charged(balance) => Ok(balance),
            ChargeOutcome::BalanceLimitExceeded => Err(ChargePointsError::BalanceLimitExceeded(
                self.limits.max_balance,
            )),
            ChargeOutcome::KeyAlreadyUsed => {
                let record = idempotency
                    .as_ref()
                    .ok_or(ChargePointsError::IdempotencyKeyInUse)?;
                self.replay(user, record)
                    .await?
                    .ok_or(ChargePointsError::IdempotencyKeyInUse)
            }
        }
    }

    async fn replay(
        &self,
        user: UserId,
        record: &IdempotencyRecord,
    ) -> Result<Option<Balance>, ChargePointsError> {
        match stored_answer(
            self.idempotency.as_ref(),
            user,
            IdempotencyScope::Charge,
            record,
        )
        .await?
        {
            None => Ok(None),
            Some(IdempotentAnswer::Charge { balance }) => Ok(Some(balance)),
            // Keys are scoped per operation, so a charge key never holds a payment's answer.
            Some(IdempotentAnswer::Payment(_)) => Err(ChargePointsError::IdempotencyKeyReused),
        }
    }
}
