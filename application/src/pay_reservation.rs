//! Use case: pay a held reservation from the caller's points. One atomic step confirms the
//! reservation, sells the seat, debits the wallet, records the payment and ends the caller's queue
//! token, so that the next in line is admitted. When the line is kept in another store, that step
//! writes the token's end to an outbox instead, and the payment applies it to the line before
//! answering ([`PayReservation::with_ticket_end_relay`]).

use std::sync::Arc;

use concert_domain::booking::{self, PaymentDenied};
use concert_domain::reservation::PayRefused;
use concert_domain::{
    EndReason, IdempotencyKey, IdempotencyScope, ReservationId, TicketStatus, UserId,
};

use crate::authorize_request::{AuthorizeError, AuthorizeRequest};
use crate::idempotency::{Idempotent, ReplayError, Step, record};
use crate::ports::{
    AdmissionTrigger, Clock, IdempotencyStore, IdempotentAnswer, PaymentReceipt, PaymentRepository,
    PaymentWrite, PendingTicketEnd, RepositoryError, TicketEnd, TokenClaims, Versioned, Written,
};
use crate::queue_metrics;
use crate::relay_ticket_ends::RelayTicketEnds;

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
            Self::IdempotencyKeyReused | Self::Repository(_) => false,
        }
    }

    fn denied(id: ReservationId, denied: PaymentDenied) -> Self {
        match denied {
            PaymentDenied::Reservation(PayRefused::NotYours) => Self::NotFound(id),
            PaymentDenied::Reservation(PayRefused::Expired) => Self::Expired(id),
            PaymentDenied::Reservation(PayRefused::NotHeld) => Self::NotHeld(id),
            PaymentDenied::InsufficientBalance(
                concert_domain::wallet::DebitRefused::InsufficientBalance { balance, needed },
            ) => Self::InsufficientBalance {
                balance,
                price: needed,
            },
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
            | AuthorizeError::QueueNotActive
            | AuthorizeError::WrongRoom) => Self::Unauthorized(refused),
        }
    }
}

pub struct PayReservation {
    authorize: Arc<AuthorizeRequest>,
    payments: Arc<dyn PaymentRepository>,
    idempotency: Arc<dyn IdempotencyStore>,
    admission: Arc<dyn AdmissionTrigger>,
    clock: Arc<dyn Clock>,
    /// Set when payments write their ticket ends to the outbox (the line in another store).
    relay: Option<Arc<RelayTicketEnds>>,
}

/// The ports a payment needs, gathered so the constructor stays readable.
pub struct PayReservationPorts {
    pub authorize: Arc<AuthorizeRequest>,
    pub payments: Arc<dyn PaymentRepository>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub admission: Arc<dyn AdmissionTrigger>,
    pub clock: Arc<dyn Clock>,
}

impl PayReservation {
    pub fn new(ports: PayReservationPorts) -> Self {
        Self {
            authorize: ports.authorize,
            payments: ports.payments,
            idempotency: ports.idempotency,
            admission: ports.admission,
            clock: ports.clock,
            relay: None,
        }
    }

