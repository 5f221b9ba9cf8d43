//! The ports: what the use cases need from the outside world, named for what they hold or do.
//!
//! Conventions for every repository method:
//! - `Err(RepositoryError::Unavailable)` means the database could not be reached (the caller
//!   answers 503 and may retry); `Err(RepositoryError::Unexpected)` is a bug or a broken schema.
//! - A race that the method guards against is never an error: it comes back as a variant of the
//!   method's outcome enum (`HoldOutcome::SeatUnavailable`...), decided atomically by the adapter
//!   in one conditional statement or one transaction.
//! - Times that decide correctness are passed in (`now`), read once per use case from [`Clock`].

use async_trait::async_trait;
use concert_domain::LedgerEntryId;
use concert_domain::queue::ServingCounter;
use concert_domain::wallet::LedgerEntry;
use concert_domain::{
    Amount, Balance, Concert, ConcertDate, ConcertId, HoldLimit, IdempotencyKey, IdempotencyScope,
    NewConcert, PaymentId, Price, QueuePolicy, QueueTicket, Reservation, ReservationId, SeatNo,
    TicketNo, UserId,
};
use time::{Date, OffsetDateTime};

/// The error behind an infrastructure failure, kept for logs.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An infrastructure failure of a repository. Business outcomes are never reported through it.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// The database is unreachable, the pool is exhausted or a statement timed out: transient.
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else: a bug, a broken schema or data that violates an invariant.
    #[error("unexpected database error")]
    Unexpected(#[source] BoxError),
}

/// The current time. Read once per use case and passed down, so one request sees one instant.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// What a queue token carries. Signed, so any instance can trust it without a database read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenClaims {
    pub user: UserId,
    pub ticket: TicketNo,
    pub issued_at: OffsetDateTime,
}

/// A token that was altered, signed with another key, or is not a token at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the queue token is not valid")]
pub struct InvalidToken;

/// Signs and verifies queue tokens with a key every instance of a deployment shares.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait TokenSigner: Send + Sync {
    fn sign(&self, claims: &TokenClaims) -> String;
    fn verify(&self, token: &str) -> Result<TokenClaims, InvalidToken>;
}

/// A concert date looked up by the concert and the calendar date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateLookup {
    ConcertNotFound,
    DateNotFound,
    Found(ConcertDate),
}

/// A bookable date with the number of seats the seat list would return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateAvailability {
    pub date: Date,
    pub available_seats: u32,
}

/// A seat that can be reserved now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvailableSeat {
    pub seat_no: SeatNo,
    pub price: Price,
}

/// Concerts, their dates and the seats of each date.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CatalogRepository: Send + Sync {
    /// Creates the concert, its dates and every seat of every date, in one transaction.
    async fn create_concert(&self, concert: &NewConcert) -> Result<ConcertId, RepositoryError>;

    /// Whether the catalog holds any concert at all (for demo data).
    async fn has_concerts(&self) -> Result<bool, RepositoryError>;

    /// Concerts with a date on or after `from`, by id.
    async fn list_concerts(&self, from: Date) -> Result<Vec<Concert>, RepositoryError>;

    /// `None` when the concert does not exist; otherwise its dates on or after `from` that have
    /// at least one seat available at `now`, in date order.
    async fn available_dates(
        &self,
        concert: ConcertId,
        from: Date,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<DateAvailability>>, RepositoryError>;

    /// One date of one concert, telling apart a missing concert and a missing date.
    async fn find_date(
        &self,
        concert: ConcertId,
        date: Date,
    ) -> Result<DateLookup, RepositoryError>;

    /// The seats of a date that are neither sold nor under a live hold at `now`, in seat order.
    async fn available_seats(
        &self,
        concert: ConcertId,
        date: Date,
        now: OffsetDateTime,
    ) -> Result<Vec<AvailableSeat>, RepositoryError>;
}

/// A seat hold as the use case decided it; the adapter takes it only if the guards still hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRequest {
    pub user: UserId,
    pub concert: ConcertId,
    pub date: Date,
    pub seat_no: SeatNo,
    pub price: Price,
    pub now: OffsetDateTime,
    pub until: OffsetDateTime,
    pub limit: HoldLimit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldOutcome {
    /// The seat was free at `now` and is now held by the new reservation.
    Held(Reservation),
    /// The seat is sold or under a live hold (the caller's own included).
    SeatUnavailable,
    /// The user already has `limit` live holds, counted atomically across instances.
    HoldLimitReached,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The reservation was the user's, held at `now`; it is cancelled and its seat free.
    Cancelled(Reservation),
    /// The reservation was no longer held when the write came (paid, cancelled or lapsed).
    NotHeld,
}

/// Reservations and the seat claims they hold.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ReservationRepository: Send + Sync {
    /// Takes the hold in one transaction: the user's live holds are counted under a per-user lock,
    /// the seat is claimed by one conditional write (not sold, no hold live at `now`), and the
    /// reservation is inserted as `HELD` until `until`.
    async fn hold(&self, request: &HoldRequest) -> Result<HoldOutcome, RepositoryError>;

    /// The reservation as stored (status as written; the caller applies lazy expiry).
    async fn find(&self, id: ReservationId) -> Result<Option<Reservation>, RepositoryError>;

    /// Cancels the user's reservation if it is still held at `now`, freeing the seat in the same
    /// transaction.
    async fn cancel(
        &self,
        id: ReservationId,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome, RepositoryError>;

    /// Marks up to `batch` holds whose deadline is at or before `now` as `EXPIRED` and clears
    /// their seat claims. Returns how many it marked. Correctness never depends on it.
    async fn expire_lapsed(&self, now: OffsetDateTime, batch: u32) -> Result<u64, RepositoryError>;

    /// Holds live at `now` across the whole deployment (for the `seat_holds_live` gauge).
    async fn count_live_holds(&self, now: OffsetDateTime) -> Result<u64, RepositoryError>;
}

