//! The ports: what the use cases need from the outside world, named for what they hold or do.
//!
//! Conventions for every repository method:
//! - `Err(RepositoryError::Unavailable)` means the database could not be reached (the caller
//!   answers 503 and may retry); `Err(RepositoryError::Unexpected)` is a bug or a broken schema.
//! - State that a decision needs is loaded with its [`Version`]; the decision (made by the domain)
//!   is handed back with those versions, and the adapter writes it atomically only if nothing
//!   changed since the read ([`Written::Stale`] otherwise: a lost race is never an error). The
//!   adapter checks versions and makes the write atomic; it restates no business rule.
//! - Times that decide correctness are passed in (`now`), read once per use case from [`Clock`].

use async_trait::async_trait;
use concert_domain::LedgerEntryId;
use concert_domain::queue::ServingCounter;
use concert_domain::wallet::LedgerEntry;
use concert_domain::{
    Admission, Balance, BalanceChange, Concert, ConcertDate, ConcertGuard, ConcertId, EndReason,
    HoldGranted, IdempotencyKey, IdempotencyScope, LineNo, NewConcert, Overdue, Pace, PaymentId,
    Price, QueueTicket, Reservation, ReservationId, Room, RoomId, Seat, SeatNo, SeatRef, TicketNo,
    TicketStatus, UserHolds, UserId, Wallet,
};
use time::{Date, OffsetDateTime};

/// The error behind an infrastructure failure, kept for logs.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An infrastructure failure of a repository. Business outcomes are never reported through it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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

/// Uniform random numbers from a source nobody can predict (the operating system's), for
/// decisions a user must not be able to game: the order of a pre-queue at a room's opening.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait SecureRandom: Send + Sync {
    /// A uniform number in `0..n` (`n > 0`).
    fn below(&self, n: u64) -> u64;
}

/// Signs and verifies queue tokens with a key every instance of a deployment shares.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait TokenSigner: Send + Sync {
    fn sign(&self, claims: &TokenClaims) -> String;
    fn verify(&self, token: &str) -> Result<TokenClaims, InvalidToken>;
}

/// Why identity credentials were not accepted (missing claims, bad signature, expired, wrong
/// issuer or audience...), in words fit for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct InvalidIdentity {
    pub reason: String,
}

impl InvalidIdentity {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Verifies the identity credentials a request presents: a token issued by the operator's
/// identity system, whose subject is the user.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait IdentityVerifier: Send + Sync {
    /// The user `credentials` vouch for.
    fn verify(&self, credentials: &str) -> Result<UserId, InvalidIdentity>;
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

    /// Every seat of a date with its claim, in seat order (for the seat map).
    async fn seats_of(&self, concert: ConcertId, date: Date) -> Result<Vec<Seat>, RepositoryError>;

    /// The seats of a date that are neither sold nor under a live hold at `now`, in seat order.
    async fn available_seats(
        &self,
        concert: ConcertId,
        date: Date,
        now: OffsetDateTime,
    ) -> Result<Vec<AvailableSeat>, RepositoryError>;
}

/// The version of a stored row as it was read. A write hands it back, and the adapter applies
/// the write only while the row is still at that version (compare-and-set): a decision is never
/// written over a state the domain did not see. [`Version::ABSENT`] stands for a row that did not
/// exist when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version(i64);

impl Version {
    pub const ABSENT: Self = Self(0);

    pub const fn new(value: i64) -> Self {
        Self(value)
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

/// A value with the version of the row it was read from (or, in a write, the new value and the
/// version it replaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: Version,
}

impl<T> Versioned<T> {
    pub fn new(value: T, version: Version) -> Self {
        Self { value, version }
    }
}

/// The answer of a compare-and-set write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written<T> {
    /// Everything was written, atomically.
    Done(T),
    /// A row changed since it was read; nothing was written. Load again and decide again.
    Stale,
}

/// What a hold decides on: the seat, the user's holds, and an id set aside for the reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldState {
    pub seat: Versioned<Seat>,
    pub holds: Versioned<UserHolds>,
    pub next_reservation: ReservationId,
}