    /// For payments whose repository writes the ticket's end to the [`TicketEndOutbox`] instead
    /// of ending it (the line kept in another store): each payment then applies its end to the
    /// line through `relay` before it answers. If the line fails at that moment the payment is
    /// still answered (the money moved) and the end stays in the outbox for the relay job.
    ///
    /// [`TicketEndOutbox`]: crate::ports::TicketEndOutbox
    #[must_use]
    pub fn with_ticket_end_relay(mut self, relay: Arc<RelayTicketEnds>) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Checks the token, loads the reservation, its seat and the wallet, lets the domain decide
    /// the payment, and writes it in one atomic step over the versions read.
    #[tracing::instrument(name = "pay_reservation", skip_all, fields(user = %command.claims.user, reservation = command.reservation.get()))]
    pub async fn execute(
        &self,
        command: PayReservationCommand,
    ) -> Result<PaymentReceipt, PayReservationError> {
        let user = command.claims.user;
        let id = command.reservation;
        let idempotency = record(command.idempotency_key, || format!("reservationId={id}"));
        let idempotency = &idempotency;
        let claims = &command.claims;
        let protocol = Idempotent {
            store: self.idempotency.as_ref(),
            user,
            scope: IdempotencyScope::Payment,
            record: idempotency.as_ref(),
            pick: |answer| match answer {
                IdempotentAnswer::Payment(receipt) => Some(receipt),
                IdempotentAnswer::Charge { .. } => None,
            },
        };
        let receipt = protocol
            .run(PayReservationError::is_refusal, || async move {
                let caller = self.authorize.authorize(claims).await?;
                let now = self.clock.now();
                let state = self
                    .payments
                    .load(id, user)
                    .await?
                    .ok_or(PayReservationError::NotFound(id))?;
                // Only the room guarding the seat's concert admits to paying for it.
                let concert = state.booking.reservation.value.seat().concert_id;
                self.authorize.admit_to(&caller, concert)?;
                let mut reservation = state.booking.reservation.value;
                let mut seat = state.booking.seat.value;
                let mut wallet = state.wallet.value;
                let change = booking::pay(&mut reservation, &mut seat, &mut wallet, user, now)
                    .map_err(|denied| PayReservationError::denied(id, denied))?;
                let write = PaymentWrite {
                    reservation: Versioned::new(reservation, state.booking.reservation.version),
                    seat: Versioned::new(seat, state.booking.seat.version),
                    wallet: Versioned::new(wallet, state.wallet.version),
                    change,
                    ticket: TicketEnd {
                        ticket: caller.ticket,
                        read_as: TicketStatus::Active,
                        reason: EndReason::Paid,
                    },
                    idempotency: idempotency.clone(),
                };
                let written = self.payments.save(&write).await?;
                if matches!(written, Written::Done(_)) {
                    self.ticket_ended(&write, user).await;
                }
                Ok(Step::from(written))
            })
            .await?;
        self.admission.request_admission();
        Ok(receipt)
    }

