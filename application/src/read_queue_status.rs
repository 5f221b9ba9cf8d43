//! Use case: a queue token's status, position and expected wait. The hottest path of the service:
//! every waiting user polls it, so a waiting ticket is answered from the [`QueueView`] alone.

use concert_domain::queue::estimated_wait_seconds;
use concert_domain::{EndReason, QueuePolicy, QueueTicket, Room, TicketNo, TicketStatus};
use time::OffsetDateTime;

use crate::ports::{RepositoryError, TokenClaims};
use crate::queue_access::QueueAccess;
use crate::queue_view::{Placement, QueueView};

/// What a client is told about its place in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStatusView {
    pub status: TicketStatus,
    /// 1 for the first in line; only while waiting.
    pub position: Option<u64>,
    pub estimated_wait_seconds: Option<u64>,
    /// Only while active.
    pub active_until: Option<OffsetDateTime>,
    /// When a waiting client should poll again.
    pub retry_after_seconds: Option<u32>,
    /// Why the ticket ended; only once expired (none for tickets ended before reasons were kept).
    pub reason: Option<EndReason>,
    /// Whether the token waits for its room's opening (its status is waiting, with no position
    /// yet), and when that is (when this instance knows).
    pub pre_queue: bool,
    pub opens_at: Option<OffsetDateTime>,
}

impl QueueStatusView {
    pub(crate) fn waiting(position: u64, view: &QueueView) -> Self {
        Self {
            status: TicketStatus::Waiting,
            position: Some(position),
            estimated_wait_seconds: Some(estimated_wait_seconds(
                position,
                view.admissions_per_second(),
            )),
            active_until: None,
            retry_after_seconds: Some(view.policy().retry_after_seconds(position)),
            reason: None,
            pre_queue: false,
            opens_at: None,
        }
    }

    pub(crate) fn active(active_until: Option<OffsetDateTime>) -> Self {
        Self {
            status: TicketStatus::Active,
            position: None,
            estimated_wait_seconds: None,
            active_until,
            retry_after_seconds: None,
            reason: None,
            pre_queue: false,
            opens_at: None,
        }
    }

    pub(crate) fn expired(reason: Option<EndReason>) -> Self {
        Self {
            status: TicketStatus::Expired,
            position: None,
            estimated_wait_seconds: None,
            active_until: None,
            retry_after_seconds: None,
            reason,
            pre_queue: false,
            opens_at: None,
        }
    }

    /// A token in the pre-queue of `room` (no position until the opening). Before the view has
    /// read its room, it asks the client back in a second.
    pub(crate) fn pre_queue(room: Option<&Room>, now: OffsetDateTime) -> Self {
        Self {
            status: TicketStatus::Waiting,
            position: None,
            estimated_wait_seconds: None,
            active_until: None,
            retry_after_seconds: Some(
                room.map_or(1, |room| room.pre_queue_retry_after_seconds(now)),
            ),
            reason: None,
            pre_queue: true,
            opens_at: room.and_then(Room::opening).map(|opening| opening.at),
        }
    }

