//! This instance's view of one room's line: the serving counter, the tickets ahead of it that ended while
//! waiting, and the admission rate, refreshed from the database a few times a second so that a
//! waiting user's poll needs no database round trip.
//! docs/API.md §1.2 allows the view to lag the database by up to one second.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use concert_domain::queue::{ServingCounter, position_in_line};
use concert_domain::{EndReason, LineNo, QueuePolicy, Room, TicketNo};
use time::{Duration, OffsetDateTime};

use crate::locked;
use crate::ports::{
    EndedTicket, EndedWaiting, PreQueueOutcome, QueueRepository, QueueSnapshot, RepositoryError,
};

/// How far back admissions are counted to estimate the rate at which the line moves.
const RATE_WINDOW: Duration = Duration::seconds(60);

/// How long the line must have been under pressure within the window before the rate measured
/// then is trusted over the rate of the whole window.
const PRESSURED_ENOUGH: Duration = Duration::seconds(2);

/// How long the view's last reading is answered from while the readings after it fail: the
/// lag docs/API.md §1.2 allows a position. Then the view answers nothing (`503`) until a reading
/// succeeds.
const TRUSTED_FOR: Duration = Duration::seconds(1);

/// How long a ticket's end is remembered for the clients watching it.
const RECENT_ENDS: Duration = Duration::seconds(60);

/// How far each look for ended tickets reaches back before the previous one: an end is stamped
/// by the clock of the instance that wrote it before its write, and becomes visible only when
/// that write commits, which a busy database may delay by a few seconds.
const ENDS_OVERLAP: Duration = Duration::seconds(15);

/// One reading of the line, for the admission rate.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: OffsetDateTime,
    admitted_total: u64,
    waiting: u64,
    active: u64,
}

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
    /// Readings inside the rate window, oldest first, and the rate measured from them (worked
    /// out when they or the room change, not on every poll).
    samples: VecDeque<Sample>,
    measured_rate: Option<f64>,
    /// Tickets that ended in the last [`RECENT_ENDS`], kept while clients watch their tokens,
    /// and when they were last looked for.
    recently_ended: HashMap<TicketNo, EndedTicket>,
    ends_read_at: Option<OffsetDateTime>,
    /// What became of the room's pre-queue entries (placed at the opening, or ended before),
    /// and whether every entry's outcome is known (read once after the opening).
    pre_queue: HashMap<TicketNo, PreQueueOutcome>,
    pre_queue_settled: bool,
    /// When the line was last read (`None`: never, as for a view made for a room just learnt
    /// of), and whether the readings since failed (its store is down or frozen, so what the view
    /// holds may no longer be true).
    read_at: Option<OffsetDateTime>,
    failing: bool,
    /// Moves whenever something a watcher is told may have changed: the serving counter, the
    /// tickets that ended while waiting, the ends seen, or the pre-queue's outcomes.
    generation: u64,
}

/// Where a token's number stands in its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A place in the line (the token's own number, or the place its pre-queue entry got).
    Line(TicketNo),
    /// Waiting for the room's opening.
    PreQueue,
    /// A pre-queue entry that ended before the opening.
    Ended(Option<EndReason>),
}

/// Shared by the use cases that answer queue questions; cheap to clone.
#[derive(Clone)]
pub struct QueueView {
    queue: Arc<dyn QueueRepository>,
    line: LineNo,
    policy: QueuePolicy,
    state: Arc<RwLock<ViewState>>,
    /// Clients watching their tokens on this instance: while there are any, each refresh also
    /// reads the tickets that ended since the last one.
    watchers: Arc<AtomicUsize>,
}