    /// Once the payment is written: its ticket ended with it and is counted, or, with a relay,
    /// its end went to the outbox and is applied to the line now (the relay counts it).
    async fn ticket_ended(&self, write: &PaymentWrite, payer: UserId) {
        let Some(relay) = &self.relay else {
            queue_metrics::tickets_ended(
                &self.authorize.room_of(write.ticket.ticket),
                write.ticket.reason,
                1,
            );
            return;
        };
        let pending = PendingTicketEnd {
            end: write.ticket,
            payer,
            written_at: write.change.at,
        };
        if let Err(error) = relay.apply(&pending).await {
            tracing::warn!(
                ticket = write.ticket.ticket.get(),
                error = %error,
                "payment written but its ticket end not applied to the line yet: \
                 the token stays active until the relay job applies it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use concert_domain::{
        Balance, BalanceChange, LedgerKind, PaymentId, Price, QueueTicket, Reservation,
        ReservationStatus, Seat, SeatClaim, Wallet,
    };
    use mockall::predicate::eq;
    use time::Duration;

    use super::*;
    use crate::idempotency::MAX_ATTEMPTS;
    use crate::ports::{
        MockAdmissionTrigger, MockIdempotencyStore, MockPaymentRepository, MockQueueRepository,
        MockTicketEndOutbox, PaymentState, StoredAnswer, Version, Written,
    };
    use crate::relay_ticket_ends::RelayTicketEndsPorts;
    use crate::room_lines::RoomLines;

    use crate::test_support::{
        NOW, PRICE, RESERVATION_VERSION, SEAT_VERSION, active_ticket, booking_of, claims, clock,
        held_reservation, lapsed_reservation, other_user, others_reservation, policy, queue_access,
        reservation_id, reservation_with, seat_held_by, seat_sold_to, seat_with, ticket_no, user,
    };

    const WALLET_VERSION: Version = Version::new(8);

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

    /// The payer's wallet as stored: `points`, last changed an hour ago.
    fn wallet(points: i64) -> Wallet {
        Wallet::new(user(), balance(points), Some(NOW - Duration::hours(1)))
    }

    /// `reservation` with `seat` and the payer's wallet holding `points`, as loaded.
    fn state(reservation: Reservation, seat: Seat, points: i64) -> PaymentState {
        PaymentState {
            booking: booking_of(reservation, seat),
            wallet: Versioned::new(wallet(points), WALLET_VERSION),
        }
    }

    /// Reservation 41 held by the caller on its seat, 200,000 points.
    fn payable() -> PaymentState {
        state(
            held_reservation(),
            seat_held_by(&held_reservation()),
            200_000,
        )
    }

    /// What the payment of [`payable`] writes, but for the idempotency record.
    fn payment_of_payable(wallet_points: i64, wallet_version: Version) -> PaymentWrite {
        let confirmed = reservation_with(ReservationStatus::Confirmed);
        PaymentWrite {
            seat: Versioned::new(seat_sold_to(&confirmed), SEAT_VERSION),
            reservation: Versioned::new(confirmed, RESERVATION_VERSION),
            wallet: Versioned::new(
                Wallet::new(user(), balance(wallet_points - PRICE), Some(NOW)),
                wallet_version,
            ),
            change: BalanceChange {
                kind: LedgerKind::Payment,
                amount: -PRICE,
                balance_after: balance(wallet_points - PRICE),
                at: NOW,
            },
            ticket: TicketEnd {
                ticket: ticket_no(14),
                read_as: TicketStatus::Active,
                reason: EndReason::Paid,
            },
            idempotency: None,
        }
    }

    /// The write without its idempotency record, to compare the rest exactly.
    fn without_key(write: &PaymentWrite) -> PaymentWrite {
        PaymentWrite {
            idempotency: None,
            ..write.clone()
        }
    }

    /// The fakes of one payment. `payments` and `admission` have no expectation at all: a call
    /// nobody expected fails the test.
    struct Payment {
        serving: i64,
        queue: MockQueueRepository,
        payments: MockPaymentRepository,
        store: MockIdempotencyStore,
        admission: MockAdmissionTrigger,
        /// Set for payments whose ticket ends go to the outbox.
        relay: Option<Arc<RelayTicketEnds>>,
    }

    impl Payment {
        /// Ticket 14 active, no stored key.
        fn ready() -> Self {
            Self {
                serving: 20,
                queue: queue_holding(active_ticket(14, Duration::seconds(1))),
                payments: MockPaymentRepository::new(),
                store: store_answering(None),
                admission: MockAdmissionTrigger::new(),
                relay: None,
            }
        }

        async fn execute(
            self,
            command: PayReservationCommand,
        ) -> Result<PaymentReceipt, PayReservationError> {
            self.build().await.execute(command).await
        }

        async fn build(self) -> PayReservation {
            let authorize = AuthorizeRequest::new(queue_access(self.queue, self.serving).await);
            let use_case = PayReservation::new(PayReservationPorts {
                authorize: Arc::new(authorize),
                payments: Arc::new(self.payments),
                idempotency: Arc::new(self.store),
                admission: Arc::new(self.admission),
                clock: clock(),
            });
            match self.relay {
                Some(relay) => use_case.with_ticket_end_relay(relay),
                None => use_case,
            }
        }
    }

    fn queue_holding(ticket: QueueTicket) -> MockQueueRepository {
        let mut queue = MockQueueRepository::new();
        queue
            .expect_find()
            .returning(move |_| Ok(Some(ticket.clone())));
        queue
            .expect_record_activity()
            .returning(|_| Ok(Written::Done(())));
        queue
    }

    fn store_answering(stored: Option<StoredAnswer>) -> MockIdempotencyStore {
        let mut store = MockIdempotencyStore::new();
        store
            .expect_find()
            .withf(|who, scope, found| {
                *who == user() && *scope == IdempotencyScope::Payment && *found == key()
            })
            .returning(move |_, _, _| Ok(stored.clone()));
        store
    }

    /// A store that answers `answers` in turn, one per lookup.
    fn store_answering_in_turn(answers: Vec<Option<StoredAnswer>>) -> MockIdempotencyStore {
        let times = answers.len();
        let mut answers = answers.into_iter();
        let mut store = MockIdempotencyStore::new();
        store
            .expect_find()
            .times(times)
            .returning(move |_, _, _| Ok(answers.next().expect("an answer")));
        store
    }

    /// Payments that load `loaded` once for the payer and never write.
    fn refusing(loaded: Option<PaymentState>) -> MockPaymentRepository {
        let mut payments = MockPaymentRepository::new();
        payments
            .expect_load()
            .with(eq(reservation_id()), eq(user()))
            .times(1)
            .returning(move |_, _| Ok(loaded.clone()));
        payments.expect_save().never();
        payments
    }

    fn loading(loaded: PaymentState) -> MockPaymentRepository {
        let mut payments = MockPaymentRepository::new();
        payments
            .expect_load()
            .with(eq(reservation_id()), eq(user()))
            .times(1)
            .returning(move |_, _| Ok(Some(loaded.clone())));
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

    /// Admission asked for any number of times: a replayed answer asks again today, which is
    /// not pinned here.
    fn admission_any() -> MockAdmissionTrigger {
        let mut admission = MockAdmissionTrigger::new();
        admission.expect_request_admission().return_const(());
        admission
    }

    #[tokio::test]
    async fn payment_writes_confirmed_sold_debited_with_its_ledger_change_ticket_and_key() {
        let mut payments = loading(payable());
        payments
            .expect_save()
            .withf(|write| {
                without_key(write) == payment_of_payable(200_000, WALLET_VERSION)
                    && write.idempotency.as_ref().is_some_and(|record| {
                        record.key == key() && !record.request_hash.is_empty()
                    })
            })
            .times(1)
            .returning(|_| Ok(Written::Done(receipt())));

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
        let mut payments = loading(payable());
        payments
            .expect_save()
            .withf(|write| *write == payment_of_payable(200_000, WALLET_VERSION))
            .times(1)
            .returning(|_| Ok(Written::Done(receipt())));
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

    /// A relay over its own fakes of the line (where the token lives) and of the outbox.
    fn relay_over(line: MockQueueRepository, outbox: MockTicketEndOutbox) -> Arc<RelayTicketEnds> {
        Arc::new(RelayTicketEnds::new(RelayTicketEndsPorts {
            outbox: Arc::new(outbox),
            queue: Arc::new(line),
            lines: RoomLines::new(Arc::new(MockQueueRepository::new()), policy()),
            admission: Arc::new(MockAdmissionTrigger::new()),
            clock: clock(),
        }))
    }

    /// The end [`payable`]'s payment wrote down.
    fn pending_end() -> PendingTicketEnd {
        PendingTicketEnd {
            end: payment_of_payable(200_000, WALLET_VERSION).ticket,
            payer: user(),
            written_at: NOW,
        }
    }

    #[tokio::test]
    async fn with_a_relay_the_ticket_ends_on_the_line_before_the_payment_is_answered() {
        let ended = Arc::new(Mutex::new(false));
        let mut seq = mockall::Sequence::new();
        let mut payments = loading(payable());
        payments
            .expect_save()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(Written::Done(receipt())));
        let mut line = MockQueueRepository::new();
        line.expect_find()
            .with(eq(ticket_no(14)))
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(Some(active_ticket(14, Duration::seconds(1)))));
        let on_line = Arc::clone(&ended);
        line.expect_end()
            .with(eq(pending_end().end), eq(NOW))
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |_, _| {
                *on_line.lock().expect("lock") = true;
                Ok(Written::Done(()))
            });
        let mut outbox = MockTicketEndOutbox::new();
        outbox
            .expect_done()
            .with(eq(pending_end()))
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(()));
        let mut admission = MockAdmissionTrigger::new();
        admission
            .expect_request_admission()
            .times(1)
            .in_sequence(&mut seq)
            .return_const(());

        let use_case = Payment {
            payments,
            admission,
            relay: Some(relay_over(line, outbox)),
            ..Payment::ready()
        }
        .build()
        .await;
        let paid = use_case.execute(command(None)).await.expect("paid");

        assert_eq!(paid, receipt());
        assert!(
            *ended.lock().expect("lock"),
            "the token ended before the answer"
        );
    }

