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
        match (
            self.charge(user, amount, idempotency.as_ref()).await,
            &idempotency,
        ) {
            // A charge with this key committed after the replay check, and its own effect pushed
            // the balance over the limit for this request. Same key: the first answer.
            (Err(ChargePointsError::BalanceLimitExceeded(limit)), Some(record)) => self
                .replay(user, record)
                .await?
                .ok_or(ChargePointsError::BalanceLimitExceeded(limit)),
            (charged, _) => charged,
        }
    }

    /// Checks the balance limit, then charges in one atomic step.
    async fn charge(
        &self,
        user: UserId,
        amount: Amount,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<Balance, ChargePointsError> {
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
            idempotency: idempotency.cloned(),
        };
        match self.wallets.charge(&request).await? {
            ChargeOutcome::Charged(balance) => Ok(balance),
            ChargeOutcome::BalanceLimitExceeded => Err(ChargePointsError::BalanceLimitExceeded(
                self.limits.max_balance,
            )),
            ChargeOutcome::KeyAlreadyUsed => {
                let record = idempotency.ok_or(ChargePointsError::IdempotencyKeyInUse)?;
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
        let pick = |answer| match answer {
            IdempotentAnswer::Charge { balance } => Some(balance),
            IdempotentAnswer::Payment(_) => None,
        };
        Ok(stored_answer(
            self.idempotency.as_ref(),
            user,
            IdempotencyScope::Charge,
            record,
            pick,
        )
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use concert_domain::PaymentId;
    use mockall::predicate::eq;

    use super::*;
    use crate::ports::{MockIdempotencyStore, MockWalletRepository, PaymentReceipt, StoredAnswer};
    use crate::test_support::{NOW, clock, reservation_id, user};

    const LIMITS: WalletLimits = WalletLimits {
        max_charge: 100_000,
        max_balance: 1_000_000,
    };

    fn balance(value: i64) -> Balance {
        Balance::new(value).expect("balance")
    }

    fn key(raw: &str) -> IdempotencyKey {
        IdempotencyKey::parse(raw).expect("key")
    }

    fn command(amount: i64, key: Option<IdempotencyKey>) -> ChargePointsCommand {
        ChargePointsCommand {
            user: user(),
            amount,
            idempotency_key: key,
        }
    }

    /// Answers stored per key, shared by the fakes as a database would share them.
    type Stored = Arc<Mutex<Option<StoredAnswer>>>;

    /// An idempotency store that reads `stored`, for the user's charge keys only.
    fn store_reading(stored: &Stored) -> MockIdempotencyStore {
        let stored = Arc::clone(stored);
        let mut store = MockIdempotencyStore::new();
        store
            .expect_find()
            .withf(|who, scope, _| *who == user() && *scope == IdempotencyScope::Charge)
            .returning(move |_, _, _| Ok(stored.lock().expect("lock").clone()));
        store
    }

    fn untouched_store() -> MockIdempotencyStore {
        let mut store = MockIdempotencyStore::new();
        store.expect_find().never();
        store
    }

    /// A wallet holding `start` whose `charge` adds the amount and, like the real adapter, stores
    /// the answer under the request's key in the same step. Expects `charges` charges.
    fn wallet_storing(start: i64, stored: &Stored, charges: usize) -> MockWalletRepository {
        let stored = Arc::clone(stored);
        let mut wallets = MockWalletRepository::new();
        wallets
            .expect_balance()
            .with(eq(user()))
            .returning(move |_| Ok(balance(start)));
        wallets
            .expect_charge()
            .times(charges)
            .returning(move |request| {
                let after = balance(start + request.amount.get());
                if let Some(record) = &request.idempotency {
                    *stored.lock().expect("lock") = Some(StoredAnswer {
                        request_hash: record.request_hash.clone(),
                        answer: IdempotentAnswer::Charge { balance: after },
                    });
                }
                Ok(ChargeOutcome::Charged(after))
            });
        wallets
    }

    fn untouched_wallet() -> MockWalletRepository {
        let mut wallets = MockWalletRepository::new();
        wallets.expect_balance().never();
        wallets.expect_charge().never();
        wallets
    }

    fn charge_points(wallets: MockWalletRepository, store: MockIdempotencyStore) -> ChargePoints {
        ChargePoints::new(Arc::new(wallets), Arc::new(store), clock(), LIMITS)
    }

    #[tokio::test]
    async fn zero_amount_is_invalid_and_nothing_is_read_or_written() {
        let refused = charge_points(untouched_wallet(), untouched_store())
            .execute(command(0, Some(key("k1"))))
            .await;

        assert!(matches!(
            refused,
            Err(ChargePointsError::InvalidAmount(error)) if error.field == "amount"
        ));
    }

    #[tokio::test]
    async fn amount_over_the_largest_charge_is_invalid_and_nothing_is_written() {
        let refused = charge_points(untouched_wallet(), untouched_store())
            .execute(command(LIMITS.max_charge + 1, None))
            .await;

        assert!(matches!(refused, Err(ChargePointsError::InvalidAmount(_))));
    }

    #[tokio::test]
    async fn key_committed_by_a_racing_charge_that_filled_the_balance_returns_that_answer() {
        // The twin request with the same key committed after our replay check; the balance we
        // read already holds its amount and leaves no room for ours.
        let mut wallets = MockWalletRepository::new();
        wallets
            .expect_balance()
            .times(1)
            .returning(|_| Ok(balance(LIMITS.max_balance)));
        wallets.expect_charge().never();
        let mut finds = 0;
        let mut store = MockIdempotencyStore::new();
        store.expect_find().times(2).returning(move |_, _, _| {
            finds += 1;
            Ok((finds == 2).then(|| StoredAnswer {
                request_hash: "amount=50".to_owned(),
                answer: IdempotentAnswer::Charge {
                    balance: balance(LIMITS.max_balance),
                },
            }))
        });

        let answer = charge_points(wallets, store)
            .execute(command(50, Some(key("k1"))))
            .await
            .expect("the twin's answer");

        assert_eq!(answer, balance(LIMITS.max_balance));
    }

    #[tokio::test]
    async fn charge_over_the_maximum_balance_is_refused_and_never_written() {
        let mut wallets = MockWalletRepository::new();
        wallets
            .expect_balance()
            .times(1)
            .returning(|_| Ok(balance(LIMITS.max_balance - 10)));
        wallets.expect_charge().never();

        let refused = charge_points(wallets, untouched_store())
            .execute(command(11, None))
            .await;

        assert!(matches!(
            refused,
            Err(ChargePointsError::BalanceLimitExceeded(max)) if max == LIMITS.max_balance
        ));
    }

    #[tokio::test]
    async fn charge_up_to_exactly_the_maximum_balance_is_written() {
        let stored = Stored::default();
        let charged = charge_points(
            wallet_storing(LIMITS.max_balance - 10, &stored, 1),
            untouched_store(),
        )
        .execute(command(10, None))
        .await
        .expect("charged");

        assert_eq!(charged, balance(LIMITS.max_balance));
    }

    #[tokio::test]
    async fn charge_without_a_key_is_written_with_no_idempotency_record() {
        let mut wallets = MockWalletRepository::new();
        wallets.expect_balance().returning(|_| Ok(balance(45_000)));
        wallets
            .expect_charge()
            .withf(|request| {
                request.user == user()
                    && request.amount.get() == 50_000
                    && request.max_balance == LIMITS.max_balance
                    && request.now == NOW
                    && request.idempotency.is_none()
            })
            .times(1)
            .returning(|_| Ok(ChargeOutcome::Charged(balance(95_000))));

        let charged = charge_points(wallets, untouched_store())
            .execute(command(50_000, None))
            .await
            .expect("charged");

        assert_eq!(charged, balance(95_000));
    }

    #[tokio::test]
    async fn charge_with_a_key_persists_the_key_and_a_fingerprint() {
        let stored = Stored::default();
        let mut wallets = MockWalletRepository::new();
        wallets.expect_balance().returning(|_| Ok(balance(45_000)));
        wallets
            .expect_charge()
            .withf(|request| {
                request.amount.get() == 50_000
                    && request.now == NOW
                    && request.idempotency.as_ref().is_some_and(|record| {
                        record.key == key("charge-1") && !record.request_hash.is_empty()
                    })
            })
            .times(1)
            .returning(|_| Ok(ChargeOutcome::Charged(balance(95_000))));

        let charged = charge_points(wallets, store_reading(&stored))
            .execute(command(50_000, Some(key("charge-1"))))
            .await
            .expect("charged");

        assert_eq!(charged, balance(95_000));
    }

    #[tokio::test]
    async fn retry_with_the_same_key_returns_the_first_answer_and_charges_once() {
        let stored = Stored::default();
        let use_case = charge_points(wallet_storing(45_000, &stored, 1), store_reading(&stored));

        let first = use_case
            .execute(command(50_000, Some(key("charge-1"))))
            .await
            .expect("charged");
        let retry = use_case
            .execute(command(50_000, Some(key("charge-1"))))
            .await
            .expect("replayed");

        assert_eq!(first, balance(95_000));
        assert_eq!(retry, first);
    }

    #[tokio::test]
    async fn same_key_with_another_amount_is_refused_and_charges_nothing_more() {
        let stored = Stored::default();
        let use_case = charge_points(wallet_storing(45_000, &stored, 1), store_reading(&stored));
        use_case
            .execute(command(50_000, Some(key("charge-1"))))
            .await
            .expect("charged");

        let refused = use_case
            .execute(command(60_000, Some(key("charge-1"))))
            .await;

        assert!(matches!(
            refused,
            Err(ChargePointsError::IdempotencyKeyReused)
        ));
    }

    #[tokio::test]
    async fn key_committed_first_by_a_racing_request_returns_that_requests_answer() {
        let stored = Stored::default();
        let racing = Arc::clone(&stored);
        let mut wallets = MockWalletRepository::new();
        wallets.expect_balance().returning(|_| Ok(balance(45_000)));
        wallets.expect_charge().times(1).returning(move |request| {
            // The twin request committed between our replay check and our write.
            let record = request.idempotency.as_ref().expect("a key");
            *racing.lock().expect("lock") = Some(StoredAnswer {
                request_hash: record.request_hash.clone(),
                answer: IdempotentAnswer::Charge {
                    balance: balance(95_000),
                },
            });
            Ok(ChargeOutcome::KeyAlreadyUsed)
        });

        let answer = charge_points(wallets, store_reading(&stored))
            .execute(command(50_000, Some(key("charge-1"))))
            .await
            .expect("the twin's answer");

        assert_eq!(answer, balance(95_000));
    }

    #[tokio::test]
    async fn key_taken_by_a_request_still_in_flight_is_in_use() {
        let stored = Stored::default();
        let mut wallets = MockWalletRepository::new();
        wallets.expect_balance().returning(|_| Ok(balance(45_000)));
        wallets
            .expect_charge()
            .times(1)
            .returning(|_| Ok(ChargeOutcome::KeyAlreadyUsed));

        let refused = charge_points(wallets, store_reading(&stored))
            .execute(command(50_000, Some(key("charge-1"))))
            .await;

        assert!(matches!(
            refused,
            Err(ChargePointsError::IdempotencyKeyInUse)
        ));
    }

    #[tokio::test]
    async fn balance_limit_reached_by_a_racing_charge_is_refused() {
        let mut wallets = MockWalletRepository::new();
        wallets.expect_balance().returning(|_| Ok(balance(45_000)));
        wallets
            .expect_charge()
            .times(1)
            .returning(|_| Ok(ChargeOutcome::BalanceLimitExceeded));

        let refused = charge_points(wallets, untouched_store())
            .execute(command(50_000, None))
            .await;

        assert!(matches!(
            refused,
            Err(ChargePointsError::BalanceLimitExceeded(_))
        ));
    }

    #[tokio::test]
    async fn charge_key_holding_a_payments_answer_is_refused() {
        let stored = Stored::default();
        let mut wallets = MockWalletRepository::new();
        wallets.expect_balance().returning(|_| Ok(balance(45_000)));
        wallets.expect_charge().times(1).returning({
            let stored = Arc::clone(&stored);
            move |request| {
                let record = request.idempotency.as_ref().expect("a key");
                *stored.lock().expect("lock") = Some(StoredAnswer {
                    request_hash: record.request_hash.clone(),
                    answer: IdempotentAnswer::Payment(PaymentReceipt {
                        payment_id: PaymentId::new(9).expect("id"),
                        reservation_id: reservation_id(),
                        amount: concert_domain::Price::from_stored(1),
                        balance: balance(0),
                        paid_at: NOW,
                    }),
                });
                Ok(ChargeOutcome::KeyAlreadyUsed)
            }
        });

        let refused = charge_points(wallets, store_reading(&stored))
            .execute(command(50_000, Some(key("charge-1"))))
            .await;

        assert!(matches!(
            refused,
            Err(ChargePointsError::IdempotencyKeyReused)
        ));
    }
}