/// One client watching its token; the view keeps reading ended tickets until every one is
/// dropped.
#[derive(Debug)]
pub struct Watching(Arc<AtomicUsize>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for QueueView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueView")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl QueueView {
    /// The view of the `default` room's line.
    pub fn new(queue: Arc<dyn QueueRepository>, policy: QueuePolicy) -> Self {
        Self::of_line(queue, policy, LineNo::DEFAULT)
    }

    /// The view of `line`, empty until its first refresh (nobody served yet).
    pub fn of_line(queue: Arc<dyn QueueRepository>, policy: QueuePolicy, line: LineNo) -> Self {
        let state = ViewState {
            snapshot: QueueSnapshot {
                serving: line.start(),
                ..QueueSnapshot::default()
            },
            ..ViewState::default()
        };
        Self {
            queue,
            line,
            policy,
            state: Arc::new(RwLock::new(state)),
            watchers: Arc::default(),
        }
    }

    pub fn line(&self) -> LineNo {
        self.line
    }

    pub(crate) fn queue(&self) -> Arc<dyn QueueRepository> {
        self.queue.clone()
    }

    /// The deployment's policy, before any room's settings.
    pub(crate) fn deployment_policy(&self) -> QueuePolicy {
        self.policy
    }

    /// Counts a watching client in until the returned guard is dropped.
    pub fn watch(&self) -> Watching {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        Watching(Arc::clone(&self.watchers))
    }

    /// How `ticket` ended, if it ended in the last minute and clients are watching (else
    /// `None`: the view does not follow ends nobody watches).
    pub fn recently_ended(&self, ticket: TicketNo) -> Option<EndedTicket> {
        self.state().recently_ended.get(&ticket).copied()
    }

    /// Reads the line's state from the database. The serving counter never moves back, so a
    /// client that keeps to this instance never sees its position grow. While readings fail
    /// the view soon turns [unreadable](Self::readable); each failure wakes the watchers, whose
    /// streams end once it has.
    pub async fn refresh(&self, now: OffsetDateTime) -> Result<QueueSnapshot, RepositoryError> {
        let read = self.read_line(now).await;
        if read.is_err() {
            let mut state = self.state_mut();
            state.failing = true;
            state.generation += 1;
        }
        read
    }

    /// Whether answers may be given from this view at `now`: not once its readings of the line
    /// have failed for longer than [`TRUSTED_FOR`] since the last one that worked, so that a
    /// line that cannot be read answers `503` (`Unavailable`) on every endpoint, waiting users'
    /// polls included, instead of positions it may no longer hold (a store that restarted empty
    /// holds no place at all). One reading that fails between good ones changes nothing.
    pub fn readable(&self, now: OffsetDateTime) -> Result<(), RepositoryError> {
        let state = self.state();
        if state.failing && state.read_at.is_none_or(|at| now - at > TRUSTED_FOR) {
            return Err(RepositoryError::Unavailable(
                "this instance has not been able to read the line for a while".into(),
            ));
        }
        Ok(())
    }

    async fn read_line(&self, now: OffsetDateTime) -> Result<QueueSnapshot, RepositoryError> {
        let fresh = self.queue.snapshot(self.line).await?;
        let ended_waiting = self.queue.ended_waiting(fresh.serving).await?;
        // While the room gathers its pre-queue, the entries that ended (few); once it opened,
        // every entry's place, once.
        // Whether the room was known opened *before* the read: only then is the read complete
        // (the room may be noted opened while the read runs, from an opening it did not see).
        let (gathering, opened_before_read) = {
            let state = self.state();
            let gathering = state.room.as_ref().is_some_and(Room::gathers_pre_queue);
            let opened = state
                .room
                .as_ref()
                .is_some_and(|room| room.opening().is_some_and(|opening| opening.done));
            (gathering, opened && !state.pre_queue_settled)
        };
        let outcomes = if gathering || opened_before_read {
            Some(self.queue.pre_queue_outcomes(self.line).await?)
        } else {
            None
        };
        let ends = if self.watchers.load(Ordering::Relaxed) > 0 {
            let read_at = self.state().ends_read_at;
            let since = read_at.map_or(now - RECENT_ENDS, |at| at - ENDS_OVERLAP);
            Some(self.queue.ended_since(self.line, since).await?)
        } else {
            None
        };
        let mut state = self.state_mut();
        if let Some(outcomes) = outcomes {
            for outcome in outcomes {
                if state.pre_queue.insert(outcome.entry, outcome) != Some(outcome) {
                    state.generation += 1;
                }
            }
            if opened_before_read && !state.pre_queue_settled {
                state.pre_queue_settled = true;
                state.generation += 1;
            }
        }
        match ends {
            Some(ends) => {
                for ended in ends {
                    if state.recently_ended.insert(ended.ticket, ended).is_none() {
                        state.generation += 1;
                    }
                }
                state
                    .recently_ended
                    .retain(|_, ended| now - ended.ended_at <= RECENT_ENDS);
                state.ends_read_at = Some(now);
            }
            None => {
                state.recently_ended.clear();
                state.ends_read_at = None;
            }
        }
        let serving = state.snapshot.serving.advance_to(fresh.serving);
        if serving != state.snapshot.serving || ended_waiting != state.ended_waiting {
            state.generation += 1;
        }
        state.snapshot = QueueSnapshot { serving, ..fresh };
        state.read_at = state.read_at.max(Some(now));
        if state.failing {
            state.failing = false;
            state.generation += 1;
        }
        state.ended_tickets = ended_waiting.iter().map(|ended| ended.ticket).collect();
        state.ended_waiting = ended_waiting;
        // Two jobs refresh the view; a reading that finishes after a later one is left out of
        // the rate, whose intervals must run forward in time.
        if state.samples.back().is_none_or(|last| last.at < now) {
            state.samples.push_back(Sample {
                at: now,
                admitted_total: fresh.admitted_total,
                waiting: fresh.waiting,
                active: fresh.active,
            });
        }
        while state
            .samples
            .front()
            .is_some_and(|sample| now - sample.at > RATE_WINDOW)
        {
            state.samples.pop_front();
        }
        state.measure(&self.policy);
        Ok(state.snapshot)
    }

    pub fn snapshot(&self) -> QueueSnapshot {
        self.state().snapshot
    }

    /// A number that moves whenever a watching client's status may have changed (see
    /// [`crate::watch_queue_status`]); the same number: nothing to tell anyone.
    pub fn generation(&self) -> u64 {
        self.state().generation
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, ViewState> {
        locked::read(&self.state)
    }

    fn state_mut(&self) -> std::sync::RwLockWriteGuard<'_, ViewState> {
        locked::write(&self.state)
    }

    pub fn serving(&self) -> ServingCounter {
        self.snapshot().serving
    }

    /// The place of a waiting ticket (1 for the first in line), not counting the tickets ahead
    /// that ended while waiting; `None` once served, or when it ended itself.
    pub fn position_of(&self, ticket: TicketNo) -> Option<u64> {
        let state = self.state();
        position_in_line(state.snapshot.serving, ticket, &state.ended_tickets)
    }

    /// How `ticket` ended, if it is among the tickets that ended while waiting.
    pub fn ended_while_waiting(&self, ticket: TicketNo) -> Option<EndedWaiting> {
        let state = self.state();
        state
            .ended_waiting
            .binary_search_by_key(&ticket, |ended| ended.ticket)
            .ok()
            .map(|at| state.ended_waiting[at])
    }

    /// Records at once a waiting ticket this instance ended, so that its next poll here does not
    /// wait for the next refresh.
    pub fn note_ended_while_waiting(&self, ended: EndedWaiting) {
        let mut state = self.state_mut();
        if let Err(at) = state
            .ended_waiting
            .binary_search_by_key(&ended.ticket, |known| known.ticket)
        {
            state.ended_waiting.insert(at, ended);
            state.ended_tickets.insert(at, ended.ticket);
            state.generation += 1;
        }
    }

    /// Where a token's number stands: pre-queue entries are looked up in what became of them.
    pub fn placement(&self, ticket: TicketNo) -> Placement {
        if !ticket.is_pre_queue_entry() {
            return Placement::Line(ticket);
        }
        let state = self.state();
        match state.pre_queue.get(&ticket) {
            Some(PreQueueOutcome {
                place: Some(place), ..
            }) => Placement::Line(*place),
            Some(outcome) => Placement::Ended(outcome.ended),
            // Every outcome of an opened room was read: an entry not among them was purged
            // after its story ended.
            None if state.pre_queue_settled => Placement::Ended(None),
            // Not placed nor ended: still waiting for the opening (or for this view to read it).
            None => Placement::PreQueue,
        }
    }

    /// Records at once a pre-queue entry this instance ended.
    pub fn note_pre_queue_end(&self, entry: TicketNo, reason: EndReason) {
        let mut state = self.state_mut();
        state.pre_queue.insert(
            entry,
            PreQueueOutcome {
                entry,
                place: None,
                ended: Some(reason),
            },
        );
        state.generation += 1;
    }

    /// Records the room's settings as an admission step read them from the store.
    pub fn note_room(&self, room: Room) {
        let mut state = self.state_mut();
        state.room_policy = Some(room.admission_policy(&self.policy));
        state.room = Some(room);
        state.measure(&self.policy);
    }

    /// Whether the line can no longer change by itself: its room is closed (nobody joins) and
    /// nobody waits, holds a place or is in its pre-queue. Reopening the room (an operator's
    /// change, noted by the next step) makes it live again.
    pub fn is_closed_and_empty(&self) -> bool {
        let state = self.state();
        let line = state.snapshot;
        state.read_at.is_some()
            && state
                .room
                .as_ref()
                .is_some_and(|room| room.state() == concert_domain::RoomState::Closed)
            && line.waiting == 0
            && line.active == 0
            && line.pre_queued == 0
    }

    /// The room's settings as last read; `None` before the first admission step.
    pub fn room(&self) -> Option<Room> {
        self.state().room.clone()
    }

    /// The policy the line runs under now: the deployment's, with the room's maximum and waiting
    /// rule.
    pub fn policy(&self) -> QueuePolicy {
        self.state().room_policy.unwrap_or(self.policy)
    }

    /// Tickets admitted in the last minute (or since this instance started, if sooner).
    pub fn admitted_last_minute(&self) -> u64 {
        let state = self.state();
        match (state.samples.front(), state.samples.back()) {
            (Some(first), Some(last)) => last.admitted_total.saturating_sub(first.admitted_total),
            _ => 0,
        }
    }

    /// How fast the line moves, in admissions per second: measured while the line was under
    /// pressure (see [`pressured_rate`]) when it was for long enough within the last minute, else
    /// over the whole minute; never below the worst case (only timeouts move the line).
    pub fn admissions_per_second(&self) -> f64 {
        let state = self.state();
        // Every active token ends by its active deadline at the latest, so a full line moves at
        // least at the worst-case rate even when little has been measured yet.
        let floor = state
            .room_policy
            .unwrap_or(self.policy)
            .worst_case_admissions_per_second();
        state.measured_rate.map_or(floor, |rate| rate.max(floor))
    }
}

