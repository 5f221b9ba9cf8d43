//! Use case: add prepaid points to a user's wallet, safe to retry with an idempotency key.

use std::sync::Arc;

use concert_domain::wallet::ChargeRefused;
use concert_domain::{
    Amount, Balance, IdempotencyKey, IdempotencyScope, ParseError, UserId, WalletLimits,
};

use crate::idempotency::{Idempotent, ReplayError, Step, record};
use crate::ports::{
    ChargeWrite, Clock, IdempotencyStore, IdempotentAnswer, RepositoryError, Versioned,
    WalletRepository,
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
    #[error(transparent)]
    Refused(#[from] ChargeRefused),
    #[error("the idempotency key was used with another request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl ChargePointsError {
    fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused(_))
    }
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

    /// Loads the wallet, lets the domain charge it, and writes the new balance with its ledger
    /// entry (and the key) over the version read.
    #[tracing::instrument(name = "charge_points", skip_all, fields(user = %command.user, amount = command.amount))]
    pub async fn execute(
        &self,
        command: ChargePointsCommand,
    ) -> Result<Balance, ChargePointsError> {
        let amount = Amount::parse(command.amount, self.limits.max_charge)
            .map_err(ChargePointsError::InvalidAmount)?;
        let user = command.user;
        let idempotency = record(command.idempotency_key, || format!("amount={amount}"));
        let idempotency = &idempotency;
        let protocol = Idempotent {
            store: self.idempotency.as_ref(),
            user,
            scope: IdempotencyScope::Charge,
            record: idempotency.as_ref(),
            pick: |answer| match answer {
                IdempotentAnswer::Charge { balance } => Some(balance),
                IdempotentAnswer::Payment(_) => None,
            },
        };
        protocol
            .run(ChargePointsError::is_refusal, || async move {
                let now = self.clock.now();
                let Versioned {
                    value: mut wallet,
                    version,
                } = self.wallets.load(user).await?;
                let change = wallet.charge(amount, self.limits, now)?;
                let write = ChargeWrite {
                    wallet: Versioned::new(wallet, version),
                    change,
                    idempotency: idempotency.clone(),
                };
                let written = self.wallets.save_charge(&write).await?;
                Ok(Step::from(written).map(|()| change.balance_after))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use concert_domain::{BalanceChange, LedgerKind, PaymentId, Wallet};
    use mockall::predicate::eq;
    use time::{Duration, OffsetDateTime};

    use super::*;
    use crate::idempotency::MAX_ATTEMPTS;
    use crate::ports::{
        MockIdempotencyStore, MockWalletRepository, PaymentReceipt, StoredAnswer, Version, Written,
    };
    use crate::test_support::{NOW, clock, reservation_id, user};

    const LIMITS: WalletLimits = WalletLimits {
        max_charge: 100_000,
        max_balance: 1_000_000,
    };

    const VERSION: Version = Version::new(4);

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

    /// The user's wallet as stored: `points`, last changed an hour ago.
    fn wallet(points: i64) -> Wallet {
        Wallet::new(user(), balance(points), Some(NOW - Duration::hours(1)))
    }

    /// The wallet after a change at `at`.
    fn wallet_after(points: i64, at: OffsetDateTime) -> Wallet {
        Wallet::new(user(), balance(points), Some(at))
    }

    fn charge_of(amount: i64, after: i64, at: OffsetDateTime) -> BalanceChange {
        BalanceChange {
            kind: LedgerKind::Charge,
            amount,
            balance_after: balance(after),
            at,
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
            .withf(|who, scope, found| {
                *who == user() && *scope == IdempotencyScope::Charge && *found == key("charge-1")
            })
            .returning(move |_, _, _| Ok(stored.lock().expect("lock").clone()));
        store
    }

    fn untouched_store() -> MockIdempotencyStore {
        let mut store = MockIdempotencyStore::new();
        store.expect_find().never();
        store
    }

    /// A store that answers `answers` in turn, one per lookup.
    fn store_answering(answers: Vec<Option<StoredAnswer>>) -> MockIdempotencyStore {
        let times = answers.len();
        let mut answers = answers.into_iter();
        let mut store = MockIdempotencyStore::new();
        store
            .expect_find()
            .times(times)
            .returning(move |_, _, _| Ok(answers.next().expect("an answer")));
        store
    }

    /// A repository that loads `loaded` at [`VERSION`], `loads` times.
    fn loading(loaded: Wallet, loads: usize) -> MockWalletRepository {
        let mut wallets = MockWalletRepository::new();
        wallets
            .expect_load()
            .with(eq(user()))
            .times(loads)
            .returning(move |_| Ok(Versioned::new(loaded, VERSION)));
        wallets
    }

    /// A wallet holding `start` whose write, like the real adapter, stores the answer under the
    /// request's key in the same step. Expects one load and one write.
    fn wallet_storing(start: i64, stored: &Stored) -> MockWalletRepository {
        let stored = Arc::clone(stored);
        let mut wallets = loading(wallet(start), 1);
        wallets
            .expect_save_charge()
            .times(1)
            .returning(move |write| {
                if let Some(record) = &write.idempotency {
                    *stored.lock().expect("lock") = Some(StoredAnswer {
                        request_hash: record.request_hash.clone(),
                        answer: IdempotentAnswer::Charge {
                            balance: write.change.balance_after,
                        },
                    });
                }
                Ok(Written::Done(()))
            });
        wallets
    }

    fn untouched_wallet() -> MockWalletRepository {
        let mut wallets = MockWalletRepository::new();
        wallets.expect_load().never();
        wallets.expect_save_charge().never();
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
    async fn charge_writes_the_new_balance_and_its_ledger_change_over_the_version_read() {
        let mut wallets = loading(wallet(45_000), 1);
        wallets
            .expect_save_charge()
            .withf(|write| {
                *write
                    == ChargeWrite {
                        wallet: Versioned::new(wallet_after(95_000, NOW), VERSION),
                        change: charge_of(50_000, 95_000, NOW),
                        idempotency: None,
                    }
            })
            .times(1)
            .returning(|_| Ok(Written::Done(())));

        let charged = charge_points(wallets, untouched_store())
            .execute(command(50_000, None))
            .await
            .expect("charged");

        assert_eq!(charged, balance(95_000));
    }

    #[tokio::test]
    async fn first_charge_of_a_user_never_seen_is_written_over_the_absent_row() {
        let mut wallets = MockWalletRepository::new();
        wallets
            .expect_load()
            .times(1)
            .returning(|_| Ok(Versioned::new(Wallet::empty(user()), Version::ABSENT)));
        wallets
            .expect_save_charge()
            .withf(|write| {
                write.wallet == Versioned::new(wallet_after(700, NOW), Version::ABSENT)
                    && write.change == charge_of(700, 700, NOW)
            })
            .times(1)
            .returning(|_| Ok(Written::Done(())));

        let charged = charge_points(wallets, untouched_store())
            .execute(command(700, None))
            .await
            .expect("charged");

        assert_eq!(charged, balance(700));
    }

    #[tokio::test]
    async fn charge_on_a_clock_behind_the_last_change_is_dated_at_that_change() {
        let ahead = NOW + Duration::seconds(2);
        let mut wallets = loading(Wallet::new(user(), balance(10), Some(ahead)), 1);
        wallets
            .expect_save_charge()
            .withf(move |write| {
                write.change == charge_of(5, 15, ahead)
                    && write.wallet.value.last_change_at() == Some(ahead)
            })
            .times(1)
            .returning(|_| Ok(Written::Done(())));

        charge_points(wallets, untouched_store())
            .execute(command(5, None))
            .await
            .expect("charged");
    }

    #[tokio::test]
    async fn charge_with_a_key_writes_the_key_and_a_fingerprint_with_the_balance() {
        let stored = Stored::default();
        let mut wallets = loading(wallet(45_000), 1);
        wallets
            .expect_save_charge()
            .withf(|write| {
                write.change == charge_of(50_000, 95_000, NOW)
                    && write.idempotency.as_ref().is_some_and(|record| {
                        record.key == key("charge-1") && !record.request_hash.is_empty()
                    })
            })
            .times(1)
            .returning(|_| Ok(Written::Done(())));

        let charged = charge_points(wallets, store_reading(&stored))
            .execute(command(50_000, Some(key("charge-1"))))
            .await
            .expect("charged");

        assert_eq!(charged, balance(95_000));
    }

    #[tokio::test]
    async fn charge_over_the_maximum_balance_is_refused_and_never_written() {
        let mut wallets = loading(wallet(LIMITS.max_balance - 10), 1);
        wallets.expect_save_charge().never();

        let refused = charge_points(wallets, untouched_store())
            .execute(command(11, None))
            .await;

        assert!(matches!(
            refused,
            Err(ChargePointsError::Refused(ChargeRefused::BalanceLimitExceeded { max_balance }))
                if max_balance == LIMITS.max_balance
        ));
    }

    #[tokio::test]
    async fn charge_up_to_exactly_the_maximum_balance_is_written() {
        let mut wallets = loading(wallet(LIMITS.max_balance - 10), 1);
        wallets
            .expect_save_charge()
            .withf(|write| write.change.balance_after == balance(LIMITS.max_balance))
            .times(1)
            .returning(|_| Ok(Written::Done(())));

        let charged = charge_points(wallets, untouched_store())
            .execute(command(10, None))
            .await
            .expect("charged");

        assert_eq!(charged, balance(LIMITS.max_balance));
    }

    #[tokio::test]
    async fn stale_charge_loads_again_and_charges_the_new_balance() {
        let mut loads = vec![
            Versioned::new(wallet(45_000), VERSION),
            Versioned::new(wallet_after(55_000, NOW), Version::new(5)),
        ]
        .into_iter();
        let mut wallets = MockWalletRepository::new();
        wallets
            .expect_load()
            .times(2)
            .returning(move |_| Ok(loads.next().expect("two loads")));
        wallets
            .expect_save_charge()
            .withf(|write| write.wallet.version == VERSION)
            .times(1)
            .returning(|_| Ok(Written::Stale));
        wallets
            .expect_save_charge()
            .withf(|write| {
                write.wallet == Versioned::new(wallet_after(105_000, NOW), Version::new(5))
                    && write.change == charge_of(50_000, 105_000, NOW)
                    && write
                        .idempotency
                        .as_ref()
                        .is_some_and(|record| record.key == key("charge-1"))
            })
            .times(1)
            .returning(|_| Ok(Written::Done(())));

        // Looked up before the first attempt and again after the stale write.
        let charged = charge_points(wallets, store_answering(vec![None, None]))
            .execute(command(50_000, Some(key("charge-1"))))
            .await
            .expect("charged");

        assert_eq!(charged, balance(105_000));
    }

    #[tokio::test]
    async fn charge_that_stays_stale_gives_up_as_unavailable() {
        let attempts = usize::try_from(MAX_ATTEMPTS).expect("attempts");
        let mut wallets = loading(wallet(45_000), attempts);
        wallets
            .expect_save_charge()
            .times(attempts)
            .returning(|_| Ok(Written::Stale));

        let refused = charge_points(wallets, untouched_store())
            .execute(command(50_000, None))
            .await;

        assert!(matches!(
            refused,
            Err(ChargePointsError::Repository(RepositoryError::Unavailable(
                _
            )))
        ));
    }

    #[tokio::test]
    async fn retry_with_the_same_key_replays_the_first_answer_before_any_load() {
        let stored = Stored::default();
        let use_case = charge_points(wallet_storing(45_000, &stored), store_reading(&stored));

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
        let use_case = charge_points(wallet_storing(45_000, &stored), store_reading(&stored));
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
    async fn stale_write_after_a_twin_committed_replays_the_twins_answer() {
        let stored = Stored::default();
        let racing = Arc::clone(&stored);
        let mut wallets = loading(wallet(45_000), 1);
        wallets
            .expect_save_charge()
            .times(1)
            .returning(move |write| {
                // The twin request committed between our load and our write.
                let record = write.idempotency.as_ref().expect("a key");
                *racing.lock().expect("lock") = Some(StoredAnswer {
                    request_hash: record.request_hash.clone(),
                    answer: IdempotentAnswer::Charge {
                        balance: balance(95_000),
                    },
                });
                Ok(Written::Stale)
            });

        let answer = charge_points(wallets, store_reading(&stored))
            .execute(command(50_000, Some(key("charge-1"))))
            .await
            .expect("the twin's answer");

        assert_eq!(answer, balance(95_000));
    }

    #[tokio::test]
    async fn refusal_after_a_twin_filled_the_balance_replays_the_twins_answer() {
        // The twin request with the same key committed after our replay check; the wallet we
        // load already holds its amount and leaves no room for ours.
        let mut wallets = loading(wallet(LIMITS.max_balance), 1);
        wallets.expect_save_charge().never();
        let twin = StoredAnswer {
            request_hash: "amount=50".to_owned(),
            answer: IdempotentAnswer::Charge {
                balance: balance(LIMITS.max_balance),
            },
        };

        let answer = charge_points(wallets, store_answering(vec![None, Some(twin)]))
            .execute(command(50, Some(key("k1"))))
            .await
            .expect("the twin's answer");

        assert_eq!(answer, balance(LIMITS.max_balance));
    }

    #[tokio::test]
    async fn refusal_with_a_key_and_no_stored_answer_stays_a_refusal() {
        let mut wallets = loading(wallet(LIMITS.max_balance), 1);
        wallets.expect_save_charge().never();

        let refused = charge_points(wallets, store_answering(vec![None, None]))
            .execute(command(50, Some(key("k1"))))
            .await;

        assert!(matches!(refused, Err(ChargePointsError::Refused(_))));
    }

    #[tokio::test]
    async fn charge_key_holding_a_payments_answer_is_refused() {
        let stored = Stored::default();
        let mut wallets = loading(wallet(45_000), 1);
        wallets.expect_save_charge().times(1).returning({
            let stored = Arc::clone(&stored);
            move |write| {
                let record = write.idempotency.as_ref().expect("a key");
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
                Ok(Written::Stale)
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
