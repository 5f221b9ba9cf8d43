//! Use case: a queue token's status, position and expected wait. The hottest path of the service:
//! every waiting user polls it, so a waiting ticket is answered from the [`QueueView`] alone.

use std::sync::Arc;

use concert_domain::queue::{estimated_wait_seconds, retry_after_seconds};
use concert_domain::{QueuePolicy, QueueTicket, TicketStatus};
use time::OffsetDateTime;

use crate::ports::{Clock, QueueRepository, RepositoryError, TokenClaims, TokenSigner};
use crate::queue_view::QueueView;

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
            retry_after_seconds: Some(retry_after_seconds(position)),
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
                Self::waiting(view.serving().position_of(ticket.ticket).unwrap_or(1), view)
            }
            TicketStatus::Active => Self {
                status: TicketStatus::Active,
                position: None,
                estimated_wait_seconds: None,
                active_until: ticket.active_until,
                retry_after_seconds: None,
            },
            TicketStatus::Expired => Self {
                status: TicketStatus::Expired,
                position: None,
                estimated_wait_seconds: None,
                active_until: None,
                retry_after_seconds: None,
            },
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
    signer: Arc<dyn TokenSigner>,
    queue: Arc<dyn QueueRepository>,
    clock: Arc<dyn Clock>,
    view: QueueView,
    policy: QueuePolicy,
}

impl ReadQueueStatus {
    pub fn new(
        signer: Arc<dyn TokenSigner>,
        queue: Arc<dyn QueueRepository>,
        clock: Arc<dyn Clock>,
        view: QueueView,
        policy: QueuePolicy,
    ) -> Self {
        Self {
            signer,
            queue,
            clock,
            view,
            policy,
        }
    }

    #[tracing::instrument(name = "read_queue_status", skip_all)]
    pub async fn execute(&self, token: &str) -> Result<QueueStatusView, ReadQueueStatusError> {
        let claims = self
            .signer
            .verify(token)
            .map_err(|_| ReadQueueStatusError::TokenInvalid)?;
        self.status_of(&claims).await
    }

    async fn status_of(
        &self,
        claims: &TokenClaims,
    ) -> Result<QueueStatusView, ReadQueueStatusError> {
        if let Some(position) = self.view.serving().position_of(claims.ticket) {
            return Ok(QueueStatusView::waiting(position, &self.view));
        }
        let now = self.clock.now();
        let Some(ticket) = self.queue.find(claims.ticket).await? else {
            return Err(ReadQueueStatusError::TokenInvalid);
        };
        if ticket.needs_activity_write(now, &self.policy)
            && ticket.status_at(now, &self.policy) == TicketStatus::Active
        {
            self.queue.record_activity(ticket.ticket, now).await?;
        }
        Ok(QueueStatusView::of_ticket(
            &ticket,
            now,
            &self.policy,
            &self.view,
        ))
    }
}
