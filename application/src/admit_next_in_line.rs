//! Use case: one admission step in every room's line. Every instance runs it on a short timer
//! and right after a payment; the repository holds a line still while the domain decides, so one
//! step of a line runs at a time and none passes a ticket drawn before it.

use std::sync::Arc;

use concert_domain::queue::{admit_oldest, end_overdue, opening_order};
use concert_domain::{
    Admission, EndReason, Overdue, Pace, QueuePolicy, QueueTicket, Room, RoomId, RoomState,
};
use time::OffsetDateTime;

use crate::ports::{
    AdmissionReport, AdmissionRules, Clock, OpeningRules, PreQueueEntry, QueueRepository,
    RepositoryError, RoomRepository, SecureRandom, Written,
};
use crate::queue_metrics;
use crate::room_lines::RoomLines;

pub struct AdmitNextInLine {
    queue: Arc<dyn QueueRepository>,
    rooms: Arc<dyn RoomRepository>,
    lines: RoomLines,
    clock: Arc<dyn Clock>,
    policy: QueuePolicy,
    random: Arc<dyn SecureRandom>,
}

/// The domain's rule for the order of a room's pre-queue at its opening.
struct OpeningAt {
    shuffle: bool,
    random: Arc<dyn SecureRandom>,
}

impl OpeningRules for OpeningAt {
    fn order(&self, arrivals: Vec<PreQueueEntry>) -> Vec<PreQueueEntry> {
        let mut below = |n: usize| {
            let drawn = self.random.below(u64::try_from(n).unwrap_or(u64::MAX));
            usize::try_from(drawn).unwrap_or(0)
        };
        opening_order(arrivals, self.shuffle, &mut below)
    }
}

/// What one round of steps did, room by room (`None`: the room's step found a ticket changed
/// and wrote nothing). Closed rooms whose lines are empty are left out: nothing can happen there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmissionRound {
    pub steps: Vec<(RoomId, Option<AdmissionReport>)>,
}

impl AdmissionRound {
    /// The report of `room`'s step, if it ran and wrote.
    pub fn of(&self, room: &RoomId) -> Option<AdmissionReport> {
        self.steps
            .iter()
            .find(|(stepped, _)| stepped == room)
            .and_then(|(_, report)| *report)
    }

    /// The report of the `default` room's step, if it wrote.
    pub fn default_room(&self) -> Option<AdmissionReport> {
        self.of(&RoomId::default_room())
    }
}

/// The domain's admission rules at one instant, as the repository asks for them.
struct RulesAt {
    policy: QueuePolicy,
    now: OffsetDateTime,
    /// The room as stored now.
    room: Room,
}

impl RulesAt {
    /// Whether the room admits at all now (not paused).
    fn admits(&self) -> bool {
        self.room.admits()
    }
}

impl AdmissionRules for RulesAt {
    fn end_overdue(&self, active: &[QueueTicket]) -> Overdue {
        let overdue = end_overdue(active, self.now, &self.policy);
        if self.admits() {
            overdue
        } else {
            Overdue { free: 0, ..overdue }
        }
    }

    fn waiting_candidates(&self, free: u32) -> u32 {
        self.policy.waiting_candidates(free)
    }

    fn admit_oldest(&self, waiting: &[QueueTicket], free: u32) -> Admission {
        admit_oldest(waiting, free, self.now, &self.policy)
    }

    fn is_paced(&self) -> bool {
        self.room.is_paced()
    }

    fn paced(&self, free: u32, last_minute: u32, pace: Pace) -> (u32, Pace) {
        self.room.paced(free, last_minute, pace, self.now)
    }
}

impl AdmitNextInLine {
    pub fn new(
        queue: Arc<dyn QueueRepository>,
        rooms: Arc<dyn RoomRepository>,
        lines: impl Into<RoomLines>,
        clock: Arc<dyn Clock>,
        policy: QueuePolicy,
        random: Arc<dyn SecureRandom>,
    ) -> Self {
        Self {
            queue,
            rooms,
            lines: lines.into(),
            clock,
            policy,
            random,
        }
    }

