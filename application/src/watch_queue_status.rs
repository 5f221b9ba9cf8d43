//! Use case: a client watches its queue token's status (the event stream of docs/API.md §1.7)
//! instead of polling. Each change is worked out from this instance's view of the line: a waiting
//! ticket's from the serving counter, an admitted ticket's end from the ends the view reads for
//! every watcher at once. The store is read once per watch, when the ticket leaves the line.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use concert_domain::{EndReason, QueueTicket, TicketNo, TicketStatus};

use crate::ports::TokenClaims;
use crate::queue_access::QueueAccess;
use crate::queue_view::{Placement, Watching};
use crate::read_queue_status::{QueueStatusView, ReadQueueStatusError};
use crate::waiting_polls::Present;

/// Why a watch was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WatchRefused {
    #[error("the queue token is not valid")]
    TokenInvalid,
    /// This instance already serves its most watches (`503`, try again later or poll).
    #[error("this instance already serves {0} watches")]
    TooMany(usize),
}

/// One client's watch of its token. Dropping it frees its place among the watches.
#[derive(Debug)]
pub struct StatusWatch {
    claims: TokenClaims,
    /// The ticket as stored when it left the line (read once).
    admitted: Option<QueueTicket>,
    last: Option<QueueStatusView>,
    _watching: Watching,
    /// Counts the watcher as present on the place it waits in: its token's, or the place its
    /// pre-queue entry got at the opening (none before: an entry has no place to keep).
    present: Option<(TicketNo, Present)>,
    _slot: Slot,
}

impl StatusWatch {
    /// Whether the last status handed out was the end (nothing changes after it).
    pub fn is_over(&self) -> bool {
        self.last
            .is_some_and(|last| last.status == TicketStatus::Expired)
    }
}

#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct WatchQueueStatus {
    access: QueueAccess,
    open: Arc<AtomicUsize>,
    most: usize,
}

impl WatchQueueStatus {
    /// At most `most` watches open at once on this instance.
    pub fn new(access: QueueAccess, most: usize) -> Self {
        Self {
            access,
            open: Arc::default(),
            most,
        }
    }

