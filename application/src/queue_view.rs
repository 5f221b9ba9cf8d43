//! This instance's view of the line: the serving counter, the tickets ahead of it that ended while
//! waiting, and the admission rate, refreshed from the database a few times a second so that a
//! waiting user's poll needs no database round trip.
//! docs/API.md §1.2 allows the view to lag the database by up to one second.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use concert_domain::queue::{ServingCounter, position_in_line};
use concert_domain::{QueuePolicy, Room, TicketNo};
use time::{Duration, OffsetDateTime};

use crate::ports::{EndedWaiting, QueueRepository, QueueSnapshot, RepositoryError};

/// How far back admissions are counted to estimate the rate at which the line moves.
const RATE_WINDOW: Duration = Duration::seconds(60);

#[derive(Debug, Default)]
struct ViewState {
    snapshot: QueueSnapshot,
    /// Tickets above the serving counter that ended while waiting, in ticket order, and their
    /// numbers alone (what a position is computed from, on every poll).
    ended_waiting: Vec<EndedWaiting>,
    ended_tickets: Vec<TicketNo>,
    /// The room's live settings, as the last admission step read them, and the policy its line
    /// runs under (kept apart: every poll reads it).
    room: Option<Room>,
    room_policy: Option<QueuePolicy>,
    /// `(when, admitted_total)` samples inside the rate window, oldest first.
    samples: VecDeque<(OffsetDateTime, u64)>,
}

/// Shared by the use cases that answer queue questions; cheap to clone.
#[derive(Clone)]
pub struct QueueView {
    queue: Arc<dyn QueueRepository>,
    policy: QueuePolicy,
    state: Arc<RwLock<ViewState>>,
}

