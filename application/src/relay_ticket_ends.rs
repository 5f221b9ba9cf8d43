//! Use case: apply to the line the ticket ends that payments wrote down beside themselves.
//!
//! When the line is kept in another store than bookings and money, no one atomic step can both
//! record a payment and end the payer's queue ticket. The payment writes the end to the
//! [`TicketEndOutbox`] in its own step instead; [`RelayTicketEnds::apply`] then ends the ticket on
//! the line and forgets the row. `PayReservation` applies its end before answering, so in normal
//! operation the token reads `EXPIRED` as soon as the payment is answered; a background job runs
//! [`RelayTicketEnds::relay_pending`] for the rows left behind (the process died between the two
//! steps, or the line's store failed at that moment). Applying is idempotent: running it twice,
//! or on two instances at once, ends a ticket once.

use std::sync::Arc;

use concert_domain::queue::{DeferredEnd, deferred_end};

use crate::idempotency::{Step, until_written};
use crate::ports::{
    AdmissionTrigger, Clock, PendingTicketEnd, QueueRepository, RepositoryError, TicketEndOutbox,
    Written,
};
use crate::queue_metrics;
use crate::room_lines::RoomLines;

/// How many rows one run of the background job reads at a time.
pub const RELAY_BATCH: u32 = 100;

/// What applying a pending end came to; in every case the row is gone afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppliedEnd {
    /// The ticket ended now.
    Ended,
    /// The ticket had ended already (applied before, or a deadline came first).
    AlreadyEnded,
    /// The number no longer names the payer's ticket (gone, or handed out again after the
    /// line's store started empty): nothing to end.
    Dropped,
}

/// The ports the relay needs.
pub struct RelayTicketEndsPorts {
    pub outbox: Arc<dyn TicketEndOutbox>,
    pub queue: Arc<dyn QueueRepository>,
    /// This instance's rooms, to count an end in its room.
    pub lines: RoomLines,
    /// Asked for an admission step once a run of the job ended tickets (places freed).
    pub admission: Arc<dyn AdmissionTrigger>,
    pub clock: Arc<dyn Clock>,
}

pub struct RelayTicketEnds {
    outbox: Arc<dyn TicketEndOutbox>,
    queue: Arc<dyn QueueRepository>,
    lines: RoomLines,
    admission: Arc<dyn AdmissionTrigger>,
    clock: Arc<dyn Clock>,
}

impl RelayTicketEnds {
    pub fn new(ports: RelayTicketEndsPorts) -> Self {
        Self {
            outbox: ports.outbox,
            queue: ports.queue,
            lines: ports.lines,
            admission: ports.admission,
            clock: ports.clock,
        }
    }

    /// Finds the ticket on the line, lets the domain decide whether the end still applies to it
    /// ([`deferred_end`]), ends it over the status read if so, then forgets the row. An error
    /// leaves the row for a later run.
    #[tracing::instrument(name = "relay_ticket_end", skip_all, fields(ticket = pending.end.ticket.get()))]
    pub async fn apply(&self, pending: &PendingTicketEnd) -> Result<AppliedEnd, RepositoryError> {
        let applied = until_written(|| async {
            let found = self.queue.find(pending.end.ticket).await?;
            let decided = deferred_end(
                found.as_ref(),
                pending.payer,
                pending.end.read_as,
                pending.written_at,
            );
            Ok::<_, RepositoryError>(match decided {
                DeferredEnd::End => match self.queue.end(&pending.end, self.clock.now()).await? {
                    Written::Done(()) => Step::Done(AppliedEnd::Ended),
                    // It changed between the read and the end: read it again.
                    Written::Stale => Step::Stale,
                },
                DeferredEnd::Ended => Step::Done(AppliedEnd::AlreadyEnded),
                DeferredEnd::Moot => Step::Done(AppliedEnd::Dropped),
            })
        })
        .await?;
        match applied {
            AppliedEnd::Ended => queue_metrics::tickets_ended(
                &self.lines.room_of(pending.end.ticket),
                pending.end.reason,
                1,
            ),
            AppliedEnd::AlreadyEnded => {}
            AppliedEnd::Dropped => tracing::info!(
                payer = %pending.payer,
                "a payment's ticket end no longer names the payer's ticket: dropped"
            ),
        }
        self.outbox.done(pending).await?;
        Ok(applied)
    }

