//! The repository ports' contract, written once and run against every store.
//!
//! Each module holds the contract of one port: async functions that take a fresh store
//! ([`Store::fresh`]), drive it only through the ports, let the domain make every decision (as
//! the use cases do: load, decide, write over the versions read) and check what the use cases
//! rely on. A store adapter runs the whole suite with one line in its tests:
//!
//! ```ignore
//! concert_contract::contract_tests!(MyStore);
//! ```
//!
//! which expands to one `#[tokio::test(flavor = "multi_thread")]` per contract function, named
//! `<module>_<function>` (the caller's crate needs `tokio` with its macros). A store that holds
//! only the waiting line (the rest in another store) runs the line's functions alone with
//! [`line_contract_tests!`].

use std::sync::Arc;

use async_trait::async_trait;
use concert_application::ports::{
    CatalogRepository, IdempotencyStore, PaymentRepository, QueueRepository, ReadinessProbe,
    ReservationRepository, RetentionRepository, RoomRepository, WalletRepository,
};
use concert_domain::{
    IdempotencyKey, IdempotencyScope, LedgerEntryId, LineNo, PaymentId, Reservation, ReservationId,
    SeatClaim, SeatRef, TicketNo, UserId,
};
use time::OffsetDateTime;

pub mod fixtures;
mod line;

pub mod catalog;
pub mod idempotency;
pub mod payments;
pub mod pre_queue;
pub mod queue;
pub mod queue_races;
pub mod races;
pub mod raw;
pub mod reservations;
pub mod retention;
pub mod rooms;
pub mod wallets;

#[doc(hidden)]
pub use pastey as __pastey;

/// How many tasks a race of the contract runs at once: a store must serve this many calls at
/// the same time (a pool of at least this many connections).
pub const RACERS: usize = 12;

