//! Use case: the seat map of one concert date: every seat, and whether it is free, held or sold
//! now, as the domain tells it.

use std::sync::Arc;

use concert_domain::{ConcertDate, ConcertId, Price, SeatNo, SeatState};
use time::Date;

use crate::authorize_request::ActiveUser;
use crate::list_available_seats::{FindDateError, admit_to, find_bookable_date};
use crate::ports::{CatalogRepository, Clock};
use crate::room_lines::RoomLines;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSeat {
    pub no: SeatNo,
    pub price: Price,
    pub state: SeatState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatMap {
    pub date: ConcertDate,
    pub seats: Vec<MapSeat>,
}

pub struct ReadSeatMap {
    catalog: Arc<dyn CatalogRepository>,
    clock: Arc<dyn Clock>,
    rooms: RoomLines,
}

impl ReadSeatMap {
    pub fn new(
        catalog: Arc<dyn CatalogRepository>,
        clock: Arc<dyn Clock>,
        rooms: impl Into<RoomLines>,
    ) -> Self {
        Self {
            catalog,
            clock,
            rooms: rooms.into(),
        }
    }

    #[tracing::instrument(name = "read_seat_map", skip_all, fields(concert = concert.get(), %date))]
    pub async fn execute(
        &self,
        caller: &ActiveUser,
        concert: ConcertId,
        date: Date,
    ) -> Result<SeatMap, FindDateError> {
        admit_to(&self.rooms, caller, concert)?;
        let now = self.clock.now();
        let found = find_bookable_date(self.catalog.as_ref(), concert, date, now).await?;
        let seats = self
            .catalog
            .seats_of(concert, date)
            .await?
            .iter()
            .map(|seat| MapSeat {
                no: seat.no(),
                price: seat.price(),
                state: seat.state_at(now),
            })
            .collect();
        Ok(SeatMap { date: found, seats })
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::Seat;
    use mockall::predicate::eq;

    use super::*;
    use crate::ports::{DateLookup, MockCatalogRepository};
    use crate::test_support::{
        CONCERT_DAY, active_user, clock, concert_date, concert_id, default_rooms, free_seat,
        held_reservation, lapsed_reservation, seat_held_by, seat_sold_to,
    };

    #[tokio::test]
    async fn every_seat_is_shown_free_held_or_sold_as_the_domain_tells_at_now() {
        let mut catalog = MockCatalogRepository::new();
        catalog
            .expect_find_date()
            .returning(|_, _| Ok(DateLookup::Found(concert_date())));
        let seats: Vec<Seat> = vec![
            free_seat(),
            seat_held_by(&held_reservation()),
            seat_held_by(&lapsed_reservation()),
            seat_sold_to(&held_reservation()),
        ];
        catalog
            .expect_seats_of()
            .with(eq(concert_id()), eq(CONCERT_DAY))
            .times(1)
            .returning(move |_, _| Ok(seats.clone()));
        let map = ReadSeatMap::new(Arc::new(catalog), clock(), default_rooms())
            .execute(&active_user(14), concert_id(), CONCERT_DAY)
            .await
            .expect("a map");
        let states: Vec<SeatState> = map.seats.iter().map(|seat| seat.state).collect();
        assert_eq!(
            states,
            vec![
                SeatState::Free,
                SeatState::Held,
                SeatState::Free,
                SeatState::Sold
            ]
        );
    }

    #[tokio::test]
    async fn a_date_not_played_reads_no_seats() {
        let mut catalog = MockCatalogRepository::new();
        catalog
            .expect_find_date()
            .returning(|_, _| Ok(DateLookup::DateNotFound));
        catalog.expect_seats_of().never();
        let refused = ReadSeatMap::new(Arc::new(catalog), clock(), default_rooms())
            .execute(&active_user(14), concert_id(), CONCERT_DAY)
            .await;
        assert!(matches!(refused, Err(FindDateError::DateNotFound(..))));
    }
}
