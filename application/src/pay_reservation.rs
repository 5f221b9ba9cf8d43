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
            refused => Self::Unauthorized(refused),
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
        let caller = self.authorize.authorize(&command.claims).await?;
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
            idempotency: idempotency.clone(),
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
                let record = idempotency
                    .as_ref()
                    .ok_or(PayReservationError::IdempotencyKeyInUse)?;
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
        match stored_answer(
            self.idempotency.as_ref(),
            user,
            IdempotencyScope::Payment,
            record,
        )
        .await?
        {
            None => Ok(None),
            Some(IdempotentAnswer::Payment(receipt)) => Ok(Some(receipt)),
            // Keys are scoped per operation, so a payment key never holds a charge's answer.
            Some(IdempotentAnswer::Charge { .. }) => Err(PayReservationError::IdempotencyKeyReused),
        }
    }
}
