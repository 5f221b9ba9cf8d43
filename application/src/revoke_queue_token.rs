//! Use case: an operator revokes a user's live token in a room. It ends at once (`REVOKED`): its
//! next call gets `401 TOKEN_EXPIRED`, and its place or active slot is freed.

use std::sync::Arc;

use concert_domain::queue::revoke;
use concert_domain::{EndReason, RoomId, UserId};

use crate::admin_access::AdminAccess;
use crate::idempotency::{Step, until_written};
use crate::manage_rooms::RoomAdminError;
use crate::ports::{AdmissionTrigger, PreQueueEnd, RoomRepository, TicketEnd};
use crate::queue_access::QueueAccess;
use crate::queue_metrics;

pub struct RevokeQueueToken {
    access: QueueAccess,
    rooms: Arc<dyn RoomRepository>,
    admin: Arc<AdminAccess>,
    admission: Arc<dyn AdmissionTrigger>,
}

impl RevokeQueueToken {
    pub fn new(
        access: QueueAccess,
        rooms: Arc<dyn RoomRepository>,
        admin: Arc<AdminAccess>,
        admission: Arc<dyn AdmissionTrigger>,
    ) -> Self {
        Self {
            access,
            rooms,
            admin,
            admission,
        }
    }

    /// Ends `user`'s live token in `room`, if there is one; revoking a user with none changes
    /// nothing and is no error.
    #[tracing::instrument(name = "revoke_queue_token", skip_all, fields(room = room, user = user))]
    pub async fn execute(
        &self,
        presented_key: Option<&str>,
        room: &str,
        user: &str,
    ) -> Result<(), RoomAdminError> {
        self.admin.check(presented_key)?;
        let room = RoomId::parse(room)?;
        let line = self
            .rooms
            .find(&room)
            .await?
            .ok_or_else(|| RoomAdminError::RoomNotFound(room.clone()))?
            .value
            .line();
        let user = UserId::parse(user)?;
        let access = &self.access;
        let now = access.clock.now();
        // An entry in the room's pre-queue ends there; an entry the opening placed meanwhile is
        // a ticket of the line, revoked below.
        if let Some(entry) = access.queue.load_pre_queue(user, line).await? {
            let ended = access
                .queue
                .end_pre_queue(entry.entry, user, EndReason::Revoked, now)
                .await?;
            if ended == PreQueueEnd::Ended {
                access
                    .lines
                    .of_line(line)
                    .note_pre_queue_end(entry.entry, EndReason::Revoked);
                queue_metrics::tickets_ended(&room, EndReason::Revoked, 1);
                tracing::info!(entry = entry.entry.get(), "pre-queue entry revoked");
                return Ok(());
            }
        }
        let revoked = until_written(|| async {
            let live = access.queue.load_live(user, line).await?;
            let Some(ticket) = live.ticket else {
                return Ok(Step::Done(None));
            };
            let Some(_) = revoke(&ticket, now, &access.policy) else {
                return Ok(Step::Done(None));
            };
            let end = TicketEnd {
                ticket: ticket.ticket(),
                read_as: ticket.stored_status(),
                reason: EndReason::Revoked,
            };
            let written = access.queue.end(&end, now).await?;
            Ok::<_, RoomAdminError>(Step::from(written).map(|()| Some(end)))
        })
        .await?;
        let Some(end) = revoked else {
            tracing::info!("revocation found no live token");
            return Ok(());
        };
        access.freed(&end, self.admission.as_ref());
        tracing::info!(ticket = end.ticket.get(), "token revoked");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::{LineNo, TicketStatus};
    use mockall::predicate::eq;
    use time::Duration;

    use super::*;
    use crate::admin_access::{AdminKey, AdminRefused};
    use crate::ports::{LiveTicket, MockAdmissionTrigger, MockQueueRepository, Version, Written};
    use crate::test_support::{
        NOW, active_ticket, clock, queue_access, storing_default_room, ticket_no, user,
        waiting_ticket,
    };

    const KEY: &str = "operators-admin-key";

    async fn revoker(
        queue: MockQueueRepository,
        admission: MockAdmissionTrigger,
    ) -> RevokeQueueToken {
        RevokeQueueToken::new(
            queue_access(queue, 20).await,
            Arc::new(storing_default_room()),
            Arc::new(AdminAccess::new(
                AdminKey::new(Some(KEY.to_owned())),
                clock(),
            )),
            Arc::new(admission),
        )
    }

    fn holding(ticket: Option<concert_domain::QueueTicket>) -> MockQueueRepository {
        let mut queue = MockQueueRepository::new();
        queue
            .expect_load_pre_queue()
            .with(eq(user()), eq(LineNo::DEFAULT))
            .returning(|_, _| Ok(None));
        queue
            .expect_load_live()
            .with(eq(user()), eq(LineNo::DEFAULT))
            .returning(move |_, _| {
                Ok(LiveTicket {
                    ticket: ticket.clone(),
                    version: Version::new(1),
                })
            });
        queue
    }

    fn ending(queue: &mut MockQueueRepository, read_as: TicketStatus) {
        queue
            .expect_end()
            .with(
                eq(TicketEnd {
                    ticket: ticket_no(30),
                    read_as,
                    reason: EndReason::Revoked,
                }),
                eq(NOW),
            )
            .times(1)
            .returning(|_, _| Ok(Written::Done(())));
    }

    #[tokio::test]
    async fn a_waiting_token_is_revoked_and_its_place_stops_counting() {
        let mut queue = holding(Some(waiting_ticket(30)));
        ending(&mut queue, TicketStatus::Waiting);
        let use_case = revoker(queue, MockAdmissionTrigger::new()).await;

        use_case
            .execute(Some(KEY), "default", &user().to_string())
            .await
            .expect("revoked");

        let ended = use_case
            .access
            .lines
            .default_line()
            .ended_while_waiting(ticket_no(30));
        assert_eq!(ended.and_then(|e| e.reason), Some(EndReason::Revoked));
    }

    #[tokio::test]
    async fn an_active_token_is_revoked_and_the_next_in_line_admitted_soon() {
        let mut queue = holding(Some(active_ticket(30, Duration::seconds(1))));
        ending(&mut queue, TicketStatus::Active);
        let mut admission = MockAdmissionTrigger::new();
        admission
            .expect_request_admission()
            .times(1)
            .return_const(());

        revoker(queue, admission)
            .await
            .execute(Some(KEY), "default", &user().to_string())
            .await
            .expect("revoked");
    }

    #[tokio::test]
    async fn a_user_without_a_live_token_is_no_error_and_nothing_is_written() {
        let mut queue = holding(None);
        queue.expect_end().never();
        revoker(queue, MockAdmissionTrigger::new())
            .await
            .execute(Some(KEY), "default", &user().to_string())
            .await
            .expect("nothing to revoke");
    }

    #[tokio::test]
    async fn the_key_is_checked_first_then_the_room_and_the_user() {
        let untouched = || {
            let mut queue = MockQueueRepository::new();
            queue.expect_load_live().never();
            queue
        };
        let use_case = revoker(untouched(), MockAdmissionTrigger::new()).await;
        let refused = use_case.execute(Some("wrong"), "nowhere", "x").await;
        assert!(matches!(
            refused,
            Err(RoomAdminError::Admin(AdminRefused::KeyInvalid))
        ));
        let refused = use_case.execute(Some(KEY), "Bad Room", "x").await;
        assert!(matches!(refused, Err(RoomAdminError::Invalid(_))));
        let refused = use_case.execute(Some(KEY), "spring-gala", "x").await;
        assert!(matches!(refused, Err(RoomAdminError::RoomNotFound(_))));
        let refused = use_case.execute(Some(KEY), "default", "not-a-uuid").await;
        assert!(matches!(refused, Err(RoomAdminError::Invalid(_))));
    }
}
