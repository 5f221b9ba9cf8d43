//! Use case: hand a user a signed queue token: their live one if they have it, else a new place
//! at the end of the line.

use std::sync::Arc;

use concert_domain::{QueuePolicy, UserId};

use crate::ports::{Clock, QueueRepository, RepositoryError, TokenClaims, TokenSigner};
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
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

pub struct IssueQueueToken {
    queue: Arc<dyn QueueRepository>,
    signer: Arc<dyn TokenSigner>,
    clock: Arc<dyn Clock>,
    view: QueueView,
    policy: QueuePolicy,
}

impl IssueQueueToken {
    pub fn new(
        queue: Arc<dyn QueueRepository>,
        signer: Arc<dyn TokenSigner>,
        clock: Arc<dyn Clock>,
        view: QueueView,
        policy: QueuePolicy,
    ) -> Self {
        Self {
            queue,
            signer,
            clock,
            view,
            policy,
        }
    }

    #[tracing::instrument(name = "issue_queue_token", skip_all, fields(user = %user))]
    pub async fn execute(&self, user: UserId) -> Result<IssuedToken, IssueQueueTokenError> {
        let now = self.clock.now();
        let issued = self.queue.issue(user, now).await?;
        let ticket = &issued.ticket;
        let token = self.signer.sign(&TokenClaims {
            user,
            ticket: ticket.ticket,
            issued_at: ticket.issued_at,
        });
        Ok(IssuedToken {
            token,
            created: issued.created,
            status: QueueStatusView::of_ticket(ticket, now, &self.policy, &self.view),
        })
    }
}
