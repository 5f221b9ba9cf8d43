//! Use cases of the concert booking service. Each module is one use case: a service struct over
//! the [`ports`] it needs, its command and its error enum. A use case reads the current state
//! through a port, lets the domain decide, and persists the decision through a port in one atomic
//! step whose guards turn a lost race into a typed outcome.
//!
//! Errors: one enum per use case, a variant per business refusal and one opaque
//! `Repository(RepositoryError)` for infrastructure failures.

pub mod ports;
pub mod queue_access;
mod queue_metrics;
pub mod queue_view;
pub mod room_lines;

pub mod admin_access;
pub mod admit_next_in_line;
pub mod authorize_request;
pub mod cancel_reservation;
pub mod charge_points;
pub mod create_concert;
pub mod hold_seat;
mod idempotency;
pub mod identify_caller;
pub mod issue_queue_token;
pub mod leave_queue;
pub mod list_available_dates;
pub mod list_available_seats;
pub mod list_concerts;
mod locked;
pub mod manage_rooms;
pub mod pay_reservation;
pub mod purge_expired_records;
pub mod read_balance;
pub mod read_gauges;
pub mod read_point_history;
pub mod read_queue_status;
pub mod read_reservation;
pub mod read_seat_map;
pub mod relay_ticket_ends;
pub mod revoke_queue_token;
pub mod services;
pub mod sweep_lapsed_holds;
pub mod waiting_polls;
pub mod watch_queue_status;

#[cfg(test)]
pub(crate) mod test_support;

pub use idempotency::ReplayError;