impl ViewState {
    /// Works the measured rate out again from the readings and the room.
    fn measure(&mut self, deployment: &QueuePolicy) {
        let max_active = self.room_policy.unwrap_or(*deployment).max_active;
        let paced = self.room.as_ref().is_some_and(Room::is_paced);
        self.measured_rate =
            pressured_rate(&self.samples, max_active, paced).or_else(|| window_rate(&self.samples));
    }
}

/// Admissions per second over the intervals between readings that began with someone waiting
/// and every place taken (or, in a paced room, with someone waiting): the rate at which the
/// room's places turn over, which is what a waiting user's turn depends on. Intervals with
/// nobody waiting (before a sale, or between rushes) and the first filling of free places (the
/// whole capacity at once when a sale opens) say nothing about it, and would make the estimate
/// too long or too short. `None` until the line was under pressure for [`PRESSURED_ENOUGH`].
fn pressured_rate(samples: &VecDeque<Sample>, max_active: u32, paced: bool) -> Option<f64> {
    let mut admitted = 0u64;
    let mut seconds = 0.0;
    for (from, to) in samples.iter().zip(samples.iter().skip(1)) {
        if from.waiting > 0 && (paced || from.active >= u64::from(max_active)) {
            admitted += to.admitted_total.saturating_sub(from.admitted_total);
            seconds += (to.at - from.at).as_seconds_f64();
        }
    }
    #[allow(clippy::cast_precision_loss)]
    (seconds >= PRESSURED_ENOUGH.as_seconds_f64() && admitted > 0)
        .then(|| admitted as f64 / seconds)
}

