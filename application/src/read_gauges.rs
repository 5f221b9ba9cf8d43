//! Use case: the deployment-wide figures behind the `queue_*` and `seat_holds_live` gauges.

use std::sync::Arc;

use concert_domain::RoomId;

use crate::ports::{Clock, RepositoryError, ReservationRepository};
use crate::room_lines::RoomLines;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeploymentGauges {
    /// Each room's line, as this instance last read it.
    pub rooms: Vec<RoomGauges>,
    pub live_holds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomGauges {
    pub room: RoomId,
    pub waiting_tokens: u64,
    pub active_tokens: u64,
}

pub struct ReadGauges {
    lines: RoomLines,
    reservations: Arc<dyn ReservationRepository>,
    clock: Arc<dyn Clock>,
}

impl ReadGauges {
    pub fn new(
        lines: impl Into<RoomLines>,
        reservations: Arc<dyn ReservationRepository>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            lines: lines.into(),
            reservations,
            clock,
        }
    }

    pub async fn execute(&self) -> Result<DeploymentGauges, RepositoryError> {
        let live_holds = self.reservations.count_live_holds(self.clock.now()).await?;
        let rooms = self
            .lines
            .views()
            .into_iter()
            .filter_map(|view| {
                let room = view.room()?;
                let line = view.snapshot();
                Some(RoomGauges {
                    room: room.id().clone(),
                    waiting_tokens: line.waiting,
                    active_tokens: line.active,
                })
            })
            .collect();
        Ok(DeploymentGauges { rooms, live_holds })
    }
}

#[cfg(test)]
mod tests {
    use mockall::predicate::eq;

    use super::*;
    use crate::ports::MockReservationRepository;
    use crate::test_support::{NOW, clock, view_serving};

    #[tokio::test]
    async fn gauges_read_the_line_from_the_view_and_live_holds_at_now() {
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_count_live_holds()
            .with(eq(NOW))
            .times(1)
            .returning(|_| Ok(7));
        let view = view_serving(10).await;
        view.note_room(
            concert_domain::Room::new(RoomId::default_room(), 5, concert_domain::RoomState::Open)
                .expect("a room"),
        );
        let line = view.snapshot();

        let gauges = ReadGauges::new(view, Arc::new(reservations), clock())
            .execute()
            .await
            .expect("gauges");

        assert_eq!(
            gauges,
            DeploymentGauges {
                rooms: vec![RoomGauges {
                    room: RoomId::default_room(),
                    waiting_tokens: line.waiting,
                    active_tokens: line.active,
                }],
                live_holds: 7,
            }
        );
    }
}
