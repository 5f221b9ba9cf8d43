//! The concert booking domain: values that parse rather than validate, and aggregates whose rules
//! are methods taking the current time as an argument.
//!
//! These methods are the rules that run in production: a use case loads the state a rule needs
//! through a port, calls the rule here, and hands the new state to a port, whose adapter writes it
//! atomically (a compare-and-set on exactly the state that was read) without restating the rule.
//! Rules that span aggregates (hold, pay, cancel, expire) are in [`booking`].
//!
//! Nothing here performs I/O or reads a clock. Every rule returns a `Result` whose error is a small
//! enum per operation; each variant is one business error of the HTTP contract:
//!
//! | enum | variants → API `code` |
//! |---|---|
//! | [`ParseError`] | every variant → `VALIDATION_FAILED` |
//! | [`booking::HoldDenied`] | `LimitReached` → `HOLD_LIMIT_REACHED`, `SeatUnavailable` → `SEAT_UNAVAILABLE` |
//! | [`booking::PaymentDenied`] | `Reservation(PayRefused)` as below, `InsufficientBalance` → `INSUFFICIENT_BALANCE` |
//! | [`seat::HoldRefused`] | `Sold`, `HeldByOther`, `HeldBySameUser` → `SEAT_UNAVAILABLE` |
//! | [`reservation::HoldLimitReached`] | → `HOLD_LIMIT_REACHED` |
//! | [`reservation::PayRefused`] | `NotYours` → `RESERVATION_NOT_FOUND`, `Expired` → `RESERVATION_EXPIRED`, `NotHeld` → `RESERVATION_NOT_HELD` |
//! | [`reservation::CancelRefused`] | `NotYours` → `RESERVATION_NOT_FOUND`, `NotHeld` → `RESERVATION_NOT_HELD` |
//! | [`wallet::ChargeRefused`] | `BalanceLimitExceeded` → `BALANCE_LIMIT_EXCEEDED` |
//! | [`wallet::DebitRefused`] | `InsufficientBalance` → `INSUFFICIENT_BALANCE` |
//! | [`queue::AccessRefused`] | `Expired` → `TOKEN_EXPIRED`, `Waiting` → `QUEUE_NOT_ACTIVE`, `WrongRoom` → `TOKEN_WRONG_ROOM` |
//! | [`room::CreateRoomRefused`] | `Invalid` → `VALIDATION_FAILED`, `Exists` → `ROOM_EXISTS`, `ConcertNotFound` → `CONCERT_NOT_FOUND`, `ConcertInAnotherRoom` → `CONCERT_IN_ANOTHER_ROOM` |

pub mod booking;
pub mod concert;
pub mod idempotency;
pub mod ids;
pub mod money;
pub mod parse;
pub mod queue;
pub mod reservation;
pub mod retention;
pub mod room;
pub mod seat;
pub mod wallet;

pub use booking::{HoldDenied, HoldGranted, HoldTerms, PaymentDenied};
pub use concert::{
    Concert, ConcertDate, ConcertTitle, NewConcert, NewConcertDate, SeatCount, SeatNo,
};
pub use idempotency::{IdempotencyKey, IdempotencyScope};
pub use ids::{ConcertId, LedgerEntryId, PaymentId, ReservationId, TicketNo, UserId};
pub use money::{Amount, Balance, Price};
pub use parse::ParseError;
pub use queue::{
    Admission, EndReason, Join, Leave, LineNo, Overdue, QueuePolicy, QueueTicket, ServingCounter,
    TicketStatus, WaitingIdle,
};
pub use reservation::{HoldLimit, Reservation, ReservationStatus, SeatRef, UserHolds};
pub use retention::{Cutoffs, RetentionPolicy};
pub use room::{
    ConcertGuard, CreateRoomRefused, NewRoom, Opening, Pace, Room, RoomChange, RoomGuards, RoomId,
    RoomPhase, RoomState,
};
pub use seat::{Seat, SeatClaim, SeatHold, SeatState};
pub use wallet::{BalanceChange, LedgerEntry, LedgerKind, Wallet, WalletLimits};
