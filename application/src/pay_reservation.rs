//! Use case: pay a held reservation from the caller's points. One atomic step confirms the
//! reservation, sells the seat, debits the wallet, records the payment and ends the caller's queue
//! token, so that the next in line is admitted.

use std::sync::Arc;

use concert_domain::reservation::PayRefused;
use concert_domain::{IdempotencyKey, IdempotencyScope, ReservationId, UserId, Wallet};

use crate::authorize_request::{AuthorizeError, AuthorizeRequest};
use crate::idempotency::{ReplayError, record, stored_answer};
use crate::ports::{
    AdmissionTrigger, Clock, IdempotencyRecord, IdempotencyStore, IdempotentAnswer, PaymentOutcome,
    PaymentReceipt, PaymentRepository, PaymentRequest, RepositoryError, ReservationRepository,
    TokenClaims, WalletRepository,
};
use crate::read_reservation::find_own;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayReservationCommand {
    /// The caller's verified token, whatever its status: a retry with the key of a payment that
    /// already ended the token must still get the first answer.
    pub claims: TokenClaims,
    pub reservation: ReservationId,
    pub idempotency_key: Option<IdempotencyKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum PayReservationError {
    #[error(transparent)]
    Unauthorized(AuthorizeError),
    #[error("reservation {0} not found")]
    NotFound(ReservationId),
    #[error("the hold on reservation {0} has run out")]
    Expired(ReservationId),
    #[error("reservation {0} is no longer held")]
    NotHeld(ReservationId),
    #[error("the balance {balance} is less than the price {price}")]
    InsufficientBalance { balance: i64, price: i64 },
    #[error("the idempotency key was used with another request")]
    IdempotencyKeyReused,
    #[error("a request with this idempotency key is still in flight")]
    IdempotencyKeyInUse,
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl PayReservationError {
    /// A business refusal (as opposed to a key conflict or an infrastructure failure).
    fn is_refusal(&self) -> bool {
        match self {
            Self::Unauthorized(_)
            | Self::NotFound(_)
            | Self::Expired(_)
            | Self::NotHeld(_)
            | Self::InsufficientBalance { .. } => true,
            Self::IdempotencyKeyReused | Self::IdempotencyKeyInUse | Self::Repository(_) => false,
        }
    }
}

impl From<ReplayError> for PayReservationError {
    fn from(error: ReplayError) -> Self {
        match error {
            ReplayError::KeyReused => Self::IdempotencyKeyReused,
            ReplayError::Repository(error) => Self::Repository(error),
        }
    }
}

impl From<AuthorizeError> for PayReservationError {
    fn from(error: AuthorizeError) -> Self {
        match error {
            AuthorizeError::Repository(error) => Self::Repository(error),
            refused @ (AuthorizeError::TokenInvalid
            | AuthorizeError::TokenExpired
            | AuthorizeError::QueueNotActive) => Self::Unauthorized(refused),
        }
    }
}

pub struct PayReservation {
    authorize: Arc<AuthorizeRequest>,
    reservations: Arc<dyn ReservationRepository>,
    wallets: Arc<dyn WalletRepository>,
    payments: Arc<dyn PaymentRepository>,
    idempotency: Arc<dyn IdempotencyStore>,
    admission: Arc<dyn AdmissionTrigger>,
    clock: Arc<dyn Clock>,
}

/// The ports a payment needs, gathered so the constructor stays readable.
pub struct PayReservationPorts {
    pub authorize: Arc<AuthorizeRequest>,
    pub reservations: Arc<dyn ReservationRepository>,
    pub wallets: Arc<dyn WalletRepository>,
    pub payments: Arc<dyn PaymentRepository>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub admission: Arc<dyn AdmissionTrigger>,
    pub clock: Arc<dyn Clock>,
}

impl PayReservation {
    pub fn new(ports: PayReservationPorts) -> Self {
        Self {
            authorize: ports.authorize,
            reservations: ports.reservations,
            wallets: ports.wallets,
            payments: ports.payments,
            idempotency: ports.idempotency,
            admission: ports.admission,
            clock: ports.clock,
        }
    }

    #[tracing::instrument(name = "pay_reservation", skip_all, fields(user = %command.claims.user, reservation = command.reservation.get()))]
    pub async fn execute(
        &self,
        command: PayReservationCommand,
    ) -> Result<PaymentReceipt, PayReservationError> {
        let user = command.claims.user;
        let id = command.reservation;
        let idempotency = record(command.idempotency_key, || format!("reservationId={id}"));
        if let Some(record) = &idempotency
            && let Some(receipt) = self.replay(user, record).await?
        {
            return Ok(receipt);
        }
        match (
            self.pay(&command.claims, id, idempotency.as_ref()).await,
            &idempotency,
        ) {
            // A payment with this key committed while this request checked the token, the
            // reservation or the balance, so what this request saw was that payment's own effect
            // (token ended, reservation confirmed, balance debited). Same key: the first answer.
            (Err(refused), Some(record)) if refused.is_refusal() => {
                self.replay(user, record).await?.ok_or(refused)
            }
            (paid, _) => paid,
        }
    }

    /// Checks the token, the reservation and the balance, then pays in one atomic step.
    async fn pay(
        &self,
        claims: &TokenClaims,
        id: ReservationId,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<PaymentReceipt, PayReservationError> {
        let user = claims.user;
        let caller = self.authorize.authorize(claims).await?;
        let now = self.clock.now();
        let reservation = find_own(self.reservations.as_ref(), id, user)
            .await?
            .ok_or(PayReservationError::NotFound(id))?;
        reservation
            .check_payable(user, now)
            .map_err(|refused| match refused {
                PayRefused::NotYours => PayReservationError::NotFound(id),
                PayRefused::Expired => PayReservationError::Expired(id),
                PayRefused::NotHeld => PayReservationError::NotHeld(id),
            })?;
        let balance = self.wallets.balance(user).await?;
        Wallet { user, balance }
            .debit(reservation.price)
            .map_err(|_| PayReservationError::InsufficientBalance {
                balance: balance.get(),
                price: reservation.price.get(),
            })?;
        let request = PaymentRequest {
            user,
            reservation: id,
            amount: reservation.price,
            ticket: caller.ticket,
            now,
            idempotency: idempotency.cloned(),
        };
        match self.payments.pay(&request).await? {
            PaymentOutcome::Paid(receipt) => {
                self.admission.request_admission();
                Ok(receipt)
            }
            PaymentOutcome::ReservationNotHeld => Err(PayReservationError::NotHeld(id)),
            PaymentOutcome::HoldLapsed => Err(PayReservationError::Expired(id)),
            PaymentOutcome::InsufficientBalance => {
                let balance = self.wallets.balance(user).await?;
                Err(PayReservationError::InsufficientBalance {
                    balance: balance.get(),
                    price: reservation.price.get(),
                })
            }
            PaymentOutcome::KeyAlreadyUsed => {
                let record = idempotency.ok_or(PayReservationError::IdempotencyKeyInUse)?;
                self.replay(user, record)
                    .await?
                    .ok_or(PayReservationError::IdempotencyKeyInUse)
            }
        }
    }

    async fn replay(
        &self,
        user: UserId,
        record: &IdempotencyRecord,
    ) -> Result<Option<PaymentReceipt>, PayReservationError> {
        let pick = |answer| match answer {
            IdempotentAnswer::Payment(receipt) => Some(receipt),
            IdempotentAnswer::Charge { .. } => None,
        };
        Ok(stored_answer(
            self.idempotency.as_ref(),
            user,
            IdempotencyScope::Payment,
            record,
            pick,
        )
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use concert_domain::{Balance, PaymentId, Price, QueueTicket, Reservation, ReservationStatus};
    use mockall::predicate::eq;
    use time::Duration;

    use super::*;
    use crate::ports::{
        MockAdmissionTrigger, MockIdempotencyStore, MockPaymentRepository, MockQueueRepository,
        MockReservationRepository, MockTokenSigner, MockWalletRepository, StoredAnswer,
    };
    use crate::queue_access::QueueAccess;
    use crate::test_support::{
        NOW, PRICE, active_ticket, claims, clock, held_reservation, lapsed_reservation,
        others_reservation, policy, reservation_id, reservation_with, ticket_no, user,
        view_serving,
    };

    fn balance(value: i64) -> Balance {
        Balance::new(value).expect("balance")
    }

    fn key() -> IdempotencyKey {
        IdempotencyKey::parse("pay-1").expect("key")
    }

    fn receipt() -> PaymentReceipt {
        PaymentReceipt {
            payment_id: PaymentId::new(9).expect("id"),
            reservation_id: reservation_id(),
            amount: Price::from_stored(PRICE),
            balance: balance(80_000),
            paid_at: NOW,
        }
    }

    fn command(key: Option<IdempotencyKey>) -> PayReservationCommand {
        PayReservationCommand {
            claims: claims(14),
            reservation: reservation_id(),
            idempotency_key: key,
        }
    }

    /// The fakes of one payment. Defaults answer any number of calls, so a test replaces a whole
    /// fake to put counts on it; `payments` and `admission` have no expectation at all: a call
    /// nobody expected fails the test.
    struct Payment {
        serving: i64,
        queue: MockQueueRepository,
        reservations: MockReservationRepository,
        wallets: MockWalletRepository,
        payments: MockPaymentRepository,
        store: MockIdempotencyStore,
        admission: MockAdmissionTrigger,
    }

    impl Payment {
        /// Ticket 14 active, reservation 41 held by the caller, 200,000 points, no stored key.
        fn ready() -> Self {
            Self {
                serving: 20,
                queue: queue_holding(active_ticket(14, Duration::seconds(1))),
                reservations: reservations_storing(held_reservation()),
                wallets: wallet_holding(200_000),
                payments: MockPaymentRepository::new(),
                store: store_answering(None),
                admission: MockAdmissionTrigger::new(),
            }
        }

        async fn execute(
            self,
            command: PayReservationCommand,
        ) -> Result<PaymentReceipt, PayReservationError> {
            self.build().await.execute(command).await
        }

        async fn build(self) -> PayReservation {
            let authorize = AuthorizeRequest::new(QueueAccess {
                signer: Arc::new(MockTokenSigner::new()),
                queue: Arc::new(self.queue),
                clock: clock(),
                view: view_serving(self.serving).await,
                policy: policy(),
            });
            PayReservation::new(PayReservationPorts {
                authorize: Arc::new(authorize),
                reservations: Arc::new(self.reservations),
                wallets: Arc::new(self.wallets),
                payments: Arc::new(self.payments),
                idempotency: Arc::new(self.store),
                admission: Arc::new(self.admission),
                clock: clock(),
            })
        }
    }

    fn queue_holding(ticket: QueueTicket) -> MockQueueRepository {
        let mut queue = MockQueueRepository::new();
        queue
            .expect_find()
            .returning(move |_| Ok(Some(ticket.clone())));
        queue.expect_record_activity().returning(|_, _| Ok(()));
        queue
    }

    fn reservations_storing(reservation: Reservation) -> MockReservationRepository {
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_find()
            .with(eq(reservation_id()))
            .returning(move |_| Ok(Some(reservation.clone())));
        reservations
    }

    fn wallet_holding(points: i64) -> MockWalletRepository {
        let mut wallets = MockWalletRepository::new();
        wallets
            .expect_balance()
            .with(eq(user()))
            .returning(move |_| Ok(balance(points)));
        wallets
    }

    fn store_answering(stored: Option<StoredAnswer>) -> MockIdempotencyStore {
        let mut store = MockIdempotencyStore::new();
        store
            .expect_find()
            .withf(|who, scope, _| *who == user() && *scope == IdempotencyScope::Payment)
            .returning(move |_, _, _| Ok(stored.clone()));
        store
    }

    fn payments_never() -> MockPaymentRepository {
        let mut payments = MockPaymentRepository::new();
        payments.expect_pay().never();
        payments
    }

    fn payments_answering(outcome: PaymentOutcome) -> MockPaymentRepository {
        let mut payments = MockPaymentRepository::new();
        payments
            .expect_pay()
            .times(1)
            .returning(move |_| Ok(outcome));
        payments
    }

    fn admission_requested(times: usize) -> MockAdmissionTrigger {
        let mut admission = MockAdmissionTrigger::new();
        admission
            .expect_request_admission()
            .times(times)
            .return_const(());
        admission
    }

    #[tokio::test]
    async fn payment_persists_the_price_the_callers_ticket_and_the_key_then_admits_the_next() {
        let mut payments = MockPaymentRepository::new();
        payments
            .expect_pay()
            .withf(|request| {
                request.user == user()
                    && request.reservation == reservation_id()
                    && request.amount == Price::from_stored(PRICE)
                    && request.ticket == ticket_no(14)
                    && request.now == NOW
                    && request.idempotency.as_ref().is_some_and(|record| {
                        record.key == key() && !record.request_hash.is_empty()
                    })
            })
            .times(1)
            .returning(|_| Ok(PaymentOutcome::Paid(receipt())));

        let paid = Payment {
            payments,
            admission: admission_requested(1),
            ..Payment::ready()
        }
        .execute(command(Some(key())))
        .await
        .expect("paid");

        assert_eq!(paid, receipt());
    }

    #[tokio::test]
    async fn payment_without_a_key_carries_no_idempotency_record() {
        let mut payments = MockPaymentRepository::new();
        payments
            .expect_pay()
            .withf(|request| request.idempotency.is_none())
            .times(1)
            .returning(|_| Ok(PaymentOutcome::Paid(receipt())));
        let mut store = MockIdempotencyStore::new();
        store.expect_find().never();

        Payment {
            payments,
            store,
            admission: admission_requested(1),
            ..Payment::ready()
        }
        .execute(command(None))
        .await
        .expect("paid");
    }

    #[tokio::test]
    async fn short_balance_is_refused_and_nothing_is_paid() {
        let refused = Payment {
            wallets: wallet_holding(PRICE - 1),
            payments: payments_never(),
            admission: admission_requested(0),
            ..Payment::ready()
        }
        .execute(command(Some(key())))
        .await;

        assert!(matches!(
            refused,
            Err(PayReservationError::InsufficientBalance { balance, price })
                if balance == PRICE - 1 && price == PRICE
        ));
    }

    #[tokio::test]
    async fn lapsed_hold_is_expired_and_nothing_is_paid() {
        let refused = Payment {
            reservations: reservations_storing(lapsed_reservation()),
            payments: payments_never(),
            ..Payment::ready()
        }
        .execute(command(None))
        .await;

        assert!(matches!(
            refused,
            Err(PayReservationError::Expired(id)) if id == reservation_id()
        ));
    }

    #[tokio::test]
    async fn another_users_reservation_is_not_found_and_nothing_is_paid() {
        let refused = Payment {
            reservations: reservations_storing(others_reservation()),
            payments: payments_never(),
            ..Payment::ready()
        }
        .execute(command(None))
        .await;

        assert!(matches!(refused, Err(PayReservationError::NotFound(_))));
    }

    #[tokio::test]
    async fn missing_reservation_is_not_found() {
        let mut reservations = MockReservationRepository::new();
        reservations.expect_find().times(1).returning(|_| Ok(None));

        let refused = Payment {
            reservations,
            payments: payments_never(),
            ..Payment::ready()
        }
        .execute(command(None))
        .await;

        assert!(matches!(refused, Err(PayReservationError::NotFound(_))));
    }

    #[tokio::test]
    async fn confirmed_reservation_is_not_held_and_not_paid_twice() {
        let refused = Payment {
            reservations: reservations_storing(reservation_with(ReservationStatus::Confirmed)),
            payments: payments_never(),
            ..Payment::ready()
        }
        .execute(command(None))
        .await;

        assert!(matches!(refused, Err(PayReservationError::NotHeld(_))));
    }

    #[tokio::test]
    async fn waiting_token_is_not_active_and_reads_nothing() {
        let mut queue = MockQueueRepository::new();
        queue.expect_find().never();
        let mut reservations = MockReservationRepository::new();
        reservations.expect_find().never();

        let refused = Payment {
            serving: 13,
            queue,
            reservations,
            payments: payments_never(),
            ..Payment::ready()
        }
        .execute(command(Some(key())))
        .await;

        assert!(matches!(
            refused,
            Err(PayReservationError::Unauthorized(
                AuthorizeError::QueueNotActive
            ))
        ));
    }

    #[tokio::test]
    async fn expired_token_without_a_stored_answer_is_refused() {
        let mut ended = active_ticket(14, Duration::seconds(1));
        ended.end();

        let refused = Payment {
            queue: queue_holding(ended),
            payments: payments_never(),
            ..Payment::ready()
        }
        .execute(command(Some(key())))
        .await;

        assert!(matches!(
            refused,
            Err(PayReservationError::Unauthorized(
                AuthorizeError::TokenExpired
            ))
        ));
    }

    /// Fakes that share state as the database would: the payment stores its answer under the key
    /// and ends the ticket in the same step. The queue, the reservation and the wallet may each
    /// be read once only, and the payment written once.
    fn paying_once() -> Payment {
        let ticket = Arc::new(Mutex::new(active_ticket(14, Duration::seconds(1))));
        let stored: Arc<Mutex<Option<StoredAnswer>>> = Arc::default();

        let mut queue = MockQueueRepository::new();
        let current = Arc::clone(&ticket);
        queue
            .expect_find()
            .with(eq(ticket_no(14)))
            .times(1)
            .returning(move |_| Ok(Some(current.lock().expect("lock").clone())));
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_find()
            .times(1)
            .returning(|_| Ok(Some(held_reservation())));
        let mut wallets = MockWalletRepository::new();
        wallets
            .expect_balance()
            .times(1)
            .returning(|_| Ok(balance(200_000)));
        let mut payments = MockPaymentRepository::new();
        let (ended, answers) = (Arc::clone(&ticket), Arc::clone(&stored));
        payments.expect_pay().times(1).returning(move |request| {
            let record = request.idempotency.as_ref().expect("a key");
            *answers.lock().expect("lock") = Some(StoredAnswer {
                request_hash: record.request_hash.clone(),
                answer: IdempotentAnswer::Payment(receipt()),
            });
            ended.lock().expect("lock").end();
            Ok(PaymentOutcome::Paid(receipt()))
        });
        let mut store = MockIdempotencyStore::new();
        store
            .expect_find()
            .returning(move |_, _, _| Ok(stored.lock().expect("lock").clone()));

        Payment {
            serving: 20,
            queue,
            reservations,
            wallets,
            payments,
            store,
            admission: admission_requested(1),
        }
    }

    #[tokio::test]
    async fn retry_with_the_key_and_the_now_expired_token_returns_the_first_receipt() {
        let use_case = paying_once().build().await;

        let first = use_case.execute(command(Some(key()))).await.expect("paid");
        let retry = use_case
            .execute(command(Some(key())))
            .await
            .expect("replayed without authorizing");

        assert_eq!(retry, first);
    }

    #[tokio::test]
    async fn same_key_for_another_reservation_is_refused() {
        let use_case = paying_once().build().await;
        use_case.execute(command(Some(key()))).await.expect("paid");

        let refused = use_case
            .execute(PayReservationCommand {
                reservation: ReservationId::new(42).expect("id"),
                ..command(Some(key()))
            })
            .await;

        assert!(matches!(
            refused,
            Err(PayReservationError::IdempotencyKeyReused)
        ));
    }

    #[tokio::test]
    async fn payment_that_finds_the_reservation_no_longer_held_is_not_held() {
        let refused = Payment {
            payments: payments_answering(PaymentOutcome::ReservationNotHeld),
            admission: admission_requested(0),
            ..Payment::ready()
        }
        .execute(command(None))
        .await;

        assert!(matches!(refused, Err(PayReservationError::NotHeld(_))));
    }

    #[tokio::test]
    async fn payment_that_finds_the_hold_lapsed_is_expired() {
        let refused = Payment {
            payments: payments_answering(PaymentOutcome::HoldLapsed),
            admission: admission_requested(0),
            ..Payment::ready()
        }
        .execute(command(None))
        .await;

        assert!(matches!(refused, Err(PayReservationError::Expired(_))));
    }

    #[tokio::test]
    async fn payment_that_finds_the_balance_spent_reports_the_balance_read_again() {
        let mut wallets = MockWalletRepository::new();
        let mut reads = vec![200_000, 90_000].into_iter();
        wallets
            .expect_balance()
            .times(2)
            .returning(move |_| Ok(balance(reads.next().expect("two reads"))));

        let refused = Payment {
            wallets,
            payments: payments_answering(PaymentOutcome::InsufficientBalance),
            admission: admission_requested(0),
            ..Payment::ready()
        }
        .execute(command(None))
        .await;

        assert!(matches!(
            refused,
            Err(PayReservationError::InsufficientBalance { balance: 90_000, price })
                if price == PRICE
        ));
    }

    #[tokio::test]
    async fn key_with_a_payment_still_in_flight_is_in_use() {
        let refused = Payment {
            payments: payments_answering(PaymentOutcome::KeyAlreadyUsed),
            admission: admission_requested(0),
            ..Payment::ready()
        }
        .execute(command(Some(key())))
        .await;

        assert!(matches!(
            refused,
            Err(PayReservationError::IdempotencyKeyInUse)
        ));
    }

    #[tokio::test]
    async fn key_committed_first_by_a_racing_payment_returns_that_payments_receipt() {
        let stored: Arc<Mutex<Option<StoredAnswer>>> = Arc::default();
        let racing = Arc::clone(&stored);
        let mut payments = MockPaymentRepository::new();
        payments.expect_pay().times(1).returning(move |request| {
            // The twin request committed between our replay check and our write.
            let record = request.idempotency.as_ref().expect("a key");
            *racing.lock().expect("lock") = Some(StoredAnswer {
                request_hash: record.request_hash.clone(),
                answer: IdempotentAnswer::Payment(receipt()),
            });
            Ok(PaymentOutcome::KeyAlreadyUsed)
        });
        let mut store = MockIdempotencyStore::new();
        store
            .expect_find()
            .times(2)
            .returning(move |_, _, _| Ok(stored.lock().expect("lock").clone()));

        let answer = Payment {
            payments,
            store,
            admission: admission_requested(0),
            ..Payment::ready()
        }
        .execute(command(Some(key())))
        .await
        .expect("the twin's receipt");

        assert_eq!(answer, receipt());
    }

    #[tokio::test]
    async fn key_committed_by_a_racing_payment_during_the_checks_returns_that_payments_receipt() {
        // The twin request with the same key committed after our replay check: we find the
        // reservation confirmed (and the token ended), which is the twin's own effect.
        let mut finds = 0;
        let mut store = MockIdempotencyStore::new();
        store.expect_find().times(2).returning(move |_, _, _| {
            finds += 1;
            Ok((finds == 2).then(|| StoredAnswer {
                request_hash: "reservationId=41".to_owned(),
                answer: IdempotentAnswer::Payment(receipt()),
            }))
        });

        let answer = Payment {
            reservations: reservations_storing(reservation_with(ReservationStatus::Confirmed)),
            payments: payments_never(),
            store,
            admission: admission_requested(0),
            ..Payment::ready()
        }
        .execute(command(Some(key())))
        .await
        .expect("the twin's receipt");

        assert_eq!(answer, receipt());
    }

    #[tokio::test]
    async fn refusal_with_a_key_and_no_stored_answer_stays_a_refusal() {
        let mut store = MockIdempotencyStore::new();
        store.expect_find().times(2).returning(|_, _, _| Ok(None));

        let refused = Payment {
            reservations: reservations_storing(reservation_with(ReservationStatus::Confirmed)),
            payments: payments_never(),
            store,
            ..Payment::ready()
        }
        .execute(command(Some(key())))
        .await;

        assert!(matches!(refused, Err(PayReservationError::NotHeld(_))));
    }
}