    /// Applies up to `batch` pending ends, oldest first; returns how many rows it settled. It
    /// stops at the first `Unavailable` (a store is down: the rest waits for the next run) and
    /// returns that error; a row that fails otherwise is logged and kept, and the run goes on.
    /// Asks for an admission step when it ended tickets.
    pub async fn relay_pending(&self, batch: u32) -> Result<u64, RepositoryError> {
        let pending = self.outbox.pending(batch).await?;
        let (mut settled, mut ended) = (0_u64, 0_u64);
        let mut outage = None;
        for end in &pending {
            match self.apply(end).await {
                Ok(applied) => {
                    settled += 1;
                    if applied == AppliedEnd::Ended {
                        ended += 1;
                    }
                }
                Err(error @ RepositoryError::Unavailable(_)) => {
                    outage = Some(error);
                    break;
                }
                Err(error) => tracing::error!(
                    ticket = end.end.ticket.get(),
                    error = ?error,
                    "a payment's ticket end could not be applied; kept for the next run"
                ),
            }
        }
        if ended > 0 {
            self.admission.request_admission();
        }
        outage.map_or(Ok(settled), Err)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use concert_domain::{EndReason, QueueTicket, TicketStatus};
    use mockall::Sequence;
    use mockall::predicate::eq;
    use time::Duration;

    use super::*;
    use crate::ports::{MockAdmissionTrigger, MockQueueRepository, MockTicketEndOutbox, TicketEnd};
    use crate::test_support::{
        NOW, active_ticket, clock, held_by, other_user, policy, ticket_no, user,
    };

    /// The end a payment of ticket `n` at [`NOW`] wrote down.
    fn pending(n: i64) -> PendingTicketEnd {
        PendingTicketEnd {
            end: TicketEnd {
                ticket: ticket_no(n),
                read_as: TicketStatus::Active,
                reason: EndReason::Paid,
            },
            payer: user(),
            written_at: NOW,
        }
    }

    fn unavailable() -> RepositoryError {
        RepositoryError::Unavailable("the line's store is down".into())
    }

    fn relay(
        outbox: MockTicketEndOutbox,
        queue: MockQueueRepository,
        admission: MockAdmissionTrigger,
    ) -> RelayTicketEnds {
        let queue: Arc<dyn QueueRepository> = Arc::new(queue);
        RelayTicketEnds::new(RelayTicketEndsPorts {
            outbox: Arc::new(outbox),
            lines: RoomLines::new(Arc::new(MockQueueRepository::new()), policy()),
            queue,
            admission: Arc::new(admission),
            clock: clock(),
        })
    }

    /// A line holding each of `tickets` (found by number), whose `end` answers `ended`.
    fn line_holding(tickets: Vec<QueueTicket>, ended: Written<()>) -> MockQueueRepository {
        let mut queue = MockQueueRepository::new();
        queue.expect_find().returning(move |number| {
            Ok(tickets
                .iter()
                .find(|ticket| ticket.ticket() == number)
                .cloned())
        });
        queue.expect_end().returning(move |_, _| Ok(ended.clone()));
        queue
    }

    fn outbox_done_with(end: PendingTicketEnd) -> MockTicketEndOutbox {
        let mut outbox = MockTicketEndOutbox::new();
        outbox
            .expect_done()
            .with(eq(end))
            .times(1)
            .returning(|_| Ok(()));
        outbox
    }

    /// Applies `pending(14)` over a line where number 14 finds `found` and nothing may be
    /// ended; the row must be done once.
    async fn apply_without_ending(found: Option<QueueTicket>) -> AppliedEnd {
        let mut queue = MockQueueRepository::new();
        queue.expect_find().returning(move |_| Ok(found.clone()));
        queue.expect_end().never();
        relay(
            outbox_done_with(pending(14)),
            queue,
            MockAdmissionTrigger::new(),
        )
        .apply(&pending(14))
        .await
        .expect("applied")
    }

    #[tokio::test]
    async fn the_payers_active_ticket_is_ended_at_now_then_the_row_is_done() {
        let mut queue = MockQueueRepository::new();
        queue
            .expect_find()
            .with(eq(ticket_no(14)))
            .times(1)
            .returning(|_| Ok(Some(active_ticket(14, Duration::seconds(1)))));
        let mut seq = Sequence::new();
        queue
            .expect_end()
            .with(eq(pending(14).end), eq(NOW))
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Ok(Written::Done(())));
        let mut outbox = MockTicketEndOutbox::new();
        outbox
            .expect_done()
            .with(eq(pending(14)))
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(()));

