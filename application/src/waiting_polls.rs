//! Waiting polls written down for a room's waiting rule (`waitingIdleSeconds`) without a
//! database round trip per poll: an instance notes the polls it answers from its view and writes
//! them in one batch a few times a second, and notes a ticket's poll at most once per half of the
//! rule's resolution (the domain's `needs_waiting_poll_write`). A client watching through an
//! event stream counts as polling at every batch. With no rule, nothing is noted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use concert_domain::{LineNo, QueuePolicy, TicketNo};
use time::OffsetDateTime;

use crate::ports::{QueueRepository, RepositoryError, WaitingPoll};

#[derive(Debug, Default)]
struct Polls {
    /// The latest poll of each ticket noted since the last write.
    pending: HashMap<TicketNo, OffsetDateTime>,
    /// When this instance last wrote a poll of each ticket (recent ones only).
    written: HashMap<TicketNo, OffsetDateTime>,
    /// Tickets whose holders watch them through an event stream here (how many streams each):
    /// an open stream counts as polling, at every batch.
    watched: HashMap<TicketNo, usize>,
}

impl Polls {
    fn note(&mut self, ticket: TicketNo, now: OffsetDateTime, policy: &QueuePolicy) {
        if self.pending.contains_key(&ticket)
            || policy.needs_waiting_poll_write(self.written.get(&ticket).copied(), now)
        {
            self.pending.insert(ticket, now);
        }
    }
}

/// A client watching its ticket through an event stream: counted as present until dropped.
#[derive(Debug)]
pub struct Present {
    polls: Arc<Mutex<Polls>>,
    ticket: TicketNo,
}

impl Drop for Present {
    fn drop(&mut self) {
        let mut polls = self.polls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(streams) = polls.watched.get_mut(&self.ticket) {
            *streams -= 1;
            if *streams == 0 {
                polls.watched.remove(&self.ticket);
            }
        }
    }
}

/// Shared by the status use case (which notes) and the job that writes; cheap to clone.
#[derive(Clone)]
pub struct WaitingPolls {
    queue: Arc<dyn QueueRepository>,
    polls: Arc<Mutex<Polls>>,
}

impl std::fmt::Debug for WaitingPolls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitingPolls").finish_non_exhaustive()
    }
}

impl WaitingPolls {
    pub fn new(queue: Arc<dyn QueueRepository>) -> Self {
        Self {
            queue,
            polls: Arc::default(),
        }
    }

    /// Notes that the holder of waiting `ticket` polled at `now`, if the room's rule wants it
    /// written down.
    pub fn note(&self, ticket: TicketNo, now: OffsetDateTime, policy: &QueuePolicy) {
        if policy.waiting_idle.is_none() {
            return;
        }
        self.polls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(ticket, now, policy);
    }

    /// Counts `ticket`'s holder as present while the returned guard lives (an open event
    /// stream): every batch notes a poll for it, so watching keeps the place as polling does.
    pub fn present(&self, ticket: TicketNo) -> Present {
        *self
            .polls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .watched
            .entry(ticket)
            .or_default() += 1;
        Present {
            polls: Arc::clone(&self.polls),
            ticket,
        }
    }