    /// The view of a ticket read from the database at `now`.
    pub(crate) fn of_ticket(
        ticket: &QueueTicket,
        now: OffsetDateTime,
        policy: &QueuePolicy,
        view: &QueueView,
    ) -> Self {
        match ticket.status_at(now, policy) {
            TicketStatus::Waiting => {
                Self::waiting(view.position_of(ticket.ticket()).unwrap_or(1), view)
            }
            TicketStatus::Active => Self::active(ticket.active_until()),
            TicketStatus::Expired => Self::expired(ticket.end_reason_at(now, policy)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadQueueStatusError {
    #[error("the queue token is not valid")]
    TokenInvalid,
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

pub struct ReadQueueStatus {
    access: QueueAccess,
}

impl ReadQueueStatus {
    pub fn new(access: QueueAccess) -> Self {
        Self { access }
    }

    #[tracing::instrument(name = "read_queue_status", skip_all)]
    pub async fn execute(&self, token: &str) -> Result<QueueStatusView, ReadQueueStatusError> {
        let claims = self
            .access
            .signer
            .verify(token)
            .map_err(|_| ReadQueueStatusError::TokenInvalid)?;
        self.status_of(&claims).await
    }

    async fn status_of(
        &self,
        claims: &TokenClaims,
    ) -> Result<QueueStatusView, ReadQueueStatusError> {
        let view = self.access.lines.of_ticket(claims.ticket);
        let now = self.access.clock.now();
        view.readable(now)?;
        let number = match view.placement(claims.ticket) {
            Placement::Line(number) => number,
            Placement::PreQueue => {
                return Ok(QueueStatusView::pre_queue(view.room().as_ref(), now));
            }
            Placement::Ended(reason) => return Ok(QueueStatusView::expired(reason)),
        };
        if let Some(ended) = view.ended_while_waiting(number) {
            return Ok(QueueStatusView::expired(ended.reason));
        }
        if let Some(position) = view.position_of(number) {
            self.note_waiting_poll(number, &view);
            return Ok(QueueStatusView::waiting(position, &view));
        }
        // A ticket stored for another user than the token names is not this token's ticket.
        let Some(ticket) = self
            .access
            .queue
            .find(number)
            .await?
            .filter(|ticket| ticket.user() == claims.user)
        else {
            return Err(ReadQueueStatusError::TokenInvalid);
        };
        match ticket.status_at(now, &self.access.policy) {
            TicketStatus::Active => self.access.record_activity(&ticket, now).await?,
            TicketStatus::Waiting => self.note_waiting_poll(number, &view),
            TicketStatus::Expired => {}
        }
        Ok(QueueStatusView::of_ticket(
            &ticket,
            now,
            &self.access.policy,
            &view,
        ))
    }

    /// A waiting user who polls keeps their place under the room's waiting rule.
    fn note_waiting_poll(&self, ticket: TicketNo, view: &QueueView) {
        let policy = view.policy();
        if policy.waiting_idle.is_some() {
            self.access
                .polls
                .note(ticket, self.access.clock.now(), &policy);
        }
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::queue::ServingCounter;
    use time::Duration;

    use std::sync::Arc;

    use super::*;
    use crate::ports::{
        EndedWaiting, InvalidToken, MockQueueRepository, MockTokenSigner, QueueSnapshot, Written,
    };
    use crate::test_support::{
        NOW, active_ticket, active_ticket_until, claims, clock, held_by, other_user, policy,
        queue_holding, queue_holding_answering, signer_reading, ticket_no, view_serving,
    };

    /// A repository fake that must never be read: a waiting user's poll costs no database trip.
    fn untouched_queue() -> MockQueueRepository {
        let mut queue = MockQueueRepository::new();
        queue.expect_find().never();
        queue.expect_record_activity().never();
        queue
    }

    async fn read(
        queue: MockQueueRepository,
        serving: i64,
        claims: TokenClaims,
    ) -> QueueStatusView {
        ReadQueueStatus::new(QueueAccess::new(
            Arc::new(signer_reading(claims)),
            Arc::new(queue),
            clock(),
            view_serving(serving).await,
            policy(),
        ))
        .execute("token")
        .await
        .expect("status")
    }

    #[tokio::test]
    async fn a_pre_queue_token_is_answered_from_the_view_then_by_the_place_it_got_at_the_opening() {
        use concert_domain::{LineNo, Opening, Room, RoomId, RoomState};

        let line = LineNo::new(2).expect("a line");
        let entry = TicketNo::new(line.pre_queue_start() + 8).expect("an entry");
        let place = TicketNo::new(line.start().get() + 3).expect("a place");
        let opens_at = NOW + Duration::seconds(20);
        let gathering = Room::new(RoomId::parse("gala").expect("an id"), 1, RoomState::Open)
            .expect("a room")
            .on_line(line)
            .with_opening(Some(Opening {
                at: opens_at,
                shuffle: true,
                done: false,
            }));
        let mut queue = MockQueueRepository::new();
        queue.expect_find().never();
        queue.expect_snapshot().returning(move |_| {
            Ok(QueueSnapshot {
                serving: line.start(),
                ..QueueSnapshot::default()
            })
        });
        queue.expect_ended_waiting().returning(|_| Ok(Vec::new()));
        queue.expect_pre_queue_outcomes().returning(move |_| {
            Ok(vec![crate::ports::PreQueueOutcome {
                entry,
                place: Some(place),
                ended: None,
            }])
        });
        let queue: Arc<dyn crate::ports::QueueRepository> = Arc::new(queue);
        let access = QueueAccess::new(
            Arc::new(signer_reading(TokenClaims {
                user: crate::test_support::user(),
                ticket: entry,
                issued_at: NOW,
            })),
            Arc::clone(&queue),
            clock(),
            QueueView::new(queue, policy()),
            policy(),
        );
        access.lines.note_room(&gathering);
        let use_case = ReadQueueStatus::new(access);

        let before = use_case.execute("token").await.expect("status");
        assert!(before.pre_queue);
        assert_eq!(before.opens_at, Some(opens_at));
        assert_eq!(before.retry_after_seconds, Some(20));

        let view = use_case.access.lines.of_line(line);
        view.note_room(gathering.opened());
        view.refresh(NOW).await.expect("refresh");
        let after = use_case.execute("token").await.expect("status");
        assert!(!after.pre_queue);
        assert_eq!(after.position, Some(3), "the place it got, from the view");
    }

    #[tokio::test]
    async fn a_waiting_poll_is_unavailable_while_the_view_cannot_read_the_line() {
        let use_case = ReadQueueStatus::new(QueueAccess::new(
            Arc::new(signer_reading(claims(14))),
            Arc::new(untouched_queue()),
            clock(),
            crate::test_support::view_that_lost_its_line(10).await,
            policy(),
        ));

        let answer = use_case.execute("token").await;

        assert!(
            matches!(
                answer,
                Err(ReadQueueStatusError::Repository(
                    RepositoryError::Unavailable(_)
                ))
            ),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn waiting_ticket_is_answered_from_the_view_without_a_repository_read() {
        let status = read(untouched_queue(), 10, claims(14)).await;

        assert_eq!(status.status, TicketStatus::Waiting);
        assert_eq!(status.position, Some(4));
        assert_eq!(status.retry_after_seconds, Some(1));
        assert!(status.estimated_wait_seconds.is_some());
        assert_eq!(status.active_until, None);
    }

    #[tokio::test]
    async fn under_a_waiting_rule_a_poll_is_noted_without_a_database_trip_and_polls_come_sooner() {
        let view = view_serving(10).await;
        let room = concert_domain::Room::new(
            concert_domain::RoomId::default_room(),
            2,
            concert_domain::RoomState::Open,
        )
        .and_then(|room| {
            room.changed(
                &concert_domain::RoomChange {
                    waiting_idle_seconds: Some(Some(9)),
                    ..concert_domain::RoomChange::default()
                },
                NOW,
            )
        })
        .expect("a room with a waiting rule");
        let access = QueueAccess::new(
            Arc::new(signer_reading(claims(5_000))),
            Arc::new(untouched_queue()),
            clock(),
            view.clone(),
            policy(),
        );
        let use_case = ReadQueueStatus::new(access.clone());

        let unruled = use_case.execute("token").await.expect("status");
        assert_eq!(access.polls.pending(), 0, "no rule: nothing to write");
        assert!(unruled.retry_after_seconds > Some(3));

        view.note_room(room);
        let ruled = use_case.execute("token").await.expect("status");
        assert_eq!(ruled.position, unruled.position);
        assert_eq!(access.polls.pending(), 1, "the poll waits for the batch");
        assert_eq!(ruled.retry_after_seconds, Some(3), "a third of 9 s");
    }

    #[tokio::test]
    async fn position_never_grows_across_refreshes_even_when_a_read_lags() {
        let mut lines = MockQueueRepository::new();
        let mut counters = vec![10, 6, 12].into_iter();
        lines.expect_snapshot().times(3).returning(move |_| {
            Ok(QueueSnapshot {
                serving: ServingCounter::new(counters.next().expect("three reads")),
                ..QueueSnapshot::default()
            })
        });
        lines.expect_ended_waiting().returning(|_| Ok(Vec::new()));
        let view = QueueView::new(Arc::new(lines), policy());
        let use_case = ReadQueueStatus::new(QueueAccess::new(
            Arc::new(signer_reading(claims(14))),
            Arc::new(untouched_queue()),
            clock(),
            view.clone(),
            policy(),
        ));

        let mut positions = Vec::new();
        for second in 0..3 {
            view.refresh(NOW + Duration::seconds(second))
                .await
                .expect("refresh");
            positions.push(use_case.execute("token").await.expect("status").position);
        }

        assert_eq!(positions, vec![Some(4), Some(4), Some(2)]);
    }

    #[tokio::test]
    async fn tickets_that_left_are_answered_expired_and_stop_counting_from_the_view_alone() {
        let mut lines = MockQueueRepository::new();
        lines.expect_snapshot().returning(|_| {
            Ok(QueueSnapshot {
                serving: ServingCounter::new(10),
                ..QueueSnapshot::default()
            })
        });
        lines
            .expect_ended_waiting()
            .with(mockall::predicate::eq(ServingCounter::new(10)))
            .returning(|_| {
                Ok(vec![EndedWaiting {
                    ticket: ticket_no(12),
                    reason: Some(EndReason::Left),
                }])
            });
        let view = QueueView::new(Arc::new(lines), policy());
        view.refresh(NOW).await.expect("refresh");
        let status_of = |ticket| {
            let view = view.clone();
            async move {
                ReadQueueStatus::new(QueueAccess::new(
                    Arc::new(signer_reading(claims(ticket))),
                    Arc::new(untouched_queue()),
                    clock(),
                    view,
                    policy(),
                ))
                .execute("token")
                .await
                .expect("status")
            }
        };

        let left = status_of(12).await;
        assert_eq!(
            (left.status, left.reason, left.position),
            (TicketStatus::Expired, Some(EndReason::Left), None)
        );
        assert_eq!(status_of(14).await.position, Some(3), "12 no longer counts");
        assert_eq!(status_of(11).await.position, Some(1));
    }

    #[tokio::test]
    async fn admitted_ticket_is_read_from_the_repository_as_active_and_stale_activity_recorded() {
        let ticket = active_ticket(14, Duration::seconds(30));
        let status = read(queue_holding(ticket.clone(), 1), 20, claims(14)).await;

        assert_eq!(status.status, TicketStatus::Active);
        assert_eq!(status.active_until, ticket.active_until());
        assert_eq!(status.position, None);
        assert_eq!(status.estimated_wait_seconds, None);
        assert_eq!(
            status.retry_after_seconds, None,
            "Retry-After only while waiting"
        );
    }

    #[tokio::test]
    async fn active_ticket_seen_within_the_resolution_costs_no_activity_write() {
        let ticket = active_ticket(14, Duration::seconds(1));
        let status = read(queue_holding(ticket, 0), 20, claims(14)).await;

        assert_eq!(status.status, TicketStatus::Active);
    }

    #[tokio::test]
    async fn active_ticket_whose_activity_another_request_wrote_first_still_reads_active() {
        let ticket = active_ticket(14, Duration::seconds(30));
        let status = read(
            queue_holding_answering(ticket, 1, Written::Stale),
            20,
            claims(14),
        )
        .await;

        assert_eq!(status.status, TicketStatus::Active);
    }

    #[tokio::test]
    async fn idle_ticket_reads_expired_and_its_poll_does_not_revive_it() {
        let idle = active_ticket(14, policy().idle_deadline_after_activity());
        let status = read(queue_holding(idle, 0), 20, claims(14)).await;

        assert_eq!(status.status, TicketStatus::Expired);
        assert_eq!(status.active_until, None);
        assert_eq!(status.position, None);
        assert_eq!(status.retry_after_seconds, None);
    }

    #[tokio::test]
    async fn ticket_past_its_active_deadline_reads_expired() {
        let ticket = active_ticket_until(14, NOW, Duration::seconds(1));
        let status = read(queue_holding(ticket, 0), 20, claims(14)).await;

        assert_eq!(status.status, TicketStatus::Expired);
        assert_eq!(status.active_until, None);
    }

    #[tokio::test]
    async fn ended_ticket_reads_expired() {
        let mut paid = active_ticket(14, Duration::seconds(30));
        paid.end(EndReason::Paid);
        let status = read(queue_holding(paid, 0), 20, claims(14)).await;

        assert_eq!(status.status, TicketStatus::Expired);
    }

    #[tokio::test]
    async fn altered_token_is_refused_without_a_repository_read() {
        let mut signer = MockTokenSigner::new();
        signer
            .expect_verify()
            .times(1)
            .returning(|_| Err(InvalidToken));
        let use_case = ReadQueueStatus::new(QueueAccess::new(
            Arc::new(signer),
            Arc::new(untouched_queue()),
            clock(),
            view_serving(20).await,
            policy(),
        ));

        let refused = use_case.execute("altered").await;

        assert!(matches!(refused, Err(ReadQueueStatusError::TokenInvalid)));
    }

    #[tokio::test]
    async fn ticket_stored_for_another_user_is_refused_and_not_touched() {
        let theirs = held_by(&active_ticket(14, Duration::seconds(30)), other_user());
        let use_case = ReadQueueStatus::new(QueueAccess::new(
            Arc::new(signer_reading(claims(14))),
            Arc::new(queue_holding(theirs, 0)),
            clock(),
            view_serving(20).await,
            policy(),
        ));

        let refused = use_case.execute("token").await;

        assert!(matches!(refused, Err(ReadQueueStatusError::TokenInvalid)));
    }
}