    /// Reads every room's settings as stored now (so an operator's change or a new room
    /// reaches every instance by its next step), then steps each room's line: ends the active
    /// tickets past a deadline and admits waiting ones into the free places. A room whose step
    /// fails does not hold up the others; the first failure is returned after all ran.
    pub async fn run_once(&self) -> Result<AdmissionRound, RepositoryError> {
        let mut rooms: Vec<Room> = self
            .rooms
            .list()
            .await?
            .into_iter()
            .map(|room| room.value)
            .collect();
        // Until the store holds the `default` room (the server creates it at start), its line
        // runs under the deployment's settings.
        if !rooms.iter().any(|room| room.id().is_default()) {
            let default = Room::new(
                RoomId::default_room(),
                self.policy.max_active,
                RoomState::Open,
            )
            .map_err(|error| RepositoryError::Unexpected(Box::new(error)))?;
            rooms.insert(0, default);
        }
        self.lines.note_rooms(&rooms);
        let mut round = AdmissionRound::default();
        let mut failure = None;
        for room in rooms {
            if !self.needs_step(&room) {
                continue;
            }
            let id = room.id().clone();
            let room = match self.open_if_due(room).await {
                Ok(room) => room,
                Err(error) => {
                    tracing::warn!(room = %id, error = %error, "room opening failed");
                    failure.get_or_insert(error);
                    continue;
                }
            };
            match self.step(room).await {
                Ok(report) => round.steps.push((id, report)),
                Err(error) => {
                    tracing::warn!(room = %id, error = %error, "admission step failed");
                    failure.get_or_insert(error);
                }
            }
        }
        failure.map_or(Ok(round), Err)
    }

    /// A closed room whose line is empty (as this instance last saw it) has nothing to step.
    fn needs_step(&self, room: &Room) -> bool {
        room.id().is_default() || !self.lines.of_line(room.line()).is_closed_and_empty()
    }

    /// At its opening time, gives the room's pre-queue its places (once across instances) and
    /// returns the room as opened; otherwise the room as it is.
    async fn open_if_due(&self, room: Room) -> Result<Room, RepositoryError> {
        let now = self.clock.now();
        if !room.opens_at(now) {
            return Ok(room);
        }
        let rules = OpeningAt {
            shuffle: room.opening().is_some_and(|opening| opening.shuffle),
            random: Arc::clone(&self.random),
        };
        let room = match self.queue.open_line(room.line(), now, &rules).await? {
            Written::Done(placed) => {
                tracing::info!(room = %room.id(), placed, shuffled = rules.shuffle, "room opened");
                room.opened()
            }
            // Most likely opened by another instance; the store says whether it is.
            Written::Stale => self
                .rooms
                .find(room.id())
                .await?
                .map_or(room, |stored| stored.value),
        };
        self.lines.note_room(&room);
        Ok(room)
    }

    /// One step of `room`'s line; `None` when a ticket changed under it (nothing was written;
    /// the next step decides again).
    async fn step(&self, room: Room) -> Result<Option<AdmissionReport>, RepositoryError> {
        let line = room.line();
        let policy = room.admission_policy(&self.policy);
        let now = self.clock.now();
        let rules = RulesAt { policy, now, room };
        let Written::Done(report) = self.queue.admit(line, now, &rules).await? else {
            tracing::debug!(line = line.get(), "admission step found a ticket changed");
            return Ok(None);
        };
        queue_metrics::admitted(rules.room.id(), report.admitted);
        queue_metrics::tickets_ended(
            rules.room.id(),
            EndReason::Idle,
            report.idle + report.passed_over,
        );
        queue_metrics::tickets_ended(
            rules.room.id(),
            EndReason::ActiveTimeOver,
            report.expired.saturating_sub(report.idle),
        );
        if report.admitted > 0 || report.expired > 0 || report.passed_over > 0 {
            tracing::debug!(
                room = %rules.room.id(),
                admitted = report.admitted,
                expired = report.expired,
                passed_over = report.passed_over,
                serving = report.serving.get(),
                "admission step"
            );
        }
        Ok(Some(report))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use concert_domain::queue::ServingCounter;
    use concert_domain::{Room, RoomState, TicketStatus};
    use time::Duration;

    use super::*;
    use crate::ports::{MockQueueRepository, MockRoomRepository, Version, Versioned};
    use crate::test_support::{
        NOW, active_ticket, active_ticket_until, clock, clock_at, policy, waiting_ticket,
    };

    fn report() -> AdmissionReport {
        AdmissionReport {
            expired: 1,
            idle: 0,
            admitted: 2,
            passed_over: 0,
            serving: ServingCounter::new(16),
        }
    }

    /// A repository that runs one admission step at `at`: it asks the rules it is given with
    /// `ask`, keeps what they answer, and reports [`report`].
    fn admitting_at<T: Send + 'static>(
        at: OffsetDateTime,
        ask: impl Fn(&dyn AdmissionRules) -> T + Send + 'static,
    ) -> (MockQueueRepository, Arc<Mutex<Option<T>>>) {
        let answered = Arc::new(Mutex::new(None));
        let kept = Arc::clone(&answered);
        let mut queue = MockQueueRepository::new();
        queue
            .expect_admit()
            .withf(move |_, now, _| *now == at)
            .times(1)
            .returning(move |_, _, rules| {
                *kept.lock().expect("lock") = Some(ask(rules));
                Ok(Written::Done(report()))
            });
        (queue, answered)
    }