/// A granted hold to write: the seat's new claim, the new reservation, the lapsed reservation it
/// replaced (now `EXPIRED`), all over the versions the decision read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldWrite {
    pub seat: Versioned<Seat>,
    /// The holder's hold count is guarded by this version: a concurrent hold of the same user
    /// makes this write stale.
    pub holds_version: Version,
    pub granted: HoldGranted,
    pub now: OffsetDateTime,
}

/// A reservation with the seat it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    pub reservation: Versioned<Reservation>,
    pub seat: Versioned<Seat>,
}

/// A reservation that ends as a hold (cancelled or expired) to write: its new status, and its
/// seat's new claim when the seat was still held by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseWrite {
    pub reservation: Versioned<Reservation>,
    /// `None` when the seat did not change (it no longer carried this reservation's claim).
    pub seat: Option<Versioned<Seat>>,
    pub now: OffsetDateTime,
}

/// Reservations and the seat claims they hold.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ReservationRepository: Send + Sync {
    /// The seat (with its date's price) and the user's stored-`HELD` reservations, each with its
    /// version, plus a fresh reservation id. `None` when the seat does not exist.
    async fn load_hold(
        &self,
        user: UserId,
        seat: SeatRef,
    ) -> Result<Option<HoldState>, RepositoryError>;

    /// Writes a granted hold in one atomic step, if the seat and the user's holds are still at
    /// the versions read; otherwise `Stale` and nothing is written.
    async fn save_hold(&self, write: &HoldWrite) -> Result<Written<()>, RepositoryError>;

    /// The reservation as stored (status as written; the caller applies lazy expiry).
    async fn find(&self, id: ReservationId) -> Result<Option<Reservation>, RepositoryError>;

    /// The reservation and its seat, each with its version.
    async fn load_booking(&self, id: ReservationId) -> Result<Option<Booking>, RepositoryError>;

    /// Reservations stored `HELD` whose deadline is at or before `now`, oldest deadline first,
    /// at most `batch`, with their seats (a read model: the domain still decides each expiry).
    async fn lapsed(
        &self,
        now: OffsetDateTime,
        batch: u32,
    ) -> Result<Vec<Booking>, RepositoryError>;

    /// Writes each release atomically on its own, if its rows are still at the versions read.
    /// Returns how many were written; the others were stale and are left as they are.
    async fn save_releases(&self, writes: &[ReleaseWrite]) -> Result<u64, RepositoryError>;

    /// Holds live at `now` across the whole deployment (for the `seat_holds_live` gauge).
    async fn count_live_holds(&self, now: OffsetDateTime) -> Result<u64, RepositoryError>;
}

/// The key and request fingerprint of an idempotent request, written in the same atomic step as
/// its effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: IdempotencyKey,
    /// A fingerprint of the request body: the same key with another body is refused.
    pub request_hash: String,
}

/// A charge to write: the wallet's new state over the version read, its ledger entry, the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeWrite {
    pub wallet: Versioned<Wallet>,
    pub change: BalanceChange,
    pub idempotency: Option<IdempotencyRecord>,
}

/// Wallets and their ledgers.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait WalletRepository: Send + Sync {
    /// The user's balance; zero for a user never seen.
    async fn balance(&self, user: UserId) -> Result<Balance, RepositoryError>;

    /// The user's wallet with its version ([`Version::ABSENT`] and an empty wallet for a user
    /// never seen).
    async fn load(&self, user: UserId) -> Result<Versioned<Wallet>, RepositoryError>;

    /// Writes the new balance, its ledger entry and the idempotency record in one atomic step,
    /// if the wallet is still at the version read; otherwise `Stale` and nothing is written.
    async fn save_charge(&self, write: &ChargeWrite) -> Result<Written<()>, RepositoryError>;

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

/// What a payment decides on: the reservation, its seat and the payer's wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentState {
    pub booking: Booking,
    pub wallet: Versioned<Wallet>,
}

