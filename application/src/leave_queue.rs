//! Use case: a user leaves the line with their queue token. A waiting ticket's place, or an
//! active ticket's slot, is freed at once, and the token is expired from then on (`LEFT`).

use std::sync::Arc;

use concert_domain::queue::leave;
use concert_domain::{EndReason, Leave};

use crate::idempotency::{Step, until_written};
use crate::ports::{AdmissionTrigger, PreQueueEnd, RepositoryError, TicketEnd};
use crate::queue_access::QueueAccess;
use crate::queue_metrics;
use crate::queue_view::Placement;

#[derive(Debug, thiserror::Error)]
pub enum LeaveQueueError {
    /// Missing, unparseable, altered, or naming a ticket the queue does not know
    /// (`401 TOKEN_INVALID`).
    #[error("the queue token is not valid")]
    TokenInvalid,
    /// The ticket had already ended for another reason than leaving (`401 TOKEN_EXPIRED`).
    #[error("the queue token has expired")]
    TokenExpired,
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

pub struct LeaveQueue {
    access: QueueAccess,
    admission: Arc<dyn AdmissionTrigger>,
}

impl LeaveQueue {
    pub fn new(access: QueueAccess, admission: Arc<dyn AdmissionTrigger>) -> Self {
        Self { access, admission }
    }

