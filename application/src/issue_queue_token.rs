//! Use case: hand a user a signed queue token: their live one if they have it, else a new place
//! at the end of the line.

use concert_domain::UserId;

use crate::ports::{RepositoryError, TokenClaims};
use crate::queue_access::QueueAccess;
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
    access: QueueAccess,
}

impl IssueQueueToken {
    pub fn new(access: QueueAccess) -> Self {
        Self { access }
    }

    #[tracing::instrument(name = "issue_queue_token", skip_all, fields(user = %user))]
    pub async fn execute(&self, user: UserId) -> Result<IssuedToken, IssueQueueTokenError> {
        let now = self.access.clock.now();
        let issued = self
            .access
            .queue
            .issue(user, now, &self.access.policy)
            .await?;
        let ticket = &issued.ticket;
        let token = self.access.signer.sign(&TokenClaims {
            user,
            ticket: ticket.ticket,
            issued_at: ticket.issued_at,
        });
        Ok(IssuedToken {
            token,
            created: issued.created,
            status: QueueStatusView::of_ticket(ticket, now, &self.access.policy, &self.access.view),
        })
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::TicketStatus;
    use mockall::predicate::eq;

    use std::sync::Arc;

    use super::*;
    use crate::ports::{IssuedTicket, MockQueueRepository, MockTokenSigner};
    use crate::test_support::{
        NOW, active_ticket, clock, policy, ticket_no, user, view_serving, waiting_ticket,
    };

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

    #[tokio::test]
    async fn new_ticket_is_created_signed_with_its_claims_and_placed_after_the_serving_counter() {
        let ticket = waiting_ticket(14);
        let mut queue = MockQueueRepository::new();
        let issued = ticket.clone();
        queue
            .expect_issue()
            .with(eq(user()), eq(NOW), eq(policy()))
            .times(1)
            .returning(move |_, _, _| {
                Ok(IssuedTicket {
                    ticket: issued.clone(),
                    created: true,
                })
            });
        let claims = TokenClaims {
            user: user(),
            ticket: ticket_no(14),
            issued_at: ticket.issued_at,
        };
        let use_case = IssueQueueToken::new(QueueAccess {
            signer: Arc::new(signer_expecting(claims, 1)),
            queue: Arc::new(queue),
            clock: clock(),
            view: view_serving(10).await,
            policy: policy(),
        });

        let issued = use_case.execute(user()).await.expect("issued");

        assert!(issued.created);
        assert_eq!(
            issued.token,
            format!("{}.14.{}", user(), ticket.issued_at.unix_timestamp())
        );
        assert_eq!(issued.status.status, TicketStatus::Waiting);
        assert_eq!(issued.status.position, Some(4), "ticket 14 − serving 10");
        assert!(issued.status.retry_after_seconds.is_some());
        assert!(issued.status.estimated_wait_seconds.is_some());
        assert_eq!(issued.status.active_until, None);
    }

    #[tokio::test]
    async fn asking_again_with_a_live_ticket_returns_the_same_token_and_no_new_place() {
        let ticket = active_ticket(14, time::Duration::seconds(30));
        let mut queue = MockQueueRepository::new();
        let mut answers = vec![true, false].into_iter();
        let stored = ticket.clone();
        queue
            .expect_issue()
            .with(eq(user()), eq(NOW), eq(policy()))
            .times(2)
            .returning(move |_, _, _| {
                Ok(IssuedTicket {
                    ticket: stored.clone(),
                    created: answers.next().expect("two calls"),
                })
            });
        let claims = TokenClaims {
            user: user(),
            ticket: ticket_no(14),
            issued_at: ticket.issued_at,
        };
        let use_case = IssueQueueToken::new(QueueAccess {
            signer: Arc::new(signer_expecting(claims, 2)),
            queue: Arc::new(queue),
            clock: clock(),
            view: view_serving(20).await,
            policy: policy(),
        });

        let first = use_case.execute(user()).await.expect("first");
        let again = use_case.execute(user()).await.expect("again");

        assert!(first.created);
        assert!(!again.created);
        assert_eq!(again.token, first.token);
        assert_eq!(again.status.status, TicketStatus::Active);
        assert_eq!(again.status.position, None);
        assert_eq!(again.status.active_until, ticket.active_until);
    }
}