/// A payment to write: the confirmed reservation, the sold seat, the debited wallet (each over
/// the version read), the ledger entry, the payment record, the end of the payer's queue ticket
/// and the idempotency record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentWrite {
    pub reservation: Versioned<Reservation>,
    pub seat: Versioned<Seat>,
    pub wallet: Versioned<Wallet>,
    pub change: BalanceChange,
    pub ticket: TicketEnd,
    pub idempotency: Option<IdempotencyRecord>,
}

/// A queue ticket that a write ends, for `reason`: only while it is still in the status the
/// decision read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketEnd {
    pub ticket: TicketNo,
    pub read_as: TicketStatus,
    pub reason: EndReason,
}

/// A ticket that ended while still waiting (left, revoked): it no longer counts in the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndedWaiting {
    pub ticket: TicketNo,
    pub reason: Option<EndReason>,
}

/// A ticket that ended (for any reason), and when: what a watching client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndedTicket {
    pub ticket: TicketNo,
    pub reason: Option<EndReason>,
    pub ended_at: OffsetDateTime,
}

/// Payments: the one atomic step that turns a hold into a sale.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PaymentRepository: Send + Sync {
    /// The reservation, its seat and `payer`'s wallet. `None` when the reservation is missing.
    async fn load(
        &self,
        reservation: ReservationId,
        payer: UserId,
    ) -> Result<Option<PaymentState>, RepositoryError>;

    /// Writes the payment in one atomic step, if the reservation, the seat and the wallet are
    /// still at the versions read; otherwise `Stale` and nothing is written. The ticket ends in
    /// the same step when it is still in the state the decision read (it never blocks the sale);
    /// or, when the line is kept in another store, the step writes the end to the
    /// [`TicketEndOutbox`] instead, for the line to apply.
    async fn save(&self, write: &PaymentWrite) -> Result<Written<PaymentReceipt>, RepositoryError>;
}

/// A ticket end that a payment decided and wrote down in its own atomic step, for the line to
/// apply: the line is kept in another store than payments, so no one step can write both (see
/// `RelayTicketEnds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingTicketEnd {
    pub end: TicketEnd,
    pub payer: UserId,
    /// The payment's instant (its ledger entry's time): the ticket it ended was issued before.
    pub written_at: OffsetDateTime,
}

/// The ticket ends payments wrote down and the line has not applied yet (an outbox kept in the
/// payments' store). A payment writes its row in the payment's own atomic step
/// ([`PaymentRepository::save`] of an adapter built for it); a later payment of the same ticket
/// number replaces it (the newest payment's end is the one the number can still concern).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TicketEndOutbox: Send + Sync {
    /// At most `limit` ends not applied yet, oldest first (by `written_at`, then ticket).
    async fn pending(&self, limit: u32) -> Result<Vec<PendingTicketEnd>, RepositoryError>;

    /// Forgets `end` once applied (or found moot), only while its row is still the one read: a
    /// row replaced meanwhile by a newer payment of the same number stays. Forgetting a row that
    /// is gone already is `Ok` too (another instance's relay got there first).
    async fn done(&self, end: &PendingTicketEnd) -> Result<(), RepositoryError>;
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

/// A user's live ticket (stored waiting or active), with the version of the user's place in
/// the line: every new ticket of the user moves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTicket {
    pub ticket: Option<QueueTicket>,
    pub version: Version,
}

impl LiveTicket {
    /// The place of a user who never joined: no ticket, no place row.
    pub const FIRST_JOIN: Self = Self {
        ticket: None,
        version: Version::ABSENT,
    };
}

/// A new place at the back of a room's line for `user`, over the version of their place read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWrite {
    pub user: UserId,
    pub line: LineNo,
    pub version: Version,
    pub now: OffsetDateTime,
}

/// Activity on an active ticket: its new `last_seen`, over the one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityWrite {
    pub ticket: TicketNo,
    pub read_last_seen: Option<OffsetDateTime>,
    pub last_seen: OffsetDateTime,
}

