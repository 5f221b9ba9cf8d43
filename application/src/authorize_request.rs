//! Use case: turn a bearer token into the active user it admits, or refuse it.

use std::sync::Arc;

use concert_domain::queue::AccessRefused;
use concert_domain::{QueuePolicy, TicketNo, UserId};

use crate::ports::{Clock, QueueRepository, RepositoryError, TokenClaims, TokenSigner};
use crate::queue_view::QueueView;

/// A user whose queue token is active: the only kind of caller the protected use cases serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveUser {
    pub user: UserId,
    pub ticket: TicketNo,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// Missing, unparseable, altered or signed with another key (`401 TOKEN_INVALID`).
    #[error("the queue token is not valid")]
    TokenInvalid,
    /// Validly signed but ended (`401 TOKEN_EXPIRED`).
    #[error("the queue token has expired")]
    TokenExpired,
    /// Still waiting in line (`403 QUEUE_NOT_ACTIVE`).
    #[error("the queue token is not active yet")]
    QueueNotActive,
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

pub struct AuthorizeRequest {
    signer: Arc<dyn TokenSigner>,
    queue: Arc<dyn QueueRepository>,
    clock: Arc<dyn Clock>,
    view: QueueView,
    policy: QueuePolicy,
}

impl AuthorizeRequest {
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

    /// Checks the signature only: the claims of any validly signed token, whatever its status.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, AuthorizeError> {
        self.signer
            .verify(token)
            .map_err(|_| AuthorizeError::TokenInvalid)
    }

    /// Verifies the token and checks that its ticket is active now.
    pub async fn execute(&self, token: &str) -> Result<ActiveUser, AuthorizeError> {
        let claims = self.verify(token)?;
        self.authorize(&claims).await
    }

    /// Checks that the ticket of verified claims is active now, and records the activity.
    #[tracing::instrument(name = "authorize", skip_all, fields(ticket = claims.ticket.get()))]
    pub async fn authorize(&self, claims: &TokenClaims) -> Result<ActiveUser, AuthorizeError> {
        // A ticket the serving counter has not reached is waiting: no database read needed.
        if !self.view.serving().has_served(claims.ticket) {
            return Err(AuthorizeError::QueueNotActive);
        }
        let now = self.clock.now();
        let ticket = self
            .queue
            .find(claims.ticket)
            .await?
            .filter(|ticket| ticket.user == claims.user)
            .ok_or(AuthorizeError::TokenInvalid)?;
        ticket
            .authorize(now, &self.policy)
            .map_err(|refused| match refused {
                AccessRefused::Expired => AuthorizeError::TokenExpired,
                AccessRefused::Waiting => AuthorizeError::QueueNotActive,
            })?;
        if ticket.needs_activity_write(now, &self.policy) {
            self.queue.record_activity(ticket.ticket, now).await?;
        }
        Ok(ActiveUser {
            user: ticket.user,
            ticket: ticket.ticket,
        })
    }
}
