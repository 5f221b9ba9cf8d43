//! The concert booking domain: values that parse rather than validate, and aggregates whose rules
//! are methods taking the current time as an argument.
//!
//! Where a decision must be atomic across instances (claiming a seat, counting a user's live
//! holds, debiting a wallet, admitting the next ticket), the PostgreSQL adapter applies the same
//! rule as the guard of one conditional statement; the methods here are the reference statement of
//! each rule, used by the use cases where a decision can be made before the write, and exercised
//! by the unit and property tests.
//!
//! Nothing here performs I/O or reads a clock. Every rule returns a `Result` whose error is a small
//! enum per operation; each variant is one business error of the HTTP contract:
//!
//! | enum | variants → API `code` |
//! |---|---|
//! | [`ParseError`] | every variant → `VALIDATION_FAILED` |
//! | [`seat::HoldRefused`] | `Sold`, `HeldByOther`, `HeldBySameUser` → `SEAT_UNAVAILABLE` |
//! | [`reservation::HoldLimitReached`] | → `HOLD_LIMIT_REACHED` |
//! | [`reservation::PayRefused`] | `NotYours` → `RESERVATION_NOT_FOUND`, `Expired` → `RESERVATION_EXPIRED`, `NotHeld` → `RESERVATION_NOT_HELD` |
//! | [`reservation::CancelRefused`] | `NotYours` → `RESERVATION_NOT_FOUND`, `NotHeld` → `RESERVATION_NOT_HELD` |
//! | [`wallet::ChargeRefused`] | `BalanceLimitExceeded` → `BALANCE_LIMIT_EXCEEDED` |
//! | [`wallet::DebitRefused`] | `InsufficientBalance` → `INSUFFICIENT_BALANCE` |
//! | [`queue::AccessRefused`] | `Expired` → `TOKEN_EXPIRED`, `Waiting` → `QUEUE_NOT_ACTIVE` |

pub mod concert;
pub mod idempotency;
pub mod ids;
pub mod money;
pub mod parse;
pub mod queue;
pub mod reservation;
pub mod seat;
pub mod wallet;

pub use concert::{
    Concert, ConcertDate, ConcertTitle, NewConcert, NewConcertDate, SeatCount, SeatNo,
};
pub use idempotency::{IdempotencyKey, IdempotencyScope};
pub use ids::{ConcertId, LedgerEntryId, PaymentId, ReservationId, TicketNo, UserId};
pub use money::{Amount, Balance, Price};
pub use parse::ParseError;
pub use queue::{QueuePolicy, QueueTicket, ServingCounter, TicketStatus};
pub use reservation::{HoldLimit, Reservation, ReservationStatus};
pub use seat::{Seat, SeatClaim};
pub use wallet::{LedgerEntry, LedgerKind, Wallet, WalletLimits};