/// The rules of one admission step, run by the adapter while it holds the line still: nothing
/// joins or is admitted elsewhere between its reads and its writes. The use case implements it
/// with the domain's `end_overdue` and `admit_oldest`.
pub trait AdmissionRules: Send + Sync {
    /// The active tickets past a deadline (ended) and the places free once they are gone.
    fn end_overdue(&self, active: &[QueueTicket]) -> Overdue;
    /// How many of the oldest waiting tickets the step reads to fill `free` places (more than
    /// `free` when idle waiters may be passed over).
    fn waiting_candidates(&self, free: u32) -> u32;
    /// Of the oldest waiting tickets (in ticket order), those admitted into `free` places and
    /// those passed over (ended `IDLE` while waiting).
    fn admit_oldest(&self, waiting: &[QueueTicket], free: u32) -> Admission;
    /// Whether the room paces its admissions (`admitPerMinute`): then the step counts the
    /// admissions of the last 60 seconds and reads the stored pace for [`Self::paced`].
    fn is_paced(&self) -> bool;
    /// How many of `free` places may be filled now, given the admissions of the 60 seconds
    /// before the step and the stored pace; with the pace refilled to now (store it spent by
    /// the admissions made).
    fn paced(&self, free: u32, last_minute: u32, pace: Pace) -> (u32, Pace);
}

/// A user waiting for a room's opening: their entry (the number their token carries) and when
/// they came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreQueueEntry {
    pub entry: TicketNo,
    pub user: UserId,
    pub issued_at: OffsetDateTime,
}

/// A new entry in a room's pre-queue for `user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreQueueJoin {
    pub user: UserId,
    pub line: LineNo,
    pub now: OffsetDateTime,
}

/// The answer of a pre-queue join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreQueueJoined {
    /// A new entry.
    Done(PreQueueEntry),
    /// The user already has a live entry: load it.
    Stale,
    /// The room opened meanwhile: join its line.
    Opened,
}

/// The answer of ending a pre-queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreQueueEnd {
    /// Ended now.
    Ended,
    /// The room opened first: the entry has this place (end the ticket instead).
    Placed(TicketNo),
    /// It had ended before, for this reason.
    AlreadyEnded(Option<EndReason>),
    /// No entry of this user has this number.
    Missing,
    /// An opening was placing it meanwhile: ask again.
    Stale,
}

/// What became of a pre-queue entry: its place once the room opened, or why it ended before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreQueueOutcome {
    pub entry: TicketNo,
    pub place: Option<TicketNo>,
    pub ended: Option<EndReason>,
}

/// The rule of a room's opening, run by the adapter while it holds the line still.
pub trait OpeningRules: Send + Sync {
    /// The order in which the live entries (given in arrival order) get their places.
    fn order(&self, arrivals: Vec<PreQueueEntry>) -> Vec<PreQueueEntry>;
}

/// What one admission step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdmissionReport {
    /// Active tickets ended for passing their active or idle deadline.
    pub expired: u64,
    /// Of `expired`, those that idled out (the others used up their active time).
    pub idle: u64,
    /// Waiting tickets made active, in ticket order.
    pub admitted: u64,
    /// Waiting tickets passed over because their holder stopped polling (ended `IDLE`).
    pub passed_over: u64,
    pub serving: ServingCounter,
}

impl AdmissionReport {
    /// The report of a step that wrote what the rules decided: `overdue`'s ends, the `admitted`
    /// and `passed_over` waiting tickets, and the serving counter it moved to.
    pub fn of(
        overdue: &Overdue,
        admitted: &[QueueTicket],
        passed_over: &[QueueTicket],
        serving: ServingCounter,
    ) -> Self {
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let idle = overdue
            .ended
            .iter()
            .filter(|ticket| ticket.end_reason() == Some(EndReason::Idle))
            .count();
        Self {
            expired: count(overdue.ended.len()),
            idle: count(idle),
            admitted: count(admitted.len()),
            passed_over: count(passed_over.len()),
            serving,
        }
    }
}

/// A waiting poll to write down: the ticket's holder was seen at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitingPoll {
    pub ticket: TicketNo,
    pub at: OffsetDateTime,
}

/// The state of one room's line, cheap to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueSnapshot {
    pub serving: ServingCounter,
    /// Tickets admitted since the queue began (for the admission rate).
    pub admitted_total: u64,
    pub waiting: u64,
    pub active: u64,
    /// Tickets issued since the queue began.
    pub issued: u64,
    /// Entries waiting for the room's opening.
    pub pre_queued: u64,
}