/// The key and request fingerprint of an idempotent request, written in the same transaction as
/// its effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: IdempotencyKey,
    /// A fingerprint of the request body: the same key with another body is refused.
    pub request_hash: String,
}

/// A charge as the use case decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub user: UserId,
    pub amount: Amount,
    pub max_balance: i64,
    pub now: OffsetDateTime,
    pub idempotency: Option<IdempotencyRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The balance grew and one `CHARGE` ledger entry was written.
    Charged(Balance),
    /// The balance after the charge would have passed `max_balance`; nothing changed.
    BalanceLimitExceeded,
    /// Another request with the same key committed first; nothing changed. Read its answer.
    KeyAlreadyUsed,
}

/// Wallets and their ledgers.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait WalletRepository: Send + Sync {
    /// The user's balance; zero for a user never seen.
    async fn balance(&self, user: UserId) -> Result<Balance, RepositoryError>;

    /// Adds to the balance with a conditional write (`balance + amount <= max_balance`), the
    /// ledger entry and the idempotency record in one transaction.
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, RepositoryError>;

    /// Ledger entries newest first: at most `limit`, only those older than `before` if given.
    async fn history(
        &self,
        user: UserId,
        limit: u32,
        before: Option<LedgerEntryId>,
    ) -> Result<Vec<LedgerEntry>, RepositoryError>;
}

/// What a payment answered; also the stored answer of an idempotent retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentReceipt {
    pub payment_id: PaymentId,
    pub reservation_id: ReservationId,
    pub amount: Price,
    pub balance: Balance,
    pub paid_at: OffsetDateTime,
}

/// A payment as the use case decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    pub user: UserId,
    pub reservation: ReservationId,
    pub amount: Price,
    /// The caller's queue ticket, ended by the payment.
    pub ticket: TicketNo,
    pub now: OffsetDateTime,
    pub idempotency: Option<IdempotencyRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// Reservation confirmed, seat sold, wallet debited, payment and ledger entry written, ticket
    /// ended, idempotency record stored: all in one transaction.
    Paid(PaymentReceipt),
    /// The reservation was no longer `HELD` by the user when the transaction ran.
    ReservationNotHeld,
    /// The hold ran out before the transaction ran.
    HoldLapsed,
    /// The balance was short when the transaction ran; nothing changed.
    InsufficientBalance,
    /// Another request with the same key committed first; nothing changed. Read its answer.
    KeyAlreadyUsed,
}

/// Payments: the one transaction that turns a hold into a sale.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PaymentRepository: Send + Sync {
    async fn pay(&self, request: &PaymentRequest) -> Result<PaymentOutcome, RepositoryError>;
}

/// The first successful answer given for an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub request_hash: String,
    pub answer: IdempotentAnswer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdempotentAnswer {
    Charge { balance: Balance },
    Payment(PaymentReceipt),
}

/// Answers stored for idempotency keys, per user and per scope.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    async fn find(
        &self,
        user: UserId,
        scope: IdempotencyScope,
        key: &IdempotencyKey,
    ) -> Result<Option<StoredAnswer>, RepositoryError>;
}

/// A ticket handed to a user: the live one they already had, or a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedTicket {
    pub ticket: QueueTicket,
    pub created: bool,
}

/// What one admission step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdmissionReport {
    /// Active tickets ended for passing their active or idle deadline.
    pub expired: u64,
    /// Waiting tickets made active, in ticket order.
    pub admitted: u64,
    pub serving: ServingCounter,
}

/// The state of the whole line, cheap to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueSnapshot {
    pub serving: ServingCounter,
    /// Tickets admitted since the queue began (for the admission rate).
    pub admitted_total: u64,
    pub waiting: u64,
    pub active: u64,
}

/// The waiting line.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait QueueRepository: Send + Sync {
    /// Returns the user's live ticket, or draws the next ticket number. An active ticket past a
    /// deadline of `policy` at `now` is not live: it is ended and a new one drawn. A user's
    /// concurrent calls are serialised, so a losing duplicate never consumes a number.
    async fn issue(
        &self,
        user: UserId,
        now: OffsetDateTime,
        policy: &QueuePolicy,
    ) -> Result<IssuedTicket, RepositoryError>;

    async fn find(&self, ticket: TicketNo) -> Result<Option<QueueTicket>, RepositoryError>;

    /// Records a request on an active ticket (restarts its idle timeout). A no-op on any other.
    async fn record_activity(
        &self,
        ticket: TicketNo,
        now: OffsetDateTime,
    ) -> Result<(), RepositoryError>;

    /// One admission step, run by one instance at a time: end active tickets past a deadline,
    /// admit the oldest waiting tickets into the free slots, move the serving counter.
    async fn admit(
        &self,
        policy: &QueuePolicy,
        now: OffsetDateTime,
    ) -> Result<AdmissionReport, RepositoryError>;

    async fn snapshot(&self) -> Result<QueueSnapshot, RepositoryError>;
}

/// Whether the database answers (for `/health/ready`).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ReadinessProbe: Send + Sync {
    async fn check(&self) -> Result<(), RepositoryError>;
}

/// Asks for an admission step soon (after a payment freed a place), without waiting for it.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait AdmissionTrigger: Send + Sync {
    fn request_admission(&self);
}