    #[tokio::test]
    async fn with_a_relay_a_line_that_fails_leaves_the_payment_paid_and_the_end_pending() {
        let mut payments = loading(payable());
        payments
            .expect_save()
            .times(1)
            .returning(|_| Ok(Written::Done(receipt())));
        let mut line = MockQueueRepository::new();
        line.expect_find()
            .times(1)
            .returning(|_| Err(RepositoryError::Unavailable("the line is down".into())));
        line.expect_end().never();
        let mut outbox = MockTicketEndOutbox::new();
        outbox.expect_done().never();

        let paid = Payment {
            payments,
            admission: admission_requested(1),
            relay: Some(relay_over(line, outbox)),
            ..Payment::ready()
        }
        .execute(command(None))
        .await
        .expect("paid: the money moved");

        assert_eq!(paid, receipt());
    }

    #[tokio::test]
    async fn with_a_relay_only_the_written_payment_applies_its_end() {
        let mut payments = MockPaymentRepository::new();
        payments
            .expect_load()
            .times(2)
            .returning(|_, _| Ok(Some(payable())));
        let mut saves = vec![Written::Stale, Written::Done(receipt())].into_iter();
        payments
            .expect_save()
            .times(2)
            .returning(move |_| Ok(saves.next().expect("a save")));
        let mut line = MockQueueRepository::new();
        line.expect_find()
            .times(1)
            .returning(|_| Ok(Some(active_ticket(14, Duration::seconds(1)))));
        line.expect_end()
            .times(1)
            .returning(|_, _| Ok(Written::Done(())));
        let mut outbox = MockTicketEndOutbox::new();
        outbox.expect_done().times(1).returning(|_| Ok(()));

        Payment {
            payments,
            admission: admission_requested(1),
            relay: Some(relay_over(line, outbox)),
            ..Payment::ready()
        }
        .execute(command(None))
        .await
        .expect("paid");
    }

