//! Use case: hand a user a signed queue token: their live one if they have it, else a new place
//! at the end of the line, or straight through an empty line when a place is free.

use std::sync::Arc;
use std::time::Duration;

use concert_domain::queue::{Join, join};
use concert_domain::{EndReason, QueueTicket, Room, RoomId, TicketStatus, UserId};

use crate::idempotency::{Step, until_written};
use crate::ports::{
    AdmissionTrigger, JoinWrite, LiveTicket, PreQueueEntry, PreQueueJoin, PreQueueJoined,
    RepositoryError, RoomRepository, TicketEnd, TokenClaims, Written,
};
use crate::queue_access::QueueAccess;
use crate::queue_metrics;
use crate::queue_view::QueueView;
use crate::read_queue_status::QueueStatusView;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    /// `false` when the user already held a live token and got that same one back.
    pub created: bool,
    pub status: QueueStatusView,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueQueueTokenError {
    /// The room is closed to newcomers (`409 ROOM_CLOSED`); a live token is still handed back.
    #[error("the waiting room is closed")]
    RoomClosed,
    /// No room has the id asked for (`404 ROOM_NOT_FOUND`).
    #[error("no waiting room has this id")]
    RoomNotFound,
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// How long a join that may pass straight through waits for its admission step; beyond it the
/// user simply starts waiting (and is admitted by the next step anyway).
const PASSTHROUGH_WAIT: Duration = Duration::from_secs(1);

pub struct IssueQueueToken {
    access: QueueAccess,
    rooms: Arc<dyn RoomRepository>,
    admission: Arc<dyn AdmissionTrigger>,
}

impl IssueQueueToken {
    pub fn new(
        access: QueueAccess,
        rooms: Arc<dyn RoomRepository>,
        admission: Arc<dyn AdmissionTrigger>,
    ) -> Self {
        Self {
            access,
            rooms,
            admission,
        }
    }

    /// Loads the user's live ticket in the room's line, lets the domain decide (keep it, or end
    /// an overdue one and join the back of the line), and draws a number over the version of the
    /// user's place.
    #[tracing::instrument(name = "issue_queue_token", skip_all, fields(user = %user, room = %room))]
    pub async fn execute(
        &self,
        user: UserId,
        room: &RoomId,
    ) -> Result<IssuedToken, IssueQueueTokenError> {
        let access = &self.access;
        let view = self.line_of(room).await?;
        let line = view.line();
        let now = access.clock.now();
        // The room's settings as this instance last read them, once for the whole join.
        let settings = view.room();
        let closed = settings
            .as_ref()
            .is_some_and(|room| !room.accepts_newcomers());
        if let Some(room) = settings.as_ref().filter(|room| room.gathers_pre_queue())
            && let Some(issued) = self.join_pre_queue(user, &view, room, closed, now).await?
        {
            return Ok(issued);
        }
        // Most joins at an on-sale are first joins, so the first attempt presumes the user has
        // no place yet and skips the load: the write's compare-and-set over the absent place
        // checks exactly that presumption, and a user who has a place costs one refused write
        // before the load.
        let mut first_attempt = true;
        let (ticket, created) = until_written(|| {
            // In a closed room only a live ticket is handed out, so the load comes first.
            let presume_first_join = std::mem::take(&mut first_attempt) && !closed;
            async move {
                let live = if presume_first_join {
                    LiveTicket::FIRST_JOIN
                } else {
                    access.queue.load_live(user, line).await?
                };
                match join(live.ticket.as_ref(), now, &access.policy) {
                    Join::Keep(ticket) => Ok(Step::Done((ticket, false))),
                    Join::Draw { ends } => {
                        if closed {
                            return Err(IssueQueueTokenError::RoomClosed);
                        }
                        if let Some(overdue) = ends {
                            let end = TicketEnd {
                                ticket: overdue.ticket(),
                                read_as: TicketStatus::Active,
                                reason: overdue.end_reason().unwrap_or(EndReason::ActiveTimeOver),
                            };
                            // Ended meanwhile by another step is as good as ended here.
                            if access.queue.end(&end, now).await? == Written::Done(()) {
                                queue_metrics::tickets_ended(room, end.reason, 1);
                            }
                        }
                        let write = JoinWrite {
                            user,
                            line,
                            version: live.version,
                            now,
                        };
                        let drawn = access.queue.save_join(&write).await?;
                        Ok::<_, IssueQueueTokenError>(
                            Step::from(drawn).map(|ticket| (ticket, true)),
                        )
                    }
                }
            }
        })
        .await?;
        let ticket = if created {
            self.pass_through(ticket, &view, settings.as_ref()).await?
        } else {
            ticket
        };
        let token = access.signer.sign(&TokenClaims {
            user,
            ticket: ticket.ticket(),
            issued_at: ticket.issued_at(),
        });
        Ok(IssuedToken {
            token,
            created,
            status: QueueStatusView::of_ticket(&ticket, now, &access.policy, &view),
        })
    }

    /// Before the room's opening: the user's entry in its pre-queue (a new one, or the one they
    /// hold). `None` when the room opened meanwhile: the user joins its line instead.
    async fn join_pre_queue(
        &self,
        user: UserId,
        view: &QueueView,
        room: &Room,
        closed: bool,
        now: time::OffsetDateTime,
    ) -> Result<Option<IssuedToken>, IssueQueueTokenError> {
        let access = &self.access;
        let line = view.line();
        let joined = until_written(|| async {
            if closed {
                // A closed room hands back only what a user holds.
                let held = access.queue.load_pre_queue(user, line).await?;
                return match held {
                    Some(entry) => Ok(Step::Done(Some((entry, false)))),
                    None => Err(IssueQueueTokenError::RoomClosed),
                };
            }
            let write = PreQueueJoin { user, line, now };
            match access.queue.save_pre_queue_join(&write).await? {
                PreQueueJoined::Done(entry) => Ok(Step::Done(Some((entry, true)))),
                PreQueueJoined::Opened => Ok(Step::Done(None)),
                PreQueueJoined::Stale => {
                    Ok(match access.queue.load_pre_queue(user, line).await? {
                        Some(entry) => Step::Done(Some((entry, false))),
                        // Placed by the opening since: the next attempt finds the room open.
                        None => Step::Stale,
                    })
                }
            }
        })
        .await?;
        Ok(
            joined.map(|(entry, created): (PreQueueEntry, bool)| IssuedToken {
                token: access.signer.sign(&TokenClaims {
                    user,
                    ticket: entry.entry,
                    issued_at: entry.issued_at,
                }),
                created,
                status: QueueStatusView::pre_queue(Some(room), now),
            }),
        )
    }

    /// The view of the room's line; a room this instance has not read yet (created a moment
    /// ago on another instance) is read from the store.
    async fn line_of(&self, room: &RoomId) -> Result<QueueView, IssueQueueTokenError> {
        if let Some(view) = self.access.lines.of_room(room) {
            return Ok(view);
        }
        let found = self
            .rooms
            .find(room)
            .await?
            .ok_or(IssueQueueTokenError::RoomNotFound)?;
        self.access.lines.note_room(&found.value);
        Ok(self.access.lines.of_line(found.value.line()))
    }
}

impl IssueQueueToken {
    /// A new ticket in a line where nobody waits and a place is free is admitted on arrival:
    /// the join asks for an admission step and reads its ticket again once one has run. The step
    /// decides as always (ticket order, never beyond the maximum), so many newcomers on several
    /// instances at once can never be admitted past it.
    async fn pass_through(
        &self,
        ticket: QueueTicket,
        view: &QueueView,
        room: Option<&Room>,
    ) -> Result<QueueTicket, RepositoryError> {
        let line = view.snapshot();
        let room_admits = room.is_none_or(Room::admits);
        if !room_admits || !view.policy().admits_on_arrival(line.waiting, line.active) {
            return Ok(ticket);
        }
        self.admission.admit_soon(PASSTHROUGH_WAIT).await;
        let now_stored = self.access.queue.find(ticket.ticket()).await?;
        Ok(now_stored
            .filter(|stored| stored.stored_status() == TicketStatus::Active)
            .unwrap_or(ticket))
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::queue::ServingCounter;
    use concert_domain::{LineNo, Room, RoomState};
    use mockall::Sequence;
    use mockall::predicate::eq;
    use time::Duration;

    use super::*;
    use crate::idempotency::MAX_ATTEMPTS;
    use crate::ports::{
        MockAdmissionTrigger, MockQueueRepository, MockRoomRepository, MockTokenSigner,
        QueueSnapshot, Version, Versioned, Written,
    };
    use crate::queue_view::QueueView;
    use crate::test_support::{
        NOW, active_ticket, active_ticket_until, clock, policy, user, view_serving, waiting_ticket,
    };

    /// The version of the user's place every load reads, unless a test says otherwise.
    const PLACE_VERSION: Version = Version::new(7);

    /// A signer whose token spells out the claims, so the same claims always give the same token.
    fn signer_expecting(claims: TokenClaims, times: usize) -> MockTokenSigner {
        let mut signer = MockTokenSigner::new();
        signer
            .expect_sign()
            .withf(move |signed| *signed == claims)
            .times(times)
            .returning(|c| format!("{}.{}.{}", c.user, c.ticket, c.issued_at.unix_timestamp()));
        signer
    }

    fn claims_of(ticket: &QueueTicket) -> TokenClaims {
        TokenClaims {
            user: user(),
            ticket: ticket.ticket(),
            issued_at: ticket.issued_at(),
        }
    }

    fn live(ticket: Option<QueueTicket>, version: Version) -> LiveTicket {
        LiveTicket { ticket, version }
    }

    /// A repository that refuses `times` presumed first joins (the user has a place).
    fn refusing_first_joins(times: usize) -> MockQueueRepository {
        let mut queue = MockQueueRepository::new();
        queue
            .expect_save_join()
            .with(eq(join_over(Version::ABSENT)))
            .times(times)
            .returning(|_| Ok(Written::Stale));
        queue
    }

    /// A repository that refuses the presumed first join, then whose one load of the user's
    /// place finds `found`.
    fn loading(found: Option<QueueTicket>) -> MockQueueRepository {
        let mut queue = refusing_first_joins(1);
        queue
            .expect_load_live()
            .with(eq(user()), eq(LineNo::DEFAULT))
            .times(1)
            .returning(move |_, _| Ok(live(found.clone(), PLACE_VERSION)));
        queue
    }

    /// The join the use case writes over `version`.
    fn join_over(version: Version) -> JoinWrite {
        JoinWrite {
            user: user(),
            line: LineNo::DEFAULT,
            version,
            now: NOW,
        }
    }

    /// Expects one join over `version`, which draws `drawn`.
    fn draws_over(queue: &mut MockQueueRepository, version: Version, drawn: &QueueTicket) {
        let stored = drawn.clone();
        queue
            .expect_save_join()
            .with(eq(join_over(version)))
            .times(1)
            .returning(move |_| Ok(Written::Done(stored.clone())));
    }

    /// Issues a token for `user()` whose claims are `drawn`'s.
    async fn issue_drawn(queue: MockQueueRepository, drawn: &QueueTicket) -> IssuedToken {
        issuer(queue, signer_expecting(claims_of(drawn), 1))
            .await
            .execute(user(), &RoomId::default_room())
            .await
            .expect("issued")
    }

    /// An issuer whose view of the line has people waiting: no join passes through (the
    /// admission trigger's fake panics if asked).
    async fn issuer(queue: MockQueueRepository, signer: MockTokenSigner) -> IssueQueueToken {
        IssueQueueToken::new(
            QueueAccess::new(
                Arc::new(signer),
                Arc::new(queue),
                clock(),
                view_serving(10).await,
                policy(),
            ),
            Arc::new(MockRoomRepository::new()),
            Arc::new(MockAdmissionTrigger::new()),
        )
    }

    /// An issuer whose view of the line shows `waiting` and `active` tokens, with `admission`.
    async fn issuer_over_line(
        queue: MockQueueRepository,
        waiting: u64,
        active: u64,
        admission: MockAdmissionTrigger,
    ) -> IssueQueueToken {
        let mut line = MockQueueRepository::new();
        line.expect_snapshot().returning(move |_| {
            Ok(QueueSnapshot {
                serving: ServingCounter::new(13),
                admitted_total: 13,
                waiting,
                active,
                issued: 13 + waiting,
                pre_queued: 0,
            })
        });
        line.expect_ended_waiting().returning(|_| Ok(Vec::new()));
        let view = QueueView::new(Arc::new(line), policy());
        view.refresh(NOW).await.expect("refresh");
        let drawn = waiting_ticket(14);
        IssueQueueToken::new(
            QueueAccess::new(
                Arc::new(signer_expecting(claims_of(&drawn), 1)),
                Arc::new(queue),
                clock(),
                view,
                policy(),
            ),
            Arc::new(MockRoomRepository::new()),
            Arc::new(admission),
        )
    }

    fn admitting_soon(times: usize) -> MockAdmissionTrigger {
        let mut admission = MockAdmissionTrigger::new();
        admission.expect_admit_soon().times(times).returning(|_| ());
        admission
    }

    #[tokio::test]
    async fn a_newcomer_to_an_empty_line_with_a_free_place_is_active_in_the_answer() {
        let drawn = waiting_ticket(14);
        let mut queue = MockQueueRepository::new();
        draws_over(&mut queue, Version::ABSENT, &drawn);
        let mut admitted = drawn.clone();
        admitted.admit(NOW, &policy()).expect("admitted");
        queue
            .expect_find()
            .with(eq(drawn.ticket()))
            .times(1)
            .returning(move |_| Ok(Some(admitted.clone())));

        let issued = issuer_over_line(queue, 0, 0, admitting_soon(1))
            .await
            .execute(user(), &RoomId::default_room())
            .await
            .expect("issued");

        assert!(issued.created);
        assert_eq!(issued.status.status, TicketStatus::Active);
        assert!(issued.status.active_until.is_some());
    }

    /// A room on line 3 guarding concert 3, opening at `opens_at` (none: open).
    fn gala(opens_at: Option<time::OffsetDateTime>) -> Room {
        Room::create(
            &concert_domain::NewRoom {
                id: gala_id(),
                concerts: vec![concert_domain::ConcertId::new(3).expect("a concert")],
                max_active: 5,
                admit_per_minute: None,
                opens_at,
                shuffle_at_open: false,
                waiting_idle_seconds: None,
            },
            false,
            &[(
                concert_domain::ConcertId::new(3).expect("a concert"),
                concert_domain::ConcertGuard::DefaultRoom,
            )],
            NOW,
        )
        .expect("a room")
        .on_line(gala_line())
    }

    fn gala_id() -> RoomId {
        RoomId::parse("spring-gala").expect("an id")
    }

    fn gala_line() -> LineNo {
        LineNo::new(3).expect("a line")
    }

    fn entry(n: i64) -> crate::ports::PreQueueEntry {
        crate::ports::PreQueueEntry {
            entry: concert_domain::TicketNo::new(gala_line().pre_queue_start() + n)
                .expect("an entry"),
            user: user(),
            issued_at: NOW - Duration::seconds(5),
        }
    }

    /// An issuer that knows only the default room; `rooms` is the store behind it. A join into
    /// an empty line asks for a step (which admits nobody here).
    async fn issuer_with_rooms(
        queue: MockQueueRepository,
        signer: MockTokenSigner,
        rooms: MockRoomRepository,
    ) -> IssueQueueToken {
        let mut admission = MockAdmissionTrigger::new();
        admission.expect_admit_soon().returning(|_| ());
        IssueQueueToken::new(
            QueueAccess::new(
                Arc::new(signer),
                Arc::new(queue),
                clock(),
                view_serving(10).await,
                policy(),
            ),
            Arc::new(rooms),
            Arc::new(admission),
        )
    }

    /// The store finds `ticket` as drawn, still waiting (no step admitted it).
    fn finding_waiting(queue: &mut MockQueueRepository, ticket: &QueueTicket) {
        let stored = ticket.clone();
        queue
            .expect_find()
            .returning(move |_| Ok(Some(stored.clone())));
    }

    #[tokio::test]
    async fn a_room_unknown_here_is_read_from_the_store_and_an_unknown_one_is_not_found() {
        let mut rooms = MockRoomRepository::new();
        rooms.expect_find().returning(|id| {
            Ok((id == &gala_id()).then(|| Versioned::new(gala(None), Version::new(1))))
        });
        let drawn = QueueTicket::waiting(
            concert_domain::TicketNo::new(gala_line().start().get() + 1).expect("a ticket"),
            user(),
            NOW,
        );
        let mut queue = MockQueueRepository::new();
        let stored = drawn.clone();
        queue
            .expect_save_join()
            .withf(|write| write.line == gala_line() && write.version == Version::ABSENT)
            .times(1)
            .returning(move |_| Ok(Written::Done(stored.clone())));
        finding_waiting(&mut queue, &drawn);
        let issuer = issuer_with_rooms(queue, signer_expecting(claims_of(&drawn), 1), rooms).await;

        let issued = issuer.execute(user(), &gala_id()).await.expect("issued");
        assert!(issued.created);
        assert_eq!(issued.status.position, Some(1), "the first of its own line");
        assert!(
            issuer.access.lines.of_room(&gala_id()).is_some(),
            "known here now"
        );

        let nowhere = RoomId::parse("nowhere").expect("an id");
        assert!(matches!(
            issuer.execute(user(), &nowhere).await,
            Err(IssueQueueTokenError::RoomNotFound)
        ));
    }

    #[tokio::test]
    async fn before_the_opening_a_newcomer_gets_an_entry_of_the_pre_queue_and_keeps_it() {
        let opens_at = NOW + Duration::seconds(12);
        let mut queue = MockQueueRepository::new();
        let mut answers = vec![
            crate::ports::PreQueueJoined::Done(entry(7)),
            crate::ports::PreQueueJoined::Stale,
        ]
        .into_iter();
        queue
            .expect_save_pre_queue_join()
            .withf(|write| write.line == gala_line() && write.user == user())
            .times(2)
            .returning(move |_| Ok(answers.next().expect("two joins")));
        queue
            .expect_load_pre_queue()
            .with(eq(user()), eq(gala_line()))
            .times(1)
            .returning(|_, _| Ok(Some(entry(7))));
        queue.expect_save_join().never();
        let claims = TokenClaims {
            user: user(),
            ticket: entry(7).entry,
            issued_at: entry(7).issued_at,
        };
        let issuer = issuer_with_rooms(
            queue,
            signer_expecting(claims, 2),
            MockRoomRepository::new(),
        )
        .await;
        issuer.access.lines.note_room(&gala(Some(opens_at)));

        let first = issuer.execute(user(), &gala_id()).await.expect("first");
        let again = issuer.execute(user(), &gala_id()).await.expect("again");

        assert!(first.created && !again.created);
        assert_eq!(first.token, again.token);
        assert!(first.status.pre_queue);
        assert_eq!(first.status.position, None);
        assert_eq!(first.status.opens_at, Some(opens_at));
        assert_eq!(first.status.retry_after_seconds, Some(12));
    }

    #[tokio::test]
    async fn a_newcomer_who_meets_the_opening_joins_the_line_instead() {
        let mut queue = MockQueueRepository::new();
        queue
            .expect_save_pre_queue_join()
            .times(1)
            .returning(|_| Ok(crate::ports::PreQueueJoined::Opened));
        let drawn = QueueTicket::waiting(
            concert_domain::TicketNo::new(gala_line().start().get() + 41).expect("a ticket"),
            user(),
            NOW,
        );
        let stored = drawn.clone();
        queue
            .expect_save_join()
            .withf(|write| write.line == gala_line())
            .times(1)
            .returning(move |_| Ok(Written::Done(stored.clone())));
        finding_waiting(&mut queue, &drawn);
        let issuer = issuer_with_rooms(
            queue,
            signer_expecting(claims_of(&drawn), 1),
            MockRoomRepository::new(),
        )
        .await;
        issuer
            .access
            .lines
            .note_room(&gala(Some(NOW - Duration::seconds(1))));

        let issued = issuer.execute(user(), &gala_id()).await.expect("issued");

        assert!(issued.created && !issued.status.pre_queue);
    }

    #[tokio::test]
    async fn a_closed_room_turns_newcomers_away_and_hands_live_tokens_back() {
        let closed = Room::new(RoomId::default_room(), 5, RoomState::Closed).expect("a room");
        let mut queue = MockQueueRepository::new();
        queue
            .expect_load_live()
            .times(1)
            .returning(|_, _| Ok(live(None, PLACE_VERSION)));
        queue.expect_save_join().never();
        let issuer = issuer(queue, MockTokenSigner::new()).await;
        issuer.access.lines.default_line().note_room(closed.clone());
        let refused = issuer.execute(user(), &RoomId::default_room()).await;
        assert!(matches!(refused, Err(IssueQueueTokenError::RoomClosed)));

        let waiting = waiting_ticket(14);
        let mut queue = MockQueueRepository::new();
        queue
            .expect_load_live()
            .times(1)
            .returning(move |_, _| Ok(live(Some(waiting.clone()), PLACE_VERSION)));
        queue.expect_save_join().never();
        let issuer = issuer_over_line(queue, 3, 2, admitting_soon(0)).await;
        issuer.access.lines.default_line().note_room(closed);
        let issued = issuer
            .execute(user(), &RoomId::default_room())
            .await
            .expect("handed back");
        assert!(!issued.created);
        assert_eq!(issued.status.status, TicketStatus::Waiting);
    }

    #[tokio::test]
    async fn a_newcomer_the_step_did_not_admit_waits_as_usual() {
        let drawn = waiting_ticket(14);
        let mut queue = MockQueueRepository::new();
        draws_over(&mut queue, Version::ABSENT, &drawn);
        let still = drawn.clone();
        queue
            .expect_find()
            .times(1)
            .returning(move |_| Ok(Some(still.clone())));

        let issued = issuer_over_line(queue, 0, 0, admitting_soon(1))
            .await
            .execute(user(), &RoomId::default_room())
            .await
            .expect("issued");

        assert_eq!(issued.status.status, TicketStatus::Waiting);
    }

    #[tokio::test]
    async fn no_step_is_asked_for_when_people_wait_or_every_place_is_taken() {
        for (waiting, active) in [(1, 0), (0, u64::from(policy().max_active))] {
            let drawn = waiting_ticket(14);
            let mut queue = MockQueueRepository::new();
            draws_over(&mut queue, Version::ABSENT, &drawn);
            queue.expect_find().never();

            let issued = issuer_over_line(queue, waiting, active, admitting_soon(0))
                .await
                .execute(user(), &RoomId::default_room())
                .await
                .expect("issued");

            assert_eq!(issued.status.status, TicketStatus::Waiting);
        }
    }

    #[tokio::test]
    async fn a_first_join_draws_a_number_over_the_absent_place_without_a_load() {
        let drawn = waiting_ticket(14);
        let mut queue = MockQueueRepository::new();
        queue.expect_load_live().never();
        draws_over(&mut queue, Version::ABSENT, &drawn);
        queue.expect_end().never();

        let issued = issue_drawn(queue, &drawn).await;

        assert!(issued.created);
        assert_eq!(issued.status.position, Some(4), "ticket 14 − serving 10");
    }

    #[tokio::test]
    async fn a_user_with_a_place_but_no_live_ticket_draws_over_the_version_read() {
        let drawn = waiting_ticket(14);
        let mut queue = loading(None);
        draws_over(&mut queue, PLACE_VERSION, &drawn);
        queue.expect_end().never();

        let issued = issue_drawn(queue, &drawn).await;

        assert!(issued.created);
        assert_eq!(
            issued.token,
            format!("{}.14.{}", user(), drawn.issued_at().unix_timestamp())
        );
        assert_eq!(issued.status.status, TicketStatus::Waiting);
        assert_eq!(issued.status.position, Some(4), "ticket 14 − serving 10");
        assert!(issued.status.retry_after_seconds.is_some());
        assert!(issued.status.estimated_wait_seconds.is_some());
        assert_eq!(issued.status.active_until, None);
    }

    #[tokio::test]
    async fn a_live_waiting_ticket_is_handed_back_and_no_number_is_drawn() {
        let ticket = waiting_ticket(14);
        let mut queue = loading(Some(ticket.clone()));
        queue.expect_end().never();

        let issued = issuer(queue, signer_expecting(claims_of(&ticket), 1))
            .await
            .execute(user(), &RoomId::default_room())
            .await
            .expect("issued");

        assert!(!issued.created);
        assert_eq!(issued.status.status, TicketStatus::Waiting);
        assert_eq!(issued.status.position, Some(4));
    }

    #[tokio::test]
    async fn asking_again_with_a_live_active_ticket_returns_the_same_token_and_draws_nothing() {
        let ticket = active_ticket(14, Duration::seconds(30));
        let mut queue = refusing_first_joins(2);
        let stored = ticket.clone();
        queue
            .expect_load_live()
            .with(eq(user()), eq(LineNo::DEFAULT))
            .times(2)
            .returning(move |_, _| Ok(live(Some(stored.clone()), PLACE_VERSION)));
        queue.expect_end().never();
        let use_case = issuer(queue, signer_expecting(claims_of(&ticket), 2)).await;

        let first = use_case
            .execute(user(), &RoomId::default_room())
            .await
            .expect("first");
        let again = use_case
            .execute(user(), &RoomId::default_room())
            .await
            .expect("again");

        assert!(!first.created);
        assert!(!again.created);
        assert_eq!(again.token, first.token);
        assert_eq!(again.status.status, TicketStatus::Active);
        assert_eq!(again.status.position, None);
        assert_eq!(again.status.active_until, ticket.active_until());
    }

    /// An active ticket past `deadline`: ended as read active, then a new number drawn over the
    /// version read, in that order, whatever the end answers.
    async fn overdue_ticket_is_ended_then_a_new_number_drawn(
        overdue: QueueTicket,
        end_answer: Written<()>,
    ) {
        let drawn = waiting_ticket(15);
        let mut order = Sequence::new();
        let mut queue = loading(Some(overdue.clone()));
        queue
            .expect_end()
            .with(
                eq(TicketEnd {
                    ticket: overdue.ticket(),
                    read_as: TicketStatus::Active,
                    reason: overdue.end_reason_at(NOW, &policy()).expect("overdue"),
                }),
                eq(NOW),
            )
            .times(1)
            .in_sequence(&mut order)
            .returning(move |_, _| Ok(end_answer.clone()));
        let stored = drawn.clone();
        queue
            .expect_save_join()
            .with(eq(join_over(PLACE_VERSION)))
            .times(1)
            .in_sequence(&mut order)
            .returning(move |_| Ok(Written::Done(stored.clone())));

        let issued = issuer(queue, signer_expecting(claims_of(&drawn), 1))
            .await
            .execute(user(), &RoomId::default_room())
            .await
            .expect("issued");

        assert!(issued.created);
        assert_eq!(issued.status.status, TicketStatus::Waiting);
        assert_eq!(issued.status.position, Some(5), "ticket 15 − serving 10");
    }

    #[tokio::test]
    async fn an_active_ticket_past_its_active_deadline_is_ended_and_the_user_joins_again() {
        overdue_ticket_is_ended_then_a_new_number_drawn(
            active_ticket_until(14, NOW, Duration::seconds(1)),
            Written::Done(()),
        )
        .await;
    }

    #[tokio::test]
    async fn an_idle_active_ticket_is_ended_and_the_user_joins_again() {
        overdue_ticket_is_ended_then_a_new_number_drawn(
            active_ticket(14, policy().idle_deadline_after_activity()),
            Written::Done(()),
        )
        .await;
    }

    #[tokio::test]
    async fn an_overdue_ticket_ended_meanwhile_by_another_step_still_lets_the_user_join() {
        overdue_ticket_is_ended_then_a_new_number_drawn(
            active_ticket_until(14, NOW, Duration::seconds(1)),
            Written::Stale,
        )
        .await;
    }

    #[tokio::test]
    async fn a_stale_join_loads_again_and_hands_back_the_ticket_a_concurrent_request_drew() {
        let theirs = waiting_ticket(15);
        let mut loads = vec![
            live(None, PLACE_VERSION),
            live(Some(theirs.clone()), Version::new(8)),
        ]
        .into_iter();
        let mut queue = refusing_first_joins(1);
        queue
            .expect_load_live()
            .with(eq(user()), eq(LineNo::DEFAULT))
            .times(2)
            .returning(move |_, _| Ok(loads.next().expect("two loads")));
        queue
            .expect_save_join()
            .with(eq(join_over(PLACE_VERSION)))
            .times(1)
            .returning(|_| Ok(Written::Stale));
        queue.expect_end().never();

        let issued = issuer(queue, signer_expecting(claims_of(&theirs), 1))
            .await
            .execute(user(), &RoomId::default_room())
            .await
            .expect("issued");

        assert!(!issued.created, "the concurrent request drew the number");
        assert_eq!(issued.status.position, Some(5));
    }

    #[tokio::test]
    async fn a_stale_join_draws_again_over_the_version_read_again() {
        let drawn = waiting_ticket(16);
        let mut versions = vec![PLACE_VERSION, Version::new(8)].into_iter();
        let mut queue = refusing_first_joins(1);
        queue
            .expect_load_live()
            .times(2)
            .returning(move |_, _| Ok(live(None, versions.next().expect("two loads"))));
        let mut order = Sequence::new();
        queue
            .expect_save_join()
            .with(eq(join_over(PLACE_VERSION)))
            .times(1)
            .in_sequence(&mut order)
            .returning(|_| Ok(Written::Stale));
        let stored = drawn.clone();
        queue
            .expect_save_join()
            .with(eq(join_over(Version::new(8))))
            .times(1)
            .in_sequence(&mut order)
            .returning(move |_| Ok(Written::Done(stored.clone())));

        let issued = issuer(queue, signer_expecting(claims_of(&drawn), 1))
            .await
            .execute(user(), &RoomId::default_room())
            .await
            .expect("issued");

        assert!(issued.created);
        assert_eq!(issued.status.position, Some(6));
    }

    #[tokio::test]
    async fn a_join_that_stays_stale_gives_up_as_unavailable() {
        let attempts = usize::try_from(MAX_ATTEMPTS).expect("attempts");
        // The presumed first join is the first of the attempts.
        let mut queue = refusing_first_joins(1);
        queue
            .expect_load_live()
            .times(attempts - 1)
            .returning(|_, _| Ok(live(None, PLACE_VERSION)));
        queue
            .expect_save_join()
            .with(eq(join_over(PLACE_VERSION)))
            .times(attempts - 1)
            .returning(|_| Ok(Written::Stale));
        queue.expect_end().never();
        let mut signer = MockTokenSigner::new();
        signer.expect_sign().never();

        let refused = issuer(queue, signer)
            .await
            .execute(user(), &RoomId::default_room())
            .await;

        assert!(matches!(
            refused,
            Err(IssueQueueTokenError::Repository(
                RepositoryError::Unavailable(_)
            ))
        ));
    }

    #[tokio::test]
    async fn a_failed_load_is_an_error_and_no_number_is_drawn() {
        let mut queue = refusing_first_joins(1);
        queue
            .expect_load_live()
            .times(1)
            .returning(|_, _| Err(RepositoryError::Unavailable("down".into())));
        queue.expect_end().never();
        let mut signer = MockTokenSigner::new();
        signer.expect_sign().never();

        let refused = issuer(queue, signer)
            .await
            .execute(user(), &RoomId::default_room())
            .await;

        assert!(matches!(
            refused,
            Err(IssueQueueTokenError::Repository(
                RepositoryError::Unavailable(_)
            ))
        ));
    }
}