    /// The use case over `queue`, with `room` stored as the only room (none: the `default`
    /// room under the deployment's policy).
    fn stepper(
        queue: MockQueueRepository,
        clock: Arc<dyn Clock>,
        room: Option<Room>,
    ) -> AdmitNextInLine {
        let room = room.unwrap_or_else(|| {
            Room::new(RoomId::default_room(), policy().max_active, RoomState::Open).expect("a room")
        });
        let mut rooms = MockRoomRepository::new();
        rooms
            .expect_list()
            .returning(move || Ok(vec![Versioned::new(room.clone(), Version::new(1))]));
        let lines = RoomLines::new(Arc::new(MockQueueRepository::new()), policy());
        AdmitNextInLine::new(
            Arc::new(queue),
            Arc::new(rooms),
            lines,
            clock,
            policy(),
            Arc::new(crate::ports::MockSecureRandom::new()),
        )
    }

    /// Runs one step at `at` with the test policy and returns what `ask` got from the rules.
    async fn rules_answer<T: Send + 'static>(
        at: OffsetDateTime,
        ask: impl Fn(&dyn AdmissionRules) -> T + Send + 'static,
    ) -> T {
        let (queue, answered) = admitting_at(at, ask);
        let done = stepper(queue, clock_at(at), None)
            .run_once()
            .await
            .expect("admitted");
        assert_eq!(done.default_room(), Some(report()));
        let answer = answered.lock().expect("lock").take();
        answer.expect("the repository asked the rules")
    }

    #[tokio::test]
    async fn the_report_of_a_written_step_is_passed_through() {
        let mut queue = MockQueueRepository::new();
        queue
            .expect_admit()
            .withf(|_, now, _| *now == NOW)
            .times(1)
            .returning(|_, _, _| Ok(Written::Done(report())));

        let done = stepper(queue, clock(), None)
            .run_once()
            .await
            .expect("admitted");

        assert_eq!(done.default_room(), Some(report()));
    }

    #[tokio::test]
    async fn a_stale_step_wrote_nothing_and_is_not_an_error() {
        let mut queue = MockQueueRepository::new();
        queue
            .expect_admit()
            .times(1)
            .returning(|_, _, _| Ok(Written::Stale));

        let done = stepper(queue, clock(), None)
            .run_once()
            .await
            .expect("not an error");

        assert_eq!(done.default_room(), None);
        assert_eq!(done.steps.len(), 1, "the step ran");
    }

    #[tokio::test]
    async fn a_repository_failure_is_an_error() {
        let mut queue = MockQueueRepository::new();
        queue
            .expect_admit()
            .times(1)
            .returning(|_, _, _| Err(RepositoryError::Unavailable("down".into())));

        let failed = stepper(queue, clock(), None).run_once().await;

        assert!(matches!(failed, Err(RepositoryError::Unavailable(_))));
    }

    #[tokio::test]
    async fn the_rules_end_the_active_tickets_past_a_deadline_and_count_the_places_freed() {
        let live = active_ticket(1, Duration::seconds(1));
        let past_active = active_ticket_until(2, NOW, Duration::seconds(1));
        let idle = active_ticket(3, policy().idle_deadline_after_activity());
        let active = vec![live, past_active.clone(), idle.clone()];

        let overdue = rules_answer(NOW, move |rules| rules.end_overdue(&active)).await;

        let ended: Vec<_> = overdue.ended.iter().map(QueueTicket::ticket).collect();
        assert_eq!(ended, vec![past_active.ticket(), idle.ticket()]);
        assert!(
            overdue
                .ended
                .iter()
                .all(|t| t.stored_status() == TicketStatus::Expired)
        );
        assert_eq!(overdue.free, 1, "max_active 2, one still active");
    }

    #[tokio::test]
    async fn the_rules_decide_at_the_clocks_now() {
        // Active until NOW + 9 minutes: live at NOW, ended at NOW + 9 minutes.
        let active = vec![active_ticket(1, Duration::ZERO)];
        let later = NOW + Duration::minutes(9);

        let at_now = rules_answer(NOW, {
            let active = active.clone();
            move |rules| rules.end_overdue(&active)
        })
        .await;
        let at_later = rules_answer(later, move |rules| rules.end_overdue(&active)).await;

        assert!(at_now.ended.is_empty());
        assert_eq!(at_now.free, 1);
        assert_eq!(at_later.ended.len(), 1);
        assert_eq!(at_later.free, 2);
    }

    #[tokio::test]
    async fn no_place_is_free_while_max_active_tickets_are_live_even_if_more_are() {
        let two = vec![
            active_ticket(1, Duration::seconds(1)),
            active_ticket(2, Duration::seconds(1)),
        ];
        let three = vec![
            active_ticket(1, Duration::seconds(1)),
            active_ticket(2, Duration::seconds(1)),
            active_ticket(3, Duration::seconds(1)),
        ];

        let full = rules_answer(NOW, move |rules| rules.end_overdue(&two)).await;
        let over = rules_answer(NOW, move |rules| rules.end_overdue(&three)).await;

        assert_eq!((full.ended.len(), full.free), (0, 0));
        assert_eq!((over.ended.len(), over.free), (0, 0));
    }

    #[tokio::test]
    async fn the_rules_admit_the_oldest_waiting_first_and_no_more_than_free() {
        let at = NOW + Duration::seconds(30);
        let waiting = vec![waiting_ticket(5), waiting_ticket(6), waiting_ticket(7)];

        let (two, none, all) = rules_answer(at, move |rules| {
            (
                rules.admit_oldest(&waiting, 2),
                rules.admit_oldest(&waiting, 0),
                rules.admit_oldest(&waiting, 10),
            )
        })
        .await;

        let numbers: Vec<_> = two.admitted.iter().map(|t| t.ticket().get()).collect();
        assert_eq!(numbers, vec![5, 6]);
        assert!(two.passed_over.is_empty());
        for admitted in &two.admitted {
            assert_eq!(admitted.stored_status(), TicketStatus::Active);
            assert_eq!(admitted.active_until(), Some(at + policy().active_ttl));
            assert_eq!(admitted.last_seen(), Some(at));
        }
        assert_eq!(none, Admission::default());
        assert_eq!(all.admitted.len(), 3);
    }

    /// Runs one step at `NOW` over `room` and returns what the rules answered for one active
    /// ticket and two waiting ones.
    async fn rules_in(room: Room) -> (u32, usize) {
        let (queue, answered) = admitting_at(NOW, |rules| {
            let overdue = rules.end_overdue(&[active_ticket(3, Duration::seconds(1))]);
            let admitted =
                rules.admit_oldest(&[waiting_ticket(4), waiting_ticket(5)], overdue.free);
            (overdue.free, admitted.admitted.len())
        });
        let step = stepper(queue, clock_at(NOW), Some(room.clone()));
        step.run_once().await.expect("admitted");
        assert_eq!(
            step.lines.default_line().room(),
            Some(room),
            "the instance follows the room"
        );
        let answer = answered.lock().expect("lock").take();
        answer.expect("the repository asked the rules")
    }

    #[tokio::test]
    async fn a_step_follows_the_rooms_maximum_as_stored_now() {
        let room = |max| Room::new(RoomId::default_room(), max, RoomState::Open).expect("a room");
        assert_eq!(rules_in(room(3)).await, (2, 2));
        // Lowered below the active count: nobody is admitted until below it.
        assert_eq!(rules_in(room(1)).await, (0, 0));
    }

    #[tokio::test]
    async fn a_paused_room_admits_nobody_and_a_closed_one_still_admits() {
        let room = |state| Room::new(RoomId::default_room(), 3, state).expect("a room");
        assert_eq!(rules_in(room(RoomState::Paused)).await, (0, 0));
        assert_eq!(rules_in(room(RoomState::Closed)).await, (2, 2));
    }

    #[tokio::test]
    async fn under_a_waiting_rule_the_step_reads_further_and_passes_over_idle_waiters() {
        let room = Room::new(RoomId::default_room(), 3, RoomState::Open)
            .and_then(|room| {
                room.changed(
                    &concert_domain::RoomChange {
                        waiting_idle_seconds: Some(Some(60)),
                        ..concert_domain::RoomChange::default()
                    },
                    NOW - Duration::hours(1),
                )
            })
            .expect("a room with a waiting rule");
        // Issued at NOW, never polled: idle from NOW + 66 s on.
        let at = NOW + Duration::seconds(70);
        let (queue, answered) = admitting_at(at, |rules| {
            let candidates = rules.waiting_candidates(1);
            let admission = rules.admit_oldest(&[waiting_ticket(4), waiting_ticket(5)], 1);
            (candidates, admission)
        });
        let step = stepper(queue, clock_at(at), Some(room));
        step.run_once().await.expect("stepped");
        let (candidates, admission) = answered
            .lock()
            .expect("lock")
            .take()
            .expect("the repository asked the rules");
        assert!(candidates > 1, "read beyond the free place");
        assert_eq!(admission.admitted, Vec::new(), "both were away");
        let passed: Vec<_> = admission
            .passed_over
            .iter()
            .map(|t| (t.ticket().get(), t.end_reason()))
            .collect();
        assert_eq!(
            passed,
            vec![(4, Some(EndReason::Idle)), (5, Some(EndReason::Idle))]
        );
    }

    /// A room on line 5 guarding concert 3, opening at `opens_at` with `shuffle`.
    fn gala(opens_at: OffsetDateTime, shuffle: bool) -> Room {
        Room::new(
            RoomId::parse("spring-gala").expect("an id"),
            2,
            RoomState::Open,
        )
        .expect("a room")
        .on_line(concert_domain::LineNo::new(5).expect("a line"))
        .with_opening(Some(concert_domain::Opening {
            at: opens_at,
            shuffle,
            done: false,
        }))
    }

    fn entries(n: i64) -> Vec<PreQueueEntry> {
        let line = concert_domain::LineNo::new(5).expect("a line");
        (1..=n)
            .map(|k| PreQueueEntry {
                entry: concert_domain::TicketNo::new(line.pre_queue_start() + k).expect("an entry"),
                user: crate::test_support::user(),
                issued_at: NOW,
            })
            .collect()
    }

    /// A round over the default room and `room`, whose store answers `find` with the room as
    /// opened; the queue steps every line and opens `room`'s with `open`.
    fn round_over(
        room: Room,
        at: OffsetDateTime,
        queue: MockQueueRepository,
        random: crate::ports::MockSecureRandom,
    ) -> AdmitNextInLine {
        let default = Room::new(RoomId::default_room(), 2, RoomState::Open).expect("a room");
        let listed = vec![
            Versioned::new(default, Version::new(1)),
            Versioned::new(room.clone(), Version::new(1)),
        ];
        let mut rooms = MockRoomRepository::new();
        rooms.expect_list().returning(move || Ok(listed.clone()));
        let opened = room.opened();
        rooms
            .expect_find()
            .returning(move |_| Ok(Some(Versioned::new(opened.clone(), Version::new(2)))));
        AdmitNextInLine::new(
            Arc::new(queue),
            Arc::new(rooms),
            RoomLines::new(Arc::new(MockQueueRepository::new()), policy()),
            clock_at(at),
            policy(),
            Arc::new(random),
        )
    }

    #[tokio::test]
    async fn at_its_opening_time_a_room_orders_its_pre_queue_with_secure_draws_then_steps() {
        let at = NOW + Duration::seconds(30);
        let room = gala(at, true);
        let order = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&order);
        let mut queue = MockQueueRepository::new();
        queue
            .expect_open_line()
            .withf(move |line, now, _| line.get() == 5 && *now == at)
            .times(1)
            .returning(move |_, _, rules| {
                let ordered = rules.order(entries(4));
                *kept.lock().expect("lock") = ordered.iter().map(|e| e.entry).collect();
                Ok(Written::Done(4))
            });
        queue
            .expect_admit()
            .times(2)
            .returning(|_, _, _| Ok(Written::Done(AdmissionReport::default())));
        let mut random = crate::ports::MockSecureRandom::new();
        // Always the first of what is left: the last entry comes first, and so on.
        random.expect_below().times(3).returning(|_| 0);

        let round = round_over(room, at, queue, random)
            .run_once()
            .await
            .expect("a round");

        let numbers: Vec<i64> = order
            .lock()
            .expect("lock")
            .iter()
            .map(|t| t.get())
            .collect();
        let first = entries(1)[0].entry.get();
        assert_eq!(numbers, vec![first + 1, first + 2, first + 3, first]);
        assert_eq!(round.steps.len(), 2, "both rooms stepped");
    }

    #[tokio::test]
    async fn before_its_opening_time_a_room_is_not_opened_and_a_closed_empty_room_not_stepped() {
        let at = NOW;
        let mut queue = MockQueueRepository::new();
        queue.expect_open_line().never();
        queue
            .expect_admit()
            .withf(|line, _, _| line.get() == 5)
            .times(1)
            .returning(|_, _, _| Ok(Written::Done(AdmissionReport::default())));
        queue
            .expect_admit()
            .withf(|line, _, _| line.get() == 0)
            .times(2)
            .returning(|_, _, _| Ok(Written::Done(AdmissionReport::default())));
        let mut random = crate::ports::MockSecureRandom::new();
        random.expect_below().never();
        let early = round_over(gala(at + Duration::seconds(1), true), at, queue, random);
        early.run_once().await.expect("a round");

        let closed = Room::new(
            RoomId::parse("spring-gala").expect("an id"),
            2,
            RoomState::Closed,
        )
        .expect("a room")
        .on_line(concert_domain::LineNo::new(5).expect("a line"));
        // This instance has read the closed room's line: empty.
        let mut empty = MockQueueRepository::new();
        empty.expect_snapshot().returning(|line| {
            Ok(crate::ports::QueueSnapshot {
                serving: line.start(),
                ..crate::ports::QueueSnapshot::default()
            })
        });
        empty.expect_ended_waiting().returning(|_| Ok(Vec::new()));
        let lines = RoomLines::new(Arc::new(empty), policy());
        lines
            .of_line(concert_domain::LineNo::new(5).expect("a line"))
            .refresh(at)
            .await
            .expect("read");
        let skipping = AdmitNextInLine {
            lines,
            rooms: Arc::new({
                let mut rooms = MockRoomRepository::new();
                let listed = vec![
                    Versioned::new(
                        Room::new(RoomId::default_room(), 2, RoomState::Open).expect("a room"),
                        Version::new(1),
                    ),
                    Versioned::new(closed, Version::new(1)),
                ];
                rooms.expect_list().returning(move || Ok(listed.clone()));
                rooms
            }),
            ..early
        };
        let round = skipping.run_once().await.expect("a round");
        assert_eq!(
            round
                .steps
                .iter()
                .map(|(id, _)| id.as_str())
                .collect::<Vec<_>>(),
            vec!["default"],
            "a closed room with an empty line has nothing to step"
        );
    }
}
