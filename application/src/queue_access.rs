//! What the queue's use cases share: the token signer, the lines in the database, this
//! instance's rooms and views of their lines, the clock and the queue policy.

use std::sync::Arc;

use concert_domain::{QueuePolicy, QueueTicket, TicketStatus};
use time::OffsetDateTime;

use crate::ports::{
    ActivityWrite, AdmissionTrigger, Clock, EndedWaiting, QueueRepository, RepositoryError,
    TicketEnd, TokenSigner,
};
use crate::queue_metrics;
use crate::room_lines::RoomLines;
use crate::waiting_polls::WaitingPolls;

#[derive(Clone)]
pub struct QueueAccess {
    pub signer: Arc<dyn TokenSigner>,
    pub queue: Arc<dyn QueueRepository>,
    pub clock: Arc<dyn Clock>,
    pub lines: RoomLines,
    pub policy: QueuePolicy,
    /// Waiting polls to write down for the room's waiting rule.
    pub polls: WaitingPolls,
}

impl QueueAccess {
    pub fn new(
        signer: Arc<dyn TokenSigner>,
        queue: Arc<dyn QueueRepository>,
        clock: Arc<dyn Clock>,
        lines: impl Into<RoomLines>,
        policy: QueuePolicy,
    ) -> Self {
        Self {
            polls: WaitingPolls::new(queue.clone()),
            signer,
            queue,
            clock,
            lines: lines.into(),
            policy,
        }
    }

    /// After a ticket ended before its time (its user left, an operator revoked it): a waiting
    /// one stops counting in this instance's view at once (the others' views follow at their
    /// next refresh), an active one's slot goes to the next in line at a step soon.
    pub(crate) fn freed(&self, end: &TicketEnd, admission: &dyn AdmissionTrigger) {
        queue_metrics::tickets_ended(&self.lines.room_of(end.ticket), end.reason, 1);
        if end.read_as == TicketStatus::Waiting {
            self.lines
                .of_ticket(end.ticket)
                .note_ended_while_waiting(EndedWaiting {
                    ticket: end.ticket,
                    reason: Some(end.reason),
                });
        } else {
            admission.request_admission();
        }
    }

    /// Writes a request on an active ticket down as activity, when the domain says it is due
    /// (at most once per activity resolution). A write that finds `last_seen` moved meanwhile is
    /// dropped: another request's activity got there first, and activity never moves back.
    pub(crate) async fn record_activity(
        &self,
        ticket: &QueueTicket,
        now: OffsetDateTime,
    ) -> Result<(), RepositoryError> {
        if !ticket.needs_activity_write(now, &self.policy) {
            return Ok(());
        }
        let mut touched = ticket.clone();
        touched.touch(now);
        let Some(last_seen) = touched.last_seen() else {
            return Ok(());
        };
        let write = ActivityWrite {
            ticket: ticket.ticket(),
            read_last_seen: ticket.last_seen(),
            last_seen,
        };
        self.queue.record_activity(&write).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::{EndReason, TicketStatus};
    use mockall::predicate::eq;
    use time::Duration;

    use super::*;
    use crate::ports::{MockQueueRepository, Written};
    use crate::test_support::{
        NOW, active_ticket, policy, queue_access, ticket_no, user, waiting_ticket,
    };

    async fn access(queue: MockQueueRepository) -> QueueAccess {
        queue_access(queue, 20).await
    }

    fn writing(write: ActivityWrite, answer: Written<()>) -> MockQueueRepository {
        let mut queue = MockQueueRepository::new();
        queue
            .expect_record_activity()
            .with(eq(write))
            .times(1)
            .returning(move |_| Ok(answer.clone()));
        queue
    }

    fn never_writing() -> MockQueueRepository {
        let mut queue = MockQueueRepository::new();
        queue.expect_record_activity().never();
        queue
    }

    #[tokio::test]
    async fn due_activity_is_written_as_now_over_the_last_seen_read() {
        let ticket = active_ticket(14, policy().activity_resolution());
        let queue = writing(
            ActivityWrite {
                ticket: ticket_no(14),
                read_last_seen: Some(NOW - policy().activity_resolution()),
                last_seen: NOW,
            },
            Written::Done(()),
        );

        access(queue)
            .await
            .record_activity(&ticket, NOW)
            .await
            .expect("written");
    }

    #[tokio::test]
    async fn an_active_ticket_never_seen_is_written_over_no_last_seen() {
        let ticket = QueueTicket::restore(
            ticket_no(14),
            user(),
            TicketStatus::Active,
            NOW - Duration::minutes(3),
            Some(NOW + Duration::minutes(9)),
            None,
        );
        let queue = writing(
            ActivityWrite {
                ticket: ticket_no(14),
                read_last_seen: None,
                last_seen: NOW,
            },
            Written::Done(()),
        );

        access(queue)
            .await
            .record_activity(&ticket, NOW)
            .await
            .expect("written");
    }

    #[tokio::test]
    async fn activity_not_yet_due_is_not_written() {
        let fresh = active_ticket(
            14,
            policy().activity_resolution() - Duration::milliseconds(1),
        );

        access(never_writing())
            .await
            .record_activity(&fresh, NOW)
            .await
            .expect("nothing to write");
    }

    #[tokio::test]
    async fn a_waiting_or_ended_ticket_has_no_activity_to_write() {
        let mut ended = active_ticket(14, Duration::minutes(1));
        ended.end(EndReason::Paid);
        let access = access(never_writing()).await;

        access
            .record_activity(&waiting_ticket(14), NOW)
            .await
            .expect("nothing to write");
        access
            .record_activity(&ended, NOW)
            .await
            .expect("nothing to write");
    }

    #[tokio::test]
    async fn a_stale_activity_write_is_not_an_error() {
        let ticket = active_ticket(14, Duration::seconds(30));
        let queue = writing(
            ActivityWrite {
                ticket: ticket_no(14),
                read_last_seen: Some(NOW - Duration::seconds(30)),
                last_seen: NOW,
            },
            Written::Stale,
        );

        access(queue)
            .await
            .record_activity(&ticket, NOW)
            .await
            .expect("another request got there first");
    }
}