    async fn refused(loaded: Option<PaymentState>) -> PayReservationError {
        Payment {
            payments: refusing(loaded),
            admission: admission_requested(0),
            ..Payment::ready()
        }
        .execute(command(None))
        .await
        .expect_err("refused")
    }

    #[tokio::test]
    async fn missing_reservation_is_not_found_and_nothing_is_written() {
        assert!(matches!(
            refused(None).await,
            PayReservationError::NotFound(id) if id == reservation_id()
        ));
    }

    #[tokio::test]
    async fn another_users_reservation_is_not_found_and_nothing_is_written() {
        let others = others_reservation();
        let loaded = state(others.clone(), seat_held_by(&others), 200_000);

        assert!(matches!(
            refused(Some(loaded)).await,
            PayReservationError::NotFound(id) if id == reservation_id()
        ));
    }

    #[tokio::test]
    async fn lapsed_hold_is_expired_and_nothing_is_written() {
        let lapsed = lapsed_reservation();
        let loaded = state(lapsed.clone(), seat_held_by(&lapsed), 200_000);

        assert!(matches!(
            refused(Some(loaded)).await,
            PayReservationError::Expired(id) if id == reservation_id()
        ));
    }

    #[tokio::test]
    async fn confirmed_reservation_is_not_held_and_not_paid_twice() {
        let confirmed = reservation_with(ReservationStatus::Confirmed);
        let loaded = state(confirmed.clone(), seat_sold_to(&confirmed), 200_000);

        assert!(matches!(
            refused(Some(loaded)).await,
            PayReservationError::NotHeld(_)
        ));
    }