/// A store under the contract: one fresh, empty, migrated database per contract function, and
/// every repository port over it.
#[async_trait]
pub trait Store: Send + Sync + Sized + 'static {
    /// A new, empty, migrated store that nothing else uses.
    async fn fresh() -> Self;

    fn catalog(&self) -> Arc<dyn CatalogRepository>;
    fn reservations(&self) -> Arc<dyn ReservationRepository>;
    fn wallets(&self) -> Arc<dyn WalletRepository>;
    fn payments(&self) -> Arc<dyn PaymentRepository>;
    fn idempotency(&self) -> Arc<dyn IdempotencyStore>;
    fn queue(&self) -> Arc<dyn QueueRepository>;
    fn rooms(&self) -> Arc<dyn RoomRepository>;
    fn retention(&self) -> Arc<dyn RetentionRepository>;
    fn readiness(&self) -> Arc<dyn ReadinessProbe>;

    /// Drops the store's database.
    async fn finish(self);

    // ---- Hooks of the catalog, rooms and retention: what no port of theirs writes or shows.
    // Each store answers them in its own terms (raw rows), never through the ports.

    /// How many concert dates and seats the store holds, of every concert: `(dates, seats)`.
    async fn catalog_counts(&self) -> (u64, u64);

    /// Frees every seat (no hold, no sale) and forgets every reservation: a blank booking state
    /// for the read models' randomized contract.
    async fn clear_bookings(&self);

    /// Stores `reservation` as it is (its status and deadline as given), created at `at`.
    async fn insert_reservation(&self, reservation: &Reservation, at: OffsetDateTime);

    /// Stores `claim` on `seat` as it is, whatever claimed the seat before.
    async fn set_claim(&self, seat: SeatRef, claim: SeatClaim);

    /// Every row a room's creation writes (rooms, the concerts they name, the lines' states and
    /// whatever numbers the lines), as text: two equal dumps mean that nothing was written.
    async fn room_rows(&self) -> String;

    /// How many rooms, room-named concerts and lines the store holds. A store that keeps a line
    /// in more than one place (a state row and a number source) checks that they agree.
    async fn room_counts(&self) -> RoomCounts;

    /// Moves `line`'s serving counter to `serving`, as admissions up to it would have: the only
    /// way to serve up to a ticket that left while waiting (admissions serve admitted ones).
    async fn set_serving(&self, line: LineNo, serving: TicketNo);

    // ---- Bookings and money: rows no port writes alone or shows. ----

    /// Every row of every table a booking or money write touches (seats, reservations, the
    /// holders' rows, wallets, ledger entries, payments, idempotency keys, queue tickets), as
    /// text: two equal dumps mean that nothing was written in between.
    async fn booking_rows(&self) -> String;

    /// How many rows of each kind the bookings and money have, over every user.
    async fn booking_counts(&self) -> BookingCounts;

    /// Another write of the seat's row alone (as a concurrent write would be): its version
    /// moves, nothing else does.
    async fn bump_seat(&self, seat: SeatRef);

    /// Another write of the reservation's row alone: its version moves, nothing else does.
    async fn bump_reservation(&self, reservation: ReservationId);

    /// Another write of the user's wallet row alone: its version moves, nothing else does.
    async fn bump_wallet(&self, user: UserId);

    /// When the reservation's row was created and last written, as stored.
    async fn reservation_times(&self, reservation: ReservationId) -> Option<RowTimes>;

    /// The stored payment row.
    async fn stored_payment(&self, payment: PaymentId) -> Option<StoredPayment>;

    /// The stored key row of `user`'s `key` in `scope`: what it points at.
    async fn stored_key(
        &self,
        user: UserId,
        scope: IdempotencyScope,
        key: &IdempotencyKey,
    ) -> Option<StoredKey>;

    /// When the ticket ended, as stored (`None` while it lives).
    async fn ticket_ended_at(&self, ticket: TicketNo) -> Option<OffsetDateTime>;

    // ---- Waiting line (`queue`, `queue_races`, `pre_queue`): what no port shows. ----

    /// Whether the store runs one write at a time and an admission step or an opening holds that
    /// writer from its first read to its commit (the embedded store): then a write racing a step
    /// waits for its end, and no step is ever `Stale` over a write made meanwhile. Otherwise
    /// (PostgreSQL) such a write may go through and make the step `Stale`.
    const ONE_WRITER: bool = false;

    /// Every row the lines are made of (tickets, users' places, the lines' states and the
    /// sources of their numbers, pre-queue entries, rooms) as text: two equal dumps mean that
    /// nothing was written in between, and that no number of a line was drawn.
    async fn line_rows(&self) -> String;

    /// The number of every stored ticket, of every line, ascending.
    async fn ticket_numbers(&self) -> Vec<TicketNo>;

    /// When `ticket` was admitted, as stored (what paced rooms count); `None` when it never was.
    async fn admitted_at(&self, ticket: TicketNo) -> Option<OffsetDateTime>;

    /// The `default` line's figures read in one consistent state of the store (for invariants
    /// checked while steps and joins race).
    async fn line_figures(&self) -> LineFigures;
}

/// What [`Store::room_counts`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomCounts {
    pub rooms: u64,
    /// Concerts named by a room (the default room names none).
    pub room_concerts: u64,
    pub lines: u64,
}

/// Row counts of the bookings and money ([`Store::booking_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BookingCounts {
    pub reservations: i64,
    /// Seats that carry a hold's claim.
    pub held_seats: i64,
    /// Seats sold to someone.
    pub sold_seats: i64,
    pub payments: i64,
    /// Ledger entries of payments (debits).
    pub payment_entries: i64,
    pub idempotency_keys: i64,
}

impl BookingCounts {
    /// The counts of [`raw::BOOKING_COUNTS`], in its order.
    pub fn from_counts(
        [
            reservations,
            held_seats,
            sold_seats,
            payments,
            payment_entries,
            idempotency_keys,
        ]: [i64; raw::BOOKING_COUNTS.len()],
    ) -> Self {
        Self {
            reservations,
            held_seats,
            sold_seats,
            payments,
            payment_entries,
            idempotency_keys,
        }
    }
}