    /// Watches open now on this instance.
    pub fn open_watches(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Opens a watch of `token`'s status.
    pub fn open(&self, token: &str) -> Result<StatusWatch, WatchRefused> {
        let claims = self
            .access
            .signer
            .verify(token)
            .map_err(|_| WatchRefused::TokenInvalid)?;
        let taken = self.open.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(Arc::clone(&self.open));
        if taken >= self.most {
            return Err(WatchRefused::TooMany(self.most));
        }
        Ok(StatusWatch {
            claims,
            admitted: None,
            last: None,
            _watching: self.access.lines.of_ticket(claims.ticket).watch(),
            present: (!claims.ticket.is_pre_queue_entry())
                .then(|| (claims.ticket, self.access.polls.present(claims.ticket))),
            _slot: slot,
        })
    }

    /// The token's status if it changed since the last one this returned (the first call
    /// returns it in any case): its status, position or end, not the wait estimate alone (that
    /// moves on every refresh and rides along with the next change).
    #[tracing::instrument(name = "watch_queue_status", skip_all)]
    pub async fn changed(
        &self,
        watch: &mut StatusWatch,
    ) -> Result<Option<QueueStatusView>, ReadQueueStatusError> {
        let now_status = self.status(watch).await?;
        let changed = watch.last.is_none_or(|last| {
            (last.status, last.position, last.active_until, last.reason)
                != (
                    now_status.status,
                    now_status.position,
                    now_status.active_until,
                    now_status.reason,
                )
        });
        if !changed {
            return Ok(None);
        }
        watch.last = Some(now_status);
        Ok(Some(now_status))
    }

    async fn status(
        &self,
        watch: &mut StatusWatch,
    ) -> Result<QueueStatusView, ReadQueueStatusError> {
        let view = &self.access.lines.of_ticket(watch.claims.ticket);
        view.readable(self.access.clock.now())?;
        let ticket = match view.placement(watch.claims.ticket) {
            Placement::Line(number) => number,
            Placement::PreQueue => {
                let now = self.access.clock.now();
                return Ok(QueueStatusView::pre_queue(view.room().as_ref(), now));
            }
            Placement::Ended(reason) => return Ok(QueueStatusView::expired(reason)),
        };
        if watch.present.as_ref().is_none_or(|(on, _)| *on != ticket) {
            watch.present = Some((ticket, self.access.polls.present(ticket)));
        }
        if let Some(ended) = view.ended_while_waiting(ticket) {
            return Ok(QueueStatusView::expired(ended.reason));
        }
        if let Some(position) = view.position_of(ticket) {
            return Ok(QueueStatusView::waiting(position, view));
        }
        if let Some(ended) = view.recently_ended(ticket) {
            return Ok(QueueStatusView::expired(ended.reason));
        }
        let stored = match &watch.admitted {
            Some(stored) => stored.clone(),
            None => {
                // A ticket stored for another user than the token names is not this token's.
                let stored = self
                    .access
                    .queue
                    .find(ticket)
                    .await?
                    .filter(|stored| stored.user() == watch.claims.user)
                    .ok_or(ReadQueueStatusError::TokenInvalid)?;
                if stored.stored_status() == TicketStatus::Waiting {
                    // The view has not caught up with the store yet: next time.
                    return Ok(QueueStatusView::waiting(1, view));
                }
                watch.admitted = Some(stored.clone());
                stored
            }
        };
        let now = self.access.clock.now();
        Ok(match (stored.stored_status(), stored.active_until()) {
            (TicketStatus::Active, Some(until)) if now < until => {
                QueueStatusView::active(Some(until))
            }
            (TicketStatus::Active, _) => QueueStatusView::expired(Some(EndReason::ActiveTimeOver)),
            _ => QueueStatusView::expired(stored.end_reason()),
        })
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::queue::ServingCounter;
    use time::Duration;

    use super::*;
    use crate::ports::{EndedTicket, MockQueueRepository, QueueSnapshot};
    use crate::queue_view::QueueView;
    use crate::test_support::{
        NOW, active_ticket_until, claims, clock, policy, signer_reading, ticket_no,
    };

    /// A watch use case over a view whose line reads `serving` then `serving_after`, and whose
    /// store holds `stored` for the one read a watch may make.
    async fn watching(
        serving: i64,
        serving_after: i64,
        ends: Vec<EndedTicket>,
        stored: Option<QueueTicket>,
        most: usize,
    ) -> (WatchQueueStatus, QueueView) {
        let mut line = MockQueueRepository::new();
        let mut counters = vec![serving, serving_after].into_iter();
        line.expect_snapshot().returning(move |_| {
            Ok(QueueSnapshot {
                serving: ServingCounter::new(counters.next().unwrap_or(serving_after)),
                ..QueueSnapshot::default()
            })
        });
        line.expect_ended_waiting().returning(|_| Ok(Vec::new()));
        // Read only while watched: nothing the first time, then `ends`.
        let mut reads = 0;
        line.expect_ended_since().returning(move |_, _| {
            reads += 1;
            Ok(if reads == 1 { Vec::new() } else { ends.clone() })
        });
        let view = QueueView::new(Arc::new(line), policy());
        view.refresh(NOW).await.expect("refresh");
        let mut queue = MockQueueRepository::new();
        queue
            .expect_find()
            .times(usize::from(stored.is_some()))
            .returning(move |_| Ok(stored.clone()));
        let access = QueueAccess::new(
            Arc::new(signer_reading(claims(14))),
            Arc::new(queue),
            clock(),
            view.clone(),
            policy(),
        );
        (WatchQueueStatus::new(access, most), view)
    }

    #[tokio::test]
    async fn a_watch_hears_of_each_move_then_of_its_admission_and_its_end_with_one_store_read() {
        let until = NOW + Duration::minutes(10);
        let paid = EndedTicket {
            ticket: ticket_no(14),
            reason: Some(EndReason::Paid),
            ended_at: NOW,
        };
        let (use_case, view) = watching(
            10,
            14,
            vec![paid],
            Some(active_ticket_until(14, until, Duration::ZERO)),
            10,
        )
        .await;
        let mut watch = use_case.open("token").expect("open");

        let first = use_case.changed(&mut watch).await.expect("first");
        assert_eq!(
            first.map(|s| (s.status, s.position)),
            Some((TicketStatus::Waiting, Some(4)))
        );
        assert_eq!(use_case.changed(&mut watch).await.expect("same"), None);

        view.refresh(NOW + Duration::seconds(1))
            .await
            .expect("refresh");
        let admitted = use_case.changed(&mut watch).await.expect("admitted");
        assert_eq!(
            admitted.map(|s| (s.status, s.active_until)),
            Some((TicketStatus::Active, Some(until)))
        );
        assert_eq!(
            use_case.changed(&mut watch).await.expect("same"),
            None,
            "no second read"
        );
        assert!(!watch.is_over());

        view.refresh(NOW + Duration::seconds(2))
            .await
            .expect("refresh");
        let ended = use_case.changed(&mut watch).await.expect("ended");
        assert_eq!(
            ended.map(|s| (s.status, s.reason)),
            Some((TicketStatus::Expired, Some(EndReason::Paid)))
        );
        assert!(watch.is_over());
    }

    #[tokio::test]
    async fn a_watch_fails_once_its_view_cannot_read_the_line_so_its_stream_ends() {
        let mut queue = MockQueueRepository::new();
        queue.expect_find().never();
        let use_case = WatchQueueStatus::new(
            QueueAccess::new(
                Arc::new(signer_reading(claims(14))),
                Arc::new(queue),
                clock(),
                crate::test_support::view_that_lost_its_line(10).await,
                policy(),
            ),
            10,
        );
        let mut watch = use_case.open("token").expect("open");

        let answer = use_case.changed(&mut watch).await;

        assert!(
            matches!(
                answer,
                Err(ReadQueueStatusError::Repository(
                    crate::ports::RepositoryError::Unavailable(_)
                ))
            ),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn watches_beyond_the_most_are_refused_and_a_closed_one_frees_its_place() {
        let (use_case, _view) = watching(10, 10, Vec::new(), None, 2).await;
        let first = use_case.open("token").expect("first");
        let _second = use_case.open("token").expect("second");
        assert_eq!(
            use_case.open("token").map(|_| ()),
            Err(WatchRefused::TooMany(2))
        );
        assert_eq!(use_case.open_watches(), 2, "the refused one holds nothing");
        drop(first);
        assert!(use_case.open("token").is_ok());
    }
}
