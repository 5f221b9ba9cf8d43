//! Use case: turn a bearer token into the active user it admits, or refuse it.

use concert_domain::queue::AccessRefused;
use concert_domain::{ConcertId, TicketNo, UserId};

use crate::ports::{RepositoryError, TokenClaims};
use crate::queue_access::QueueAccess;
use crate::queue_view::Placement;

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
    /// Active, but in the room of other concerts (`403 TOKEN_WRONG_ROOM`).
    #[error("the queue token admits to another room's concerts")]
    WrongRoom,
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

pub struct AuthorizeRequest {
    access: QueueAccess,
}

impl AuthorizeRequest {
    pub fn new(access: QueueAccess) -> Self {
        Self { access }
    }

    /// Checks the signature only: the claims of any validly signed token, whatever its status.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, AuthorizeError> {
        self.access
            .signer
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
        // A ticket the serving counter of its line has not reached is waiting, unless it ended
        // while waiting: no database read needed.
        let view = self.access.lines.of_ticket(claims.ticket);
        // What the view says of a waiting token holds only while the view can read the line.
        view.readable(self.access.clock.now())?;
        let number = match view.placement(claims.ticket) {
            Placement::Line(number) => number,
            Placement::PreQueue => return Err(AuthorizeError::QueueNotActive),
            Placement::Ended(_) => return Err(AuthorizeError::TokenExpired),
        };
        if view.ended_while_waiting(number).is_some() {
            return Err(AuthorizeError::TokenExpired);
        }
        if !view.serving().has_served(number) {
            return Err(AuthorizeError::QueueNotActive);
        }
        let now = self.access.clock.now();
        let ticket = self
            .access
            .queue
            .find(number)
            .await?
            .filter(|ticket| ticket.user() == claims.user)
            .ok_or(AuthorizeError::TokenInvalid)?;
        ticket
            .authorize(now, &self.access.policy)
            .map_err(AuthorizeError::from)?;
        self.access.record_activity(&ticket, now).await?;
        Ok(ActiveUser {
            user: ticket.user(),
            ticket: ticket.ticket(),
        })
    }

    /// Checks that an active user's room guards `concert` (by the rooms as this instance last
    /// read them): a token admits only to its own room's concerts.
    pub fn admit_to(&self, active: &ActiveUser, concert: ConcertId) -> Result<(), AuthorizeError> {
        Ok(self.access.lines.admit(active.ticket, concert)?)
    }

    /// The id of the room whose line `ticket` waits in.
    pub fn room_of(&self, ticket: TicketNo) -> concert_domain::RoomId {
        self.access.lines.room_of(ticket)
    }
}