/// The rooms' waiting lines. Each line is numbered on its own ([`LineNo`]); a method that takes
/// a ticket finds its line from the number.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait QueueRepository: Send + Sync {
    /// The user's live ticket in `line`, if any, and the version of their place in it.
    async fn load_live(&self, user: UserId, line: LineNo) -> Result<LiveTicket, RepositoryError>;

    /// Draws the next ticket number of the line for the user, if their place is still at the
    /// version read;
    /// otherwise `Stale` and no number is drawn (so positions have no gaps). A number is drawn
    /// only while no admission step runs, so a step never passes a ticket drawn before it.
    async fn save_join(&self, write: &JoinWrite) -> Result<Written<QueueTicket>, RepositoryError>;

    /// Ends a ticket, if it is still in the status read.
    async fn end(
        &self,
        end: &TicketEnd,
        now: OffsetDateTime,
    ) -> Result<Written<()>, RepositoryError>;

    async fn find(&self, ticket: TicketNo) -> Result<Option<QueueTicket>, RepositoryError>;

    /// Writes activity, if the ticket is still active with the `last_seen` read (otherwise
    /// `Stale`: another request's activity or the ticket's end got there first).
    async fn record_activity(&self, write: &ActivityWrite) -> Result<Written<()>, RepositoryError>;

    /// Records waiting polls as the tickets' last-seen times, each only while the ticket still
    /// waits and only forward in time (a later poll recorded elsewhere stays); returns how many
    /// were written.
    async fn record_waiting_polls(&self, polls: &[WaitingPoll]) -> Result<u64, RepositoryError>;

    /// One admission step of `line`, one at a time across instances and never while a number of
    /// the line is being drawn: reads the active tickets, lets `rules` end the overdue ones, reads the oldest
    /// waiting tickets for the free places, lets `rules` admit them, and writes all of it with
    /// the serving counter in one transaction. `Stale` (nothing written) when a ticket changed
    /// between the reads and the writes (a payment ended it, a request was recorded).
    // `'static` keeps the rules a plain trait object that mockall can store; mockall's expansion
    // then warns about the parentheses, which the syntax needs.
    #[allow(unused_parens)]
    async fn admit(
        &self,
        line: LineNo,
        now: OffsetDateTime,
        rules: &(dyn AdmissionRules + 'static),
    ) -> Result<Written<AdmissionReport>, RepositoryError>;

    async fn snapshot(&self, line: LineNo) -> Result<QueueSnapshot, RepositoryError>;

    /// The tickets of `line` that ended at `since` or later, by whatever ended them (for the
    /// event streams of watching clients).
    async fn ended_since(
        &self,
        line: LineNo,
        since: OffsetDateTime,
    ) -> Result<Vec<EndedTicket>, RepositoryError>;

    /// The user's live entry in `line`'s pre-queue, if any.
    async fn load_pre_queue(
        &self,
        user: UserId,
        line: LineNo,
    ) -> Result<Option<PreQueueEntry>, RepositoryError>;

    /// Adds the user to the line's pre-queue, only while the room has not opened (a join that
    /// meets the opening waits for it, then gets [`PreQueueJoined::Opened`]).
    async fn save_pre_queue_join(
        &self,
        write: &PreQueueJoin,
    ) -> Result<PreQueueJoined, RepositoryError>;

    /// Ends `user`'s pre-queue entry if it has no place yet and has not ended.
    async fn end_pre_queue(
        &self,
        entry: TicketNo,
        user: UserId,
        reason: EndReason,
        now: OffsetDateTime,
    ) -> Result<PreQueueEnd, RepositoryError>;

    /// The room's opening, once across instances: marks the room opened, lets `rules` order the
    /// live entries and gives them the line's first places in that order (waiting, seen `now`),
    /// in one transaction under the line's lock. Returns how many were placed; `Stale` when the
    /// room had opened already.
    #[allow(unused_parens)]
    async fn open_line(
        &self,
        line: LineNo,
        now: OffsetDateTime,
        rules: &(dyn OpeningRules + 'static),
    ) -> Result<Written<u64>, RepositoryError>;

    /// The entries of `line`'s pre-queue that were placed or ended.
    async fn pre_queue_outcomes(
        &self,
        line: LineNo,
    ) -> Result<Vec<PreQueueOutcome>, RepositoryError>;

    /// The tickets of the serving counter's line above it that ended while waiting, in ticket
    /// order: the places the admission step has not passed yet that no longer count.
    async fn ended_waiting(
        &self,
        serving: ServingCounter,
    ) -> Result<Vec<EndedWaiting>, RepositoryError>;
}

/// A block of one line's places, leased for good ([`LineNo::ticket_block`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketBlock {
    pub index: u32,
    pub first: TicketNo,
    pub last: TicketNo,
}