    /// Writes every poll noted since the last call in one batch; returns how many tickets the
    /// store moved. Polls that could not be written are kept for the next call. `policy_of`
    /// gives the policy each line runs under now.
    pub async fn write_pending(
        &self,
        now: OffsetDateTime,
        policy_of: impl Fn(LineNo) -> QueuePolicy,
    ) -> Result<u64, RepositoryError> {
        let batch: Vec<WaitingPoll> = {
            let mut polls = self.polls.lock().unwrap_or_else(PoisonError::into_inner);
            // Only writes within the last half resolution still hold a poll back (none once the
            // rule is lifted).
            polls.written.retain(|ticket, at| {
                let policy = policy_of(ticket.line());
                policy.waiting_idle.is_some() && !policy.needs_waiting_poll_write(Some(*at), now)
            });
            let watched: Vec<TicketNo> = polls.watched.keys().copied().collect();
            for ticket in watched {
                let policy = policy_of(ticket.line());
                if policy.waiting_idle.is_some() {
                    polls.note(ticket, now, &policy);
                }
            }
            polls
                .pending
                .drain()
                .map(|(ticket, at)| WaitingPoll { ticket, at })
                .collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let written = self.queue.record_waiting_polls(&batch).await;
        let mut polls = self.polls.lock().unwrap_or_else(PoisonError::into_inner);
        for poll in &batch {
            if written.is_ok() {
                polls.written.insert(poll.ticket, poll.at);
            } else {
                let later = polls.pending.entry(poll.ticket).or_insert(poll.at);
                *later = (*later).max(poll.at);
            }
        }
        written
    }

    /// How many tickets' polls wait to be written (for tests and metrics).
    pub fn pending(&self) -> usize {
        self.polls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending
            .len()
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::WaitingIdle;
    use mockall::predicate::eq;
    use time::Duration;

    use super::*;
    use crate::ports::MockQueueRepository;
    use crate::test_support::{NOW, policy, ticket_no};

    /// Passes over after a minute: a resolution of 6 s, so a ticket's polls are written at most
    /// every 3 s.
    fn with_rule() -> QueuePolicy {
        QueuePolicy {
            waiting_idle: Some(WaitingIdle {
                after: Duration::minutes(1),
                since: NOW,
            }),
            ..policy()
        }
    }

    fn poll(ticket: i64, at: OffsetDateTime) -> WaitingPoll {
        WaitingPoll {
            ticket: ticket_no(ticket),
            at,
        }
    }

    fn sorted(mut polls: Vec<WaitingPoll>) -> Vec<WaitingPoll> {
        polls.sort_by_key(|poll| poll.ticket);
        polls
    }

    #[tokio::test]
    async fn polls_are_written_in_one_batch_with_the_latest_time_and_not_again_too_soon() {
        let mut queue = MockQueueRepository::new();
        let later = NOW + Duration::seconds(1);
        queue
            .expect_record_waiting_polls()
            .withf(move |polls| sorted(polls.to_vec()) == vec![poll(1, later), poll(2, NOW)])
            .times(1)
            .returning(|polls| Ok(polls.len() as u64));
        let soon = NOW + Duration::seconds(4);
        queue
            .expect_record_waiting_polls()
            .with(eq(vec![poll(1, soon)]))
            .times(1)
            .returning(|_| Ok(1));
        let polls = WaitingPolls::new(Arc::new(queue));
        let rule = with_rule();

        polls.note(ticket_no(1), NOW, &rule);
        polls.note(ticket_no(2), NOW, &rule);
        polls.note(ticket_no(1), later, &rule);
        assert_eq!(
            polls.write_pending(later, |_| rule).await.expect("written"),
            2
        );

        polls.note(ticket_no(2), NOW + Duration::seconds(2), &rule);
        assert_eq!(polls.pending(), 0, "written 2 s ago: not yet again");
        assert_eq!(
            polls.write_pending(later, |_| rule).await.expect("written"),
            0
        );
        polls.note(ticket_no(1), soon, &rule);
        assert_eq!(
            polls.write_pending(soon, |_| rule).await.expect("written"),
            1
        );
    }

    #[tokio::test]
    async fn without_a_waiting_rule_nothing_is_noted_or_written() {
        let mut queue = MockQueueRepository::new();
        queue.expect_record_waiting_polls().never();
        let polls = WaitingPolls::new(Arc::new(queue));
        polls.note(ticket_no(1), NOW, &policy());
        assert_eq!(polls.pending(), 0);
        assert_eq!(
            polls
                .write_pending(NOW, |_| policy())
                .await
                .expect("nothing"),
            0
        );
    }

    #[tokio::test]
    async fn polls_that_could_not_be_written_are_kept_for_the_next_batch() {
        let mut queue = MockQueueRepository::new();
        let mut answers = vec![Err(RepositoryError::Unavailable("down".into())), Ok(1)].into_iter();
        queue
            .expect_record_waiting_polls()
            .with(eq(vec![poll(7, NOW)]))
            .times(2)
            .returning(move |_| answers.next().expect("two writes"));
        let polls = WaitingPolls::new(Arc::new(queue));
        let rule = with_rule();
        polls.note(ticket_no(7), NOW, &rule);
        assert!(polls.write_pending(NOW, |_| rule).await.is_err());
        assert_eq!(polls.pending(), 1);
        assert_eq!(
            polls.write_pending(NOW, |_| rule).await.expect("written"),
            1
        );
        assert_eq!(polls.pending(), 0);
    }

    #[tokio::test]
    async fn a_watching_client_counts_as_polling_until_its_stream_closes() {
        let mut queue = MockQueueRepository::new();
        let later = NOW + Duration::seconds(3);
        queue
            .expect_record_waiting_polls()
            .with(eq(vec![poll(5, NOW)]))
            .times(1)
            .returning(|_| Ok(1));
        queue
            .expect_record_waiting_polls()
            .with(eq(vec![poll(5, later)]))
            .times(1)
            .returning(|_| Ok(1));
        let polls = WaitingPolls::new(Arc::new(queue));
        let rule = with_rule();
        let first = polls.present(ticket_no(5));
        let second = polls.present(ticket_no(5));
        assert_eq!(
            polls.write_pending(NOW, |_| rule).await.expect("written"),
            1
        );
        drop(first);
        assert_eq!(
            polls.write_pending(later, |_| rule).await.expect("written"),
            1
        );
        drop(second);
        let gone = later + Duration::seconds(10);
        assert_eq!(polls.write_pending(gone, |_| rule).await.expect("none"), 0);
    }
}