        let applied = relay(outbox, queue, MockAdmissionTrigger::new())
            .apply(&pending(14))
            .await
            .expect("applied");

        assert_eq!(applied, AppliedEnd::Ended);
    }

    #[tokio::test]
    async fn a_number_now_held_by_someone_else_is_not_ended_and_the_row_is_dropped() {
        let reissued = held_by(&active_ticket(14, Duration::seconds(1)), other_user());
        let applied = apply_without_ending(Some(reissued)).await;

        assert_eq!(applied, AppliedEnd::Dropped);
    }

    #[tokio::test]
    async fn the_payers_next_ticket_under_the_same_number_is_not_ended() {
        // The line's store started again empty and gave the payer the same number again.
        let next = QueueTicket::restore(
            ticket_no(14),
            user(),
            TicketStatus::Active,
            NOW + Duration::seconds(3),
            Some(NOW + Duration::minutes(10)),
            Some(NOW + Duration::seconds(4)),
        );
        let applied = apply_without_ending(Some(next)).await;

        assert_eq!(applied, AppliedEnd::Dropped);
    }

    #[tokio::test]
    async fn a_ticket_gone_from_the_line_is_dropped() {
        let applied = apply_without_ending(None).await;

        assert_eq!(applied, AppliedEnd::Dropped);
    }

    #[tokio::test]
    async fn a_ticket_ended_already_is_done_without_ending_it_again() {
        let mut ended = active_ticket(14, Duration::seconds(1));
        ended.end(EndReason::Paid);
        let applied = apply_without_ending(Some(ended)).await;

        assert_eq!(applied, AppliedEnd::AlreadyEnded);
    }

    #[tokio::test]
    async fn an_end_that_finds_the_ticket_changed_reads_it_again() {
        // A deadline ended it between the read and the end.
        let mut reads = vec![active_ticket(14, Duration::seconds(1)), {
            let mut over = active_ticket(14, Duration::seconds(1));
            over.end(EndReason::ActiveTimeOver);
            over
        }]
        .into_iter();
        let mut queue = MockQueueRepository::new();
        queue
            .expect_find()
            .times(2)
            .returning(move |_| Ok(reads.next()));
        queue
            .expect_end()
            .times(1)
            .returning(|_, _| Ok(Written::Stale));

        let applied = relay(
            outbox_done_with(pending(14)),
            queue,
            MockAdmissionTrigger::new(),
        )
        .apply(&pending(14))
        .await
        .expect("applied");

        assert_eq!(applied, AppliedEnd::AlreadyEnded);
    }

    #[tokio::test]
    async fn a_line_that_fails_keeps_the_row() {
        let mut queue = MockQueueRepository::new();
        queue.expect_find().returning(|_| Err(unavailable()));
        let mut outbox = MockTicketEndOutbox::new();
        outbox.expect_done().never();

        let failed = relay(outbox, queue, MockAdmissionTrigger::new())
            .apply(&pending(14))
            .await;

        assert!(matches!(failed, Err(RepositoryError::Unavailable(_))));
    }

    #[tokio::test]
    async fn relay_pending_applies_the_rows_in_order_and_asks_for_admission() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let rows = vec![pending(11), pending(12), pending(13)];
        let mut outbox = MockTicketEndOutbox::new();
        outbox
            .expect_pending()
            .with(eq(RELAY_BATCH))
            .times(1)
            .returning(move |_| Ok(rows.clone()));
        let done = Arc::clone(&order);
        outbox.expect_done().times(3).returning(move |end| {
            done.lock().expect("lock").push(end.end.ticket.get());
            Ok(())
        });
        let mut twelve_ended = active_ticket(12, Duration::seconds(1));
        twelve_ended.end(EndReason::Paid);
        let queue = line_holding(
            vec![
                active_ticket(11, Duration::seconds(1)),
                twelve_ended,
                active_ticket(13, Duration::seconds(1)),
            ],
            Written::Done(()),
        );
        let mut admission = MockAdmissionTrigger::new();
        admission
            .expect_request_admission()
            .times(1)
            .return_const(());

        let settled = relay(outbox, queue, admission)
            .relay_pending(RELAY_BATCH)
            .await
            .expect("relayed");

        assert_eq!(settled, 3);
        assert_eq!(*order.lock().expect("lock"), vec![11, 12, 13]);
    }

    #[tokio::test]
    async fn relay_pending_stops_at_the_first_unavailable_and_keeps_the_rest() {
        let mut outbox = MockTicketEndOutbox::new();
        outbox
            .expect_pending()
            .returning(|_| Ok(vec![pending(11), pending(12), pending(13)]));
        outbox
            .expect_done()
            .with(eq(pending(11)))
            .times(1)
            .returning(|_| Ok(()));
        let mut queue = MockQueueRepository::new();
        queue
            .expect_find()
            .with(eq(ticket_no(11)))
            .returning(|_| Ok(Some(active_ticket(11, Duration::seconds(1)))));
        queue
            .expect_find()
            .with(eq(ticket_no(12)))
            .times(1)
            .returning(|_| Err(unavailable()));
        queue.expect_find().with(eq(ticket_no(13))).never();
        queue
            .expect_end()
            .times(1)
            .returning(|_, _| Ok(Written::Done(())));
        let mut admission = MockAdmissionTrigger::new();
        admission
            .expect_request_admission()
            .times(1)
            .return_const(());

        let failed = relay(outbox, queue, admission)
            .relay_pending(RELAY_BATCH)
            .await;

        assert!(matches!(failed, Err(RepositoryError::Unavailable(_))));
    }

    #[tokio::test]
    async fn relay_pending_goes_past_a_row_that_fails_unexpectedly() {
        let mut outbox = MockTicketEndOutbox::new();
        outbox
            .expect_pending()
            .returning(|_| Ok(vec![pending(11), pending(12)]));
        outbox
            .expect_done()
            .with(eq(pending(12)))
            .times(1)
            .returning(|_| Ok(()));
        let mut queue = MockQueueRepository::new();
        queue
            .expect_find()
            .with(eq(ticket_no(11)))
            .returning(|_| Err(RepositoryError::Unexpected("corrupt".into())));
        queue
            .expect_find()
            .with(eq(ticket_no(12)))
            .returning(|_| Ok(None));
        queue.expect_end().never();
        let mut admission = MockAdmissionTrigger::new();
        admission.expect_request_admission().never();

        let settled = relay(outbox, queue, admission)
            .relay_pending(RELAY_BATCH)
            .await
            .expect("relayed");

        assert_eq!(settled, 1);
    }

    #[tokio::test]
    async fn relay_pending_with_nothing_pending_touches_nothing() {
        let mut outbox = MockTicketEndOutbox::new();
        outbox.expect_pending().returning(|_| Ok(Vec::new()));
        outbox.expect_done().never();
        let mut queue = MockQueueRepository::new();
        queue.expect_find().never();

        let settled = relay(outbox, queue, MockAdmissionTrigger::new())
            .relay_pending(RELAY_BATCH)
            .await
            .expect("relayed");

        assert_eq!(settled, 0);
    }
}