/// Admissions per second between the first and the last reading of the window.
fn window_rate(samples: &VecDeque<Sample>) -> Option<f64> {
    let (first, last) = (samples.front()?, samples.back()?);
    #[allow(clippy::cast_precision_loss)]
    (last.at > first.at && last.admitted_total > first.admitted_total).then(|| {
        (last.admitted_total - first.admitted_total) as f64 / (last.at - first.at).as_seconds_f64()
    })
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
            pre_queued: 0,
        }
    }

    #[tokio::test]
    async fn serving_counter_never_moves_back_even_if_a_read_lags() {
        let mut queue = MockQueueRepository::new();
        let mut reads = vec![snapshot(7, 7), snapshot(5, 5)].into_iter();
        queue
            .expect_snapshot()
            .times(2)
            .returning(move |_| Ok(reads.next().expect("two reads")));
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
    async fn a_view_whose_readings_fail_for_over_a_second_answers_nothing_until_one_works() {
        let mut queue = MockQueueRepository::new();
        let mut reads = vec![
            Ok(snapshot(7, 7)),
            Err(RepositoryError::Unavailable("down".into())),
            Err(RepositoryError::Unavailable("down".into())),
            Ok(snapshot(8, 8)),
        ]
        .into_iter();
        queue
            .expect_snapshot()
            .times(4)
            .returning(move |_| reads.next().expect("four reads"));
        queue.expect_ended_waiting().returning(|_| Ok(Vec::new()));
        let view = QueueView::new(Arc::new(queue), QueuePolicy::default());
        let now = datetime!(2026-12-01 12:00 UTC);
        let at = |millis| now + Duration::milliseconds(millis);
        view.refresh(now).await.expect("first");
        assert!(view.readable(at(0)).is_ok());
        let generation = view.generation();

        assert!(view.refresh(at(250)).await.is_err());
        assert!(view.readable(at(500)).is_ok(), "the last reading is recent");
        assert_eq!(view.generation(), generation + 1, "watchers are woken");
        assert!(view.refresh(at(500)).await.is_err());
        assert_eq!(view.generation(), generation + 2, "at each failure");
        assert!(matches!(
            view.readable(at(1_100)),
            Err(RepositoryError::Unavailable(_))
        ));

        view.refresh(at(1_250)).await.expect("fourth");
        assert!(view.readable(at(1_300)).is_ok());
        assert_eq!(view.serving().get(), 8);
    }

    #[tokio::test]
    async fn admission_rate_is_measured_over_the_window() {
        let mut queue = MockQueueRepository::new();
        let mut reads = vec![snapshot(0, 100), snapshot(50, 150)].into_iter();
        queue
            .expect_snapshot()
            .returning(move |_| Ok(reads.next().expect("two reads")));
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
            .returning(move |_| Ok(reads.next().expect("two reads")));
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

    /// A view whose refreshes read `readings` (`(seconds, admitted_total, waiting, active)`) in
    /// turn, refreshed at each reading's second, under a room of `max_active` places.
    async fn view_reading(readings: &[(i64, u64, u64, u64)], max_active: u32) -> QueueView {
        let mut queue = MockQueueRepository::new();
        let mut snapshots: VecDeque<QueueSnapshot> = readings
            .iter()
            .map(|&(_, admitted_total, waiting, active)| QueueSnapshot {
                serving: ServingCounter::new(i64::try_from(admitted_total).expect("small")),
                admitted_total,
                waiting,
                active,
                issued: admitted_total + waiting,
                pre_queued: 0,
            })
            .collect();
        queue
            .expect_snapshot()
            .returning(move |_| Ok(snapshots.pop_front().expect("a reading")));
        queue.expect_ended_waiting().returning(|_| Ok(Vec::new()));
        let policy = QueuePolicy {
            max_active,
            ..QueuePolicy::default()
        };
        let view = QueueView::new(Arc::new(queue), policy);
        let now = datetime!(2026-12-01 12:00 UTC);
        for &(second, ..) in readings {
            view.refresh(now + Duration::seconds(second))
                .await
                .expect("refresh");
        }
        view
    }

    #[tokio::test]
    async fn the_rate_is_measured_while_the_line_is_under_pressure() {
        // Idle for 40 s before the sale, the 100 places filled at once at its opening, then 5
        // admissions a second while people wait and the room is full.
        let mut readings = vec![
            (0, 0, 0, 0),
            (20, 0, 0, 0),
            (40, 0, 900, 0),
            (41, 100, 800, 100),
        ];
        for second in 42..=50 {
            let admitted = 100 + 5 * u64::try_from(second - 41).expect("positive");
            readings.push((second, admitted, 900 - admitted, 100));
        }
        let view = view_reading(&readings, 100).await;
        assert!(
            (view.admissions_per_second() - 5.0).abs() < 1e-9,
            "{} a second",
            view.admissions_per_second()
        );
        // Over the whole window the same line seems to move at 145 in 50 s: under 3 a second.
        let whole = window_rate(&view.state().samples).expect("a rate");
        assert!(whole < 3.0, "{whole}");
    }

    #[tokio::test]
    async fn a_line_not_yet_under_pressure_long_enough_is_measured_over_the_whole_window() {
        // One second under pressure: not yet trusted.
        let view = view_reading(&[(0, 0, 0, 0), (10, 50, 50, 100), (11, 55, 45, 100)], 100).await;
        assert!((view.admissions_per_second() - 5.0).abs() < 1e-9);
    }

    #[tokio::test]
    async fn a_paced_room_is_under_pressure_whenever_someone_waits() {
        let readings = [
            (0, 0, 50, 10),
            (1, 2, 48, 12),
            (2, 4, 46, 14),
            (3, 6, 44, 16),
        ];
        let unpaced = view_reading(&readings, 100).await;
        assert!(
            (unpaced.admissions_per_second() - 2.0).abs() < 1e-9,
            "places free: the whole window, also 2 a second"
        );
        let paced = view_reading(&readings, 100).await;
        paced.note_room(
            Room::new(
                concert_domain::RoomId::default_room(),
                100,
                concert_domain::RoomState::Open,
            )
            .and_then(|room| {
                room.changed(
                    &concert_domain::RoomChange {
                        admit_per_minute: Some(Some(120)),
                        ..concert_domain::RoomChange::default()
                    },
                    datetime!(2026-12-01 12:00 UTC),
                )
            })
            .expect("a paced room"),
        );
        let rate = pressured_rate(&paced.state().samples, 100, true);
        assert_eq!(rate, Some(2.0));
        assert_eq!(pressured_rate(&paced.state().samples, 100, false), None);
    }

    #[tokio::test]
    async fn the_generation_moves_only_when_a_watcher_may_have_something_to_hear() {
        let view = view_reading(&[(0, 5, 10, 100), (1, 5, 10, 100), (2, 6, 9, 100)], 100).await;
        let moved = view.generation();
        let standing = view_reading(&[(0, 5, 10, 100), (1, 5, 10, 100)], 100).await;
        let still = standing.generation();
        assert!(moved > still, "the serving counter moved once more");
        standing.note_ended_while_waiting(EndedWaiting {
            ticket: TicketNo::new(9).expect("a ticket"),
            reason: None,
        });
        assert_eq!(standing.generation(), still + 1, "a user left here");
        let once = view_reading(&[(0, 5, 10, 100)], 100).await.generation();
        assert_eq!(
            still, once,
            "a second reading of the same line changes nothing"
        );
    }

    #[tokio::test]
    async fn an_opening_noted_while_the_pre_queue_is_read_is_read_again_after() {
        use concert_domain::{Opening, RoomId, RoomState};

        let line = LineNo::new(2).expect("a line");
        let entry = TicketNo::new(line.pre_queue_start() + 1).expect("an entry");
        let place = TicketNo::new(line.start().get() + 1).expect("a place");
        let gathering = Room::new(RoomId::parse("gala").expect("an id"), 5, RoomState::Open)
            .expect("a room")
            .on_line(line)
            .with_opening(Some(Opening {
                at: datetime!(2026-12-01 12:00 UTC),
                shuffle: false,
                done: false,
            }));
        let handle: Arc<std::sync::Mutex<Option<QueueView>>> = Arc::default();
        let mut queue = MockQueueRepository::new();
        queue.expect_snapshot().returning(move |_| {
            Ok(QueueSnapshot {
                serving: line.start(),
                ..QueueSnapshot::default()
            })
        });
        queue.expect_ended_waiting().returning(|_| Ok(Vec::new()));
        let (noting, opened) = (Arc::clone(&handle), gathering.clone().opened());
        let mut reads = 0;
        queue.expect_pre_queue_outcomes().returning(move |_| {
            reads += 1;
            if reads == 1 {
                // Read before the opening committed; meanwhile the step notes it opened.
                let view = noting.lock().expect("lock").clone().expect("a view");
                view.note_room(opened.clone());
                return Ok(Vec::new());
            }
            Ok(vec![PreQueueOutcome {
                entry,
                place: Some(place),
                ended: None,
            }])
        });
        let view = QueueView::of_line(Arc::new(queue), QueuePolicy::default(), line);
        *handle.lock().expect("lock") = Some(view.clone());
        view.note_room(gathering);
        let now = datetime!(2026-12-01 12:00 UTC);

        view.refresh(now).await.expect("during the opening");
        assert_eq!(view.placement(entry), Placement::PreQueue);
        view.refresh(now + Duration::seconds(1))
            .await
            .expect("after it");
        assert_eq!(view.placement(entry), Placement::Line(place));
    }

    #[tokio::test]
    async fn once_an_opened_rooms_outcomes_are_read_an_entry_not_among_them_has_ended() {
        use concert_domain::{Opening, RoomId, RoomState};

        let line = LineNo::new(2).expect("a line");
        let entry = TicketNo::new(line.pre_queue_start() + 1).expect("an entry");
        let mut queue = MockQueueRepository::new();
        queue.expect_snapshot().returning(move |_| {
            Ok(QueueSnapshot {
                serving: line.start(),
                ..QueueSnapshot::default()
            })
        });
        queue.expect_ended_waiting().returning(|_| Ok(Vec::new()));
        // Purged since: its ticket's story was over.
        queue
            .expect_pre_queue_outcomes()
            .times(1)
            .returning(|_| Ok(Vec::new()));
        let view = QueueView::of_line(Arc::new(queue), QueuePolicy::default(), line);
        assert_eq!(
            view.placement(entry),
            Placement::PreQueue,
            "nothing read yet"
        );
        view.note_room(
            Room::new(RoomId::parse("gala").expect("an id"), 5, RoomState::Open)
                .expect("a room")
                .on_line(line)
                .with_opening(Some(Opening {
                    at: datetime!(2026-12-01 12:00 UTC),
                    shuffle: false,
                    done: true,
                })),
        );
        let now = datetime!(2026-12-01 13:00 UTC);
        view.refresh(now).await.expect("refresh");
        view.refresh(now + Duration::seconds(1))
            .await
            .expect("read once only");

        assert_eq!(view.placement(entry), Placement::Ended(None));
    }
}