/// When a row was created and last written ([`Store::reservation_times`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowTimes {
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A stored payment row ([`Store::stored_payment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredPayment {
    pub reservation: ReservationId,
    pub user: UserId,
    pub amount: i64,
    pub ledger_entry: LedgerEntryId,
    pub paid_at: OffsetDateTime,
}

/// A stored key row ([`Store::stored_key`]): the request's hash and the rows it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub request_hash: String,
    pub ledger_entry: LedgerEntryId,
    pub payment: Option<PaymentId>,
    pub created_at: OffsetDateTime,
}

/// The `default` line read at once: its tickets' figures and its stored tallies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineFigures {
    /// Tickets stored `ACTIVE`.
    pub active: i64,
    /// Waiting tickets with a smaller number than some admitted ticket (FIFO: always 0).
    pub passed: i64,
    /// Tickets ever admitted (stored with an admission time).
    pub admitted: i64,
    /// The highest number ever admitted (0 when none).
    pub highest_admitted: i64,
    /// Tickets stored `WAITING`.
    pub waiting: i64,
    /// The stored serving counter.
    pub serving: i64,
    /// The stored tally of admissions.
    pub admitted_total: i64,
    /// The waiting count as the store's tallies give it (what the snapshot reports).
    pub counted_waiting: i64,
}

/// One test per contract function, for `$store` (a type implementing [`Store`]).
#[macro_export]
macro_rules! contract_tests {
    ($store:ty) => {
        $crate::__with_line_modules! {
            $store;
            catalog: [
                a_fresh_store_is_ready_and_empty,
                a_concert_reads_back_with_its_dates_and_seats,
                creating_a_concert_creates_every_seat_of_every_date,
                concerts_are_listed_by_id_when_they_play_on_or_after_the_day,
                available_dates_count_free_seats_and_tell_a_missing_concert,
                find_date_tells_a_missing_concert_from_a_missing_date,
                seat_list_leaves_out_sold_seats_and_live_holds_but_not_lapsed_ones,
                concerts_created_at_once_each_get_their_own_id_and_all_their_seats,
                read_models_agree_with_the_domain_on_random_states,
            ];
            reservations: [
                a_seat_claim_is_won_once,
                the_hold_limit_holds_under_a_race,
                a_lapsed_hold_is_free_to_take,
                a_hold_over_a_moved_seat_writes_nothing,
                a_hold_over_moved_user_holds_writes_nothing,
                a_booking_reads_back_as_written,
                a_release_is_written_once_over_the_versions_read,
                lapsed_lists_only_holds_past_their_deadline_oldest_first,
                load_hold_gives_the_seat_the_users_holds_and_their_versions,
                a_hold_over_the_versions_read_writes_the_claim_the_reservation_and_the_holder,
                a_hold_over_an_older_seat_version_is_stale_and_leaves_no_reservation,
                a_hold_over_an_older_holds_version_is_stale_and_claims_no_seat,
                the_hold_limit_is_decided_on_the_deadlines_loaded_and_lapsed_holds_do_not_count,
                a_hold_over_a_lapsed_hold_writes_the_replaced_reservation_expired_in_the_same_step,
                a_hold_stale_on_its_seat_writes_nothing_at_all,
                load_booking_gives_the_reservation_and_its_seat_with_versions,
                a_release_over_the_versions_read_frees_the_seat_and_a_stale_one_writes_nothing,
                a_release_over_an_older_seat_or_reservation_version_writes_nothing,
                a_release_that_leaves_the_seat_alone_checks_only_the_reservation,
                lapsed_gives_only_held_reservations_at_or_past_their_deadline_oldest_first,
                save_releases_writes_each_release_on_its_own_and_counts_them,
                the_sweeper_expires_lapsed_holds_and_leaves_live_ones,
            ];
            wallets: [
                a_wallet_never_seen_is_empty,
                charges_add_up_with_one_ledger_entry_each,
                racing_charges_of_one_wallet_all_count,
                a_charge_over_the_version_read_writes_one_entry_and_bumps_it,
                a_charge_over_a_moved_wallet_writes_nothing,
                the_balance_limit_is_the_domains_and_the_store_writes_what_it_decided,
                history_pages_newest_first_and_chains_to_the_balance,
            ];
            payments: [
                load_gives_the_reservation_its_seat_and_the_payers_wallet_with_versions,
                a_payment_writes_every_row_at_once_and_its_replay_writes_nothing,
                a_payment_never_ends_another_users_ticket,
                a_payment_is_atomic_and_exact,
                a_payment_ends_the_ticket_only_as_read,
                a_payment_over_an_older_reservation_version_is_stale,
                a_payment_over_an_older_seat_version_is_stale,
                a_payment_over_an_older_wallet_version_is_stale,
                a_payment_decided_before_a_lapse_cannot_sell_a_seat_taken_over_since,
                a_payment_whose_key_is_already_stored_is_stale_and_writes_nothing,
                a_payment_over_moved_state_writes_nothing,
                a_payment_over_a_moved_reservation_writes_nothing,
                racing_payments_of_one_reservation_pay_once,
                payments_racing_charges_keep_the_balance_exact,
            ];
            idempotency: [
                a_charge_key_replays_the_stored_balance,
                a_payment_key_replays_the_receipt,
                a_payment_receipt_is_stored_as_answered_from_a_clock_finer_than_the_store,
                a_charge_key_is_stored_with_its_entry_in_the_same_step,
                a_key_is_stored_only_with_its_effect,
                a_key_stored_by_a_twin_makes_the_write_stale,
                a_charge_retried_with_its_key_is_answered_from_the_first_and_charged_once,
                a_payment_retried_with_its_key_after_its_ticket_ended_gets_the_first_receipt,
                a_refused_request_stores_no_key_so_the_retry_is_processed_anew,
            ];
            races: [
                racing_holds_of_one_seat_make_exactly_one_hold,
                racing_holds_of_one_user_stop_exactly_at_the_limit,
                racing_charges_add_up_exactly_with_one_entry_each,
                racing_charges_with_skewed_clocks_never_date_history_backwards,
                racing_payments_of_one_reservation_pay_once,
                two_payments_with_a_balance_for_one_never_both_go_through,
                the_same_key_in_parallel_takes_effect_once_and_every_answer_is_the_same,
                a_cancellation_racing_a_payment_of_the_same_hold_lets_exactly_one_through,
            ];
            rooms: [
                a_room_is_created_once_and_changed_only_over_the_version_read,
                a_room_is_saved_only_over_the_version_read,
                a_new_room_numbers_a_fresh_line_of_its_own_and_guards_the_concerts_it_names,
                a_room_over_a_concert_or_an_id_taken_since_the_decision_is_stale_and_writes_nothing,
                of_racing_creations_over_one_concert_exactly_one_is_created,
                of_racing_saves_over_one_version_exactly_one_is_written,
                a_concert_cannot_be_in_two_rooms,
                each_room_has_a_line_of_its_own,
            ];
            retention: [
                keys_past_retention_go_in_batches_and_their_effects_stay,
                keys_go_oldest_first,
                only_tickets_ended_before_the_cutoff_go,
                a_ticket_that_left_while_waiting_stays_until_the_line_reaches_its_place,
                pre_queue_entries_go_only_once_their_room_opened_and_their_story_is_over,
                purges_running_at_once_share_the_rows_and_the_use_case_purges_everything_due,
            ];
        }
    };
}

/// One test per contract function of the waiting line only (`queue`, `queue_races`,
/// `pre_queue`, and the purges of `retention` that concern the line), for `$store`: a store
/// that holds the line apart from the rest (the line on Redis) runs these, and the full stores
/// run [`contract_tests!`], which includes them.
#[macro_export]
macro_rules! line_contract_tests {
    ($store:ty) => {
        $crate::__with_line_modules! {
            $store;
            retention: [
                only_tickets_ended_before_the_cutoff_go,
                a_ticket_that_left_while_waiting_stays_until_the_line_reaches_its_place,
                pre_queue_entries_go_only_once_their_room_opened_and_their_story_is_over,
            ];
        }
    };
}

/// The contract functions of the waiting line (`queue`, `queue_races`, `pre_queue`), written
/// once for [`contract_tests!`] and [`line_contract_tests!`]: expands to the tests of the modules
/// given plus these.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_line_modules {
    ($store:ty; $($modules:tt)*) => {
        $crate::__contract_tests! {
            $store;
            $($modules)*
            queue: [
                load_live_returns_the_live_ticket_and_the_version_of_the_users_place,
                a_join_over_the_version_read_draws_the_next_number_and_moves_the_place,
                a_join_over_an_old_version_is_stale_draws_no_number_and_writes_nothing,
                end_only_ends_a_ticket_still_in_the_status_read,
                activity_is_written_only_over_the_last_seen_read_and_only_on_an_active_ticket,
                an_admission_step_writes_exactly_what_its_rules_decided_and_moves_serving_forward_only,
                the_domains_rules_end_tickets_at_their_active_or_idle_deadline_and_fill_the_places,
                an_admission_over_a_ticket_no_longer_waiting_is_stale_and_writes_nothing,
                a_step_ending_a_ticket_over_another_last_seen_or_status_is_stale_and_writes_nothing,
                nothing_joins_while_a_step_holds_the_line,
                the_snapshots_counts_agree_with_the_stored_tickets_on_random_histories,
                a_paced_room_never_admits_more_than_its_rate_in_any_minute,
                waiting_polls_are_written_only_forward_and_only_on_waiting_tickets,
                a_step_passes_over_idle_waiters_counts_them_out_of_the_line_and_admits_the_next,
                admission_admits_the_oldest_up_to_the_limit,
                racing_admissions_never_exceed_the_limit,
                an_ended_ticket_frees_its_place_once,
            ];
            queue_races: [
                concurrent_token_requests_of_one_user_make_one_ticket_and_no_gap,
                two_hundred_users_joining_at_once_get_the_numbers_one_to_two_hundred,
                admission_steps_running_at_once_while_users_join_keep_the_limit_and_the_order,
                a_request_at_the_idle_deadline_and_the_step_ending_the_ticket_never_both_take_effect,
                polls_racing_a_step_that_passes_over_never_keep_a_passed_over_ticket_waiting,
            ];
            pre_queue: [
                each_line_admits_ends_and_counts_only_its_own_tickets_and_a_user_may_wait_in_two_rooms,
                the_pre_queue_gets_the_first_places_in_the_order_the_opening_rules_return_once_then_joins_go_to_the_line,
                a_pre_queue_join_on_a_line_with_no_room_is_sent_to_the_line_and_writes_nothing,
                an_opening_with_an_empty_pre_queue_places_nobody_and_the_line_numbers_from_its_start,
                an_opening_placing_an_entry_not_live_is_stale_and_writes_nothing,
                of_ten_openings_of_one_room_at_once_exactly_one_places_the_pre_queue,
                an_entry_ending_while_the_opening_orders_the_pre_queue_waits_and_finds_its_place,
                pre_queue_joins_racing_the_opening_each_get_a_place_or_a_number_after_every_placed_one,
            ];
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_tests {
    ($store:ty; $($module:ident: [$($name:ident),* $(,)?]);* $(;)?) => {
        $crate::__pastey::paste! {
            $($(
                #[tokio::test(flavor = "multi_thread")]
                async fn [<$module _ $name>]() {
                    $crate::$module::$name::<$store>().await;
                }
            )*)*
        }
    };
}