    #[tokio::test]
    async fn hold_whose_seat_went_to_another_hold_is_not_held() {
        let taken = seat_with(SeatClaim::Held {
            reservation: ReservationId::new(30).expect("id"),
            holder: other_user(),
            until: NOW + Duration::minutes(4),
        });
        let loaded = state(held_reservation(), taken, 200_000);

        assert!(matches!(
            refused(Some(loaded)).await,
            PayReservationError::NotHeld(_)
        ));
    }

    #[tokio::test]
    async fn short_balance_is_refused_and_nothing_is_written() {
        let loaded = state(
            held_reservation(),
            seat_held_by(&held_reservation()),
            PRICE - 1,
        );

        assert!(matches!(
            refused(Some(loaded)).await,
            PayReservationError::InsufficientBalance { balance, price }
                if balance == PRICE - 1 && price == PRICE
        ));
    }

    #[tokio::test]
    async fn waiting_token_is_not_active_and_reads_nothing() {
        let mut queue = MockQueueRepository::new();
        queue.expect_find().never();
        let mut payments = MockPaymentRepository::new();
        payments.expect_load().never();
        payments.expect_save().never();

        let refused = Payment {
            serving: 13,
            queue,
            payments,
            admission: admission_requested(0),
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
    async fn expired_token_without_a_stored_answer_is_refused_and_reads_nothing() {
        let mut ended = active_ticket(14, Duration::seconds(1));
        ended.end(EndReason::Paid);
        let mut payments = MockPaymentRepository::new();
        payments.expect_load().never();
        payments.expect_save().never();

        let refused = Payment {
            queue: queue_holding(ended),
            payments,
            store: store_answering_in_turn(vec![None, None]),
            admission: admission_requested(0),
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

    #[tokio::test]
    async fn stale_payment_loads_again_and_pays_from_the_new_balance() {
        let mut loads = vec![
            payable(),
            PaymentState {
                wallet: Versioned::new(wallet(150_000), Version::new(9)),
                ..payable()
            },
        ]
        .into_iter();
        let mut payments = MockPaymentRepository::new();
        payments
            .expect_load()
            .times(2)
            .returning(move |_, _| Ok(loads.next()));
        payments
            .expect_save()
            .withf(|write| write.wallet.version == WALLET_VERSION)
            .times(1)
            .returning(|_| Ok(Written::Stale));
        payments
            .expect_save()
            .withf(|write| *write == payment_of_payable(150_000, Version::new(9)))
            .times(1)
            .returning(|_| Ok(Written::Done(receipt())));

        let paid = Payment {
            payments,
            admission: admission_requested(1),
            ..Payment::ready()
        }
        .execute(command(None))
        .await
        .expect("paid");

        assert_eq!(paid, receipt());
    }

    #[tokio::test]
    async fn stale_payment_loads_again_and_is_not_held_when_a_cancel_won() {
        let cancelled = reservation_with(ReservationStatus::Cancelled);
        let mut loads = vec![
            payable(),
            state(cancelled, seat_with(SeatClaim::Available), 200_000),
        ]
        .into_iter();
        let mut payments = MockPaymentRepository::new();
        payments
            .expect_load()
            .times(2)
            .returning(move |_, _| Ok(loads.next()));
        payments
            .expect_save()
            .times(1)
            .returning(|_| Ok(Written::Stale));

        let refused = Payment {
            payments,
            admission: admission_requested(0),
            ..Payment::ready()
        }
        .execute(command(None))
        .await;

        assert!(matches!(refused, Err(PayReservationError::NotHeld(_))));
    }

    #[tokio::test]
    async fn payment_that_stays_stale_gives_up_as_unavailable() {
        let attempts = usize::try_from(MAX_ATTEMPTS).expect("attempts");
        let mut payments = MockPaymentRepository::new();
        payments
            .expect_load()
            .times(attempts)
            .returning(|_, _| Ok(Some(payable())));
        payments
            .expect_save()
            .times(attempts)
            .returning(|_| Ok(Written::Stale));

        let refused = Payment {
            payments,
            admission: admission_requested(0),
            ..Payment::ready()
        }
        .execute(command(None))
        .await;

        assert!(matches!(
            refused,
            Err(PayReservationError::Repository(
                RepositoryError::Unavailable(_)
            ))
        ));
    }

    /// Fakes that share state as the database would: the payment stores its answer under the key
    /// and ends the ticket in the same step. The ticket and the payment state may each be read
    /// once only, and the payment written once.
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
        let mut payments = loading(payable());
        let (ended, answers) = (Arc::clone(&ticket), Arc::clone(&stored));
        payments.expect_save().times(1).returning(move |write| {
            let record = write.idempotency.as_ref().expect("a key");
            *answers.lock().expect("lock") = Some(StoredAnswer {
                request_hash: record.request_hash.clone(),
                answer: IdempotentAnswer::Payment(receipt()),
            });
            ended.lock().expect("lock").end(EndReason::Paid);
            Ok(Written::Done(receipt()))
        });
        let mut store = MockIdempotencyStore::new();
        store
            .expect_find()
            .returning(move |_, _, _| Ok(stored.lock().expect("lock").clone()));
        let admission = admission_any();

        Payment {
            serving: 20,
            queue,
            payments,
            store,
            admission,
            relay: None,
        }
    }

    #[tokio::test]
    async fn retry_with_the_key_and_the_now_expired_token_returns_the_first_receipt() {
        let use_case = paying_once().build().await;

        let first = use_case.execute(command(Some(key()))).await.expect("paid");
        let retry = use_case
            .execute(command(Some(key())))
            .await
            .expect("replayed without authorizing or loading");

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
    async fn stale_write_after_a_twin_committed_replays_the_twins_receipt() {
        let stored: Arc<Mutex<Option<StoredAnswer>>> = Arc::default();
        let racing = Arc::clone(&stored);
        let mut payments = loading(payable());
        payments.expect_save().times(1).returning(move |write| {
            // The twin request committed between our load and our write.
            let record = write.idempotency.as_ref().expect("a key");
            *racing.lock().expect("lock") = Some(StoredAnswer {
                request_hash: record.request_hash.clone(),
                answer: IdempotentAnswer::Payment(receipt()),
            });
            Ok(Written::Stale)
        });
        let mut store = MockIdempotencyStore::new();
        store
            .expect_find()
            .times(2)
            .returning(move |_, _, _| Ok(stored.lock().expect("lock").clone()));

        let answer = Payment {
            payments,
            store,
            admission: admission_any(),
            ..Payment::ready()
        }
        .execute(command(Some(key())))
        .await
        .expect("the twin's receipt");

        assert_eq!(answer, receipt());
    }

    #[tokio::test]
    async fn refusal_after_a_twin_committed_during_the_checks_replays_the_twins_receipt() {
        // The twin request with the same key committed after our replay check: we find the
        // reservation confirmed, which is the twin's own effect.
        let confirmed = reservation_with(ReservationStatus::Confirmed);
        let twin = StoredAnswer {
            request_hash: "reservationId=41".to_owned(),
            answer: IdempotentAnswer::Payment(receipt()),
        };

        let answer = Payment {
            payments: refusing(Some(state(
                confirmed.clone(),
                seat_sold_to(&confirmed),
                80_000,
            ))),
            store: store_answering_in_turn(vec![None, Some(twin)]),
            admission: admission_any(),
            ..Payment::ready()
        }
        .execute(command(Some(key())))
        .await
        .expect("the twin's receipt");

        assert_eq!(answer, receipt());
    }

    #[tokio::test]
    async fn refusal_with_a_key_and_no_stored_answer_stays_a_refusal() {
        let confirmed = reservation_with(ReservationStatus::Confirmed);

        let refused = Payment {
            payments: refusing(Some(state(
                confirmed.clone(),
                seat_sold_to(&confirmed),
                80_000,
            ))),
            store: store_answering_in_turn(vec![None, None]),
            admission: admission_requested(0),
            ..Payment::ready()
        }
        .execute(command(Some(key())))
        .await;

        assert!(matches!(refused, Err(PayReservationError::NotHeld(_))));
    }
}