/// The blocks of ticket numbers a line kept where its data may be lost (Redis without
/// persistence) draws from, leased in a durable store. Such a line draws inside the block it
/// holds, leases the next block when it runs out, and, once it finds its data gone, starts in a
/// block after every block leased before: it never hands out a number an older token carries.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TicketBlockLeases: Send + Sync {
    /// With `Some(index)`, the block right after `index` of `line`, the same for every caller
    /// (so instances that run out at once go on in one block, and numbers stay gap-free). With
    /// `None`, a block after every block of the line leased so far (block 0 for a new line).
    async fn lease(&self, line: LineNo, after: Option<u32>)
    -> Result<TicketBlock, RepositoryError>;
}

/// Waiting rooms' settings, kept in the store so that every instance follows a change.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RoomRepository: Send + Sync {
    /// The room with the version of its row; `None` when no room has this id.
    async fn find(&self, room: &RoomId) -> Result<Option<Versioned<Room>>, RepositoryError>;

    /// Every room, with its concerts, in line order (`default` first).
    async fn list(&self) -> Result<Vec<Versioned<Room>>, RepositoryError>;

    /// Who guards each of `concerts` now (a concert missing from the catalog is
    /// [`ConcertGuard::Missing`]).
    async fn guards_of(
        &self,
        concerts: &[ConcertId],
    ) -> Result<Vec<(ConcertId, ConcertGuard)>, RepositoryError>;

    /// Creates a room the domain accepted, with its concerts and an empty line numbered for it,
    /// in one atomic step; returns the room on its line. `Stale` (nothing written) when its id
    /// or one of its concerts was taken since the decision read them.
    async fn create(&self, room: &Room) -> Result<Written<Room>, RepositoryError>;

    /// Writes the room over the version read (`Stale`, nothing written, when it moved).
    async fn save(&self, room: &Versioned<Room>) -> Result<Written<()>, RepositoryError>;

    /// Creates `room` when the store has no room with its id (a new database); an existing
    /// room keeps its settings.
    async fn create_if_absent(&self, room: &Room) -> Result<(), RepositoryError>;
}

/// Removes records past their retention ([`concert_domain::RetentionPolicy`]). Each call
/// removes at most `limit` rows and skips rows another instance is removing, so any number of
/// instances may purge at once.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RetentionRepository: Send + Sync {
    /// Idempotency keys stored before `before`; returns how many went.
    async fn purge_idempotency_keys(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, RepositoryError>;

    /// Tickets ended before `before`; returns how many went.
    async fn purge_ended_tickets(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, RepositoryError>;

    /// Pre-queue entries of opened rooms whose story is over: ended before `before`, or placed
    /// on a ticket that was itself purged; returns how many went.
    async fn purge_pre_queue_entries(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, RepositoryError>;
}

/// Whether the database answers (for `/health/ready`).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ReadinessProbe: Send + Sync {
    async fn check(&self) -> Result<(), RepositoryError>;
}

/// Asks this instance for an admission step soon.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AdmissionTrigger: Send + Sync {
    /// Without waiting for it (after a payment freed a place).
    fn request_admission(&self);

    /// And waits until a step that started after this call has finished, for at most `within`
    /// (a join that may pass straight through an empty line). Steps requested together are
    /// folded into one.
    async fn admit_soon(&self, within: std::time::Duration);
}