impl std::fmt::Debug for QueueView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueView")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl QueueView {
    pub fn new(queue: Arc<dyn QueueRepository>, policy: QueuePolicy) -> Self {
        Self {
            queue,
            policy,
            state: Arc::default(),
        }
    }

    /// Reads the line's state from the database. The serving counter never moves back, so a
    /// client that keeps to this instance never sees its position grow.
    pub async fn refresh(&self, now: OffsetDateTime) -> Result<QueueSnapshot, RepositoryError> {
        let fresh = self.queue.snapshot().await?;
        let ended_waiting = self.queue.ended_waiting(fresh.serving).await?;
        let mut state = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let serving = state.snapshot.serving.advance_to(fresh.serving);
        state.snapshot = QueueSnapshot { serving, ..fresh };
        state.ended_tickets = ended_waiting.iter().map(|ended| ended.ticket).collect();
        state.ended_waiting = ended_waiting;
        state.samples.push_back((now, fresh.admitted_total));
        while state
            .samples
            .front()
            .is_some_and(|(at, _)| now - *at > RATE_WINDOW)
        {
            state.samples.pop_front();
        }
        Ok(state.snapshot)
    }

    pub fn snapshot(&self) -> QueueSnapshot {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .snapshot
    }

    pub fn serving(&self) -> ServingCounter {
        self.snapshot().serving
    }

    /// The place of a waiting ticket (1 for the first in line), not counting the tickets ahead
    /// that ended while waiting; `None` once served, or when it ended itself.
    pub fn position_of(&self, ticket: TicketNo) -> Option<u64> {
        let state = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        position_in_line(state.snapshot.serving, ticket, &state.ended_tickets)
    }

    /// How `ticket` ended, if it is among the tickets that ended while waiting.
    pub fn ended_while_waiting(&self, ticket: TicketNo) -> Option<EndedWaiting> {
        let state = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state
            .ended_waiting
            .binary_search_by_key(&ticket, |ended| ended.ticket)
            .ok()
            .map(|at| state.ended_waiting[at])
    }

    /// Records at once a waiting ticket this instance ended, so that its next poll here does not
    /// wait for the next refresh.
    pub fn note_ended_while_waiting(&self, ended: EndedWaiting) {
        let mut state = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(at) = state
            .ended_waiting
            .binary_search_by_key(&ended.ticket, |known| known.ticket)
        {
            state.ended_waiting.insert(at, ended);
            state.ended_tickets.insert(at, ended.ticket);
        }
    }

    /// Records the room's settings as an admission step read them from the store.
    pub fn note_room(&self, room: Room) {
        let mut state = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.room_policy = Some(room.admission_policy(&self.policy));
        state.room = Some(room);
    }

    /// The room's settings as last read; `None` before the first admission step.
    pub fn room(&self) -> Option<Room> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .room
            .clone()
    }

    /// The policy the line runs under now: the deployment's, with the room's maximum and waiting
    /// rule.
    pub fn policy(&self) -> QueuePolicy {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .room_policy
            .unwrap_or(self.policy)
    }

    /// Tickets admitted in the last minute (or since this instance started, if sooner).
    pub fn admitted_last_minute(&self) -> u64 {
        let state = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (state.samples.front(), state.samples.back()) {
            (Some((_, first)), Some((_, last))) => last.saturating_sub(*first),
            _ => 0,
        }
    }

    /// Tickets admitted per second over the last minute, never below the worst case (only
    /// timeouts move the line).
    pub fn admissions_per_second(&self) -> f64 {
        let state = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let measured = match (state.samples.front(), state.samples.back()) {
            (Some((first_at, first)), Some((last_at, last)))
                if last_at > first_at && last > first =>
            {
                #[allow(clippy::cast_precision_loss)]
                let admitted = (last - first) as f64;
                Some(admitted / (*last_at - *first_at).as_seconds_f64())
            }
            _ => None,
        };
        // Every active token ends by its active deadline at the latest, so a full line moves at
        // least at the worst-case rate even when little has been measured yet.
        let floor = state
            .room_policy
            .unwrap_or(self.policy)
            .worst_case_admissions_per_second();
        measured.map_or(floor, |rate| rate.max(floor))
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::ports::MockQueueRepository;

    fn snapshot(serving: i64, admitted_total: u64) -> QueueSnapshot {
        QueueSnapshot {
            serving: ServingCounter::new(serving),
            admitted_total,
            waiting: 10,
            active: 2,
            issued: admitted_total + 10,
        }
    }

    #[tokio::test]
    async fn serving_counter_never_moves_back_even_if_a_read_lags() {
        let mut queue = MockQueueRepository::new();
        let mut reads = vec![snapshot(7, 7), snapshot(5, 5)].into_iter();
        queue
            .expect_snapshot()
            .times(2)
            .returning(move || Ok(reads.next().expect("two reads")));
        queue.expect_ended_waiting().returning(|_| Ok(Vec::new()));
        let view = QueueView::new(Arc::new(queue), QueuePolicy::default());
        let now = datetime!(2026-12-01 12:00 UTC);
        view.refresh(now).await.expect("first");
        view.refresh(now + Duration::seconds(1))
            .await
            .expect("second");
        assert_eq!(view.serving().get(), 7);
    }

    #[tokio::test]
    async fn admission_rate_is_measured_over_the_window() {
        let mut queue = MockQueueRepository::new();
        let mut reads = vec![snapshot(0, 100), snapshot(50, 150)].into_iter();
        queue
            .expect_snapshot()
            .returning(move || Ok(reads.next().expect("two reads")));
        let policy = QueuePolicy::default();
        queue.expect_ended_waiting().returning(|_| Ok(Vec::new()));
        let view = QueueView::new(Arc::new(queue), policy);
        let now = datetime!(2026-12-01 12:00 UTC);
        view.refresh(now).await.expect("first");
        assert!(
            (view.admissions_per_second() - policy.worst_case_admissions_per_second()).abs() < 1e-9
        );
        view.refresh(now + Duration::seconds(10))
            .await
            .expect("second");
        assert!((view.admissions_per_second() - 5.0).abs() < 1e-9);
    }

    #[tokio::test]
    async fn a_slow_measured_rate_never_falls_below_the_worst_case() {
        let mut queue = MockQueueRepository::new();
        let mut reads = vec![snapshot(0, 100), snapshot(1, 101)].into_iter();
        queue
            .expect_snapshot()
            .returning(move || Ok(reads.next().expect("two reads")));
        let policy = QueuePolicy::default();
        queue.expect_ended_waiting().returning(|_| Ok(Vec::new()));
        let view = QueueView::new(Arc::new(queue), policy);
        let now = datetime!(2026-12-01 12:00 UTC);
        view.refresh(now).await.expect("first");
        view.refresh(now + Duration::seconds(50))
            .await
            .expect("second");
        let floor = policy.worst_case_admissions_per_second();
        assert!(
            floor > 1.0 / 50.0,
            "the measured rate is the slower one here"
        );
        assert!((view.admissions_per_second() - floor).abs() < 1e-9);
    }
}