impl From<AccessRefused> for AuthorizeError {
    fn from(refused: AccessRefused) -> Self {
        match refused {
            AccessRefused::Expired => Self::TokenExpired,
            AccessRefused::Waiting => Self::QueueNotActive,
            AccessRefused::WrongRoom => Self::WrongRoom,
        }
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use std::sync::Arc;

    use concert_domain::EndReason;

    use super::*;
    use crate::ports::{InvalidToken, MockQueueRepository, MockTokenSigner, Written};
    use crate::test_support::{
        NOW, active_ticket, active_ticket_until, active_user, claims, clock, held_by, other_user,
        policy, queue_holding, queue_holding_answering, signer_reading, ticket_no, user,
        view_serving,
    };

    async fn authorize(
        queue: MockQueueRepository,
        serving: i64,
    ) -> Result<ActiveUser, AuthorizeError> {
        AuthorizeRequest::new(QueueAccess::new(
            Arc::new(signer_reading(claims(14))),
            Arc::new(queue),
            clock(),
            view_serving(serving).await,
            policy(),
        ))
        .execute("token")
        .await
    }

    /// A room on line 2 guarding concert 3.
    fn gala() -> concert_domain::Room {
        concert_domain::Room::new(
            concert_domain::RoomId::parse("spring-gala").expect("an id"),
            5,
            concert_domain::RoomState::Open,
        )
        .expect("a room")
        .on_line(concert_domain::LineNo::new(2).expect("a line"))
        .guarding(vec![concert(3)])
    }

    fn concert(id: i64) -> ConcertId {
        ConcertId::new(id).expect("a concert")
    }

    #[tokio::test]
    async fn an_active_token_admits_only_to_the_concerts_of_its_own_room() {
        let use_case = AuthorizeRequest::new(QueueAccess::new(
            Arc::new(MockTokenSigner::new()),
            Arc::new(MockQueueRepository::new()),
            clock(),
            view_serving(20).await,
            policy(),
        ));
        use_case.access.lines.note_rooms(&[gala()]);
        let default_caller = active_user(14);
        let gala_caller = ActiveUser {
            user: user(),
            ticket: TicketNo::new(gala().line().start().get() + 1).expect("a ticket"),
        };

        assert!(use_case.admit_to(&default_caller, concert(4)).is_ok());
        assert!(use_case.admit_to(&gala_caller, concert(3)).is_ok());
        assert!(matches!(
            use_case.admit_to(&default_caller, concert(3)),
            Err(AuthorizeError::WrongRoom)
        ));
        assert!(matches!(
            use_case.admit_to(&gala_caller, concert(4)),
            Err(AuthorizeError::WrongRoom)
        ));
        assert_eq!(use_case.room_of(gala_caller.ticket).as_str(), "spring-gala");
    }

    #[tokio::test]
    async fn a_waiting_token_is_unavailable_not_refused_while_the_view_cannot_read_the_line() {
        let mut queue = MockQueueRepository::new();
        queue.expect_find().never();
        let use_case = AuthorizeRequest::new(QueueAccess::new(
            Arc::new(signer_reading(claims(14))),
            Arc::new(queue),
            clock(),
            crate::test_support::view_that_lost_its_line(10).await,
            policy(),
        ));

        let answer = use_case.execute("token").await;

        assert!(
            matches!(
                answer,
                Err(AuthorizeError::Repository(RepositoryError::Unavailable(_)))
            ),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn a_pre_queue_token_is_not_active_and_nothing_is_read() {
        let entry = TicketNo::new(gala().line().pre_queue_start() + 9).expect("an entry");
        let mut queue = MockQueueRepository::new();
        queue.expect_find().never();
        let use_case = AuthorizeRequest::new(QueueAccess::new(
            Arc::new(signer_reading(TokenClaims {
                user: user(),
                ticket: entry,
                issued_at: NOW,
            })),
            Arc::new(queue),
            clock(),
            view_serving(20).await,
            policy(),
        ));
        use_case.access.lines.note_rooms(&[gala()]);

        assert!(matches!(
            use_case.execute("token").await,
            Err(AuthorizeError::QueueNotActive)
        ));
    }

    #[tokio::test]
    async fn token_with_a_bad_signature_is_invalid_and_nothing_is_read() {
        let mut signer = MockTokenSigner::new();
        signer.expect_verify().returning(|_| Err(InvalidToken));
        let mut queue = MockQueueRepository::new();
        queue.expect_find().never();
        let use_case = AuthorizeRequest::new(QueueAccess::new(
            Arc::new(signer),
            Arc::new(queue),
            clock(),
            view_serving(20).await,
            policy(),
        ));

        assert!(matches!(
            use_case.execute("forged").await,
            Err(AuthorizeError::TokenInvalid)
        ));
        assert!(matches!(
            use_case.verify("forged"),
            Err(AuthorizeError::TokenInvalid)
        ));
    }

    #[tokio::test]
    async fn ticket_the_serving_counter_has_not_reached_is_not_active_without_a_read() {
        let mut queue = MockQueueRepository::new();
        queue.expect_find().never();
        queue.expect_record_activity().never();

        let refused = authorize(queue, 13).await;

        assert!(matches!(refused, Err(AuthorizeError::QueueNotActive)));
    }

    #[tokio::test]
    async fn active_ticket_admits_its_user() {
        let admitted = authorize(
            queue_holding(active_ticket(14, Duration::seconds(1)), 0),
            14,
        )
        .await
        .expect("admitted");

        assert_eq!(admitted, active_user(14));
        assert_eq!(admitted.user, user());
        assert_eq!(admitted.ticket, ticket_no(14));
    }

    #[tokio::test]
    async fn ticket_past_its_active_deadline_is_expired() {
        let ticket = active_ticket_until(14, NOW - Duration::seconds(1), Duration::seconds(1));

        let refused = authorize(queue_holding(ticket, 0), 20).await;

        assert!(matches!(refused, Err(AuthorizeError::TokenExpired)));
    }

    #[tokio::test]
    async fn idle_ticket_is_expired_and_not_revived() {
        let idle = active_ticket(
            14,
            policy().idle_deadline_after_activity() + Duration::seconds(1),
        );

        let refused = authorize(queue_holding(idle, 0), 20).await;

        assert!(matches!(refused, Err(AuthorizeError::TokenExpired)));
    }

    #[tokio::test]
    async fn paid_ticket_is_expired() {
        let mut paid = active_ticket(14, Duration::seconds(1));
        paid.end(EndReason::Paid);

        let refused = authorize(queue_holding(paid, 0), 20).await;

        assert!(matches!(refused, Err(AuthorizeError::TokenExpired)));
    }

    #[tokio::test]
    async fn ticket_stored_for_another_user_is_invalid() {
        let theirs = held_by(&active_ticket(14, Duration::seconds(30)), other_user());

        let refused = authorize(queue_holding(theirs, 0), 20).await;

        assert!(matches!(refused, Err(AuthorizeError::TokenInvalid)));
    }

    #[tokio::test]
    async fn missing_ticket_is_invalid() {
        let mut queue = MockQueueRepository::new();
        queue.expect_find().times(1).returning(|_| Ok(None));
        queue.expect_record_activity().never();

        let refused = authorize(queue, 20).await;

        assert!(matches!(refused, Err(AuthorizeError::TokenInvalid)));
    }

    #[tokio::test]
    async fn activity_is_written_when_older_than_the_resolution_over_the_last_seen_read() {
        let resolution = policy().activity_resolution();
        let stale = active_ticket(14, resolution);

        // `queue_holding` expects exactly one write: ticket 14, read_last_seen NOW − resolution,
        // last_seen NOW.
        authorize(queue_holding(stale, 1), 20)
            .await
            .expect("admitted");
    }

    #[tokio::test]
    async fn activity_within_the_resolution_is_not_written_again() {
        let resolution = policy().activity_resolution();
        let fresh = active_ticket(14, resolution - Duration::milliseconds(1));

        authorize(queue_holding(fresh, 0), 20)
            .await
            .expect("admitted");
    }

    #[tokio::test]
    async fn activity_seen_after_now_by_a_clock_ahead_is_not_written_back() {
        let ahead = active_ticket(14, -Duration::seconds(2));

        authorize(queue_holding(ahead, 0), 20)
            .await
            .expect("admitted");
    }

    #[tokio::test]
    async fn activity_written_first_by_another_request_is_not_an_error() {
        let stale = active_ticket(14, Duration::seconds(30));

        let admitted = authorize(queue_holding_answering(stale, 1, Written::Stale), 20)
            .await
            .expect("a stale activity write still admits");

        assert_eq!(admitted, active_user(14));
    }

    #[tokio::test]
    async fn a_failed_activity_write_is_an_error() {
        let stale = active_ticket(14, Duration::seconds(30));
        let mut queue = MockQueueRepository::new();
        queue
            .expect_find()
            .times(1)
            .returning(move |_| Ok(Some(stale.clone())));
        queue
            .expect_record_activity()
            .times(1)
            .returning(|_| Err(RepositoryError::Unavailable("down".into())));

        let failed = authorize(queue, 20).await;

        assert!(matches!(
            failed,
            Err(AuthorizeError::Repository(RepositoryError::Unavailable(_)))
        ));
    }
}