    /// Ends the token's ticket (or its entry in a room's pre-queue), `LEFT`. Leaving twice is the
    /// same as leaving once.
    #[tracing::instrument(name = "leave_queue", skip_all)]
    pub async fn execute(&self, token: &str) -> Result<(), LeaveQueueError> {
        let access = &self.access;
        let claims = access
            .signer
            .verify(token)
            .map_err(|_| LeaveQueueError::TokenInvalid)?;
        let now = access.clock.now();
        let freed = until_written(|| async {
            let view = access.lines.of_ticket(claims.ticket);
            let number = match view.placement(claims.ticket) {
                Placement::Line(number) => number,
                Placement::Ended(reason) => return left_before(reason),
                Placement::PreQueue => {
                    match access
                        .queue
                        .end_pre_queue(claims.ticket, claims.user, EndReason::Left, now)
                        .await?
                    {
                        PreQueueEnd::Ended => {
                            view.note_pre_queue_end(claims.ticket, EndReason::Left);
                            queue_metrics::tickets_ended(
                                &access.lines.room_of(claims.ticket),
                                EndReason::Left,
                                1,
                            );
                            tracing::info!("a user left the pre-queue");
                            return Ok(Step::Done(None));
                        }
                        PreQueueEnd::Placed(number) => number,
                        PreQueueEnd::AlreadyEnded(reason) => return left_before(reason),
                        PreQueueEnd::Missing => return Err(LeaveQueueError::TokenInvalid),
                        PreQueueEnd::Stale => return Ok(Step::Stale),
                    }
                }
            };
            let ticket = access
                .queue
                .find(number)
                .await?
                .filter(|ticket| ticket.user() == claims.user)
                .ok_or(LeaveQueueError::TokenInvalid)?;
            match leave(&ticket, now, &access.policy) {
                Leave::End(_) => {
                    let end = TicketEnd {
                        ticket: ticket.ticket(),
                        read_as: ticket.stored_status(),
                        reason: EndReason::Left,
                    };
                    let written = access.queue.end(&end, now).await?;
                    Ok(Step::from(written).map(|()| Some(end)))
                }
                Leave::AlreadyLeft => Ok(Step::Done(None)),
                Leave::Ended(_) => Err(LeaveQueueError::TokenExpired),
            }
        })
        .await?;
        if let Some(end) = freed {
            access.freed(&end, self.admission.as_ref());
            tracing::info!(
                ticket = end.ticket.get(),
                was = end.read_as.as_str(),
                "a user left the line"
            );
        }
        Ok(())
    }
}

/// A leave of an entry that ended before: done if it was a leave, else the token has expired.
fn left_before<T>(reason: Option<EndReason>) -> Result<Step<Option<T>>, LeaveQueueError> {
    if reason == Some(EndReason::Left) {
        Ok(Step::Done(None))
    } else {
        Err(LeaveQueueError::TokenExpired)
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::{QueueTicket, TicketStatus, UserId};
    use mockall::predicate::eq;
    use time::Duration;
    use uuid::Uuid;

    use super::*;
    use crate::ports::{
        InvalidToken, MockAdmissionTrigger, MockQueueRepository, MockTokenSigner, Written,
    };
    use crate::test_support::{
        NOW, active_ticket, claims, clock, held_by, policy, ticket_no, view_serving, waiting_ticket,
    };

    const TOKEN: &str = "token";

    fn signer() -> MockTokenSigner {
        let mut signer = MockTokenSigner::new();
        signer.expect_verify().returning(|token| match token {
            TOKEN => Ok(claims(30)),
            _ => Err(InvalidToken),
        });
        signer
    }

    fn finding(ticket: Option<QueueTicket>) -> MockQueueRepository {
        let mut queue = MockQueueRepository::new();
        queue
            .expect_find()
            .with(eq(ticket_no(30)))
            .returning(move |_| Ok(ticket.clone()));
        queue
    }

    async fn leave_queue(
        queue: MockQueueRepository,
        admission: MockAdmissionTrigger,
    ) -> LeaveQueue {
        let access = QueueAccess::new(
            Arc::new(signer()),
            Arc::new(queue),
            clock(),
            view_serving(20).await,
            policy(),
        );
        LeaveQueue::new(access, Arc::new(admission))
    }

    fn no_admission() -> MockAdmissionTrigger {
        let mut admission = MockAdmissionTrigger::new();
        admission.expect_request_admission().never();
        admission
    }

    fn ending(queue: &mut MockQueueRepository, read_as: TicketStatus, answers: Vec<Written<()>>) {
        let mut answers = answers.into_iter();
        queue
            .expect_end()
            .with(
                eq(TicketEnd {
                    ticket: ticket_no(30),
                    read_as,
                    reason: EndReason::Left,
                }),
                eq(NOW),
            )
            .times(answers.len())
            .returning(move |_, _| Ok(answers.next().expect("an answer")));
    }

    #[tokio::test]
    async fn a_waiting_user_leaves_and_their_place_stops_counting_at_once() {
        let mut queue = finding(Some(waiting_ticket(30)));
        ending(&mut queue, TicketStatus::Waiting, vec![Written::Done(())]);
        let use_case = leave_queue(queue, no_admission()).await;
        assert_eq!(
            use_case
                .access
                .lines
                .default_line()
                .position_of(ticket_no(31)),
            Some(11)
        );

        use_case.execute(TOKEN).await.expect("left");

        let ended = use_case
            .access
            .lines
            .default_line()
            .ended_while_waiting(ticket_no(30));
        assert_eq!(ended.and_then(|ended| ended.reason), Some(EndReason::Left));
        assert_eq!(
            use_case
                .access
                .lines
                .default_line()
                .position_of(ticket_no(31)),
            Some(10)
        );
    }

    #[tokio::test]
    async fn an_active_user_leaves_and_the_next_in_line_is_admitted_soon() {
        let mut queue = finding(Some(active_ticket(30, Duration::seconds(1))));
        ending(&mut queue, TicketStatus::Active, vec![Written::Done(())]);
        let mut admission = MockAdmissionTrigger::new();
        admission
            .expect_request_admission()
            .times(1)
            .return_const(());

        leave_queue(queue, admission)
            .await
            .execute(TOKEN)
            .await
            .expect("left");
    }

    #[tokio::test]
    async fn a_ticket_changed_meanwhile_is_read_and_decided_again() {
        let mut queue = finding(Some(waiting_ticket(30)));
        ending(
            &mut queue,
            TicketStatus::Waiting,
            vec![Written::Stale, Written::Done(())],
        );
        leave_queue(queue, no_admission())
            .await
            .execute(TOKEN)
            .await
            .expect("left on the second attempt");
    }

    #[tokio::test]
    async fn leaving_twice_is_leaving_once() {
        let mut left = waiting_ticket(30);
        left.end(EndReason::Left);
        let mut queue = finding(Some(left));
        queue.expect_end().never();
        leave_queue(queue, no_admission())
            .await
            .execute(TOKEN)
            .await
            .expect("already left");
    }

    #[tokio::test]
    async fn a_ticket_ended_otherwise_is_expired() {
        let mut paid = active_ticket(30, Duration::seconds(1));
        paid.end(EndReason::Paid);
        let mut queue = finding(Some(paid));
        queue.expect_end().never();
        let refused = leave_queue(queue, no_admission())
            .await
            .execute(TOKEN)
            .await;
        assert!(matches!(refused, Err(LeaveQueueError::TokenExpired)));
    }

    #[tokio::test]
    async fn a_bad_token_or_someone_elses_ticket_is_invalid() {
        let mut queue = MockQueueRepository::new();
        queue.expect_find().never();
        let refused = leave_queue(queue, no_admission())
            .await
            .execute("forged")
            .await;
        assert!(matches!(refused, Err(LeaveQueueError::TokenInvalid)));

        let stranger = UserId::from_uuid(Uuid::from_u128(99));
        let mut queue = finding(Some(held_by(&waiting_ticket(30), stranger)));
        queue.expect_end().never();
        let refused = leave_queue(queue, no_admission())
            .await
            .execute(TOKEN)
            .await;
        assert!(matches!(refused, Err(LeaveQueueError::TokenInvalid)));
    }

    #[tokio::test]
    async fn a_pre_queue_token_leaves_its_entry_once_and_one_placed_meanwhile_leaves_its_place() {
        use crate::ports::PreQueueEnd;

        let line = concert_domain::LineNo::new(2).expect("a line");
        let entry = ticket_no(line.pre_queue_start() + 4);
        let place = ticket_no(line.start().get() + 1);
        let mut signer = MockTokenSigner::new();
        signer.expect_verify().returning(move |_| {
            Ok(crate::ports::TokenClaims {
                user: crate::test_support::user(),
                ticket: entry,
                issued_at: NOW,
            })
        });
        let mut queue = MockQueueRepository::new();
        let mut answers = vec![
            PreQueueEnd::Ended,
            PreQueueEnd::AlreadyEnded(Some(EndReason::Left)),
            PreQueueEnd::Placed(place),
        ]
        .into_iter();
        queue
            .expect_end_pre_queue()
            .withf(move |ended, _, reason, _| *ended == entry && *reason == EndReason::Left)
            .times(3)
            .returning(move |_, _, _, _| Ok(answers.next().expect("three leaves")));
        let placed = QueueTicket::waiting(place, crate::test_support::user(), NOW);
        queue
            .expect_find()
            .with(eq(place))
            .returning(move |_| Ok(Some(placed.clone())));
        queue
            .expect_end()
            .withf(move |end, _| end.ticket == place && end.reason == EndReason::Left)
            .times(1)
            .returning(|_, _| Ok(Written::Done(())));
        let use_case = LeaveQueue::new(
            QueueAccess::new(
                Arc::new(signer),
                Arc::new(queue),
                clock(),
                view_serving(20).await,
                policy(),
            ),
            Arc::new(MockAdmissionTrigger::new()),
        );

        use_case.execute(TOKEN).await.expect("left the pre-queue");
        assert_eq!(
            use_case.access.lines.of_line(line).placement(entry),
            crate::queue_view::Placement::Ended(Some(EndReason::Left)),
            "this instance knows at once"
        );
        // Another instance, whose view has not read the end yet, asks the store again.
        let fresh = LeaveQueue::new(
            QueueAccess::new(
                use_case.access.signer.clone(),
                use_case.access.queue.clone(),
                clock(),
                view_serving(20).await,
                policy(),
            ),
            Arc::new(MockAdmissionTrigger::new()),
        );
        fresh
            .execute(TOKEN)
            .await
            .expect("leaving twice is leaving once");
        fresh
            .execute(TOKEN)
            .await
            .expect("a placed entry leaves its place");
    }
}
